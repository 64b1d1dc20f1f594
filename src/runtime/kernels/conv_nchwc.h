// Float 2-D convolution (group 1) in the channel-blocked layout NCHW16c: a tensor [N, C, H, W]
// with C a multiple of 16 is stored as [N, C/16, H, W, 16], so the 16 channels of one pixel are
// one AVX-512 vector. The direct kernel reads the input in place (no im2col, no packing): each
// output pixel's 16-channel vectors accumulate broadcast input values times 16-wide weight rows.
//
// Arithmetic, per output (channel o, pixel oy, ox), the same on every build and thread count:
//   acc = 0; for input block cb, tap row kh, tap column kw (taps outside the input are skipped),
//   input channel i of the block: acc = fma(x, w, acc)
//   y = acc + bias[o]; with a residual r (same layout as y): y = y + r; then the Clip (min(max(y,
//   lo), hi), NaN and -0 pass).
// Not the bits of the im2col / Winograd paths (their own orders): a conv takes this path by its
// geometry and the ISA only (kernels::ConvNchwcSupported), never by thread count.
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::kernels {

constexpr int64_t kNchwcBlock = 16;

// The AVX-512 and AVX2 + FMA kernels are the fast ones (the AVX2 build takes a 16-channel block
// as two 8-float vectors, one output block at a time); other ISAs keep the NCHW paths (the
// portable build exists as the reference the tests compare against).
bool ConvNchwcSupported(QGemmIsa isa);

// Output blocks per kernel call (weights of 4 x 16 output channels in flight).
constexpr int64_t kNchwcOutputBlocksPerGroup = 4;

// Input blocks: 16 channels ([N, C/16, H, W, 16], C a multiple of 16), or 1 for an NCHW input of
// any channel count (a network's first conv: its output blocked, its input read in place).
// Weights [M, C, KH, KW] (M a multiple of 16), in one of two layouts; either way output block ob
// (and so group g of 4 blocks) starts at ob * C * KH * KW * 16 floats:
// - kGroupRows: groups of 4 output blocks (the last one `fb` = 1..4 blocks), [group][C/ib][KH][KW]
//   [ib in][fb * 16 out]: one input channel's weight rows for the group side by side (the AVX-512
//   build loads the 4 blocks' rows of a channel together).
// - kBlockMajor: [M/16][C/ib][KH][KW][ib in][16 out]: each block's rows one after another (the
//   AVX2 build takes one output block at a time, so it reads them as one sequential stream, which
//   the hardware prefetcher follows: 1x1 convs whose weights come from memory were 5-13% faster
//   than reading every 4th row of the group layout).
enum class NchwcWeightLayout { kGroupRows, kBlockMajor };
// The layout ConvNchwcRows is fastest with at this ISA: kGroupRows with AVX-512, else kBlockMajor.
NchwcWeightLayout NchwcWeightLayoutFor(QGemmIsa isa);
int64_t NchwcWeightOffset(int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib, int64_t ob, int64_t cb,
                          int64_t kh, int64_t kw, int64_t i, int64_t o, NchwcWeightLayout layout);
void PackNchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib,
                      NchwcWeightLayout layout, float* dst);

// Depthwise weights [C, 1, KH, KW] (C a multiple of 16) to [C/16][KH][KW][16]: one vector per
// block and tap.
void PackNchwcDepthwiseWeights(const float* w, int64_t C, int64_t KH, int64_t KW, float* dst);

// PackNchwcWeights' (or PackNchwcDepthwiseWeights') layout in 64-byte aligned memory (the
// kernels' aligned loads), made once.
class NchwcWeights {
 public:
  // The layout defaults to the one for the process's ISA (DefaultQGemmIsa).
  NchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib);
  NchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib, NchwcWeightLayout layout);
  struct Depthwise {};
  NchwcWeights(Depthwise, const float* w, int64_t C, int64_t KH, int64_t KW);
  const float* data() const { return data_.get(); }
  NchwcWeightLayout layout() const { return layout_; }  // of dense weights

 private:
  NchwcWeightLayout layout_ = NchwcWeightLayout::kGroupRows;
  void Allocate(int64_t floats);
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float, Free> data_;
};

struct NchwcConvArgs {
  const ConvGeometry* g = nullptr;  // nd == 2
  int64_t C = 0, M = 0;             // M a multiple of 16; C of 16 unless plain_input
  bool plain_input = false;         // x is [C][IH][IW] (input blocks of 1 channel)
  const float* x = nullptr;         // one image, [C/16][IH][IW][16]
  const float* w = nullptr;         // PackNchwcWeights
  NchwcWeightLayout w_layout = NchwcWeightLayout::kGroupRows;  // NchwcWeights::layout()
  const float* bias = nullptr;      // M values, or null
  const float* residual = nullptr;  // y's layout, or null
  float* y = nullptr;               // one image, [M/16][OH][OW][16] (or the rows below)
  const float* clamp_lo_hi = nullptr;
  // y holds output rows [y_row0, ...) only, y_block_stride floats per output block (0: OH OW 16,
  // the whole image); the residual keeps the whole image's layout.
  int64_t y_row0 = 0, y_block_stride = 0;
  // The last output block's channels 8-15, and the last input block's, are padding (zero weights
  // and bias: passes::BlockConvChannels): the AVX2 build skips their multiply-adds (each would add
  // an exact 0 to a sum that is never -0, so the same sums); the other builds compute them.
  bool half_last_out = false, half_last_in = false;
};

// Output-block groups of M output channels (M / 16 blocks, 4 per group).
inline int64_t NchwcGroups(int64_t M) {
  return (M / kNchwcBlock + kNchwcOutputBlocksPerGroup - 1) / kNchwcOutputBlocksPerGroup;
}

// One 16-channel block of `plane` pixels between the layouts: [16][plane] (NCHW) to [plane][16]
// (NCHW16c) and back, through kernels::TransposeFloat (16 x 16 register blocks on AVX-512).
void BlockToNchwc(const float* src, int64_t plane, float* dst, QGemmIsa isa);
void BlockFromNchwc(const float* src, int64_t plane, float* dst, QGemmIsa isa);

// Output rows [oy0, oy1) of output-block group `group` (blocks 4 * group .. + 4, fewer at the end).
void ConvNchwcRows(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1, QGemmIsa isa);

// Depthwise conv (group = C = M) on NCHW16c tensors: the 16 channels of a block are the lanes
// of one vector. The NCHW depthwise kernels' arithmetic (kernels/depthwise_f32.h), so the same
// bits as DepthwiseConv2DFloat: acc = bias; per tap (kh, kw) in order acc = fma(w, x, acc), taps
// in the padding with x = 0; then the Clip.
struct NchwcDepthwiseArgs {
  const ConvGeometry* g = nullptr;  // nd == 2
  const float* x = nullptr;         // one image, [C/16][IH][IW][16]
  const float* w = nullptr;         // PackNchwcDepthwiseWeights
  const float* bias = nullptr;      // C values, or null
  float* y = nullptr;               // one image, [C/16][OH][OW][16]
  const float* clamp_lo_hi = nullptr;
  // The block whose channels 8-15 are padding (zero weights and bias, finite inputs: each of
  // their outputs is the Clip of +0), or -1: the AVX2 build computes only its low half's taps and
  // stores the Clip of its bias for the rest (the same bits); the other builds compute it all.
  int64_t half_block = -1;
};

// Output rows [oy0, oy1) of channel block `block`.
void NchwcDepthwiseRows(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1, QGemmIsa isa);

namespace conv_nchwc {
void DepthwiseRowsPortable(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1);
void DepthwiseRowsAvx512(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1);
void DepthwiseRowsAvx2(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1);
void RowsPortable(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1);
void RowsAvx512(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1);
void RowsAvx2(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1);
// Output columns [lo, hi) whose taps all fall inside the input row (the rest are the borders).
void InteriorColumns(const ConvGeometry& g, int64_t* lo, int64_t* hi);
}  // namespace conv_nchwc

}  // namespace quantkit::kernels
