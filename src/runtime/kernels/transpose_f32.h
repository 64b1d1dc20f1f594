// A float matrix transposed, with an optional Clip on the way:
//   dst[j * ldd + i] = min(max(src[i * lds + j], lo), hi)   for i < rows, j < cols
// (Clip's expression: NaN and -0 pass through; no clamp when clamp_lo_hi is null). The AVX-512
// build moves 16 x 16 blocks through registers, the AVX2 build 8 x 8; every build gives the same
// values. Used by the small-map conv (C^T back to NCHW), the depthwise channel lanes (interleave
// and back) and the NCHW16c layout changes.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

void TransposeFloat(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                    const float* clamp_lo_hi, QGemmIsa isa);

namespace transpose_f32 {
void TransposePortable(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                       const float* clamp_lo_hi);
void TransposeAvx512(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                     const float* clamp_lo_hi);
void TransposeAvx2(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                   const float* clamp_lo_hi);
}  // namespace transpose_f32

}  // namespace quantkit::kernels
