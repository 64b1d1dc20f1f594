// AVX-512 build of kernels::TransposeFloat: 16 x 16 blocks (masked at the edges: nothing read or
// written outside the two matrices) through registers; the Clip as the GEMM epilogue's vmaxps /
// vminps (Clip's expression: NaN and -0 pass through).
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/transpose_f32.h"
#include "runtime/kernels/x86/transpose16_avx512.h"

namespace quantkit::kernels::transpose_f32 {

__attribute__((target("avx512f"))) void TransposeAvx512(const float* src, int64_t rows, int64_t cols, int64_t lds,
                                                        float* dst, int64_t ldd, const float* clamp_lo_hi) {
  const __m512 lo = _mm512_set1_ps(clamp_lo_hi ? clamp_lo_hi[0] : 0.f);
  const __m512 hi = _mm512_set1_ps(clamp_lo_hi ? clamp_lo_hi[1] : 0.f);
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int64_t ni = std::min<int64_t>(16, rows - i0);
    const __mmask16 store_mask = x86::FirstLanes16(ni);
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t nj = std::min<int64_t>(16, cols - j0);
      const __mmask16 load_mask = x86::FirstLanes16(nj);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i) {
        r[i] = i < ni ? _mm512_maskz_loadu_ps(load_mask, src + (i0 + i) * lds + j0) : _mm512_setzero_ps();
      }
      x86::Transpose16(r);
      for (int64_t j = 0; j < nj; ++j) {
        __m512 v = r[j];
        if (clamp_lo_hi) v = _mm512_maskz_min_ps(0xFFFF, hi, _mm512_maskz_max_ps(0xFFFF, lo, v));
        _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, store_mask, v);
      }
    }
  }
}

}  // namespace quantkit::kernels::transpose_f32
