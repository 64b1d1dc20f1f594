// The avx2 forms of quantize.h's requantization, ClampRoundAddZero(float(acc) * multiplier, lo,
// hi, zp), and of the int8 tiles' exact pair products, shared by the int8 GEMM (qgemm_avx2.cc),
// the direct pointwise kernel (qdirect_conv_avx2.cc) and the depthwise kernel (qdepthwise_avx2.cc).
// Include only from files built for avx2.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace quantkit::kernels::x86 {

// Eight lanes: the same float operations as the portable definition (int32 to float, one
// multiply, NaN to 0, clamp, round half to even, add the zero point), so the same integers. The
// clamp as max/min gives the same value after rounding (it may only turn -0 into +0). The
// rounding is vcvtps2dq under the default rounding mode (to nearest, ties to even): for the
// clamped values (|r| <= 255) exactly the portable (r + 1.5 * 2^23) - 1.5 * 2^23.
__attribute__((target("avx2"), always_inline)) inline __m256i RequantizeEight(__m256i v, __m256 m, __m256 vlo,
                                                                              __m256 vhi, __m256i vzp) {
  __m256 r = _mm256_mul_ps(_mm256_cvtepi32_ps(v), m);
  r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));  // NaN -> 0
  r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
}

// The exact int8 product step of the AVX2 tiles (qgemm_avx2.cc, qdirect_conv_avx2.cc): the int16
// pair at `pair` (two consecutive k of one row) broadcast, multiplied with x0 and x1 (16 columns
// of the same two k, interleaved) by vpmaddwd, which adds the two products in int32 exactly
// (operands within +-255 after the zero points), and added to the row's accumulators (wrapping).
__attribute__((target("avx2"), always_inline)) inline void AddPairProducts(__m256i& c0, __m256i& c1, __m256i x0,
                                                                           __m256i x1, const int16_t* pair) {
  int32_t bits;
  __builtin_memcpy(&bits, pair, sizeof(bits));
  const __m256i p = _mm256_set1_epi32(bits);
  c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(x0, p));
  c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(x1, p));
}

// The low bytes of sixteen results in [-128, 255] (q0: the first eight), in order.
__attribute__((target("avx2"), always_inline)) inline __m128i LowBytesOfSixteen(__m256i q0, __m256i q1) {
  // int32 -> int16 (in range) per 128-bit lane: [q0 0-3, q1 0-3 | q0 4-7, q1 4-7]; low bytes -> uint8.
  const __m256i words = _mm256_and_si256(_mm256_packs_epi32(q0, q1), _mm256_set1_epi16(0xFF));
  const __m256i bytes = _mm256_packus_epi16(words, words);  // per lane: 8 bytes, twice
  // Lane 0 holds columns 0-3, 8-11; lane 1 columns 4-7, 12-15 (4-byte groups): reorder them.
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)));
}

}  // namespace quantkit::kernels::x86
