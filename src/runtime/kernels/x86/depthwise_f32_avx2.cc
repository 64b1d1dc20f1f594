// The avx2 build of the float depthwise kernel (depthwise_f32_internal.h): the same multiplies
// and adds as the portable build, 8 wide in ymm registers (avx2 only: no FMA contraction,
// -ffp-contract=off everywhere).
#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels::depthwise_f32 {

__attribute__((target("avx2"))) void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias,
                                             float* y, float* plane) {
  Run(g, x, w, bias, y, plane);
}

}  // namespace quantkit::kernels::depthwise_f32
