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

StatusOr<Tensor> ToFloat32IfHalf(KernelContext& ctx, const Tensor& t, const char* what) {
  if (t.dtype() != DType::kFloat16 && t.dtype() != DType::kBFloat16) return t;
  QK_ASSIGN_OR_RETURN(Tensor out, ctx.Scratch(DType::kFloat32, t.numel(), what));
  const uint16_t* src = t.data<uint16_t>();
  float* dst = out.data<float>();
  const bool half = t.dtype() == DType::kFloat16;
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = half ? HalfToFloat(src[i]) : BFloat16ToFloat(src[i]);
  return out.Reshaped(t.shape());
}

Status SetOutputFromFloat32(KernelContext& ctx, size_t i, const Tensor& t, DType dtype) {
  if (dtype == DType::kFloat32) {
    ctx.SetOutput(i, t);
    return Status::Ok();
  }
  QK_ASSIGN_OR_RETURN(Tensor * out, ctx.Output(i, dtype, t.shape()));
  const float* src = t.data<float>();
  uint16_t* dst = out->data<uint16_t>();
  const bool half = dtype == DType::kFloat16;
  for (int64_t k = 0; k < t.numel(); ++k) dst[k] = half ? FloatToHalf(src[k]) : FloatToBFloat16(src[k]);
  return Status::Ok();
}

}  // namespace quantkit::rt
