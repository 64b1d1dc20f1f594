// Static QDQ rewrite (quant/static_quantizer.cc) on the bundled Fashion-MNIST CNN: structure of the
// QDQ graph, its lowering to int8 ops in the runtime (no float Conv/Gemm left), and accuracy
// against FP32.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <tuple>

#include "passes/passes.h"
#include "quant/metrics.h"
#include "quant/observers.h"
#include "quantkit/model_io.h"
#include "quantkit/static_quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using namespace testing;

const char* kModel = QUANTKIT_SOURCE_DIR "/assets/fashion_mnist_cnn.onnx";

std::vector<Tensor> Inputs(int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<Tensor> v;
  for (int i = 0; i < count; ++i) {
    std::vector<float> x(4 * 28 * 28);
    // Image-like: smooth blobs in [0, 1] after the model's normalisation ((x - 0.286) / 0.353).
    const float cx = 8 + 12 * u(rng), cy = 8 + 12 * u(rng), r = 4 + 6 * u(rng);
    for (int b = 0; b < 4; ++b)
      for (int y = 0; y < 28; ++y)
        for (int xx = 0; xx < 28; ++xx) {
          const float d = std::hypot(static_cast<float>(y) - cy + b, static_cast<float>(xx) - cx);
          const float pix = d < r ? 0.9f * u(rng) + 0.1f : 0.05f * u(rng);
          x[(b * 28 + y) * 28 + xx] = (pix - 0.286f) / 0.353f;
        }
    v.push_back(Tensor::FromVector<float>(x, {4, 1, 28, 28}));
  }
  return v;
}

// MinMax ranges of every tensor (graph input + node outputs) over the inputs.
std::map<std::string, FloatRange> Calibrate(const Model& model, const std::vector<Tensor>& inputs) {
  std::map<std::string, FloatRange> ranges;
  auto update = [&](const std::string& name, const Tensor& t) {
    if (t.dtype() != DType::kFloat32 || t.numel() == 0) return;
    auto [it, fresh] = ranges.try_emplace(name, FloatRange{t.data<float>()[0], t.data<float>()[0]});
    for (int64_t i = 0; i < t.numel(); ++i) {
      it->second.min = std::min(it->second.min, t.data<float>()[i]);
      it->second.max = std::max(it->second.max, t.data<float>()[i]);
    }
  };
  SessionOptions opts;
  opts.optimize = false;  // every tensor observed, as quant::Calibrator does (no fused-away values)
  auto session = Session::Create(model, opts);
  EXPECT_TRUE(session.ok());
  RunOptions ro;
  ro.observer = [&](const Node& node, size_t index, const Value& v) {
    if (v.is_tensor()) update(node.outputs[index], v.tensor);
  };
  for (const auto& x : inputs) {
    update("image", x);
    std::vector<Value> out;
    EXPECT_TRUE((*session)->RunValues({{"image", Value::FromTensor(x)}}, &out, ro).ok());
  }
  return ranges;
}

int Count(const Model& m, const std::string& op) {
  int n = 0;
  for (const auto& node : m.graph.nodes) n += node.op_type == op;
  return n;
}

// Statistics as `quantkit calibrate` keeps them (every tensor's observers: ranges, channel
// min/max and means) over `inputs` of the graph input "image".
CalibrationStats Observe(const Model& model, const std::vector<Tensor>& inputs) {
  CalibrationStats stats;
  auto session = Session::Create(model);
  EXPECT_TRUE(session.ok());
  RunOptions ro;
  ro.observer = [&](const Node& node, size_t index, const Value& v) {
    if (v.is_tensor()) quant::ObserveTensor(&stats.tensors[node.outputs[index]], v.tensor, stats.settings);
  };
  for (const Tensor& x : inputs) {
    quant::ObserveTensor(&stats.tensors["image"], x, stats.settings);
    std::vector<Value> out;
    EXPECT_TRUE((*session)->RunValues({{"image", Value::FromTensor(x)}}, &out, ro).ok());
  }
  return stats;
}

// Runs the FP32 model, the quantized one (lowered to integer ops) and the quantized one literally
// (QDQ as written) on `inputs`: the lowered output's SQNR against FP32 and against the literal run.
void ExpectAccuracy(const Model& fp32, const Model& q, const std::vector<Tensor>& inputs, double min_vs_fp32_db,
                    double min_vs_qdq_db) {
  SessionOptions literal;
  literal.optimize = false;
  auto s_fp32 = Session::Create(fp32);
  auto s_int8 = Session::Create(q);
  auto s_qdq = Session::Create(q, literal);
  ASSERT_TRUE(s_fp32.ok() && s_int8.ok() && s_qdq.ok());
  for (const auto& x : inputs) {
    std::vector<Tensor> a, b, c;
    ASSERT_TRUE((*s_fp32)->Run({{"image", x}}, &a).ok());
    ASSERT_TRUE((*s_int8)->Run({{"image", x}}, &b).ok());
    ASSERT_TRUE((*s_qdq)->Run({{"image", x}}, &c).ok());
    quant::OutputComparison vs_fp32, vs_qdq;
    ASSERT_TRUE(vs_fp32.Add(a[0], b[0]).ok());
    ASSERT_TRUE(vs_qdq.Add(c[0], b[0]).ok());
    EXPECT_GT(vs_fp32.sqnr_db(), min_vs_fp32_db);
    EXPECT_GE(vs_qdq.sqnr_db(), min_vs_qdq_db) << "lowered int8 far from the QDQ graph it implements";
  }
}

// Input k (weight 1, bias 2) of node `node_name` as written: the constant behind its
// DequantizeLinear, dequantized; and each element's step (its scale).
struct Dequantized {
  std::vector<double> values, steps;
};
Dequantized DequantizedInput(const Model& m, const std::string& node_name, size_t k) {
  const Graph& g = m.graph;
  for (const Node& n : g.nodes) {
    if (n.name != node_name) continue;
    for (const Node& dq : g.nodes) {
      if (dq.op_type != "DequantizeLinear" || dq.outputs[0] != n.inputs[k]) continue;
      const Tensor& q = *g.FindInitializer(dq.inputs[0]);
      const Tensor& scale = *g.FindInitializer(dq.inputs[1]);
      const int64_t per = q.numel() / scale.numel();
      Dequantized d;
      for (int64_t i = 0; i < q.numel(); ++i) {
        const double sc = scale.data<float>()[i / per];
        const double zp = q.dtype() == DType::kUInt8 ? g.FindInitializer(dq.inputs[2])->data<uint8_t>()[i / per] : 0;
        d.values.push_back(((q.dtype() == DType::kUInt8 ? q.data<uint8_t>()[i] : q.data<int32_t>()[i]) - zp) * sc);
        d.steps.push_back(sc);
      }
      return d;
    }
  }
  ADD_FAILURE() << "no dequantized input " << k << " of " << node_name;
  return {};
}

// Output SQNR of the quantized model (lowered by the session) against FP32 on each input.
void ExpectAccuracyOn(const Model& fp32, const Model& q, const std::vector<Tensor>& inputs, double min_db) {
  for (const Tensor& x : inputs) {
    const auto a = RunModel(fp32, {{"image", x}});
    const auto b = RunModel(q, {{"image", x}});
    quant::OutputComparison cmp;
    ASSERT_TRUE(cmp.Add(a[0], b[0]).ok());
    EXPECT_GT(cmp.sqnr_db(), min_db);
  }
}

TEST(StaticQuantizer, FashionCnnQdqLowersToInt8AndKeepsAccuracy) {
  auto loaded = LoadModel(kModel);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  const Model fp32 = *loaded;
  const auto ranges = Calibrate(fp32, Inputs(6, 1));
  Model q = fp32;
  auto report = QuantizeStatic(q, ranges, StaticQuantizeOptions{});
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_GE(report->quantized.at("Conv"), 2);
  EXPECT_EQ(report->quantized.at("Gemm"), 2);
  EXPECT_EQ(Count(q, "Conv"), Count(fp32, "Conv")) << "QDQ keeps the float ops";
  EXPECT_GT(Count(q, "QuantizeLinear"), 3);
  for (const auto& [name, t] : q.graph.initializers) EXPECT_NE(t.dtype(), DType::kFloat64) << name;
  ASSERT_TRUE(CheckModel(q).ok());

  // The runtime lowers every Conv and the Gemm to int8 ops.
  Model lowered = q;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(Count(lowered, "Conv"), 0);
  EXPECT_EQ(Count(lowered, "Gemm"), 0);
  EXPECT_EQ(Count(lowered, "QLinearConv"), Count(fp32, "Conv"));
  EXPECT_EQ(Count(lowered, "QLinearMatMul"), 1);         // hidden layer: int8 out
  EXPECT_EQ(Count(lowered, "MatMulIntegerToFloat"), 1);  // the logits stay float
  // MaxPool keeps its input's parameters, so it runs on the uint8 values between the int8 convs.
  EXPECT_EQ(Count(lowered, "DequantizeLinear"), 0);

  // Accuracy on held-out inputs: int8 (lowered) vs FP32, and int8 vs the QDQ graph run literally.
  ExpectAccuracy(fp32, q, Inputs(4, 99), 20.0, 25.0);
}

// --weight-range: narrow weights reach +-127, reduced (7-bit) ones stay within +-64 (around the
// zero point 128 for uint8 symmetric weights).
TEST(StaticQuantizer, WeightRangeBoundsTheWeights) {
  auto loaded = LoadModel(kModel);
  ASSERT_TRUE(loaded.ok());
  const auto ranges = Calibrate(*loaded, Inputs(2, 3));
  for (QuantWeightType type : {QuantWeightType::kInt8, QuantWeightType::kUInt8Symmetric}) {
    const DType stored = type == QuantWeightType::kInt8 ? DType::kInt8 : DType::kUInt8;
    const int64_t zero = type == QuantWeightType::kInt8 ? 0 : 128;
    for (WeightRange range : {WeightRange::kNarrow, WeightRange::kReduced}) {
      Model q = *loaded;
      StaticQuantizeOptions o;
      o.weight_type = type;
      o.weight_range = range;
      ASSERT_TRUE(QuantizeStatic(q, ranges, o).ok());
      int64_t largest = 0, weights = 0;
      for (const auto& [name, t] : q.graph.initializers)
        if (t.dtype() == stored && t.rank() >= 2) {
          ++weights;
          for (int64_t i = 0; i < t.numel(); ++i) largest = std::max<int64_t>(largest, std::abs(t.GetAsInt64(i) - zero));
        }
      EXPECT_EQ(weights, 5);
      EXPECT_EQ(largest, range == WeightRange::kNarrow ? 127 : 64);
    }
  }
}

// The default uint8-symmetric weights are the int8 ones plus 128: the runtime gives bit-identical
// outputs for the two files, lowered to integer ops and run literally as QDQ.
TEST(StaticQuantizer, Uint8SymmetricWeightsGiveExactlyTheInt8Results) {
  auto loaded = LoadModel(kModel);
  ASSERT_TRUE(loaded.ok());
  const auto ranges = Calibrate(*loaded, Inputs(3, 7));
  Model q8 = *loaded, qu = *loaded;
  StaticQuantizeOptions o;
  o.weight_type = QuantWeightType::kInt8;
  ASSERT_TRUE(QuantizeStatic(q8, ranges, o).ok());
  ASSERT_TRUE(QuantizeStatic(qu, ranges, StaticQuantizeOptions{}).ok());
  for (bool optimize : {true, false}) {
    SessionOptions so;
    so.optimize = optimize;
    auto s8 = Session::Create(q8, so);
    auto su = Session::Create(qu, so);
    ASSERT_TRUE(s8.ok() && su.ok());
    for (const auto& x : Inputs(2, 55)) {
      std::vector<Tensor> a, b;
      ASSERT_TRUE((*s8)->Run({{"image", x}}, &a).ok());
      ASSERT_TRUE((*su)->Run({{"image", x}}, &b).ok());
      ASSERT_EQ(a[0].numel(), b[0].numel());
      for (int64_t i = 0; i < a[0].numel(); ++i) ASSERT_EQ(a[0].data<float>()[i], b[0].data<float>()[i]) << optimize << " @" << i;
    }
  }
  // Asymmetric uint8 weights per channel cannot be written (QLinearConv takes one weight zero point).
  Model qa = *loaded;
  o.weight_type = QuantWeightType::kUInt8;
  auto r = QuantizeStatic(qa, ranges, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("per tensor"), std::string::npos) << r.status().message();
  o.per_channel = false;
  EXPECT_TRUE(QuantizeStatic(qa, ranges, o).ok());
}

// --format qoperator: the Conv+Relu units become ONNX QLinearConv (the Relu is implicit in the
// uint8 output range), the Gemm units keep their QDQ form (QLinearMatMul has no bias); the file
// passes ONNX's checker and runs to the same results as the QDQ file.
TEST(StaticQuantizer, QOperatorFormatUsesStandardOpsAndMatchesQdq) {
  auto loaded = LoadModel(kModel);
  ASSERT_TRUE(loaded.ok());
  const auto ranges = Calibrate(*loaded, Inputs(4, 5));
  Model qdq = *loaded;
  ASSERT_TRUE(QuantizeStatic(qdq, ranges, StaticQuantizeOptions{}).ok());
  Model qop = qdq;
  ASSERT_TRUE(passes::ConvertQdqToQOperator(qop).ok());
  EXPECT_EQ(Count(qop, "QLinearConv"), Count(*loaded, "Conv"));
  EXPECT_EQ(Count(qop, "Conv"), 0);
  EXPECT_EQ(Count(qop, "Relu"), 1) << "only the hidden Gemm's Relu (its unit stays QDQ) remains";
  EXPECT_EQ(Count(qop, "Gemm"), Count(*loaded, "Gemm"));
  for (const auto& n : qop.graph.nodes) EXPECT_TRUE(n.domain.empty() || n.domain == "com.microsoft") << n.op_type;
  ASSERT_TRUE(CheckModel(qop).ok());
  auto s_qdq = Session::Create(qdq);
  auto s_qop = Session::Create(qop);
  ASSERT_TRUE(s_qdq.ok() && s_qop.ok());
  for (const auto& x : Inputs(3, 77)) {
    std::vector<Tensor> a, b;
    ASSERT_TRUE((*s_qdq)->Run({{"image", x}}, &a).ok());
    ASSERT_TRUE((*s_qop)->Run({{"image", x}}, &b).ok());
    quant::OutputComparison c;
    ASSERT_TRUE(c.Add(a[0], b[0]).ok());
    EXPECT_TRUE(std::isinf(c.sqnr_db())) << "QOperator and QDQ files run differently: " << c.sqnr_db() << " dB";
  }
}

// Conv -> hardswish written as x * Clip(x + 3, 0, 6) / 6 -> scalar affine -> Conv (PP-LCNetV3's
// blocks as exported): the Add/Mul in between are functions of the first Conv's output alone, so
// only that output and the DAG's result are quantized (one rounding instead of six), and the
// runtime runs the DAG as one lookup table, bit-identical to the QDQ graph run literally.
TEST(StaticQuantizer, ElementwiseDagOfOneTensorIsQuantizedOnlyAtItsEnds) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 0.5f);
  auto random = [&](Shape shape) {
    Tensor t(DType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
    return t;
  };
  Graph g;
  g.inputs = {MakeValueInfo("image", DType::kFloat32, {4, 1, 28, 28})};
  g.outputs = {MakeValueInfo("logits", DType::kFloat32, {4, 2, 28, 28})};
  g.AddInitializer("w1", random({4, 1, 3, 3}));
  g.AddInitializer("b1", random({4}));
  g.AddInitializer("w2", random({2, 4, 1, 1}));
  g.AddInitializer("three", Tensor::FromVector<float>({3.f}, {}));
  g.AddInitializer("zero", Tensor::FromVector<float>({0.f}, {}));
  g.AddInitializer("six", Tensor::FromVector<float>({6.f}, {}));
  g.AddInitializer("lab_w", Tensor::FromVector<float>({0.8f}, {1}));
  g.AddInitializer("lab_b", Tensor::FromVector<float>({0.1f}, {1}));
  Node c1 = MakeNode("Conv", {"image", "w1", "b1"}, {"x"}, "conv1");
  c1.attributes = {IntsAttr("pads", {1, 1, 1, 1})};
  g.nodes.push_back(c1);
  g.nodes.push_back(MakeNode("Add", {"x", "three"}, {"t"}, "add3"));
  g.nodes.push_back(MakeNode("Clip", {"t", "zero", "six"}, {"c"}, "relu6"));
  g.nodes.push_back(MakeNode("Mul", {"x", "c"}, {"m"}, "mul"));
  g.nodes.push_back(MakeNode("Div", {"m", "six"}, {"h"}, "div6"));
  g.nodes.push_back(MakeNode("Mul", {"h", "lab_w"}, {"hw"}, "lab_scale"));
  g.nodes.push_back(MakeNode("Add", {"hw", "lab_b"}, {"a"}, "lab_bias"));
  g.nodes.push_back(MakeNode("Conv", {"a", "w2"}, {"logits"}, "conv2"));
  const Model fp32 = MakeModel(std::move(g), 13);
  const auto ranges = Calibrate(fp32, Inputs(4, 11));
  Model q = fp32;
  auto report = QuantizeStatic(q, ranges, StaticQuantizeOptions{});
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->quantized.at("Conv"), 2);
  EXPECT_EQ(report->quantized.count("Add"), 0u);
  EXPECT_EQ(report->quantized.count("Mul"), 0u);
  bool noted = false;
  for (const auto& note : report->notes) noted = noted || note.find("4 Add/Mul") != std::string::npos;
  EXPECT_TRUE(noted);
  std::set<std::string> quantized;
  for (const auto& n : q.graph.nodes)
    if (n.op_type == "QuantizeLinear") quantized.insert(n.inputs[0]);
  EXPECT_EQ(quantized, (std::set<std::string>{"image", "x", "a"}));
  // x only feeds the DAG, which is constant for x <= -3 (hardswish): x's range starts at -3, not at
  // its calibrated minimum, so its step is finer.
  ASSERT_LT(ranges.at("x").min, -3.5f) << "the test needs values below -3";
  float x_scale = 0;
  for (const auto& n : q.graph.nodes)
    if (n.op_type == "QuantizeLinear" && n.inputs[0] == "x") x_scale = q.graph.FindInitializer(n.inputs[1])->data<float>()[0];
  const float trimmed = (ranges.at("x").max + 3.0f) / 255.0f;
  EXPECT_NEAR(x_scale, trimmed, 0.01f * trimmed);
  Model lowered = q;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(Count(lowered, "QLinearLookup"), 1);
  EXPECT_EQ(Count(lowered, "Clip") + Count(lowered, "Mul") + Count(lowered, "Add"), 0);
  ExpectAccuracy(fp32, q, Inputs(2, 12), 30.0, INFINITY);  // the lookup is exact
}

// Bias correction: each Conv's dequantized bias is its float bias minus the mean error of its
// quantized weights over the input channel means (depthwise groups, a Conv without bias, and two
// Convs sharing one bias initializer), and it removes most of the output's mean error.
TEST(StaticQuantizer, BiasCorrectionAbsorbsTheWeightsMeanError) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<float> jitter(-0.3f, 0.3f);
  Graph g;
  g.inputs = {MakeValueInfo("image", DType::kFloat32, {1, 4, 32, 32})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 3, 32, 32}),
               MakeValueInfo("e", DType::kFloat32, {1, 4, 32, 32})};
  g.AddInitializer("w_dw", RandomFloats({4, 1, 3, 3}, 22, 20.f));  // large taps of both signs
  g.AddInitializer("w_dw2", RandomFloats({4, 1, 3, 3}, 23, 20.f));
  g.AddInitializer("shared_b", Tensor::FromVector<float>({1.f, -2.f, 0.5f, 3.f}, {4}));
  g.AddInitializer("w_pw", RandomFloats({3, 4, 1, 1}, 24, 20.f));
  for (const auto& [name, in, w, b, out] :
       std::vector<std::tuple<const char*, const char*, const char*, const char*, const char*>>{
           {"dw", "image", "w_dw", "shared_b", "d"},
           {"dw2", "image", "w_dw2", "shared_b", "e"},
           {"pw", "d", "w_pw", "", "y"}}) {
    Node c = MakeNode("Conv", *b ? std::vector<std::string>{in, w, b} : std::vector<std::string>{in, w}, {out}, name);
    if (std::string(name) != "pw") c.attributes = {IntsAttr("pads", {1, 1, 1, 1}), IntAttr("group", 4)};
    g.nodes.push_back(c);
  }
  const Model fp32 = MakeModel(std::move(g), 13);
  // Channels far from zero: the weights' rounding error becomes a bias per output channel.
  const float channel_mean[4] = {5.f, 2.f, -3.f, 0.5f};
  auto images = [&](int count) {
    std::vector<Tensor> v;
    for (int i = 0; i < count; ++i) {
      Tensor t(DType::kFloat32, {1, 4, 32, 32});
      for (int64_t k = 0; k < t.numel(); ++k) t.data<float>()[k] = channel_mean[k / 1024] + jitter(rng);
      v.push_back(t);
    }
    return v;
  };
  const CalibrationStats stats = Observe(fp32, images(8));
  auto ranges = ComputeRanges(stats, {});
  ASSERT_TRUE(ranges.ok());
  const ChannelStatsMap channels = ChannelStatsOf(stats);
  ASSERT_EQ(channels.at("image").mean.size(), 4u);
  Model corrected = fp32, plain = fp32;
  StaticQuantizeOptions on;
  on.equalize = false;  // (the default) keep the weights as written, to recompute the correction here
  auto report = QuantizeStatic(corrected, *ranges, on, channels);
  ASSERT_TRUE(report.ok()) << report.status().message();
  StaticQuantizeOptions off = on;
  off.bias_correction = false;
  ASSERT_TRUE(QuantizeStatic(plain, *ranges, off, channels).ok());

  // The rewritten biases, recomputed here from the written weights.
  const Graph& qg = corrected.graph;
  int checked = 0;
  for (const Node& conv : qg.nodes) {
    if (conv.op_type != "Conv") continue;
    SCOPED_TRACE(conv.name);
    ASSERT_EQ(conv.inputs.size(), 3u) << "a Conv without bias gets one for the correction";
    const std::string w_name = conv.name == "dw" ? "w_dw" : conv.name == "dw2" ? "w_dw2" : "w_pw";
    const Tensor& w = *fp32.graph.FindInitializer(w_name);
    const std::vector<double>& mean = channels.at(conv.name == "pw" ? "d" : "image").mean;
    const std::vector<double> wq = DequantizedInput(corrected, conv.name, 1).values;
    const Dequantized written_bias = DequantizedInput(corrected, conv.name, 2);
    const std::vector<double>& bias = written_bias.values;
    const std::vector<double>& bias_steps = written_bias.steps;
    const int64_t outputs = w.dim(0), per_output = w.numel() / outputs;
    for (int64_t o = 0; o < outputs; ++o) {
      double expected = conv.name == "pw" ? 0.0 : fp32.graph.FindInitializer("shared_b")->data<float>()[o];
      for (int64_t k = 0; k < per_output; ++k) {
        const int64_t i = o * per_output + k;
        const int64_t channel = conv.name == "pw" ? k : o;  // depthwise: output o reads channel o
        expected -= (wq[i] - w.data<float>()[i]) * mean[channel];
      }
      EXPECT_NEAR(bias[o], expected, 0.51 * bias_steps[o] + 1e-5 * std::abs(expected)) << "channel " << o;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 + 4 + 3);

  // The outcome: the per-channel mean error of every output shrinks.
  auto s_fp32 = Session::Create(fp32);
  auto s_corrected = Session::Create(corrected);
  auto s_plain = Session::Create(plain);
  ASSERT_TRUE(s_fp32.ok() && s_corrected.ok() && s_plain.ok());
  std::vector<double> mean_err_corrected(7, 0.0), mean_err_plain(7, 0.0);
  for (const Tensor& x : images(6)) {
    std::vector<Tensor> a, b, c;
    ASSERT_TRUE((*s_fp32)->Run({{"image", x}}, &a).ok());
    ASSERT_TRUE((*s_corrected)->Run({{"image", x}}, &b).ok());
    ASSERT_TRUE((*s_plain)->Run({{"image", x}}, &c).ok());
    for (size_t out = 0; out < 2; ++out) {
      const int64_t channels = a[out].dim(1), plane = a[out].numel() / channels;
      for (int64_t i = 0; i < a[out].numel(); ++i) {
        const size_t slot = out * 3 + static_cast<size_t>(i / plane);
        mean_err_corrected[slot] += b[out].data<float>()[i] - a[out].data<float>()[i];
        mean_err_plain[slot] += c[out].data<float>()[i] - a[out].data<float>()[i];
      }
    }
  }
  double total_corrected = 0, total_plain = 0;
  for (size_t i = 0; i < 7; ++i) {
    total_corrected += std::abs(mean_err_corrected[i]);
    total_plain += std::abs(mean_err_plain[i]);
  }
  EXPECT_LT(total_corrected, 0.25 * total_plain) << total_corrected << " vs " << total_plain;
}

// A residual Add followed by Relu is one unit: only the Relu's output is quantized (one rounding,
// over [0, max]), and the runtime runs it as one QLinearAdd with the Relu as a clamp.
TEST(StaticQuantizer, AddFollowedByReluIsOneUnit) {
  Graph g;
  g.inputs = {MakeValueInfo("image", DType::kFloat32, {1, 3, 8, 8})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 3, 8, 8})};
  g.AddInitializer("w1", RandomFloats({3, 3, 1, 1}, 31));
  g.AddInitializer("w2", RandomFloats({3, 3, 1, 1}, 32));
  g.nodes.push_back(MakeNode("Conv", {"image", "w1"}, {"c"}, "conv1"));
  g.nodes.push_back(MakeNode("Add", {"c", "image"}, {"sum"}, "residual"));
  g.nodes.push_back(MakeNode("Relu", {"sum"}, {"r"}, "relu"));
  g.nodes.push_back(MakeNode("Conv", {"r", "w2"}, {"y"}, "conv2"));
  const Model fp32 = MakeModel(std::move(g), 13);
  std::vector<Tensor> inputs;
  for (uint32_t seed = 40; seed < 44; ++seed) inputs.push_back(RandomFloats({1, 3, 8, 8}, seed));
  const auto ranges = Calibrate(fp32, inputs);
  ASSERT_LT(ranges.at("sum").min, -0.5f) << "the test needs a signed Add output";
  Model q = fp32;
  auto report = QuantizeStatic(q, ranges, StaticQuantizeOptions{});
  ASSERT_TRUE(report.ok());
  std::set<std::string> quantized;
  for (const auto& n : q.graph.nodes)
    if (n.op_type == "QuantizeLinear") quantized.insert(n.inputs[0]);
  EXPECT_EQ(quantized, (std::set<std::string>{"image", "c", "r"}));  // not "sum"; "y" is a float graph output
  Model lowered = q;
  ASSERT_TRUE(passes::OptimizeForInference(lowered).ok());
  EXPECT_EQ(Count(lowered, "QLinearAdd"), 1);
  EXPECT_EQ(Count(lowered, "QLinearLookup") + Count(lowered, "Relu") + Count(lowered, "Add"), 0);
  ExpectAccuracyOn(fp32, lowered, inputs, 30.0);
}

// Cross-layer equalization on Conv -> Relu -> Conv and Conv -> depthwise Conv, whose middle
// tensors have channels 2500x apart: the rescaling keeps every weight product (float-exact
// apart from the weights' rounding), evens out the middle tensors' channels, and the quantized
// outputs get much closer to FP32. A range method that clipped the middle tensor stops it.
TEST(StaticQuantizer, EqualizationEvensOutChannelsAndKeepsTheFunction) {
  const float spread[4] = {1.f, 50.f, 0.02f, 5.f};
  auto spread_rows = [&](Tensor t) {
    const int64_t per = t.numel() / 4;
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] *= spread[i / per];
    return t;
  };
  Graph g;
  g.inputs = {MakeValueInfo("image", DType::kFloat32, {1, 4, 16, 16})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 3, 16, 16}),
               MakeValueInfo("z", DType::kFloat32, {1, 4, 16, 16})};
  g.AddInitializer("w1", spread_rows(RandomFloats({4, 4, 3, 3}, 51)));
  g.AddInitializer("b1", spread_rows(RandomFloats({4}, 52)));
  g.AddInitializer("w2", RandomFloats({3, 4, 1, 1}, 53));
  g.AddInitializer("w3", spread_rows(RandomFloats({4, 4, 1, 1}, 54)));
  g.AddInitializer("w4", RandomFloats({4, 1, 3, 3}, 55));
  Node c1 = MakeNode("Conv", {"image", "w1", "b1"}, {"a"}, "conv1");
  c1.attributes = {IntsAttr("pads", {1, 1, 1, 1})};
  g.nodes.push_back(c1);
  g.nodes.push_back(MakeNode("Relu", {"a"}, {"r"}, "relu"));
  g.nodes.push_back(MakeNode("Conv", {"r", "w2"}, {"y"}, "conv2"));
  g.nodes.push_back(MakeNode("Conv", {"image", "w3"}, {"m"}, "conv3"));
  Node c4 = MakeNode("Conv", {"m", "w4"}, {"z"}, "depthwise");
  c4.attributes = {IntsAttr("pads", {1, 1, 1, 1}), IntAttr("group", 4)};
  g.nodes.push_back(c4);
  const Model fp32 = MakeModel(std::move(g), 13);
  std::vector<Tensor> calib, eval;
  for (uint32_t seed = 60; seed < 66; ++seed) calib.push_back(RandomFloats({1, 4, 16, 16}, seed));
  for (uint32_t seed = 70; seed < 73; ++seed) eval.push_back(RandomFloats({1, 4, 16, 16}, seed));
  const CalibrationStats stats = Observe(fp32, calib);
  auto ranges = ComputeRanges(stats, {});
  ASSERT_TRUE(ranges.ok());
  const ChannelStatsMap channels = ChannelStatsOf(stats);
  StaticQuantizeOptions on, off;  // off: the default
  on.bias_correction = off.bias_correction = false;  // equalization alone
  on.equalize = true;
  EXPECT_FALSE(off.equalize) << "equalization is opt-in";
  Model equalized = fp32, plain = fp32;
  auto report = QuantizeStatic(equalized, *ranges, on, channels);
  ASSERT_TRUE(report.ok()) << report.status().message();
  ASSERT_TRUE(QuantizeStatic(plain, *ranges, off, channels).ok());
  bool noted = false;
  for (const auto& note : report->notes) noted = noted || note.find("equalization: 2 Conv pair") != std::string::npos;
  EXPECT_TRUE(noted);

  // Weights as written (dequantized).
  auto weights = [](const Model& m, const std::string& conv, size_t k) { return DequantizedInput(m, conv, k).values; };
  auto norm = [](const std::vector<double>& v, int64_t from, int64_t count, int64_t stride = 1) {
    double s = 0;
    for (int64_t i = 0; i < count; ++i) s += v[from + i * stride] * v[from + i * stride];
    return std::sqrt(s);
  };
  auto original = [&](const std::string& name) {
    const Tensor& t = *fp32.graph.FindInitializer(name);
    return std::vector<double>(t.data<float>(), t.data<float>() + t.numel());
  };
  // conv1 row c shrinks by s_c exactly as conv2's column c grows (to the rounding of conv2's
  // per-row weight step); conv1's bias with it; the s_c differ widely.
  const auto w1 = original("w1"), w2 = original("w2"), b1 = original("b1");
  const auto q1 = weights(equalized, "conv1", 1), q2 = weights(equalized, "conv2", 1);
  const auto qb1 = weights(equalized, "conv1", 2);
  std::vector<double> s(4);
  for (int64_t c = 0; c < 4; ++c) {
    s[c] = norm(w1, c * 36, 36) / norm(q1, c * 36, 36);
    EXPECT_NEAR(qb1[c] * s[c], b1[c], 0.02 * std::abs(b1[c]) + 1e-3) << "channel " << c;
  }
  for (int64_t o = 0; o < 3; ++o) {
    double row_max = 0;
    for (int64_t c = 0; c < 4; ++c) row_max = std::max(row_max, std::abs(w2[o * 4 + c] * s[c]));
    for (int64_t c = 0; c < 4; ++c)
      EXPECT_NEAR(q2[o * 4 + c], w2[o * 4 + c] * s[c], 0.51 * row_max / 127 + 0.01 * std::abs(w2[o * 4 + c] * s[c]))
          << "row " << o << " channel " << c;
  }
  EXPECT_GT(*std::max_element(s.begin(), s.end()) / *std::min_element(s.begin(), s.end()), 50.0);
  // Depthwise: conv3's rows and the depthwise filters (per-channel steps: both exact to rounding).
  const auto w3 = original("w3"), w4 = original("w4");
  const auto q3 = weights(equalized, "conv3", 1), q4 = weights(equalized, "depthwise", 1);
  for (int64_t c = 0; c < 4; ++c) {
    const double sc = norm(w3, c * 4, 4) / norm(q3, c * 4, 4);
    EXPECT_NEAR(norm(q4, c * 9, 9) / norm(w4, c * 9, 9), sc, 0.02 * sc) << "channel " << c;
  }
  // The Relu output's step shrinks (balanced against conv2's weights); the depthwise input keeps
  // its step and brings every channel up to it.
  auto step = [](const Model& m, const std::string& t) {
    for (const Node& n : m.graph.nodes)
      if (n.op_type == "QuantizeLinear" && n.inputs[0] == t) {
        return m.graph.FindInitializer(n.inputs[1])->data<float>()[0];
      }
    return 0.f;
  };
  EXPECT_LT(step(equalized, "r"), 0.2f * step(plain, "r"));
  EXPECT_LE(step(equalized, "m"), 1.01f * step(plain, "m"));
  // Outcome: every output channel at least as close to FP32, the weakest ones by far.
  for (size_t out = 0; out < 2; ++out) {
    const int64_t ch = out == 0 ? 3 : 4;
    std::vector<quant::OutputComparison> with(static_cast<size_t>(ch)), without(static_cast<size_t>(ch));
    for (const Tensor& x : eval) {
      const auto a = RunModel(fp32, {{"image", x}});
      const auto b = RunModel(equalized, {{"image", x}});
      const auto c = RunModel(plain, {{"image", x}});
      const int64_t plane = a[out].numel() / ch;
      for (int64_t k = 0; k < ch; ++k) {
        const Shape one = {plane};
        auto slice = [&](const Tensor& t) {
          const float* from = t.data<float>() + k * plane;
          return Tensor::FromVector<float>(std::vector<float>(from, from + plane), one);
        };
        ASSERT_TRUE(with[k].Add(slice(a[out]), slice(b[out])).ok());
        ASSERT_TRUE(without[k].Add(slice(a[out]), slice(c[out])).ok());
      }
    }
    double worst_with = INFINITY, worst_without = INFINITY;
    for (int64_t k = 0; k < ch; ++k) {
      EXPECT_GT(with[k].sqnr_db(), without[k].sqnr_db() - 0.5) << "output " << out << " channel " << k;
      worst_with = std::min(worst_with, with[k].sqnr_db());
      worst_without = std::min(worst_without, without[k].sqnr_db());
    }
    // y's channels mix all of r's channels (measured +9.6 dB); z's are the depthwise channels (+30).
    EXPECT_GT(worst_with, worst_without + (out == 0 ? 6.0 : 15.0)) << "output " << out;
  }
  // A clipped range (percentile) describes the unscaled tensor: no equalization there.
  auto clipped = ComputeRanges(stats, {CalibrationMethod::kPercentile, 99.0});
  ASSERT_TRUE(clipped.ok());
  ASSERT_LT(clipped->at("r").max, ranges->at("r").max);
  Model q = fp32;
  auto clipped_report = QuantizeStatic(q, *clipped, on, channels);
  ASSERT_TRUE(clipped_report.ok());
  for (const auto& note : clipped_report->notes) EXPECT_EQ(note.find("equalization: 2"), std::string::npos) << note;
}

// ConvTranspose (PaddleOCR det's upsampling head) is a quantized unit: weights per output channel
// along axis 1 ([C, M/group, k...]; one scale when grouped), int32 bias, a following Relu fused.
TEST(StaticQuantizer, ConvTransposeIsQuantizedPerOutputChannel) {
  Graph g;
  g.inputs = {MakeValueInfo("image", DType::kFloat32, {1, 4, 6, 6})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 2, 24, 24})};
  g.AddInitializer("wt", RandomFloats({4, 3, 2, 2}, 81));
  g.AddInitializer("bt", RandomFloats({3}, 82));
  g.AddInitializer("wg", RandomFloats({3, 2, 2, 2}, 83, 0.5f));  // group 3: [3, 6/3, 2, 2]
  g.AddInitializer("wc", RandomFloats({2, 6, 1, 1}, 84));
  Node t1 = MakeNode("ConvTranspose", {"image", "wt", "bt"}, {"u"}, "up1");
  t1.attributes = {IntsAttr("strides", {2, 2})};
  g.nodes.push_back(t1);
  g.nodes.push_back(MakeNode("Relu", {"u"}, {"r"}, "relu"));
  Node t2 = MakeNode("ConvTranspose", {"r", "wg"}, {"v"}, "up2");
  t2.attributes = {IntsAttr("strides", {2, 2}), IntAttr("group", 3)};
  g.nodes.push_back(t2);
  g.nodes.push_back(MakeNode("Conv", {"v", "wc"}, {"y"}, "head"));
  const Model fp32 = MakeModel(std::move(g), 13);
  std::vector<Tensor> inputs;
  for (uint32_t seed = 90; seed < 94; ++seed) inputs.push_back(RandomFloats({1, 4, 6, 6}, seed));
  const auto ranges = Calibrate(fp32, inputs);
  Model q = fp32;
  auto report = QuantizeStatic(q, ranges, StaticQuantizeOptions{});
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_EQ(report->quantized.at("ConvTranspose"), 2);
  std::set<std::string> quantized;
  std::map<std::string, int64_t> weight_scales;  // ConvTranspose -> scale count of its weight
  for (const auto& n : q.graph.nodes) {
    if (n.op_type == "QuantizeLinear") quantized.insert(n.inputs[0]);
    if (n.op_type != "ConvTranspose") continue;
    for (const auto& dq : q.graph.nodes) {
      if (dq.op_type != "DequantizeLinear" || dq.outputs[0] != n.inputs[1]) continue;
      weight_scales[n.name] = q.graph.FindInitializer(dq.inputs[1])->numel();
      if (n.name == "up1") {
        EXPECT_EQ(dq.AttrInt("axis", 1), 1);
      }
    }
  }
  EXPECT_EQ(weight_scales, (std::map<std::string, int64_t>{{"up1", 3}, {"up2", 1}}));
  EXPECT_EQ(quantized, (std::set<std::string>{"image", "r", "v"}));  // not "u": the Relu joins up1
  ExpectAccuracyOn(fp32, q, inputs, 30.0);
}

TEST(StaticQuantizer, MissingStatisticsLeaveNodesFloatAndNothingIsAnError) {
  auto loaded = LoadModel(kModel);
  ASSERT_TRUE(loaded.ok());
  Model q = *loaded;
  auto report = QuantizeStatic(q, {}, StaticQuantizeOptions{});
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(report.status().message().find("no calibration statistics"), std::string::npos) << report.status().message();
  StaticQuantizeOptions bad;
  bad.op_types = {"Softmax"};
  EXPECT_FALSE(QuantizeStatic(q, {}, bad).ok());
}

}  // namespace
}  // namespace quantkit
