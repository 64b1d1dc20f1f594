// AVX-512 builds of MaxPool2x2RowFloat and MaxPool3Stride2RowFloat (pool_f32.h): the portable
// loops' selections, 16 outputs (32 input columns of each row) per step, the tail with masked
// loads and stores.
#include <immintrin.h>

#include <limits>

#include <algorithm>

#include "runtime/kernels/pool_f32.h"

namespace quantkit::kernels::pool_f32 {
namespace {

// Per input column: b if b > a or a is NaN, else a (the portable loop's m0 / m1).
__attribute__((target("avx512f"), always_inline)) inline __m512 ColumnMax(__m512 va, __m512 vb) {
  const __mmask16 take_b = _mm512_cmp_ps_mask(vb, va, _CMP_GT_OQ) | _mm512_cmp_ps_mask(va, va, _CMP_UNORD_Q);
  return _mm512_mask_blend_ps(take_b, va, vb);
}

}  // namespace

__attribute__((target("avx512f"))) void MaxPool2x2RowAvx512(const float* a, const float* b, float* y, int64_t n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;  // outputs still to do; inputs 2 * left
    const __mmask16 lo_mask = left >= 8 ? __mmask16(0xFFFF) : __mmask16((1u << (2 * left)) - 1);
    const __mmask16 hi_mask =
        left >= 16 ? __mmask16(0xFFFF) : left <= 8 ? __mmask16(0) : __mmask16((1u << (2 * (left - 8))) - 1);
    const float* pa = a + 2 * i;
    const float* pb = b + 2 * i;
    const __m512 a_lo = _mm512_maskz_loadu_ps(lo_mask, pa), a_hi = _mm512_maskz_loadu_ps(hi_mask, pa + 16);
    const __m512 b_lo = _mm512_maskz_loadu_ps(lo_mask, pb), b_hi = _mm512_maskz_loadu_ps(hi_mask, pb + 16);
    const __m512 m_lo = ColumnMax(a_lo, b_lo), m_hi = ColumnMax(a_hi, b_hi);
    const __m512 m0 = _mm512_permutex2var_ps(m_lo, even, m_hi), m1 = _mm512_permutex2var_ps(m_lo, odd, m_hi);
    const __m512 best = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m1, m0, _CMP_GT_OQ), m0, m1);
    const __m512 first = _mm512_permutex2var_ps(a_lo, even, a_hi);
    const __m512 out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(first, first, _CMP_UNORD_Q), best, first);
    const __mmask16 out_mask = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    _mm512_mask_storeu_ps(y + i, out_mask, out);
  }
}

// The first `count` lanes (count clamped to [0, 16]).
__attribute__((target("avx512f"))) inline __mmask16 FirstLanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

__attribute__((target("avx512f"))) void MaxPool3Stride2RowAvx512(const float* const* rows, int64_t nrows, float* y,
                                                                 int64_t n) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i, count = 2 * left + 1;  // floats each row still holds from column 2i
    const __mmask16 k_lo = FirstLanes(count), k_hi = FirstLanes(count - 16);
    const __mmask16 k_next = FirstLanes(std::min<int64_t>(count - 32, 1));
    // Columns 2i .. 2i+32 as lo (16), hi (16) and next (1): the column max over the rows.
    const float* p0 = rows[0] + 2 * i;
    const __m512 first_lo = _mm512_maskz_loadu_ps(k_lo, p0), first_hi = _mm512_maskz_loadu_ps(k_hi, p0 + 16);
    __m512 m_lo = first_lo, m_hi = first_hi, m_next = _mm512_maskz_loadu_ps(k_next, p0 + 32);
    for (int64_t r = 1; r < nrows; ++r) {
      const float* pr = rows[r] + 2 * i;
      m_lo = ColumnMax(m_lo, _mm512_maskz_loadu_ps(k_lo, pr));
      m_hi = ColumnMax(m_hi, _mm512_maskz_loadu_ps(k_hi, pr + 16));
      m_next = ColumnMax(m_next, _mm512_maskz_loadu_ps(k_next, pr + 32));
    }
    const __m512 t0 = _mm512_permutex2var_ps(m_lo, even, m_hi);  // m[2k]
    const __m512 t1 = _mm512_permutex2var_ps(m_lo, odd, m_hi);   // m[2k+1]
    // m[2k+2]: t0 one lane on, its last lane from m[32] (the zero-masked form with every lane set
    // avoids GCC 12's false maybe-uninitialized warning on the plain one).
    const __m512 t2 = _mm512_castsi512_ps(
        _mm512_maskz_alignr_epi32(0xFFFF, _mm512_castps_si512(m_next), _mm512_castps_si512(t0), 1));
    __m512 best = t0;
    best = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t1, best, _CMP_GT_OQ), best, t1);
    best = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(t2, best, _CMP_GT_OQ), best, t2);
    const __m512 tap = _mm512_permutex2var_ps(first_lo, even, first_hi);
    const __m512 out = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(tap, tap, _CMP_UNORD_Q), best, tap);
    _mm512_mask_storeu_ps(y + i, FirstLanes(left), out);
  }
}

// MaxPoolBlockedRowFloat: one pixel's 16 channels per vector; vmaxps(v, best) is v > best ? v :
// best, the portable selection.
__attribute__((target("avx512f"))) void MaxPoolBlockedRowAvx512(const float* const* rows, int64_t nrows,
                                                               const int64_t* k_lo, const int64_t* k_hi,
                                                               int64_t stride, int64_t pad, int64_t dil, float* y,
                                                               int64_t n) {
  constexpr int64_t B = 16;
  for (int64_t i = 0; i < n; ++i, y += B) {
    if (nrows == 0 || k_hi[i] <= k_lo[i]) {
      _mm512_storeu_ps(y, _mm512_set1_ps(std::numeric_limits<float>::lowest()));
      continue;
    }
    const int64_t base = i * stride - pad;
    __m512 best = _mm512_loadu_ps(rows[0] + (base + k_lo[i] * dil) * B);
    for (int64_t r = 0; r < nrows; ++r) {
      for (int64_t k = r == 0 ? k_lo[i] + 1 : k_lo[i]; k < k_hi[i]; ++k) {
        best = _mm512_maskz_max_ps(0xFFFF, _mm512_loadu_ps(rows[r] + (base + k * dil) * B), best);
      }
    }
    _mm512_storeu_ps(y, best);
  }
}

}  // namespace quantkit::kernels::pool_f32
