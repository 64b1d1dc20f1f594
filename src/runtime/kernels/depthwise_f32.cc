#include "runtime/kernels/depthwise_f32.h"

#include "runtime/kernels/depthwise_f32_internal.h"

namespace quantkit::kernels {

// Output widths up to these take the channel-lane path (DepthwiseFloatUseChannels), minimums
// over 1-thread runs against the per-channel planes. AVX-512 (16 x 16 register transposes):
// 960 channels 7x7 0.143 -> 0.046 ms, 576 at 14 -> 7 stride 2 0.18 -> 0.037, 576 at 14x14
// 0.15 -> 0.086, 144 at 56x56 0.38 -> 0.31, 96 at 112 -> 56 stride 2 0.55 -> 0.49; slower at
// 112x112 (0.28 -> 0.33). The other builds transpose lane by lane: about even at 7x7, slower from 14.
constexpr int64_t kMaxChannelsWidthAvx512 = 64;
constexpr int64_t kMaxChannelsWidth = 8;

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
  if (QGemmIsaIsAvx2Fma(isa)) return depthwise_f32::RunAvx2(g, x, w, bias, clamp, y, plane);
  depthwise_f32::Run<depthwise_f32::PortableOps>(g, x, w, bias, clamp, y, plane);
}

int DepthwiseFloatChannelLanes(QGemmIsa isa) { return QGemmIsaHasAvx512(isa) ? 16 : 8; }

bool DepthwiseFloatUseChannels(const ConvGeometry& g, QGemmIsa isa) {
  return g.nd == 2 && g.out[1] <= (QGemmIsaHasAvx512(isa) ? kMaxChannelsWidthAvx512 : kMaxChannelsWidth);
}

int64_t DepthwiseFloatChannelScratchElems(const ConvGeometry& g, int lanes) {
  return depthwise_f32::ChannelsScratchElems(g, lanes);
}

void DepthwiseConv2DFloatChannels(const ConvGeometry& g, const float* x, int64_t x_stride, const float* w,
                                  const float* bias, int64_t channels, float* y, int64_t y_stride, float* scratch,
                                  QGemmIsa isa, const float* clamp_lo_hi) {
  if (g.out[0] <= 0 || g.out[1] <= 0 || channels <= 0) return;
  depthwise_f32::Clamp clamp;
  if (clamp_lo_hi) clamp = {true, clamp_lo_hi[0], clamp_lo_hi[1]};
  if (QGemmIsaHasAvx512(isa)) {
    return depthwise_f32::RunChannelsAvx512(g, x, x_stride, w, bias, channels, clamp, y, y_stride, scratch);
  }
  if (QGemmIsaIsAvx2Fma(isa)) {
    return depthwise_f32::RunChannelsAvx2(g, x, x_stride, w, bias, channels, clamp, y, y_stride, scratch);
  }
  depthwise_f32::RunChannels<depthwise_f32::PortableOps, &transpose_f32::TransposePortable>(
      g, x, x_stride, w, bias, channels, clamp, y, y_stride, scratch);
}

}  // namespace quantkit::kernels
