// Session fuses float Conv -> Relu / Clip into com.quantkit::FusedConv, bit-identical to the
// separate ops (NaN and -0 included), for every conv path (depthwise, pointwise, im2col), Clip
// bounds from inputs (opset 13) and from attributes (opset 6), and leaves alone what it must.
// Then Conv [-> Relu] -> 2x2 MaxPool into FusedConv with max_pool_2x2, and Conv -> Add [-> Relu]
// into FusedConv with the residual as input 3; MatMul -> Add(bias) into FusedMatMul;
// the erf GELU's five ops into GeluErfChain.
// Likewise a decomposed hard-swish (Add, Clip, Mul, Div or Mul) into com.quantkit::HardSwishChain.
// A zero spatial Pad read only by Convs goes into their pads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "test_util.h"

namespace quantkit {
namespace {

using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::RandomFloats;
using testing::RunModel;

struct Case {
  int64_t C, M, k, group;
  const char* act;  // "Relu", "Clip", "Clip6" (opset 6 attributes)
};

Model ConvActModel(const Case& c, bool output_conv_too) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {1, c.C, 9, 11}));
  g.AddInitializer("w", RandomFloats({c.M, c.C / c.group, c.k, c.k}, 3));
  g.AddInitializer("b", RandomFloats({c.M}, 4));
  Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"}, "conv");
  conv.attributes = {IntAttr("group", c.group), IntsAttr("pads", {c.k / 2, c.k / 2, c.k / 2, c.k / 2})};
  g.nodes.push_back(conv);
  const std::string act = c.act;
  if (act == "Relu") {
    g.nodes.push_back(MakeNode("Relu", {"y"}, {"z"}));
  } else if (act == "Clip") {
    g.AddInitializer("lo", Tensor::Scalar<float>(-0.5f));
    g.AddInitializer("hi", Tensor::Scalar<float>(1.25f));
    g.nodes.push_back(MakeNode("Clip", {"y", "lo", "hi"}, {"z"}));
  } else {
    Node clip = MakeNode("Clip", {"y"}, {"z"});
    clip.attributes = {testing::FloatAttr("min", 0.f), testing::FloatAttr("max", 6.f)};
    g.nodes.push_back(clip);
  }
  ValueInfo z;
  z.name = "z";
  g.outputs.push_back(z);
  if (output_conv_too) {
    ValueInfo y;
    y.name = "y";
    g.outputs.push_back(y);
  }
  return MakeModel(std::move(g), act == "Clip6" ? 6 : 13);
}

int CountFused(const Model& m) {
  auto s = Session::Create(m);
  if (!s.ok()) return -1;
  int n = 0;
  for (const Node& node : (*s)->model().graph.nodes) n += node.op_type == "FusedConv";
  return n;
}

// Expects the fused run's first output to equal the separate ops' bit for bit (a NaN matches
// any NaN; the first mismatch is reported); returns how many NaNs it holds.
int ExpectSameBits(const std::vector<Tensor>& fused, const std::vector<Tensor>& separate) {
  if (fused.empty() || separate.empty()) {
    ADD_FAILURE() << "no outputs";
    return 0;
  }
  EXPECT_EQ(fused[0].shape(), separate[0].shape());
  if (fused[0].shape() != separate[0].shape()) return 0;
  int nans = 0;
  for (int64_t i = 0; i < fused[0].numel(); ++i) {
    const float a = fused[0].data<float>()[i], b = separate[0].data<float>()[i];
    nans += std::isnan(b);
    if (!(std::memcmp(&a, &b, sizeof(a)) == 0 || (std::isnan(a) && std::isnan(b)))) {
      ADD_FAILURE() << "element " << i << ": fused " << a << ", separate " << b;
      break;
    }
  }
  return nans;
}

// The outputs of a session with `threads` workers (and the inference passes).
std::vector<Tensor> RunWithThreads(const Model& m, const std::vector<std::pair<std::string, Tensor>>& inputs,
                                   int threads) {
  SessionOptions opts;
  opts.threads = threads;
  auto s = Session::Create(m, opts);
  if (!s.ok()) {
    ADD_FAILURE() << s.status().message();
    return {};
  }
  std::vector<Tensor> out;
  const Status st = (*s)->Run(inputs, &out);
  if (!st.ok()) ADD_FAILURE() << st.message();
  return out;
}

TEST(FuseConvActivation, BitIdenticalToSeparateOps) {
  const std::vector<Case> cases = {{4, 6, 3, 1, "Relu"},  {8, 8, 3, 8, "Clip"},  // im2col GEMM, depthwise
                                   {5, 7, 1, 1, "Clip6"}, {6, 4, 3, 2, "Relu"}}; // pointwise, grouped
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.act) + " C=" + std::to_string(c.C));
    const Model m = ConvActModel(c, false);
    EXPECT_EQ(CountFused(m), 1);
    Tensor x = RandomFloats({1, c.C, 9, 11}, 7, 2.f);
    x.data<float>()[5] = std::numeric_limits<float>::quiet_NaN();  // NaN through the conv and the clamp
    EXPECT_GT(ExpectSameBits(RunModel(m, {{"x", x}}, true), RunModel(m, {{"x", x}}, false)), 0);
  }
}

TEST(FuseConvActivation, ConvOutputNeededElsewhereIsNotFused) {
  EXPECT_EQ(CountFused(ConvActModel({4, 6, 3, 1, "Relu"}, true)), 0);
}

// x -> Add(x, 3) -> Clip(0, 6) -> Mul -> Div(., 6) or Mul(., 1/6), as PaddleOCR exports hard-swish.
Model HardSwishModel(int opset, bool mul_clip_first, bool divide, bool clip_also_output) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {2, 3, 5, 7}));
  g.AddInitializer("three", Tensor::Scalar<float>(3.f));
  g.AddInitializer("scale", Tensor::Scalar<float>(divide ? 6.f : 1.f / 6.f));
  g.nodes.push_back(MakeNode("Add", {"x", "three"}, {"a"}, "add"));
  if (opset < 11) {
    Node clip = MakeNode("Clip", {"a"}, {"c"});
    clip.attributes = {testing::FloatAttr("min", 0.f), testing::FloatAttr("max", 6.f)};
    g.nodes.push_back(clip);
  } else {
    g.AddInitializer("lo", Tensor::Scalar<float>(0.f));
    g.AddInitializer("hi", Tensor::Scalar<float>(6.f));
    g.nodes.push_back(MakeNode("Clip", {"a", "lo", "hi"}, {"c"}));
  }
  g.nodes.push_back(MakeNode("Mul", mul_clip_first ? std::vector<std::string>{"c", "x"} : std::vector<std::string>{"x", "c"},
                             {"m"}));
  g.nodes.push_back(MakeNode(divide ? "Div" : "Mul", {"m", "scale"}, {"y"}));
  for (const char* name : {"y", "c"}) {
    if (std::string(name) == "c" && !clip_also_output) continue;
    ValueInfo v;
    v.name = name;
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), opset);
}

int CountOp(const Model& m, const char* op) {
  auto s = Session::Create(m);
  if (!s.ok()) return -1;
  int n = 0;
  for (const Node& node : (*s)->model().graph.nodes) n += node.op_type == op;
  return n;
}

TEST(FuseHardSwishChain, BitIdenticalToSeparateOps) {
  for (int opset : {6, 13}) {
    for (bool mul_clip_first : {false, true}) {
      for (bool divide : {true, false}) {
        SCOPED_TRACE("opset " + std::to_string(opset) + (mul_clip_first ? " Mul(c, x)" : " Mul(x, c)") +
                     (divide ? " Div" : " Mul"));
        const Model m = HardSwishModel(opset, mul_clip_first, divide, false);
        EXPECT_EQ(CountOp(m, "HardSwishChain"), 1);
        EXPECT_EQ(CountOp(m, "Clip"), 0);
        Tensor x = RandomFloats({2, 3, 5, 7}, 9, 8.f);
        float* xd = x.data<float>();
        xd[0] = std::numeric_limits<float>::quiet_NaN();
        xd[1] = std::numeric_limits<float>::infinity();
        xd[2] = -std::numeric_limits<float>::infinity();
        xd[3] = -0.f;
        xd[4] = -3.f;
        xd[5] = 3.f;
        EXPECT_GT(ExpectSameBits(RunModel(m, {{"x", x}}, true), RunModel(m, {{"x", x}}, false)), 0);
      }
    }
  }
}

TEST(FuseHardSwishChain, IntermediateNeededElsewhereIsNotFused) {
  const Model m = HardSwishModel(13, false, true, true);
  EXPECT_EQ(CountOp(m, "HardSwishChain"), 0);
  EXPECT_EQ(CountOp(m, "Clip"), 1);
}

// Conv [-> Relu] -> MaxPool 2x2 / 2 becomes one FusedConv (max_pool_2x2), bit-identical to the
// separate ops at 1 and 2 threads, for few images (the conv over all threads, then the pool)
// and many (one image per worker, pooled from cache), through the taps, packed, pointwise,
// depthwise and small-map (transposed) conv paths, odd sizes (the last row and column dropped),
// NaN included. MaxPools it cannot take stay separate.
struct PoolCase {
  int64_t N, C, M, k, group, H, W;
  bool relu;
};

Model ConvPoolModel(const PoolCase& c, const std::vector<Attribute>& pool_attrs, bool conv_output_too = false,
                    bool with_indices = false) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {c.N, c.C, c.H, c.W}));
  g.AddInitializer("w", RandomFloats({c.M, c.C / c.group, c.k, c.k}, 3));
  g.AddInitializer("b", RandomFloats({c.M}, 4));
  Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"}, "conv");
  conv.attributes = {IntAttr("group", c.group), IntsAttr("pads", {c.k / 2, c.k / 2, c.k / 2, c.k / 2})};
  g.nodes.push_back(conv);
  std::string pooled_input = "y";
  if (c.relu) {
    g.nodes.push_back(MakeNode("Relu", {"y"}, {"r"}));
    pooled_input = "r";
  }
  Node pool = MakeNode("MaxPool", {pooled_input}, with_indices ? std::vector<std::string>{"z", "i"}
                                                                : std::vector<std::string>{"z"});
  pool.attributes = pool_attrs;
  g.nodes.push_back(pool);
  for (const char* name : {"z", "y", "i"}) {
    if ((name[0] == 'y' && !conv_output_too) || (name[0] == 'i' && !with_indices)) continue;
    ValueInfo v;
    v.name = name;
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), 13);
}

std::vector<Attribute> Pool2x2() { return {IntsAttr("kernel_shape", {2, 2}), IntsAttr("strides", {2, 2})}; }

int CountFusedPools(const Model& m) {
  auto s = Session::Create(m);
  if (!s.ok()) return -1;
  int n = 0;
  for (const Node& node : (*s)->model().graph.nodes) n += node.AttrInt("max_pool_2x2", 0) != 0;
  return n;
}

TEST(FuseConvMaxPool, BitIdenticalToSeparateOps) {
  const std::vector<PoolCase> cases = {
      {7, 3, 8, 3, 1, 11, 13, true},   // many images: one per worker; taps path
      {1, 4, 6, 3, 1, 12, 10, false},  // few images, no activation
      {5, 6, 10, 1, 1, 9, 9, true},    // pointwise
      {6, 8, 8, 3, 8, 10, 7, true},    // depthwise
      {3, 16, 32, 3, 1, 8, 8, false},  // 64 output pixels, 32 channels: the transposed small-map conv
      {2, 4, 6, 3, 2, 2, 3, true},     // grouped; a 2x3 map pools to 1x1
  };
  for (const PoolCase& c : cases) {
    SCOPED_TRACE("N=" + std::to_string(c.N) + " C=" + std::to_string(c.C) + " k=" + std::to_string(c.k) +
                 " group=" + std::to_string(c.group));
    const Model m = ConvPoolModel(c, Pool2x2());
    EXPECT_EQ(CountFusedPools(m), 1);
    Tensor x = RandomFloats({c.N, c.C, c.H, c.W}, 7, 2.f);
    x.data<float>()[0] = x.data<float>()[c.W + 1] = std::numeric_limits<float>::quiet_NaN();
    const auto separate = RunModel(m, {{"x", x}}, false);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      const int nans = ExpectSameBits(RunWithThreads(m, {{"x", x}}, threads), separate);
      if (c.C > 1 && c.group == 1) {
        EXPECT_GT(nans, 0);
      }
    }
  }
}

TEST(FuseConvMaxPool, OnlyThePlain2x2PoolOfAConvUsedNowhereElse) {
  const PoolCase c = {2, 3, 4, 3, 1, 8, 8, true};
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, Pool2x2(), /*conv_output_too=*/true)), 0);
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, Pool2x2(), false, /*with_indices=*/true)), 0);
  auto with = [](std::vector<Attribute> extra) {
    std::vector<Attribute> a = Pool2x2();
    for (auto& e : extra) a.push_back(std::move(e));
    return a;
  };
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, with({IntsAttr("pads", {0, 0, 1, 1})}))), 0);
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, with({IntAttr("ceil_mode", 1)}))), 0);
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, with({IntsAttr("dilations", {2, 2})}))), 0);
  EXPECT_EQ(CountFusedPools(ConvPoolModel(
                c, {IntsAttr("kernel_shape", {3, 3}), IntsAttr("strides", {2, 2})})),
            0);
  EXPECT_EQ(CountFusedPools(ConvPoolModel(c, with({IntsAttr("pads", {0, 0, 0, 0})}))), 1);
}

// Conv -> Add(., r) [-> Relu] becomes one FusedConv reading r (input 3), bit-identical to the
// separate ops: r produced after the conv in the original order (the graph is sorted again), r
// as the Add's first or second input, r broadcast (a per-channel [1, M, 1, 1] graph input, and a
// larger batch that widens the output), the depthwise, pointwise and 3x3 paths, NaN included.
struct ResidualCase {
  int64_t C, M, k, group;
  bool relu, r_first;
  Shape r_shape;  // empty: r = a second conv of x, the conv's shape
};

Model ConvResidualModel(const ResidualCase& c, bool conv_output_too = false) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {1, c.C, 9, 10}));
  g.AddInitializer("w", RandomFloats({c.M, c.C / c.group, c.k, c.k}, 3));
  g.AddInitializer("b", RandomFloats({c.M}, 4));
  Node conv = MakeNode("Conv", {"x", "w", "b"}, {"y"}, "conv");
  conv.attributes = {IntAttr("group", c.group), IntsAttr("pads", {c.k / 2, c.k / 2, c.k / 2, c.k / 2})};
  g.nodes.push_back(conv);
  if (c.r_shape.empty()) {  // the shortcut conv comes after the main one, as exporters write it
    g.AddInitializer("w2", RandomFloats({c.M, c.C, 1, 1}, 5));
    g.nodes.push_back(MakeNode("Conv", {"x", "w2"}, {"r"}, "shortcut"));
  } else {
    g.inputs.push_back(MakeValueInfo("r", DType::kFloat32, c.r_shape));
  }
  g.nodes.push_back(MakeNode("Add", c.r_first ? std::vector<std::string>{"r", "y"} : std::vector<std::string>{"y", "r"},
                             {c.relu ? "s" : "z"}));
  if (c.relu) g.nodes.push_back(MakeNode("Relu", {"s"}, {"z"}));
  for (const char* name : {"z", "y"}) {
    if (name[0] == 'y' && !conv_output_too) continue;
    ValueInfo v;
    v.name = name;
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), 13);
}

// Convs with a fused residual, plus 100 per Add or Relu left.
int CountResidualConvs(const Model& m) {
  auto s = Session::Create(m);
  if (!s.ok()) return -1;
  int n = 0;
  for (const Node& node : (*s)->model().graph.nodes) n += node.op_type == "FusedConv" && node.HasInput(3);
  for (const Node& node : (*s)->model().graph.nodes) n += node.op_type == "Add" || node.op_type == "Relu" ? 100 : 0;
  return n;
}

TEST(FuseConvResidualAdd, BitIdenticalToSeparateOps) {
  const std::vector<ResidualCase> cases = {
      {4, 6, 3, 1, true, false, {}},             // 3x3 (taps) + Relu
      {6, 8, 1, 1, false, true, {}},             // pointwise, r first, no activation
      {8, 8, 3, 8, true, false, {}},             // depthwise
      {4, 6, 3, 1, true, false, {1, 6, 1, 1}},   // r broadcast per channel
      {4, 6, 3, 1, false, true, {2, 6, 9, 10}},  // r has a larger batch: the output widens
  };
  for (const ResidualCase& c : cases) {
    SCOPED_TRACE("C=" + std::to_string(c.C) + " k=" + std::to_string(c.k) + " group=" + std::to_string(c.group) +
                 " r " + ShapeToString(c.r_shape));
    const Model m = ConvResidualModel(c);
    EXPECT_EQ(CountResidualConvs(m), 1);
    Tensor x = RandomFloats({1, c.C, 9, 10}, 7, 2.f);
    x.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::pair<std::string, Tensor>> inputs = {{"x", x}};
    if (!c.r_shape.empty()) inputs.emplace_back("r", RandomFloats(c.r_shape, 11, 3.f));
    const auto separate = RunModel(m, inputs, false);
    for (int threads : {1, 2}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      EXPECT_GT(ExpectSameBits(RunWithThreads(m, inputs, threads), separate), 0);
    }
  }
}

TEST(FuseConvResidualAdd, NotWhenTheConvOutputIsNeededOrTheAddendIsConstant) {
  // y also a graph output: the Add and the Relu stay.
  EXPECT_EQ(CountResidualConvs(ConvResidualModel({4, 6, 3, 1, true, false, {1, 6, 9, 10}}, /*conv_output_too=*/true)),
            200);
  // A constant addend is not a residual (here folded into the conv's bias by the inference passes).
  Model constant = ConvResidualModel({4, 6, 3, 1, false, false, {1, 6, 1, 1}});
  constant.graph.inputs.pop_back();
  constant.graph.AddInitializer("r", RandomFloats({1, 6, 1, 1}, 9));
  EXPECT_EQ(CountResidualConvs(constant) % 100, 0);
}

// MatMul by a constant matrix -> Add of a constant vector becomes com.quantkit::FusedMatMul,
// bit-identical to the separate ops (batched A, the bias as the Add's first or second input, a
// one-row A (the GEMV path), NaN included); a [1, N] bias or a MatMul output used elsewhere stays.
Model MatMulBiasModel(const Shape& a_shape, const Shape& bias_shape, bool bias_first, bool mm_output_too = false) {
  Graph g;
  const int64_t K = a_shape.back(), N = 7;
  g.inputs.push_back(MakeValueInfo("a", DType::kFloat32, a_shape));
  g.AddInitializer("w", RandomFloats({K, N}, 3));
  g.AddInitializer("bias", RandomFloats(bias_shape, 4));
  g.nodes.push_back(MakeNode("MatMul", {"a", "w"}, {"y"}, "mm"));
  g.nodes.push_back(MakeNode("Add", bias_first ? std::vector<std::string>{"bias", "y"} : std::vector<std::string>{"y", "bias"},
                             {"z"}));
  for (const char* name : {"z", "y"}) {
    if (name[0] == 'y' && !mm_output_too) continue;
    ValueInfo v;
    v.name = name;
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), 13);
}

TEST(FuseMatMulBias, BitIdenticalToSeparateOps) {
  for (const Shape& a_shape : {Shape{2, 3, 5}, Shape{1, 40}, Shape{64, 300}}) {
    for (bool bias_first : {false, true}) {
      SCOPED_TRACE(ShapeToString(a_shape) + (bias_first ? " Add(bias, y)" : " Add(y, bias)"));
      const Model m = MatMulBiasModel(a_shape, {7}, bias_first);
      EXPECT_EQ(CountOp(m, "FusedMatMul"), 1);
      EXPECT_EQ(CountOp(m, "Add"), 0);
      Tensor a = RandomFloats(a_shape, 8, 2.f);
      a.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
      EXPECT_GT(ExpectSameBits(RunModel(m, {{"a", a}}, true), RunModel(m, {{"a", a}}, false)), 0);
    }
  }
}

TEST(FuseMatMulBias, OnlyAVectorBiasOfAMatMulUsedNowhereElse) {
  EXPECT_EQ(CountOp(MatMulBiasModel({3, 5}, {1, 7}, false), "FusedMatMul"), 0);
  EXPECT_EQ(CountOp(MatMulBiasModel({3, 5}, {7}, false, /*mm_output_too=*/true), "FusedMatMul"), 0);
}

// The erf GELU as PyTorch exports it (Div or Mul by a constant, Erf, Add, Mul by x, Mul or Div by
// a constant) becomes com.quantkit::GeluErfChain, bit-identical to the five ops (NaN, infinities,
// large and tiny values, odd lengths through the vector tail); an intermediate read elsewhere
// keeps the chain apart.
Model GeluModel(bool pre_divide, bool post_divide, bool x_second, bool erf_output_too = false) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {3, 37}));
  g.AddInitializer("c1", Tensor::Scalar<float>(pre_divide ? 1.4142135f : 0.70710678f));
  g.AddInitializer("one", Tensor::Scalar<float>(1.f));
  g.AddInitializer("c3", Tensor::Scalar<float>(post_divide ? 2.f : 0.5f));
  g.nodes.push_back(MakeNode(pre_divide ? "Div" : "Mul", {"x", "c1"}, {"t"}, "gelu_pre"));
  g.nodes.push_back(MakeNode("Erf", {"t"}, {"e"}));
  g.nodes.push_back(MakeNode("Add", {"e", "one"}, {"a"}));
  g.nodes.push_back(MakeNode("Mul", x_second ? std::vector<std::string>{"a", "x"} : std::vector<std::string>{"x", "a"}, {"m"}));
  g.nodes.push_back(MakeNode(post_divide ? "Div" : "Mul", {"m", "c3"}, {"y"}));
  for (const char* name : {"y", "e"}) {
    if (name[0] == 'e' && !erf_output_too) continue;
    ValueInfo v;
    v.name = name;
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), 13);
}

TEST(FuseGeluErfChain, BitIdenticalToSeparateOps) {
  for (bool pre_divide : {true, false}) {
    for (bool post_divide : {false, true}) {
      for (bool x_second : {false, true}) {
        SCOPED_TRACE(std::string(pre_divide ? "Div" : "Mul") + (post_divide ? " Div" : " Mul") + (x_second ? " a*x" : " x*a"));
        const Model m = GeluModel(pre_divide, post_divide, x_second);
        EXPECT_EQ(CountOp(m, "GeluErfChain"), 1);
        EXPECT_EQ(CountOp(m, "Erf"), 0);
        Tensor x = RandomFloats({3, 37}, 12, 4.f);
        float* xd = x.data<float>();
        xd[0] = std::numeric_limits<float>::quiet_NaN();
        xd[1] = std::numeric_limits<float>::infinity();
        xd[2] = -std::numeric_limits<float>::infinity();
        xd[3] = 1e30f;
        xd[4] = -1e-30f;
        xd[5] = -0.f;
        EXPECT_GT(ExpectSameBits(RunModel(m, {{"x", x}}, true), RunModel(m, {{"x", x}}, false)), 0);
      }
    }
  }
}

TEST(FuseGeluErfChain, NotWhenAnIntermediateIsReadElsewhere) {
  EXPECT_EQ(CountOp(GeluModel(true, false, false, /*erf_output_too=*/true), "GeluErfChain"), 0);
}

// x -> Pad -> {depthwise stride-2 Conv, 3x3 Conv}, as TensorFlow exports SAME padding of
// stride-2 convs: the Pad's spatial pads move into both convs (opset 13: pads from an input; opset
// 10: from the attribute) with the separate ops' values, NaN included.
Model PadConvModel(int opset, std::vector<int64_t> pads, float value, bool pad_read_elsewhere) {
  Graph g;
  g.inputs.push_back(MakeValueInfo("x", DType::kFloat32, {1, 16, 9, 11}));
  g.AddInitializer("wd", RandomFloats({16, 1, 3, 3}, 3));
  g.AddInitializer("w", RandomFloats({8, 16, 3, 3}, 4));
  g.AddInitializer("b", RandomFloats({8}, 5));
  Node pad = MakeNode("Pad", {"x"}, {"xp"}, "pad");
  if (opset >= 11) {
    g.AddInitializer("pads", Tensor::FromVector<int64_t>(pads, {8}));
    g.AddInitializer("value", Tensor::Scalar<float>(value));
    pad.inputs = {"x", "pads", "value"};
  } else {
    pad.attributes = {IntsAttr("pads", pads), testing::FloatAttr("value", value)};
  }
  g.nodes.push_back(pad);
  Node dw = MakeNode("Conv", {"xp", "wd"}, {"yd"}, "dw");
  dw.attributes = {IntAttr("group", 16), IntsAttr("strides", {2, 2})};
  Node conv = MakeNode("Conv", {"xp", "w", "b"}, {"y"}, "conv");
  conv.attributes = {IntsAttr("pads", {1, 0, 0, 1})};
  g.nodes.push_back(dw);
  g.nodes.push_back(conv);
  for (const char* out : {"yd", "y"}) {
    ValueInfo v;
    v.name = out;
    g.outputs.push_back(v);
  }
  if (pad_read_elsewhere) {
    g.nodes.push_back(MakeNode("Relu", {"xp"}, {"r"}));
    ValueInfo v;
    v.name = "r";
    g.outputs.push_back(v);
  }
  return MakeModel(std::move(g), opset);
}

int CountPads(const Model& m) {
  auto s = Session::Create(m);
  EXPECT_TRUE(s.ok()) << s.status().message();
  int pads = 0;
  if (s.ok())
    for (const Node& n : (*s)->model().graph.nodes) pads += n.op_type == "Pad";
  return pads;
}

TEST(FusePadIntoConv, SameValuesAsTheSeparatePad) {
  for (int opset : {10, 13}) {
    for (const std::vector<int64_t>& pads :
         {std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 1}, std::vector<int64_t>{0, 0, 2, 1, 0, 0, 0, 3}}) {
      SCOPED_TRACE("opset " + std::to_string(opset) + " pads " + std::to_string(pads[2]) + std::to_string(pads[3]) +
                   std::to_string(pads[6]) + std::to_string(pads[7]));
      const Model m = PadConvModel(opset, pads, 0.f, false);
      EXPECT_EQ(CountPads(m), 0);
      Tensor x = RandomFloats({1, 16, 9, 11}, 7, 2.f);
      x.data<float>()[12] = std::numeric_limits<float>::quiet_NaN();
      const auto fused = RunModel(m, {{"x", x}}, true), separate = RunModel(m, {{"x", x}}, false);
      ASSERT_EQ(fused.size(), 2u);
      ASSERT_EQ(separate.size(), 2u);
      int nans = 0;
      for (size_t o = 0; o < 2; ++o) {
        ASSERT_EQ(fused[o].shape(), separate[o].shape()) << o;
        for (int64_t i = 0; i < fused[o].numel(); ++i) {
          const float a = fused[o].data<float>()[i], b = separate[o].data<float>()[i];
          nans += std::isnan(b);
          ASSERT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << o << " " << i << ": " << a << " vs " << b;
        }
      }
      EXPECT_GT(nans, 0);
    }
  }
}

TEST(FusePadIntoConv, NotANonZeroNegativeOrSharedPad) {
  EXPECT_EQ(CountPads(PadConvModel(13, {0, 0, 1, 1, 0, 0, 1, 1}, 0.5f, false)), 1);  // pads with 0.5
  EXPECT_EQ(CountPads(PadConvModel(13, {0, 0, -1, 0, 0, 0, 1, 1}, 0.f, false)), 1);  // crops a row
  EXPECT_EQ(CountPads(PadConvModel(10, {0, 0, 1, 1, 0, 0, 1, 1}, 0.f, true)), 1);   // a Relu reads it too
}

}  // namespace
}  // namespace quantkit
