// Winograd F(2x2, 3x3) for float 3x3, stride-1 convolutions (Lavin & Gray, 2015): each 2x2 block
// of outputs comes from a 4x4 input patch with 16 multiplies per (input, output channel) pair
// instead of 36, as 16 independent GEMMs U[p] (M x C) * V[p] (C x tiles), p = one of the 4x4
// transformed positions. The transforms below are plain float adds and halvings in a fixed order
// (no FMA: the project compiles with -ffp-contract=off), the same on every ISA build; the GEMMs are
// kernels::SgemmPacked's (the AVX2 and AVX-512 micro-kernels give the same bits). The result is
// close to the direct convolution's, not bit-equal (docs/arithmetic.md).
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

constexpr int kWinogradPositions = 16;  // 4 x 4 transformed values per tile

// u[p * M * C + m * C + c] = (G g G^T)[p] for the 3x3 filter g = w[(m * C + c) * 9 ...], computed
// in double and rounded once (the weights are transformed once, at session creation).
void WinogradF23TransformWeights(const float* w, int64_t M, int64_t C, float* u);

// The geometry of one image: input H x W, output out_h x out_w (3x3, stride 1, dilation 1), the
// output's top-left at input (-pad_top, -pad_left); tiles of 2x2 outputs, the last row / column
// of tiles partial when the output size is odd.
struct WinogradF23Shape {
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  int64_t TilesH() const { return (out_h + 1) / 2; }
  int64_t TilesW() const { return (out_w + 1) / 2; }
  int64_t Tiles() const { return TilesH() * TilesW(); }
};

// The rows of tiles [ty0, ty1) of one image x [C, in_h, in_w], every channel, into columns
// [t0, t0 + (ty1 - ty0) * TilesW()) of rows of `ld` tiles (tiles row-major from ty0; a block may
// hold several images side by side): v[p * C * ld + c * ld + t0 + t] = (B^T d B)[p] for the
// zero-padded 4x4 input patch d of tile t. `row_buf` holds WinogradF23RowBufferFloats(s) floats.
// isa: an AVX-512 level runs the AVX-512 build of the same loops (the same bits), else the
// baseline one.
int64_t WinogradF23RowBufferFloats(const WinogradF23Shape& s);
void WinogradF23TransformInput(const WinogradF23Shape& s, const float* x, int64_t C, int64_t ty0, int64_t ty1,
                               int64_t ld, int64_t t0, float* v, float* row_buf, QGemmIsa isa);

// The same rows of tiles of one image y [M, out_h, out_w], every channel, from the 16 GEMM
// results mm[p * M * ld + m * ld + t0 + t]: y = A^T mm A (the 2x2 block, clipped at the output's
// edge), plus bias[m] when given, then min(max(y, lo), hi) when clamp. `row_buf` as above.
void WinogradF23TransformOutput(const WinogradF23Shape& s, const float* mm, int64_t M, int64_t ty0, int64_t ty1,
                                int64_t ld, int64_t t0, const float* bias, bool clamp, float lo, float hi, float* y,
                                float* row_buf, QGemmIsa isa);

}  // namespace quantkit::kernels
