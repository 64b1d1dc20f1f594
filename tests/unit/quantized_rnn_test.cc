// Dynamic int8 LSTM/GRU/RNN: int8 W and R behind DequantizeLinear are lowered to the int8 gate
// GEMMs (com.quantkit::LSTM/GRU/RNN) and stay close to the float model, over several steps with
// the state carried, bidirectional, and GRU's split recurrent multiply.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "passes/passes.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::IntAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::RunModel;
using testing::StringAttr;

struct RnnCase {
  std::string op;
  int gates;
  std::string direction;
  bool linear_before_reset;
};

// Symmetric int8 per gate row: scale = max|w| / 127.
void QuantizeRows(const std::vector<float>& w, int64_t dirs, int64_t rows, int64_t cols, std::vector<int8_t>* q,
                  std::vector<float>* scale) {
  scale->assign(static_cast<size_t>(rows), 0.f);
  for (int64_t d = 0; d < dirs; ++d)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) (*scale)[r] = std::max((*scale)[r], std::fabs(w[(d * rows + r) * cols + c]) / 127.f);
  q->resize(w.size());
  for (int64_t d = 0; d < dirs; ++d)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const size_t i = static_cast<size_t>((d * rows + r) * cols + c);
        (*q)[i] = static_cast<int8_t>(std::nearbyint(w[i] / (*scale)[r]));
      }
}

Model BuildModel(const RnnCase& c, int64_t input, int64_t hidden) {
  const int64_t dirs = c.direction == "bidirectional" ? 2 : 1, gh = c.gates * hidden;
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> u(-0.4f, 0.4f);
  auto vec = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = u(rng);
    return v;
  };
  Graph g;
  g.inputs.push_back(MakeValueInfo("X", DType::kFloat32, {6, 2, input}));
  for (const char* o : {"Y", "Y_h"}) {
    ValueInfo vi;
    vi.name = o;
    g.outputs.push_back(vi);
  }
  const char* names[2] = {"W", "R"};
  const int64_t cols[2] = {input, hidden};
  for (int k = 0; k < 2; ++k) {
    std::vector<int8_t> q;
    std::vector<float> scale;
    QuantizeRows(vec(dirs * gh * cols[k]), dirs, gh, cols[k], &q, &scale);
    const std::string n = names[k];
    g.AddInitializer(n + "q", Tensor::FromVector<int8_t>(q, {dirs, gh, cols[k]}));
    g.AddInitializer(n + "s", Tensor::FromVector<float>(scale, {gh}));
    Node dq = MakeNode("DequantizeLinear", {n + "q", n + "s"}, {n});
    dq.attributes.push_back(IntAttr("axis", 1));
    g.nodes.push_back(dq);
  }
  g.AddInitializer("B", Tensor::FromVector<float>(vec(dirs * 2 * gh), {dirs, 2 * gh}));
  Node rnn = MakeNode(c.op, {"X", "W", "R", "B"}, {"Y", "Y_h"});
  rnn.attributes = {IntAttr("hidden_size", hidden), StringAttr("direction", c.direction)};
  if (c.linear_before_reset) rnn.attributes.push_back(IntAttr("linear_before_reset", 1));
  g.nodes.push_back(rnn);
  return MakeModel(std::move(g), 14);
}

TEST(QuantizedRnn, Int8GateGemmsStayCloseToFloat) {
  const std::vector<RnnCase> cases = {{"LSTM", 4, "forward", false},
                                      {"LSTM", 4, "bidirectional", false},
                                      {"GRU", 3, "forward", false},
                                      {"GRU", 3, "reverse", true},
                                      {"RNN", 1, "forward", false}};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const auto& c : cases) {
    const Model m = BuildModel(c, 24, 19);
    Model lowered = m;
    ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
    ASSERT_EQ(lowered.graph.nodes.size(), 1u) << c.op << ": the dequantize nodes must be gone";
    EXPECT_EQ(lowered.graph.nodes[0].domain, "com.quantkit");
    std::vector<float> x(6 * 2 * 24);
    for (auto& v : x) v = nd(rng);
    const Tensor xt = Tensor::FromVector<float>(x, {6, 2, 24});
    const auto ref = RunModel(m, {{"X", xt}}, /*optimize=*/false);
    const auto q = RunModel(m, {{"X", xt}}, /*optimize=*/true);
    ASSERT_EQ(ref.size(), 2u);
    ASSERT_EQ(q.size(), 2u);
    for (size_t o = 0; o < 2; ++o) {
      ASSERT_EQ(ref[o].shape(), q[o].shape());
      // Hidden states are in (-1, 1): an absolute budget of a few quantization steps.
      EXPECT_LT(testing::MaxAbsDiff(ref[o], q[o]), 0.03f) << c.op << " " << c.direction << " output " << o;
      EXPECT_GT(testing::MaxAbsDiff(ref[o], q[o]), 0.f) << "the int8 path must actually run";
    }
  }
}

}  // namespace
}  // namespace quantkit
