// Float depthwise 2-D convolution, one channel, over the zero-padded input:
//   y[oy, ox] = bias + sum over taps (ky, kx) in order of w[ky, kx] * xpad[oy*sh + ky*dh, ox*sw + kx*dw]
// one fused multiply-add each (acc = fma(w, x, acc), from acc = bias). Padding taps add w * 0, as the im2col GEMM path does
// (so Inf/NaN weights give NaN there, and a -0 sum can become +0): otherwise the same values as
// kernels::DepthwiseConv2DChannel<float>, which skips them. The channel is first copied into a
// padded, stride-phase-split `plane` so every tap reads consecutive floats; the portable, avx2
// and avx512 builds give the same bits.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::kernels {

// Floats of `plane` scratch DepthwiseConv2DFloat needs.
int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g);

// g: nd == 2. isa kRef: the portable build (8 wide); kAvx2: ymm; kAvx512Vnni and kAmx: zmm (16 wide; only
// avx512f is used). clamp_lo_hi (or null): a fused Clip, min(max(y, lo), hi), applied before the store.
void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa, const float* clamp_lo_hi = nullptr);

// Small maps, several channels per call, one per vector lane (the same bits as
// DepthwiseConv2DFloat channel by channel). Channels per call at this ISA (16 for avx512, else 8):
int DepthwiseFloatChannelLanes(QGemmIsa isa);
// Whether the output is narrow enough for DepthwiseConv2DFloatChannels to be the faster path at isa.
bool DepthwiseFloatUseChannels(const ConvGeometry& g, QGemmIsa isa);
// Floats of `scratch` DepthwiseConv2DFloatChannels needs with `lanes` channels per call.
int64_t DepthwiseFloatChannelScratchElems(const ConvGeometry& g, int lanes);
// `channels` (<= DepthwiseFloatChannelLanes(isa)) consecutive channels: channel c reads
// x + c * x_stride, weights w + c * taps and bias[c] (bias may be null: 0), writes y + c * y_stride.
void DepthwiseConv2DFloatChannels(const ConvGeometry& g, const float* x, int64_t x_stride, const float* w,
                                  const float* bias, int64_t channels, float* y, int64_t y_stride, float* scratch,
                                  QGemmIsa isa, const float* clamp_lo_hi = nullptr);

}  // namespace quantkit::kernels
