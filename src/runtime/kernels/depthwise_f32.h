// Float depthwise 2-D convolution, one channel, over the zero-padded input:
//   y[oy, ox] = bias + sum over taps (ky, kx) in order of w[ky, kx] * xpad[oy*sh + ky*dh, ox*sw + kx*dw]
// one multiply and one add each (no FMA). Padding taps add w * 0, as the im2col GEMM path does
// (so Inf/NaN weights give NaN there, and a -0 sum can become +0): otherwise the same values as
// kernels::DepthwiseConv2DChannel<float>, which skips them. The channel is first copied into a
// padded, stride-phase-split `plane` so every tap reads consecutive floats; the portable and
// avx2 builds give the same bits.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::kernels {

// Floats of `plane` scratch DepthwiseConv2DFloat needs.
int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g);

// g: nd == 2. isa kRef: the portable build; otherwise the avx2 build.
void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa);

}  // namespace quantkit::kernels
