// Dynamic quantization: the weight math (exact values), each graph rewrite (structure, and the
// quantized model run next to the float one), options/config/metadata, sha256.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/sha256.h"
#include "quant/quant_config.h"
#include "quantkit/model_io.h"
#include "quantkit/quantize.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/kernels/ref/weight_quant.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::FloatAttr;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::MaxAbsDiff;
using testing::RunModel;
namespace wq = rt::quant;

Tensor Random(Shape shape, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

float MaxAbs(const Tensor& t) {
  float m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(static_cast<float>(t.GetAsDouble(i))));
  return m;
}

int CountOps(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) {
    n += node.op_type == op;
    for (const auto& a : node.attributes)
      if (a.g) n += CountOps(*a.g, op);
  }
  return n;
}

const Node* FindOp(const Graph& g, const std::string& op) {
  for (const auto& node : g.nodes)
    if (node.op_type == op) return &node;
  return nullptr;
}

// Quantizes a copy, checks it with ONNX's checker and that it survives export + import.
Model Quantized(const Model& m, const QuantizeOptions& o, QuantizeReport* report = nullptr) {
  Model q = m;
  auto r = QuantizeDynamic(q, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  if (r.ok() && report) *report = *r;
  // Debian's ONNX (1.12) knows opsets up to 17.
  if (q.OpsetVersion("") <= 17) {
    Status check = CheckModel(q);
    EXPECT_TRUE(check.ok()) << check.message();
  }
  auto bytes = SerializeModel(q);
  EXPECT_TRUE(bytes.ok());
  auto back = LoadModelFromBytes(*bytes);
  EXPECT_TRUE(back.ok()) << back.status().message();
  return back.ok() ? std::move(back).value() : q;
}

// Y = X[2,4] @ W[4,3] (+ a second MatMul on the same X when `shared`).
Model MatMulModel(const Tensor& w, bool shared = false) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, w.dim(0)})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, w.dim(1)})};
  g.AddInitializer("w", w);
  g.nodes.push_back(MakeNode("MatMul", {"x", "w"}, {"y"}, "mm"));
  if (shared) {
    g.outputs.push_back(MakeValueInfo("y2", DType::kFloat32, {2, w.dim(1)}));
    g.nodes.push_back(MakeNode("MatMul", {"x", "w"}, {"y2"}, "mm2"));
  }
  return MakeModel(std::move(g), 13);
}

// ---- weight math ----

TEST(WeightQuant, SymmetricNarrowPerColumnExactValues) {
  // Columns: amax 1 -> scale 1/127; amax 2 -> 2/127; all zero -> scale 1.
  const std::vector<float> w = {1.0f, -0.5f, 0.0f,  //
                                0.25f, 2.0f, 0.0f};
  wq::ChannelLayout layout{2, 3, 1};
  auto p = wq::ChoosePerChannelParams(w.data(), layout, wq::WeightType::kInt8Symmetric, wq::WeightRange::kNarrow);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_FLOAT_EQ(p[0].scale, 2.0f / 254.0f);
  EXPECT_FLOAT_EQ(p[1].scale, 4.0f / 254.0f);
  EXPECT_EQ(p[2].scale, 1.0f);
  for (const auto& c : p) EXPECT_EQ(c.zero_point, 0);
  std::vector<int8_t> q(6);
  wq::QuantizePerChannel(w.data(), layout, p, wq::WeightType::kInt8Symmetric, wq::WeightRange::kNarrow, q.data());
  // 0.25 * 127 = 31.75 -> 32; -0.5 * 63.5 = -31.75 -> -32.
  EXPECT_EQ(q, (std::vector<int8_t>{127, -32, 0, 32, 127, 0}));
}

TEST(WeightQuant, FullRangeRoundsHalfToEvenAndSaturates) {
  // amax 127.5 -> scale 2 * 127.5 / 255 = 1: values land exactly on .5 ties.
  const std::vector<float> w = {2.5f, 3.5f, -2.5f, 127.5f, -127.5f, 0.5f};
  wq::ChannelLayout layout{1, 1, 6};
  auto p = wq::ChoosePerChannelParams(w.data(), layout, wq::WeightType::kInt8Symmetric, wq::WeightRange::kFull);
  EXPECT_EQ(p[0].scale, 1.0f);
  std::vector<int8_t> q(6);
  wq::QuantizePerChannel(w.data(), layout, p, wq::WeightType::kInt8Symmetric, wq::WeightRange::kFull, q.data());
  EXPECT_EQ(q, (std::vector<int8_t>{2, 4, -2, 127, -128, 0}));
}

TEST(WeightQuant, AsymmetricUint8WidensRangeToZero) {
  // [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64.
  auto p = wq::WeightParamsFromRange(-1.0f, 3.0f, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kNarrow);
  EXPECT_FLOAT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 64);
  // All positive [1, 2]: the range is widened to [0, 2], zero point 0.
  p = wq::WeightParamsFromRange(1.0f, 2.0f, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kNarrow);
  EXPECT_FLOAT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  // All negative [-2, -1]: widened to [-2, 0], zero point 255.
  p = wq::WeightParamsFromRange(-2.0f, -1.0f, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kFull);
  EXPECT_EQ(p.zero_point, 255);
  const std::vector<float> w = {-1.0f, 0.0f, 3.0f};
  auto params = wq::ChoosePerChannelParams(w.data(), {1, 1, 3}, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kNarrow);
  std::vector<uint8_t> q(3);
  wq::QuantizePerChannel(w.data(), {1, 1, 3}, params, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kNarrow, q.data());
  EXPECT_EQ(q, (std::vector<uint8_t>{0, 64, 255}));  // 0 is exact: it maps to the zero point
}

TEST(WeightQuant, ReducedRangeSevenBits) {
  // int8 reduced: [-64, 64], scale amax / 64.
  const std::vector<float> w = {1.0f, -0.5f, 0.3f};
  auto p = wq::ChoosePerChannelParams(w.data(), {1, 1, 3}, wq::WeightType::kInt8Symmetric, wq::WeightRange::kReduced);
  EXPECT_FLOAT_EQ(p[0].scale, 1.0f / 64.0f);
  std::vector<int8_t> q(3);
  wq::QuantizePerChannel(w.data(), {1, 1, 3}, p, wq::WeightType::kInt8Symmetric, wq::WeightRange::kReduced, q.data());
  EXPECT_EQ(q, (std::vector<int8_t>{64, -32, 19}));  // 0.3 * 64 = 19.2
  // uint8 reduced: [0, 127]; -rmin/scale = 63.5 and rmax/scale = 63.5 both round up to 64 (ties to
  // even), so rmax would land on 128 without the clamp.
  const std::vector<float> u = {-63.5f, 63.5f};
  auto pu = wq::ChoosePerChannelParams(u.data(), {1, 1, 2}, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kReduced);
  EXPECT_EQ(pu[0].scale, 1.0f);
  EXPECT_EQ(pu[0].zero_point, 64);
  std::vector<uint8_t> qu(2);
  wq::QuantizePerChannel(u.data(), {1, 1, 2}, pu, wq::WeightType::kUInt8Asymmetric, wq::WeightRange::kReduced, qu.data());
  EXPECT_EQ(qu, (std::vector<uint8_t>{0, 127}));
}

TEST(WeightQuant, ZeroAndNonFiniteChannels) {
  const std::vector<float> zeros = {0, 0, 0};
  for (auto type : {wq::WeightType::kInt8Symmetric, wq::WeightType::kUInt8Asymmetric, wq::WeightType::kUInt8Symmetric}) {
    auto p = wq::ChooseWeightParams(zeros.data(), 3, type, wq::WeightRange::kNarrow);
    EXPECT_EQ(p.scale, 1.0f);
    EXPECT_EQ(p.zero_point, type == wq::WeightType::kUInt8Symmetric ? 128 : 0);
  }
  const std::vector<float> bad = {1.0f, NAN};
  EXPECT_FALSE(wq::AllFinite(bad.data(), 2));
  EXPECT_TRUE(wq::AllFinite(zeros.data(), 3));
}

// ---- integer-ops rewrites ----

// uint8 symmetric is int8 symmetric plus 128 (zero point 128, same scale) for every range.
TEST(WeightQuant, Uint8SymmetricIsInt8PlusOffset) {
  const Tensor w = Random({3, 7}, 31, -2.0f, 1.5f);
  for (auto range : {wq::WeightRange::kNarrow, wq::WeightRange::kFull, wq::WeightRange::kReduced}) {
    const auto s8 = wq::QuantizeWeightTensor(w, 0, wq::WeightType::kInt8Symmetric, range);
    const auto u8 = wq::QuantizeWeightTensor(w, 0, wq::WeightType::kUInt8Symmetric, range);
    ASSERT_EQ(u8.q.dtype(), DType::kUInt8);
    ASSERT_EQ(u8.zero_point.dtype(), DType::kUInt8);
    for (int64_t i = 0; i < w.numel(); ++i) EXPECT_EQ(u8.q.data<uint8_t>()[i], s8.q.data<int8_t>()[i] + 128) << i;
    for (int64_t c = 0; c < 3; ++c) {
      EXPECT_EQ(u8.scale.data<float>()[c], s8.scale.data<float>()[c]);
      EXPECT_EQ(u8.zero_point.data<uint8_t>()[c], 128);
    }
    const auto r8 = wq::RangeOf(wq::WeightType::kInt8Symmetric, range), ru = wq::RangeOf(wq::WeightType::kUInt8Symmetric, range);
    EXPECT_EQ(ru.qmin, r8.qmin + 128);
    EXPECT_EQ(ru.qmax, r8.qmax + 128);
  }
}

TEST(QuantizeDynamic, MatMulIntegerOpsStructureAndExactArithmetic) {
  const Tensor w = Random({4, 3}, 1);
  Model m = MatMulModel(w);
  QuantizeReport report;
  QuantizeOptions int8_weights;
  int8_weights.weight_type = QuantWeightType::kInt8;
  Model q = Quantized(m, int8_weights, &report);
  EXPECT_EQ(report.quantized["MatMul"], 1);
  const Graph& g = q.graph;
  EXPECT_EQ(CountOps(g, "MatMul"), 0);
  ASSERT_EQ(CountOps(g, "DynamicQuantizeLinear"), 1);
  const Node* mmi = FindOp(g, "MatMulInteger");
  ASSERT_NE(mmi, nullptr);
  ASSERT_EQ(mmi->inputs.size(), 4u);
  const Tensor* wq8 = g.FindInitializer(mmi->inputs[1]);
  const Tensor* wzp = g.FindInitializer(mmi->inputs[3]);
  ASSERT_TRUE(wq8 && wzp);
  EXPECT_EQ(wq8->dtype(), DType::kInt8);
  EXPECT_EQ(wq8->shape(), (Shape{4, 3}));
  EXPECT_EQ(wzp->dtype(), DType::kInt8);
  EXPECT_EQ(wzp->shape(), (Shape{3}));
  EXPECT_FALSE(g.IsInitializer("w")) << "the float weight should be gone";
  const Tensor* ws = g.FindInitializer("w_scale");
  ASSERT_NE(ws, nullptr);

  const Tensor x = Random({2, 4}, 2);
  auto ref = RunModel(m, {{"x", x}});
  auto out = RunModel(q, {{"x", x}});
  ASSERT_EQ(out.size(), 1u);
  // The exact arithmetic of the form: uint8 dynamic activation, int32 accumulation, float rescale.
  const auto p = wq::ComputeDynamicParams(x.data<float>(), x.numel());
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t n = 0; n < 3; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < 4; ++k) {
        const int32_t xq = wq::QuantizeValue<uint8_t>(x.data<float>()[i * 4 + k], p.scale, p.zero_point);
        acc += (xq - p.zero_point) * wq8->data<int8_t>()[k * 3 + n];
      }
      const float expected = static_cast<float>(acc) * (p.scale * ws->data<float>()[n]);
      EXPECT_EQ(out[0].data<float>()[i * 3 + n], expected) << i << "," << n;
    }
  EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0]));
}

TEST(QuantizeDynamic, SharedActivationAndWeightQuantizedOnce) {
  Model m = MatMulModel(Random({4, 3}, 3), /*shared=*/true);
  Model q = Quantized(m, QuantizeOptions{});
  EXPECT_EQ(CountOps(q.graph, "DynamicQuantizeLinear"), 1);
  EXPECT_EQ(CountOps(q.graph, "MatMulInteger"), 2);
  int quantized_weights = 0;
  for (const auto& [name, t] : q.graph.initializers) quantized_weights += t.dtype() == DType::kUInt8 && t.rank() == 2;
  EXPECT_EQ(quantized_weights, 1);
}

TEST(QuantizeDynamic, Uint8PerTensorAndPerChannel) {
  const Tensor w = Random({6, 5}, 4, -0.2f, 1.0f);
  Model m = MatMulModel(w);
  const Tensor x = Random({2, 6}, 5);
  auto ref = RunModel(m, {{"x", x}});
  for (bool per_channel : {true, false}) {
    QuantizeOptions o;
    o.weight_type = QuantWeightType::kUInt8;
    o.per_channel = per_channel;
    Model q = Quantized(m, o);
    const Node* mmi = FindOp(q.graph, "MatMulInteger");
    ASSERT_NE(mmi, nullptr);
    const Tensor* zp = q.graph.FindInitializer(mmi->inputs[3]);
    ASSERT_NE(zp, nullptr);
    EXPECT_EQ(zp->dtype(), DType::kUInt8);
    EXPECT_EQ(zp->shape(), per_channel ? Shape{5} : Shape{});
    auto out = RunModel(q, {{"x", x}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0])) << "per_channel=" << per_channel;
  }
}

TEST(QuantizeDynamic, GemmFoldsAlphaBetaAndTransposedWeight) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {3, 8})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {3, 5})};
  g.AddInitializer("b", Random({5, 8}, 6));  // transB = 1: [N, K]
  g.AddInitializer("c", Random({5}, 7));
  Node gemm = MakeNode("Gemm", {"a", "b", "c"}, {"y"}, "gemm");
  gemm.attributes = {IntAttr("transB", 1), FloatAttr("alpha", 0.5f), FloatAttr("beta", 2.0f)};
  g.nodes.push_back(gemm);
  Model m = MakeModel(std::move(g), 13);
  QuantizeReport report;
  Model q = Quantized(m, QuantizeOptions{}, &report);
  EXPECT_EQ(report.quantized["Gemm"], 1);
  EXPECT_EQ(CountOps(q.graph, "Gemm"), 0);
  EXPECT_EQ(CountOps(q.graph, "Add"), 1);
  const Node* mmi = FindOp(q.graph, "MatMulInteger");
  ASSERT_NE(mmi, nullptr);
  EXPECT_EQ(q.graph.FindInitializer(mmi->inputs[1])->shape(), (Shape{8, 5}));  // stored [K, N]
  const Tensor a = Random({3, 8}, 8);
  auto ref = RunModel(m, {{"a", a}});
  auto out = RunModel(q, {{"a", a}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0]));
}

TEST(QuantizeDynamic, GemmRuntimeBias) {
  // C computed at run time: added as is when beta = 1, left in float otherwise.
  for (float beta : {1.0f, 0.5f}) {
    Graph g;
    g.inputs = {MakeValueInfo("a", DType::kFloat32, {3, 8}), MakeValueInfo("c", DType::kFloat32, {3, 5})};
    g.outputs = {MakeValueInfo("y", DType::kFloat32, {3, 5})};
    g.AddInitializer("b", Random({8, 5}, 31));
    Node gemm = MakeNode("Gemm", {"a", "b", "c"}, {"y"}, "gemm");
    gemm.attributes = {FloatAttr("beta", beta)};
    g.nodes.push_back(gemm);
    Model m = MakeModel(std::move(g), 13);
    Model q = m;
    auto r = QuantizeDynamic(q, QuantizeOptions{});
    if (beta != 1.0f) {
      ASSERT_FALSE(r.ok());
      EXPECT_NE(r.status().message().find("beta"), std::string::npos) << r.status().message();
      continue;
    }
    ASSERT_TRUE(r.ok()) << r.status().message();
    const Node* add = FindOp(q.graph, "Add");
    ASSERT_NE(add, nullptr);
    EXPECT_EQ(add->inputs[1], "c");
    const Tensor a = Random({3, 8}, 32), c = Random({3, 5}, 33);
    auto ref = RunModel(m, {{"a", a}, {"c", c}});
    auto out = RunModel(q, {{"a", a}, {"c", c}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0]));
  }
}

TEST(QuantizeDynamic, GemmTransALeftInFloatWithReason) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {8, 3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {3, 5}), MakeValueInfo("z", DType::kFloat32, {3, 5})};
  g.AddInitializer("b", Random({8, 5}, 9));
  Node gemm = MakeNode("Gemm", {"a", "b"}, {"y"}, "gemm_t");
  gemm.attributes = {IntAttr("transA", 1)};
  g.nodes.push_back(gemm);
  Node ok = MakeNode("Gemm", {"y", "b2"}, {"z"}, "gemm_ok");
  g.AddInitializer("b2", Random({5, 5}, 10));
  g.nodes.push_back(ok);
  Model m = MakeModel(std::move(g), 13);
  QuantizeReport report;
  Model q = Quantized(m, QuantizeOptions{}, &report);
  EXPECT_EQ(report.quantized["Gemm"], 1);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_NE(report.skipped[0].node.find("gemm_t"), std::string::npos);
  EXPECT_NE(report.skipped[0].reason.find("transA"), std::string::npos);
  EXPECT_EQ(CountOps(q.graph, "Gemm"), 1);

  // The qdq-weights form does not care about transA.
  QuantizeOptions qdq;
  qdq.format = QuantFormat::kQdqWeights;
  QuantizeReport r2;
  Model q2 = Quantized(m, qdq, &r2);
  EXPECT_EQ(r2.quantized["Gemm"], 2);
  const Tensor a = Random({8, 3}, 11);
  auto ref = RunModel(m, {{"a", a}});
  auto out = RunModel(q2, {{"a", a}});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_LT(MaxAbsDiff(ref[1], out[1]), 0.03f * MaxAbs(ref[1]));
}

Model ConvModel() {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {1, 2, 5, 5})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 3, 5, 5})};
  g.AddInitializer("w", Random({3, 2, 3, 3}, 12));
  g.AddInitializer("bias", Random({3}, 13));
  Node conv = MakeNode("Conv", {"x", "w", "bias"}, {"y"}, "conv");
  conv.attributes = {IntsAttr("pads", {1, 1, 1, 1}), IntsAttr("kernel_shape", {3, 3})};
  g.nodes.push_back(conv);
  return MakeModel(std::move(g), 13);
}

TEST(QuantizeDynamic, ConvOnlyWhenSelected) {
  Model m = ConvModel();
  Model copy = m;
  auto r = QuantizeDynamic(copy, QuantizeOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("nothing to quantize"), std::string::npos) << r.status().message();
  EXPECT_EQ(CountOps(copy.graph, "Conv"), 1) << "the model must be unchanged on error";

  const Tensor x = Random({1, 2, 5, 5}, 14);
  auto ref = RunModel(m, {{"x", x}});
  for (auto type : {QuantWeightType::kInt8, QuantWeightType::kUInt8, QuantWeightType::kUInt8Symmetric}) {
    QuantizeOptions o;
    o.op_types = {"Conv"};
    o.weight_type = type;
    QuantizeReport report;
    Model q = Quantized(m, o, &report);
    EXPECT_EQ(report.quantized["Conv"], 1);
    const Node* ci = FindOp(q.graph, "ConvInteger");
    ASSERT_NE(ci, nullptr);
    const Tensor* wzp = q.graph.FindInitializer(ci->inputs[3]);
    EXPECT_EQ(wzp->rank(), 0u) << "ConvInteger needs a scalar weight zero point";
    if (type == QuantWeightType::kUInt8Symmetric) {
      EXPECT_EQ(wzp->GetAsInt64(0), 128);
    }
    if (type == QuantWeightType::kUInt8) {
      EXPECT_FALSE(report.notes.empty());
    }
    auto out = RunModel(q, {{"x", x}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0]));
  }
}

// uint8 symmetric weights (the default) are the int8 ones plus 128 with zero point 128: the runtime
// must give bit-identical outputs for both files, in every form.
TEST(QuantizeDynamic, Uint8SymmetricWeightsGiveExactlyTheInt8Results) {
  struct Case {
    const char* what;
    Model model;
    std::vector<std::string> op_types;
    QuantFormat format;
    Tensor x;
  };
  std::vector<Case> cases;
  cases.push_back({"MatMul integer-ops", MatMulModel(Random({6, 5}, 41)), {"MatMul"}, QuantFormat::kIntegerOps, Random({2, 6}, 42)});
  cases.push_back({"MatMul qdq-weights", MatMulModel(Random({6, 5}, 43)), {"MatMul"}, QuantFormat::kQdqWeights, Random({2, 6}, 44)});
  cases.push_back({"Conv integer-ops", ConvModel(), {"Conv"}, QuantFormat::kIntegerOps, Random({1, 2, 5, 5}, 45)});
  cases.push_back({"Conv qdq-weights", ConvModel(), {"Conv"}, QuantFormat::kQdqWeights, Random({1, 2, 5, 5}, 46)});
  for (const auto& c : cases) {
    QuantizeOptions o;
    o.op_types = c.op_types;
    o.format = c.format;
    o.weight_type = QuantWeightType::kInt8;
    Model q8 = Quantized(c.model, o);
    o.weight_type = QuantWeightType::kUInt8Symmetric;
    Model qu = Quantized(c.model, o);
    int uint8_weights = 0;
    for (const auto& [name, t] : qu.graph.initializers) uint8_weights += t.dtype() == DType::kUInt8 && t.rank() >= 2;
    EXPECT_EQ(uint8_weights, 1) << c.what;
    auto a = RunModel(q8, {{"x", c.x}});
    auto b = RunModel(qu, {{"x", c.x}});
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    ASSERT_EQ(a[0].numel(), b[0].numel());
    for (int64_t i = 0; i < a[0].numel(); ++i) ASSERT_EQ(a[0].data<float>()[i], b[0].data<float>()[i]) << c.what << " @" << i;
  }
}

// Static then dynamic (PaddleOCR rec: Conv static, MatMul dynamic): int8 weights already behind
// DequantizeLinear must stay int8, not be folded back into float by the dynamic pass.
TEST(QuantizeDynamic, KeepsExistingInt8WeightsBehindDequantize) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, 4})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, 3})};
  Tensor w8(DType::kInt8, {4, 4});
  for (int64_t i = 0; i < w8.numel(); ++i) w8.data<int8_t>()[i] = static_cast<int8_t>(i * 7 % 255 - 127);
  g.AddInitializer("w8", w8);
  g.AddInitializer("w8_scale", Tensor::Scalar(0.01f));
  g.AddInitializer("w8_zero", Tensor::Scalar(int8_t{0}));
  g.AddInitializer("w", Random({4, 3}, 21));
  g.nodes.push_back(MakeNode("DequantizeLinear", {"w8", "w8_scale", "w8_zero"}, {"w8_dq"}, "dq"));
  g.nodes.push_back(MakeNode("MatMul", {"x", "w8_dq"}, {"h"}, "mm_static"));
  g.nodes.push_back(MakeNode("MatMul", {"h", "w"}, {"y"}, "mm_float"));
  Model m = MakeModel(std::move(g), 13);
  QuantizeOptions o;
  o.exclude = {"mm_static"};
  QuantizeReport report;
  Model q = Quantized(m, o, &report);
  EXPECT_EQ(report.quantized["MatMul"], 1);
  const Node* dq = FindOp(q.graph, "DequantizeLinear");
  ASSERT_NE(dq, nullptr) << "the existing DequantizeLinear was folded away";
  const Tensor* kept = q.graph.FindInitializer(dq->inputs[0]);
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(kept->dtype(), DType::kInt8);
  EXPECT_EQ(q.graph.FindInitializer("w8_dq"), nullptr);
}

TEST(QuantizeDynamic, RowGranularity) {
  const Tensor w = Random({6, 4}, 15);
  Model m = MatMulModel(w);
  QuantizeOptions o;
  o.activation_granularity = ActivationGranularity::kRow;
  Model q = Quantized(m, o);
  EXPECT_EQ(CountOps(q.graph, "DynamicQuantizeLinear"), 0);
  EXPECT_EQ(CountOps(q.graph, "ReduceMax"), 1);
  EXPECT_EQ(CountOps(q.graph, "Round"), 1);
  const Node* mmi = FindOp(q.graph, "MatMulInteger");
  ASSERT_NE(mmi, nullptr);
  EXPECT_TRUE(mmi->inputs[2].empty()) << "int8 symmetric rows have no zero point";
  EXPECT_EQ(q.graph.FindInitializer(mmi->inputs[1])->dtype(), DType::kInt8)
      << "next to int8 activations, uint8-symmetric weights are written as int8";
  // Rows of very different magnitude: per-row scales keep the small row accurate.
  Tensor x = Random({2, 6}, 16);
  for (int k = 0; k < 6; ++k) x.data<float>()[6 + k] *= 1000.0f;
  auto ref = RunModel(m, {{"x", x}});
  auto out = RunModel(q, {{"x", x}});
  ASSERT_EQ(out.size(), 1u);
  for (int64_t row = 0; row < 2; ++row) {
    float err = 0, mag = 0;
    for (int64_t n = 0; n < 4; ++n) {
      err = std::max(err, std::fabs(ref[0].data<float>()[row * 4 + n] - out[0].data<float>()[row * 4 + n]));
      mag = std::max(mag, std::fabs(ref[0].data<float>()[row * 4 + n]));
    }
    EXPECT_LT(err, 0.03f * mag) << "row " << row;
  }
  // Opset 18+: ReduceMax takes axes as an input.
  Model m18 = MatMulModel(w);
  m18.SetOpsetVersion("", 18);
  Model q18 = Quantized(m18, o);
  const Node* rm = FindOp(q18.graph, "ReduceMax");
  ASSERT_NE(rm, nullptr);
  EXPECT_EQ(rm->inputs.size(), 2u);
  auto out18 = RunModel(q18, {{"x", x}});
  ASSERT_EQ(out18.size(), 1u);
  EXPECT_EQ(MaxAbsDiff(out[0], out18[0]), 0.0f);
}

// ---- qdq-weights and recurrent ----

TEST(QuantizeDynamic, QdqWeightsMatMulPerAxis) {
  const Tensor w = Random({4, 3}, 17);
  Model m = MatMulModel(w);
  QuantizeOptions o;
  o.format = QuantFormat::kQdqWeights;
  Model q = Quantized(m, o);
  EXPECT_EQ(q.OpsetVersion(""), 13);
  const Node* dq = FindOp(q.graph, "DequantizeLinear");
  ASSERT_NE(dq, nullptr);
  EXPECT_EQ(dq->AttrInt("axis", -99), 1);
  const Node* mm = FindOp(q.graph, "MatMul");
  ASSERT_NE(mm, nullptr);
  EXPECT_EQ(mm->inputs[1], dq->outputs[0]);
  EXPECT_EQ(CountOps(q.graph, "DynamicQuantizeLinear"), 0);
  const Tensor x = Random({2, 4}, 18);
  auto ref = RunModel(m, {{"x", x}});
  auto out = RunModel(q, {{"x", x}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.02f * MaxAbs(ref[0]));
}

Model LstmModel(const std::string& op) {
  const int64_t gates = op == "LSTM" ? 4 : 3, hidden = 3, input = 4;
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {5, 1, input})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {5, 1, 1, hidden})};
  g.AddInitializer("W", Random({1, gates * hidden, input}, 19));
  g.AddInitializer("R", Random({1, gates * hidden, hidden}, 20));
  g.AddInitializer("B", Random({1, 2 * gates * hidden}, 21));
  Node n = MakeNode(op, {"x", "W", "R", "B"}, {"y"}, "rnn");
  n.attributes = {IntAttr("hidden_size", hidden)};
  g.nodes.push_back(n);
  return MakeModel(std::move(g), 13);
}

TEST(QuantizeDynamic, RecurrentWeightsBehindDequantizeInBothFormats) {
  for (const std::string op : {"LSTM", "GRU"}) {
    Model m = LstmModel(op);
    const Tensor x = Random({5, 1, 4}, 22);
    auto ref = RunModel(m, {{"x", x}});
    for (auto format : {QuantFormat::kIntegerOps, QuantFormat::kQdqWeights}) {
      QuantizeOptions o;
      o.format = format;
      QuantizeReport report;
      Model q = Quantized(m, o, &report);
      EXPECT_EQ(report.quantized[op], 1);
      EXPECT_EQ(CountOps(q.graph, "DequantizeLinear"), 2);
      const Node* rnn = FindOp(q.graph, op);
      ASSERT_NE(rnn, nullptr);
      EXPECT_EQ(rnn->inputs[3], "B") << "the bias stays float";
      for (size_t i : {1u, 2u}) {
        EXPECT_NE(rnn->inputs[i], i == 1 ? "W" : "R");
        EXPECT_FALSE(q.graph.IsInitializer(i == 1 ? "W" : "R"));
      }
      const Node* dq = FindOp(q.graph, "DequantizeLinear");
      EXPECT_EQ(dq->AttrInt("axis", -99), 1);
      EXPECT_EQ(q.graph.FindInitializer(dq->inputs[0])->dtype(), DType::kInt8);
      auto out = RunModel(q, {{"x", x}});
      ASSERT_EQ(out.size(), 1u);
      EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.02f) << op;
    }
  }
}

// ---- subgraphs, Constant weights, opset upgrade ----

TEST(QuantizeDynamic, InsideIfBranchesWithOuterAndConstantWeights) {
  auto branch = [](const std::string& name, bool constant_node) {
    auto g = std::make_unique<Graph>();
    g->name = name;
    g->outputs = {MakeValueInfo(name + "_y", DType::kFloat32, {2, 3})};
    std::string w = "w_outer";
    if (constant_node) {
      w = name + "_w";
      Node c = MakeNode("Constant", {}, {w}, name + "_const");
      Attribute a;
      a.name = "value";
      a.type = Attribute::Type::kTensor;
      a.t = Random({4, 3}, 23);
      c.attributes = {a};
      g->nodes.push_back(c);
    }
    if (constant_node) {
      g->nodes.push_back(MakeNode("MatMul", {"x", w}, {name + "_y"}, name + "_mm"));
    } else {
      // One outer weight used directly, one computed in the branch from an outer constant.
      Node tr = MakeNode("Transpose", {"w_outer_t"}, {name + "_wt"}, name + "_transpose");
      tr.attributes = {IntsAttr("perm", {1, 0})};
      g->nodes.push_back(tr);
      g->nodes.push_back(MakeNode("MatMul", {"x", w}, {name + "_y1"}, name + "_mm"));
      g->nodes.push_back(MakeNode("MatMul", {"x", name + "_wt"}, {name + "_y2"}, name + "_mm_t"));
      g->nodes.push_back(MakeNode("Add", {name + "_y1", name + "_y2"}, {name + "_y"}, name + "_add"));
    }
    return DeepPtr<Graph>(std::move(g));
  };
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, 4}), MakeValueInfo("cond", DType::kBool, {})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, 3})};
  g.AddInitializer("w_outer", Random({4, 3}, 24));
  g.AddInitializer("w_outer_t", Random({3, 4}, 30));
  Node iff = MakeNode("If", {"cond"}, {"y"}, "if");
  Attribute then_a, else_a;
  then_a.name = "then_branch";
  then_a.type = Attribute::Type::kGraph;
  then_a.g = branch("then", false);
  else_a.name = "else_branch";
  else_a.type = Attribute::Type::kGraph;
  else_a.g = branch("else", true);
  iff.attributes = {then_a, else_a};
  g.nodes.push_back(iff);
  Model m = MakeModel(std::move(g), 13);
  QuantizeReport report;
  Model q = Quantized(m, QuantizeOptions{}, &report);
  EXPECT_EQ(report.quantized["MatMul"], 3);
  EXPECT_EQ(CountOps(q.graph, "MatMulInteger"), 3);
  EXPECT_EQ(CountOps(q.graph, "Transpose"), 0) << "the weight computed from a constant was folded";
  EXPECT_TRUE(q.graph.IsInitializer("w_outer_quantized")) << "outer weights stay in the outer graph";
  EXPECT_FALSE(q.graph.IsInitializer("w_outer_t")) << "the unused float weight is removed";
  const Tensor x = Random({2, 4}, 25);
  for (bool c : {true, false}) {
    auto ref = RunModel(m, {{"x", x}, {"cond", Tensor::Scalar<bool>(c)}});
    auto out = RunModel(q, {{"x", x}, {"cond", Tensor::Scalar<bool>(c)}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_LT(MaxAbsDiff(ref[0], out[0]), 0.03f * MaxAbs(ref[0])) << "cond=" << c;
  }
}

TEST(QuantizeDynamic, UpgradesOldOpsetOnlyWhenNeeded) {
  Model m = MatMulModel(Random({4, 3}, 26));
  m.SetOpsetVersion("", 9);
  QuantizeReport report;
  Model q = Quantized(m, QuantizeOptions{}, &report);
  EXPECT_EQ(report.opset_before, 9);
  EXPECT_EQ(q.OpsetVersion(""), 13);
  EXPECT_FALSE(report.notes.empty());
  Model m12 = MatMulModel(Random({4, 3}, 26));
  m12.SetOpsetVersion("", 12);
  Model q12 = Quantized(m12, QuantizeOptions{}, &report);
  EXPECT_EQ(q12.OpsetVersion(""), 12) << "integer-ops needs only opset 11";
}

// ---- options and errors ----

TEST(QuantizeDynamic, ExcludeByNameAndRegex) {
  Model m = MatMulModel(Random({4, 3}, 27), /*shared=*/true);
  QuantizeOptions o;
  o.exclude = {"mm2"};
  QuantizeReport report;
  Quantized(m, o, &report);
  EXPECT_EQ(report.quantized["MatMul"], 1);
  ASSERT_EQ(report.skipped.size(), 1u);
  EXPECT_EQ(report.skipped[0].reason, "excluded");

  o.exclude = {"mm.*"};
  Model copy = m;
  auto r = QuantizeDynamic(copy, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nothing to quantize"), std::string::npos);

  o.exclude = {"no_such_node"};
  r = QuantizeDynamic(copy, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no_such_node"), std::string::npos);
  o.exclude = {"(unbalanced"};
  r = QuantizeDynamic(copy, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("regular expression"), std::string::npos);
}

TEST(QuantizeDynamic, BadOptionsAndNothingToQuantize) {
  Model m = MatMulModel(Random({4, 3}, 28));
  QuantizeOptions o;
  o.op_types = {"MatMul", "Softmax"};
  auto r = QuantizeDynamic(m, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("Softmax"), std::string::npos);
  o = {};
  o.mode = QuantMode::kStatic;
  r = QuantizeDynamic(m, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  o = {};
  o.activation_granularity = ActivationGranularity::kRow;
  o.weight_type = QuantWeightType::kUInt8;
  EXPECT_FALSE(QuantizeDynamic(m, o).ok());

  // A MatMul whose weight is computed at run time: a candidate, but nothing can be quantized.
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {2, 2}), MakeValueInfo("b", DType::kFloat32, {2, 2})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, 2})};
  g.nodes.push_back(MakeNode("MatMul", {"a", "b"}, {"y"}, "dyn"));
  Model d = MakeModel(std::move(g), 13);
  r = QuantizeDynamic(d, QuantizeOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a constant"), std::string::npos) << r.status().message();
}

TEST(QuantizeConfig, JsonRoundTripMetadataAndErrors) {
  QuantizeOptions o;
  o.op_types = {"MatMul", "Conv"};
  o.exclude = {"head.*"};
  o.weight_type = QuantWeightType::kUInt8;
  o.per_channel = false;
  o.weight_range = WeightRange::kReduced;
  o.format = QuantFormat::kQdqWeights;
  const std::string json = quant::QuantizeOptionsToJson(o);
  QuantizeOptions back;
  ASSERT_TRUE(quant::ApplyQuantizeConfigJson(json, "test", &back).ok());
  EXPECT_EQ(quant::QuantizeOptionsToJson(back), json);
  EXPECT_EQ(back.op_types, o.op_types);
  EXPECT_EQ(back.weight_type, QuantWeightType::kUInt8);

  QuantizeOptions partial;
  ASSERT_TRUE(quant::ApplyQuantizeConfigJson(R"({"op_types": "MatMul,Gemm", "per_channel": false})", "t", &partial).ok());
  EXPECT_EQ(partial.op_types, (std::vector<std::string>{"MatMul", "Gemm"}));
  EXPECT_FALSE(partial.per_channel);
  EXPECT_EQ(partial.format, QuantFormat::kIntegerOps);

  Status s = quant::ApplyQuantizeConfigJson(R"({"weight_typo": "int8"})", "cfg.json", &partial);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("weight_typo"), std::string::npos);
  EXPECT_FALSE(quant::ApplyQuantizeConfigJson(R"({"weight_type": "int4"})", "cfg.json", &partial).ok());
  EXPECT_FALSE(quant::ApplyQuantizeConfigJson(R"({"per_channel": "yes"})", "cfg.json", &partial).ok());
  EXPECT_FALSE(quant::ApplyQuantizeConfigJson("{not json", "cfg.json", &partial).ok());

  Model m = MatMulModel(Random({4, 3}, 29));
  quant::SetQuantizationMetadata(m, o, "abc123");
  quant::SetQuantizationMetadata(m, o, "def456");  // replaces, does not duplicate
  std::map<std::string, std::string> meta(m.metadata_props.begin(), m.metadata_props.end());
  EXPECT_EQ(m.metadata_props.size(), 3u);
  EXPECT_EQ(meta["quantkit.source_sha256"], "def456");
  EXPECT_EQ(meta["quantkit.quantization"], json);
  EXPECT_FALSE(meta["quantkit.version"].empty());
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(Sha256Hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Streaming in odd pieces gives the same digest as one call.
  const std::string million(1000000, 'a');
  Sha256 s;
  for (size_t i = 0; i < million.size(); i += 997) s.Update(million.data() + i, std::min<size_t>(997, million.size() - i));
  EXPECT_EQ(s.HexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  EXPECT_FALSE(Sha256OfFile("/nonexistent/model.onnx").ok());
}

}  // namespace
}  // namespace quantkit
