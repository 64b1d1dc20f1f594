// The avx2 build of the float depthwise kernel (depthwise_f32_internal.h): the same multiplies
// and adds (avx2 only: no FMA contraction, -ffp-contract=off everywhere), the interior columns in
// blocks of 32 held in registers across all taps (one load and store per block, not per tap).
#include <immintrin.h>

#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels::depthwise_f32 {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

QK_AVX2_TARGET void InteriorAvx2(const float* const* src, const float* w, int64_t taps, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256 a0 = _mm256_loadu_ps(y + i), a1 = _mm256_loadu_ps(y + i + 8);
    __m256 a2 = _mm256_loadu_ps(y + i + 16), a3 = _mm256_loadu_ps(y + i + 24);
    for (int64_t t = 0; t < taps; ++t) {
      const __m256 wv = _mm256_set1_ps(w[t]);
      const float* xs = src[t] + i;
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(wv, _mm256_loadu_ps(xs)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(wv, _mm256_loadu_ps(xs + 8)));
      a2 = _mm256_add_ps(a2, _mm256_mul_ps(wv, _mm256_loadu_ps(xs + 16)));
      a3 = _mm256_add_ps(a3, _mm256_mul_ps(wv, _mm256_loadu_ps(xs + 24)));
    }
    _mm256_storeu_ps(y + i, a0);
    _mm256_storeu_ps(y + i + 8, a1);
    _mm256_storeu_ps(y + i + 16, a2);
    _mm256_storeu_ps(y + i + 24, a3);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_loadu_ps(y + i);
    for (int64_t t = 0; t < taps; ++t) a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(w[t]), _mm256_loadu_ps(src[t] + i)));
    _mm256_storeu_ps(y + i, a);
  }
  if (i < n) {  // the last 1-7 columns: masked loads and stores touch nothing past n
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n - i)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 a = _mm256_maskload_ps(y + i, mask);
    for (int64_t t = 0; t < taps; ++t) {
      a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(w[t]), _mm256_maskload_ps(src[t] + i, mask)));
    }
    _mm256_maskstore_ps(y + i, mask, a);
  }
}

}  // namespace

QK_AVX2_TARGET void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias, float* y,
                            float* plane) {
  Run<&InteriorAvx2>(g, x, w, bias, y, plane);
}

}  // namespace quantkit::kernels::depthwise_f32
