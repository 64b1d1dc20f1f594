// kernels::QDirectConv: the AVX2 kernel and the portable definition give the bytes of the
// requantized exact integer sums (computed here in int64, wrapped to int32), for output channel
// counts around its 6-row tiles, odd input channel counts (a pair with a zero), pixel ranges
// around its 16-pixel strips (subranges: nothing written outside [p0, p1)), uint8 and int8
// inputs, weights and outputs, zero points per channel, a narrowed output range (a fused Relu),
// bytes at the extremes, all output channels at once or in shares of 6; the input ends at a guard
// page.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "runtime/kernels/qdirect_conv.h"
#include "runtime/kernels/ref/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

TEST(QDirectConv, EveryIsaGivesTheRequantizedExactSums) {
  struct Case {
    int64_t M, K, ld, p0, p1;
    bool x_signed, w_signed, y_signed, relu;
  };
  const std::vector<Case> cases = {
      {24, 24, 64, 0, 64, false, false, false, false}, {1, 1, 5, 0, 5, true, true, true, false},
      {7, 3, 33, 0, 33, false, true, false, true},      {13, 16, 40, 3, 37, true, false, true, true},
      {6, 33, 17, 0, 17, false, false, true, false},    {5, 2, 48, 16, 32, true, true, false, false},
      {12, 96, 20, 1, 19, false, true, false, true},    {2, 7, 16, 0, 16, true, true, true, true},
  };
  std::mt19937 rng(23);
  for (const Case& c : cases) {
    const auto xv = testing::EdgeBytes(static_cast<size_t>(c.K * c.ld), rng);
    testing::GuardedBytes x(xv);
    const auto wv = testing::EdgeBytes(static_cast<size_t>(c.M * c.K), rng);
    std::vector<int32_t> w_zp(static_cast<size_t>(c.M)), bias(static_cast<size_t>(c.M));
    std::vector<float> mult(static_cast<size_t>(c.M));
    std::uniform_int_distribution<int> zp_d(c.w_signed ? -128 : 0, c.w_signed ? 127 : 255);
    std::uniform_real_distribution<float> mult_d(1e-5f, 2e-3f);
    for (int64_t m = 0; m < c.M; ++m) {
      w_zp[m] = m % 3 == 0 ? (c.w_signed ? 0 : 128) : zp_d(rng);
      bias[m] = static_cast<int32_t>(rng() % 200001) - 100000;
      // With an even M, some rows at 1 and above (those calls take the float-clamp requantize);
      // with an odd M all below 1 (the saturating packs).
      mult[m] = c.M % 2 == 0 && m % 4 == 3 ? (m % 8 == 3 ? 1.0f : 3.5f) : mult_d(rng);
    }
    const int32_t x_zp = c.x_signed ? -5 : 131, y_zp = c.y_signed ? 3 : 120;
    const int32_t y_min = c.relu ? y_zp : (c.y_signed ? -128 : 0), y_max = c.y_signed ? 127 : 255;
    const kernels::QDirectConvWeights pw = kernels::PackQDirectConvWeights(wv.data(), c.w_signed, c.M, c.K, w_zp);
    // The definition: exact sums, wrapped to int32, requantized (quantize.h), clamped.
    std::vector<uint8_t> want(static_cast<size_t>(c.M * c.ld), 0xAB);
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t p = c.p0; p < c.p1; ++p) {
        int64_t sum = bias[m];
        for (int64_t k = 0; k < c.K; ++k) {
          const int64_t wq = c.w_signed ? static_cast<int8_t>(wv[m * c.K + k]) : wv[m * c.K + k];
          const int64_t xq = c.x_signed ? static_cast<int8_t>(xv[k * c.ld + p]) : xv[k * c.ld + p];
          sum += (wq - w_zp[m]) * (xq - x_zp);
        }
        const auto acc = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(sum)));
        const float lo = static_cast<float>(y_min - y_zp), hi = static_cast<float>(y_max - y_zp);
        const int32_t q =
            rt::quant::detail::ClampRoundAddZero<int32_t>(static_cast<float>(acc) * mult[m], lo, hi, y_zp);
        want[m * c.ld + p] = static_cast<uint8_t>(q);
      }
    }
    for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2}) {
      if (isa != QGemmIsa::kRef && !(kernels::QGemmIsaSupported(isa) && kernels::QDirectConvSupported(isa))) continue;
      std::vector<uint8_t> got(want.size(), 0xAB);
      kernels::QDirectConvArgs a;
      a.w = &pw;
      a.x = x.data();
      a.x_signed = c.x_signed;
      a.x_zero_point = x_zp;
      a.ld = c.ld;
      a.bias = bias.data();
      a.multiplier = mult.data();
      a.y_signed = c.y_signed;
      a.y_zero_point = y_zp;
      a.y_min = y_min;
      a.y_max = y_max;
      a.y = got.data();
      alignas(32) static int16_t panel[1 << 14];
      ASSERT_LE(kernels::QDirectConvPanelElems(pw), 1 << 14);
      // All channels at once, and in shares of 6 channels (rows outside a share untouched).
      if (c.M % 2 == 0) {
        kernels::QDirectConv(a, c.p0, c.p1, panel, isa);
      } else {
        for (int64_t m = 0; m < c.M; m += 6) {
          a.m_begin = m;
          a.m_end = std::min(c.M, m + 6);
          kernels::QDirectConv(a, c.p0, c.p1, panel, isa);
        }
      }
      ASSERT_EQ(want, got) << kernels::QGemmIsaName(isa) << " M" << c.M << " K" << c.K << " pixels " << c.p0 << ".."
                           << c.p1;
      // Float rows (ConvIntegerToFloat): float(exact sum) * scale (+ bias) (clamped), no int bias.
      std::vector<float> scale(static_cast<size_t>(c.M)), fbias(static_cast<size_t>(c.M));
      for (int64_t m = 0; m < c.M; ++m) {
        scale[m] = 1e-4f * static_cast<float>(m + 1);
        fbias[m] = 0.25f * static_cast<float>(m % 5) - 0.5f;
      }
      std::vector<float> want_f(static_cast<size_t>(c.M * c.ld), -9.f), got_f(want_f);
      for (int64_t m = 0; m < c.M; ++m) {
        for (int64_t p = c.p0; p < c.p1; ++p) {
          int64_t sum = 0;
          for (int64_t k = 0; k < c.K; ++k) {
            const int64_t wq = c.w_signed ? static_cast<int8_t>(wv[m * c.K + k]) : wv[m * c.K + k];
            const int64_t xq = c.x_signed ? static_cast<int8_t>(xv[k * c.ld + p]) : xv[k * c.ld + p];
            sum += (wq - w_zp[m]) * (xq - x_zp);
          }
          float v = static_cast<float>(static_cast<int32_t>(sum)) * scale[m];
          if (c.relu) v = v + fbias[m];
          if (c.relu) v = std::min(std::max(v, -0.1f), 0.3f);
          want_f[m * c.ld + p] = v;
        }
      }
      a.bias = nullptr;
      a.y = nullptr;
      a.m_begin = 0;
      a.m_end = -1;
      a.y_float = got_f.data();
      a.y_scale = scale.data();
      a.y_bias = c.relu ? fbias.data() : nullptr;
      a.y_clamp = c.relu;
      a.y_clamp_lo = -0.1f;
      a.y_clamp_hi = 0.3f;
      kernels::QDirectConv(a, c.p0, c.p1, panel, isa);
      ASSERT_EQ(0, std::memcmp(want_f.data(), got_f.data(), want_f.size() * sizeof(float)))
          << "float rows, " << kernels::QGemmIsaName(isa) << " M" << c.M << " K" << c.K;
    }
  }
}

}  // namespace
}  // namespace quantkit
