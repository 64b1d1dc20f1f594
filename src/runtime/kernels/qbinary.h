// QLinearAdd / QLinearMul over a span: exactly the float32 operations of the
// DequantizeLinear -> Add|Mul -> QuantizeLinear they replace (quantize.h):
//   y[i] = clamp(QuantizeValue(DQ(a[i * step_a]) op DQ(b[i * step_b]), y_scale, y_zp), y_min, y_max)
//   DQ(q) = float(q - zp) * scale
// Every build computes the same IEEE operations in the same order (no FMA contraction), so the
// bytes do not depend on the ISA; the avx2 build only runs them 8 wide.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

struct QBinaryParams {
  bool mul = false;  // Mul, else Add
  bool a_signed = false, b_signed = false, y_signed = false;
  float a_scale = 1, b_scale = 1, y_scale = 1;
  int32_t a_zero_point = 0, b_zero_point = 0, y_zero_point = 0;
  int32_t y_min = 0, y_max = 255;  // the output type's range, or narrower (a fused Relu)
};

// step_a / step_b: 0 (broadcast one value) or any stride.
void QBinarySpan(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                 void* y, QGemmIsa isa);

}  // namespace quantkit::kernels
