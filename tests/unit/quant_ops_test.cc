// Quantization ops and the normative integer arithmetic (kernels/ref/quantize.h): exact integer
// expectations, including rounding ties (half to even) and saturation.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "runtime/kernels/ref/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using testing::MakeModel;
using testing::MakeNode;
using testing::IntAttr;
using testing::IntsAttr;
using testing::MakeValueInfo;
namespace q = rt::quant;

// DynamicQuantizeLinear's range, vectorized, equals the scalar definition (finite values only,
// the range holding 0) for every length around the vector width, with NaN, +-inf and -0 anywhere.
TEST(DynamicParams, VectorizedRangeEqualsTheDefinition) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.f, 3.f);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -0.f, 1e30f, -1e30f};
  for (int64_t n = 0; n <= 40; ++n) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(static_cast<size_t>(n));
      for (auto& v : x) v = rng() % 5 == 0 ? specials[rng() % 6] : normal(rng) + (trial % 2 ? 4.f : 0.f);
      float lo = 0, hi = 0;
      for (float v : x) {
        if (!std::isfinite(v)) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      const q::DynamicParams p = q::ComputeDynamicParams(x.data(), n);
      const float scale = (hi - lo) / 255.0f;
      ASSERT_EQ(p.scale, scale) << "n=" << n;
      if (scale != 0) {
        ASSERT_EQ(p.zero_point, q::SaturateInt<uint8_t>(q::RoundedToInt64(q::RoundHalfToEven(0.0f - lo / scale))));
      }
    }
  }
}


ValueInfo In(const std::string& name, const Tensor& t) {
  return MakeValueInfo(name, t.dtype(), t.shape());
}

// One-node model over the given named inputs (absent optional inputs: empty names).
struct OneOp {
  OneOp(std::string op_type, std::vector<std::pair<std::string, Tensor>> ins, size_t outs = 1,
        std::vector<Attribute> attributes = {}, int64_t opset_version = 13)
      : op(std::move(op_type)), inputs(std::move(ins)), num_outputs(outs), attrs(std::move(attributes)),
        opset(opset_version) {}
  std::string op;
  std::vector<std::pair<std::string, Tensor>> inputs;  // name "" = absent optional input
  size_t num_outputs = 1;
  std::vector<Attribute> attrs;
  int64_t opset = 13;
  std::vector<std::string> constants;  // inputs given as initializers (pre-packed by the kernels)

  StatusOr<std::vector<Tensor>> Run() const {
    Graph g;
    std::vector<std::string> in_names, out_names;
    std::vector<std::pair<std::string, Tensor>> feeds;
    for (const auto& [name, t] : inputs) {
      in_names.push_back(name);
      if (name.empty()) continue;
      if (std::find(constants.begin(), constants.end(), name) != constants.end()) {
        g.AddInitializer(name, t);
        g.initializer_order.push_back(name);
        continue;
      }
      g.inputs.push_back(In(name, t));
      feeds.emplace_back(name, t);
    }
    for (size_t i = 0; i < num_outputs; ++i) {
      out_names.push_back(fmt::format("y{}", i));
      ValueInfo vi;
      vi.name = out_names.back();
      g.outputs.push_back(vi);
    }
    Node n = MakeNode(op, in_names, out_names);
    n.attributes = attrs;
    g.nodes.push_back(n);
    SessionOptions opts;
    opts.optimize = false;
    opts.threads = 2;
    QK_ASSIGN_OR_RETURN(auto session, Session::Create(MakeModel(std::move(g), opset), opts));
    std::vector<Tensor> out;
    QK_RETURN_IF_ERROR(session->Run(feeds, &out));
    return out;
  }
};

template <typename T>
std::vector<T> Values(const Tensor& t) {
  EXPECT_EQ(t.dtype(), DTypeOf<T>::value);
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

// ---------------------------------------------------------------------------------------------
// Primitives

TEST(QuantArithmetic, RoundsHalfToEven) {
  EXPECT_EQ(q::RoundHalfToEven(2.5f), 2.0f);
  EXPECT_EQ(q::RoundHalfToEven(-2.5f), -2.0f);
  EXPECT_EQ(q::RoundHalfToEven(3.5f), 4.0f);
  EXPECT_EQ(q::RoundHalfToEven(-3.5f), -4.0f);
  EXPECT_EQ(q::RoundHalfToEven(0.5f), 0.0f);
  EXPECT_EQ(q::RoundHalfToEven(1.5f), 2.0f);
  EXPECT_EQ(q::RoundHalfToEven(2.5000002f), 3.0f);
  EXPECT_EQ(q::RoundHalfToEven(-0.49999997f), -0.0f);
}

TEST(QuantArithmetic, QuantizeValueRoundsAndSaturates) {
  EXPECT_EQ(q::QuantizeValue<uint8_t>(5.0f, 2.0f, 0), 2);     // 2.5 -> 2
  EXPECT_EQ(q::QuantizeValue<uint8_t>(7.0f, 2.0f, 0), 4);     // 3.5 -> 4
  EXPECT_EQ(q::QuantizeValue<int8_t>(-5.0f, 2.0f, 0), -2);    // -2.5 -> -2
  EXPECT_EQ(q::QuantizeValue<int8_t>(-7.0f, 2.0f, 0), -4);    // -3.5 -> -4
  EXPECT_EQ(q::QuantizeValue<uint8_t>(-5.0f, 2.0f, 0), 0);    // saturates low
  EXPECT_EQ(q::QuantizeValue<uint8_t>(1000.0f, 2.0f, 128), 255);
  EXPECT_EQ(q::QuantizeValue<uint8_t>(-254.0f, 2.0f, 128), 1);
  EXPECT_EQ(q::QuantizeValue<int8_t>(1e30f, 1.0f, 0), 127);
  EXPECT_EQ(q::QuantizeValue<int8_t>(-1e30f, 1.0f, 0), -128);
  EXPECT_EQ(q::QuantizeValue<int8_t>(std::numeric_limits<float>::infinity(), 1.0f, 3), 127);
  EXPECT_EQ(q::QuantizeValue<uint8_t>(std::nanf(""), 1.0f, 7), 7);  // NaN -> zero point
  EXPECT_EQ(q::QuantizeValue<int8_t>(10.0f, 4.0f, -1), 1);   // 2.5 -> 2, + (-1)
  EXPECT_EQ(q::QuantizeValue<int8_t>(126.0f, 1.0f, 5), 127);  // 131 saturates
}

TEST(QuantArithmetic, DequantizeValue) {
  EXPECT_EQ(q::DequantizeValue(255, 128, 0.5f), 63.5f);
  EXPECT_EQ(q::DequantizeValue(-128, 0, 0.25f), -32.0f);
  EXPECT_EQ(q::DequantizeValue(std::numeric_limits<int32_t>::min(), 0, 1.0f), -2147483648.0f);
}

TEST(QuantArithmetic, RequantizeRoundsHalfToEvenThenAddsZeroPoint) {
  EXPECT_EQ(q::Requantize<uint8_t>(5, 0.5f, 0), 2);     // 2.5 -> 2
  EXPECT_EQ(q::Requantize<uint8_t>(7, 0.5f, 0), 4);     // 3.5 -> 4
  EXPECT_EQ(q::Requantize<uint8_t>(-5, 0.5f, 10), 8);   // -2.5 -> -2, + 10
  EXPECT_EQ(q::Requantize<int8_t>(-5, 0.5f, 0), -2);
  EXPECT_EQ(q::Requantize<int8_t>(-7, 0.5f, 0), -4);
  EXPECT_EQ(q::Requantize<uint8_t>(1000, 1.0f, 0), 255);
  EXPECT_EQ(q::Requantize<uint8_t>(-1000, 1.0f, 0), 0);
  EXPECT_EQ(q::Requantize<int8_t>(std::numeric_limits<int32_t>::max(), 1.0f, 0), 127);
  EXPECT_EQ(q::Requantize<int8_t>(std::numeric_limits<int32_t>::min(), 1.0f, 0), -128);
  EXPECT_EQ(q::Requantize<uint8_t>(100, 1.0f, 200), 255);  // 300 saturates after the zero point
  EXPECT_FLOAT_EQ(q::RequantizeMultiplier(0.5f, 0.25f, 0.125f), 1.0f);
}

// The vectorized bulk loops must agree bit for bit with the scalar definitions.
TEST(QuantArithmetic, BulkSpansMatchScalarDefinitions) {
  std::vector<float> xs = {0.0f, -0.0f, 0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 126.5f, 127.5f, -128.5f, 254.5f,
                           255.5f, 1e9f, -1e9f, 3e38f, -3e38f, std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(), std::nanf(""), 4194303.5f, 8388609.0f,
                           1e-30f, -7.4999995f};
  for (int i = -3000; i <= 3000; ++i) xs.push_back(static_cast<float>(i) * 0.25f);  // many exact ties
  for (int i = 0; i < 2000; ++i) xs.push_back(std::ldexp(static_cast<float>(i * 7919 % 1000) - 500.0f, i % 40 - 20));
  for (float scale : {1.0f, 0.5f, 3.0f, 0.0123f, 1e-20f, 0.0f}) {
    for (int32_t zp : {0, 1, 128, 255}) {
      std::vector<uint8_t> u(xs.size());
      q::QuantizeSpan<uint8_t>(xs.data(), static_cast<int64_t>(xs.size()), scale, zp, u.data());
      for (size_t i = 0; i < xs.size(); ++i) {
        ASSERT_EQ(u[i], q::QuantizeValue<uint8_t>(xs[i], scale, zp)) << xs[i] << " / " << scale << " + " << zp;
      }
    }
    for (int32_t zp : {-128, -1, 0, 5, 127}) {
      std::vector<int8_t> v(xs.size());
      q::QuantizeSpan<int8_t>(xs.data(), static_cast<int64_t>(xs.size()), scale, zp, v.data());
      for (size_t i = 0; i < xs.size(); ++i) {
        ASSERT_EQ(v[i], q::QuantizeValue<int8_t>(xs[i], scale, zp)) << xs[i] << " / " << scale << " + " << zp;
      }
    }
  }
  std::vector<int32_t> accs = {0, 1, -1, 5, -5, 7, -7, 255, 256, -129, std::numeric_limits<int32_t>::max(),
                               std::numeric_limits<int32_t>::min(), 16777217, -16777217};
  for (int i = -5000; i <= 5000; i += 3) accs.push_back(i);
  for (float mult : {0.5f, 0.25f, 1.0f, 0.00390625f, 0.0173f, 3.0f}) {
    for (int32_t zp : {-128, 0, 3, 127}) {
      std::vector<int8_t> v(accs.size());
      q::RequantizeSpan<int8_t>(accs.data(), static_cast<int64_t>(accs.size()), mult, zp, v.data());
      for (size_t i = 0; i < accs.size(); ++i) ASSERT_EQ(v[i], q::Requantize<int8_t>(accs[i], mult, zp)) << accs[i];
    }
    std::vector<uint8_t> u(accs.size());
    q::RequantizeSpan<uint8_t>(accs.data(), static_cast<int64_t>(accs.size()), mult, 200, u.data());
    for (size_t i = 0; i < accs.size(); ++i) ASSERT_EQ(u[i], q::Requantize<uint8_t>(accs[i], mult, 200)) << accs[i];
  }
}

TEST(QuantArithmetic, DynamicParamsFollowOnnx) {
  const float x[] = {0.0f, 2.0f, -3.0f, -2.5f, 1.34f, 0.5f};
  auto p = q::ComputeDynamicParams(x, 6);
  EXPECT_FLOAT_EQ(p.scale, 5.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 153);  // round(3 / (5/255)) = round(153.0)
  const float pos[] = {1.0f, 2.0f};  // range widened to include 0: [0, 2]
  p = q::ComputeDynamicParams(pos, 2);
  EXPECT_FLOAT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  const float zeros[] = {0.0f, 0.0f};
  p = q::ComputeDynamicParams(zeros, 2);
  EXPECT_EQ(p.scale, 0.0f);
  EXPECT_EQ(p.zero_point, 0);
}

TEST(QuantArithmetic, IntegerGemmMatchesNaive) {
  const int64_t M = 5, N = 600, K = 300;  // crosses the N and K blocking boundaries
  std::vector<q::QOperand> A(M * K), B(K * N);
  for (int64_t i = 0; i < M * K; ++i) A[i] = static_cast<q::QOperand>((i * 37) % 511 - 255);
  for (int64_t i = 0; i < K * N; ++i) B[i] = static_cast<q::QOperand>((i * 91) % 509 - 254);
  std::vector<int32_t> C(M * N, -1);
  q::IntegerGemm(M, N, K, A.data(), K, B.data(), N, C.data(), N);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      int64_t ref = 0;
      for (int64_t k = 0; k < K; ++k) ref += int64_t{A[m * K + k]} * B[k * N + n];
      ASSERT_EQ(C[m * N + n], ref) << m << "," << n;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear

TEST(QuantizeLinear, PerTensorUint8TiesAndSaturation) {
  OneOp op{"QuantizeLinear",
           {{"x", Tensor::FromVector<float>({0, 2, 3, 5, -5, 1000, -1000, -254}, {8})},
            {"s", Tensor::Scalar<float>(2.0f)},
            {"z", Tensor::Scalar<uint8_t>(128)}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  // 3/2 = 1.5 -> 2; 5/2 = 2.5 -> 2; -5/2 = -2.5 -> -2.
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{128, 129, 130, 130, 126, 255, 0, 1}));
}

TEST(QuantizeLinear, DefaultsToUint8WithoutZeroPoint) {
  OneOp op{"QuantizeLinear", {{"x", Tensor::FromVector<float>({-1, 1, 2.5f, 3.5f, 300}, {5})},
                              {"s", Tensor::Scalar<float>(1.0f)}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{0, 1, 2, 4, 255}));
}

TEST(QuantizeLinear, PerAxisInt8) {
  // x [2, 3] quantized along axis 1 with three scales / zero points.
  OneOp op{"QuantizeLinear",
           {{"x", Tensor::FromVector<float>({1, 5, -9, 2.5f, -200, 300}, {2, 3})},
            {"s", Tensor::FromVector<float>({1, 2, 3}, {3})},
            {"z", Tensor::FromVector<int8_t>({0, -1, 10}, {3})}},
           1,
           {IntAttr("axis", -1)}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  // col0: 1 -> 1; 2.5 -> 2.  col1: 5/2=2.5 -> 2, -1 -> 1; -200/2=-100-1=-101.  col2: -9/3=-3+10=7; 100+10 -> 110
  EXPECT_EQ(Values<int8_t>((*out)[0]), (std::vector<int8_t>{1, 1, 7, 2, -101, 110}));
}

TEST(QuantizeLinear, RejectsScaleOfWrongLength) {
  OneOp op{"QuantizeLinear",
           {{"x", Tensor::FromVector<float>({1, 2, 3, 4}, {2, 2})},
            {"s", Tensor::FromVector<float>({1, 2, 3}, {3})},
            {"z", Tensor::FromVector<uint8_t>({0, 0, 0}, {3})}}};
  auto out = op.Run();
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("per-axis"), std::string::npos) << out.status().message();
}

TEST(DequantizeLinear, PerTensorAndInt32) {
  OneOp op{"DequantizeLinear", {{"x", Tensor::FromVector<uint8_t>({0, 128, 255}, {3})},
                                {"s", Tensor::Scalar<float>(0.5f)},
                                {"z", Tensor::Scalar<uint8_t>(128)}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{-64.0f, 0.0f, 63.5f}));

  OneOp op32{"DequantizeLinear", {{"x", Tensor::FromVector<int32_t>({-1000000, 7}, {2})},
                                  {"s", Tensor::Scalar<float>(0.25f)}}};
  out = op32.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{-250000.0f, 1.75f}));
}

TEST(DequantizeLinear, PerAxisInt8AndZeroPointTypeCheck) {
  OneOp op{"DequantizeLinear",
           {{"x", Tensor::FromVector<int8_t>({-128, 127, 0, 1}, {2, 2})},
            {"s", Tensor::FromVector<float>({1, 0.5f}, {2})},
            {"z", Tensor::FromVector<int8_t>({0, -2}, {2})}},
           1,
           {IntAttr("axis", 0)}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<float>((*out)[0]), (std::vector<float>{-128.0f, 127.0f, 1.0f, 1.5f}));

  OneOp bad{"DequantizeLinear", {{"x", Tensor::FromVector<int8_t>({1}, {1})},
                                 {"s", Tensor::Scalar<float>(1.0f)},
                                 {"z", Tensor::Scalar<uint8_t>(0)}}};
  EXPECT_FALSE(bad.Run().ok());
}

TEST(DynamicQuantizeLinear, MatchesOnnxExampleAndTies) {
  OneOp op{"DynamicQuantizeLinear", {{"x", Tensor::FromVector<float>({0, 2, -3, -2.5f, 1.34f, 0.5f}, {6})}}, 3};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{153, 255, 0, 26, 221, 179}));
  EXPECT_FLOAT_EQ((*out)[1].data<float>()[0], 5.0f / 255.0f);
  EXPECT_EQ((*out)[2].data<uint8_t>()[0], 153);
  EXPECT_EQ((*out)[1].rank(), 0u);

  // Range [0, 255] gives scale exactly 1: 2.5 -> 2, 3.5 -> 4 (half to even).
  OneOp ties{"DynamicQuantizeLinear", {{"x", Tensor::FromVector<float>({0, 2.5f, 3.5f, 255}, {2, 2})}}, 3};
  out = ties.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{0, 2, 4, 255}));
  EXPECT_EQ((*out)[1].data<float>()[0], 1.0f);
  EXPECT_EQ((*out)[2].data<uint8_t>()[0], 0);

  OneOp zeros{"DynamicQuantizeLinear", {{"x", Tensor::FromVector<float>({0, 0, 0}, {3})}}, 3};
  out = zeros.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{0, 0, 0}));
  EXPECT_EQ((*out)[1].data<float>()[0], 0.0f);
}

// ---------------------------------------------------------------------------------------------
// MatMulInteger / QLinearMatMul

template <typename TA, typename TB>
std::vector<int32_t> NaiveMatMul(const std::vector<TA>& a, const std::vector<TB>& b, int64_t M, int64_t K, int64_t N,
                                 const std::vector<int32_t>& za, const std::vector<int32_t>& zb) {
  std::vector<int32_t> c(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (int32_t{a[m * K + k]} - za[za.size() == 1 ? 0 : m]) * (int32_t{b[k * N + n]} - zb[zb.size() == 1 ? 0 : n]);
      c[m * N + n] = s;
    }
  return c;
}

TEST(MatMulInteger, OnnxExample) {
  OneOp op{"MatMulInteger",
           {{"A", Tensor::FromVector<uint8_t>({11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0}, {4, 3})},
            {"B", Tensor::FromVector<uint8_t>({1, 4, 2, 5, 3, 6}, {3, 2})},
            {"za", Tensor::FromVector<uint8_t>({12}, {1})},
            {"zb", Tensor::FromVector<uint8_t>({0}, {1})}},
           1, {}, 10};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]), (std::vector<int32_t>{-38, -83, -44, -98, -50, -113, -56, -128}));
}

TEST(MatMulInteger, Int8TimesUint8PerRowPerColumnZeroPoints) {
  const std::vector<int8_t> a = {-128, 127, 5, -7, 0, 1};  // 2x3
  const std::vector<uint8_t> b32 = {255, 0, 1, 2, 128, 200};
  OneOp op{"MatMulInteger",
           {{"A", Tensor::FromVector<int8_t>(a, {2, 3})},
            {"B", Tensor::FromVector<uint8_t>(b32, {3, 2})},
            {"za", Tensor::FromVector<int8_t>({-3, 4}, {2})},
            {"zb", Tensor::FromVector<uint8_t>({128, 1}, {2})}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]), NaiveMatMul(a, b32, 2, 3, 2, {-3, 4}, {128, 1}));
  op.constants = {"B", "zb"};  // constant B and zero point: converted once at session creation
  out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]), NaiveMatMul(a, b32, 2, 3, 2, {-3, 4}, {128, 1}));
}

TEST(MatMulInteger, BatchedBroadcastAndVector) {
  // A [2, 2, 3] x B [3, 2] -> [2, 2, 2]; A [3] x B [3, 2] -> [2].
  std::vector<uint8_t> a(12), b = {1, 2, 3, 4, 5, 6};
  for (int i = 0; i < 12; ++i) a[i] = static_cast<uint8_t>(i * 20);
  OneOp op{"MatMulInteger", {{"A", Tensor::FromVector<uint8_t>(a, {2, 2, 3})},
                             {"B", Tensor::FromVector<uint8_t>(b, {3, 2})},
                             {"za", Tensor::Scalar<uint8_t>(100)}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ((*out)[0].shape(), (Shape{2, 2, 2}));
  std::vector<int32_t> want = NaiveMatMul(std::vector<uint8_t>(a.begin(), a.begin() + 6), b, 2, 3, 2, {100}, {0});
  auto second = NaiveMatMul(std::vector<uint8_t>(a.begin() + 6, a.end()), b, 2, 3, 2, {100}, {0});
  want.insert(want.end(), second.begin(), second.end());
  EXPECT_EQ(Values<int32_t>((*out)[0]), want);

  OneOp vec{"MatMulInteger", {{"A", Tensor::FromVector<uint8_t>({1, 2, 3}, {3})},
                              {"B", Tensor::FromVector<uint8_t>(b, {3, 2})}}};
  out = vec.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ((*out)[0].shape(), (Shape{2}));
  EXPECT_EQ(Values<int32_t>((*out)[0]), (std::vector<int32_t>{22, 28}));

  OneOp bad{"MatMulInteger", {{"A", Tensor::FromVector<uint8_t>({1, 2}, {1, 2})},
                              {"B", Tensor::FromVector<uint8_t>(b, {3, 2})}}};
  EXPECT_FALSE(bad.Run().ok());
}

TEST(QLinearMatMul, OnnxExample2D) {
  OneOp op{"QLinearMatMul",
           {{"a", Tensor::FromVector<uint8_t>({208, 236, 0, 238, 3, 214, 255, 29}, {2, 4})},
            {"as", Tensor::FromVector<float>({0.0066f}, {1})},
            {"az", Tensor::FromVector<uint8_t>({113}, {1})},
            {"b", Tensor::FromVector<uint8_t>({152, 51, 244, 60, 26, 255, 0, 127, 246, 127, 254, 247}, {4, 3})},
            {"bs", Tensor::FromVector<float>({0.00705f}, {1})},
            {"bz", Tensor::FromVector<uint8_t>({114}, {1})},
            {"ys", Tensor::FromVector<float>({0.0107f}, {1})},
            {"yz", Tensor::FromVector<uint8_t>({118}, {1})}},
           1, {}, 10};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{168, 115, 255, 1, 66, 151}));
  op.constants = {"b", "bz", "bs"};
  out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]), (std::vector<uint8_t>{168, 115, 255, 1, 66, 151}));
}

TEST(QLinearMatMul, RequantizationTiesAndSaturationInt8) {
  // a [1, 4] int8, b [4, 1] int8 -> acc; multiplier 1*1/2 = 0.5.
  auto run = [](std::vector<int8_t> a, std::vector<int8_t> b, int8_t yz) {
    OneOp op{"QLinearMatMul",
             {{"a", Tensor::FromVector<int8_t>(a, {1, static_cast<int64_t>(a.size())})},
              {"as", Tensor::Scalar<float>(1.0f)},
              {"az", Tensor::Scalar<int8_t>(0)},
              {"b", Tensor::FromVector<int8_t>(b, {static_cast<int64_t>(b.size()), 1})},
              {"bs", Tensor::Scalar<float>(1.0f)},
              {"bz", Tensor::Scalar<int8_t>(0)},
              {"ys", Tensor::Scalar<float>(2.0f)},
              {"yz", Tensor::Scalar<int8_t>(yz)}}};
    auto out = op.Run();
    EXPECT_TRUE(out.ok()) << out.status().message();
    return out.ok() ? static_cast<int>((*out)[0].data<int8_t>()[0]) : 9999;
  };
  EXPECT_EQ(run({5}, {1}, 0), 2);       // 2.5 -> 2
  EXPECT_EQ(run({7}, {1}, 0), 4);       // 3.5 -> 4
  EXPECT_EQ(run({-5}, {1}, 0), -2);     // -2.5 -> -2
  EXPECT_EQ(run({-7}, {1}, 0), -4);     // -3.5 -> -4
  EXPECT_EQ(run({-5}, {1}, 3), 1);      // -2 + 3
  EXPECT_EQ(run({127, 127}, {127, 127}, 0), 127);     // 16129 saturates
  EXPECT_EQ(run({-128, -128}, {127, 127}, 0), -128);  // -16256 saturates
}

// ---------------------------------------------------------------------------------------------
// ConvInteger / QLinearConv

// Naive 2-D conv reference: x [N, C, H, W] - zx, w [M, C/g, kh, kw] - zw[m].
std::vector<int32_t> NaiveConv2D(const std::vector<int32_t>& x, const std::vector<int32_t>& w, int64_t N, int64_t C,
                                 int64_t H, int64_t W, int64_t M, int64_t kh, int64_t kw, int64_t group, int64_t stride,
                                 int64_t pad, int64_t dil, int32_t zx, const std::vector<int32_t>& zw, int64_t* OH,
                                 int64_t* OW) {
  const int64_t oh = (H + 2 * pad - ((kh - 1) * dil + 1)) / stride + 1;
  const int64_t ow = (W + 2 * pad - ((kw - 1) * dil + 1)) / stride + 1;
  *OH = oh;
  *OW = ow;
  const int64_t cg = C / group, mg = M / group;
  std::vector<int32_t> y(N * M * oh * ow, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const int64_t g = m / mg;
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          int32_t s = 0;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t a = 0; a < kh; ++a)
              for (int64_t b = 0; b < kw; ++b) {
                const int64_t yy = i * stride - pad + a * dil, xx = j * stride - pad + b * dil;
                if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                const int32_t xv = x[((n * C + g * cg + c) * H + yy) * W + xx] - zx;
                const int32_t wv = w[((m * cg + c) * kh + a) * kw + b] - zw[zw.size() == 1 ? 0 : m];
                s += xv * wv;
              }
          y[((n * M + m) * oh + i) * ow + j] = s;
        }
    }
  return y;
}

TEST(ConvInteger, OnnxExampleWithPadding) {
  OneOp op{"ConvInteger",
           {{"x", Tensor::FromVector<uint8_t>({2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 1, 3, 3})},
            {"w", Tensor::FromVector<uint8_t>({1, 1, 1, 1}, {1, 1, 2, 2})},
            {"zx", Tensor::Scalar<uint8_t>(1)}},
           1,
           {IntsAttr("pads", {1, 1, 1, 1})},
           10};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]),
            (std::vector<int32_t>{1, 3, 5, 3, 5, 12, 16, 9, 11, 24, 28, 15, 7, 15, 17, 9}));
}

TEST(ConvInteger, GroupsStridesDilationsPerChannelWeightZeroPoints) {
  const int64_t N = 2, C = 4, H = 7, W = 6, M = 6, kh = 3, kw = 2, group = 2, stride = 2, pad = 1, dil = 2;
  std::vector<uint8_t> x(N * C * H * W);
  std::vector<int8_t> w(M * (C / group) * kh * kw);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>((i * 53) % 256);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(static_cast<int>((i * 29) % 256) - 128);
  const std::vector<int8_t> zw = {-1, 0, 3, 5, -128, 127};
  OneOp op{"ConvInteger",
           {{"x", Tensor::FromVector<uint8_t>(x, {N, C, H, W})},
            {"w", Tensor::FromVector<int8_t>(w, {M, C / group, kh, kw})},
            {"zx", Tensor::Scalar<uint8_t>(17)},
            {"zw", Tensor::FromVector<int8_t>(zw, {M})}},
           1,
           {IntAttr("group", group), IntsAttr("strides", {stride, stride}), IntsAttr("pads", {pad, pad, pad, pad}),
            IntsAttr("dilations", {dil, dil})}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  int64_t oh, ow;
  auto want = NaiveConv2D(std::vector<int32_t>(x.begin(), x.end()), std::vector<int32_t>(w.begin(), w.end()), N, C, H,
                          W, M, kh, kw, group, stride, pad, dil, 17, std::vector<int32_t>(zw.begin(), zw.end()), &oh,
                          &ow);
  EXPECT_EQ((*out)[0].shape(), (Shape{N, M, oh, ow}));
  EXPECT_EQ(Values<int32_t>((*out)[0]), want);
  op.constants = {"w", "zw"};
  out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]), want);
}

// Constant weights run the int8 GEMM path (the packed weights of QLinearConv, writing the int32
// accumulators); the sums must be the exact integers, for uint8 and int8 x, with and without a
// weight zero point, pointwise, padded 2-D, grouped, strided and depthwise (the direct depthwise
// kernel), against the naive reference and
// against the same op with the weights fed as inputs (the reference IntegerConv).
TEST(ConvInteger, ConstantWeightsTakeTheGemmPathExactly) {
  struct Case {
    int64_t N, C, H, W, M, k, group, stride, pad, dil;
    bool x_signed, weight_zp;
  };
  const std::vector<Case> cases = {
      {1, 40, 9, 11, 70, 3, 1, 1, 1, 1, false, true},   // padded 3x3, per-channel zero points
      {2, 33, 8, 8, 17, 1, 1, 1, 0, 1, false, false},   // pointwise, no weight zero point
      {1, 24, 13, 10, 48, 3, 1, 2, 1, 1, true, true},   // int8 x, stride 2
      {1, 16, 7, 9, 32, 3, 4, 1, 2, 2, false, true},    // 4 groups, dilation 2, pad 2
      {1, 64, 14, 14, 96, 1, 1, 2, 0, 1, false, true},  // strided 1x1 (a ResNet downsample)
      {2, 16, 9, 8, 16, 3, 16, 1, 1, 1, false, true},   // depthwise: the direct kernel, the sums kept
      {1, 24, 11, 11, 24, 5, 24, 2, 2, 1, true, false},  // depthwise 5x5, stride 2, int8 x
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "C " << c.C << " M " << c.M << " k " << c.k << " group " << c.group
                                      << " stride " << c.stride << " x_signed " << c.x_signed);
    const int64_t cg = c.C / c.group;
    std::vector<int32_t> xv(c.N * c.C * c.H * c.W), wv(c.M * cg * c.k * c.k), zw(c.weight_zp ? c.M : 1, 0);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<int32_t>((i * 53 + 7) % 256) - (c.x_signed ? 128 : 0);
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<int32_t>((i * 29 + 3) % 256) - 128;
    if (c.weight_zp) {
      for (size_t m = 0; m < zw.size(); ++m) zw[m] = static_cast<int32_t>((m * 37) % 256) - 128;
    }
    const int32_t zx = c.x_signed ? -3 : 131;
    Tensor x = c.x_signed ? Tensor::FromVector<int8_t>(std::vector<int8_t>(xv.begin(), xv.end()), {c.N, c.C, c.H, c.W})
                          : Tensor::FromVector<uint8_t>(std::vector<uint8_t>(xv.begin(), xv.end()), {c.N, c.C, c.H, c.W});
    Tensor zx_t = c.x_signed ? Tensor::Scalar<int8_t>(static_cast<int8_t>(zx)) : Tensor::Scalar<uint8_t>(static_cast<uint8_t>(zx));
    std::vector<std::pair<std::string, Tensor>> ins = {
        {"x", x}, {"w", Tensor::FromVector<int8_t>(std::vector<int8_t>(wv.begin(), wv.end()), {c.M, cg, c.k, c.k})},
        {"zx", zx_t}};
    if (c.weight_zp) ins.push_back({"zw", Tensor::FromVector<int8_t>(std::vector<int8_t>(zw.begin(), zw.end()), {c.M})});
    OneOp op{"ConvInteger", ins, 1,
             {IntAttr("group", c.group), IntsAttr("strides", {c.stride, c.stride}),
              IntsAttr("pads", {c.pad, c.pad, c.pad, c.pad}), IntsAttr("dilations", {c.dil, c.dil})}};
    int64_t oh, ow;
    const auto want = NaiveConv2D(xv, wv, c.N, c.C, c.H, c.W, c.M, c.k, c.k, c.group, c.stride, c.pad, c.dil, zx, zw,
                                  &oh, &ow);
    auto fed = op.Run();
    ASSERT_TRUE(fed.ok()) << fed.status().message();
    EXPECT_EQ(Values<int32_t>((*fed)[0]), want);
    op.constants = {"w", "zw"};
    auto packed = op.Run();
    ASSERT_TRUE(packed.ok()) << packed.status().message();
    EXPECT_EQ((*packed)[0].shape(), (Shape{c.N, c.M, oh, ow}));
    EXPECT_EQ(Values<int32_t>((*packed)[0]), want);
  }
}

TEST(ConvInteger, SameUpperPaddingAnd1D) {
  // 1-D: x [1, 1, 5], w [1, 1, 2], SAME_UPPER, stride 1 -> out 5, pad end 1.
  OneOp op{"ConvInteger", {{"x", Tensor::FromVector<uint8_t>({1, 2, 3, 4, 5}, {1, 1, 5})},
                           {"w", Tensor::FromVector<uint8_t>({1, 10}, {1, 1, 2})}}};
  op.attrs.push_back(Attribute{});
  op.attrs.back().name = "auto_pad";
  op.attrs.back().type = Attribute::Type::kString;
  op.attrs.back().s = "SAME_UPPER";
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int32_t>((*out)[0]), (std::vector<int32_t>{21, 32, 43, 54, 5}));

  OneOp bad{"ConvInteger", {{"x", Tensor::FromVector<uint8_t>({1, 2, 3, 4}, {1, 2, 2})},
                            {"w", Tensor::FromVector<uint8_t>({1, 1, 1}, {1, 3, 1})}}};
  auto r = bad.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input channels"), std::string::npos) << r.status().message();
}

TEST(QLinearConv, OnnxExample) {
  OneOp op{"QLinearConv",
           {{"x", Tensor::FromVector<uint8_t>({255, 174, 162, 25,  203, 168, 58,  15,  59,  237, 95,  129, 0,
                                               64,  56,  242, 153, 221, 168, 12,  166, 232, 178, 186, 195, 237,
                                               162, 237, 188, 39,  124, 77,  80,  102, 43,  127, 230, 21,  83,
                                               41,  40,  134, 255, 154, 92,  141, 42,  148, 247},
                                              {1, 1, 7, 7})},
            {"xs", Tensor::Scalar<float>(0.00369204697f)},
            {"xz", Tensor::Scalar<uint8_t>(132)},
            {"w", Tensor::FromVector<uint8_t>({0}, {1, 1, 1, 1})},
            {"ws", Tensor::FromVector<float>({0.00172794575f}, {1})},
            {"wz", Tensor::FromVector<uint8_t>({255}, {1})},
            {"ys", Tensor::Scalar<float>(0.00162681262f)},
            {"yz", Tensor::Scalar<uint8_t>(123)}},
           1, {}, 10};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<uint8_t>((*out)[0]),
            (std::vector<uint8_t>{0,   81,  93,  230, 52,  87,  197, 240, 196, 18,  160, 126, 255, 191, 199, 13,  102,
                                  34,  87,  243, 89,  23,  77,  69,  60,  18,  93,  18,  67,  216, 131, 178, 175, 153,
                                  212, 128, 25,  234, 172, 214, 215, 121, 0,   101, 163, 114, 213, 107, 8}));
}

TEST(QLinearConv, BiasPerChannelScalesAndTies) {
  // 1x1 conv, x [1, 1, 1, 4] int8, two output channels with scales 1 and 0.5; y_scale 2.
  // channel 0: acc = x*w0 + b0, multiplier 0.5; channel 1: acc = x*w1 + b1, multiplier 0.25.
  OneOp op{"QLinearConv",
           {{"x", Tensor::FromVector<int8_t>({1, 3, -5, 100}, {1, 1, 1, 4})},
            {"xs", Tensor::Scalar<float>(1.0f)},
            {"xz", Tensor::Scalar<int8_t>(0)},
            {"w", Tensor::FromVector<int8_t>({1, 2}, {2, 1, 1, 1})},
            {"ws", Tensor::FromVector<float>({1.0f, 0.5f}, {2})},
            {"wz", Tensor::FromVector<int8_t>({0, 0}, {2})},
            {"ys", Tensor::Scalar<float>(2.0f)},
            {"yz", Tensor::Scalar<int8_t>(-1)},
            {"B", Tensor::FromVector<int32_t>({4, -4}, {2})}}};
  auto out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  // ch0: acc = [5, 7, -1, 104] * 0.5 = [2.5, 3.5, -0.5, 52] -> [2, 4, -0, 52] - 1 = [1, 3, -1, 51]
  // ch1: acc = [2-4, 6-4, -10-4, 200-4] = [-2, 2, -14, 196] * 0.25 = [-0.5, 0.5, -3.5, 49] -> [0, 0, -4, 49] - 1
  EXPECT_EQ(Values<int8_t>((*out)[0]), (std::vector<int8_t>{1, 3, -1, 51, -1, -1, -5, 48}));
  op.constants = {"w", "wz", "B"};
  out = op.Run();
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(Values<int8_t>((*out)[0]), (std::vector<int8_t>{1, 3, -1, 51, -1, -1, -5, 48}));
}

}  // namespace
}  // namespace quantkit
