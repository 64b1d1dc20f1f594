// AVX-512 build of kernels::TransposeFloat: 16 x 16 blocks (masked at the edges: nothing read or
// written outside the two matrices) through registers; the Clip as the GEMM epilogue's vmaxps /
// vminps (Clip's expression: NaN and -0 pass through).
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/transpose_f32.h"

namespace quantkit::kernels::transpose_f32 {
namespace {

__attribute__((target("avx512f"), always_inline)) inline __mmask16 FirstLanes16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n > 0 ? n : 0)) - 1);
}

// r[i][j] -> r[j][i]: 2x2 pairs (unpack), 4x4 blocks within 128-bit lanes (shuffle), then the
// 128-bit lanes (two rounds of shuffle_f32x4). The zero-masked forms with every lane set avoid
// GCC 12's false maybe-uninitialized warning.
__attribute__((target("avx512f"), always_inline)) inline void Transpose16(__m512 r[16]) {
  constexpr __mmask16 kAll = 0xFFFF;
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // u[g + j]: rows g .. g+3 at column j of each 128-bit lane
    u[g + 0] = _mm512_maskz_shuffle_ps(kAll, t[g], t[g + 2], 0x44);
    u[g + 1] = _mm512_maskz_shuffle_ps(kAll, t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm512_maskz_shuffle_ps(kAll, t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm512_maskz_shuffle_ps(kAll, t[g + 1], t[g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {  // column 4 * lane + j: lane `lane` of u[j], u[4 + j], u[8 + j], u[12 + j]
    const __m512 a = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0x88);
    const __m512 b = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0xDD);
    const __m512 c = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0x88);
    const __m512 d = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_maskz_shuffle_f32x4(kAll, a, c, 0x88);
    r[8 + j] = _mm512_maskz_shuffle_f32x4(kAll, a, c, 0xDD);
    r[4 + j] = _mm512_maskz_shuffle_f32x4(kAll, b, d, 0x88);
    r[12 + j] = _mm512_maskz_shuffle_f32x4(kAll, b, d, 0xDD);
  }
}

}  // namespace


__attribute__((target("avx512f"))) void TransposeAvx512(const float* src, int64_t rows, int64_t cols, int64_t lds,
                                                        float* dst, int64_t ldd, const float* clamp_lo_hi) {
  const __m512 lo = _mm512_set1_ps(clamp_lo_hi ? clamp_lo_hi[0] : 0.f);
  const __m512 hi = _mm512_set1_ps(clamp_lo_hi ? clamp_lo_hi[1] : 0.f);
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int64_t ni = std::min<int64_t>(16, rows - i0);
    const __mmask16 store_mask = FirstLanes16(ni);
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t nj = std::min<int64_t>(16, cols - j0);
      const __mmask16 load_mask = FirstLanes16(nj);
      __m512 r[16];
      for (int64_t i = 0; i < 16; ++i) {
        r[i] = i < ni ? _mm512_maskz_loadu_ps(load_mask, src + (i0 + i) * lds + j0) : _mm512_setzero_ps();
      }
      Transpose16(r);
      for (int64_t j = 0; j < nj; ++j) {
        __m512 v = r[j];
        if (clamp_lo_hi) v = _mm512_maskz_min_ps(0xFFFF, hi, _mm512_maskz_max_ps(0xFFFF, lo, v));
        _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, store_mask, v);
      }
    }
  }
}

}  // namespace quantkit::kernels::transpose_f32
