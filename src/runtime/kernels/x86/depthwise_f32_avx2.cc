// The avx2 and avx512 builds of the float depthwise kernel (depthwise_f32_internal.h): the same
// fused multiply-adds as the portable build, 8 wide in ymm or 16 wide in zmm registers. The
// shared body writes acc + w * v on GCC vectors; these two functions allow its contraction into
// one FMA instruction (-ffp-contract=off elsewhere), which rounds once, as the portable build's
// std::fma does (the exact tests compare the builds bit for bit).
#include "runtime/kernels/depthwise_f32_internal.h"

// GCC: contraction of the shared body's acc + w * v allowed in these two functions only.
#if defined(__clang__)
#define QK_CONTRACT_FMA
#else
#define QK_CONTRACT_FMA optimize("fp-contract=fast")
#endif

namespace quantkit::kernels::depthwise_f32 {

__attribute__((target("avx2,fma"), QK_CONTRACT_FMA)) void RunAvx2(const ConvGeometry& g, const float* x,
                                                                              const float* w, float bias,
                                                                              const Clamp& clamp, float* y,
                                                                              float* plane) {
  Run<VectorOps<v8f>>(g, x, w, bias, clamp, y, plane);
}

__attribute__((target("avx512f,fma"), QK_CONTRACT_FMA)) void RunAvx512(const ConvGeometry& g,
                                                                                   const float* x, const float* w,
                                                                                   float bias, const Clamp& clamp,
                                                                                   float* y, float* plane) {
  Run<VectorOps<v16f>>(g, x, w, bias, clamp, y, plane);
}

__attribute__((target("avx2,fma"), QK_CONTRACT_FMA)) void RunChannelsAvx2(
    const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias, int64_t channels,
    const Clamp& clamp, float* y, int64_t y_stride, float* scratch) {
  RunChannels<VectorOps<v8f>, &transpose_f32::TransposePortable>(g, x, x_stride, w, bias, channels, clamp, y,
                                                                 y_stride, scratch);
}

__attribute__((target("avx512f,fma"), QK_CONTRACT_FMA)) void RunChannelsAvx512(
    const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias, int64_t channels,
    const Clamp& clamp, float* y, int64_t y_stride, float* scratch) {
  RunChannels<VectorOps<v16f>, &transpose_f32::TransposeAvx512>(g, x, x_stride, w, bias, channels, clamp, y,
                                                                y_stride, scratch);
}

}  // namespace quantkit::kernels::depthwise_f32
