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

// DequantizeValue(q, zp, scale) = float(q - zp) * scale for 16 bytes (DequantizeSixteen).
// The difference is formed as (2^23 + u) - (2^23 + zp'), u the byte read as unsigned (int8: its
// bits are q + 128, so zp' = zp + 128): float bits 0x4B000000 | u are exactly 2^23 + u, both terms
// are integers below 2^24, so the subtraction is exact and equals float(q - zp). A byte shuffle
// and an OR take the place of vpmovzxbd (a lane-crossing shuffle), vpsubd and vcvtdq2ps
// (QLinearAdd's loop 1.13 -> 0.96 cycles per byte on Zen 3).
struct DequantizeConsts {
  __m256 biased_zp;  // 2^23 + zp (+ 128 for int8)
  __m256 scale;
};

template <bool kSigned>
__attribute__((target("avx2"))) inline DequantizeConsts MakeDequantizeConsts(int32_t zp, float scale) {
  return {_mm256_set1_ps(8388608.0f + static_cast<float>(zp + (kSigned ? 128 : 0))), _mm256_set1_ps(scale)};
}

// The 16 bytes at p (int8 when kSigned) dequantized: values 0-7 in *lo and 8-15 in *hi.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline void DequantizeSixteen(const void* p, const DequantizeConsts& k,
                                                                             __m256* lo, __m256* hi) {
  __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  if constexpr (kSigned) v = _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
  // Byte j of the 16 into the low byte of dword j (lane 0: 0-3, lane 1: 4-7; then 8-11 | 12-15).
  const __m256i first = _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1,  //
                                         4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1, -1, -1);
  const __m256i second = _mm256_setr_epi8(8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1,  //
                                          12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1, -1, -1);
  const __m256i two23 = _mm256_set1_epi32(0x4B000000);
  const __m256 u0 = _mm256_castsi256_ps(_mm256_or_si256(_mm256_shuffle_epi8(v, first), two23));
  const __m256 u1 = _mm256_castsi256_ps(_mm256_or_si256(_mm256_shuffle_epi8(v, second), two23));
  *lo = _mm256_mul_ps(_mm256_sub_ps(u0, k.biased_zp), k.scale);
  *hi = _mm256_mul_ps(_mm256_sub_ps(u1, k.biased_zp), k.scale);
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
