// MaxPool row kernels (float, and 8-bit for quantized maps). The portable loops define the
// values; the AVX-512 and AVX2 builds (x86/pool_f32_avx512.cc, x86/pool_f32_avx2.cc) select the
// same elements (max is a selection: no rounding), so the same bits, NaN and signed zeros included.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

// One output row of a 2x2, stride-2 MaxPool whose two window rows `a` and `b` are inside the
// input: y[i] = the max of a[2i], a[2i+1], b[2i], b[2i+1] under MaxPool's NaN rule (a NaN first
// tap a[2i] wins; any other NaN is skipped), for i in [0, n). Reads a and b at [0, 2n).
// isa: an AVX-512 level runs 16 outputs per step, avx2 8; the reference the portable loop.
void MaxPool2x2RowFloat(const float* a, const float* b, float* y, int64_t n, QGemmIsa isa);

// Outputs [0, n) of a 3-wide, stride-2 MaxPool row (ResNet's stem) whose windows lie inside the
// row, from the window's `rows` input rows (1 to 3), each at output 0's first column. Per column
// c, m[c] = rows[0][c], replaced by each later row's value where that is greater or m[c] is NaN;
// then y[i] = rows[0][2i] if that is NaN, else m[2i], replaced by m[2i+1] then m[2i+2] where
// greater (MaxPool's rule: a NaN first tap wins, other NaNs are skipped). Reads [0, 2n] of each row.
void MaxPool3Stride2RowFloat(const float* const* rows, int64_t nrows, float* y, int64_t n, QGemmIsa isa);

// The same 3-wide stride-2 row for 8-bit values (no NaNs: the plain maximum of the window's
// columns over the rows). avx2 and AVX-512 levels: 16 or 8 outputs per step for rows of 8 or
// more (overlapping last steps, reads within [0, 2n]); the reference and shorter rows: scalar.
void MaxPool3Stride2RowU8(const uint8_t* const* rows, int64_t nrows, uint8_t* y, int64_t n, QGemmIsa isa);
void MaxPool3Stride2RowS8(const int8_t* const* rows, int64_t nrows, int8_t* y, int64_t n, QGemmIsa isa);

// m[c] of the above for one column (the portable loop's, and the MaxPool op's edge windows'; 8-bit
// rows too, where there are no NaNs).
template <typename T>
inline T MaxPoolColumnMax(const T* const* rows, int64_t nrows, int64_t c) {
  T m = rows[0][c];
  for (int64_t r = 1; r < nrows; ++r) m = (rows[r][c] > m || m != m) ? rows[r][c] : m;
  return m;
}

// The 2x2 stride-2 row of 8-bit values (no NaNs: the plain maximum): y[i] = max(a[2i], a[2i+1],
// b[2i], b[2i+1]) for i in [0, n); reads a and b at [0, 2n). avx2 and AVX-512 levels: 4, 8 or 16
// outputs per step for rows of 4 or more; the reference and shorter rows: the scalar loop.
void MaxPool2x2RowU8(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, QGemmIsa isa);
void MaxPool2x2RowS8(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, QGemmIsa isa);

// One output row of a MaxPool over NCHW16c pixels (16 channels per pixel): for output i in
// [0, n), the window's taps are rows[r][(i * stride - pad + k * dil) * 16 + lane] for r < nrows
// and k in [k_lo[i], k_hi[i]), taken in that order: the first tap, then each later one where it
// is greater (MaxPool's rule per lane: a NaN first tap wins, other NaNs are skipped). A window
// with no taps gives the lowest float.
void MaxPoolBlockedRowFloat(const float* const* rows, int64_t nrows, const int64_t* k_lo, const int64_t* k_hi,
                            int64_t stride, int64_t pad, int64_t dil, float* y, int64_t n, QGemmIsa isa);

namespace pool_f32 {
void MaxPoolBlockedRowPortable(const float* const* rows, int64_t nrows, const int64_t* k_lo, const int64_t* k_hi,
                               int64_t stride, int64_t pad, int64_t dil, float* y, int64_t n);
void MaxPoolBlockedRowAvx512(const float* const* rows, int64_t nrows, const int64_t* k_lo, const int64_t* k_hi,
                             int64_t stride, int64_t pad, int64_t dil, float* y, int64_t n);
void MaxPool2x2RowAvx512(const float* a, const float* b, float* y, int64_t n);
void MaxPool3Stride2RowAvx512(const float* const* rows, int64_t nrows, float* y, int64_t n);
void MaxPoolBlockedRowAvx2(const float* const* rows, int64_t nrows, const int64_t* k_lo, const int64_t* k_hi,
                           int64_t stride, int64_t pad, int64_t dil, float* y, int64_t n);
void MaxPool2x2RowAvx2(const float* a, const float* b, float* y, int64_t n);
// MaxPool3Stride2RowU8 / S8 for n >= 8.
void MaxPool3Stride2RowU8Avx2(const uint8_t* const* rows, int64_t nrows, uint8_t* y, int64_t n);
void MaxPool3Stride2RowS8Avx2(const int8_t* const* rows, int64_t nrows, int8_t* y, int64_t n);
// MaxPool2x2RowU8 / S8 for n >= 4.
void MaxPool2x2RowU8Avx2(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n);
void MaxPool2x2RowS8Avx2(const int8_t* a, const int8_t* b, int8_t* y, int64_t n);
}

}  // namespace quantkit::kernels
