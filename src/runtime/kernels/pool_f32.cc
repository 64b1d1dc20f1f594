#include "runtime/kernels/pool_f32.h"

#include <algorithm>
#include <limits>

namespace quantkit::kernels {

void MaxPool2x2RowFloat(const float* a, const float* b, float* y, int64_t n, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return pool_f32::MaxPool2x2RowAvx512(a, b, y, n);
  if (isa == QGemmIsa::kAvx2) return pool_f32::MaxPool2x2RowAvx2(a, b, y, n);
  for (int64_t i = 0; i < n; ++i) {
    const float a0 = a[2 * i], a1 = a[2 * i + 1], b0 = b[2 * i], b1 = b[2 * i + 1];
    // Per column the later row wins if greater or if the earlier is NaN; then the right column
    // if greater; a NaN first tap overrides all.
    const float m0 = (b0 > a0 || a0 != a0) ? b0 : a0, m1 = (b1 > a1 || a1 != a1) ? b1 : a1;
    const float best = m1 > m0 ? m1 : m0;
    y[i] = a0 != a0 ? a0 : best;
  }
}

namespace {
template <typename T>
void MaxPool2x2Row8BitScalar(const T* a, const T* b, T* y, int64_t i, int64_t n) {
  for (; i < n; ++i) y[i] = std::max(std::max(a[2 * i], a[2 * i + 1]), std::max(b[2 * i], b[2 * i + 1]));
}
}  // namespace

void MaxPool2x2RowU8(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, QGemmIsa isa) {
  if (isa != QGemmIsa::kRef && n >= 4) return pool_f32::MaxPool2x2RowU8Avx2(a, b, y, n);
  MaxPool2x2Row8BitScalar(a, b, y, 0, n);
}

void MaxPool2x2RowS8(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, QGemmIsa isa) {
  if (isa != QGemmIsa::kRef && n >= 4) return pool_f32::MaxPool2x2RowS8Avx2(a, b, y, n);
  MaxPool2x2Row8BitScalar(a, b, y, 0, n);
}

namespace {
template <typename T>
void MaxPool3Stride2Row8BitScalar(const T* const* rows, int64_t nrows, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T best = MaxPoolColumnMax(rows, nrows, 2 * i);
    best = std::max(best, MaxPoolColumnMax(rows, nrows, 2 * i + 1));
    y[i] = std::max(best, MaxPoolColumnMax(rows, nrows, 2 * i + 2));
  }
}
}  // namespace

void MaxPool3Stride2RowU8(const uint8_t* const* rows, int64_t nrows, uint8_t* y, int64_t n, QGemmIsa isa) {
  if (isa != QGemmIsa::kRef && n >= 8) return pool_f32::MaxPool3Stride2RowU8Avx2(rows, nrows, y, n);
  MaxPool3Stride2Row8BitScalar(rows, nrows, y, n);
}

void MaxPool3Stride2RowS8(const int8_t* const* rows, int64_t nrows, int8_t* y, int64_t n, QGemmIsa isa) {
  if (isa != QGemmIsa::kRef && n >= 8) return pool_f32::MaxPool3Stride2RowS8Avx2(rows, nrows, y, n);
  MaxPool3Stride2Row8BitScalar(rows, nrows, y, n);
}

void MaxPool3Stride2RowFloat(const float* const* rows, int64_t nrows, float* y, int64_t n, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return pool_f32::MaxPool3Stride2RowAvx512(rows, nrows, y, n);
  auto column_max = [&](int64_t c) { return MaxPoolColumnMax(rows, nrows, c); };
  for (int64_t i = 0; i < n; ++i) {
    float best = column_max(2 * i);
    const float m1 = column_max(2 * i + 1), m2 = column_max(2 * i + 2);
    best = m1 > best ? m1 : best;
    best = m2 > best ? m2 : best;
    const float first_tap = rows[0][2 * i];
    y[i] = first_tap != first_tap ? first_tap : best;
  }
}

void pool_f32::MaxPoolBlockedRowPortable(const float* const* rows, int64_t nrows, const int64_t* k_lo,
                                         const int64_t* k_hi, int64_t stride, int64_t pad, int64_t dil, float* y,
                                         int64_t n) {
  constexpr int64_t B = 16;
  for (int64_t i = 0; i < n; ++i, y += B) {
    bool first = true;
    for (int64_t r = 0; r < nrows; ++r) {
      for (int64_t k = k_lo[i]; k < k_hi[i]; ++k) {
        const float* v = rows[r] + (i * stride - pad + k * dil) * B;
        for (int64_t j = 0; j < B; ++j) y[j] = first || v[j] > y[j] ? v[j] : y[j];
        first = false;
      }
    }
    if (first) std::fill(y, y + B, std::numeric_limits<float>::lowest());
  }
}

void MaxPoolBlockedRowFloat(const float* const* rows, int64_t nrows, const int64_t* k_lo, const int64_t* k_hi,
                            int64_t stride, int64_t pad, int64_t dil, float* y, int64_t n, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return pool_f32::MaxPoolBlockedRowAvx512(rows, nrows, k_lo, k_hi, stride, pad, dil, y, n);
  if (isa == QGemmIsa::kAvx2) return pool_f32::MaxPoolBlockedRowAvx2(rows, nrows, k_lo, k_hi, stride, pad, dil, y, n);
  pool_f32::MaxPoolBlockedRowPortable(rows, nrows, k_lo, k_hi, stride, pad, dil, y, n);
}

}  // namespace quantkit::kernels
