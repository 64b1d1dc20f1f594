// QBinarySpan (QLinearAdd / QLinearMul) on every ISA build equals the scalar definition,
// QuantizeValue(DequantizeValue(a) op DequantizeValue(b)) clamped, for every type mix, Add and
// Mul, contiguous and broadcast steps, and a fused clamp.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "runtime/kernels/qbinary.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

int32_t Definition(const kernels::QBinaryParams& p, int32_t qa, int32_t qb) {
  const float x = rt::quant::DequantizeValue(qa, p.a_zero_point, p.a_scale);
  const float z = rt::quant::DequantizeValue(qb, p.b_zero_point, p.b_scale);
  const float f = p.mul ? x * z : x + z;
  const int32_t q = p.y_signed ? rt::quant::QuantizeValue<int8_t>(f, p.y_scale, p.y_zero_point)
                               : rt::quant::QuantizeValue<uint8_t>(f, p.y_scale, p.y_zero_point);
  return std::clamp(q, p.y_min, p.y_max);
}

TEST(QBinarySpan, EveryIsaEqualsTheDefinition) {
  std::mt19937 rng(13);
  constexpr int64_t n = 300;
  std::vector<uint8_t> a(n), b(n);
  for (auto& v : a) v = static_cast<uint8_t>(rng());
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  for (int mask = 0; mask < 16; ++mask) {
    kernels::QBinaryParams p;
    p.mul = mask & 1;
    p.a_signed = mask & 2;
    p.b_signed = mask & 4;
    p.y_signed = mask & 8;
    p.a_scale = 0.031f, p.b_scale = 0.017f, p.y_scale = p.mul ? 0.09f : 0.04f;
    p.a_zero_point = p.a_signed ? -3 : 100;
    p.b_zero_point = p.b_signed ? 7 : 140;
    p.y_zero_point = p.y_signed ? -10 : 30;
    p.y_min = p.y_signed ? -128 : 0;
    p.y_max = p.y_signed ? 127 : 255;
    if (mask % 3 == 0) p.y_min = p.y_zero_point;  // a fused Relu
    for (auto [step_a, step_b] : {std::pair<int64_t, int64_t>{1, 1}, {1, 0}, {0, 1}, {1, 2}}) {
      const int64_t len = step_b == 2 ? n / 2 : n;
      std::vector<int32_t> want(static_cast<size_t>(len));
      for (int64_t i = 0; i < len; ++i) {
        const uint8_t ra = a[i * step_a], rb = b[i * step_b];
        want[i] = Definition(p, p.a_signed ? static_cast<int8_t>(ra) : ra, p.b_signed ? static_cast<int8_t>(rb) : rb);
      }
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<uint8_t> y(static_cast<size_t>(len));
        kernels::QBinarySpan(p, a.data(), step_a, b.data(), step_b, len, y.data(), isa);
        for (int64_t i = 0; i < len; ++i) {
          const int32_t got = p.y_signed ? static_cast<int8_t>(y[i]) : y[i];
          ASSERT_EQ(got, want[i]) << kernels::QGemmIsaName(isa) << " mask " << mask << " steps " << step_a << ","
                                  << step_b << " i " << i;
        }
      }
    }
  }
}

// Every (a, b) byte pair, for every type mix, Add and Mul, on every ISA, as given and as planned
// (PlanQBinary: the fast form where it checks): scales that put many results exactly halfway
// between integers (ties to even), a tiny output scale (everything saturates), the scales of a
// real residual Add, a huge output scale and a subnormal one (whose reciprocal is infinite: the
// plan must find the fast form wrong and keep the division); contiguous spans and each side broadcast; a fused
// Relu's clamp on some.
TEST(QBinarySpan, EveryIsaEqualsTheDefinitionOnEveryBytePair) {
  struct Scales {
    float a, b, y;
  };
  const Scales scale_sets[] = {{0.5f, 0.5f, 1.0f},
                               {0.25f, 0.75f, 0.5f},
                               {0.031f, 0.017f, 1e-6f},
                               {0.0213f, 0.0378f, 0.0442f},
                               {0.07f, 3e-3f, 1e9f},
                               {0.031f, 0.017f, 1e-40f}};
  int fast_forms = 0;
  std::vector<uint8_t> a(65536), b(65536);
  for (int i = 0; i < 65536; ++i) {
    a[i] = static_cast<uint8_t>(i & 255);
    b[i] = static_cast<uint8_t>(i >> 8);
  }
  std::vector<uint8_t> y(a.size());
  for (int mask = 0; mask < 16; ++mask) {
    for (const Scales& sc : scale_sets) {
      kernels::QBinaryParams p;
      p.mul = mask & 1;
      p.a_signed = mask & 2;
      p.b_signed = mask & 4;
      p.y_signed = mask & 8;
      p.a_scale = sc.a, p.b_scale = sc.b, p.y_scale = sc.y;
      p.a_zero_point = p.a_signed ? 5 : 128;
      p.b_zero_point = p.b_signed ? -9 : 101;
      p.y_zero_point = p.y_signed ? 3 : 127;
      p.y_min = p.y_signed ? -128 : 0;
      p.y_max = p.y_signed ? 127 : 255;
      if (mask % 5 == 0) p.y_min = p.y_zero_point;  // a fused Relu
      auto value = [](bool is_signed, uint8_t raw) { return is_signed ? static_cast<int32_t>(static_cast<int8_t>(raw)) : raw; };
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        for (bool plan : {false, true}) {
          kernels::QBinaryParams q = p;
          if (plan) {
            kernels::PlanQBinary(&q, isa);
            fast_forms += q.fast_form;
          }
          kernels::QBinarySpan(q, a.data(), 1, b.data(), 1, static_cast<int64_t>(a.size()), y.data(), isa);
          for (size_t i = 0; i < y.size(); ++i) {
            const int32_t want = Definition(q, value(q.a_signed, a[i]), value(q.b_signed, b[i]));
            const int32_t got = q.y_signed ? static_cast<int8_t>(y[i]) : y[i];
            ASSERT_EQ(got, want) << kernels::QGemmIsaName(isa) << " mask " << mask << " scales " << sc.a << "," << sc.b
                                 << "," << sc.y << " a " << int{a[i]} << " b " << int{b[i]};
          }
          // Each side broadcast: a = 0..255 against one b, one a against b = 0..255 (the first
          // 256 elements of the pair table).
          for (int side = 0; side < 2; ++side) {
            const uint8_t one = 77;
            if (side == 0) {
              kernels::QBinarySpan(q, a.data(), 1, &one, 0, 256, y.data(), isa);
            } else {
              kernels::QBinarySpan(q, &one, 0, a.data(), 1, 256, y.data(), isa);
            }
            for (int i = 0; i < 256; ++i) {
              const int32_t qa = value(q.a_signed, side == 0 ? a[i] : one), qb = value(q.b_signed, side == 0 ? one : a[i]);
              const int32_t got = q.y_signed ? static_cast<int8_t>(y[i]) : y[i];
              ASSERT_EQ(got, Definition(q, qa, qb)) << kernels::QGemmIsaName(isa) << " broadcast side " << side;
            }
          }
        }
      }
    }
  }
  // The avx2 + FMA build takes its fast form for every set but the subnormal output scale.
  if (kernels::QGemmIsaSupported(QGemmIsa::kAvx2) && kernels::QGemmIsaIsAvx2Fma(QGemmIsa::kAvx2)) {
    EXPECT_EQ(fast_forms, 16 * 5);
  }
}

}  // namespace
}  // namespace quantkit
