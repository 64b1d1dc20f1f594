// UpgradeOpset: every rewritten op on a small graph at its old opset (same outputs before and after,
// new form accepted by ONNX's checker at opset 13), the errors, and PaddleOCR rec (opset 9).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "passes/passes.h"
#include "quantkit/model_io.h"
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
using testing::StringAttr;

Tensor Random(Shape shape, uint32_t seed, float lo = -2, float hi = 2) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

Attribute FloatsAttr(const std::string& name, std::vector<float> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kFloats;
  a.floats = std::move(v);
  return a;
}

// One node y = op(x) at `opset`: x has shape `shape`, y (float32) `out_shape`; `outputs` replaces y.
Model OneNode(const std::string& op, std::vector<Attribute> attrs, int64_t opset, Shape shape, Shape out_shape,
              std::vector<ValueInfo> outputs = {}) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, shape)};
  if (outputs.empty()) outputs = {MakeValueInfo("y", DType::kFloat32, out_shape)};
  g.outputs = outputs;
  std::vector<std::string> outs;
  for (const auto& o : outputs) outs.push_back(o.name);
  Node n = MakeNode(op, {"x"}, outs, "node");
  n.attributes = std::move(attrs);
  g.nodes.push_back(n);
  return MakeModel(std::move(g), opset);
}

// Upgrades a copy, checks the opset, ONNX's checker and identical outputs; returns the upgraded model.
Model ExpectUpgradeKeepsOutputs(const Model& m, const Tensor& x, float tolerance = 0) {
  Model up = m;
  Status s = passes::UpgradeOpset(up, 13);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(up.OpsetVersion(""), 13);
  Status check = CheckModel(up);
  EXPECT_TRUE(check.ok()) << check.message();
  auto before = RunModel(m, {{"x", x}}, /*optimize=*/false);
  auto after = RunModel(up, {{"x", x}}, /*optimize=*/false);
  EXPECT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size() && i < after.size(); ++i) {
    EXPECT_EQ(before[i].shape(), after[i].shape()) << "output " << i;
    EXPECT_LE(MaxAbsDiff(before[i], after[i]), tolerance) << "output " << i;
  }
  return up;
}

const Node& OnlyOp(const Model& m, const std::string& op) {
  for (const auto& n : m.graph.nodes)
    if (n.op_type == op) return n;
  ADD_FAILURE() << "no " << op;
  return m.graph.nodes.front();
}

TEST(UpgradeOpset, ClipAttributesBecomeInputs) {
  Model m = OneNode("Clip", {FloatAttr("min", -0.5f), FloatAttr("max", 1.0f)}, 9, {2, 5}, {2, 5});
  Model up = ExpectUpgradeKeepsOutputs(m, Random({2, 5}, 1));
  const Node& clip = OnlyOp(up, "Clip");
  EXPECT_EQ(clip.inputs.size(), 3u);
  EXPECT_FALSE(clip.FindAttr("min"));
  // Only max given: min input left out.
  Model m2 = OneNode("Clip", {FloatAttr("max", 0.25f)}, 9, {2, 5}, {2, 5});
  Model up2 = ExpectUpgradeKeepsOutputs(m2, Random({2, 5}, 2));
  EXPECT_EQ(OnlyOp(up2, "Clip").inputs.size(), 3u);
  EXPECT_TRUE(OnlyOp(up2, "Clip").inputs[1].empty());
}

TEST(UpgradeOpset, SliceAttributesBecomeInputs) {
  Model m = OneNode("Slice", {IntsAttr("starts", {1, 0}), IntsAttr("ends", {3, -1}), IntsAttr("axes", {0, 1})}, 9, {4, 5}, {2, 4});
  Model up = ExpectUpgradeKeepsOutputs(m, Random({4, 5}, 3));
  EXPECT_EQ(OnlyOp(up, "Slice").inputs.size(), 4u);
}

TEST(UpgradeOpset, SqueezeUnsqueezeReduceSumSplitAxesBecomeInputs) {
  ExpectUpgradeKeepsOutputs(OneNode("Squeeze", {IntsAttr("axes", {0, 2})}, 11, {1, 3, 1, 2}, {3, 2}), Random({1, 3, 1, 2}, 4));
  ExpectUpgradeKeepsOutputs(OneNode("Unsqueeze", {IntsAttr("axes", {0, -1})}, 11, {3, 2}, {1, 3, 2, 1}), Random({3, 2}, 5));
  Model up = ExpectUpgradeKeepsOutputs(OneNode("ReduceSum", {IntsAttr("axes", {1}), IntAttr("keepdims", 0)}, 11, {3, 4}, {3}),
                                       Random({3, 4}, 6));
  EXPECT_EQ(OnlyOp(up, "ReduceSum").inputs.size(), 2u);
  Model split = OneNode("Split", {IntAttr("axis", 1), IntsAttr("split", {1, 3})}, 11, {2, 4}, {},
                        {MakeValueInfo("a", DType::kFloat32, {2, 1}), MakeValueInfo("b", DType::kFloat32, {2, 3})});
  Model ups = ExpectUpgradeKeepsOutputs(split, Random({2, 4}, 7));
  EXPECT_EQ(OnlyOp(ups, "Split").inputs.size(), 2u);
}

TEST(UpgradeOpset, SoftmaxFamilyAxisSemantics) {
  for (const std::string op : {"Softmax", "LogSoftmax", "Hardmax"}) {
    // Old default axis 1 on a rank-3 input means "softmax over dims 1 and 2 flattened".
    Model m = OneNode(op, {}, 11, {2, 3, 4}, {2, 3, 4});
    Model up = ExpectUpgradeKeepsOutputs(m, Random({2, 3, 4}, 8), 1e-6f);
    EXPECT_EQ(OnlyOp(up, "Flatten").AttrInt("axis", -9), 1) << op;
    // Last axis: unchanged structure.
    Model last = OneNode(op, {IntAttr("axis", 2)}, 11, {2, 3, 4}, {2, 3, 4});
    Model uplast = ExpectUpgradeKeepsOutputs(last, Random({2, 3, 4}, 9));
    EXPECT_EQ(uplast.graph.nodes.size(), 1u) << op;
  }
}

TEST(UpgradeOpset, PadTopKDropoutScatter) {
  Model pad = OneNode("Pad", {IntsAttr("pads", {0, 1, 1, 0}), FloatAttr("value", 1.5f)}, 10, {2, 3}, {3, 4});
  Model up = ExpectUpgradeKeepsOutputs(pad, Random({2, 3}, 10));
  EXPECT_EQ(OnlyOp(up, "Pad").inputs.size(), 3u);
  Model reflect = OneNode("Pad", {IntsAttr("pads", {0, 1, 0, 2}), StringAttr("mode", "reflect")}, 10, {2, 4}, {2, 7});
  ExpectUpgradeKeepsOutputs(reflect, Random({2, 4}, 11));

  Model topk = OneNode("TopK", {IntAttr("k", 2)}, 9, {3, 5}, {},
                       {MakeValueInfo("values", DType::kFloat32, {3, 2}), MakeValueInfo("indices", DType::kInt64, {3, 2})});
  Model upt = ExpectUpgradeKeepsOutputs(topk, Random({3, 5}, 12));
  EXPECT_EQ(OnlyOp(upt, "TopK").inputs.size(), 2u);

  Model dropout = OneNode("Dropout", {FloatAttr("ratio", 0.3f)}, 10, {2, 3}, {2, 3});
  Model upd = ExpectUpgradeKeepsOutputs(dropout, Random({2, 3}, 13));
  EXPECT_EQ(OnlyOp(upd, "Dropout").inputs.size(), 2u);

  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {2, 3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {2, 3})};
  g.AddInitializer("idx", Tensor::FromVector<int64_t>({1, 0, 2, 0, 2, 1}, {2, 3}));
  g.AddInitializer("upd", Tensor::FromVector<float>({10, 20, 30, 40, 50, 60}, {2, 3}));
  Node sc = MakeNode("Scatter", {"x", "idx", "upd"}, {"y"}, "scatter");
  sc.attributes = {IntAttr("axis", 1)};
  g.nodes.push_back(sc);
  Model ups = ExpectUpgradeKeepsOutputs(MakeModel(std::move(g), 9), Random({2, 3}, 14));
  EXPECT_EQ(ups.graph.nodes[0].op_type, "ScatterElements");
}

TEST(UpgradeOpset, UpsampleBecomesResize) {
  // Opset 7: scales attribute; opset 9: scales input. Nearest enlarging and linear.
  Model up7 = ExpectUpgradeKeepsOutputs(
      OneNode("Upsample", {FloatsAttr("scales", {1, 1, 2, 3}), StringAttr("mode", "nearest")}, 7, {1, 1, 3, 2}, {1, 1, 6, 6}),
      Random({1, 1, 3, 2}, 15));
  const Node& r = OnlyOp(up7, "Resize");
  EXPECT_EQ(r.AttrString("coordinate_transformation_mode", ""), "asymmetric");
  EXPECT_EQ(r.AttrString("nearest_mode", ""), "floor");
  ExpectUpgradeKeepsOutputs(
      OneNode("Upsample", {FloatsAttr("scales", {1, 1, 2, 2}), StringAttr("mode", "linear")}, 7, {1, 2, 3, 3}, {1, 2, 6, 6}),
      Random({1, 2, 3, 3}, 16), 1e-6f);

  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {1, 1, 4, 6})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 1, 2, 3})};
  g.AddInitializer("scales", Tensor::FromVector<float>({1, 1, 0.5f, 0.5f}, {4}));
  g.nodes.push_back(MakeNode("Upsample", {"x", "scales"}, {"y"}, "down"));
  Model down = ExpectUpgradeKeepsOutputs(MakeModel(std::move(g), 9), Random({1, 1, 4, 6}, 17));
  EXPECT_EQ(OnlyOp(down, "Resize").AttrString("nearest_mode", ""), "ceil");
}

TEST(UpgradeOpset, BatchNormSpatialAndSubgraphs) {
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kFloat32, {1, 2, 3})};
  g.outputs = {MakeValueInfo("y", DType::kFloat32, {1, 2, 3})};
  for (const char* p : {"s", "b", "mean", "var"}) g.AddInitializer(p, Random({2}, 18, 0.5f, 1.5f));
  Node bn = MakeNode("BatchNormalization", {"x", "s", "b", "mean", "var"}, {"y"}, "bn");
  bn.attributes = {IntAttr("spatial", 1)};
  g.nodes.push_back(bn);
  Model m = MakeModel(std::move(g), 7);
  Model up = ExpectUpgradeKeepsOutputs(m, Random({1, 2, 3}, 19));
  EXPECT_FALSE(OnlyOp(up, "BatchNormalization").FindAttr("spatial"));

  m.graph.nodes[0].attributes = {IntAttr("spatial", 0)};
  Model bad = m;
  Status s = passes::UpgradeOpset(bad, 13);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("'bn'"), std::string::npos) << s.message();
  EXPECT_EQ(bad.OpsetVersion(""), 7) << "unchanged on error";

  // A Squeeze inside an If branch is upgraded too.
  auto branch = std::make_unique<Graph>();
  branch->name = "then";
  branch->outputs = {MakeValueInfo("t", DType::kFloat32, {3})};
  Node sq = MakeNode("Squeeze", {"x"}, {"t"}, "inner_squeeze");
  sq.attributes = {IntsAttr("axes", {0})};
  branch->nodes.push_back(sq);
  Graph outer;
  outer.inputs = {MakeValueInfo("x", DType::kFloat32, {1, 3})};
  outer.outputs = {MakeValueInfo("y", DType::kFloat32, {3})};
  outer.AddInitializer("cond", Tensor::Scalar<bool>(true));
  Node iff = MakeNode("If", {"cond"}, {"y"}, "if");
  Attribute then_a;
  then_a.name = "then_branch";
  then_a.type = Attribute::Type::kGraph;
  then_a.g = DeepPtr<Graph>(std::move(branch));
  Attribute else_a = then_a;
  else_a.name = "else_branch";
  iff.attributes = {then_a, else_a};
  outer.nodes.push_back(iff);
  Model sub = ExpectUpgradeKeepsOutputs(MakeModel(std::move(outer), 11), Random({1, 3}, 20));
  EXPECT_EQ(sub.graph.nodes[0].FindAttr("then_branch")->g->nodes[0].inputs.size(), 2u);
}

TEST(UpgradeOpset, ErrorsAndNoOps) {
  Model old = OneNode("Relu", {}, 6, {2}, {2});
  Status s = passes::UpgradeOpset(old, 13);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("opset 6"), std::string::npos) << s.message();
  Model recent = OneNode("Squeeze", {}, 13, {1, 2}, {2});
  EXPECT_TRUE(passes::UpgradeOpset(recent, 13).ok());
  EXPECT_EQ(recent.graph.nodes[0].inputs.size(), 1u);
  EXPECT_EQ(passes::UpgradeOpset(recent, 14).code(), StatusCode::kUnimplemented);
  // Mixed nearest rescaling has no single Resize-11 nearest mode.
  Model mixed = OneNode("Upsample", {FloatsAttr("scales", {1, 1, 2, 0.5f})}, 7, {1, 1, 2, 4}, {1, 1, 4, 2});
  s = passes::UpgradeOpset(mixed, 13);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("'node'"), std::string::npos) << s.message();
}

TEST(UpgradeOpset, PaddleOcrRecognizerSameOutputs) {
  const std::string path = std::string(QUANTKIT_SOURCE_DIR) + "/models/ch_PP-OCRv4_rec_infer.onnx";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run scripts/fetch_models.sh";
  auto m = LoadModel(path);
  ASSERT_TRUE(m.ok()) << m.status().message();
  ASSERT_EQ(m->OpsetVersion(""), 9);
  Model up = *m;
  Status s = passes::UpgradeOpset(up, 13);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(CheckModel(up).ok());
  const Tensor x = Random({1, 3, 48, 160}, 21, -1, 1);
  auto before = RunModel(*m, {{"x", x}});
  auto after = RunModel(up, {{"x", x}});
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(before[0].shape(), after[0].shape());
  EXPECT_LE(MaxAbsDiff(before[0], after[0]), 1e-5f);
}

}  // namespace
}  // namespace quantkit
