// kernels/quantize_span: DequantizeBytes and QuantizeToBytes on every ISA give quantize.h's
// scalar definitions (DequantizeValue, QuantizeValue) element for element: NaN, infinities,
// exact .5 ties, values far outside the range, -0, both byte types, zero points at the edges,
// lengths through the 16-wide step and its tail.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/kernels/quantize_span.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

TEST(QuantizeSpan, EveryIsaGivesTheScalarDefinitions) {
  std::mt19937 rng(47);
  std::normal_distribution<float> normal(0.f, 3.f);
  for (bool is_signed : {false, true}) {
    for (int32_t zp : {is_signed ? -128 : 0, is_signed ? 127 : 255, is_signed ? 3 : 128}) {
      for (float scale : {0.5f, 0.0123f, 1e-30f}) {
        for (int64_t n : {1, 15, 16, 17, 100}) {
          std::vector<float> x(static_cast<size_t>(n));
          for (auto& v : x) v = normal(rng);
          const float specials[] = {std::nanf(""), INFINITY, -INFINITY, 0.25f, 0.75f, -0.25f, 1.25f, -0.f, 1e30f, -1e30f};
          for (size_t i = 0; i < x.size() && i < sizeof(specials) / sizeof(specials[0]); ++i) x[i] = specials[i];
          std::vector<uint8_t> bytes(static_cast<size_t>(n));
          for (auto& b : bytes) b = static_cast<uint8_t>(rng());
          for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
            if (!kernels::QGemmIsaSupported(isa)) continue;
            std::vector<uint8_t> q(static_cast<size_t>(n) + 16, 0xAB);
            kernels::QuantizeToBytes(x.data(), n, scale, zp, is_signed, q.data(), isa);
            std::vector<float> f(static_cast<size_t>(n) + 16, -7.f);
            kernels::DequantizeBytes(bytes.data(), is_signed, n, zp, scale, f.data(), isa);
            for (int64_t i = 0; i < n; ++i) {
              const int32_t want_q = is_signed ? rt::quant::QuantizeValue<int8_t>(x[i], scale, zp)
                                               : rt::quant::QuantizeValue<uint8_t>(x[i], scale, zp);
              const int32_t got_q = is_signed ? static_cast<int8_t>(q[i]) : q[i];
              ASSERT_EQ(got_q, want_q) << kernels::QGemmIsaName(isa) << " x " << x[i] << " scale " << scale << " zp " << zp;
              const int32_t qv = is_signed ? static_cast<int8_t>(bytes[i]) : bytes[i];
              const float want_f = rt::quant::DequantizeValue(qv, zp, scale);
              ASSERT_EQ(std::memcmp(&want_f, &f[i], sizeof(float)), 0) << kernels::QGemmIsaName(isa) << " q " << qv;
            }
            for (size_t i = static_cast<size_t>(n); i < q.size(); ++i) ASSERT_EQ(q[i], 0xAB) << "stored past n";
            for (size_t i = static_cast<size_t>(n); i < f.size(); ++i) ASSERT_EQ(f[i], -7.f) << "stored past n";
          }
        }
      }
    }
  }
}

// Values inside the range, dense around the .5 boundaries, for scales that are not powers of two:
// a reciprocal multiply instead of the division would round some of them the other way.
TEST(QuantizeSpan, EveryIsaDividesLikeTheDefinitionInsideTheRange) {
  std::mt19937 rng(53);
  for (float scale : {0.0123f, 0.0371f, 0.1f, 3.3f}) {
    std::vector<float> x(200000);
    std::uniform_real_distribution<float> u(-130.f, 130.f);
    for (size_t i = 0; i < x.size(); ++i) {
      const float k = std::round(u(rng)) + 0.5f;  // near a tie: k +- a few ulps
      x[i] = (i % 2 ? k : u(rng)) * scale;
    }
    for (bool is_signed : {false, true}) {
      const int32_t zp = is_signed ? 0 : 128;
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<uint8_t> q(x.size());
        kernels::QuantizeToBytes(x.data(), static_cast<int64_t>(x.size()), scale, zp, is_signed, q.data(), isa);
        for (size_t i = 0; i < x.size(); ++i) {
          const int32_t want = is_signed ? rt::quant::QuantizeValue<int8_t>(x[i], scale, zp)
                                         : rt::quant::QuantizeValue<uint8_t>(x[i], scale, zp);
          const int32_t got = is_signed ? static_cast<int8_t>(q[i]) : q[i];
          ASSERT_EQ(got, want) << kernels::QGemmIsaName(isa) << " x " << x[i] << " scale " << scale;
        }
      }
    }
  }
}

}  // namespace
}  // namespace quantkit
