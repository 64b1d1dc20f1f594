// Reductions (every axes subset against a naive reference, parallel paths, axes as attribute vs
// input across opsets, noop_with_empty_axes), ArgMax/ArgMin, Softmax family across opsets, and
// the normalisations (LayerNorm, BatchNorm incl. spatial=0 and training mode, InstanceNorm,
// LpNorm, MVN).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "elementwise_test_util.h"

namespace quantkit {
namespace {

using namespace optest;  // NOLINT

// Reference reduction: groups input elements by their output index and folds them with f.
template <typename Init, typename Fold, typename Fin>
std::vector<double> RefReduce(const Tensor& x, const std::vector<bool>& mask, Init init, Fold fold, Fin fin) {
  const Shape& s = x.shape();
  Shape out;
  for (size_t d = 0; d < s.size(); ++d) out.push_back(mask[d] ? 1 : s[d]);
  const int64_t no = NumElements(out);
  std::vector<double> acc(no, init), cnt(no, 0);
  const auto v = Values(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    auto idx = Unravel(i, s);
    int64_t o = 0;
    for (size_t d = 0; d < s.size(); ++d) o = o * out[d] + (mask[d] ? 0 : idx[d]);
    acc[o] = fold(acc[o], v[i]);
    cnt[o] += 1;
  }
  for (int64_t o = 0; o < no; ++o) acc[o] = fin(acc[o], cnt[o]);
  return acc;
}

Shape ReducedShape(const Shape& s, const std::vector<bool>& mask, bool keepdims) {
  Shape out;
  for (size_t d = 0; d < s.size(); ++d) {
    if (!mask[d]) out.push_back(s[d]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

TEST(Reduce, EveryAxesSubsetMatchesReference) {
  for (const Shape& shape : {Shape{3, 4, 5, 2}, Shape{2, 1, 3, 4}, Shape{40, 33, 29}}) {
    const Tensor x = Rand(shape, 5, 0.5f, 2.0f);
    const int rank = static_cast<int>(shape.size());
    for (int m = 1; m < (1 << rank); ++m) {
      std::vector<bool> mask(rank);
      std::vector<int64_t> axes;
      for (int d = 0; d < rank; ++d) {
        mask[d] = (m >> d) & 1;
        if (mask[d]) axes.push_back(d - (d % 2 ? rank : 0));  // mix negative axes in
      }
      SCOPED_TRACE(ShapeToString(shape) + " axes mask " + std::to_string(m));
      const bool keep = (m % 2) == 0;
      const Shape out = ReducedShape(shape, mask, keep);
      Tensor axes_t = Tensor::FromVector<int64_t>(axes, {static_cast<int64_t>(axes.size())});
      auto sum = RefReduce(x, mask, 0.0, [](double a, double b) { return a + b; }, [](double a, double) { return a; });
      ExpectNear(Run1("ReduceSum", {x, axes_t}, {I("keepdims", keep)}, 13), out, sum, 1e-4, 1e-5);
      auto mean = RefReduce(x, mask, 0.0, [](double a, double b) { return a + b; }, [](double a, double c) { return a / c; });
      ExpectNear(Run1("ReduceMean", {x}, {Ints("axes", axes), I("keepdims", keep)}, 13), out, mean, 1e-5, 1e-5);
      auto mx = RefReduce(x, mask, -1e300, [](double a, double b) { return std::max(a, b); }, [](double a, double) { return a; });
      ExpectNear(Run1("ReduceMax", {x, axes_t}, {I("keepdims", keep)}, 18), out, mx, 0, 0);
      auto l2 = RefReduce(x, mask, 0.0, [](double a, double b) { return a + b * b; }, [](double a, double) { return std::sqrt(a); });
      ExpectNear(Run1("ReduceL2", {x}, {Ints("axes", axes), I("keepdims", keep)}, 11), out, l2, 1e-5, 1e-5);
      auto lse = RefReduce(x, mask, 0.0, [](double a, double b) { return a + std::exp(b); }, [](double a, double) { return std::log(a); });
      ExpectNear(Run1("ReduceLogSumExp", {x}, {Ints("axes", axes), I("keepdims", keep)}, 13), out, lse, 1e-5, 1e-5);
    }
  }
}

TEST(Reduce, LargeFullAndColumnReductionsInParallel) {
  const Tensor x = Rand({300, 1001}, 9, -1.f, 1.f);
  const auto v = Values(x);
  double total = 0;
  for (double e : v) total += e;
  ExpectNear(Run1("ReduceSum", {x}, {I("keepdims", 0)}, 11), {}, {total}, 1e-2, 1e-4);
  std::vector<double> cols(1001, 0.0);
  for (size_t i = 0; i < v.size(); ++i) cols[i % 1001] += v[i];
  ExpectNear(Run1("ReduceSum", {x, Tensor::FromVector<int64_t>({0}, {1})}, {I("keepdims", 0)}, 13), {1001}, cols, 1e-4,
             1e-4);
}

TEST(Reduce, EmptyAxesNoopAndDefaults) {
  Tensor x = Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor empty = Tensor::FromVector<int64_t>({}, {0});
  ExpectNear(Run1("ReduceSum", {x, empty}, {I("noop_with_empty_axes", 1)}, 13), {2, 3}, {1, 2, 3, 4, 5, 6});
  ExpectNear(Run1("ReduceSum", {x, empty}, {}, 13), {1, 1}, {21});
  ExpectNear(Run1("ReduceSum", {x}, {I("keepdims", 0)}, 13), {}, {21});
  ExpectNear(Run1("ReduceProd", {x, Tensor::FromVector<int64_t>({1}, {1})}, {}, 18), {2, 1}, {6, 120});
  // Opset 18 ReduceMean reads axes from the input; the attribute is not used.
  ExpectNear(Run1("ReduceMean", {x, Tensor::FromVector<int64_t>({-1}, {1})}, {I("keepdims", 0)}, 18), {2}, {2, 5});
  std::vector<Tensor> out;
  Status s = RunOp("ReduceMean", {x}, &out, {Ints("axes", {2})}, 13);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("axis 2"), std::string::npos) << s.message();
}

TEST(Reduce, IntegerAndHalfTypes) {
  Tensor x = Tensor::FromVector<int32_t>({-3, 7, 2, -8, 5, 1}, {2, 3});
  EXPECT_EQ(Run1("ReduceMax", {x}, {Ints("axes", {1})}, 13).ToInt64Vector(), (std::vector<int64_t>{7, 5}));
  EXPECT_EQ(Run1("ReduceMin", {x}, {Ints("axes", {0}), I("keepdims", 0)}, 13).ToInt64Vector(),
            (std::vector<int64_t>{-8, 5, 1}));
  EXPECT_EQ(Run1("ReduceSum", {x, Tensor::FromVector<int64_t>({1}, {1})}, {}, 13).ToInt64Vector(),
            (std::vector<int64_t>{6, -2}));
  EXPECT_EQ(Run1("ReduceL1", {x}, {Ints("axes", {1})}, 13).ToInt64Vector(), (std::vector<int64_t>{12, 14}));
  EXPECT_EQ(Run1("ReduceSumSquare", {x}, {Ints("axes", {1})}, 13).ToInt64Vector(), (std::vector<int64_t>{62, 90}));
  EXPECT_EQ(Run1("ReduceMean", {x}, {Ints("axes", {1})}, 13).ToInt64Vector(), (std::vector<int64_t>{2, 0}));
  Tensor h = Run1("ReduceMean", {Half({1, 2, 3, 4}, {2, 2})}, {Ints("axes", {0})}, 13);
  ASSERT_EQ(h.dtype(), DType::kFloat16);
  ExpectNear(h, {1, 2}, {2, 3});
  // LogSumExp is stable for large inputs; LogSum of ones.
  ExpectNear(Run1("ReduceLogSumExp", {Tensor::FromVector<float>({1000, 1000}, {2})}, {}, 13), {1},
             {1000 + std::log(2.0)});
  ExpectNear(Run1("ReduceLogSum", {Tensor::FromVector<float>({1, 1, 1}, {3})}, {I("keepdims", 0)}, 13), {}, {std::log(3.0)});
}

TEST(ArgMaxMin, AxisKeepdimsAndLastIndex) {
  Tensor x = Tensor::FromVector<float>({2, 1, 2, 0, 5, 5, 3, 3}, {2, 4});
  EXPECT_EQ(Run1("ArgMax", {x}, {I("axis", 1)}, 13).ToInt64Vector(), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(Run1("ArgMax", {x}, {I("axis", 1), I("select_last_index", 1)}, 13).ToInt64Vector(),
            (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(Run1("ArgMin", {x}, {I("axis", -1), I("select_last_index", 1)}, 13).ToInt64Vector(),
            (std::vector<int64_t>{3, 3}));
  Tensor y = Run1("ArgMin", {x}, {I("axis", 0), I("keepdims", 0)}, 13);
  ASSERT_EQ(y.shape(), (Shape{4}));
  EXPECT_EQ(y.ToInt64Vector(), (std::vector<int64_t>{0, 0, 0, 0}));
  Tensor xi = Tensor::FromVector<int64_t>({1, 9, 4, 9, 2, 0}, {3, 2});
  Tensor z = Run1("ArgMax", {xi}, {}, 13);
  ASSERT_EQ(z.shape(), (Shape{1, 2}));
  EXPECT_EQ(z.ToInt64Vector(), (std::vector<int64_t>{1, 0}));
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("ArgMax", {x}, &out, {I("axis", 2)}, 13).ok());
}

std::vector<double> RefSoftmax(const std::vector<double>& v, int64_t O, int64_t R, int64_t In, bool log) {
  std::vector<double> r(v.size());
  for (int64_t o = 0; o < O; ++o) {
    for (int64_t i = 0; i < In; ++i) {
      double m = -1e300, s = 0;
      for (int64_t k = 0; k < R; ++k) m = std::max(m, v[(o * R + k) * In + i]);
      for (int64_t k = 0; k < R; ++k) s += std::exp(v[(o * R + k) * In + i] - m);
      for (int64_t k = 0; k < R; ++k) {
        const double e = v[(o * R + k) * In + i];
        r[(o * R + k) * In + i] = log ? e - m - std::log(s) : std::exp(e - m) / s;
      }
    }
  }
  return r;
}

TEST(Softmax, Opset11FlattensOpset13UsesOneAxis) {
  const Tensor x = Rand({2, 3, 300}, 21);
  const auto v = Values(x);
  ExpectNear(Run1("Softmax", {x}, {I("axis", 1)}, 11), {2, 3, 300}, RefSoftmax(v, 2, 900, 1, false), 1e-7, 1e-4);
  ExpectNear(Run1("Softmax", {x}, {I("axis", 1)}, 13), {2, 3, 300}, RefSoftmax(v, 2, 3, 300, false), 1e-7, 1e-4);
  ExpectNear(Run1("Softmax", {x}, {}, 13), {2, 3, 300}, RefSoftmax(v, 6, 300, 1, false), 1e-7, 1e-4);
  ExpectNear(Run1("LogSoftmax", {x}, {I("axis", 0)}, 13), {2, 3, 300}, RefSoftmax(v, 1, 2, 900, true), 1e-5, 1e-5);
  ExpectNear(Run1("LogSoftmax", {x}, {}, 9), {2, 3, 300}, RefSoftmax(v, 2, 900, 1, true), 1e-5, 1e-5);
  // Large values do not overflow.
  ExpectNear(Run1("Softmax", {Tensor::FromVector<float>({1000, 1001, 1002}, {1, 3})}, {}, 13), {1, 3},
             RefSoftmax({1000, 1001, 1002}, 1, 3, 1, false), 1e-7, 1e-5);
}

TEST(Softmax, HardmaxPicksFirstMaximum) {
  Tensor x = Tensor::FromVector<float>({1, 3, 3, 0, 2, 2, 1, 7}, {2, 4});
  ExpectNear(Run1("Hardmax", {x}, {}, 13), {2, 4}, {0, 1, 0, 0, 0, 0, 0, 1});
  ExpectNear(Run1("Hardmax", {x}, {I("axis", 0)}, 13), {2, 4}, {0, 1, 1, 0, 1, 0, 0, 1});
  ExpectNear(Run1("Hardmax", {x}, {I("axis", 0)}, 11), {2, 4}, {0, 0, 0, 0, 0, 0, 0, 1});
}

TEST(LayerNorm, NormalizesTrailingDimsAndReturnsStats) {
  const Tensor x = Rand({2, 3, 4}, 31);
  const Tensor w = Rand({3, 4}, 32), b = Rand({3, 4}, 33);
  std::vector<Tensor> out;
  Status s = RunOp("LayerNormalization", {x, w, b}, &out, {I("axis", 1), F("epsilon", 1e-3f)}, 17, 3);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(out.size(), 3u);
  const auto v = Values(x), vw = Values(w), vb = Values(b);
  std::vector<double> y(24), mean(2), inv(2);
  for (int o = 0; o < 2; ++o) {
    double m = 0, q = 0;
    for (int i = 0; i < 12; ++i) m += v[o * 12 + i];
    m /= 12;
    for (int i = 0; i < 12; ++i) q += (v[o * 12 + i] - m) * (v[o * 12 + i] - m);
    const double iv = 1 / std::sqrt(q / 12 + 1e-3);
    for (int i = 0; i < 12; ++i) y[o * 12 + i] = (v[o * 12 + i] - m) * iv * vw[i] + vb[i];
    mean[o] = m;
    inv[o] = iv;
  }
  ExpectNear(out[0], {2, 3, 4}, y, 1e-5, 1e-4);
  ExpectNear(out[1], {2, 1, 1}, mean, 1e-6, 1e-5);
  ExpectNear(out[2], {2, 1, 1}, inv, 1e-6, 1e-5);
  // Scale that does not match the normalised shape is an error.
  s = RunOp("LayerNormalization", {x, Rand({5}, 1)}, &out, {}, 17, 1);
  EXPECT_FALSE(s.ok());
}

TEST(BatchNorm, InferenceAllOpsetsAndTraining) {
  const Tensor x = Rand({2, 3, 2, 2}, 41);
  const Tensor scale = Tensor::FromVector<float>({1, 2, 0.5f}, {3});
  const Tensor bias = Tensor::FromVector<float>({0, 1, -1}, {3});
  const Tensor mean = Tensor::FromVector<float>({0.1f, -0.2f, 0.3f}, {3});
  const Tensor var = Tensor::FromVector<float>({1, 4, 0.25f}, {3});
  const auto v = Values(x);
  std::vector<double> want(v.size());
  const double sc[] = {1, 2, 0.5}, bi[] = {0, 1, -1}, mu[] = {0.1, -0.2, 0.3}, va[] = {1, 4, 0.25};
  for (size_t i = 0; i < v.size(); ++i) {
    const int c = (i / 4) % 3;
    want[i] = (v[i] - mu[c]) / std::sqrt(va[c] + 1e-5) * sc[c] + bi[c];
  }
  for (int64_t opset : {7, 9, 14, 15}) {
    SCOPED_TRACE(opset);
    ExpectNear(Run1("BatchNormalization", {x, scale, bias, mean, var}, {}, opset), {2, 3, 2, 2}, want, 1e-5, 1e-5);
  }
  // spatial=0 (opset 7): per-activation parameters of shape [C, H, W].
  Tensor pe_scale(DType::kFloat32, {3, 2, 2}), pe_zero(DType::kFloat32, {3, 2, 2}), pe_one(DType::kFloat32, {3, 2, 2});
  for (int i = 0; i < 12; ++i) {
    pe_scale.data<float>()[i] = static_cast<float>(i);
    pe_one.data<float>()[i] = 1.0f;
  }
  std::vector<double> pe_want(v.size());
  for (size_t i = 0; i < v.size(); ++i) pe_want[i] = v[i] / std::sqrt(1 + 1e-5) * static_cast<double>(i % 12);
  ExpectNear(Run1("BatchNormalization", {x, pe_scale, pe_zero, pe_zero, pe_one}, {I("spatial", 0)}, 7), {2, 3, 2, 2},
             pe_want, 1e-5, 1e-5);
  // Training mode (opset 15): batch statistics and running averages.
  std::vector<Tensor> out;
  Status s = RunOp("BatchNormalization", {x, scale, bias, mean, var}, &out, {I("training_mode", 1), F("momentum", 0.8f)},
                   15, 3);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<double> bm(3, 0), bv(3, 0), ty(v.size()), rm(3), rv(3);
  for (size_t i = 0; i < v.size(); ++i) bm[(i / 4) % 3] += v[i] / 8;
  for (size_t i = 0; i < v.size(); ++i) bv[(i / 4) % 3] += (v[i] - bm[(i / 4) % 3]) * (v[i] - bm[(i / 4) % 3]) / 8;
  for (size_t i = 0; i < v.size(); ++i) {
    const int c = (i / 4) % 3;
    ty[i] = (v[i] - bm[c]) / std::sqrt(bv[c] + 1e-5) * sc[c] + bi[c];
  }
  for (int c = 0; c < 3; ++c) {
    rm[c] = mu[c] * 0.8 + bm[c] * 0.2;
    rv[c] = va[c] * 0.8 + bv[c] * 0.2;
  }
  ExpectNear(out[0], {2, 3, 2, 2}, ty, 1e-5, 1e-4);
  ExpectNear(out[1], {3}, rm, 1e-6, 1e-5);
  ExpectNear(out[2], {3}, rv, 1e-6, 1e-5);
  // Wrong parameter size.
  s = RunOp("BatchNormalization", {x, Rand({4}, 1), bias, mean, var}, &out, {}, 15);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("scale"), std::string::npos) << s.message();
}

TEST(Norms, InstanceLpAndMvn) {
  const Tensor x = Rand({2, 2, 5}, 51);
  const auto v = Values(x);
  // InstanceNormalization: per (n, c) over the 5 spatial elements.
  std::vector<double> inst(v.size()), lp(v.size()), mvn(v.size());
  const double sc[] = {2, -1}, bi[] = {0.5, 0};
  for (int nc = 0; nc < 4; ++nc) {
    double m = 0, q = 0, l2 = 0;
    for (int i = 0; i < 5; ++i) m += v[nc * 5 + i] / 5;
    for (int i = 0; i < 5; ++i) q += (v[nc * 5 + i] - m) * (v[nc * 5 + i] - m) / 5;
    for (int i = 0; i < 5; ++i) l2 += v[nc * 5 + i] * v[nc * 5 + i];
    for (int i = 0; i < 5; ++i) {
      inst[nc * 5 + i] = (v[nc * 5 + i] - m) / std::sqrt(q + 1e-5) * sc[nc % 2] + bi[nc % 2];
      lp[nc * 5 + i] = v[nc * 5 + i] / std::sqrt(l2);
    }
  }
  ExpectNear(Run1("InstanceNormalization", {x, Tensor::FromVector<float>({2, -1}, {2}), Tensor::FromVector<float>({0.5f, 0}, {2})},
                  {}, 6),
             {2, 2, 5}, inst, 1e-5, 1e-4);
  ExpectNear(Run1("LpNormalization", {x}, {}, 1), {2, 2, 5}, lp, 1e-6, 1e-5);
  // MVN over axes {0, 2}: per channel.
  for (int c = 0; c < 2; ++c) {
    double m = 0, q = 0;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 5; ++i) m += v[(n * 2 + c) * 5 + i] / 10;
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 5; ++i) q += v[(n * 2 + c) * 5 + i] * v[(n * 2 + c) * 5 + i] / 10;
    const double sd = std::sqrt(q - m * m);
    for (int n = 0; n < 2; ++n)
      for (int i = 0; i < 5; ++i) mvn[(n * 2 + c) * 5 + i] = (v[(n * 2 + c) * 5 + i] - m) / (sd + 1e-9);
  }
  ExpectNear(Run1("MeanVarianceNormalization", {x}, {Ints("axes", {0, 2})}, 13), {2, 2, 5}, mvn, 1e-5, 1e-4);
  // L1 along axis 1; an all-zero slice stays zero instead of NaN.
  Tensor z = Tensor::FromVector<float>({0, 0, 3, -1}, {2, 2});
  ExpectNear(Run1("LpNormalization", {z}, {I("p", 1), I("axis", 1)}, 1), {2, 2}, {0, 0, 0.75, -0.25});
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("LpNormalization", {z}, &out, {I("p", 3)}, 1).ok());
}

}  // namespace
}  // namespace quantkit
