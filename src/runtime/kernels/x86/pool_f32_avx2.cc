// AVX2 builds of MaxPool2x2RowFloat, MaxPool2x2RowU8 / S8, MaxPool3Stride2RowU8 / S8 and
// MaxPoolBlockedRowFloat (pool_f32.h) for CPUs without
// AVX-512: the portable loops' selections, so the same bits (NaN payloads and tied zeros too).
// vmaxps(v, best) returns v where v > best, else best (a NaN in either gives best): the portable
// `v > best ? v : best`.
#include <immintrin.h>

#include <cstring>
#include <limits>
#include <type_traits>

#include "runtime/kernels/pool_f32.h"

namespace quantkit::kernels::pool_f32 {
namespace {

// Per input column: b if b > a or a is NaN, else a (the portable loop's m0 / m1).
__attribute__((target("avx2"), always_inline)) inline __m256 ColumnMax(__m256 a, __m256 b) {
  const __m256 take_b = _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  return _mm256_blendv_ps(a, b, take_b);
}

// Columns 0, 2, .., 14 and 1, 3, .., 15 of the 16 floats lo:hi, in order.
__attribute__((target("avx2"), always_inline)) inline void Deinterleave(__m256 lo, __m256 hi, __m256* even,
                                                                         __m256* odd) {
  // shuffle_ps works per 128-bit lane: [lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6]; the 64-bit permute
  // puts the quarters back in column order.
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

// Per 16-bit lane of the column max m, the max of its two bytes, in range of the 8-bit type.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline __m128i PairMax(__m128i m) {
  if constexpr (kSigned) return _mm_max_epi16(_mm_srai_epi16(_mm_slli_epi16(m, 8), 8), _mm_srai_epi16(m, 8));
  return _mm_and_si128(_mm_max_epu8(m, _mm_srli_epi16(m, 8)), _mm_set1_epi16(0xFF));
}

template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline __m128i ColumnMax8Bit(__m128i a, __m128i b) {
  return kSigned ? _mm_max_epi8(a, b) : _mm_max_epu8(a, b);
}

// The outputs of the column maxima m, packed to the low bytes.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline __m128i Outputs(__m128i m) {
  const __m128i pair = PairMax<kSigned>(m);
  return kSigned ? _mm_packs_epi16(pair, pair) : _mm_packus_epi16(pair, pair);
}

// 8 outputs from 16 bytes of each row, in the low 8 bytes.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline __m128i EightOutputs(const uint8_t* a, const uint8_t* b) {
  return Outputs<kSigned>(ColumnMax8Bit<kSigned>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)),
                                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(b))));
}

// 4 outputs from 8 bytes of each row, in the low 4 bytes.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline __m128i FourOutputs(const uint8_t* a, const uint8_t* b) {
  return Outputs<kSigned>(ColumnMax8Bit<kSigned>(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a)),
                                                 _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b))));
}

// Outputs [0, n) for n >= 4, 16 (8, 4 on short rows) per step; the last step overlaps the one
// before it (the same values written twice) rather than a scalar tail: pooled rows are often
// 7-14 outputs wide.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline void MaxPool2x2Row8Bit(const void* a, const void* b, void* y,
                                                                             int64_t n) {
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  auto* py = static_cast<uint8_t*>(y);
  if (n >= 16) {
    for (int64_t i = 0; i < n; i += 16) {
      if (i + 16 > n) i = n - 16;
      const __m128i lo = EightOutputs<kSigned>(pa + 2 * i, pb + 2 * i);
      const __m128i hi = EightOutputs<kSigned>(pa + 2 * i + 16, pb + 2 * i + 16);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(py + i), _mm_unpacklo_epi64(lo, hi));
    }
  } else if (n >= 8) {
    for (int64_t i : {int64_t{0}, n - 8})
      _mm_storel_epi64(reinterpret_cast<__m128i*>(py + i), EightOutputs<kSigned>(pa + 2 * i, pb + 2 * i));
  } else if (n >= 4) {
    for (int64_t i : {int64_t{0}, n - 4}) {
      const int32_t four = _mm_cvtsi128_si32(FourOutputs<kSigned>(pa + 2 * i, pb + 2 * i));
      std::memcpy(py + i, &four, sizeof(four));
    }
  }
}

// The 3-wide stride-2 window maxima of 8-bit rows. 16-bit words at 2i hold (m[2i], m[2i+1]), at
// 2i + 1 (m[2i+1], m[2i+2]): the max of a word's two bytes and the high byte of the other word.
// Signed values are compared as unsigned after flipping their top bit (an order-preserving map).
// Loading at 2i + 1 (not 2i + 2) keeps the reads within [0, 2n].
// Bytes [p, p + kOut * 2) as 32 (kOut 16) or 16 (kOut 8, the high half zero), top bits flipped
// for signed values.
template <bool kSigned, int kOut>
__attribute__((target("avx2"), always_inline)) inline __m256i LoadBytes(const uint8_t* p) {
  const __m256i v = kOut == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                               : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return kSigned ? _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))) : v;
}

// kOut (16 or 8) outputs from i: reads [2i, 2i + 2 kOut] of each row.
template <bool kSigned, int kOut>
__attribute__((target("avx2"), always_inline)) inline void ThreeWide(const uint8_t* const* rows, int64_t nrows,
                                                                     int64_t i, uint8_t* y) {
  __m256i a = LoadBytes<kSigned, kOut>(rows[0] + 2 * i), b = LoadBytes<kSigned, kOut>(rows[0] + 2 * i + 1);
  for (int64_t r = 1; r < nrows; ++r) {
    a = _mm256_max_epu8(a, LoadBytes<kSigned, kOut>(rows[r] + 2 * i));
    b = _mm256_max_epu8(b, LoadBytes<kSigned, kOut>(rows[r] + 2 * i + 1));
  }
  const __m256i best = _mm256_and_si256(
      _mm256_max_epu8(_mm256_max_epu8(a, _mm256_srli_epi16(a, 8)), _mm256_srli_epi16(b, 8)), _mm256_set1_epi16(0xFF));
  // Per 128-bit lane: 8 bytes, twice; qwords 0 and 2 hold outputs 0-7 and 8-15.
  __m128i out = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi16(best, best), 0x08));
  if (kSigned) out = _mm_xor_si128(out, _mm_set1_epi8(static_cast<char>(0x80)));
  if constexpr (kOut == 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), out);
  } else {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), out);
  }
}

// Outputs [0, n), n >= 8: 16 per step (8 on shorter rows), the last step overlapping.
template <bool kSigned>
__attribute__((target("avx2"), always_inline)) inline void MaxPool3Stride2Row8Bit(const void* const* rows,
                                                                                  int64_t nrows, void* y, int64_t n) {
  const auto* const* r = reinterpret_cast<const uint8_t* const*>(rows);
  auto* py = static_cast<uint8_t*>(y);
  if (n >= 16) {
    for (int64_t i = 0; i < n; i += 16) {
      if (i + 16 > n) i = n - 16;
      ThreeWide<kSigned, 16>(r, nrows, i, py);
    }
  } else {
    ThreeWide<kSigned, 8>(r, nrows, 0, py);
    ThreeWide<kSigned, 8>(r, nrows, n - 8, py);
  }
}

}  // namespace

__attribute__((target("avx2"))) void MaxPool3Stride2RowU8Avx2(const uint8_t* const* rows, int64_t nrows, uint8_t* y,
                                                             int64_t n) {
  MaxPool3Stride2Row8Bit<false>(reinterpret_cast<const void* const*>(rows), nrows, y, n);
}

__attribute__((target("avx2"))) void MaxPool3Stride2RowS8Avx2(const int8_t* const* rows, int64_t nrows, int8_t* y,
                                                             int64_t n) {
  MaxPool3Stride2Row8Bit<true>(reinterpret_cast<const void* const*>(rows), nrows, y, n);
}

__attribute__((target("avx2"))) void MaxPool2x2RowU8Avx2(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n) {
  MaxPool2x2Row8Bit<false>(a, b, y, n);
}

__attribute__((target("avx2"))) void MaxPool2x2RowS8Avx2(const int8_t* a, const int8_t* b, int8_t* y, int64_t n) {
  MaxPool2x2Row8Bit<true>(a, b, y, n);
}

__attribute__((target("avx2"))) void MaxPool2x2RowAvx2(const float* a, const float* b, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const float* pa = a + 2 * i;
    const float* pb = b + 2 * i;
    const __m256 a_lo = _mm256_loadu_ps(pa), a_hi = _mm256_loadu_ps(pa + 8);
    const __m256 m_lo = ColumnMax(a_lo, _mm256_loadu_ps(pb)), m_hi = ColumnMax(a_hi, _mm256_loadu_ps(pb + 8));
    __m256 m0, m1, first, unused;
    Deinterleave(m_lo, m_hi, &m0, &m1);
    Deinterleave(a_lo, a_hi, &first, &unused);
    const __m256 best = _mm256_blendv_ps(m0, m1, _mm256_cmp_ps(m1, m0, _CMP_GT_OQ));
    _mm256_storeu_ps(y + i, _mm256_blendv_ps(best, first, _mm256_cmp_ps(first, first, _CMP_UNORD_Q)));
  }
  if (i < n) MaxPool2x2RowFloat(a + 2 * i, b + 2 * i, y + i, n - i, QGemmIsa::kRef);
}

__attribute__((target("avx2"))) void MaxPoolBlockedRowAvx2(const float* const* rows, int64_t nrows,
                                                          const int64_t* k_lo, const int64_t* k_hi, int64_t stride,
                                                          int64_t pad, int64_t dil, float* y, int64_t n) {
  constexpr int64_t B = 16;
  for (int64_t i = 0; i < n; ++i, y += B) {
    if (nrows == 0 || k_hi[i] <= k_lo[i]) {
      const __m256 lowest = _mm256_set1_ps(std::numeric_limits<float>::lowest());
      _mm256_storeu_ps(y, lowest);
      _mm256_storeu_ps(y + 8, lowest);
      continue;
    }
    const int64_t base = i * stride - pad;
    const float* first = rows[0] + (base + k_lo[i] * dil) * B;
    __m256 best0 = _mm256_loadu_ps(first), best1 = _mm256_loadu_ps(first + 8);
    for (int64_t r = 0; r < nrows; ++r) {
      for (int64_t k = r == 0 ? k_lo[i] + 1 : k_lo[i]; k < k_hi[i]; ++k) {
        const float* v = rows[r] + (base + k * dil) * B;
        best0 = _mm256_max_ps(_mm256_loadu_ps(v), best0);
        best1 = _mm256_max_ps(_mm256_loadu_ps(v + 8), best1);
      }
    }
    _mm256_storeu_ps(y, best0);
    _mm256_storeu_ps(y + 8, best1);
  }
}

}  // namespace quantkit::kernels::pool_f32
