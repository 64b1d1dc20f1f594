#include "runtime/kernels/depthwise_f32.h"

#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels {

int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g) {
  const depthwise_f32::PlaneLayout l = depthwise_f32::Layout(g);
  return l.rows * l.row_len;
}

void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa, const float* clamp_lo_hi) {
  if (g.out[0] <= 0 || g.out[1] <= 0) return;
  depthwise_f32::Clamp clamp;
  if (clamp_lo_hi) clamp = {true, clamp_lo_hi[0], clamp_lo_hi[1]};
  if (QGemmIsaHasAvx512(isa)) return depthwise_f32::RunAvx512(g, x, w, bias, clamp, y, plane);
  static const bool fma = __builtin_cpu_supports("fma");
  if (isa == QGemmIsa::kAvx2 && fma) return depthwise_f32::RunAvx2(g, x, w, bias, clamp, y, plane);
  depthwise_f32::Run<depthwise_f32::PortableOps>(g, x, w, bias, clamp, y, plane);
}

}  // namespace quantkit::kernels
