// passes/fuse_quantized.cc + the fused com.quantkit::MatMulIntegerToFloat: the lowered graph must
// give bit-identical outputs to the standard ONNX ops it replaces (run unoptimized, with the
// reference kernels), and the lowering must actually happen.
#include <gtest/gtest.h>

#include <random>

#include "passes/passes.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::RandomFloats;
using testing::FloatAttr;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::RunModel;

constexpr int64_t kM = 7, kK = 45, kN = 19;

// Int8 weights [rows, cols] with per-column scales, a zero zero point, and a bias.
struct Weights {
  Tensor q, scale, zp, bias;
  Weights(int64_t rows, int64_t cols, int64_t scale_len) {
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> d(-127, 127);
    std::vector<int8_t> w(static_cast<size_t>(rows * cols));
    for (auto& x : w) x = static_cast<int8_t>(d(rng));
    q = Tensor::FromVector<int8_t>(w, {rows, cols});
    std::vector<float> s(static_cast<size_t>(scale_len));
    for (size_t i = 0; i < s.size(); ++i) s[i] = 0.001f * static_cast<float>(i + 3);
    scale = Tensor::FromVector<float>(s, {scale_len});
    zp = Tensor::FromVector<int8_t>(std::vector<int8_t>(static_cast<size_t>(scale_len), 0), {scale_len});
    bias = RandomFloats({cols}, 9);
  }
  void AddTo(Graph& g) const {
    g.AddInitializer("Wq", q);
    g.AddInitializer("Ws", scale);
    g.AddInitializer("Wz", zp);
    g.AddInitializer("bias", bias);
  }
};

Graph WithIo(std::vector<int64_t> x_shape) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("X", DType::kFloat32, std::move(x_shape)));
  ValueInfo y;
  y.name = "Y";
  g.outputs.push_back(y);
  return g;
}

// The integer-ops form of dynamic quantization (as quantkit and ONNX Runtime write it).
Model IntegerOpsModel(const Weights& w, bool with_bias, std::vector<int64_t> x_shape = {kM, kK}) {
  Graph g = WithIo(std::move(x_shape));
  w.AddTo(g);
  g.nodes.push_back(MakeNode("DynamicQuantizeLinear", {"X"}, {"Xq", "Xs", "Xz"}));
  g.nodes.push_back(MakeNode("MatMulInteger", {"Xq", "Wq", "Xz", "Wz"}, {"acc"}));
  Node cast = MakeNode("Cast", {"acc"}, {"accf"});
  cast.attributes.push_back(IntAttr("to", 1));
  g.nodes.push_back(cast);
  g.nodes.push_back(MakeNode("Mul", {"Xs", "Ws"}, {"S"}));
  g.nodes.push_back(MakeNode("Mul", {"accf", "S"}, {with_bias ? "y0" : "Y"}));
  if (with_bias) g.nodes.push_back(MakeNode("Add", {"y0", "bias"}, {"Y"}));
  return MakeModel(std::move(g), 13);
}

int CountOps(const Model& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph.nodes) n += node.op_type == op;
  return n;
}

// Dynamic int8 vs float: max error within 2% of the output's largest magnitude.
void ExpectCloseToFloat(const Tensor& float_out, const Tensor& int8_out) {
  float peak = 0;
  for (int64_t i = 0; i < float_out.numel(); ++i) peak = std::max(peak, std::fabs(float_out.data<float>()[i]));
  EXPECT_GT(peak, 1.f);
  EXPECT_LT(testing::MaxAbsDiff(float_out, int8_out), 0.02f * peak);
}

void ExpectBitIdentical(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.shape(), b.shape());
  for (int64_t i = 0; i < a.numel(); ++i) ASSERT_EQ(a.data<float>()[i], b.data<float>()[i]) << "element " << i;
}

TEST(FuseQuantized, IntegerOpsFormIsFusedAndBitIdentical) {
  const Weights w(kK, kN, kN);
  for (bool with_bias : {false, true}) {
    const Model m = IntegerOpsModel(w, with_bias);
    Model lowered = m;
    ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
    EXPECT_EQ(CountOps(lowered, "MatMulIntegerToFloat"), 1);
    EXPECT_EQ(CountOps(lowered, "MatMulInteger"), 0);
    EXPECT_EQ(CountOps(lowered, "Add"), 0);
    const Tensor x = RandomFloats({kM, kK}, 1);
    const auto reference = RunModel(m, {{"X", x}}, /*optimize=*/false);
    const auto fused = RunModel(m, {{"X", x}}, /*optimize=*/true);
    ASSERT_EQ(reference.size(), 1u);
    ASSERT_EQ(fused.size(), 1u);
    ExpectBitIdentical(reference[0], fused[0]);
  }
}

TEST(FuseQuantized, BatchedActivationsKeepTheirShape) {
  const Weights w(kK, kN, 1);
  const Model m = IntegerOpsModel(w, true, {2, 3, kK});
  const Tensor x = RandomFloats({2, 3, kK}, 4);
  const auto reference = RunModel(m, {{"X", x}}, false);
  const auto fused = RunModel(m, {{"X", x}}, true);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0].shape(), (Shape{2, 3, kN}));
  ExpectBitIdentical(reference[0], fused[0]);
}

TEST(FuseQuantized, SharedScaleProductOrGraphOutputBlocksOnlyWhatItMust) {
  const Weights w(kK, kN, kN);
  Model m = IntegerOpsModel(w, true);
  ValueInfo acc;
  acc.name = "acc";
  m.graph.outputs.push_back(acc);  // the int32 accumulators are wanted: no fusion
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "MatMulIntegerToFloat"), 0);
  EXPECT_EQ(CountOps(lowered, "MatMulInteger"), 1);
}

// The dynamic Conv form quantkit writes (`--op-types Conv`): DynamicQuantizeLinear -> ConvInteger
// -> Cast -> Mul(Mul(x_scale, w_scale [1, M, 1, 1])) [-> Add(bias [1, M, 1, 1])], lowered to
// com.quantkit::ConvIntegerToFloat with the same bits: per-channel and per-tensor scales, with and
// without bias, a following Relu or Clip fused as a clamp, padded, grouped, pointwise and
// depthwise convs.
TEST(FuseQuantized, DynamicConvFormIsFusedAndBitIdentical) {
  enum Act { kNone, kRelu, kClip };
  struct Case {
    int64_t C, M, k, group, stride, pad;
    bool per_channel, with_bias;
    Act act = kNone;
  };
  for (const Case& c : {Case{8, 21, 3, 1, 1, 1, true, true, kRelu}, Case{12, 16, 1, 1, 1, 0, false, true},
                        Case{8, 12, 3, 4, 2, 1, true, false, kClip}, Case{5, 40, 5, 1, 1, 2, true, true},
                        Case{16, 16, 3, 16, 1, 1, true, true, kClip}, Case{8, 8, 5, 8, 2, 2, false, true, kRelu},
                        Case{8, 8, 3, 8, 1, 1, true, false}}) {
    SCOPED_TRACE(::testing::Message() << "C " << c.C << " M " << c.M << " k " << c.k << " group " << c.group);
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> d(-127, 127);
    std::vector<int8_t> w(static_cast<size_t>(c.M * c.C / c.group * c.k * c.k));
    for (auto& v : w) v = static_cast<int8_t>(d(rng));
    const int64_t scales = c.per_channel ? c.M : 1;
    std::vector<float> s(static_cast<size_t>(scales));
    for (size_t i = 0; i < s.size(); ++i) s[i] = 0.0007f * static_cast<float>(i + 2);
    Graph g = WithIo({2, c.C, 11, 9});
    g.AddInitializer("Wq", Tensor::FromVector<int8_t>(w, {c.M, c.C / c.group, c.k, c.k}));
    g.AddInitializer("Wz", Tensor::FromVector<int8_t>({0}, {}));
    g.AddInitializer("Ws", c.per_channel ? Tensor::FromVector<float>(s, {1, c.M, 1, 1}) : Tensor::FromVector<float>(s, {}));
    g.AddInitializer("bias", RandomFloats({1, c.M, 1, 1}, 8));
    g.nodes.push_back(MakeNode("DynamicQuantizeLinear", {"X"}, {"Xq", "Xs", "Xz"}));
    Node conv = MakeNode("ConvInteger", {"Xq", "Wq", "Xz", "Wz"}, {"acc"});
    conv.attributes = {IntsAttr("kernel_shape", {c.k, c.k}), IntsAttr("pads", {c.pad, c.pad, c.pad, c.pad}),
                       IntsAttr("strides", {c.stride, c.stride}), IntAttr("group", c.group)};
    g.nodes.push_back(conv);
    Node cast = MakeNode("Cast", {"acc"}, {"accf"});
    cast.attributes.push_back(IntAttr("to", 1));
    g.nodes.push_back(cast);
    g.nodes.push_back(MakeNode("Mul", {"Xs", "Ws"}, {"S"}));
    const std::string scaled = c.with_bias ? "y0" : c.act == kNone ? "Y" : "y1";
    g.nodes.push_back(MakeNode("Mul", {"accf", "S"}, {scaled}));
    if (c.with_bias) g.nodes.push_back(MakeNode("Add", {"y0", "bias"}, {c.act == kNone ? "Y" : "y1"}));
    if (c.act == kRelu) g.nodes.push_back(MakeNode("Relu", {"y1"}, {"Y"}));
    if (c.act == kClip) {  // ReLU6 with opset-13 bounds
      g.AddInitializer("lo", Tensor::FromVector<float>({0.f}, {}));
      g.AddInitializer("hi", Tensor::FromVector<float>({0.5f}, {}));
      g.nodes.push_back(MakeNode("Clip", {"y1", "lo", "hi"}, {"Y"}));
    }
    const Model m = MakeModel(std::move(g), 13);
    Model lowered = m;
    ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
    EXPECT_EQ(CountOps(lowered, "ConvIntegerToFloat"), 1);
    EXPECT_EQ(CountOps(lowered, "ConvInteger"), 0);
    EXPECT_EQ(CountOps(lowered, "Add"), 0);
    EXPECT_EQ(CountOps(lowered, "Relu") + CountOps(lowered, "Clip"), 0);
    const Tensor x = RandomFloats({2, c.C, 11, 9}, 5, 2.f);
    const auto reference = RunModel(m, {{"X", x}}, /*optimize=*/false);
    const auto fused = RunModel(m, {{"X", x}}, /*optimize=*/true);
    ASSERT_EQ(fused.size(), 1u);
    ExpectBitIdentical(reference[0], fused[0]);
  }
}

// A bias that is not per channel (here per column, [M] broadcast over the width) stays an Add.
TEST(FuseQuantized, DynamicConvKeepsAnAddThatIsNotABias) {
  Graph g = WithIo({1, 4, 6, 6});
  g.AddInitializer("Wq", Tensor::FromVector<int8_t>(std::vector<int8_t>(6 * 4, 3), {6, 4, 1, 1}));
  g.AddInitializer("Ws", Tensor::FromVector<float>({0.01f}, {}));
  g.AddInitializer("cols", RandomFloats({6}, 3));
  g.nodes.push_back(MakeNode("DynamicQuantizeLinear", {"X"}, {"Xq", "Xs", "Xz"}));
  g.nodes.push_back(MakeNode("ConvInteger", {"Xq", "Wq", "Xz"}, {"acc"}));
  Node cast = MakeNode("Cast", {"acc"}, {"accf"});
  cast.attributes.push_back(IntAttr("to", 1));
  g.nodes.push_back(cast);
  g.nodes.push_back(MakeNode("Mul", {"Xs", "Ws"}, {"S"}));
  g.nodes.push_back(MakeNode("Mul", {"accf", "S"}, {"y0"}));
  g.nodes.push_back(MakeNode("Add", {"y0", "cols"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "ConvIntegerToFloat"), 1);
  EXPECT_EQ(CountOps(lowered, "Add"), 1);
  const Tensor x = RandomFloats({1, 4, 6, 6}, 7);
  ExpectBitIdentical(RunModel(m, {{"X", x}}, false)[0], RunModel(m, {{"X", x}}, true)[0]);
}

// Per-row (per-token) int8 activations expressed with standard ops.
TEST(FuseQuantized, PerRowInt8ActivationsAreFusedAndBitIdentical) {
  const Weights w(kK, kN, kN);
  Graph g = WithIo({kM, kK});
  w.AddTo(g);
  g.AddInitializer("c127", Tensor::FromVector<float>({127.f}, {}));
  g.AddInitializer("tiny", Tensor::FromVector<float>({1.17549435e-38f}, {}));
  g.AddInitializer("lo", Tensor::FromVector<float>({-127.f}, {}));
  g.AddInitializer("hi", Tensor::FromVector<float>({127.f}, {}));
  g.nodes.push_back(MakeNode("Abs", {"X"}, {"ax"}));
  Node rmax = MakeNode("ReduceMax", {"ax"}, {"amax"});
  rmax.attributes = {IntsAttr("axes", {-1}), IntAttr("keepdims", 1)};
  g.nodes.push_back(rmax);
  g.nodes.push_back(MakeNode("Div", {"amax", "c127"}, {"s0"}));
  g.nodes.push_back(MakeNode("Max", {"s0", "tiny"}, {"Srow"}));
  g.nodes.push_back(MakeNode("Div", {"X", "Srow"}, {"xs"}));
  g.nodes.push_back(MakeNode("Round", {"xs"}, {"xr"}));
  g.nodes.push_back(MakeNode("Clip", {"xr", "lo", "hi"}, {"xc"}));
  Node to_int8 = MakeNode("Cast", {"xc"}, {"Xq"});
  to_int8.attributes.push_back(IntAttr("to", static_cast<int64_t>(DType::kInt8)));
  g.nodes.push_back(to_int8);
  g.nodes.push_back(MakeNode("MatMulInteger", {"Xq", "Wq", "", "Wz"}, {"acc"}));
  Node cast = MakeNode("Cast", {"acc"}, {"accf"});
  cast.attributes.push_back(IntAttr("to", 1));
  g.nodes.push_back(cast);
  g.nodes.push_back(MakeNode("Mul", {"Srow", "Ws"}, {"S"}));
  g.nodes.push_back(MakeNode("Mul", {"accf", "S"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "MatMulIntegerToFloat"), 1);
  const Tensor x = RandomFloats({kM, kK}, 2, 3.f);
  ExpectBitIdentical(RunModel(m, {{"X", x}}, false)[0], RunModel(m, {{"X", x}}, true)[0]);
}

// int8 weights behind DequantizeLinear: executed as dynamic quantization, i.e. exactly the
// integer-ops graph with the same weights.
TEST(FuseQuantized, QdqWeightsRunAsDynamicInt8) {
  const Weights w(kK, kN, kN);
  Graph g = WithIo({kM, kK});
  w.AddTo(g);
  Node dq = MakeNode("DequantizeLinear", {"Wq", "Ws", "Wz"}, {"Wd"});
  dq.attributes.push_back(IntAttr("axis", 1));
  g.nodes.push_back(dq);
  g.nodes.push_back(MakeNode("MatMul", {"X", "Wd"}, {"y0"}));
  g.nodes.push_back(MakeNode("Add", {"y0", "bias"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "MatMulIntegerToFloat"), 1);
  EXPECT_EQ(CountOps(lowered, "DequantizeLinear"), 0);
  const Tensor x = RandomFloats({kM, kK}, 3);
  const auto fused = RunModel(m, {{"X", x}}, true);
  // The matmul is fused; the separate float Add stays an Add: compare against integer ops + Add.
  const auto reference = RunModel(IntegerOpsModel(w, true), {{"X", x}}, false);
  ExpectBitIdentical(reference[0], fused[0]);
  // And it is a close approximation of the float model.
  const auto float_run = RunModel(m, {{"X", x}}, false);
  ExpectCloseToFloat(float_run[0], fused[0]);
}

TEST(FuseQuantized, QdqWeightsGemmTransposedWithBeta) {
  const Weights w(kN, kK, kN);  // B stored [N, K] (transB = 1): per-row = per output column
  Graph g = WithIo({kM, kK});
  w.AddTo(g);
  Node dq = MakeNode("DequantizeLinear", {"Wq", "Ws", "Wz"}, {"Wd"});
  dq.attributes.push_back(IntAttr("axis", 0));
  g.nodes.push_back(dq);
  g.AddInitializer("C", RandomFloats({kN}, 12));
  Node gemm = MakeNode("Gemm", {"X", "Wd", "C"}, {"Y"});
  gemm.attributes = {IntAttr("transB", 1), FloatAttr("beta", 0.5f)};
  g.nodes.push_back(gemm);
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "MatMulIntegerToFloat"), 1);
  const Tensor x = RandomFloats({kM, kK}, 6);
  const auto fused = RunModel(m, {{"X", x}}, true);
  const auto float_run = RunModel(m, {{"X", x}}, false);
  ASSERT_EQ(fused.size(), 1u);
  EXPECT_EQ(fused[0].shape(), (Shape{kM, kN}));
  ExpectCloseToFloat(float_run[0], fused[0]);
  // Exact reference: transpose the weights into the integer-ops form with bias = beta * C.
  Weights wt(kK, kN, kN);
  std::vector<int8_t> t(static_cast<size_t>(kK * kN));
  for (int64_t n = 0; n < kN; ++n)
    for (int64_t k = 0; k < kK; ++k) t[k * kN + n] = w.q.data<int8_t>()[n * kK + k];
  wt.q = Tensor::FromVector<int8_t>(t, {kK, kN});
  wt.scale = w.scale;
  std::vector<float> bias(kN);
  const Tensor c = RandomFloats({kN}, 12);
  for (int64_t n = 0; n < kN; ++n) bias[n] = 0.5f * c.data<float>()[n];
  wt.bias = Tensor::FromVector<float>(bias, {kN});
  ExpectBitIdentical(RunModel(IntegerOpsModel(wt, true), {{"X", x}}, false)[0], fused[0]);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// Static QDQ: Q -> DQ -> Conv(DQ w, DQ b) -> Relu -> Q -> DQ -> MaxPool -> Q -> DQ.
Model StaticQdqConvModel() {
  const int64_t C = 3, M = 8;
  Graph g = WithIo({1, C, 12, 12});
  std::mt19937 rng(8);
  std::uniform_int_distribution<int> d(-127, 127);
  std::vector<int8_t> w(static_cast<size_t>(M * C * 9));
  for (auto& x : w) x = static_cast<int8_t>(d(rng));
  std::vector<float> ws(M);
  for (int64_t m = 0; m < M; ++m) ws[m] = 0.002f * static_cast<float>(m + 1);
  const float xs = 0.03f;
  std::vector<float> bs(M);
  std::vector<int32_t> b(M);
  for (int64_t m = 0; m < M; ++m) {
    bs[m] = xs * ws[m];
    b[m] = static_cast<int32_t>(m * 37) - 100;
  }
  g.AddInitializer("xs", Tensor::FromVector<float>({xs}, {}));
  g.AddInitializer("xz", Tensor::FromVector<uint8_t>({128}, {}));
  g.AddInitializer("wq", Tensor::FromVector<int8_t>(w, {M, C, 3, 3}));
  g.AddInitializer("ws", Tensor::FromVector<float>(ws, {M}));
  g.AddInitializer("wz", Tensor::FromVector<int8_t>(std::vector<int8_t>(M, 0), {M}));
  g.AddInitializer("bq", Tensor::FromVector<int32_t>(b, {M}));
  g.AddInitializer("bs", Tensor::FromVector<float>(bs, {M}));
  g.AddInitializer("ys", Tensor::FromVector<float>({0.05f}, {}));
  g.AddInitializer("yz", Tensor::FromVector<uint8_t>({0}, {}));
  g.nodes.push_back(MakeNode("QuantizeLinear", {"X", "xs", "xz"}, {"xq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"xq", "xs", "xz"}, {"xd"}));
  Node wdq = MakeNode("DequantizeLinear", {"wq", "ws", "wz"}, {"wd"});
  wdq.attributes.push_back(IntAttr("axis", 0));
  g.nodes.push_back(wdq);
  Node bdq = MakeNode("DequantizeLinear", {"bq", "bs"}, {"bd"});
  bdq.attributes.push_back(IntAttr("axis", 0));
  g.nodes.push_back(bdq);
  Node conv = MakeNode("Conv", {"xd", "wd", "bd"}, {"c"});
  conv.attributes = {IntsAttr("pads", {1, 1, 1, 1}), IntsAttr("kernel_shape", {3, 3})};
  g.nodes.push_back(conv);
  g.nodes.push_back(MakeNode("Relu", {"c"}, {"r"}));
  g.nodes.push_back(MakeNode("QuantizeLinear", {"r", "ys", "yz"}, {"rq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"rq", "ys", "yz"}, {"rd"}));
  Node pool = MakeNode("MaxPool", {"rd"}, {"p"});
  pool.attributes = {IntsAttr("kernel_shape", {2, 2}), IntsAttr("strides", {2, 2})};
  g.nodes.push_back(pool);
  g.nodes.push_back(MakeNode("QuantizeLinear", {"p", "ys", "yz"}, {"pq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"pq", "ys", "yz"}, {"Y"}));
  return MakeModel(std::move(g), 13);
}

TEST(FuseQuantized, StaticQdqConvReluPoolRunsInInt8WithinOneStep) {
  const Model m = StaticQdqConvModel();
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "QLinearConv"), 1);
  EXPECT_EQ(CountOps(lowered, "Conv"), 0);
  EXPECT_EQ(CountOps(lowered, "Relu"), 0);
  EXPECT_EQ(CountOps(lowered, "MaxPool"), 1);
  // Left: Q of the input, DQ of the output. Nothing in between goes back to float.
  EXPECT_EQ(CountOps(lowered, "QuantizeLinear"), 1);
  EXPECT_EQ(CountOps(lowered, "DequantizeLinear"), 1);
  const Tensor x = RandomFloats({1, 3, 12, 12}, 5, 1.5f);
  const auto qdq = RunModel(m, {{"X", x}}, false);
  const auto int8 = RunModel(m, {{"X", x}}, true);
  ASSERT_EQ(int8.size(), 1u);
  ASSERT_EQ(int8[0].shape(), (Shape{1, 8, 6, 6}));
  EXPECT_LE(testing::MaxAbsDiff(qdq[0], int8[0]), 0.05f * 1.0001f) << "more than one quantization step apart";
  float peak = 0;
  for (int64_t i = 0; i < int8[0].numel(); ++i) peak = std::max(peak, int8[0].data<float>()[i]);
  EXPECT_GT(peak, 0.5f);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// Static QDQ Gemm (transB, int32 bias) -> com.quantkit::QLinearMatMul, within one output step.
TEST(FuseQuantized, StaticQdqGemmRunsInInt8WithinOneStep) {
  const Weights w(kN, kK, kN);  // [N, K] for transB
  Graph g = WithIo({kM, kK});
  w.AddTo(g);
  const float xs = 0.02f, ys = 0.1f;
  std::vector<float> bs(kN);
  std::vector<int32_t> bq(kN);
  for (int64_t n = 0; n < kN; ++n) {
    bs[n] = xs * w.scale.data<float>()[n];
    bq[n] = static_cast<int32_t>(n * 53) - 300;
  }
  g.AddInitializer("xs", Tensor::FromVector<float>({xs}, {}));
  g.AddInitializer("xz", Tensor::FromVector<uint8_t>({120}, {}));
  g.AddInitializer("bq", Tensor::FromVector<int32_t>(bq, {kN}));
  g.AddInitializer("bs", Tensor::FromVector<float>(bs, {kN}));
  g.AddInitializer("ys", Tensor::FromVector<float>({ys}, {}));
  g.AddInitializer("yz", Tensor::FromVector<int8_t>({3}, {}));
  g.nodes.push_back(MakeNode("QuantizeLinear", {"X", "xs", "xz"}, {"xq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"xq", "xs", "xz"}, {"xd"}));
  Node wdq = MakeNode("DequantizeLinear", {"Wq", "Ws", "Wz"}, {"wd"});
  wdq.attributes.push_back(IntAttr("axis", 0));
  g.nodes.push_back(wdq);
  Node bdq = MakeNode("DequantizeLinear", {"bq", "bs"}, {"bd"});
  bdq.attributes.push_back(IntAttr("axis", 0));
  g.nodes.push_back(bdq);
  Node gemm = MakeNode("Gemm", {"xd", "wd", "bd"}, {"y"});
  gemm.attributes = {IntAttr("transB", 1)};
  g.nodes.push_back(gemm);
  g.nodes.push_back(MakeNode("QuantizeLinear", {"y", "ys", "yz"}, {"yq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"yq", "ys", "yz"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "QLinearMatMul"), 1);
  EXPECT_EQ(CountOps(lowered, "Gemm"), 0);
  const Tensor x = RandomFloats({kM, kK}, 31, 1.f);
  const auto qdq = RunModel(m, {{"X", x}}, false);
  const auto int8 = RunModel(m, {{"X", x}}, true);
  ASSERT_EQ(int8.size(), 1u);
  EXPECT_LE(testing::MaxAbsDiff(qdq[0], int8[0]), ys * 1.0001f);
  float peak = 0;
  for (int64_t i = 0; i < int8[0].numel(); ++i) peak = std::max(peak, std::fabs(int8[0].data<float>()[i]));
  EXPECT_GT(peak, 1.f);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// Static QDQ Add (with broadcasting) and Mul, each followed by Relu -> Q: bit-identical int8 ops.
TEST(FuseQuantized, StaticQdqAddMulAreBitIdentical) {
  // Broadcast rows, and same shapes longer than the kernel's 256-element chunks.
  const std::vector<std::pair<Shape, Shape>> shapes = {{{2, 3, 4, 5}, {3, 1, 1}}, {{2, 3, 20, 9}, {2, 3, 20, 9}}};
  for (const auto& [sa, sb] : shapes) {
    for (const char* op : {"Add", "Mul"}) {
      SCOPED_TRACE(op);
      Graph g;
      g.inputs.push_back(MakeValueInfo("A", DType::kFloat32, sa));
      g.inputs.push_back(MakeValueInfo("B", DType::kFloat32, sb));
      ValueInfo y;
      y.name = "Y";
      g.outputs.push_back(y);
      g.AddInitializer("as", Tensor::FromVector<float>({0.031f}, {}));
      g.AddInitializer("az", Tensor::FromVector<uint8_t>({100}, {}));
      g.AddInitializer("bs", Tensor::FromVector<float>({0.017f}, {}));
      g.AddInitializer("bz", Tensor::FromVector<int8_t>({-5}, {}));
      g.AddInitializer("ys", Tensor::FromVector<float>({0.04f}, {}));
      g.AddInitializer("yz", Tensor::FromVector<uint8_t>({30}, {}));
      g.nodes.push_back(MakeNode("QuantizeLinear", {"A", "as", "az"}, {"aq"}));
      g.nodes.push_back(MakeNode("DequantizeLinear", {"aq", "as", "az"}, {"ad"}));
      g.nodes.push_back(MakeNode("QuantizeLinear", {"B", "bs", "bz"}, {"bq"}));
      g.nodes.push_back(MakeNode("DequantizeLinear", {"bq", "bs", "bz"}, {"bd"}));
      g.nodes.push_back(MakeNode(op, {"ad", "bd"}, {"s"}));
      g.nodes.push_back(MakeNode("Relu", {"s"}, {"r"}));
      g.nodes.push_back(MakeNode("QuantizeLinear", {"r", "ys", "yz"}, {"rq"}));
      g.nodes.push_back(MakeNode("DequantizeLinear", {"rq", "ys", "yz"}, {"Y"}));
      const Model m = MakeModel(std::move(g), 13);
      Model lowered = m;
      ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
      EXPECT_EQ(CountOps(lowered, std::string("QLinear") + op), 1);
      EXPECT_EQ(CountOps(lowered, "Relu"), 0);
      const Tensor a = RandomFloats(sa, 41, 2.f), b = RandomFloats(sb, 42, 2.f);
      const auto ref = RunModel(m, {{"A", a}, {"B", b}}, false);
      const auto fused = RunModel(m, {{"A", a}, {"B", b}}, true);
      ASSERT_EQ(fused.size(), 1u);
      ExpectBitIdentical(ref[0], fused[0]);
    }
  }
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

TEST(FuseQuantized, StaticQdqConcatWithSharedScaleRunsOnInt8) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("A", DType::kFloat32, {1, 2, 3}));
  g.inputs.push_back(MakeValueInfo("B", DType::kFloat32, {1, 4, 3}));
  ValueInfo y;
  y.name = "Y";
  g.outputs.push_back(y);
  g.AddInitializer("s", Tensor::FromVector<float>({0.02f}, {}));
  g.AddInitializer("z", Tensor::FromVector<uint8_t>({128}, {}));
  for (const char* in : {"A", "B"}) {
    g.nodes.push_back(MakeNode("QuantizeLinear", {in, "s", "z"}, {std::string(in) + "q"}));
    g.nodes.push_back(MakeNode("DequantizeLinear", {std::string(in) + "q", "s", "z"}, {std::string(in) + "d"}));
  }
  Node cat = MakeNode("Concat", {"Ad", "Bd"}, {"c"});
  cat.attributes.push_back(IntAttr("axis", 1));
  g.nodes.push_back(cat);
  g.nodes.push_back(MakeNode("QuantizeLinear", {"c", "s", "z"}, {"cq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"cq", "s", "z"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "QuantizeLinear"), 2) << "only the graph inputs are quantized";
  EXPECT_EQ(CountOps(lowered, "DequantizeLinear"), 1) << "one dequantize, after the int8 Concat";
  const Tensor a = RandomFloats({1, 2, 3}, 51), b = RandomFloats({1, 4, 3}, 52);
  ExpectBitIdentical(RunModel(m, {{"A", a}, {"B", b}}, false)[0], RunModel(m, {{"A", a}, {"B", b}}, true)[0]);
}

// A Concat with a constant float input (BlazeFace pads channels with a block of zeros; here also
// values that are not on the quantization grid, and one past its range) runs on int8 too: the
// constant is quantized once, and Q(Concat(DQ(x), c)) = Concat(x, Q(c)) exactly.
TEST(FuseQuantized, StaticQdqConcatWithAConstantRunsOnInt8) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("A", DType::kFloat32, {1, 2, 3}));
  ValueInfo y;
  y.name = "Y";
  g.outputs.push_back(y);
  g.AddInitializer("s", Tensor::FromVector<float>({0.02f}, {}));
  g.AddInitializer("z", Tensor::FromVector<uint8_t>({128}, {}));
  g.AddInitializer("pad", Tensor::FromVector<float>({0.f, 0.f, 0.f, 0.013f, -0.5f, 9.f}, {1, 2, 3}));
  g.nodes.push_back(MakeNode("QuantizeLinear", {"A", "s", "z"}, {"Aq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"Aq", "s", "z"}, {"Ad"}));
  Node cat = MakeNode("Concat", {"Ad", "pad"}, {"c"});
  cat.attributes.push_back(IntAttr("axis", 1));
  g.nodes.push_back(cat);
  g.nodes.push_back(MakeNode("QuantizeLinear", {"c", "s", "z"}, {"cq"}));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"cq", "s", "z"}, {"Y"}));
  const Model m = MakeModel(std::move(g), 13);
  Model lowered = m;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(CountOps(lowered, "QuantizeLinear"), 1) << "only the graph input is quantized";
  EXPECT_EQ(CountOps(lowered, "DequantizeLinear"), 1) << "one dequantize, after the int8 Concat";
  const Tensor a = RandomFloats({1, 2, 3}, 53);
  ExpectBitIdentical(RunModel(m, {{"A", a}}, false)[0], RunModel(m, {{"A", a}}, true)[0]);
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// DequantizeLinear -> elementwise float ops with scalar constants -> QuantizeLinear becomes one
// table lookup (hard-swish's x + 3 -> Clip(0, 6) -> / 6; a sigmoid scaled by a [1,1,1,1] constant
// that raises the rank), bit-identical; a chain whose intermediate is also read elsewhere stays.
TEST(FuseQuantized, ElementwiseChainsBetweenDequantizeAndQuantizeBecomeLookups) {
  for (int variant = 0; variant < 3; ++variant) {
    Graph g;
    g.inputs.push_back(MakeValueInfo("A", DType::kFloat32, {3, 50}));
    ValueInfo y;
    y.name = "Y";
    g.outputs.push_back(y);
    g.AddInitializer("as", Tensor::FromVector<float>({0.05f}, {}));
    g.AddInitializer("az", Tensor::FromVector<uint8_t>({120}, {}));
    g.AddInitializer("ys", Tensor::FromVector<float>({0.0047f}, {}));
    g.AddInitializer("yz", Tensor::FromVector<int8_t>({-7}, {}));
    g.AddInitializer("three", Tensor::FromVector<float>({3.f}, {}));
    g.AddInitializer("zero", Tensor::FromVector<float>({0.f}, {}));
    g.AddInitializer("six", Tensor::FromVector<float>({6.f}, {}));
    g.AddInitializer("k", Tensor::FromVector<float>({0.7f}, {1, 1, 1, 1}));
    g.nodes.push_back(MakeNode("QuantizeLinear", {"A", "as", "az"}, {"aq"}));
    g.nodes.push_back(MakeNode("DequantizeLinear", {"aq", "as", "az"}, {"ad"}));
    if (variant == 1) {
      g.nodes.push_back(MakeNode("Sigmoid", {"ad"}, {"t"}));
      g.nodes.push_back(MakeNode("Mul", {"k", "t"}, {"f"}));
    } else {
      g.nodes.push_back(MakeNode("Add", {"ad", "three"}, {"t"}));
      g.nodes.push_back(MakeNode("Clip", {"t", "zero", "six"}, {"c"}));
      g.nodes.push_back(MakeNode("Div", {"c", "six"}, {"f"}));
    }
    g.nodes.push_back(MakeNode("QuantizeLinear", {"f", "ys", "yz"}, {"fq"}));
    g.nodes.push_back(MakeNode("DequantizeLinear", {"fq", "ys", "yz"}, {"Y"}));
    if (variant == 2) {  // "t" also leaves the graph: the chain must not be fused
      ValueInfo t;
      t.name = "t";
      g.outputs.push_back(t);
    }
    const Model m = MakeModel(std::move(g), 13);
    Model lowered = m;
    ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
    EXPECT_EQ(CountOps(lowered, "QLinearLookup"), variant == 2 ? 0 : 1) << "variant " << variant;
    const Tensor a = RandomFloats({3, 50}, 43, 4.f);
    const auto ref = RunModel(m, {{"A", a}}, false);
    const auto fused = RunModel(m, {{"A", a}}, true);
    ASSERT_EQ(fused.size(), ref.size());
    EXPECT_EQ(fused[0].shape(), ref[0].shape());
    ExpectBitIdentical(ref[0], fused[0]);
  }
}

// A DAG of elementwise ops of one dequantized tensor (hardswish written as x * Clip(x + 3, 0, 6) / 6,
// then a scalar affine) is one lookup too; a second quantized source, or an inner value that also
// feeds something else, keeps it float.
TEST(FuseQuantized, ElementwiseDagOfOneTensorBecomesOneLookup) {
  for (int variant = 0; variant < 3; ++variant) {
    Graph g;
    g.inputs.push_back(MakeValueInfo("A", DType::kFloat32, {2, 3, 40}));
    g.inputs.push_back(MakeValueInfo("B", DType::kFloat32, {2, 3, 40}));
    ValueInfo y;
    y.name = "Y";
    g.outputs.push_back(y);
    g.AddInitializer("as", Tensor::FromVector<float>({0.043f}, {}));
    g.AddInitializer("az", Tensor::FromVector<uint8_t>({131}, {}));
    g.AddInitializer("ys", Tensor::FromVector<float>({0.021f}, {}));
    g.AddInitializer("yz", Tensor::FromVector<uint8_t>({12}, {}));
    g.AddInitializer("three", Tensor::FromVector<float>({3.f}, {}));
    g.AddInitializer("zero", Tensor::FromVector<float>({0.f}, {}));
    g.AddInitializer("six", Tensor::FromVector<float>({6.f}, {}));
    g.AddInitializer("w", Tensor::FromVector<float>({1.3f}, {1}));
    g.AddInitializer("b", Tensor::FromVector<float>({-0.2f}, {1}));
    g.nodes.push_back(MakeNode("QuantizeLinear", {"A", "as", "az"}, {"aq"}));
    g.nodes.push_back(MakeNode("DequantizeLinear", {"aq", "as", "az"}, {"ad"}));
    std::string other = "ad";
    if (variant == 1) {  // the Mul's second operand comes from another quantized tensor
      g.nodes.push_back(MakeNode("QuantizeLinear", {"B", "as", "az"}, {"bq"}));
      g.nodes.push_back(MakeNode("DequantizeLinear", {"bq", "as", "az"}, {"bd"}));
      other = "bd";
    }
    g.nodes.push_back(MakeNode("Add", {"ad", "three"}, {"t"}));
    g.nodes.push_back(MakeNode("Clip", {"t", "zero", "six"}, {"c"}));
    g.nodes.push_back(MakeNode("Mul", {other, "c"}, {"m"}));
    g.nodes.push_back(MakeNode("Div", {"m", "six"}, {"h"}));
    g.nodes.push_back(MakeNode("Mul", {"w", "h"}, {"hw"}));
    g.nodes.push_back(MakeNode("Add", {"hw", "b"}, {"f"}));
    g.nodes.push_back(MakeNode("QuantizeLinear", {"f", "ys", "yz"}, {"fq"}));
    g.nodes.push_back(MakeNode("DequantizeLinear", {"fq", "ys", "yz"}, {"Y"}));
    if (variant == 2) {  // an inner value ("c") also feeds another output
      ValueInfo extra;
      extra.name = "E";
      g.outputs.push_back(extra);
      g.nodes.push_back(MakeNode("Neg", {"c"}, {"E"}));
    }
    const Model m = MakeModel(std::move(g), 13);
    Model lowered = m;
    ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
    EXPECT_EQ(CountOps(lowered, "QLinearLookup"), variant == 0 ? 1 : 0) << "variant " << variant;
    EXPECT_EQ(CountOps(lowered, "Clip"), variant == 0 ? 0 : 1) << "variant " << variant;
    const Tensor a = RandomFloats({2, 3, 40}, 47, 6.f), bt = RandomFloats({2, 3, 40}, 48, 6.f);
    const auto ref = RunModel(m, {{"A", a}, {"B", bt}}, false);
    const auto fused = RunModel(m, {{"A", a}, {"B", bt}}, true);
    ASSERT_EQ(fused.size(), ref.size());
    for (size_t k = 0; k < ref.size(); ++k) {
      EXPECT_EQ(fused[k].shape(), ref[k].shape());
      ExpectBitIdentical(ref[k], fused[k]);
    }
  }
}

}  // namespace
}  // namespace quantkit
