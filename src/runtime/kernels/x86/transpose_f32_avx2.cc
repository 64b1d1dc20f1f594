// AVX2 build of kernels::TransposeFloat: full 8 x 8 blocks through registers, the ragged edges
// (rows or columns not a multiple of 8) by the portable loop; the Clip as vmaxps / vminps in the
// order of Clip's expression (NaN and -0 pass through), so the same values as the portable loop.
#include <immintrin.h>

#include "runtime/kernels/transpose_f32.h"

namespace quantkit::kernels::transpose_f32 {
namespace {

// r[i][j] -> r[j][i]: 2x2 pairs (unpack), 4x4 within 128-bit lanes (shuffle), then the lanes.
__attribute__((target("avx2"), always_inline)) inline void Transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 8; g += 4) {
    u[g + 0] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
    u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

}  // namespace

__attribute__((target("avx2"))) void TransposeAvx2(const float* src, int64_t rows, int64_t cols, int64_t lds,
                                                   float* dst, int64_t ldd, const float* clamp_lo_hi) {
  const __m256 lo = _mm256_set1_ps(clamp_lo_hi ? clamp_lo_hi[0] : 0.f);
  const __m256 hi = _mm256_set1_ps(clamp_lo_hi ? clamp_lo_hi[1] : 0.f);
  const int64_t full_rows = rows / 8 * 8, full_cols = cols / 8 * 8;
  for (int64_t i0 = 0; i0 < full_rows; i0 += 8) {
    for (int64_t j0 = 0; j0 < full_cols; j0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + (i0 + i) * lds + j0);
      Transpose8(r);
      for (int j = 0; j < 8; ++j) {
        __m256 v = r[j];
        if (clamp_lo_hi) v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
        _mm256_storeu_ps(dst + (j0 + j) * ldd + i0, v);
      }
    }
  }
  // The edges: columns past the last full block (all rows), then rows past it (the full columns).
  if (full_cols < cols) TransposePortable(src + full_cols, rows, cols - full_cols, lds, dst + full_cols * ldd, ldd, clamp_lo_hi);
  if (full_rows < rows) TransposePortable(src + full_rows * lds, rows - full_rows, full_cols, lds, dst + full_rows, ldd, clamp_lo_hi);
}

}  // namespace quantkit::kernels::transpose_f32
