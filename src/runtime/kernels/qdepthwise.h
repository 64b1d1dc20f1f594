// Quantized depthwise 2-D convolution (one input and one output channel per group: MobileNet,
// BlazeFace, PP-LCNet), one channel at a time, exact integer arithmetic:
//   acc[oh, ow] = bias + sum_{kh, kw} (x[ih, iw] - x_zp) * w[kh, kw]        (int32, wrapping)
//   y[oh, ow]   = clamp(Requantize(acc, multiplier, y_zp), lo, hi)           (quantize.h)
// (or the sums themselves, or float(acc) * scale [+ bias]: QDepthwiseChannel)
// with padding taps contributing nothing (they read x_zp). The channel is first copied into an
// int16 plane of (x - x_zp) with the padding as zeros and the columns split by stride phase, so
// every tap is a contiguous run of the plane for every stride: the tap loops have no bounds tests
// and vectorize. The result is the same integers on every ISA (the avx2 build of the same code
// only vectorizes wider; tests compare it exactly with a direct loop).
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

struct QDepthwiseShape {
  int64_t H = 0, W = 0, KH = 1, KW = 1, OH = 0, OW = 0;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1, pad_top = 0, pad_left = 0;
};

// int16 elements of the plane scratch, and int32 elements of the row accumulator scratch.
int64_t QDepthwisePlaneElems(const QDepthwiseShape& s);
int64_t QDepthwiseRowElems(const QDepthwiseShape& s);

struct QDepthwiseChannel {
  const void* x = nullptr;  // [H, W] uint8 or int8
  bool x_signed = false;
  int32_t x_zero_point = 0;
  const int32_t* w = nullptr;  // [KH, KW], weight minus its zero point
  int32_t bias = 0;
  float multiplier = 0;
  int32_t y_zero_point = 0, y_min = 0, y_max = 255;  // y_min/y_max: the type's range or a fused Relu/Clip
  void* y = nullptr;                                 // [OH, OW] uint8 or int8
  bool y_signed = false;
  // Instead of y (ConvInteger and its fused float form, ops/quant_ops.cc): the exact sums
  // acc_out[oh, ow] = acc, or y_float[oh, ow] = float(acc) * y_scale, then + *y_bias when given
  // (two float32 operations, as Cast -> Mul -> Add), then the clamp when y_clamp.
  int32_t* acc_out = nullptr;
  float* y_float = nullptr;
  float y_scale = 0;
  const float* y_bias = nullptr;
  bool y_clamp = false;  // y_float = min(max(y_float, lo), hi) last (a fused Relu / Clip)
  float y_clamp_lo = 0, y_clamp_hi = 0;
};

// `plane` and `acc_row` are scratch of QDepthwisePlaneElems / QDepthwiseRowElems elements. isa
// picks the build (kRef: portable; kAvx2 and above: the avx2 build); the result does not depend on it.
void QDepthwiseConv2D(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc_row,
                      QGemmIsa isa);

// Small maps: 8 channels at once with the channels in the lanes (each output pixel one vector
// multiply-add per tap), where the per-channel planes' fixed costs (fill, whole 16-column blocks
// for a 7-wide row) dominate. The same outputs as QDepthwiseConv2D channel by channel. All
// channels share the shape, x's signedness and the output mode; `c` holds n <= 8 of them.
constexpr int kQDepthwiseLanes = 8;
bool QDepthwiseUseLanes(const QDepthwiseShape& s, QGemmIsa isa);
// int16 elements of the lane plane, and int32 elements of the lane accumulators; the row scratch
// is QDepthwiseRowElems.
int64_t QDepthwiseLanesPlaneElems(const QDepthwiseShape& s);
int64_t QDepthwiseLanesAccElems(const QDepthwiseShape& s);
void QDepthwiseConv2DLanes(const QDepthwiseShape& s, const QDepthwiseChannel* c, int n, int16_t* plane,
                           int32_t* acc_lanes, int32_t* row);

}  // namespace quantkit::kernels
