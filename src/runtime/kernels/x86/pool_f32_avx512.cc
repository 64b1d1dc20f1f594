// AVX-512 build of MaxPool2x2RowFloat (pool_f32.h): the portable loop's selections, 16 outputs
// (32 input columns of each row) per step, the tail with masked loads and stores.
#include <immintrin.h>

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

}  // namespace quantkit::kernels::pool_f32
