// Convolution building blocks: im2col / col2im over any number of spatial dims, and a direct
// depthwise 2-D convolution. Instantiated for float and double.
#pragma once

#include <cstdint>
#include <vector>

namespace quantkit::kernels {

// Geometry of a forward convolution over `nd` spatial dims. Input position along dim d read by
// output position o and kernel tap k: o * stride[d] - pad_begin[d] + k * dilation[d] (outside
// [0, in[d]) reads zero). For ConvTranspose use the geometry of the forward conv that maps the
// transposed conv's output (as `in`) to its input (as `out`).
struct ConvGeometry {
  int nd = 0;
  std::vector<int64_t> in, out, kernel, stride, dilation, pad_begin;

  int64_t InSize() const;      // product of in
  int64_t OutSize() const;     // product of out
  int64_t KernelSize() const;  // product of kernel
  // True if this is a 1x1 (x1...) stride-1 conv without padding: col == input.
  bool IsPointwise() const;
};

// Writes the kernel_size rows of one input channel `x` (layout [in...]) for output positions
// [p0, p1): col[r * ldcol + (p - p0)], r = kernel tap index (row-major over kernel dims).
template <typename T>
void Im2ColChannel(const ConvGeometry& g, const T* x, int64_t p0, int64_t p1, T* col, int64_t ldcol);

// Padded input planes for a 2-D convolution: the input placed at (pad_top, pad_left) inside
// planes big enough that every tap of every output position lands inside (the rest holds the
// padding value). Then a packer reads taps at fixed offsets with no bounds checks.
struct PaddedPlanes {
  int64_t height = 0, width = 0;  // of each padded plane
  bool needed = false;            // false: the input itself already satisfies this (no copy)
};
PaddedPlanes PaddedPlanesFor(const ConvGeometry& g);  // g.nd == 2

// Copies `planes` planes of g.in from x into the padded layout (dst: planes x height x width).
template <typename T>
void PadPlanes(const ConvGeometry& g, const PaddedPlanes& pp, const T* x, int64_t planes, T pad, T* dst);

// The geometry of the same convolution over the padded planes (pads 0, in = the padded extent).
ConvGeometry OverPaddedPlanes(const ConvGeometry& g, const PaddedPlanes& pp);

// The im2col matrix of a 2-D convolution whose taps all land inside its input (see PaddedPlanes)
// over channels x[c] (planes of g.InSize()), rows k = c * KH * KW + ky * KW + kx in [k0, k0+kc),
// output positions [p0, p0+np), written in the packed GEMM panel layout
// (kernels::SgemmPanelPacker): element (k, p) at dst[((p - p0) / nr) * kc * nr + (k - k0) * nr +
// (p - p0) % nr]; the last sliver's columns past p0 + np are zero.
void Im2ColPanel2D(const ConvGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t p0, int64_t np, int nr,
                   float* dst);

// Adjoint of Im2ColChannel for output positions [p0, p1): y[in position] += col[r * ldcol + p - p0].
template <typename T>
void Col2ImChannelAdd(const ConvGeometry& g, const T* col, int64_t ldcol, int64_t p0, int64_t p1, T* y);

// Direct 2-D convolution of one channel plane x[ih, iw] with one filter w[kh, kw] plus bias into
// y[oh, ow] (geometry g with nd == 2). For depthwise convolution.
template <typename T>
void DepthwiseConv2DChannel(const ConvGeometry& g, const T* x, const T* w, T bias, T* y);

}  // namespace quantkit::kernels
