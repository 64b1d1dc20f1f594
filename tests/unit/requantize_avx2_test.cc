// The avx2 byte requantizations (kernels/x86/requantize_avx2.h): the saturating-pack form equals
// the float-clamp form (RequantizeEight + LowBytesOfSixteen), and both equal quantize.h's scalar
// definition, for every multiplier the fast form accepts: accumulators at the int32 extremes,
// multipliers just below 1, negative ones, every zero point edge, narrowed and inverted output
// ranges, both output types and both lane orders.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <random>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit {
namespace {

struct Lanes16 {
  uint8_t fast[16], clamp[16];
};

// Both forms on acc[0..15] (in output order); kSplit feeds the fast form in the split lane order.
template <bool kSplit>
__attribute__((target("avx2"))) Lanes16 BothForms(const int32_t* acc, float m, int32_t zp, int32_t y_min,
                                                  int32_t y_max, bool y_signed) {
  const __m256 vm = _mm256_set1_ps(m);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(y_min - zp)), hi = _mm256_set1_ps(static_cast<float>(y_max - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc));
  const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + 8));
  Lanes16 out;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out.clamp),
                   kernels::x86::LowBytesOfSixteen(kernels::x86::RequantizeEight(v0, vm, lo, hi, vzp),
                                                   kernels::x86::RequantizeEight(v1, vm, lo, hi, vzp)));
  const kernels::x86::SaturatingBytes b = kernels::x86::MakeSaturatingBytes(zp, y_min, y_max, y_signed);
  __m256i r0 = kernels::x86::ScaleAndRound(v0, vm), r1 = kernels::x86::ScaleAndRound(v1, vm);
  if (kSplit) {  // outputs 0-3 | 8-11 and 4-7 | 12-15
    const __m256i s0 = _mm256_permute2x128_si256(r0, r1, 0x20), s1 = _mm256_permute2x128_si256(r0, r1, 0x31);
    r0 = s0;
    r1 = s1;
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out.fast), kernels::x86::SaturatedBytesOfSixteen<kSplit>(r0, r1, b));
  return out;
}

TEST(RequantizeAvx2, SaturatingPacksGiveTheFloatClampBytes) {
  if (!kernels::QGemmIsaSupported(kernels::QGemmIsa::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(41);
  const int32_t edges[] = {INT_MIN, INT_MIN + 1, INT_MAX, INT_MAX - 1, 0, 1, -1, 32767, -32768, 1 << 30, -(1 << 30)};
  const float mults[] = {0.99999994f, -0.99999994f, 0.5f, 1e-3f, 3.7e-6f, 0.0f, -0.25f, 0.0078125f};
  int checked = 0;
  for (float m : mults) {
    ASSERT_TRUE(kernels::x86::SaturatingBytesOk(m));
    for (int round = 0; round < 200; ++round) {
      int32_t acc[16];
      for (auto& a : acc) {
        switch (rng() % 4) {
          case 0: a = edges[rng() % (sizeof(edges) / sizeof(edges[0]))]; break;
          case 1: a = static_cast<int32_t>(rng()); break;  // anywhere in int32
          default: a = static_cast<int32_t>(rng() % 200001) - 100000;
        }
      }
      const bool y_signed = rng() % 2;
      const int32_t type_min = y_signed ? -128 : 0, type_max = y_signed ? 127 : 255;
      const int32_t zp = round % 5 == 0 ? type_min : round % 5 == 1 ? type_max : type_min + static_cast<int32_t>(rng() % 256);
      int32_t y_min = type_min, y_max = type_max;
      if (round % 3 == 1) y_min = zp;  // a fused Relu
      if (round % 7 == 2) {             // a Clip, sometimes inverted
        y_min = type_min + static_cast<int32_t>(rng() % 256);
        y_max = type_min + static_cast<int32_t>(rng() % 256);
      }
      const Lanes16 plain = BothForms<false>(acc, m, zp, y_min, y_max, y_signed);
      const Lanes16 split = BothForms<true>(acc, m, zp, y_min, y_max, y_signed);
      for (int i = 0; i < 16; ++i) {
        const float lo = static_cast<float>(y_min - zp), hi = static_cast<float>(y_max - zp);
        const auto want =
            static_cast<uint8_t>(rt::quant::detail::ClampRoundAddZero<int32_t>(static_cast<float>(acc[i]) * m, lo, hi, zp));
        ASSERT_EQ(plain.clamp[i], want) << "float clamp, acc " << acc[i] << " m " << m;
        ASSERT_EQ(plain.fast[i], want) << "saturating, acc " << acc[i] << " m " << m << " zp " << zp << " range "
                                       << y_min << ".." << y_max << (y_signed ? " int8" : " uint8");
        ASSERT_EQ(split.fast[i], want) << "saturating (split lanes), acc " << acc[i] << " m " << m;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 8 * 200 * 16);
  for (float m : {1.0f, -1.0f, 1.5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
    EXPECT_FALSE(kernels::x86::SaturatingBytesOk(m)) << m;
}

}  // namespace
}  // namespace quantkit
