#include "runtime/kernels/transpose_f32.h"

#include <algorithm>

namespace quantkit::kernels {

void transpose_f32::TransposePortable(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                                      int64_t ldd, const float* clamp_lo_hi) {
  for (int64_t j = 0; j < cols; ++j) {
    float* d = dst + j * ldd;
    if (clamp_lo_hi) {
      const float lo = clamp_lo_hi[0], hi = clamp_lo_hi[1];
      for (int64_t i = 0; i < rows; ++i) d[i] = std::min(std::max(src[i * lds + j], lo), hi);
    } else {
      for (int64_t i = 0; i < rows; ++i) d[i] = src[i * lds + j];
    }
  }
}

void TransposeFloat(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                    const float* clamp_lo_hi, QGemmIsa isa) {
  if (rows <= 0 || cols <= 0) return;
  if (QGemmIsaHasAvx512(isa)) return transpose_f32::TransposeAvx512(src, rows, cols, lds, dst, ldd, clamp_lo_hi);
  if (isa == QGemmIsa::kAvx2) return transpose_f32::TransposeAvx2(src, rows, cols, lds, dst, ldd, clamp_lo_hi);
  transpose_f32::TransposePortable(src, rows, cols, lds, dst, ldd, clamp_lo_hi);
}

}  // namespace quantkit::kernels
