// DequantizeLinear / QuantizeLinear over spans of 8-bit values, the definitions of
// kernels/ref/quantize.h (DequantizeValue, QuantizeSpan): float(q - zp) * scale, and
// saturate(round_half_even(x / scale) + zp) with NaN to the zero point. The avx2 build runs the
// same float operations 16 at a time (vdivps: the IEEE division), so the same values; the
// compiler's loops had converted through int64 (scalar code) and packed bytes element by element.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

// out[i] = float(q[i] - zp) * scale, q uint8 (or int8 when is_signed).
void DequantizeBytes(const void* q, bool is_signed, int64_t n, int32_t zp, float scale, float* out, QGemmIsa isa);
// out[i] = quant::QuantizeValue(x[i], scale, zp) as uint8 (or int8 when is_signed).
void QuantizeToBytes(const float* x, int64_t n, float scale, int32_t zp, bool is_signed, void* out, QGemmIsa isa);

namespace quantize_span {
// The first 16 * (n / 16) elements; the callers finish the rest portably.
int64_t DequantizeBytesAvx2(const void* q, bool is_signed, int64_t n, int32_t zp, float scale, float* out);
int64_t QuantizeToBytesAvx2(const float* x, int64_t n, float scale, int32_t zp, bool is_signed, void* out);
}  // namespace quantize_span

}  // namespace quantkit::kernels
