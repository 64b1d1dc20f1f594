// The row driver shared by the vector builds of kernels::NchwcDepthwiseRows
// (x86/conv_nchwc_avx2.cc, x86/conv_nchwc_avx512.cc): only their pixel kernels differ.
#pragma once

#include <cstdint>

#include "runtime/kernels/conv_nchwc.h"

namespace quantkit::kernels::conv_nchwc {

// One output row of one 16-channel block of a depthwise conv.
struct DepthwiseRow {
  const ConvGeometry* g;
  const float* x;      // the block's image, [IH][IW][16]
  const float* w;      // the block's taps, [KH][KW][16]
  const float* bias;   // the block's 16 values, or null
  const float* clamp;  // lo, hi, or null
  int64_t oy;
  float* y;  // row oy of the block
};

// The interior remainder of a row (n < P pixels) as one call of exactly n pixels.
template <int P, int SW, typename Kernel>
void DepthwiseRemainder(int64_t n, const DepthwiseRow& r, int64_t ox, Kernel& kernel) {
  if constexpr (P > 0) {
    if (n == P) return kernel.template operator()<P, false, SW>(r, ox);
    DepthwiseRemainder<P - 1, SW>(n, r, ox, kernel);
  }
}

template <int kPixels, int SW, typename Kernel>
void DepthwiseRowsOf(DepthwiseRow& r, const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1,
                     Kernel& kernel) {
  const ConvGeometry& g = *a.g;
  const int64_t OH = g.out[0], OW = g.out[1];
  int64_t lo = 0, hi = 0;
  InteriorColumns(g, &lo, &hi);
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    r.oy = oy;
    r.y = a.y + (block * OH + oy) * OW * kNchwcBlock;
    for (int64_t ox = 0; ox < lo; ++ox) kernel.template operator()<1, true, SW>(r, ox);
    int64_t ox = lo;
    for (; ox + kPixels <= hi; ox += kPixels) kernel.template operator()<kPixels, false, SW>(r, ox);
    DepthwiseRemainder<kPixels - 1, SW>(hi - ox, r, ox, kernel);
    for (ox = hi; ox < OW; ++ox) kernel.template operator()<1, true, SW>(r, ox);
  }
}

// Output rows [oy0, oy1) of channel block `block`: per row, the border pixels one at a time (taps
// outside the input checked), the interior ones kPixels per call, the rest in one call of its
// size. kernel.operator()<P, kBorder, SW>(row, ox) is the ISA's kernel for P pixels from ox (SW:
// the column stride when 1 or 2, 0 for any).
template <int kPixels, typename Kernel>
void DepthwiseRows(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1, Kernel kernel) {
  constexpr int64_t B = kNchwcBlock;
  const ConvGeometry& g = *a.g;
  DepthwiseRow r;
  r.g = &g;
  r.x = a.x + block * g.in[0] * g.in[1] * B;
  r.w = a.w + block * g.kernel[0] * g.kernel[1] * B;
  r.bias = a.bias ? a.bias + block * B : nullptr;
  r.clamp = a.clamp_lo_hi;
  switch (g.stride[1]) {
    case 1: return DepthwiseRowsOf<kPixels, 1>(r, a, block, oy0, oy1, kernel);
    case 2: return DepthwiseRowsOf<kPixels, 2>(r, a, block, oy0, oy1, kernel);
    default: return DepthwiseRowsOf<kPixels, 0>(r, a, block, oy0, oy1, kernel);
  }
}

}  // namespace quantkit::kernels::conv_nchwc
