// The avx2 forms of quantize.h's requantization, ClampRoundAddZero(float(acc) * multiplier, lo,
// hi, zp), its quantize and dequantize, and the int8 tiles' exact pair products, shared by the
// int8 GEMM (qgemm_avx2.cc), the direct conv (qdirect_conv_avx2.cc), the depthwise kernel
// (qdepthwise_avx2.cc), QLinearAdd/Mul (qbinary_avx2.cc) and the quantize spans
// (quantize_span_avx2.cc). Include only from files built for avx2.
#pragma once

#include <immintrin.h>

#include <cmath>
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

// The 16 bytes of the packed per-lane bytes `bytes` (8 per 128-bit lane, twice) in output order:
// kSplit, q0 held outputs 0-3 | 8-11 and q1 4-7 | 12-15 (as vpmaddwd tiles over unpacked pairs
// leave them), so lane 0 is outputs 0-7 and lane 1 8-15 (qwords 0 and 2); else q0 held outputs
// 0-7 and q1 8-15, and the 4-byte groups are 0-3, 8-11 | 4-7, 12-15.
template <bool kSplit>
__attribute__((target("avx2"), always_inline)) inline __m128i OrderedSixteen(__m256i bytes) {
  if constexpr (kSplit) return _mm256_castsi256_si128(_mm256_permute4x64_epi64(bytes, 0x08));
  return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0)));
}

// The low bytes of sixteen results in [-128, 255] (q0 and q1 as OrderedSixteen says), in order.
template <bool kSplit = false>
__attribute__((target("avx2"), always_inline)) inline __m128i LowBytesOfSixteen(__m256i q0, __m256i q1) {
  // int32 -> int16 (in range) per 128-bit lane: [q0 0-3, q1 0-3 | q0 4-7, q1 4-7]; low bytes -> uint8.
  const __m256i words = _mm256_and_si256(_mm256_packs_epi32(q0, q1), _mm256_set1_epi16(0xFF));
  return OrderedSixteen<kSplit>(_mm256_packus_epi16(words, words));
}

// Quantize(f) for 8 values as quantize.h's QuantizeSpan / ClampRoundAddZero(f / scale): the IEEE
// division (vdivps), NaN to 0, clamped to [lo, hi] (the output range minus the zero point),
// rounded half to even (vcvtps2dq), plus the zero point.
__attribute__((target("avx2"), always_inline)) inline __m256i QuantizeEight(__m256 f, __m256 scale, __m256 vlo,
                                                                            __m256 vhi, __m256i vzp) {
  __m256 r = _mm256_div_ps(f, scale);
  r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));  // NaN -> 0
  r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
  return _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
}

// DequantizeValue for the 16 bytes at p (int8 when kSigned): float(q - zp) * scale, values 0-7
// in *lo and 8-15 in *hi.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline void DequantizeSixteen(const void* p, __m256i vzp, __m256 scale,
                                                                             __m256* lo, __m256* hi) {
  const __m128i v = _mm_loadu_si128(static_cast<const __m128i*>(p));
  const __m128i v_hi = _mm_unpackhi_epi64(v, v);
  const __m256i q0 = kSigned ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
  const __m256i q1 = kSigned ? _mm256_cvtepi8_epi32(v_hi) : _mm256_cvtepu8_epi32(v_hi);
  *lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, vzp)), scale);
  *hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, vzp)), scale);
}

// A byte output's requantization with saturating packs in place of the float clamp: the same
// bytes as RequantizeEight then LowBytesOfSixteen for multipliers with |m| < 1 (SaturatingBytesOk):
// r = float(acc) * m is then finite (no NaN) and |r| <= 2^31 - 128, so vcvtps2dq rounds it exactly
// (half to even) with no overflow. Rounding before clamping to integer bounds gives the same
// integer as clamping first, and the saturations (int32 -> int16, + zp in int16, int16 -> the
// byte type) are monotone and wider than [y_min, y_max], so the final byte clamp yields
// clamp(round(r) + zp, y_min, y_max). 12 vector operations per 16 outputs instead of 20.
struct SaturatingBytes {
  __m256i zp16;        // the zero point in every int16 lane
  __m128i y_min, y_max;  // the output range as bytes in every lane (it must lie within the byte type)
  bool y_signed = false;
};

inline bool SaturatingBytesOk(float multiplier) { return std::fabs(multiplier) < 1.0f; }  // false for NaN

__attribute__((target("avx2"))) inline SaturatingBytes MakeSaturatingBytes(int32_t zp, int32_t y_min, int32_t y_max,
                                                                           bool y_signed) {
  SaturatingBytes b;
  b.zp16 = _mm256_set1_epi16(static_cast<int16_t>(zp));
  b.y_min = _mm_set1_epi8(static_cast<char>(y_min));
  b.y_max = _mm_set1_epi8(static_cast<char>(y_max));
  b.y_signed = y_signed;
  return b;
}

// r0 holds outputs 0-3 | 8-11 and r1 4-7 | 12-15 (kSplit, as vpmaddwd tiles over unpacked pairs
// leave them), or r0 outputs 0-7 and r1 8-15; both already rounded (vcvtps2dq). The 16 bytes in order.
template <bool kSplit>
__attribute__((target("avx2"), always_inline)) inline __m128i SaturatedBytesOfSixteen(__m256i r0, __m256i r1,
                                                                                       const SaturatingBytes& b) {
  // packs per 128-bit lane: [r0 0-3, r1 0-3 | r0 4-7, r1 4-7], saturated to int16.
  const __m256i words = _mm256_adds_epi16(_mm256_packs_epi32(r0, r1), b.zp16);
  const __m256i bytes = b.y_signed ? _mm256_packs_epi16(words, words) : _mm256_packus_epi16(words, words);
  const __m128i ordered = OrderedSixteen<kSplit>(bytes);
  if (b.y_signed) return _mm_min_epi8(_mm_max_epi8(ordered, b.y_min), b.y_max);
  return _mm_min_epu8(_mm_max_epu8(ordered, b.y_min), b.y_max);
}

// float(v) * m rounded to int32 (half to even), for SaturatedBytesOfSixteen.
__attribute__((target("avx2"), always_inline)) inline __m256i ScaleAndRound(__m256i v, __m256 m) {
  return _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(v), m));
}

}  // namespace quantkit::kernels::x86
