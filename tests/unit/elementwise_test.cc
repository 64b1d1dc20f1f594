// Elementwise ops: broadcasting (against a naive reference), integer semantics (Div, Mod, Pow,
// wrap-around), rounding, Cast, Clip across opsets, Where, activations, variadic ops, legacy
// (opset < 7) broadcasting and error reporting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "elementwise_test_util.h"
#include "runtime/ops/elementwise_util.h"

namespace quantkit {
namespace {

using namespace optest;  // NOLINT

// Reference: out[idx] = f(a[bcast idx], b[bcast idx]).
template <typename F>
std::vector<double> RefBinary(const Tensor& a, const Tensor& b, const Shape& out, F f) {
  const auto va = Values(a), vb = Values(b);
  std::vector<double> r(NumElements(out));
  for (int64_t i = 0; i < static_cast<int64_t>(r.size()); ++i) {
    const auto idx = Unravel(i, out);
    r[i] = f(va[BroadcastOffset(idx, a.shape())], vb[BroadcastOffset(idx, b.shape())]);
  }
  return r;
}

struct BcastCase {
  Shape a, b, out;
};

TEST(ElementwiseBroadcast, MatchesReferenceForManyShapes) {
  const std::vector<BcastCase> cases = {
      {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}},       // same shape
      {{2, 3, 4}, {}, {2, 3, 4}},              // scalar
      {{}, {2, 3, 4}, {2, 3, 4}},              // scalar on the left
      {{2, 3, 4, 5}, {1, 3, 1, 1}, {2, 3, 4, 5}},  // channel broadcast
      {{2, 3, 4, 5}, {5}, {2, 3, 4, 5}},       // row broadcast
      {{3, 1, 5}, {4, 1}, {3, 4, 5}},          // both sides broadcast
      {{1, 4, 1}, {3, 1, 6}, {3, 4, 6}},
      {{2, 1, 3, 1, 2}, {1, 4, 3, 5, 1}, {2, 4, 3, 5, 2}},
      {{5, 1}, {1, 1}, {5, 1}},
      {{0, 3}, {3}, {0, 3}},                   // empty
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    const Tensor a = Rand(c.a, seed++), b = Rand(c.b, seed++, 0.5f, 2.0f);
    SCOPED_TRACE(ShapeToString(c.a) + " op " + ShapeToString(c.b));
    ExpectNear(Run1("Sub", {a, b}), c.out, RefBinary(a, b, c.out, [](double x, double y) { return x - y; }));
    ExpectNear(Run1("Div", {a, b}), c.out, RefBinary(a, b, c.out, [](double x, double y) { return x / y; }));
    ExpectNear(Run1("Max", {a, b}), c.out, RefBinary(a, b, c.out, [](double x, double y) { return std::max(x, y); }));
  }
}

TEST(ElementwiseBroadcast, LargeParallelBroadcasts) {
  // Big enough to be split across threads, with runs cut at chunk boundaries.
  const std::vector<BcastCase> cases = {
      {{64, 33, 47}, {33, 1}, {64, 33, 47}},
      {{64, 33, 47}, {64, 1, 47}, {64, 33, 47}},
      {{100003}, {100003}, {100003}},
      {{7, 1, 20011}, {1, 3, 1}, {7, 3, 20011}},
  };
  uint32_t seed = 100;
  for (const auto& c : cases) {
    const Tensor a = Rand(c.a, seed++), b = Rand(c.b, seed++);
    SCOPED_TRACE(ShapeToString(c.a) + " op " + ShapeToString(c.b));
    ExpectNear(Run1("Mul", {a, b}), c.out, RefBinary(a, b, c.out, [](double x, double y) { return x * y; }));
  }
}

TEST(ElementwiseBroadcast, IncompatibleShapesAreAnError) {
  std::vector<Tensor> out;
  Status s = RunOp("Add", {Rand({2, 3}, 1), Rand({4}, 2)}, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("[2,3]"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("Add"), std::string::npos) << s.message();
  // Mixed element types.
  s = RunOp("Add", {Rand({2}, 1), Tensor::FromVector<int32_t>({1, 2}, {2})}, &out);
  EXPECT_FALSE(s.ok());
}

TEST(ElementwiseInt, DivTruncatesAndRejectsZero) {
  Tensor a = Tensor::FromVector<int32_t>({-7, 7, -7, 7, std::numeric_limits<int32_t>::min()}, {5});
  Tensor b = Tensor::FromVector<int32_t>({2, -2, -2, 2, -1}, {5});
  Tensor y = Run1("Div", {a, b});
  ASSERT_EQ(y.dtype(), DType::kInt32);
  EXPECT_EQ(y.ToInt64Vector(), (std::vector<int64_t>{-3, -3, 3, 3, std::numeric_limits<int32_t>::min()}));
  std::vector<Tensor> out;
  Status s = RunOp("Div", {a, Tensor::FromVector<int32_t>({1, 0, 1, 1, 1}, {5})}, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("division by zero"), std::string::npos) << s.message();
  // uint8 wraps, int64 adds without overflow trouble.
  Tensor u = Run1("Add", {Tensor::FromVector<uint8_t>({250, 3}, {2}), Tensor::FromVector<uint8_t>({10, 4}, {2})});
  EXPECT_EQ(u.ToInt64Vector(), (std::vector<int64_t>{4, 7}));
  Tensor big = Run1("Mul", {Tensor::FromVector<int64_t>({std::numeric_limits<int64_t>::max()}, {1}),
                            Tensor::FromVector<int64_t>({2}, {1})});
  EXPECT_EQ(big.ToInt64Vector(), (std::vector<int64_t>{-2}));
}

TEST(ElementwiseInt, ModFollowsFmodAttribute) {
  Tensor a = Tensor::FromVector<int32_t>({-4, 7, 5, 4, -7, 8}, {6});
  Tensor b = Tensor::FromVector<int32_t>({2, -3, 8, -2, 3, 5}, {6});
  // fmod=0: sign of the divisor (Python).
  EXPECT_EQ(Run1("Mod", {a, b}).ToInt64Vector(), (std::vector<int64_t>{0, -2, 5, 0, 2, 3}));
  // fmod=1: sign of the dividend (C).
  EXPECT_EQ(Run1("Mod", {a, b}, {I("fmod", 1)}).ToInt64Vector(), (std::vector<int64_t>{0, 1, 5, 0, -1, 3}));
  Tensor fa = Tensor::FromVector<float>({-4.5f, 7.5f, 5.f}, {3});
  Tensor fb = Tensor::FromVector<float>({2.f, -3.f, -8.f}, {3});
  ExpectNear(Run1("Mod", {fa, fb}, {I("fmod", 1)}), {3}, {-0.5, 1.5, 5});
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("Mod", {a, b}, &out, {I("fmod", 2)}).ok());
}

TEST(ElementwisePow, MixedTypes) {
  // int base, float exponent -> int output.
  Tensor y = Run1("Pow", {Tensor::FromVector<int32_t>({1, 2, 3, -2}, {4}), Tensor::FromVector<float>({4, 5, 6, 3}, {4})});
  ASSERT_EQ(y.dtype(), DType::kInt32);
  EXPECT_EQ(y.ToInt64Vector(), (std::vector<int64_t>{1, 32, 729, -8}));
  // int64 ^ int64, exact beyond float precision, and negative exponents.
  y = Run1("Pow", {Tensor::FromVector<int64_t>({3, 2, 1, -1, 5}, {5}), Tensor::FromVector<int64_t>({39, 3, -4, -3, -1}, {5})});
  EXPECT_EQ(y.ToInt64Vector(), (std::vector<int64_t>{4052555153018976267LL, 8, 1, -1, 0}));
  // float base with uint64 exponent, and scalar-square fast path.
  ExpectNear(Run1("Pow", {Tensor::FromVector<float>({1.5f, -2.f}, {2}), Tensor::FromVector<uint64_t>({2, 3}, {2})}), {2},
             {2.25, -8});
  ExpectNear(Run1("Pow", {Tensor::FromVector<float>({1.5f, -2.f, 3.f}, {3}), Tensor::Scalar<float>(2.f)}), {3},
             {2.25, 4, 9});
  ExpectNear(Run1("Pow", {Tensor::FromVector<float>({4.f, 2.f}, {2}), Tensor::Scalar<float>(0.5f)}), {2},
             {2, std::sqrt(2.0)});
}

TEST(ElementwiseUnary, RoundHalfToEvenAndOthers) {
  Tensor x = Tensor::FromVector<float>({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f, -2.6f}, {7});
  ExpectNear(Run1("Round", {x}), {7}, {0, 2, 2, -0.0, -2, 2, -3});
  ExpectNear(Run1("Floor", {x}), {7}, {0, 1, 2, -1, -2, 2, -3});
  ExpectNear(Run1("Ceil", {x}), {7}, {1, 2, 3, -0.0, -1, 3, -2});
  ExpectNear(Run1("Sign", {x}), {7}, {1, 1, 1, -1, -1, 1, -1});
  EXPECT_EQ(Run1("Abs", {Tensor::FromVector<int8_t>({-128, -3, 4}, {3})}).ToInt64Vector(),
            (std::vector<int64_t>{-128, 3, 4}));
  EXPECT_EQ(Run1("Neg", {Tensor::FromVector<int64_t>({5, -6}, {2})}).ToInt64Vector(), (std::vector<int64_t>{-5, 6}));
  EXPECT_EQ(Run1("Relu", {Tensor::FromVector<int32_t>({-5, 6}, {2})}).ToInt64Vector(), (std::vector<int64_t>{0, 6}));
  // Float-only functions reject integers with a clear error.
  std::vector<Tensor> out;
  Status s = RunOp("Sqrt", {Tensor::FromVector<int32_t>({4}, {1})}, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("int32"), std::string::npos) << s.message();
}

TEST(ElementwiseUnary, ActivationsMatchFormulas) {
  const Tensor x = Rand({1003}, 7, -6.f, 6.f);
  const auto v = Values(x);
  auto ref = [&](auto f) {
    std::vector<double> r(v.size());
    for (size_t i = 0; i < v.size(); ++i) r[i] = f(v[i]);
    return r;
  };
  ExpectNear(Run1("Sigmoid", {x}), {1003}, ref([](double t) { return 1 / (1 + std::exp(-t)); }));
  ExpectNear(Run1("Softplus", {x}), {1003}, ref([](double t) { return std::log(std::exp(t) + 1); }));
  ExpectNear(Run1("HardSigmoid", {x}, {F("alpha", 0.3f), F("beta", 0.4f)}), {1003},
             ref([](double t) { return std::max(0.0, std::min(1.0, 0.3 * t + 0.4)); }));
  ExpectNear(Run1("HardSwish", {x}), {1003}, ref([](double t) { return t * std::max(0.0, std::min(1.0, t / 6 + 0.5)); }));
  ExpectNear(Run1("LeakyRelu", {x}, {F("alpha", 0.2f)}), {1003}, ref([](double t) { return t < 0 ? 0.2 * t : t; }));
  ExpectNear(Run1("Elu", {x}, {F("alpha", 2.f)}), {1003}, ref([](double t) { return t < 0 ? 2 * (std::exp(t) - 1) : t; }));
  ExpectNear(Run1("Celu", {x}, {F("alpha", 2.f)}), {1003},
             ref([](double t) { return std::max(0.0, t) + std::min(0.0, 2 * (std::exp(t / 2) - 1)); }));
  ExpectNear(Run1("Selu", {x}), {1003}, ref([](double t) {
               return t > 0 ? 1.0507009873554805 * t : 1.0507009873554805 * 1.6732632423543772 * (std::exp(t) - 1);
             }));
  ExpectNear(Run1("ThresholdedRelu", {x}, {F("alpha", 2.f)}), {1003}, ref([](double t) { return t > 2 ? t : 0; }));
  ExpectNear(Run1("Mish", {x}), {1003}, ref([](double t) { return t * std::tanh(std::log1p(std::exp(t))); }));
  ExpectNear(Run1("Gelu", {x}, {}, 20), {1003}, ref([](double t) { return 0.5 * t * (1 + std::erf(t / std::sqrt(2.0))); }));
  ExpectNear(Run1("Gelu", {x}, {S("approximate", "tanh")}, 20), {1003}, ref([](double t) {
               return 0.5 * t * (1 + std::tanh(std::sqrt(2 / M_PI) * (t + 0.044715 * t * t * t)));
             }));
  std::vector<Tensor> out;
  Status s = RunOp("Gelu", {x}, &out, {S("approximate", "fast")}, 20);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("approximate"), std::string::npos) << s.message();
  // Sigmoid stays finite for large |x|.
  ExpectNear(Run1("Sigmoid", {Tensor::FromVector<float>({-1000.f, 1000.f}, {2})}), {2}, {0, 1});
}

TEST(ElementwiseUnary, FastFloatFunctionsAreAccurate) {
  // Exp, Tanh, Erf and Sigmoid use branch-free float32 approximations: check them densely.
  const int64_t n = 200001;
  Tensor x(DType::kFloat32, {n});
  for (int64_t i = 0; i < n; ++i) x.data<float>()[i] = -87.0f + 175.0f * static_cast<float>(i) / (n - 1);
  auto check = [&](const char* op, double (*f)(double), double rtol, double atol) {
    Tensor y = Run1(op, {x});
    ASSERT_TRUE(y.defined());
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double want = f(x.data<float>()[i]);
      const double err = std::fabs(y.data<float>()[i] - want) / (atol + rtol * std::fabs(want));
      worst = std::max(worst, err);
    }
    EXPECT_LE(worst, 1.0) << op;
  };
  check("Exp", [](double v) { return std::exp(v); }, 2.5e-7, 1e-37);
  check("Tanh", [](double v) { return std::tanh(v); }, 3e-7, 1e-37);
  check("Erf", [](double v) { return std::erf(v); }, 1e-6, 1e-7);
  check("Sigmoid", [](double v) { return 1 / (1 + std::exp(-v)); }, 5e-7, 1e-37);
  // Special values.
  Tensor sp = Tensor::FromVector<float>({INFINITY, -INFINITY, std::nanf(""), 100.f, -200.f, 0.f}, {6});
  ExpectNear(Run1("Exp", {sp}), {6}, {INFINITY, 0, NAN, INFINITY, 0, 1});
  ExpectNear(Run1("Tanh", {sp}), {6}, {1, -1, NAN, 1, -1, 0});
  ExpectNear(Run1("Erf", {sp}), {6}, {1, -1, NAN, 1, -1, 0});
  ExpectNear(Run1("Sigmoid", {sp}), {6}, {1, 0, NAN, 1, 0, 0.5});
  // Tiny arguments keep their relative accuracy.
  Tensor tiny = Tensor::FromVector<float>({1e-20f, -3e-8f, 1e-4f}, {3});
  ExpectNear(Run1("Tanh", {tiny}), {3}, {1e-20, -3e-8, std::tanh(1e-4)}, 0, 1e-6);
  ExpectNear(Run1("Erf", {tiny}), {3}, {std::erf(1e-20), std::erf(-3e-8), std::erf(1e-4)}, 0, 1e-6);
}

// ExpArray's wide build (8 lanes where the process ISA has AVX2) gives simd::Exp's bits (4 lanes)
// for every element: special values, the clamp bounds, denormal results, and a tail.
TEST(ElementwiseUnary, ExpArrayEqualsTheFourLaneExpBitForBit) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-100.f, 100.f);
  std::vector<float> x(1003);
  for (auto& v : x) v = u(rng);
  const float specials[] = {INFINITY, -INFINITY, std::nanf(""), 88.7f, 89.f, 89.5f, -87.3f, -87.3365478515625f,
                            -87.5f, -103.f, 0.f, -0.f, 1e-30f, -1e-30f, 0.5f, -0.5f, 1.f};
  std::copy(std::begin(specials), std::end(specials), x.begin());
  std::vector<float> y(x.size());
  rt::ew::ExpArray(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = rt::ew::FastExp(x[i]);
    ASSERT_EQ(std::memcmp(&want, &y[i], sizeof(float)), 0) << "x = " << x[i] << " at " << i;
  }
}

TEST(ElementwiseUnary, Float16ComputesInFloat) {
  Tensor x = Half({-2.f, -0.5f, 0.f, 1.5f, 4.f}, {5});
  Tensor y = Run1("Relu", {x});
  ASSERT_EQ(y.dtype(), DType::kFloat16);
  ExpectNear(y, {5}, {0, 0, 0, 1.5, 4});
  Tensor s = Run1("Add", {x, Half({1.f}, {1})});
  ASSERT_EQ(s.dtype(), DType::kFloat16);
  ExpectNear(s, {5}, {-1, 0.5, 1, 2.5, 5});
  Tensor nan = Run1("IsNaN", {Half({std::nanf(""), 1.f}, {2})});
  ASSERT_EQ(nan.dtype(), DType::kBool);
  EXPECT_EQ(nan.ToInt64Vector(), (std::vector<int64_t>{1, 0}));
}

TEST(ElementwiseHalf, VectorConversionsAreBitExact) {
  using rt::ew::FloatToHalfN;
  using rt::ew::HalfToFloatN;
  std::vector<uint16_t> hs(65536);
  for (int i = 0; i < 65536; ++i) hs[i] = static_cast<uint16_t>(i);
  std::vector<float> fs(65536);
  HalfToFloatN(hs.data(), fs.data(), 65536, DType::kFloat16);
  for (int i = 0; i < 65536; ++i) {
    const float want = HalfToFloat(static_cast<uint16_t>(i));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(fs[i])) << i;
    } else {
      EXPECT_EQ(std::memcmp(&want, &fs[i], 4), 0) << "half bits " << i;
    }
  }
  // Every half value, the midpoints between neighbours (ties) and their float neighbours, and
  // random bit patterns (NaN, inf, subnormals, overflow).
  std::vector<float> in(fs.begin(), fs.end());
  for (int i = 0; i < 0x7bff; ++i) {
    const float a = fs[i], b = fs[i + 1], mid = (a + b) / 2;
    in.insert(in.end(), {mid, -mid, std::nextafter(mid, a), std::nextafter(mid, b)});
  }
  std::mt19937 gen(3);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t u = gen();
    float f;
    std::memcpy(&f, &u, 4);
    in.push_back(f);
  }
  std::vector<uint16_t> h(in.size()), b(in.size());
  FloatToHalfN(in.data(), h.data(), static_cast<int64_t>(in.size()), DType::kFloat16);
  FloatToHalfN(in.data(), b.data(), static_cast<int64_t>(in.size()), DType::kBFloat16);
  int bad = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (h[i] != FloatToHalf(in[i]) || b[i] != FloatToBFloat16(in[i])) ++bad;
  }
  EXPECT_EQ(bad, 0);
}

TEST(ElementwiseCompare, ProducesBool) {
  Tensor a = Tensor::FromVector<int64_t>({1, 2, 3}, {3});
  Tensor b = Tensor::FromVector<int64_t>({2}, {1});
  Tensor y = Run1("Less", {a, b});
  ASSERT_EQ(y.dtype(), DType::kBool);
  EXPECT_EQ(y.ToInt64Vector(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(Run1("GreaterOrEqual", {a, b}).ToInt64Vector(), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(Run1("Equal", {a, b}).ToInt64Vector(), (std::vector<int64_t>{0, 1, 0}));
  Tensor t = Tensor::FromVector<bool>({true, true, false, false}, {4});
  Tensor f = Tensor::FromVector<bool>({true, false, true, false}, {4});
  EXPECT_EQ(Run1("And", {t, f}).ToInt64Vector(), (std::vector<int64_t>{1, 0, 0, 0}));
  EXPECT_EQ(Run1("Or", {t, f}).ToInt64Vector(), (std::vector<int64_t>{1, 1, 1, 0}));
  EXPECT_EQ(Run1("Xor", {t, f}).ToInt64Vector(), (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_EQ(Run1("Not", {t}).ToInt64Vector(), (std::vector<int64_t>{0, 0, 1, 1}));
  // IsInf flags.
  Tensor inf = Tensor::FromVector<float>({INFINITY, -INFINITY, 1.f}, {3});
  EXPECT_EQ(Run1("IsInf", {inf}, {I("detect_positive", 0)}).ToInt64Vector(), (std::vector<int64_t>{0, 1, 0}));
}

TEST(ElementwiseBits, ShiftsAndBitwise) {
  Tensor x = Tensor::FromVector<uint8_t>({16, 4, 1}, {3});
  Tensor s = Tensor::FromVector<uint8_t>({1, 2, 9}, {3});
  EXPECT_EQ(Run1("BitShift", {x, s}, {S("direction", "RIGHT")}, 11).ToInt64Vector(), (std::vector<int64_t>{8, 1, 0}));
  EXPECT_EQ(Run1("BitShift", {x, s}, {S("direction", "LEFT")}, 11).ToInt64Vector(), (std::vector<int64_t>{32, 16, 0}));
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("BitShift", {x, s}, &out, {S("direction", "UP")}, 11).ok());
  Tensor a = Tensor::FromVector<int32_t>({12, -1}, {2});
  Tensor b = Tensor::FromVector<int32_t>({10, 5}, {2});
  EXPECT_EQ(Run1("BitwiseAnd", {a, b}, {}, 18).ToInt64Vector(), (std::vector<int64_t>{8, 5}));
  EXPECT_EQ(Run1("BitwiseOr", {a, b}, {}, 18).ToInt64Vector(), (std::vector<int64_t>{14, -1}));
  EXPECT_EQ(Run1("BitwiseXor", {a, b}, {}, 18).ToInt64Vector(), (std::vector<int64_t>{6, -6}));
  EXPECT_EQ(Run1("BitwiseNot", {a}, {}, 18).ToInt64Vector(), (std::vector<int64_t>{-13, 0}));
}

TEST(ElementwiseVariadic, BroadcastsAcrossAllInputs) {
  // The third input is the largest: the result must have its shape.
  Tensor a = Tensor::FromVector<float>({1, 2, 3}, {3});
  Tensor b = Tensor::FromVector<float>({10}, {1});
  Tensor c = Tensor::FromVector<float>({100, 200, 300, 400, 500, 600}, {2, 3});
  ExpectNear(Run1("Sum", {a, b, c}), {2, 3}, {111, 212, 313, 411, 512, 613});
  ExpectNear(Run1("Mean", {a, b, c}), {2, 3}, {37, 212.0 / 3, 313.0 / 3, 137, 512.0 / 3, 613.0 / 3});
  ExpectNear(Run1("Max", {c, a, b}), {2, 3}, {100, 200, 300, 400, 500, 600});
  ExpectNear(Run1("Min", {a, c, b}), {2, 3}, {1, 2, 3, 1, 2, 3});
  ExpectNear(Run1("Sum", {a}), {3}, {1, 2, 3});
  EXPECT_EQ(Run1("Max", {Tensor::FromVector<uint32_t>({1, 9}, {2}), Tensor::FromVector<uint32_t>({5, 2}, {2})}).ToInt64Vector(),
            (std::vector<int64_t>{5, 9}));
  Tensor h = Run1("Min", {Half({1.f, 4.f}, {2}), Half({3.f, 2.f}, {2})});
  ASSERT_EQ(h.dtype(), DType::kFloat16);
  ExpectNear(h, {2}, {1, 2});
}

TEST(ElementwiseClip, AttributesBeforeOpset11InputsAfter) {
  Tensor x = Tensor::FromVector<float>({-5, -1, 0, 1, 5}, {5});
  ExpectNear(Run1("Clip", {x}, {F("min", -2.f), F("max", 2.f)}, 6), {5}, {-2, -1, 0, 1, 2});
  ExpectNear(Run1("Clip", {x}, {}, 6), {5}, {-5, -1, 0, 1, 5});
  ExpectNear(Run1("Clip", {x, Tensor::Scalar<float>(-1.5f), Tensor::Scalar<float>(0.5f)}, {}, 13), {5},
             {-1.5, -1, 0, 0.5, 0.5});
  ExpectNear(Run1("Clip", {x, Tensor(), Tensor::Scalar<float>(0.5f)}, {}, 13), {5}, {-5, -1, 0, 0.5, 0.5});
  Tensor i8 = Tensor::FromVector<int8_t>({-128, 0, 127}, {3});
  EXPECT_EQ(Run1("Clip", {i8, Tensor::Scalar<int8_t>(-3)}, {}, 13).ToInt64Vector(), (std::vector<int64_t>{-3, 0, 127}));
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("Clip", {x, Tensor::FromVector<float>({1, 2}, {2})}, &out, {}, 13).ok());
}

TEST(ElementwiseWhere, BroadcastsAllThree) {
  Tensor c = Tensor::FromVector<bool>({true, false}, {2, 1});
  Tensor x = Tensor::FromVector<int64_t>({1, 2, 3}, {3});
  Tensor y = Tensor::Scalar<int64_t>(-1);
  Tensor r = Run1("Where", {c, x, y}, {}, 16);
  ASSERT_EQ(r.shape(), (Shape{2, 3}));
  EXPECT_EQ(r.ToInt64Vector(), (std::vector<int64_t>{1, 2, 3, -1, -1, -1}));
  Tensor big_c(DType::kBool, {300, 257});
  for (int64_t i = 0; i < big_c.numel(); ++i) big_c.data<bool>()[i] = (i % 3) == 0;
  const Tensor a = Rand({257}, 3), b = Rand({300, 1}, 4);
  Tensor w = Run1("Where", {big_c, a, b}, {}, 16);
  ASSERT_EQ(w.shape(), (Shape{300, 257}));
  for (int64_t i = 0; i < w.numel(); i += 97) {
    const float want = (i % 3) == 0 ? a.data<float>()[i % 257] : b.data<float>()[i / 257];
    EXPECT_EQ(w.data<float>()[i], want) << i;
  }
}

TEST(ElementwiseCast, NumericConversions) {
  Tensor f = Tensor::FromVector<float>({1.7f, -1.7f, 300.f, std::nanf(""), 0.f}, {5});
  EXPECT_EQ(Run1("Cast", {f}, {I("to", static_cast<int>(DType::kInt32))}).ToInt64Vector(),
            (std::vector<int64_t>{1, -1, 300, 0, 0}));
  EXPECT_EQ(Run1("Cast", {f}, {I("to", static_cast<int>(DType::kBool))}).ToInt64Vector(),
            (std::vector<int64_t>{1, 1, 1, 1, 0}));
  Tensor h = Run1("Cast", {f}, {I("to", static_cast<int>(DType::kFloat16))});
  ASSERT_EQ(h.dtype(), DType::kFloat16);
  EXPECT_EQ(h.data<uint16_t>()[0], FloatToHalf(1.7f));
  // double -> float16 rounds once (1 + 2^-11 + 2^-40 must round up, not to even).
  Tensor d = Tensor::FromVector<double>({1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)}, {1});
  Tensor dh = Run1("Cast", {d}, {I("to", static_cast<int>(DType::kFloat16))});
  EXPECT_EQ(dh.data<uint16_t>()[0], 0x3c01);
  // float16 -> int64 and bool -> float.
  EXPECT_EQ(Run1("Cast", {Half({-3.5f, 65504.f}, {2})}, {I("to", static_cast<int>(DType::kInt64))}).ToInt64Vector(),
            (std::vector<int64_t>{-3, 65504}));
  ExpectNear(Run1("Cast", {Tensor::FromVector<bool>({true, false}, {2})}, {I("to", 1)}), {2}, {1, 0});
  // int64 -> uint8 wraps; uint64 max -> float.
  EXPECT_EQ(Run1("Cast", {Tensor::FromVector<int64_t>({257, -1}, {2})}, {I("to", static_cast<int>(DType::kUInt8))})
                .ToInt64Vector(),
            (std::vector<int64_t>{1, 255}));
  // CastLike takes the target type from input #1.
  Tensor cl = Run1("CastLike", {f, Tensor::FromVector<double>({0}, {1})}, {}, 15);
  ASSERT_EQ(cl.dtype(), DType::kFloat64);
  EXPECT_DOUBLE_EQ(cl.data<double>()[0], static_cast<double>(1.7f));
  // Unsupported targets are rejected when the session is created.
  std::vector<Tensor> out;
  Status s = RunOp("Cast", {f}, &out, {I("to", static_cast<int>(DType::kString))});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("string"), std::string::npos);
  EXPECT_FALSE(RunOp("Cast", {f}, &out, {I("to", 17)}).ok());  // float8
}

TEST(ElementwiseLegacy, Opset6BroadcastAxisAndPReluChannels) {
  Tensor a = Rand({2, 3, 4}, 11);
  Tensor b = Tensor::FromVector<float>({10, 20, 30}, {3});
  Tensor y = Run1("Add", {a, b}, {I("broadcast", 1), I("axis", 1)}, 6);
  const auto va = Values(a);
  std::vector<double> want(va.size());
  for (size_t i = 0; i < va.size(); ++i) want[i] = va[i] + 10.0 * (1 + (i / 4) % 3);
  ExpectNear(y, {2, 3, 4}, want);
  Tensor slope = Tensor::FromVector<float>({0.1f, 0.2f, 0.3f}, {3});
  Tensor p = Run1("PRelu", {a, slope}, {}, 6);
  for (size_t i = 0; i < va.size(); ++i) want[i] = va[i] < 0 ? va[i] * (0.1 * (1 + (i / 4) % 3)) : va[i];
  ExpectNear(p, {2, 3, 4}, want);
  // Opset 9: numpy broadcasting; slope must broadcast to X.
  std::vector<Tensor> out;
  EXPECT_FALSE(RunOp("PRelu", {a, slope}, &out, {}, 9).ok());
  EXPECT_TRUE(RunOp("PRelu", {a, Tensor::FromVector<float>({0.1f, 0.2f, 0.3f}, {3, 1})}, &out, {}, 9).ok());
}

}  // namespace
}  // namespace quantkit
