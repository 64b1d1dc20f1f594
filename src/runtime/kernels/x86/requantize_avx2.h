// The avx2 form of quantize.h's requantization, ClampRoundAddZero(float(acc) * multiplier, lo,
// hi, zp), shared by the int8 GEMM's epilogue (qgemm_avx2.cc) and the depthwise kernel
// (qdepthwise_avx2.cc). Include only from files built for avx2.
#pragma once

#include <immintrin.h>

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

// The low bytes of sixteen results in [-128, 255] (q0: the first eight), in order.
__attribute__((target("avx2"), always_inline)) inline __m128i LowBytesOfSixteen(__m256i q0, __m256i q1) {
  // int32 -> int16 (in range) per 128-bit lane: [q0 0-3, q1 0-3 | q0 4-7, q1 4-7]; low bytes -> uint8.
  const __m256i words = _mm256_and_si256(_mm256_packs_epi32(q0, q1), _mm256_set1_epi16(0xFF));
  const __m256i bytes = _mm256_packus_epi16(words, words);  // per lane: 8 bytes, twice
  // Lane 0 holds columns 0-3, 8-11; lane 1 columns 4-7, 12-15 (4-byte groups): reorder them.
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)));
}

}  // namespace quantkit::kernels::x86
