#include "runtime/kernels/depthwise_f32.h"

#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels {
namespace {

void InteriorRef(const float* const* src, const float* w, int64_t taps, int64_t n, float* y) {
  depthwise_f32::InteriorPortable(src, w, taps, n, y);
}

}  // namespace

int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g) {
  return g.stride[1] > 1 ? g.in[0] * depthwise_f32::PhaseLen(g) * g.stride[1] : 0;
}

void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa) {
  if (g.out[1] < depthwise_f32::kBlockedMinWidth) return DepthwiseConv2DChannel<float>(g, x, w, bias, y);
  if (isa != QGemmIsa::kRef) return depthwise_f32::RunAvx2(g, x, w, bias, y, plane);
  depthwise_f32::Run<&InteriorRef>(g, x, w, bias, y, plane);
}

}  // namespace quantkit::kernels
