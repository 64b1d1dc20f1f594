// Graph passes: each tested on a small graph, structurally and (where kernels exist) numerically.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "passes/passes.h"
#include "quantkit/model_io.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::MakeModel;
using testing::MakeNode;
using testing::MakeValueInfo;
using testing::MaxAbsDiff;
using testing::RunModel;

Tensor Random(Shape shape, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

TEST(TopologicalSort, OrdersAndDetectsCycles) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {1})};
  g.outputs = {MakeValueInfo("z", DType::kFloat32, {1})};
  g.nodes.push_back(MakeNode("Relu", {"y"}, {"z"}));
  g.nodes.push_back(MakeNode("Neg", {"x"}, {"y"}));
  ASSERT_TRUE(passes::TopologicalSort(g).ok());
  EXPECT_EQ(g.nodes[0].op_type, "Neg");
  EXPECT_TRUE(VerifyGraph(g).ok());

  Graph cyc;
  cyc.inputs = {MakeValueInfo("x", DType::kFloat32, {1})};
  cyc.outputs = {MakeValueInfo("b", DType::kFloat32, {1})};
  cyc.nodes.push_back(MakeNode("Add", {"x", "b"}, {"a"}, "first"));
  cyc.nodes.push_back(MakeNode("Relu", {"a"}, {"b"}, "second"));
  Status s = passes::TopologicalSort(cyc);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cycle"), std::string::npos) << s.message();
}

TEST(DeadNodes, RemovesUnusedNodesAndInitializers) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2})};
  g.AddInitializer("unused_w", Tensor::FromVector<float>({1, 2}, {2}));
  g.nodes.push_back(MakeNode("Relu", {"x"}, {"y"}));
  g.nodes.push_back(MakeNode("Mul", {"x", "unused_w"}, {"dead"}));
  Model m = MakeModel(std::move(g));
  ASSERT_TRUE(passes::EliminateDeadNodes(m).ok());
  EXPECT_EQ(m.graph.nodes.size(), 1u);
  EXPECT_FALSE(m.graph.IsInitializer("unused_w"));
}

TEST(EliminateIdentities, RewiresConsumersAndGraphOutputs) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2})};
  g.outputs = {MakeValueInfo("out", DType::kFloat32, {2})};
  g.nodes.push_back(MakeNode("Relu", {"x"}, {"r"}));
  g.nodes.push_back(MakeNode("Identity", {"r"}, {"i1"}));
  g.nodes.push_back(MakeNode("Dropout", {"i1"}, {"d"}));
  g.nodes.push_back(MakeNode("Neg", {"d"}, {"n"}));
  g.nodes.push_back(MakeNode("Identity", {"n"}, {"out"}));
  Model m = MakeModel(std::move(g));
  ASSERT_TRUE(passes::EliminateIdentities(m).ok());
  ASSERT_EQ(m.graph.nodes.size(), 2u);
  EXPECT_EQ(m.graph.nodes[1].op_type, "Neg");
  EXPECT_EQ(m.graph.nodes[1].inputs[0], "r");
  EXPECT_EQ(m.graph.nodes[1].outputs[0], "out");  // producer renamed to the graph output
  EXPECT_TRUE(VerifyGraph(m.graph).ok());
  auto out = RunModel(m, {{"x", Tensor::FromVector<float>({-1, 2}, {2})}}, false);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ToFloatVector(), (std::vector<float>{-0.f, -2.f}));
}

TEST(FoldConstants, FoldsConstantSubgraphsOnly) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {3})};
  g.AddInitializer("a", Tensor::FromVector<float>({1, 2, 3}, {3}));
  g.AddInitializer("b", Tensor::FromVector<float>({10, 20, 30}, {3}));
  g.nodes.push_back(MakeNode("Add", {"a", "b"}, {"ab"}));
  g.nodes.push_back(MakeNode("Neg", {"ab"}, {"nab"}));
  g.nodes.push_back(MakeNode("Mul", {"x", "nab"}, {"y"}));
  Model m = MakeModel(std::move(g));
  ASSERT_TRUE(passes::FoldConstants(m).ok());
  ASSERT_EQ(m.graph.nodes.size(), 1u);
  EXPECT_EQ(m.graph.nodes[0].op_type, "Mul");
  ASSERT_TRUE(m.graph.IsInitializer("nab"));
  EXPECT_EQ(m.graph.initializers.at("nab").ToFloatVector(), (std::vector<float>{-11, -22, -33}));
}

TEST(InlineConstantIf, TakesTheRightBranch) {
  auto branch = [](const std::string& op, const std::string& out_name) {
    auto g = std::make_unique<Graph>();
    g->name = op + "_branch";
    g->outputs = {MakeValueInfo(out_name, DType::kFloat32, {2})};
    g->nodes.push_back(MakeNode(op, {"x"}, {out_name}));
    return DeepPtr<Graph>(std::move(g));
  };
  for (bool cond : {true, false}) {
    Graph g;
    g.inputs = {MakeValueInfo("x", DType::kFloat32, {2})};
    g.outputs = {MakeValueInfo("y", DType::kFloat32, {2})};
    g.AddInitializer("c", Tensor::Scalar<bool>(cond));
    Node n = MakeNode("If", {"c"}, {"y"});
    Attribute then_a, else_a;
    then_a.name = "then_branch";
    then_a.type = Attribute::Type::kGraph;
    then_a.g = branch("Neg", "t_out");
    else_a.name = "else_branch";
    else_a.type = Attribute::Type::kGraph;
    else_a.g = branch("Relu", "e_out");
    n.attributes = {then_a, else_a};
    g.nodes.push_back(n);
    Model m = MakeModel(std::move(g));
    ASSERT_TRUE(passes::InlineConstantIf(m).ok());
    ASSERT_EQ(m.graph.nodes.size(), 1u);
    EXPECT_EQ(m.graph.nodes[0].op_type, cond ? "Neg" : "Relu");
    EXPECT_EQ(m.graph.nodes[0].outputs[0], "y");
    EXPECT_TRUE(VerifyGraph(m.graph).ok());
  }
}

Model ConvBnModel(int64_t group, bool transpose) {
  const int64_t cin = 4, cout = 6;
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {1, cin, 5, 5})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {})};
  g.outputs[0].has_shape = false;
  if (transpose) g.AddInitializer("w", Random({cin, cout / group, 3, 3}, 1));
  else g.AddInitializer("w", Random({cout, cin / group, 3, 3}, 1));
  g.AddInitializer("bias", Random({cout}, 2));
  g.AddInitializer("gamma", Random({cout}, 3, 0.5f, 2.f));
  g.AddInitializer("beta", Random({cout}, 4));
  g.AddInitializer("mean", Random({cout}, 5));
  g.AddInitializer("var", Random({cout}, 6, 0.1f, 3.f));
  Node conv = MakeNode(transpose ? "ConvTranspose" : "Conv", {"x", "w", "bias"}, {"c"});
  conv.SetAttrInt("group", group);
  conv.SetAttrInts("pads", {1, 1, 1, 1});
  g.nodes.push_back(conv);
  g.nodes.push_back(MakeNode("BatchNormalization", {"c", "gamma", "beta", "mean", "var"}, {"y"}));
  return MakeModel(std::move(g), 13);
}

TEST(FoldBatchNorm, ConvAndConvTransposeMatchUnfolded) {
  for (bool transpose : {false, true}) {
    for (int64_t group : {1, 2}) {
      Model m = ConvBnModel(group, transpose);
      Model folded = m;
      ASSERT_TRUE(passes::FoldBatchNorm(folded).ok());
      ASSERT_EQ(folded.graph.nodes.size(), 1u) << "transpose=" << transpose << " group=" << group;
      Tensor x = Random({1, 4, 5, 5}, 7);
      auto ref = RunModel(m, {{"x", x}}, false);
      auto got = RunModel(folded, {{"x", x}}, false);
      ASSERT_EQ(ref.size(), 1u);
      ASSERT_EQ(got.size(), 1u);
      EXPECT_LT(MaxAbsDiff(ref[0], got[0]), 1e-4f) << "transpose=" << transpose << " group=" << group;
    }
  }
}

TEST(FoldBatchNorm, GemmMatchesUnfolded) {
  for (int trans_b : {0, 1}) {
    Graph g;
    g.inputs = {MakeValueInfo("x", DType::kFloat32, {3, 5})};
    g.outputs = {MakeValueInfo("y", DType::kFloat32, {3, 4})};
    g.AddInitializer("w", trans_b ? Random({4, 5}, 1) : Random({5, 4}, 1));
    g.AddInitializer("c", Random({4}, 2));
    g.AddInitializer("gamma", Random({4}, 3, 0.5f, 2.f));
    g.AddInitializer("beta", Random({4}, 4));
    g.AddInitializer("mean", Random({4}, 5));
    g.AddInitializer("var", Random({4}, 6, 0.1f, 3.f));
    Node gemm = MakeNode("Gemm", {"x", "w", "c"}, {"g"});
    gemm.SetAttrInt("transB", trans_b);
    gemm.SetAttrFloat("alpha", 0.7f);
    gemm.SetAttrFloat("beta", 1.3f);
    g.nodes.push_back(gemm);
    g.nodes.push_back(MakeNode("BatchNormalization", {"g", "gamma", "beta", "mean", "var"}, {"y"}));
    Model m = MakeModel(std::move(g), 13);
    Model folded = m;
    ASSERT_TRUE(passes::FoldBatchNorm(folded).ok());
    ASSERT_EQ(folded.graph.nodes.size(), 1u);
    Tensor x = Random({3, 5}, 9);
    auto ref = RunModel(m, {{"x", x}}, false);
    auto got = RunModel(folded, {{"x", x}}, false);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_LT(MaxAbsDiff(ref[0], got[0]), 1e-4f);
  }
}

// Conv -> Mul(per-channel constant) -> Add(per-channel) -> Sub(scalar): all folded into the Conv
// (PaddlePaddle / MobileOne affine); a constant that varies along a spatial axis is not.
TEST(FoldBatchNorm, ConstantChannelAffineAfterConvIsFolded) {
  for (bool spatial : {false, true}) {
    Graph g;
    g.inputs = {MakeValueInfo("x", DType::kFloat32, {1, 4, 5, 5})};
    g.outputs = {MakeValueInfo("y", DType::kFloat32, {})};
    g.outputs[0].has_shape = false;
    g.AddInitializer("w", Random({6, 4, 3, 3}, 1));
    g.AddInitializer("s", spatial ? Random({1, 1, 5, 1}, 2, 0.1f, 10.f) : Random({1, 6, 1, 1}, 2, 0.1f, 10.f));
    g.AddInitializer("t", Random({6, 1, 1}, 3));
    g.AddInitializer("u", Tensor::FromVector<float>({0.25f}, {}));
    Node conv = MakeNode("Conv", {"x", "w"}, {"c"});
    conv.SetAttrInts("pads", {1, 1, 1, 1});
    g.nodes.push_back(conv);
    g.nodes.push_back(MakeNode("Mul", {"s", "c"}, {"m"}));
    g.nodes.push_back(MakeNode("Add", {"m", "t"}, {"a"}));
    g.nodes.push_back(MakeNode("Sub", {"a", "u"}, {"y"}));
    Model m = MakeModel(std::move(g), 13);
    Model folded = m;
    ASSERT_TRUE(passes::FoldBatchNorm(folded).ok());
    EXPECT_EQ(folded.graph.nodes.size(), spatial ? 4u : 1u);
    EXPECT_TRUE(VerifyGraph(folded.graph).ok());
    Tensor x = Random({1, 4, 5, 5}, 7);
    auto ref = RunModel(m, {{"x", x}}, false);
    auto got = RunModel(folded, {{"x", x}}, false);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].shape(), ref[0].shape());
    EXPECT_LT(MaxAbsDiff(ref[0], got[0]), 1e-4f);
  }
}

TEST(InferShapes, FillsShapesOnnxCannotInferWithStaticInputs) {
  // Reshape to a shape computed at run time from the input's own Shape: ONNX's inference gives up
  // on the Reshape target when it flows through Range-like ops; here we use Shape->Concat.
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, 3, 4})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {})};
  g.outputs[0].has_shape = false;
  g.nodes.push_back(MakeNode("Relu", {"x"}, {"r"}));
  g.nodes.push_back(MakeNode("Flatten", {"r"}, {"y"}));
  Model m = MakeModel(std::move(g));
  ASSERT_TRUE(passes::InferShapes(m).ok());
  const ValueInfo* r = m.graph.FindValueInfo("r");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->KnownShape(), (Shape{2, 3, 4}));
  const ValueInfo* y = m.graph.FindValueInfo("y");
  ASSERT_TRUE(y && y->FullyKnownShape());
  EXPECT_EQ(y->KnownShape(), (Shape{2, 12}));
}

}  // namespace
}  // namespace quantkit

namespace quantkit {
namespace {

// A weight computed inside an If branch from an initializer of the main graph folds into a
// constant of the branch (Silero VAD v5 keeps its LSTM weights this way).
TEST(FoldConstants, SubgraphNodesReadingOuterInitializersFold) {
  Graph branch;
  branch.name = "then";
  branch.nodes.push_back(testing::MakeNode("Neg", {"outer_w"}, {"w_neg"}));
  branch.nodes.push_back(testing::MakeNode("Add", {"w_neg", "x"}, {"y"}));
  ValueInfo y;
  y.name = "y";
  branch.outputs.push_back(y);
  Graph g;
  g.inputs.push_back(testing::MakeValueInfo("cond", DType::kBool, {}));
  g.inputs.push_back(testing::MakeValueInfo("x", DType::kFloat32, {2}));
  g.AddInitializer("outer_w", Tensor::FromVector<float>({1.f, 2.f}, {2}));
  Node if_node = testing::MakeNode("If", {"cond"}, {"out"});
  Attribute then_attr;
  then_attr.name = "then_branch";
  then_attr.type = Attribute::Type::kGraph;
  then_attr.g = DeepPtr<Graph>(std::make_unique<Graph>(branch));
  Attribute else_attr = then_attr;
  else_attr.name = "else_branch";
  if_node.attributes = {then_attr, else_attr};
  g.nodes.push_back(if_node);
  ValueInfo out;
  out.name = "out";
  g.outputs.push_back(out);
  Model m = testing::MakeModel(std::move(g), 13);
  ASSERT_TRUE(passes::FoldConstants(m).ok());
  const Graph& folded = *m.graph.nodes[0].attributes[0].g;
  ASSERT_EQ(folded.nodes.size(), 1u) << "Neg(outer_w) must be folded";
  const Tensor* w = folded.FindInitializer("w_neg");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->data<float>()[1], -2.f);
}

}  // namespace
}  // namespace quantkit
