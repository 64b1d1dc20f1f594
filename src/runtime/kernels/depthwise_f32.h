// Float depthwise 2-D convolution, one channel: y[oy, ox] = bias + sum over the taps inside the
// input of w[ky, kx] * x[iy, ix], in tap order (ky, kx), one multiply and one add each (no FMA),
// exactly as kernels::DepthwiseConv2DChannel<float> (the reference; tests compare bitwise). For
// strides above 1 the channel is first split into stride phases (`plane`), so every tap reads a
// contiguous run; the avx2 build runs the same operations 8 wide, the columns every tap covers in
// register blocks of 32. Outputs narrower than 24 columns take the reference loop.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::kernels {

// Floats of `plane` scratch DepthwiseConv2DFloat needs (0 for stride 1).
int64_t DepthwiseFloatPlaneElems(const ConvGeometry& g);

// g: nd == 2. isa kRef: the portable build; otherwise the avx2 build.
void DepthwiseConv2DFloat(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane,
                          QGemmIsa isa);

}  // namespace quantkit::kernels
