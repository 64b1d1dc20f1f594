// Tests of the tensor/layout op family (src/runtime/ops/tensor_ops*.cc), each op run through a
// one-node model in a Session (optimize=false so no constant folding hides the kernel).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "quantkit/float16.h"
#include "quantkit/ir.h"
#include "quantkit/session.h"
#include "quantkit/tensor.h"

namespace quantkit {
namespace {

Attribute AttrI(const std::string& name, int64_t v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kInt;
  a.i = v;
  return a;
}
Attribute AttrF(const std::string& name, float v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kFloat;
  a.f = v;
  return a;
}
Attribute AttrS(const std::string& name, const std::string& v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kString;
  a.s = v;
  return a;
}
Attribute AttrIs(const std::string& name, std::vector<int64_t> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute AttrFs(const std::string& name, std::vector<float> v) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kFloats;
  a.floats = std::move(v);
  return a;
}
Attribute AttrT(const std::string& name, Tensor t) {
  Attribute a;
  a.name = name;
  a.type = Attribute::Type::kTensor;
  a.t = std::move(t);
  return a;
}

// Runs one node. Undefined tensors in `inputs` are absent optional inputs.
StatusOr<std::vector<Tensor>> RunOp(const std::string& op, const std::vector<Tensor>& inputs, int num_outputs,
                                    std::vector<Attribute> attrs = {}, int64_t opset = 17) {
  Model m;
  m.opsets = {{"", opset}};
  Node n;
  n.op_type = op;
  n.name = "node";
  n.attributes = std::move(attrs);
  std::vector<std::pair<std::string, Tensor>> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].defined()) {
      n.inputs.push_back("");
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    n.inputs.push_back(name);
    ValueInfo vi;
    vi.name = name;
    vi.dtype = inputs[i].dtype();
    m.graph.inputs.push_back(vi);
    feeds.emplace_back(name, inputs[i]);
  }
  for (int i = 0; i < num_outputs; ++i) {
    const std::string name = "out" + std::to_string(i);
    n.outputs.push_back(name);
    ValueInfo vi;
    vi.name = name;
    m.graph.outputs.push_back(vi);
  }
  m.graph.nodes.push_back(n);
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = 2;
  auto s = Session::Create(m, opts);
  if (!s.ok()) return s.status();
  std::vector<Tensor> outs;
  Status st = (*s)->Run(feeds, &outs);
  if (!st.ok()) return st;
  return outs;
}

Tensor OneOut(const std::string& op, const std::vector<Tensor>& inputs, std::vector<Attribute> attrs = {},
              int64_t opset = 17) {
  auto r = RunOp(op, inputs, 1, std::move(attrs), opset);
  EXPECT_TRUE(r.ok()) << op << ": " << r.status().ToString();
  if (!r.ok()) return Tensor();
  return r.value()[0];
}

Tensor I64(std::vector<int64_t> v, Shape s = {}) {
  if (s.empty() && v.size() != 1) s = {static_cast<int64_t>(v.size())};
  return Tensor::FromVector<int64_t>(v, s);
}
Tensor I64v(std::vector<int64_t> v) { return Tensor::FromVector<int64_t>(v, {static_cast<int64_t>(v.size())}); }
Tensor F32(std::vector<float> v, Shape s) { return Tensor::FromVector<float>(v, std::move(s)); }
Tensor Iota(Shape s) {
  Tensor t(DType::kFloat32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i);
  return t;
}

template <typename T>
std::vector<T> Vals(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

void ExpectNear(const Tensor& got, const std::vector<float>& want, float tol = 1e-5f) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got.data<float>()[i], want[i], tol) << "index " << i;
}

// ------------------------------------------------------------------ shape ops

TEST(TensorOps, ReshapeAliasesAndInfers) {
  Tensor x = Iota({2, 3, 4});
  Tensor y = OneOut("Reshape", {x, I64v({0, -1})});
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_TRUE(y.SharesBufferWith(x));
  // allowzero: 0 is a real zero dimension.
  Tensor e(DType::kFloat32, {0, 3});
  Tensor z = OneOut("Reshape", {e, I64v({3, 0})}, {AttrI("allowzero", 1)});
  EXPECT_EQ(z.shape(), (Shape{3, 0}));
  EXPECT_FALSE(RunOp("Reshape", {x, I64v({5, -1})}, 1).ok());
  EXPECT_FALSE(RunOp("Reshape", {x, I64v({-1, -1})}, 1).ok());
}

TEST(TensorOps, SqueezeUnsqueezeAcrossOpsets) {
  Tensor x = Iota({1, 3, 1, 2});
  EXPECT_EQ(OneOut("Squeeze", {x}).shape(), (Shape{3, 2}));
  EXPECT_EQ(OneOut("Squeeze", {x, I64v({-2})}).shape(), (Shape{1, 3, 2}));
  EXPECT_EQ(OneOut("Squeeze", {x}, {AttrIs("axes", {0})}, 11).shape(), (Shape{3, 1, 2}));
  EXPECT_FALSE(RunOp("Squeeze", {x, I64v({1})}, 1).ok());
  Tensor u = OneOut("Unsqueeze", {Iota({3, 2}), I64v({0, -1})});
  EXPECT_EQ(u.shape(), (Shape{1, 3, 2, 1}));
  EXPECT_EQ(OneOut("Unsqueeze", {Iota({3})}, {AttrIs("axes", {1})}, 11).shape(), (Shape{3, 1}));
  EXPECT_FALSE(RunOp("Unsqueeze", {Iota({3}), I64v({0, 0})}, 1).ok());
}

TEST(TensorOps, FlattenIdentityDropout) {
  Tensor x = Iota({2, 3, 4});
  EXPECT_EQ(OneOut("Flatten", {x}, {AttrI("axis", 0)}).shape(), (Shape{1, 24}));
  EXPECT_EQ(OneOut("Flatten", {x}, {AttrI("axis", -1)}).shape(), (Shape{6, 4}));
  EXPECT_TRUE(OneOut("Identity", {x}).SharesBufferWith(x));
  auto d = RunOp("Dropout", {x, Tensor::Scalar<float>(0.3f)}, 2);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d.value()[0].SharesBufferWith(x));
  EXPECT_EQ(d.value()[1].dtype(), DType::kBool);
  for (bool b : Vals<bool>(d.value()[1])) EXPECT_TRUE(b);
  EXPECT_FALSE(RunOp("Dropout", {x, Tensor::Scalar<float>(0.3f), Tensor::Scalar<bool>(true)}, 1).ok());
  EXPECT_TRUE(RunOp("Dropout", {x, Tensor::Scalar<float>(0.f), Tensor::Scalar<bool>(true)}, 1).ok());
}

// Naive transpose for checking.
template <typename T>
std::vector<T> NaiveTranspose(const std::vector<T>& in, const Shape& s, const std::vector<int64_t>& perm) {
  const size_t r = s.size();
  Shape os(r);
  for (size_t i = 0; i < r; ++i) os[i] = s[perm[i]];
  std::vector<int64_t> st(r, 1);
  for (size_t k = r; k-- > 1;) st[k - 1] = st[k] * s[k];
  std::vector<T> out(in.size());
  std::vector<int64_t> idx(r, 0);
  for (size_t o = 0; o < out.size(); ++o) {
    int64_t off = 0;
    for (size_t i = 0; i < r; ++i) off += idx[i] * st[perm[i]];
    out[o] = in[off];
    for (size_t k = r; k-- > 0;) {
      if (++idx[k] < os[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

template <typename T>
void CheckTranspose(const Shape& s, const std::vector<int64_t>& perm) {
  Tensor x(DTypeOf<T>::value, s);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<T>()[i] = static_cast<T>(i * 7 + 3);
  Tensor y = OneOut("Transpose", {x}, {AttrIs("perm", perm)});
  ASSERT_TRUE(y.defined());
  EXPECT_EQ(Vals<T>(y), NaiveTranspose(Vals<T>(x), s, perm)) << ShapeToString(s);
}

TEST(TensorOps, TransposeMatchesNaiveForManyPermsAndTypes) {
  CheckTranspose<float>({37, 53}, {1, 0});
  CheckTranspose<float>({2, 5, 7, 9}, {0, 2, 3, 1});  // NCHW -> NHWC
  CheckTranspose<float>({2, 7, 9, 5}, {0, 3, 1, 2});  // NHWC -> NCHW
  CheckTranspose<uint8_t>({3, 4, 33, 17}, {0, 1, 3, 2});
  CheckTranspose<int64_t>({3, 4, 5}, {2, 0, 1});
  CheckTranspose<uint16_t>({2, 3, 4, 5}, {3, 1, 0, 2});
  CheckTranspose<int8_t>({2, 1, 3, 1, 4}, {4, 3, 2, 1, 0});
  CheckTranspose<double>({4, 6, 2}, {1, 0, 2});
  // Large enough to use the thread pool.
  CheckTranspose<float>({1, 64, 48, 40}, {0, 2, 3, 1});
  CheckTranspose<float>({8, 40, 30, 20}, {2, 1, 3, 0});
  CheckTranspose<uint16_t>({70, 130}, {1, 0});
  CheckTranspose<int64_t>({5, 67, 130}, {2, 0, 1});
  CheckTranspose<float>({3, 200, 301}, {0, 2, 1});
  CheckTranspose<uint8_t>({3, 130, 67}, {2, 1, 0});
  Tensor x = Iota({2, 3});
  EXPECT_EQ(OneOut("Transpose", {x}).shape(), (Shape{3, 2}));  // default perm reverses
  EXPECT_FALSE(RunOp("Transpose", {x}, 1, {AttrIs("perm", {0, 0})}).ok());
}

TEST(TensorOps, ConcatAndSplit) {
  Tensor a = Iota({2, 2});
  Tensor b = F32({10, 11, 12, 13, 14, 15}, {2, 3});
  Tensor c = OneOut("Concat", {a, b}, {AttrI("axis", -1)});
  EXPECT_EQ(c.shape(), (Shape{2, 5}));
  ExpectNear(c, {0, 1, 10, 11, 12, 2, 3, 13, 14, 15});
  EXPECT_FALSE(RunOp("Concat", {a, b}, 1, {AttrI("axis", 0)}).ok());

  Tensor x = Iota({2, 5});
  auto s = RunOp("Split", {x, I64v({2, 3})}, 2, {AttrI("axis", 1)}, 13);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ExpectNear(s.value()[0], {0, 1, 5, 6});
  ExpectNear(s.value()[1], {2, 3, 4, 7, 8, 9});
  auto s11 = RunOp("Split", {x}, 2, {AttrI("axis", 1), AttrIs("split", {4, 1})}, 11);
  ASSERT_TRUE(s11.ok()) << s11.status().ToString();
  ExpectNear(s11.value()[1], {4, 9});
  auto s18 = RunOp("Split", {x}, 3, {AttrI("axis", 1), AttrI("num_outputs", 3)}, 18);
  ASSERT_TRUE(s18.ok()) << s18.status().ToString();
  EXPECT_EQ(s18.value()[0].shape(), (Shape{2, 2}));
  EXPECT_EQ(s18.value()[2].shape(), (Shape{2, 1}));
  ExpectNear(s18.value()[2], {4, 9});
  EXPECT_FALSE(RunOp("Split", {x}, 3, {AttrI("axis", 1)}, 13).ok());  // 5 not divisible by 3
}

TEST(TensorOps, SliceStepsClampingAndOldOpset) {
  Tensor x = Iota({4, 5});
  // Negative steps: rows 3..0 step -2, columns from the end.
  Tensor y = OneOut("Slice", {x, I64v({-1, 4}), I64v({-1000, 0}), I64v({0, 1}), I64v({-2, -3})});
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  ExpectNear(y, {19, 16, 9, 6});
  // Clamping of huge ends, default axes/steps.
  Tensor z = OneOut("Slice", {x, I64v({1, 2}), I64v({INT64_MAX, 1000})});
  EXPECT_EQ(z.shape(), (Shape{3, 3}));
  ExpectNear(z, {7, 8, 9, 12, 13, 14, 17, 18, 19});
  // Empty result.
  EXPECT_EQ(OneOut("Slice", {x, I64v({3}), I64v({1}), I64v({1})}).shape(), (Shape{4, 0}));
  // Opset 9: attributes.
  Tensor w = OneOut("Slice", {x}, {AttrIs("starts", {1}), AttrIs("ends", {3}), AttrIs("axes", {1})}, 9);
  ExpectNear(w, {1, 2, 6, 7, 11, 12, 16, 17});
  EXPECT_FALSE(RunOp("Slice", {x, I64v({0}), I64v({1}), I64v({0}), I64v({0})}, 1).ok());
  EXPECT_FALSE(RunOp("Slice", {x, I64v({0}), I64v({1}), I64v({2})}, 1).ok());
}

TEST(TensorOps, ExpandAndTile) {
  Tensor x = F32({1, 2, 3}, {3, 1});
  Tensor y = OneOut("Expand", {x, I64v({2, 1, 2})});
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2}));
  ExpectNear(y, {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
  EXPECT_FALSE(RunOp("Expand", {x, I64v({2, 2})}, 1).ok());
  Tensor t = OneOut("Tile", {F32({1, 2, 3, 4}, {2, 2}), I64v({2, 3})});
  EXPECT_EQ(t.shape(), (Shape{4, 6}));
  ExpectNear(t, {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4, 1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4});
  Tensor bt = OneOut("Tile", {Tensor::FromVector<bool>({true, false}, {2}), I64v({2})});
  EXPECT_EQ(Vals<bool>(bt), (std::vector<bool>{true, false, true, false}));
}

TEST(TensorOps, ShapeSizeConstantsRange) {
  Tensor x = Iota({2, 3, 4, 5});
  EXPECT_EQ(Vals<int64_t>(OneOut("Shape", {x})), (std::vector<int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(Vals<int64_t>(OneOut("Shape", {x}, {AttrI("start", 1), AttrI("end", -1)})),
            (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(Vals<int64_t>(OneOut("Shape", {x}, {AttrI("start", -10), AttrI("end", 10)})).size(), 4u);
  EXPECT_EQ(Vals<int64_t>(OneOut("Size", {x})), (std::vector<int64_t>{120}));
  Tensor c = OneOut("ConstantOfShape", {I64v({2, 3})}, {AttrT("value", Tensor::FromVector<int32_t>({7}, {1}))});
  EXPECT_EQ(c.dtype(), DType::kInt32);
  EXPECT_EQ(Vals<int32_t>(c), std::vector<int32_t>(6, 7));
  EXPECT_EQ(OneOut("ConstantOfShape", {I64v({0})}).numel(), 0);
  Tensor k = OneOut("Constant", {}, {AttrIs("value_ints", {4, 5})});
  EXPECT_EQ(Vals<int64_t>(k), (std::vector<int64_t>{4, 5}));
  Tensor kf = OneOut("Constant", {}, {AttrF("value_float", 2.5f)});
  EXPECT_EQ(kf.rank(), 0u);
  EXPECT_EQ(kf.data<float>()[0], 2.5f);
  Tensor r = OneOut("Range", {Tensor::Scalar<int32_t>(10), Tensor::Scalar<int32_t>(1), Tensor::Scalar<int32_t>(-3)});
  EXPECT_EQ(Vals<int32_t>(r), (std::vector<int32_t>{10, 7, 4}));
  Tensor rf = OneOut("Range", {Tensor::Scalar<float>(0.5f), Tensor::Scalar<float>(2.f), Tensor::Scalar<float>(0.5f)});
  ExpectNear(rf, {0.5f, 1.f, 1.5f});
  EXPECT_FALSE(RunOp("Range", {Tensor::Scalar<float>(0), Tensor::Scalar<float>(1), Tensor::Scalar<float>(0)}, 1).ok());
}

// ------------------------------------------------------------------ indexing

TEST(TensorOps, GatherFamily) {
  Tensor x = Iota({3, 4});
  Tensor g = OneOut("Gather", {x, I64(std::vector<int64_t>{-1, 0}, {2})}, {AttrI("axis", 0)});
  ExpectNear(g, {8, 9, 10, 11, 0, 1, 2, 3});
  Tensor g1 = OneOut("Gather", {x, Tensor::FromVector<int32_t>({3, 1, 1, 0}, {2, 2})}, {AttrI("axis", 1)});
  EXPECT_EQ(g1.shape(), (Shape{3, 2, 2}));
  ExpectNear(g1, {3, 1, 1, 0, 7, 5, 5, 4, 11, 9, 9, 8});
  EXPECT_FALSE(RunOp("Gather", {x, I64v({3})}, 1).ok());

  Tensor ge = OneOut("GatherElements", {x, I64(std::vector<int64_t>{1, 0, -1, 2}, {2, 2})}, {AttrI("axis", 1)});
  ExpectNear(ge, {1, 0, 7, 6});

  Tensor d = Iota({2, 2, 2});
  Tensor gn = OneOut("GatherND", {d, I64(std::vector<int64_t>{1, 0, 0, 1}, {2, 2})});
  EXPECT_EQ(gn.shape(), (Shape{2, 2}));
  ExpectNear(gn, {4, 5, 2, 3});
  Tensor gb = OneOut("GatherND", {d, I64(std::vector<int64_t>{1, 0}, {2, 1})}, {AttrI("batch_dims", 1)});
  EXPECT_EQ(gb.shape(), (Shape{2, 2}));
  ExpectNear(gb, {2, 3, 4, 5});
}

TEST(TensorOps, ScatterFamily) {
  Tensor x(DType::kFloat32, {2, 3});
  Tensor idx = I64(std::vector<int64_t>{1, 1, -3}, {1, 3});
  Tensor upd = F32({1, 2, 3}, {1, 3});
  Tensor s = OneOut("ScatterElements", {x, idx, upd}, {AttrI("axis", 1), AttrS("reduction", "add")}, 16);
  ExpectNear(s, {3, 3, 0, 0, 0, 0});
  Tensor s2 = OneOut("ScatterElements", {x, idx, upd}, {AttrI("axis", 1)});
  EXPECT_NEAR(s2.data<float>()[0], 3, 0);
  EXPECT_FALSE(RunOp("ScatterElements", {x, I64(std::vector<int64_t>{3}, {1, 1}), F32({1}, {1, 1})}, 1,
                     {AttrI("axis", 1)}).ok());
  Tensor nd = OneOut("ScatterND", {Iota({4}), I64(std::vector<int64_t>{3, 1}, {2, 1}), F32({10, 20}, {2})},
                     {AttrS("reduction", "mul")}, 16);
  ExpectNear(nd, {0, 20, 2, 30});
}

TEST(TensorOps, NonZeroCumSumOneHotTrilu) {
  Tensor nz = OneOut("NonZero", {F32({0, 1, -0.f, 2}, {2, 2})});
  EXPECT_EQ(nz.shape(), (Shape{2, 2}));
  EXPECT_EQ(Vals<int64_t>(nz), (std::vector<int64_t>{0, 1, 1, 1}));

  Tensor cs = OneOut("CumSum", {Tensor::FromVector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3}), I64({1}, {})},
                     {AttrI("exclusive", 1), AttrI("reverse", 1)});
  EXPECT_EQ(Vals<int32_t>(cs), (std::vector<int32_t>{5, 3, 0, 11, 6, 0}));

  Tensor oh = OneOut("OneHot", {I64v({0, -1, 5}), Tensor::Scalar<int64_t>(3), F32({0, 9}, {2})});
  EXPECT_EQ(oh.shape(), (Shape{3, 3}));
  ExpectNear(oh, {9, 0, 0, 0, 0, 9, 0, 0, 0});
  Tensor oh0 = OneOut("OneHot", {I64v({1, 2}), Tensor::Scalar<float>(3), F32({0, 1}, {2})}, {AttrI("axis", 0)});
  EXPECT_EQ(oh0.shape(), (Shape{3, 2}));
  ExpectNear(oh0, {0, 0, 1, 0, 0, 1});

  Tensor x = Iota({3, 4});
  ExpectNear(OneOut("Trilu", {x}), {0, 1, 2, 3, 0, 5, 6, 7, 0, 0, 10, 11});
  ExpectNear(OneOut("Trilu", {x, Tensor::Scalar<int64_t>(-1)}, {AttrI("upper", 0)}),
             {0, 0, 0, 0, 4, 0, 0, 0, 8, 9, 0, 0});
}

TEST(TensorOps, TopK) {
  Tensor x = F32({1, 5, 3, 5, 2, 0}, {2, 3});
  auto r = RunOp("TopK", {x, I64v({2})}, 2, {AttrI("axis", 0)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectNear(r.value()[0], {5, 5, 3, 1, 2, 0});
  EXPECT_EQ(Vals<int64_t>(r.value()[1]), (std::vector<int64_t>{1, 0, 0, 0, 1, 1}));
  Tensor y = F32({3, 1, 3, 2}, {4});
  auto s = RunOp("TopK", {y, I64v({3})}, 2, {AttrI("largest", 0)});
  ASSERT_TRUE(s.ok());
  ExpectNear(s.value()[0], {1, 2, 3});
  EXPECT_EQ(Vals<int64_t>(s.value()[1]), (std::vector<int64_t>{1, 3, 0}));
  auto old = RunOp("TopK", {y}, 2, {AttrI("k", 2)}, 9);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(Vals<int64_t>(old.value()[1]), (std::vector<int64_t>{0, 2}));  // ties: lower index first
  EXPECT_FALSE(RunOp("TopK", {y, I64v({5})}, 2).ok());
}

TEST(TensorOps, UniqueAndEyeLike) {
  Tensor x = F32({2, 1, 1, 3, 4, 3}, {6});
  auto u = RunOp("Unique", {x}, 4, {AttrI("sorted", 0)});
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  ExpectNear(u.value()[0], {2, 1, 3, 4});
  EXPECT_EQ(Vals<int64_t>(u.value()[1]), (std::vector<int64_t>{0, 1, 3, 4}));
  EXPECT_EQ(Vals<int64_t>(u.value()[2]), (std::vector<int64_t>{0, 1, 1, 2, 3, 2}));
  EXPECT_EQ(Vals<int64_t>(u.value()[3]), (std::vector<int64_t>{1, 2, 2, 1}));
  auto us = RunOp("Unique", {Tensor::FromVector<int32_t>({1, 0, 1, 0, 0, 1}, {3, 2})}, 3, {AttrI("axis", 0)});
  ASSERT_TRUE(us.ok()) << us.status().ToString();
  EXPECT_EQ(Vals<int32_t>(us.value()[0]), (std::vector<int32_t>{0, 1, 1, 0}));
  EXPECT_EQ(Vals<int64_t>(us.value()[1]), (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(Vals<int64_t>(us.value()[2]), (std::vector<int64_t>{1, 1, 0}));
  Tensor e = OneOut("EyeLike", {Tensor(DType::kInt32, {2, 3})}, {AttrI("k", 1), AttrI("dtype", 1)});
  EXPECT_EQ(e.dtype(), DType::kFloat32);
  ExpectNear(e, {0, 1, 0, 0, 0, 1});
}

// ------------------------------------------------------------------ Pad, DepthToSpace

TEST(TensorOps, PadModes) {
  Tensor x = F32({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor pads = I64v({0, 2, 0, 1});
  ExpectNear(OneOut("Pad", {x, pads, Tensor::Scalar<float>(9)}), {9, 9, 1, 2, 3, 9, 9, 9, 4, 5, 6, 9});
  ExpectNear(OneOut("Pad", {x, pads}, {AttrS("mode", "reflect")}), {3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5});
  ExpectNear(OneOut("Pad", {x, pads}, {AttrS("mode", "edge")}), {1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6});
  ExpectNear(OneOut("Pad", {x, pads}, {AttrS("mode", "wrap")}), {2, 3, 1, 2, 3, 1, 5, 6, 4, 5, 6, 4});
  // Negative pads crop; rows padded too.
  Tensor c = OneOut("Pad", {x, I64v({1, -1, 0, 0})});
  EXPECT_EQ(c.shape(), (Shape{3, 2}));
  ExpectNear(c, {0, 0, 2, 3, 5, 6});
  // Opset 2: attributes.
  Tensor o = OneOut("Pad", {x}, {AttrIs("pads", {0, 1, 0, 0}), AttrF("value", -1)}, 2);
  ExpectNear(o, {-1, 1, 2, 3, -1, 4, 5, 6});
  // Opset 18 axes input.
  Tensor a = OneOut("Pad", {x, I64v({1, 1}), Tensor(), I64v({0})}, {}, 18);
  EXPECT_EQ(a.shape(), (Shape{4, 3}));
  // int8 constant.
  Tensor i8 = OneOut("Pad", {Tensor::FromVector<int8_t>({1, 2}, {2}), I64v({1, 1}), Tensor::Scalar<int8_t>(-5)});
  EXPECT_EQ(Vals<int8_t>(i8), (std::vector<int8_t>{-5, 1, 2, -5}));
  EXPECT_FALSE(RunOp("Pad", {x, I64v({0, 0, 0})}, 1).ok());
  EXPECT_FALSE(RunOp("Pad", {x, I64v({0, -4, 0, 0})}, 1).ok());
}

TEST(TensorOps, DepthToSpaceRoundTrip) {
  Tensor x = Iota({1, 8, 2, 3});
  for (const char* mode : {"DCR", "CRD"}) {
    Tensor d = OneOut("DepthToSpace", {x}, {AttrI("blocksize", 2), AttrS("mode", mode)});
    EXPECT_EQ(d.shape(), (Shape{1, 2, 4, 6}));
    if (std::string(mode) == "DCR") {
      Tensor back = OneOut("SpaceToDepth", {d}, {AttrI("blocksize", 2)});
      EXPECT_EQ(Vals<float>(back), Vals<float>(x));
    }
  }
  // CRD: output[0, c, h*2+i, w*2+j] = x[0, c*4 + i*2 + j, h, w].
  Tensor crd = OneOut("DepthToSpace", {x}, {AttrI("blocksize", 2), AttrS("mode", "CRD")});
  EXPECT_EQ(crd.data<float>()[1 * 24 + 3 * 6 + 4], x.data<float>()[(1 * 4 + 1 * 2 + 0) * 6 + 1 * 3 + 2]);
}

TEST(TensorOps, HostileInputsGiveErrorsNotCrashes) {
  Tensor x = Iota({2, 3});
  EXPECT_FALSE(RunOp("Tile", {x, I64v({INT64_MAX, 2})}, 1).ok());
  EXPECT_FALSE(RunOp("Reshape", {x, I64v({INT64_MAX, INT64_MAX, 0})}, 1).ok());
  EXPECT_FALSE(RunOp("Pad", {x, I64v({0, INT64_MAX, 0, 0})}, 1).ok());
  EXPECT_FALSE(RunOp("Pad", {x, I64v({0, INT64_MIN, 0, 0})}, 1).ok());
  EXPECT_FALSE(RunOp("Expand", {x, I64v({-2, 3})}, 1).ok());
  EXPECT_FALSE(RunOp("ConstantOfShape", {I64v({1 << 30, 1 << 30, 1 << 30})}, 1).ok());
  EXPECT_FALSE(RunOp("Resize", {x, Tensor(), Tensor(), I64v({1, INT64_MAX / 2})}, 1).ok());
  EXPECT_FALSE(RunOp("Resize", {x, Tensor(), F32({1, -2}, {2})}, 1).ok());
  EXPECT_FALSE(RunOp("Gather", {x, I64v({0})}, 1, {AttrI("axis", 5)}).ok());
  EXPECT_FALSE(RunOp("GatherND", {x, I64(std::vector<int64_t>{0, 0, 0}, {1, 3})}, 1).ok());
  EXPECT_FALSE(RunOp("DepthToSpace", {Iota({1, 4, 1, 1})}, 1, {AttrI("blocksize", 3)}).ok());
  EXPECT_FALSE(RunOp("Concat", {x, Iota({2, 3, 1})}, 1, {AttrI("axis", 0)}).ok());
  // Extreme steps and starts are clamped, not overflowed.
  Tensor s = OneOut("Slice", {x, I64v({INT64_MAX}), I64v({INT64_MIN}), I64v({1}), I64v({INT64_MIN})});
  EXPECT_EQ(s.shape(), (Shape{2, 1}));
  ExpectNear(s, {2, 5});
  Tensor s2 = OneOut("Slice", {x, I64v({0}), I64v({INT64_MAX}), I64v({1}), I64v({INT64_MAX})});
  ExpectNear(s2, {0, 3});
  Tensor tr = OneOut("Trilu", {x, I64v({INT64_MIN})});
  ExpectNear(tr, {0, 1, 2, 3, 4, 5});
  // Zero-size tensors flow through.
  Tensor e(DType::kFloat32, {0, 3});
  EXPECT_EQ(OneOut("Transpose", {e}).shape(), (Shape{3, 0}));
  EXPECT_EQ(OneOut("Resize", {e, Tensor(), F32({2, 2}, {2})}).shape(), (Shape{0, 6}));
  EXPECT_EQ(OneOut("Slice", {e, I64v({-1}), I64v({-5}), I64v({0}), I64v({-1})}).shape(), (Shape{0, 3}));
  EXPECT_EQ(OneOut("Pad", {e, I64v({1, 0, 1, 0})}).shape(), (Shape{2, 3}));
}

// ------------------------------------------------------------------ Resize

TEST(TensorOps, ResizeNearestModes) {
  Tensor x = F32({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor scales = F32({1, 1, 2, 2}, {4});
  Tensor y = OneOut("Resize", {x, Tensor(), scales},
                    {AttrS("mode", "nearest"), AttrS("coordinate_transformation_mode", "asymmetric"),
                     AttrS("nearest_mode", "floor")});
  EXPECT_EQ(y.shape(), (Shape{1, 1, 4, 4}));
  ExpectNear(y, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // half_pixel + round_prefer_floor: same result for 2x.
  ExpectNear(OneOut("Resize", {x, Tensor(), scales}), {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // Opset 10 and Upsample-9 (asymmetric, floor).
  ExpectNear(OneOut("Resize", {x, scales}, {}, 10), {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  ExpectNear(OneOut("Upsample", {x, scales}, {}, 9), {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  Tensor u7 = OneOut("Upsample", {x}, {AttrFs("scales", {1, 1, 1, 3})}, 7);
  EXPECT_EQ(u7.shape(), (Shape{1, 1, 2, 6}));
  // Sizes, int64 data (byte path).
  Tensor xi = Tensor::FromVector<int64_t>({1, 2, 3}, {1, 3});
  Tensor yi = OneOut("Resize", {xi, Tensor(), Tensor(), I64v({1, 2})}, {AttrS("nearest_mode", "ceil")});
  EXPECT_EQ(Vals<int64_t>(yi), (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(RunOp("Resize", {x, Tensor(), scales, I64v({1, 1, 4, 4})}, 1).ok());
  EXPECT_FALSE(RunOp("Resize", {x, Tensor(), F32({1, 2}, {2})}, 1).ok());
}

TEST(TensorOps, ResizeLinearAndCubic) {
  Tensor x = F32({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor scales = F32({1, 1, 2, 2}, {4});
  // ONNX test_resize_upsample_scales_linear.
  Tensor y = OneOut("Resize", {x, Tensor(), scales}, {AttrS("mode", "linear")});
  ExpectNear(y, {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4});
  // align_corners.
  Tensor ya = OneOut("Resize", {x, Tensor(), scales},
                     {AttrS("mode", "linear"), AttrS("coordinate_transformation_mode", "align_corners")});
  ExpectNear(ya, {1, 1.333333f, 1.666667f, 2, 1.666667f, 2, 2.333333f, 2.666667f, 2.333333f, 2.666667f, 3,
                  3.333333f, 3, 3.333333f, 3.666667f, 4});
  // Cubic with a = -0.5 (Keys) reproduces a linear ramp away from the borders.
  Tensor ramp = Iota({1, 8});
  Tensor yc = OneOut("Resize", {ramp, Tensor(), F32({1, 2}, {2})},
                     {AttrS("mode", "cubic"), AttrS("coordinate_transformation_mode", "align_corners"),
                      AttrF("cubic_coeff_a", -0.5f)});
  ASSERT_EQ(yc.numel(), 16);
  for (int i = 4; i < 12; ++i) EXPECT_NEAR(yc.data<float>()[i], i * 7.0 / 15.0, 1e-4) << i;
  // tf_crop_and_resize with extrapolation.
  Tensor yt = OneOut("Resize", {x, F32({0, 0, 0, 0, 1, 1, 2, 1}, {8}), Tensor(), I64v({1, 1, 3, 1})},
                     {AttrS("mode", "linear"), AttrS("coordinate_transformation_mode", "tf_crop_and_resize"),
                      AttrF("extrapolation_value", -7)});
  ExpectNear(yt, {1.5f, 3.5f, -7});
  // uint8 linear rounds.
  Tensor xu = Tensor::FromVector<uint8_t>({0, 255}, {1, 2});
  Tensor yu = OneOut("Resize", {xu, Tensor(), F32({1, 2}, {2})},
                     {AttrS("mode", "linear"), AttrS("coordinate_transformation_mode", "align_corners")});
  EXPECT_EQ(Vals<uint8_t>(yu), (std::vector<uint8_t>{0, 85, 170, 255}));
  // Opset 18 antialias downsample averages (linear, scale 1/2 -> triangle filter over 4 taps).
  Tensor xa = F32({0, 0, 8, 8, 0, 0, 8, 8}, {1, 8});
  Tensor yaa = OneOut("Resize", {xa, Tensor(), F32({1, 0.5f}, {2})}, {AttrS("mode", "linear"), AttrI("antialias", 1)},
                      18);
  ASSERT_EQ(yaa.numel(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_GT(yaa.data<float>()[i], 0.5f) << "antialias should blend, index " << i;
}

TEST(TensorOps, ResizeFused2DMatchesAxisByAxis) {
  Tensor x(DType::kFloat32, {2, 3, 37, 29});
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
  for (const char* mode : {"linear", "cubic"}) {
    std::vector<Attribute> attrs = {AttrS("mode", mode), AttrI("exclude_outside", 1)};
    Tensor both = OneOut("Resize", {x, Tensor(), F32({1, 1, 1.7f, 0.6f}, {4})}, attrs);
    Tensor h = OneOut("Resize", {x, Tensor(), F32({1, 1, 1.7f, 1}, {4})}, attrs);
    Tensor hw = OneOut("Resize", {h, Tensor(), F32({1, 1, 1, 0.6f}, {4})}, attrs);
    ASSERT_EQ(both.shape(), (Shape{2, 3, 62, 17}));
    ASSERT_EQ(hw.shape(), both.shape());
    for (int64_t i = 0; i < both.numel(); ++i) ASSERT_NEAR(both.data<float>()[i], hw.data<float>()[i], 1e-5) << mode;
  }
}

TEST(TensorOps, ResizeOpset18AxesAndAspectPolicy) {
  Tensor x = F32({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor nl = OneOut("Resize", {x, Tensor(), Tensor(), I64v({7, 8})},
                     {AttrIs("axes", {2, 3}), AttrS("keep_aspect_ratio_policy", "not_larger")}, 18);
  ASSERT_EQ(nl.shape(), (Shape{1, 1, 7, 7}));
  const float* v = nl.data<float>();
  EXPECT_EQ(v[3], 1);
  EXPECT_EQ(v[4], 2);
  EXPECT_EQ(v[3 * 7], 1);
  EXPECT_EQ(v[4 * 7], 3);
  EXPECT_EQ(v[48], 4);
  Tensor ns = OneOut("Resize", {x, Tensor(), Tensor(), I64v({7, 8})},
                     {AttrIs("axes", {2, 3}), AttrS("keep_aspect_ratio_policy", "not_smaller")}, 18);
  EXPECT_EQ(ns.shape(), (Shape{1, 1, 8, 8}));
  Tensor ax = OneOut("Resize", {x, Tensor(), F32({2}, {1})}, {AttrIs("axes", {-1}), AttrS("mode", "linear")}, 18);
  ASSERT_EQ(ax.shape(), (Shape{1, 1, 2, 4}));
  ExpectNear(ax, {1, 1.25f, 1.75f, 2, 3, 3.25f, 3.75f, 4});
}

// Naive bilinear (half_pixel) for a 2x upsample, per output point.
float NaiveBilinear(const float* plane, int64_t h, int64_t w, int64_t oy, int64_t ox) {
  auto coord = [](int64_t o, int64_t n, int64_t* i0, int64_t* i1, float* f) {
    float c = (o + 0.5f) / 2.f - 0.5f;
    if (c < 0) c = 0;
    *i0 = static_cast<int64_t>(std::floor(c));
    *i1 = std::min(*i0 + 1, n - 1);
    *f = c - *i0;
  };
  int64_t y0, y1, x0, x1;
  float fy, fx;
  coord(oy, h, &y0, &y1, &fy);
  coord(ox, w, &x0, &x1, &fx);
  const float a = plane[y0 * w + x0] * (1 - fx) + plane[y0 * w + x1] * fx;
  const float b = plane[y1 * w + x0] * (1 - fx) + plane[y1 * w + x1] * fx;
  return a * (1 - fy) + b * fy;
}

TEST(TensorOps, ResizeLargeImageIsFastAndCorrect) {
  const int64_t c = 24, h = 240, w = 320;
  Tensor x(DType::kFloat32, {1, c, h, w});
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = dist(rng);
  Tensor scales = F32({1, 1, 2, 2}, {4});
  const auto t0 = std::chrono::steady_clock::now();
  Tensor yn = OneOut("Resize", {x, Tensor(), scales},
                     {AttrS("mode", "nearest"), AttrS("coordinate_transformation_mode", "asymmetric"),
                      AttrS("nearest_mode", "floor")});
  Tensor yl = OneOut("Resize", {x, Tensor(), scales}, {AttrS("mode", "linear")});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(secs, 2.0);
  ASSERT_EQ(yn.shape(), (Shape{1, c, 2 * h, 2 * w}));
  ASSERT_EQ(yl.shape(), (Shape{1, c, 2 * h, 2 * w}));
  for (int k = 0; k < 2000; ++k) {
    const int64_t ch = rng() % c, oy = rng() % (2 * h), ox = rng() % (2 * w);
    const float* plane = x.data<float>() + ch * h * w;
    const int64_t o = (ch * 2 * h + oy) * 2 * w + ox;
    ASSERT_EQ(yn.data<float>()[o], plane[(oy / 2) * w + ox / 2]);
    ASSERT_NEAR(yl.data<float>()[o], NaiveBilinear(plane, h, w, oy, ox), 1e-5);
  }
}

}  // namespace
}  // namespace quantkit
