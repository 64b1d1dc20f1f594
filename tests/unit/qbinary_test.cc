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

}  // namespace
}  // namespace quantkit
