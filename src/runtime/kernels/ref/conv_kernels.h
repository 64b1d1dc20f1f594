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

// Phase planes: a zero-padded, column-phase-split copy of a 2-D convolution's input channel.
// Padded row r holds input row r - pad_top; its padded column ix (input column ix - pad_left)
// sits at phase ix % stride_w, index ix / stride_w, and row r starts at r * row_len (row_len =
// stride_w * phase_len). Tap (ky, kx) of output (oy, ox) is then at row oy * sh + ky * dh, phase
// (kx * dw) % sw, index ox + (kx * dw) / sw: consecutive output columns read consecutive floats,
// every tap inside the plane (zeros where it pads), whatever the strides and dilations.
void FillPhasePlane(const ConvGeometry& g, int64_t rows, int64_t phase_len, const float* x, float* dst);
// Its builds (the same plane): FillPhasePlane runs the AVX-512 one when the ISA chosen for the
// process (DefaultQGemmIsa, so QUANTKIT_ISA caps it) has AVX-512, else the portable one.
namespace phase_plane {
// Phase p of a padded row: index i holds input column i * stride_w - first, inside the input row
// for i in [i_lo, i_hi) (the same for every row).
struct PhaseColumns {
  int64_t first = 0, i_lo = 0, i_hi = 0;
};
PhaseColumns ColumnsOfPhase(const ConvGeometry& g, int64_t p, int64_t phase_len);
void FillPortable(const ConvGeometry& g, int64_t rows, int64_t phase_len, const float* x, float* dst);
void FillAvx512(const ConvGeometry& g, int64_t rows, int64_t phase_len, const float* x, float* dst);
}  // namespace phase_plane

// The phase planes the float conv's panel packer reads (g.nd == 2): `plane_floats` per channel,
// channels back to back, then kConvPanelMargin floats (the packer copies a whole vector from the
// start of each run, reading up to 15 floats past its end).
struct ConvPanelPlanes {
  int64_t rows = 0, phase_len = 0, row_len = 0, plane_floats = 0;
};
constexpr int64_t kConvPanelMargin = 16;
ConvPanelPlanes ConvPanelPlanesFor(const ConvGeometry& g);

// Offset of tap (ky, kx) of output (0, 0) in a channel's phase plane; output (oy, ox) adds
// oy * stride_h * row_len + ox.
inline int64_t PhasePlaneTapOffset(const ConvGeometry& g, const ConvPanelPlanes& l, int64_t ky, int64_t kx) {
  const int64_t dx = kx * g.dilation[1];
  return ky * g.dilation[0] * l.row_len + dx % g.stride[1] * l.phase_len + dx / g.stride[1];
}

// The im2col matrix of a 2-D convolution over phase planes (planes: the group's first channel),
// rows k = c * KH * KW + ky * KW + kx in [k0, k0+kc), output positions [p0, p0+np), written in
// the packed GEMM panel layout (kernels::SgemmPanelPacker): element (k, p) at
// dst[((p - p0) / nr) * kc * nr + (k - k0) * nr + (p - p0) % nr]; the last sliver's columns past
// p0 + np are zero. A sliver's positions form runs along output rows; each tap row of a sliver is
// one vector copy per run (nr 8 or 16).
void Im2ColPanel2D(const ConvGeometry& g, const ConvPanelPlanes& l, const float* planes, int64_t k0, int64_t kc,
                   int64_t p0, int64_t np, int nr, float* dst);

// Adjoint of Im2ColChannel for output positions [p0, p1): y[in position] += col[r * ldcol + p - p0].
template <typename T>
void Col2ImChannelAdd(const ConvGeometry& g, const T* col, int64_t ldcol, int64_t p0, int64_t p1, T* y);

// Direct 2-D convolution of one channel plane x[ih, iw] with one filter w[kh, kw] plus bias into
// y[oh, ow] (geometry g with nd == 2): from bias, one fused multiply-add (std::fma) per tap inside
// the input, in (ky, kx) order; padding taps are skipped. For depthwise convolution.
template <typename T>
void DepthwiseConv2DChannel(const ConvGeometry& g, const T* x, const T* w, T bias, T* y);

}  // namespace quantkit::kernels
