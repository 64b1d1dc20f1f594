// RunOptions::profile: one timing per executed top-level node, in execution order.
#include <gtest/gtest.h>

#include "test_util.h"

namespace quantkit {
namespace {

TEST(Profile, OneEntryPerNodeInOrder) {
  Graph g;
  g.inputs.push_back(testing::MakeValueInfo("x", DType::kFloat32, {4}));
  g.nodes.push_back(testing::MakeNode("Relu", {"x"}, {"a"}, "first"));
  g.nodes.push_back(testing::MakeNode("Neg", {"a"}, {"y"}, "second"));
  ValueInfo y;
  y.name = "y";
  g.outputs.push_back(y);
  SessionOptions opts;
  opts.optimize = false;
  auto s = Session::Create(testing::MakeModel(std::move(g)), opts);
  ASSERT_TRUE(s.ok());
  std::vector<NodeTiming> profile;
  RunOptions ro;
  ro.profile = &profile;
  std::vector<Value> out;
  ASSERT_TRUE((*s)->RunValues({{"x", Value::FromTensor(Tensor::FromVector<float>({1, -2, 3, -4}, {4}))}}, &out, ro).ok());
  ASSERT_EQ(profile.size(), 2u);
  EXPECT_EQ(profile[0].node->name, "first");
  EXPECT_EQ(profile[1].node->name, "second");
  EXPECT_GE(profile[0].seconds, 0.0);
  ASSERT_TRUE((*s)->RunValues({{"x", Value::FromTensor(Tensor::FromVector<float>({1, 2, 3, 4}, {4}))}}, &out).ok());
  EXPECT_EQ(profile.size(), 2u) << "no profiling unless asked";
}

}  // namespace
}  // namespace quantkit
