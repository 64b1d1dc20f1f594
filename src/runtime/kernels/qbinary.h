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
  // Set only by PlanQBinary: the avx2 + FMA build may take its faster form (the quotient from
  // y_scale's reciprocal with one correction step in place of the division, integer saturation
  // in place of the float clamp), which gave the reference's bytes for every pair of input codes.
  bool fast_form = false;
  float y_reciprocal = 0;
};

// Sets p->fast_form where `isa` has a faster form and that form gives the reference's bytes for
// all 65536 pairs of input codes (checked here, by running both: a few tenths of a millisecond,
// so once per node, when its parameters are constants). Every other input of the span is one of
// those pairs, so the bytes stay those of the reference on every ISA.
void PlanQBinary(QBinaryParams* p, QGemmIsa isa);

// step_a / step_b: 0 (broadcast one value) or any stride.
void QBinarySpan(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                 void* y, QGemmIsa isa);

}  // namespace quantkit::kernels
