// Half-precision conversions for ops that compute in float32.
#include "runtime/ops/op_util.h"

namespace quantkit::rt {

Tensor ToFloat32IfHalf(const Tensor& t, Allocator* alloc) {
  if (t.dtype() != DType::kFloat16 && t.dtype() != DType::kBFloat16) return t;
  Tensor out(DType::kFloat32, t.shape(), alloc);
  const uint16_t* src = t.data<uint16_t>();
  float* dst = out.data<float>();
  const bool half = t.dtype() == DType::kFloat16;
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = half ? HalfToFloat(src[i]) : BFloat16ToFloat(src[i]);
  return out;
}

Tensor FromFloat32(const Tensor& t, DType dtype, Allocator* alloc) {
  if (dtype == DType::kFloat32) return t;
  Tensor out(dtype, t.shape(), alloc);
  const float* src = t.data<float>();
  uint16_t* dst = out.data<uint16_t>();
  const bool half = dtype == DType::kFloat16;
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = half ? FloatToHalf(src[i]) : FloatToBFloat16(src[i]);
  return out;
}

}  // namespace quantkit::rt
