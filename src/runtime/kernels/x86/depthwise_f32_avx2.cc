// The avx2 and avx512 builds of the float depthwise kernel (depthwise_f32_internal.h): the same
// multiplies and adds as the portable build, 8 wide in ymm or 16 wide in zmm registers (no FMA
// contraction: -ffp-contract=off everywhere).
#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels::depthwise_f32 {

__attribute__((target("avx2"))) void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias,
                                             const Clamp& clamp, float* y, float* plane) {
  Run<v8f>(g, x, w, bias, clamp, y, plane);
}

__attribute__((target("avx512f"))) void RunAvx512(const ConvGeometry& g, const float* x, const float* w, float bias,
                                                 const Clamp& clamp, float* y, float* plane) {
  Run<v16f>(g, x, w, bias, clamp, y, plane);
}

}  // namespace quantkit::kernels::depthwise_f32
