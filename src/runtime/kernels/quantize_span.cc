#include "runtime/kernels/quantize_span.h"

#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels {

void DequantizeBytes(const void* q, bool is_signed, int64_t n, int32_t zp, float scale, float* out, QGemmIsa isa) {
  const int64_t done = isa != QGemmIsa::kRef ? quantize_span::DequantizeBytesAvx2(q, is_signed, n, zp, scale, out) : 0;
  if (is_signed) {
    const auto* s = static_cast<const int8_t*>(q);
    for (int64_t i = done; i < n; ++i) out[i] = rt::quant::DequantizeValue(s[i], zp, scale);
  } else {
    const auto* u = static_cast<const uint8_t*>(q);
    for (int64_t i = done; i < n; ++i) out[i] = rt::quant::DequantizeValue(u[i], zp, scale);
  }
}

void QuantizeToBytes(const float* x, int64_t n, float scale, int32_t zp, bool is_signed, void* out, QGemmIsa isa) {
  const int64_t done = isa != QGemmIsa::kRef ? quantize_span::QuantizeToBytesAvx2(x, n, scale, zp, is_signed, out) : 0;
  if (is_signed) {
    rt::quant::QuantizeSpan<int8_t>(x + done, n - done, scale, zp, static_cast<int8_t*>(out) + done);
  } else {
    rt::quant::QuantizeSpan<uint8_t>(x + done, n - done, scale, zp, static_cast<uint8_t*>(out) + done);
  }
}

}  // namespace quantkit::kernels
