// RNN, GRU, LSTM: compared with a naive per-element implementation of the ONNX equations, plus
// properties (reverse == forward on reversed input, bidirectional == both, sequence_lens, layout).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>

#include <cmath>
#include <functional>
#include <map>

#include "test_util.h"

namespace quantkit {
namespace {

using testing::MakeModel;
using testing::MakeNode;
using testing::IntAttr;
using testing::FloatAttr;
using testing::MakeValueInfo;

using Act = std::function<float(float)>;
float Sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }

struct Rng {
  uint32_t s = 12345;
  float Next() {
    s = s * 1664525u + 1013904223u;
    return static_cast<float>((s >> 8) & 0xffff) / 32768.0f - 1.0f;  // [-1, 1)
  }
  std::vector<float> Vec(size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = Next();
    return v;
  }
};

Attribute StrAttr(const std::string& name, const std::string& v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kString;
  a.s = v;
  return a;
}
Attribute StrsAttr(const std::string& name, std::vector<std::string> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kStrings;
  a.strings = std::move(v);
  return a;
}
Attribute FloatsAttr(const std::string& name, std::vector<float> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kFloats;
  a.floats = std::move(v);
  return a;
}

enum class Cell { kRnn, kGru, kLstm };
int Gates(Cell c) { return c == Cell::kRnn ? 1 : c == Cell::kGru ? 3 : 4; }
const char* OpName(Cell c) { return c == Cell::kRnn ? "RNN" : c == Cell::kGru ? "GRU" : "LSTM"; }

// Naive single-direction, single-batch-row reference. W [G*H, I], R [G*H, H], B [2*G*H], P [3H].
// xs: inputs in processing order. Returns h after each step; h/c updated in place.
struct RefParams {
  Cell cell;
  int64_t H, I;
  const float *W, *R, *B, *P;  // B and P may be null
  std::vector<Act> acts;       // f, g, h
  float clip = 0;
  bool lbr = false, input_forget = false;
};

std::vector<std::vector<float>> RefSequence(const RefParams& p, const std::vector<const float*>& xs,
                                            std::vector<float>& h, std::vector<float>& c) {
  const int64_t H = p.H, I = p.I;
  auto clip = [&](float v) { return p.clip > 0 ? std::clamp(v, -p.clip, p.clip) : v; };
  // x . W[row] + bias, h . R[row] + rbias for gate row `row`.
  auto xw = [&](const float* x, int64_t row) {
    float s = p.B ? p.B[row] : 0.0f;
    for (int64_t k = 0; k < I; ++k) s += x[k] * p.W[row * I + k];
    return s;
  };
  auto hr = [&](const std::vector<float>& hv, int64_t row) {
    const int64_t G = Gates(p.cell);
    float s = p.B ? p.B[G * H + row] : 0.0f;
    for (int64_t k = 0; k < H; ++k) s += hv[k] * p.R[row * H + k];
    return s;
  };
  std::vector<std::vector<float>> out;
  for (const float* x : xs) {
    std::vector<float> hn(H), cn(H);
    for (int64_t j = 0; j < H; ++j) {
      if (p.cell == Cell::kRnn) {
        hn[j] = p.acts[0](clip(xw(x, j) + hr(h, j)));
      } else if (p.cell == Cell::kGru) {
        const float z = p.acts[0](clip(xw(x, j) + hr(h, j)));
        const float r = p.acts[0](clip(xw(x, H + j) + hr(h, H + j)));
        float pre;
        if (p.lbr) {
          pre = xw(x, 2 * H + j) + r * hr(h, 2 * H + j);
        } else {
          std::vector<float> rh(H);
          for (int64_t k = 0; k < H; ++k) {
            const float rk = p.acts[0](clip(xw(x, H + k) + hr(h, H + k)));
            rh[k] = rk * h[k];
          }
          pre = xw(x, 2 * H + j) + hr(rh, 2 * H + j);
        }
        const float hh = p.acts[1](clip(pre));
        hn[j] = (1 - z) * hh + z * h[j];
      } else {
        const float pi = p.P ? p.P[j] : 0, po = p.P ? p.P[H + j] : 0, pf = p.P ? p.P[2 * H + j] : 0;
        const float i = p.acts[0](clip(xw(x, j) + hr(h, j) + pi * c[j]));
        const float f = p.input_forget ? 1 - i : p.acts[0](clip(xw(x, 2 * H + j) + hr(h, 2 * H + j) + pf * c[j]));
        const float g = p.acts[1](clip(xw(x, 3 * H + j) + hr(h, 3 * H + j)));
        cn[j] = f * c[j] + i * g;
        const float o = p.acts[0](clip(xw(x, H + j) + hr(h, H + j) + po * cn[j]));
        hn[j] = o * p.acts[2](cn[j]);
      }
    }
    h = hn;
    if (p.cell == Cell::kLstm) c = cn;
    out.push_back(hn);
  }
  return out;
}

// A full test problem: inputs and the expected outputs from the reference.
struct Problem {
  Cell cell = Cell::kLstm;
  int64_t S = 4, B = 3, I = 3, H = 2;
  int dirs = 1;
  std::string direction = "forward";
  bool with_bias = true, with_h0 = true, with_c0 = true, with_p = false;
  std::vector<int32_t> lens;  // empty = absent
  std::vector<Attribute> attrs;
  std::vector<std::vector<Act>> ref_acts;  // per direction
  float clip = 0;
  bool lbr = false, input_forget = false;
  int64_t layout = 0;
  bool const_weights = false;
  int threads = 2;

  std::vector<float> x, w, r, b, h0, c0, p;  // layout-0 data

  void Generate(uint32_t seed) {
    Rng rng;
    rng.s = seed;
    const int64_t G = Gates(cell);
    x = rng.Vec(S * B * I);
    w = rng.Vec(dirs * G * H * I);
    r = rng.Vec(dirs * G * H * H);
    b = rng.Vec(dirs * 2 * G * H);
    h0 = rng.Vec(dirs * B * H);
    c0 = rng.Vec(dirs * B * H);
    p = rng.Vec(dirs * 3 * H);
  }

  // Expected Y [S, D, B, H], Y_h [D, B, H], Y_c [D, B, H] (layout 0).
  void Expected(std::vector<float>* y, std::vector<float>* yh, std::vector<float>* yc) const {
    const int64_t G = Gates(cell);
    y->assign(S * dirs * B * H, 0.0f);
    yh->assign(dirs * B * H, 0.0f);
    yc->assign(dirs * B * H, 0.0f);
    for (int d = 0; d < dirs; ++d) {
      const bool rev = direction == "reverse" || d == 1;
      RefParams rp{cell, H, I, w.data() + d * G * H * I, r.data() + d * G * H * H,
                   with_bias ? b.data() + d * 2 * G * H : nullptr, with_p ? p.data() + d * 3 * H : nullptr,
                   ref_acts[d], clip, lbr, input_forget};
      for (int64_t bb = 0; bb < B; ++bb) {
        const int64_t L = lens.empty() ? S : lens[bb];
        std::vector<const float*> xs;
        std::vector<int64_t> ts;
        for (int64_t s = 0; s < L; ++s) {
          const int64_t t = rev ? L - 1 - s : s;
          xs.push_back(x.data() + (t * B + bb) * I);
          ts.push_back(t);
        }
        std::vector<float> h(H, 0.0f), c(H, 0.0f);
        if (with_h0) h.assign(h0.begin() + (d * B + bb) * H, h0.begin() + (d * B + bb + 1) * H);
        if (with_c0) c.assign(c0.begin() + (d * B + bb) * H, c0.begin() + (d * B + bb + 1) * H);
        auto hs = RefSequence(rp, xs, h, c);
        for (size_t s = 0; s < hs.size(); ++s) {
          std::copy(hs[s].begin(), hs[s].end(), y->begin() + ((ts[s] * dirs + d) * B + bb) * H);
        }
        std::copy(h.begin(), h.end(), yh->begin() + (d * B + bb) * H);
        std::copy(c.begin(), c.end(), yc->begin() + (d * B + bb) * H);
      }
    }
  }

  StatusOr<std::vector<Tensor>> Run() const {
    const int64_t G = Gates(cell);
    Graph g;
    std::vector<std::pair<std::string, Tensor>> feeds;
    std::vector<std::string> ins(8, "");
    auto add = [&](size_t idx, const std::string& name, Tensor t, bool constant) {
      ins[idx] = name;
      if (constant) {
        g.AddInitializer(name, t);
        g.initializer_order.push_back(name);
        return;
      }
      g.inputs.push_back(MakeValueInfo(name, t.dtype(), t.shape()));
      feeds.emplace_back(name, std::move(t));
    };
    // Layout conversion for X and the initial states.
    std::vector<float> xl = x, h0l = h0, c0l = c0;
    Shape xs{S, B, I}, hs{dirs, B, H};
    if (layout == 1) {
      xs = {B, S, I};
      hs = {B, dirs, H};
      for (int64_t t = 0; t < S; ++t)
        for (int64_t bb = 0; bb < B; ++bb)
          for (int64_t i = 0; i < I; ++i) xl[(bb * S + t) * I + i] = x[(t * B + bb) * I + i];
      for (int d = 0; d < dirs; ++d)
        for (int64_t bb = 0; bb < B; ++bb)
          for (int64_t j = 0; j < H; ++j) {
            h0l[(bb * dirs + d) * H + j] = h0[(d * B + bb) * H + j];
            c0l[(bb * dirs + d) * H + j] = c0[(d * B + bb) * H + j];
          }
    }
    add(0, "X", Tensor::FromVector<float>(xl, xs), false);
    add(1, "W", Tensor::FromVector<float>(w, {dirs, G * H, I}), const_weights);
    add(2, "R", Tensor::FromVector<float>(r, {dirs, G * H, H}), const_weights);
    if (with_bias) add(3, "B", Tensor::FromVector<float>(b, {dirs, 2 * G * H}), const_weights);
    if (!lens.empty()) add(4, "lens", Tensor::FromVector<int32_t>(lens, {B}), false);
    if (with_h0) add(5, "h0", Tensor::FromVector<float>(h0l, hs), false);
    if (cell == Cell::kLstm && with_c0) add(6, "c0", Tensor::FromVector<float>(c0l, hs), false);
    if (cell == Cell::kLstm && with_p) add(7, "P", Tensor::FromVector<float>(p, {dirs, 3 * H}), false);
    const size_t n_in = cell == Cell::kLstm ? 8 : 6;
    ins.resize(n_in);
    while (!ins.empty() && ins.back().empty()) ins.pop_back();
    std::vector<std::string> outs = {"Y", "Y_h"};
    if (cell == Cell::kLstm) outs.push_back("Y_c");
    Node n = MakeNode(OpName(cell), ins, outs);
    n.attributes = attrs;
    n.attributes.push_back(IntAttr("hidden_size", H));
    n.attributes.push_back(StrAttr("direction", direction));
    if (layout) n.attributes.push_back(IntAttr("layout", layout));
    if (clip > 0) n.attributes.push_back(FloatAttr("clip", clip));
    if (lbr) n.attributes.push_back(IntAttr("linear_before_reset", 1));
    if (input_forget) n.attributes.push_back(IntAttr("input_forget", 1));
    g.nodes.push_back(n);
    for (const auto& o : outs) {
      ValueInfo vi;
      vi.name = o;
      g.outputs.push_back(vi);
    }
    SessionOptions opts;
    opts.optimize = false;
    opts.threads = threads;
    QK_ASSIGN_OR_RETURN(auto session, Session::Create(MakeModel(std::move(g), 14), opts));
    std::vector<Tensor> result;
    QK_RETURN_IF_ERROR(session->Run(feeds, &result));
    return result;
  }

  void Check() const {
    std::vector<float> y, yh, yc;
    Expected(&y, &yh, &yc);
    auto out = Run();
    ASSERT_TRUE(out.ok()) << out.status().message();
    const int64_t D = dirs;
    auto check = [&](const Tensor& got, const std::vector<float>& want, const Shape& shape0, const char* what,
                     bool is_y) {
      // Convert expectation to the requested layout.
      std::vector<float> w2 = want;
      Shape shape = shape0;
      if (layout == 1) {
        if (is_y) {
          shape = {B, S, D, H};
          for (int64_t t = 0; t < S; ++t)
            for (int64_t d = 0; d < D; ++d)
              for (int64_t bb = 0; bb < B; ++bb)
                for (int64_t j = 0; j < H; ++j)
                  w2[((bb * S + t) * D + d) * H + j] = want[((t * D + d) * B + bb) * H + j];
        } else {
          shape = {B, D, H};
          for (int64_t d = 0; d < D; ++d)
            for (int64_t bb = 0; bb < B; ++bb)
              for (int64_t j = 0; j < H; ++j) w2[(bb * D + d) * H + j] = want[(d * B + bb) * H + j];
        }
      }
      ASSERT_EQ(got.shape(), shape) << what;
      ASSERT_EQ(got.dtype(), DType::kFloat32);
      for (int64_t i = 0; i < got.numel(); ++i) {
        ASSERT_NEAR(got.data<float>()[i], w2[i], 2e-5f) << what << " element " << i;
      }
    };
    check((*out)[0], y, {S, D, B, H}, "Y", true);
    check((*out)[1], yh, {D, B, H}, "Y_h", false);
    if (cell == Cell::kLstm) check((*out)[2], yc, {D, B, H}, "Y_c", false);
  }
};

const Act kTanh = [](float v) { return std::tanh(v); };
const Act kSig = Sigm;

TEST(Rnn, HandComputedTinyRnn) {
  // hidden 1, input 1: h1 = tanh(0.5*1 + 0.1), h2 = tanh(0.5*2 + 0.25*h1 + 0.1).
  Problem pr;
  pr.cell = Cell::kRnn;
  pr.S = 2, pr.B = 1, pr.I = 1, pr.H = 1;
  pr.x = {1, 2};
  pr.w = {0.5f};
  pr.r = {0.25f};
  pr.b = {0.1f, 0.0f};
  pr.h0 = {0};
  pr.c0 = {0};
  pr.p = {0, 0, 0};
  pr.with_h0 = false;
  auto out = pr.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  const float h1 = std::tanh(0.6f), h2 = std::tanh(1.0f + 0.25f * h1 + 0.1f);
  EXPECT_NEAR((*out)[0].data<float>()[0], h1, 1e-6f);
  EXPECT_NEAR((*out)[0].data<float>()[1], h2, 1e-6f);
  EXPECT_NEAR((*out)[1].data<float>()[0], h2, 1e-6f);
}

TEST(Lstm, BidirectionalWithPeepholesSeqLensAndStates) {
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.dirs = 2;
  pr.direction = "bidirectional";
  pr.with_p = true;
  pr.lens = {4, 2, 1};
  pr.ref_acts = {{kSig, kTanh, kTanh}, {kSig, kTanh, kTanh}};
  pr.Generate(1);
  pr.Check();
}

TEST(Lstm, ReverseConstantWeightsNoOptionalInputs) {
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.direction = "reverse";
  pr.with_bias = false;
  pr.with_h0 = false;
  pr.with_c0 = false;
  pr.const_weights = true;
  pr.S = 5, pr.B = 2, pr.I = 7, pr.H = 9;
  pr.ref_acts = {{kSig, kTanh, kTanh}};
  pr.Generate(2);
  pr.Check();
}

TEST(Lstm, ClipInputForgetAndCustomActivations) {
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.clip = 0.7f;
  pr.input_forget = true;
  pr.with_p = true;
  // HardSigmoid(alpha 0.3, beta 0.4), Tanh, Softsign; alpha/beta are consumed by HardSigmoid only.
  pr.attrs = {StrsAttr("activations", {"HardSigmoid", "Tanh", "Softsign"}), FloatsAttr("activation_alpha", {0.3f}),
              FloatsAttr("activation_beta", {0.4f})};
  pr.ref_acts = {{[](float v) { return std::clamp(0.3f * v + 0.4f, 0.0f, 1.0f); }, kTanh,
                  [](float v) { return v / (1 + std::fabs(v)); }}};
  pr.Generate(3);
  pr.Check();
}

TEST(Lstm, LayoutOneMatchesLayoutZero) {
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.dirs = 2;
  pr.direction = "bidirectional";
  pr.layout = 1;
  pr.lens = {3, 4, 2};
  pr.ref_acts = {{kSig, kTanh, kTanh}, {kSig, kTanh, kTanh}};
  pr.Generate(4);
  pr.Check();
}

TEST(Gru, BidirectionalSeqLensBothResetModes) {
  for (bool lbr : {false, true}) {
    SCOPED_TRACE(lbr ? "linear_before_reset=1" : "linear_before_reset=0");
    Problem pr;
    pr.cell = Cell::kGru;
    pr.dirs = 2;
    pr.direction = "bidirectional";
    pr.lbr = lbr;
    pr.lens = {2, 4, 3};
    pr.H = 5;
    pr.ref_acts = {{kSig, kTanh}, {kSig, kTanh}};
    pr.Generate(lbr ? 5 : 6);
    pr.Check();
  }
}

TEST(Lstm, LargerSizesThroughTheSharedGemm) {
  // Big enough that the projection and the recurrent multiplies go through kernels::Sgemm.
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.dirs = 2;
  pr.direction = "bidirectional";
  pr.S = 6, pr.B = 8, pr.I = 40, pr.H = 40;
  pr.with_p = true;
  pr.lens = {6, 5, 6, 1, 2, 6, 3, 4};
  pr.ref_acts = {{kSig, kTanh, kTanh}, {kSig, kTanh, kTanh}};
  pr.Generate(12);
  pr.Check();
}

TEST(Gru, LargerSizesThroughTheSharedGemm) {
  for (bool lbr : {false, true}) {
    Problem pr;
    pr.cell = Cell::kGru;
    pr.S = 5, pr.B = 8, pr.I = 33, pr.H = 48;
    pr.lbr = lbr;
    pr.const_weights = true;
    pr.ref_acts = {{kSig, kTanh}};
    pr.Generate(13);
    pr.Check();
  }
}

TEST(Lstm, ConstantWeightsBatchOneAndEightUsePackedRecurrentWeights) {
  // Constant R: packed at session creation; one batch row per step goes through the packed
  // vector product, eight through the packed GEMM (LSTM, and GRU with linear_before_reset).
  for (int64_t batch : {1, 8}) {
    for (Cell cell : {Cell::kLstm, Cell::kGru}) {
      Problem pr;
      pr.cell = cell;
      pr.dirs = 2;
      pr.direction = "bidirectional";
      pr.S = 7, pr.B = batch, pr.I = 24, pr.H = 40;
      pr.lbr = true;
      pr.const_weights = true;
      pr.ref_acts = cell == Cell::kLstm ? std::vector<std::vector<Act>>{{kSig, kTanh, kTanh}, {kSig, kTanh, kTanh}}
                                        : std::vector<std::vector<Act>>{{kSig, kTanh}, {kSig, kTanh}};
      pr.Generate(static_cast<uint32_t>(14 + batch));
      pr.Check();
    }
  }
}

// One batch row, constant weights, hidden size a multiple of 64 (256: steps of 256K multiply-adds
// and up are split), two threads: each step is one parallel region (blocks of 64 units: their
// gates' recurrent sums, then their cell update). The
// same bits as one thread's GEMV-then-update, with peepholes, clip, both directions and a sequence
// shorter than the input; and the reference values.
TEST(Lstm, StepSplitOverThreadsGivesOneThreadsBits) {
  Problem pr;
  pr.cell = Cell::kLstm;
  pr.dirs = 2;
  pr.direction = "bidirectional";
  pr.S = 7, pr.B = 1, pr.I = 16, pr.H = 256;
  pr.with_p = true;
  pr.clip = 2.5f;
  pr.lens = {5};
  pr.const_weights = true;
  pr.ref_acts = {{kSig, kTanh, kTanh}, {kSig, kTanh, kTanh}};
  pr.Generate(21);
  pr.Check();
  auto two = pr.Run();
  pr.threads = 1;
  auto one = pr.Run();
  ASSERT_TRUE(one.ok() && two.ok());
  ASSERT_EQ(one->size(), two->size());
  for (size_t o = 0; o < one->size(); ++o) {
    ASSERT_EQ((*one)[o].shape(), (*two)[o].shape());
    EXPECT_EQ(std::memcmp((*one)[o].raw_data(), (*two)[o].raw_data(), (*one)[o].nbytes()), 0) << "output " << o;
  }
}

TEST(Gru, LayoutOneReverseWithClip) {
  Problem pr;
  pr.cell = Cell::kGru;
  pr.direction = "reverse";
  pr.layout = 1;
  pr.clip = 0.5f;
  pr.ref_acts = {{kSig, kTanh}};
  pr.Generate(7);
  pr.Check();
}

TEST(Rnn, BidirectionalActivationsWithAlphaBeta) {
  Problem pr;
  pr.cell = Cell::kRnn;
  pr.dirs = 2;
  pr.direction = "bidirectional";
  pr.lens = {1, 4, 3};
  // Forward LeakyRelu(0.1), reverse ScaledTanh(alpha 2, beta 0.5).
  pr.attrs = {StrsAttr("activations", {"LeakyRelu", "ScaledTanh"}), FloatsAttr("activation_alpha", {0.1f, 2.0f}),
              FloatsAttr("activation_beta", {0.5f})};
  pr.ref_acts = {{[](float v) { return v >= 0 ? v : 0.1f * v; }},
                 {[](float v) { return 2.0f * std::tanh(0.5f * v); }}};
  pr.Generate(8);
  pr.Check();
}

TEST(Rnn, OtherActivations) {
  const std::vector<std::pair<std::string, Act>> acts = {
      {"Relu", [](float v) { return std::max(v, 0.0f); }},
      {"Affine", [](float v) { return 1.0f * v + 0.0f; }},
      {"ThresholdedRelu", [](float v) { return v > 1.0f ? v : 0.0f; }},
      {"Elu", [](float v) { return v >= 0 ? v : 1.0f * (std::exp(v) - 1); }},
      {"Softplus", [](float v) { return std::log1p(std::exp(v)); }},
      {"Sigmoid", kSig},
  };
  for (const auto& [name, fn] : acts) {
    SCOPED_TRACE(name);
    Problem pr;
    pr.cell = Cell::kRnn;
    pr.attrs = {StrsAttr("activations", {name})};
    pr.ref_acts = {{fn}};
    pr.Generate(9);
    pr.Check();
  }
}

TEST(Rnn, ReverseEqualsForwardOnReversedInput) {
  Problem fwd;
  fwd.cell = Cell::kRnn;
  fwd.ref_acts = {{kTanh}};
  fwd.Generate(10);
  Problem rev = fwd;
  rev.direction = "reverse";
  // Reverse the time axis of X for the forward run.
  for (int64_t t = 0; t < fwd.S; ++t)
    for (int64_t i = 0; i < fwd.B * fwd.I; ++i) fwd.x[t * fwd.B * fwd.I + i] = rev.x[(fwd.S - 1 - t) * fwd.B * fwd.I + i];
  auto a = fwd.Run();
  auto b = rev.Run();
  ASSERT_TRUE(a.ok() && b.ok());
  for (int64_t i = 0; i < (*a)[1].numel(); ++i) EXPECT_FLOAT_EQ((*a)[1].data<float>()[i], (*b)[1].data<float>()[i]);
  // Y of the reverse run at time t equals Y of the forward run at S-1-t.
  const int64_t row = fwd.B * fwd.H;
  for (int64_t t = 0; t < fwd.S; ++t)
    for (int64_t i = 0; i < row; ++i)
      EXPECT_FLOAT_EQ((*b)[0].data<float>()[t * row + i], (*a)[0].data<float>()[(fwd.S - 1 - t) * row + i]);
}

TEST(Rnn, RejectsBadShapesAndAttributes) {
  Problem pr;
  pr.cell = Cell::kGru;
  pr.ref_acts = {{kSig, kTanh}};
  pr.Generate(11);
  Problem wrong_dir = pr;
  wrong_dir.direction = "sideways";
  auto r1 = wrong_dir.Run();
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find("sideways"), std::string::npos) << r1.status().message();

  Problem wrong_acts = pr;
  wrong_acts.attrs = {StrsAttr("activations", {"Sigmoid"})};
  auto r2 = wrong_acts.Run();
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("activations"), std::string::npos) << r2.status().message();

  Problem unknown_act = pr;
  unknown_act.attrs = {StrsAttr("activations", {"Sigmoid", "Gelu"})};
  auto r3 = unknown_act.Run();
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), StatusCode::kUnimplemented);

  Problem bad_lens = pr;
  bad_lens.lens = {1, 9, 2};
  auto r4 = bad_lens.Run();
  ASSERT_FALSE(r4.ok());
  EXPECT_NE(r4.status().message().find("sequence_lens"), std::string::npos) << r4.status().message();
}

TEST(Rnn, RejectsMismatchedWeightShapeAtRunTime) {
  // W given as [1, 3H, I+1] while X has I columns: named error, no crash.
  Graph g;
  const int64_t H = 2, I = 3;
  g.inputs.push_back(MakeValueInfo("X", DType::kFloat32, {1, 1, I}));
  g.inputs.push_back(MakeValueInfo("W", DType::kFloat32, {1, 3 * H, I + 1}));
  g.inputs.push_back(MakeValueInfo("R", DType::kFloat32, {1, 3 * H, H}));
  Node n = MakeNode("GRU", {"X", "W", "R"}, {"Y"});
  n.attributes.push_back(IntAttr("hidden_size", H));
  g.nodes.push_back(n);
  ValueInfo y;
  y.name = "Y";
  g.outputs.push_back(y);
  SessionOptions opts;
  opts.optimize = false;
  auto s = Session::Create(MakeModel(std::move(g), 14), opts);
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::vector<Tensor> out;
  Status st = (*s)->Run({{"X", Tensor(DType::kFloat32, {1, 1, I})},
                         {"W", Tensor(DType::kFloat32, {1, 3 * H, I + 1})},
                         {"R", Tensor(DType::kFloat32, {1, 3 * H, H})}},
                        &out);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("input size"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace quantkit
