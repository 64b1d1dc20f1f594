#include "runtime/kernels/depthwise_f32.h"

#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels {

int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g) {
  const depthwise_f32::PlaneLayout l = depthwise_f32::Layout(g);
  return l.rows * l.row_len;
}

void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa) {
  if (g.out[0] <= 0 || g.out[1] <= 0) return;
  if (isa != QGemmIsa::kRef) return depthwise_f32::RunAvx2(g, x, w, bias, y, plane);
  depthwise_f32::Run(g, x, w, bias, y, plane);
}

}  // namespace quantkit::kernels
