// AVX2 builds of MaxPool2x2RowFloat and MaxPoolBlockedRowFloat (pool_f32.h) for CPUs without
// AVX-512: the portable loops' selections, so the same bits (NaN payloads and tied zeros too).
// vmaxps(v, best) returns v where v > best, else best (a NaN in either gives best): the portable
// `v > best ? v : best`.
#include <immintrin.h>

#include <limits>

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

}  // namespace

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
