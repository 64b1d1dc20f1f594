// If, Loop, Scan, SequenceMap and the sequence ops. The subgraphs only use ops of this family (and
// pass graph inputs straight through to outputs), so these tests do not depend on other op families.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <memory>

#include "test_util.h"

namespace quantkit {
namespace {

using testing::MakeModel;
using testing::MakeNode;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeValueInfo;

Attribute GraphAttr(const std::string& name, Graph g) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kGraph;
  a.g = DeepPtr<Graph>(std::make_unique<Graph>(std::move(g)));
  return a;
}
ValueInfo Named(const std::string& name) {
  ValueInfo vi;
  vi.name = name;
  return vi;
}
ValueInfo SeqInfo(const std::string& name, DType dt = DType::kUndefined) {
  ValueInfo vi;
  vi.name = name;
  vi.kind = ValueInfo::Kind::kSequence;
  vi.dtype = dt;
  return vi;
}
Node WithAttrs(Node n, std::vector<Attribute> attrs) {
  n.attributes = std::move(attrs);
  return n;
}

StatusOr<std::vector<Value>> RunGraph(Graph g, const std::vector<std::pair<std::string, Value>>& feeds,
                                      int64_t opset = 17) {
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = 1;
  QK_ASSIGN_OR_RETURN(auto session, Session::Create(MakeModel(std::move(g), opset), opts));
  std::vector<Value> out;
  QK_RETURN_IF_ERROR(session->RunValues(feeds, &out));
  return out;
}

Value T(Tensor t) { return Value::FromTensor(std::move(t)); }

template <typename V>
std::vector<V> Vals(const Tensor& t) {
  EXPECT_EQ(t.dtype(), DTypeOf<V>::value);
  return std::vector<V>(t.data<V>(), t.data<V>() + t.numel());
}

// ---------------------------------------------------------------------------------------------
// If

// Branch returning element `index` of SequenceConstruct(x, y), reading x and y from the outer graph.
Graph PickBranch(const std::string& prefix, int64_t index, int outputs = 1) {
  Graph b;
  b.name = prefix;
  b.AddInitializer(prefix + "_idx", Tensor::Scalar<int64_t>(index));
  b.initializer_order.push_back(prefix + "_idx");
  b.nodes.push_back(MakeNode("SequenceConstruct", {"x", "y"}, {prefix + "_seq"}));
  b.nodes.push_back(MakeNode("SequenceAt", {prefix + "_seq", prefix + "_idx"}, {prefix + "_out"}));
  for (int i = 0; i < outputs; ++i) b.outputs.push_back(Named(prefix + "_out"));
  return b;
}

Graph IfGraph(int then_outputs = 1) {
  Graph g;
  g.inputs = {MakeValueInfo("cond", DType::kBool, {}), MakeValueInfo("x", DType::kFloat32, {2}),
              MakeValueInfo("y", DType::kFloat32, {2})};
  g.nodes.push_back(WithAttrs(MakeNode("If", {"cond"}, {"res"}),
                              {GraphAttr("then_branch", PickBranch("then", 0, then_outputs)),
                               GraphAttr("else_branch", PickBranch("else", 1))}));
  g.outputs = {Named("res")};
  return g;
}

TEST(If, RunsTheBranchChosenByTheConditionWithOuterScopeValues) {
  const Tensor x = Tensor::FromVector<float>({1, 2}, {2}), y = Tensor::FromVector<float>({3, 4}, {2});
  for (bool c : {true, false}) {
    auto out = RunGraph(IfGraph(), {{"cond", T(Tensor::Scalar<bool>(c))}, {"x", T(x)}, {"y", T(y)}});
    ASSERT_TRUE(out.ok()) << out.status().message();
    ASSERT_TRUE((*out)[0].is_tensor());
    EXPECT_EQ(Vals<float>((*out)[0].tensor), c ? (std::vector<float>{1, 2}) : (std::vector<float>{3, 4}));
  }
}

TEST(If, BranchesCanReturnOuterValuesAndNestLoopsReadingTheTopGraph) {
  // then: a Loop (trip count n) whose body appends the top-level x to a sequence; else: y directly.
  Graph body;
  body.name = "inner_body";
  body.inputs = {MakeValueInfo("i", DType::kInt64, {}), MakeValueInfo("c_in", DType::kBool, {}), SeqInfo("acc")};
  body.nodes.push_back(MakeNode("SequenceInsert", {"acc", "x"}, {"acc_out"}));
  body.outputs = {Named("c_in"), Named("acc_out")};
  Graph then_b;
  then_b.name = "then";
  then_b.nodes.push_back(MakeNode("SequenceConstruct", {"y"}, {"start"}));
  then_b.nodes.push_back(WithAttrs(MakeNode("Loop", {"n", "", "start"}, {"loop_out"}), {GraphAttr("body", body)}));
  then_b.outputs = {Named("loop_out")};
  Graph else_b;
  else_b.name = "else";
  else_b.nodes.push_back(MakeNode("SequenceConstruct", {"y", "x"}, {"pair"}));
  else_b.outputs = {Named("pair")};
  Graph g;
  g.inputs = {MakeValueInfo("cond", DType::kBool, {}), MakeValueInfo("n", DType::kInt64, {}),
              MakeValueInfo("x", DType::kFloat32, {1}), MakeValueInfo("y", DType::kFloat32, {2})};
  g.nodes.push_back(WithAttrs(MakeNode("If", {"cond"}, {"res"}),
                              {GraphAttr("then_branch", then_b), GraphAttr("else_branch", else_b)}));
  g.outputs = {SeqInfo("res")};
  const Tensor x = Tensor::FromVector<float>({7}, {1}), y = Tensor::FromVector<float>({1, 2}, {2});
  auto out = RunGraph(g, {{"cond", T(Tensor::Scalar<bool>(true))}, {"n", T(Tensor::Scalar<int64_t>(3))},
                          {"x", T(x)}, {"y", T(y)}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ((*out)[0].sequence.size(), 4u);  // y, x, x, x
  EXPECT_EQ((*out)[0].sequence[0].numel(), 2);
  EXPECT_EQ(Vals<float>((*out)[0].sequence[3]), (std::vector<float>{7}));
  out = RunGraph(g, {{"cond", T(Tensor::Scalar<bool>(false))}, {"n", T(Tensor::Scalar<int64_t>(3))},
                     {"x", T(x)}, {"y", T(y)}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ((*out)[0].sequence.size(), 2u);
  EXPECT_EQ(Vals<float>((*out)[0].sequence[1]), (std::vector<float>{7}));
}

TEST(If, BranchOutputCountMismatchNamesTheBranch) {
  SessionOptions opts;
  opts.optimize = false;
  auto s = Session::Create(MakeModel(IfGraph(2)), opts);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("then_branch"), std::string::npos) << s.status().message();
}

TEST(If, RejectsNonScalarCondition) {
  const Tensor x = Tensor::FromVector<float>({1, 2}, {2});
  Graph g = IfGraph();
  g.inputs[0] = MakeValueInfo("cond", DType::kBool, {2});
  auto out = RunGraph(g, {{"cond", T(Tensor::FromVector<bool>({true, false}, {2}))}, {"x", T(x)}, {"y", T(x)}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("condition"), std::string::npos) << out.status().message();
}

// ---------------------------------------------------------------------------------------------
// Loop

// Body: (iter, cond_in, seq_in) -> (cond_out, seq_in + [iter], iter as scan output).
// cond_out = cond_in, or flags[iter] when `flags` (an outer sequence of bools) is used.
Graph LoopBody(bool use_flags) {
  Graph b;
  b.name = "body";
  b.inputs = {MakeValueInfo("iter", DType::kInt64, {}), MakeValueInfo("cond_in", DType::kBool, {}),
              SeqInfo("seq_in")};
  b.nodes.push_back(MakeNode("SequenceInsert", {"seq_in", "iter"}, {"seq_out"}));
  std::string cond_out = "cond_in";
  if (use_flags) {
    b.nodes.push_back(MakeNode("SequenceAt", {"flags", "iter"}, {"cond_out"}));
    cond_out = "cond_out";
  }
  b.outputs = {Named(cond_out), Named("seq_out"), MakeValueInfo("iter", DType::kInt64, {})};
  return b;
}

TEST(Loop, TripCountCarriesSequenceAndStacksScanOutputs) {
  Graph g;
  g.inputs = {MakeValueInfo("M", DType::kInt64, {}), MakeValueInfo("c", DType::kBool, {})};
  g.nodes.push_back(WithAttrs(MakeNode("SequenceEmpty", {}, {"empty"}), {IntAttr("dtype", 7)}));
  g.nodes.push_back(WithAttrs(MakeNode("Loop", {"M", "c", "empty"}, {"final_seq", "scan"}),
                              {GraphAttr("body", LoopBody(false))}));
  g.outputs = {SeqInfo("final_seq"), Named("scan")};
  auto out = RunGraph(g, {{"M", T(Tensor::Scalar<int64_t>(4))}, {"c", T(Tensor::Scalar<bool>(true))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_TRUE((*out)[0].is_sequence());
  ASSERT_EQ((*out)[0].sequence.size(), 4u);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ((*out)[0].sequence[i].data<int64_t>()[0], i);
  EXPECT_EQ((*out)[1].tensor.shape(), (Shape{4}));
  EXPECT_EQ(Vals<int64_t>((*out)[1].tensor), (std::vector<int64_t>{0, 1, 2, 3}));

  // Zero iterations: carried value unchanged, scan output [0].
  out = RunGraph(g, {{"M", T(Tensor::Scalar<int64_t>(0))}, {"c", T(Tensor::Scalar<bool>(true))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ((*out)[0].sequence.size(), 0u);
  EXPECT_EQ((*out)[1].tensor.shape(), (Shape{0}));
  EXPECT_EQ((*out)[1].tensor.dtype(), DType::kInt64);

  // Initial condition false: no iterations either.
  out = RunGraph(g, {{"M", T(Tensor::Scalar<int64_t>(5))}, {"c", T(Tensor::Scalar<bool>(false))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ((*out)[0].sequence.size(), 0u);
}

TEST(Loop, StopsWhenTheBodyConditionTurnsFalseWithoutTripCount) {
  Graph g;
  g.inputs = {MakeValueInfo("t", DType::kBool, {}), MakeValueInfo("f", DType::kBool, {})};
  g.nodes.push_back(MakeNode("SequenceConstruct", {"t", "t", "f", "t", "t"}, {"flags"}));
  g.nodes.push_back(WithAttrs(MakeNode("SequenceEmpty", {}, {"empty"}), {IntAttr("dtype", 7)}));
  g.nodes.push_back(WithAttrs(MakeNode("Loop", {"", "", "empty"}, {"final_seq", "scan"}),
                              {GraphAttr("body", LoopBody(true))}));
  g.outputs = {SeqInfo("final_seq"), Named("scan")};
  auto out = RunGraph(g, {{"t", T(Tensor::Scalar<bool>(true))}, {"f", T(Tensor::Scalar<bool>(false))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  // Iterations 0, 1, 2 run; iteration 2 returns flags[2] = false.
  EXPECT_EQ((*out)[0].sequence.size(), 3u);
  EXPECT_EQ(Vals<int64_t>((*out)[1].tensor), (std::vector<int64_t>{0, 1, 2}));
}

TEST(Loop, BodyArityMismatchIsAnError) {
  Graph g;
  g.inputs = {MakeValueInfo("M", DType::kInt64, {})};
  Graph body = LoopBody(false);
  body.inputs.push_back(MakeValueInfo("extra", DType::kInt64, {}));
  g.nodes.push_back(WithAttrs(MakeNode("SequenceEmpty", {}, {"empty"}), {IntAttr("dtype", 7)}));
  g.nodes.push_back(WithAttrs(MakeNode("Loop", {"M", "", "empty"}, {"final_seq", "scan"}),
                              {GraphAttr("body", std::move(body))}));
  g.outputs = {SeqInfo("final_seq"), Named("scan")};
  SessionOptions opts;
  opts.optimize = false;
  auto s = Session::Create(MakeModel(std::move(g)), opts);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("loop body has 4 inputs, expected 3"), std::string::npos) << s.status().message();
}

// ---------------------------------------------------------------------------------------------
// Scan

TEST(Scan, AxesAndDirections) {
  // Body (s_in, x_in) -> (x_in as new state, s_in as scan output): output k = state before step k.
  Graph body;
  body.name = "scan_body";
  body.inputs = {MakeValueInfo("s_in", DType::kFloat32, {2}), MakeValueInfo("x_in", DType::kFloat32, {2})};
  body.outputs = {Named("x_in"), Named("s_in")};
  Graph g;
  g.inputs = {MakeValueInfo("init", DType::kFloat32, {2}), MakeValueInfo("x", DType::kFloat32, {2, 3})};
  // Scan x along axis 1 (3 steps, slices of shape [2]) in reverse; stack outputs along axis 1.
  g.nodes.push_back(WithAttrs(MakeNode("Scan", {"init", "x"}, {"final", "ys"}),
                              {GraphAttr("body", body), IntAttr("num_scan_inputs", 1),
                               IntsAttr("scan_input_axes", {1}), IntsAttr("scan_input_directions", {1}),
                               IntsAttr("scan_output_axes", {-1})}));
  g.outputs = {Named("final"), Named("ys")};
  auto out = RunGraph(g, {{"init", T(Tensor::FromVector<float>({-1, -2}, {2}))},
                          {"x", T(Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {2, 3}))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  // Steps visit columns 2, 1, 0: states before each step: init, col2, col1. Final state: col0.
  EXPECT_EQ(Vals<float>((*out)[0].tensor), (std::vector<float>{1, 4}));
  EXPECT_EQ((*out)[1].tensor.shape(), (Shape{2, 3}));
  EXPECT_EQ(Vals<float>((*out)[1].tensor), (std::vector<float>{-1, 3, 2, -2, 6, 5}));
}

// ---------------------------------------------------------------------------------------------
// Sequence ops

TEST(SequenceOps, ConstructInsertEraseAtLength) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {1}), MakeValueInfo("b", DType::kFloat32, {2}),
              MakeValueInfo("c", DType::kFloat32, {3}), MakeValueInfo("pos", DType::kInt64, {}),
              MakeValueInfo("neg", DType::kInt32, {})};
  g.nodes.push_back(MakeNode("SequenceConstruct", {"a", "b"}, {"s1"}));
  g.nodes.push_back(MakeNode("SequenceInsert", {"s1", "c", "pos"}, {"s2"}));   // insert at 1: a c b
  g.nodes.push_back(MakeNode("SequenceInsert", {"s2", "a"}, {"s3"}));          // append: a c b a
  g.nodes.push_back(MakeNode("SequenceErase", {"s3", "neg"}, {"s4"}));         // erase -1: a c b
  g.nodes.push_back(MakeNode("SequenceErase", {"s4"}, {"s5"}));                // erase last: a c
  g.nodes.push_back(MakeNode("SequenceAt", {"s3", "neg"}, {"last"}));
  g.nodes.push_back(MakeNode("SequenceLength", {"s3"}, {"len"}));
  g.outputs = {SeqInfo("s4"), SeqInfo("s5"), Named("last"), Named("len")};
  auto out = RunGraph(g, {{"a", T(Tensor::FromVector<float>({1}, {1}))},
                          {"b", T(Tensor::FromVector<float>({2, 2}, {2}))},
                          {"c", T(Tensor::FromVector<float>({3, 3, 3}, {3}))},
                          {"pos", T(Tensor::Scalar<int64_t>(1))},
                          {"neg", T(Tensor::Scalar<int32_t>(-1))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  const auto& s4 = (*out)[0].sequence;
  ASSERT_EQ(s4.size(), 3u);
  EXPECT_EQ(s4[0].numel(), 1);
  EXPECT_EQ(s4[1].numel(), 3);
  EXPECT_EQ(s4[2].numel(), 2);
  ASSERT_EQ((*out)[1].sequence.size(), 2u);
  EXPECT_EQ((*out)[1].sequence[1].numel(), 3);
  EXPECT_EQ(Vals<float>((*out)[2].tensor), (std::vector<float>{1}));
  EXPECT_EQ((*out)[3].tensor.rank(), 0u);
  EXPECT_EQ(Vals<int64_t>((*out)[3].tensor), (std::vector<int64_t>{4}));
}

TEST(SequenceOps, PositionOutOfRangeIsAnError) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {1}), MakeValueInfo("pos", DType::kInt64, {})};
  g.nodes.push_back(MakeNode("SequenceConstruct", {"a", "a"}, {"s"}));
  g.nodes.push_back(MakeNode("SequenceAt", {"s", "pos"}, {"y"}));
  g.outputs = {Named("y")};
  for (int64_t p : {2, -3}) {
    auto out = RunGraph(g, {{"a", T(Tensor::FromVector<float>({1}, {1}))}, {"pos", T(Tensor::Scalar<int64_t>(p))}});
    ASSERT_FALSE(out.ok());
    EXPECT_NE(out.status().message().find("out of range"), std::string::npos) << out.status().message();
  }
}

TEST(SequenceOps, InsertRejectsMismatchedElementType) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {1}), MakeValueInfo("i", DType::kInt32, {1})};
  g.nodes.push_back(MakeNode("SequenceConstruct", {"a"}, {"s"}));
  g.nodes.push_back(MakeNode("SequenceInsert", {"s", "i"}, {"s2"}));
  g.outputs = {SeqInfo("s2")};
  auto out = RunGraph(g, {{"a", T(Tensor::FromVector<float>({1}, {1}))}, {"i", T(Tensor::FromVector<int32_t>({1}, {1}))}});
  EXPECT_FALSE(out.ok());
}

TEST(SequenceOps, SplitAndConcatRoundTrip) {
  const Tensor x = Tensor::FromVector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {2, 6});
  Graph g;
  g.inputs = {MakeValueInfo("x", DType::kInt32, {2, 6}), MakeValueInfo("chunk", DType::kInt64, {}),
              MakeValueInfo("sizes", DType::kInt64, {3})};
  g.nodes.push_back(WithAttrs(MakeNode("SplitToSequence", {"x", "chunk"}, {"by4"}), {IntAttr("axis", 1)}));
  g.nodes.push_back(WithAttrs(MakeNode("SplitToSequence", {"x", "sizes"}, {"bysizes"}), {IntAttr("axis", -1)}));
  g.nodes.push_back(WithAttrs(MakeNode("SplitToSequence", {"x"}, {"rows"}), {IntAttr("keepdims", 0)}));
  g.nodes.push_back(WithAttrs(MakeNode("ConcatFromSequence", {"by4"}, {"cat"}), {IntAttr("axis", 1)}));
  g.nodes.push_back(WithAttrs(MakeNode("ConcatFromSequence", {"rows"}, {"stacked"}),
                              {IntAttr("axis", -1), IntAttr("new_axis", 1)}));
  g.outputs = {SeqInfo("by4"), SeqInfo("bysizes"), SeqInfo("rows"), Named("cat"), Named("stacked")};
  auto out = RunGraph(g, {{"x", T(x)},
                          {"chunk", T(Tensor::Scalar<int64_t>(4))},
                          {"sizes", T(Tensor::FromVector<int64_t>({1, 0, 5}, {3}))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  const auto& by4 = (*out)[0].sequence;
  ASSERT_EQ(by4.size(), 2u);
  EXPECT_EQ(by4[0].shape(), (Shape{2, 4}));
  EXPECT_EQ(Vals<int32_t>(by4[1]), (std::vector<int32_t>{4, 5, 10, 11}));
  const auto& bys = (*out)[1].sequence;
  ASSERT_EQ(bys.size(), 3u);
  EXPECT_EQ(bys[1].shape(), (Shape{2, 0}));
  EXPECT_EQ(Vals<int32_t>(bys[2]), (std::vector<int32_t>{1, 2, 3, 4, 5, 7, 8, 9, 10, 11}));
  const auto& rows = (*out)[2].sequence;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].shape(), (Shape{6}));
  EXPECT_EQ(Vals<int32_t>(rows[1]), (std::vector<int32_t>{6, 7, 8, 9, 10, 11}));
  EXPECT_EQ((*out)[3].tensor.shape(), (Shape{2, 6}));
  EXPECT_EQ(Vals<int32_t>((*out)[3].tensor), Vals<int32_t>(x));
  // Stacking the rows along a new last axis transposes x: [6, 2].
  EXPECT_EQ((*out)[4].tensor.shape(), (Shape{6, 2}));
  EXPECT_EQ(Vals<int32_t>((*out)[4].tensor), (std::vector<int32_t>{0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11}));
}

TEST(SequenceOps, ConcatRejectsMismatchedShapes) {
  Graph g;
  g.inputs = {MakeValueInfo("a", DType::kFloat32, {1, 2}), MakeValueInfo("b", DType::kFloat32, {1, 3})};
  g.nodes.push_back(MakeNode("SequenceConstruct", {"a", "b"}, {"s"}));
  g.nodes.push_back(WithAttrs(MakeNode("ConcatFromSequence", {"s"}, {"y"}), {IntAttr("axis", 0)}));
  g.outputs = {Named("y")};
  auto out = RunGraph(g, {{"a", T(Tensor(DType::kFloat32, {1, 2}))}, {"b", T(Tensor(DType::kFloat32, {1, 3}))}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("element 1"), std::string::npos) << out.status().message();
}

TEST(SequenceMap, MapsSequencesAndBroadcastsTensors) {
  // Body (elem, extra) -> (extra, elem): two output sequences.
  Graph body;
  body.name = "map_body";
  body.inputs = {MakeValueInfo("elem", DType::kFloat32, {}), MakeValueInfo("extra", DType::kInt64, {})};
  body.outputs = {Named("extra"), Named("elem")};
  Graph g;
  g.inputs = {SeqInfo("xs"), MakeValueInfo("k", DType::kInt64, {})};
  g.nodes.push_back(WithAttrs(MakeNode("SequenceMap", {"xs", "k"}, {"ks", "same"}), {GraphAttr("body", body)}));
  g.outputs = {SeqInfo("ks"), SeqInfo("same")};
  auto out = RunGraph(g, {{"xs", Value::FromSequence({Tensor::Scalar<float>(1.5f), Tensor::Scalar<float>(2.5f),
                                                       Tensor::Scalar<float>(3.5f)})},
                          {"k", T(Tensor::Scalar<int64_t>(7))}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ((*out)[0].sequence.size(), 3u);
  ASSERT_EQ((*out)[1].sequence.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*out)[0].sequence[i].data<int64_t>()[0], 7);
    EXPECT_EQ((*out)[1].sequence[i].data<float>()[0], 1.5f + i);
  }
}

}  // namespace
}  // namespace quantkit
