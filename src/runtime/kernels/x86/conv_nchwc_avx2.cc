// AVX2 + FMA build of kernels::ConvNchwcRows and NchwcDepthwiseRows, for CPUs without AVX-512
// (AMD Zen 2/3, Intel before Skylake-SP). The layout is the same NCHW16c: each 16-channel block
// is two 8-float vectors. With 16 vector registers, the dense kernel takes one output block at a
// time: 6 pixels x 2 halves = 12 accumulators, the block's two weight vectors and one broadcast
// input; the group's blocks run one after another, each re-reading the rows' inputs from cache
// (with kBlockMajor weights, each block's rows are one sequential stream). Every lane keeps the
// portable build's order (input block, kh, kw, channel; taps outside the input skipped), so the
// sums are bit-identical to the portable and AVX-512 builds. Where the last output or input block
// is half padding (NchwcConvArgs::half_last_out / _in, NchwcDepthwiseArgs::half_block: 24
// channels in two blocks of 16), the interior pixels skip the padding's multiply-adds: one vector
// of the two, 8 channels of 16 (a full output block and a half one run together, PairPixels); the
// padding's products are exact zeros, so the sums are the same.
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/conv_nchwc.h"
#include "runtime/kernels/conv_nchwc_internal.h"

namespace quantkit::kernels::conv_nchwc {
namespace {

constexpr int64_t B = kNchwcBlock;

struct BlockRow {
  const ConvGeometry* g;
  const float* x;         // image, [Cb][IH][IW][IB] (IB = 16, or 1: NCHW)
  const float* w;         // the first output block's weights: row (cb, kh, kw, i) at ((cb KH + kh) KW + kw) IB + i,
                          // rows WB * 16 floats apart (kGroupRows: the group's WB output blocks
                          // side by side; kBlockMajor: WB = 1)
  int64_t w_block;        // floats from one output block's weight rows to the next's (16 or C KH KW 16)
  bool block_major;       // kBlockMajor (WB = 1)
  int64_t cb0, cb1;       // the input blocks of this pass
  bool first, last;       // first pass: the sums start at 0 (else from y); last: the epilogue
  int64_t oy;
  const float* bias;      // the first block's 16 values, or null
  const float* residual;  // row oy of the first block, or null
  float* y;               // row oy of the first block
  int64_t y_ob, res_ob;   // floats between output blocks of y and of the residual
  const float* clamp;
  bool half_last;         // the pass's last input block has channels 8-15 padding (interior taps skip them)
};

struct Acc16 {
  __m256 lo, hi;
};

// The sum of output block j, pixel ox: 0 on the first pass, else the partial sum in y.
__attribute__((target("avx2,fma"), always_inline)) inline Acc16 StartSum(const BlockRow& r, int j, int64_t ox) {
  if (r.first) return {_mm256_setzero_ps(), _mm256_setzero_ps()};
  const float* at = r.y + j * r.y_ob + ox * B;
  return {_mm256_loadu_ps(at), _mm256_loadu_ps(at + 8)};
}

// After a pass: the partial sum to y, or on the last pass y = sum + bias (+ residual), clamped
// (min(max(v, lo), hi) with v as the NaN-passing operand, as the portable std::min/std::max).
__attribute__((target("avx2,fma"), always_inline)) inline void FinishSum(const BlockRow& r, int j, int64_t ox,
                                                                         const Acc16& acc) {
  float* at = r.y + j * r.y_ob + ox * B;
  if (!r.last) {
    _mm256_storeu_ps(at, acc.lo);
    _mm256_storeu_ps(at + 8, acc.hi);
    return;
  }
  __m256 v0 = acc.lo, v1 = acc.hi;
  if (r.bias) {
    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(r.bias + j * B));
    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(r.bias + j * B + 8));
  } else {
    v0 = _mm256_add_ps(v0, _mm256_setzero_ps());
    v1 = _mm256_add_ps(v1, _mm256_setzero_ps());
  }
  if (r.residual) {
    const float* res = r.residual + j * r.res_ob + ox * B;
    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(res));
    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(res + 8));
  }
  if (r.clamp) {
    const __m256 lo = _mm256_broadcast_ss(r.clamp), hi = _mm256_broadcast_ss(r.clamp + 1);
    v0 = _mm256_min_ps(hi, _mm256_max_ps(lo, v0));
    v1 = _mm256_min_ps(hi, _mm256_max_ps(lo, v1));
  }
  _mm256_storeu_ps(at, v0);
  _mm256_storeu_ps(at + 8, v1);
}

// One input channel's tap for NP pixels x FBK output blocks (acc[p * FBK + j]): acc += x[p] *
// w[j], both halves (kLoOnly: the low half only, the high one being padding); block j's weight
// vectors at wt + j * w_block.
template <int FBK, int NP, bool kLoOnly = false>
__attribute__((target("avx2,fma"), always_inline)) inline void Tap(Acc16* acc, const float* wt, int64_t w_block,
                                                                   const float* xp, int64_t xstep) {
  __m256 w[FBK][2];
#pragma GCC unroll 2
  for (int j = 0; j < FBK; ++j) {
    w[j][0] = _mm256_loadu_ps(wt + j * w_block);
    if (!kLoOnly) w[j][1] = _mm256_loadu_ps(wt + j * w_block + 8);
  }
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p) {
    const __m256 xv = _mm256_broadcast_ss(xp + p * xstep);
#pragma GCC unroll 2
    for (int j = 0; j < FBK; ++j) {
      acc[p * FBK + j].lo = _mm256_fmadd_ps(xv, w[j][0], acc[p * FBK + j].lo);
      if (!kLoOnly) acc[p * FBK + j].hi = _mm256_fmadd_ps(xv, w[j][1], acc[p * FBK + j].hi);
    }
  }
}

// The taps of input block cb for P interior pixels from ox0 (Pixels below), its channels
// 0 .. NI - 1 (NI = IB, or 8 for a block whose channels 8-15 are padding).
template <int NI, int P, int SW, int IB, int WB, bool kLoOnly>
__attribute__((target("avx2,fma"), always_inline)) inline void BlockTap(const BlockRow& r, Acc16* acc, int64_t cb,
                                                                        int64_t ox0) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = SW > 0 ? SW : g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  const int64_t xstep = sw * IB;
  constexpr int64_t w_row = WB * B;
  const float* xc = r.x + cb * IH * IW * IB;
  const float* wc = r.w + cb * KH * KW * IB * w_row;
  for (int64_t kh = 0; kh < KH; ++kh) {
    const int64_t iy = r.oy * sh - ph + kh * dh;
    if (iy < 0 || iy >= IH) continue;
    const float* xp = xc + (iy * IW + ox0 * sw - pw) * IB;
    const float* wt = wc + kh * KW * IB * w_row;
    for (int64_t kw = 0; kw < KW; ++kw, xp += dw * IB, wt += IB * w_row) {
#pragma GCC unroll 16
      for (int i = 0; i < NI; ++i) Tap<1, P, kLoOnly>(acc, wt + i * w_row, 0, xp + i, xstep);
    }
  }
}

// The taps of the pass's input blocks [r.cb0, r.cb1); with kHalfLast the last one's 8 real
// channels only (the same order: its padding channels come last and add exact zeros).
template <int P, int SW, int IB, int WB, bool kLoOnly, bool kHalfLast>
__attribute__((target("avx2,fma"), always_inline)) inline void BlockTaps(const BlockRow& r, Acc16* acc, int64_t ox0) {
  const int64_t full_end = kHalfLast ? r.cb1 - 1 : r.cb1;
  for (int64_t cb = r.cb0; cb < full_end; ++cb) BlockTap<IB, P, SW, IB, WB, kLoOnly>(r, acc, cb, ox0);
  if constexpr (kHalfLast) BlockTap<8, P, SW, IB, WB, kLoOnly>(r, acc, full_end, ox0);
}

// P interior pixels (every tap's column inside the input) of one row from ox0, output block 0
// of r. SW: the column stride when 1 or 2, 0 for any stride (read from the geometry). WB: the
// group's output blocks, a constant so that every weight row is a constant offset from one
// pointer (with a variable stride GCC kept 16 row pointers, spilled, per tap). kHalfLast: the channels
// of each input block taken (IB, or 8 in the pass of a last input block whose channels 8-15 are
// padding). kLoOnly: the output block's channels 8-15 are padding (their sums stay as they start).
template <int P, int SW, int IB, int WB, bool kHalfLast, bool kLoOnly>
__attribute__((target("avx2,fma"))) void Pixels(const BlockRow& r, int64_t ox0, int64_t tiles) {
  for (int64_t t = 0; t < tiles; ++t, ox0 += P) {
    Acc16 acc[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[p] = StartSum(r, 0, ox0 + p);
    BlockTaps<P, SW, IB, WB, kLoOnly, kHalfLast>(r, acc, ox0);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) FinishSum(r, 0, ox0 + p, acc[p]);
  }
}

// NP (1 or 2) border pixels (anywhere in the row; ox_b unused when NP = 1) x FBK output blocks
// at once, each pixel skipping its own taps outside the input: with 2 x 2 x 2 = 8 accumulators
// in flight the FMA latency stays hidden, where one pixel of one block has 2 (a 14-wide map has 2
// border pixels in 14, a 7-wide one 2 in 7).
template <int IB, int WB, int FBK, int NP>
__attribute__((target("avx2,fma"))) void BorderPixels(const BlockRow& r, int64_t ox_a, int64_t ox_b) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  const int64_t oxs[2] = {ox_a, NP == 2 ? ox_b : ox_a};
  Acc16 acc[NP * FBK];
#pragma GCC unroll 2
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
    for (int j = 0; j < FBK; ++j) acc[p * FBK + j] = StartSum(r, j, oxs[p]);
  constexpr int64_t w_row = WB * B;
  for (int64_t cb = r.cb0; cb < r.cb1; ++cb) {
    const float* xc = r.x + cb * IH * IW * IB;
    const float* wc = r.w + cb * KH * KW * IB * w_row;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t iy = r.oy * sh - ph + kh * dh;
      if (iy < 0 || iy >= IH) continue;
      const float* xr = xc + iy * IW * IB;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ia = oxs[0] * sw - pw + kw * dw, ib = oxs[1] * sw - pw + kw * dw;
        const bool va = ia >= 0 && ia < IW, vb = NP == 2 && ib >= 0 && ib < IW;
        const float* wt = wc + (kh * KW + kw) * IB * w_row;
        if constexpr (NP == 2) {
          if (va && vb) {
            const float* x0 = xr + ia * IB;
            const int64_t step = (ib - ia) * IB;
#pragma GCC unroll 16
            for (int i = 0; i < IB; ++i) Tap<FBK, 2>(acc, wt + i * w_row, r.w_block, x0 + i, step);
            continue;
          }
        }
        // Constant offsets into acc only (a computed one would keep the accumulators in memory).
        if (va) {
          const float* x0 = xr + ia * IB;
#pragma GCC unroll 16
          for (int i = 0; i < IB; ++i) Tap<FBK, 1>(acc, wt + i * w_row, r.w_block, x0 + i, 0);
        } else if (vb) {
          const float* x0 = xr + ib * IB;
#pragma GCC unroll 16
          for (int i = 0; i < IB; ++i) Tap<FBK, 1>(acc + (NP - 1) * FBK, wt + i * w_row, r.w_block, x0 + i, 0);
        }
      }
    }
  }
#pragma GCC unroll 2
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 2
    for (int j = 0; j < FBK; ++j) FinishSum(r, j, oxs[p], acc[p * FBK + j]);
}

constexpr int kPixels = 6;

// `tiles` calls of n pixels each from ox.
template <int SW, int IB, int WB, bool kHalfLast, bool kLoOnly>
void InteriorPixelsOf(const BlockRow& r, int64_t ox, int64_t n, int64_t tiles) {
  switch (n) {
    case 6: return Pixels<6, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
    case 5: return Pixels<5, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
    case 4: return Pixels<4, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
    case 3: return Pixels<3, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
    case 2: return Pixels<2, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
    default: return Pixels<1, SW, IB, WB, kHalfLast, kLoOnly>(r, ox, tiles);
  }
}

template <int SW, int IB, int WB, bool kLoOnly>
void InteriorPixels(const BlockRow& r, int64_t ox, int64_t n, int64_t tiles) {
  if constexpr (IB > 8) {
    if (r.half_last) return InteriorPixelsOf<SW, IB, WB, true, kLoOnly>(r, ox, n, tiles);
  }
  InteriorPixelsOf<SW, IB, WB, false, kLoOnly>(r, ox, n, tiles);
}

// NI channels of one tap for PairPixels: per channel the pair's three weight vectors, then P
// broadcast inputs.
template <int NI, int P, int64_t kWRow>
__attribute__((target("avx2,fma"), always_inline)) inline void PairTaps(__m256* a0, __m256* a1, __m256* a2,
                                                                        const float* wt, int64_t w_block,
                                                                        const float* xp, int64_t xstep) {
#pragma GCC unroll 16
  for (int i = 0; i < NI; ++i) {
    const float* wi = wt + i * kWRow;
    const __m256 w0 = _mm256_loadu_ps(wi), w1 = _mm256_loadu_ps(wi + 8), w2 = _mm256_loadu_ps(wi + w_block);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m256 xv = _mm256_broadcast_ss(xp + i + p * xstep);
      a0[p] = _mm256_fmadd_ps(xv, w0, a0[p]);
      a1[p] = _mm256_fmadd_ps(xv, w1, a1[p]);
      a2[p] = _mm256_fmadd_ps(xv, w2, a2[p]);
    }
  }
}

// P interior pixels of an output block pair whose second block's channels 8-15 are padding (24
// channels in two blocks): the first block's two vectors and the second's low one, 3 x P = 12
// accumulators (the second block alone had 6, too few to hide the FMA latency). The same taps and
// order per lane as Pixels; the second block's high half starts and ends as kLoOnly's. The tap
// walk repeats BlockTap's: one walk taking the tap body as a functor made GCC spill an
// accumulator in Pixels (1x1 1024 -> 256 at 14x14 41 -> 39 GMAC/s).
template <int P, int SW, int IB, int WB, bool kHalfLast>
__attribute__((target("avx2,fma"))) void PairPixels(const BlockRow& r, const BlockRow& r1, int64_t ox0,
                                                    int64_t tiles) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = SW > 0 ? SW : g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  const int64_t xstep = sw * IB;
  constexpr int64_t w_row = WB * B;
  const int64_t full_end = kHalfLast ? r.cb1 - 1 : r.cb1;
  for (int64_t t = 0; t < tiles; ++t, ox0 += P) {
    __m256 a0[P], a1[P], a2[P];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const Acc16 s0 = StartSum(r, 0, ox0 + p);
      a0[p] = s0.lo;
      a1[p] = s0.hi;
      a2[p] = StartSum(r1, 0, ox0 + p).lo;
    }
    for (int64_t cb = r.cb0; cb < r.cb1; ++cb) {
      const float* xc = r.x + cb * IH * IW * IB;
      const float* wc = r.w + cb * KH * KW * IB * w_row;
      const bool half = kHalfLast && cb == full_end;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t iy = r.oy * sh - ph + kh * dh;
        if (iy < 0 || iy >= IH) continue;
        const float* xp = xc + (iy * IW + ox0 * sw - pw) * IB;
        const float* wt = wc + kh * KW * IB * w_row;
        for (int64_t kw = 0; kw < KW; ++kw, xp += dw * IB, wt += IB * w_row) {
          if (half) {
            PairTaps<8, P, w_row>(a0, a1, a2, wt, r.w_block, xp, xstep);
          } else {
            PairTaps<IB, P, w_row>(a0, a1, a2, wt, r.w_block, xp, xstep);
          }
        }
      }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      FinishSum(r, 0, ox0 + p, {a0[p], a1[p]});
      FinishSum(r1, 0, ox0 + p, {a2[p], StartSum(r1, 0, ox0 + p).hi});
    }
  }
}

constexpr int kPairPixels = 4;

template <int SW, int IB, int WB, bool kHalfLast>
void PairPixelsOf(const BlockRow& r, const BlockRow& r1, int64_t ox, int64_t n, int64_t tiles) {
  switch (n) {
    case 4: return PairPixels<4, SW, IB, WB, kHalfLast>(r, r1, ox, tiles);
    case 3: return PairPixels<3, SW, IB, WB, kHalfLast>(r, r1, ox, tiles);
    case 2: return PairPixels<2, SW, IB, WB, kHalfLast>(r, r1, ox, tiles);
    default: return PairPixels<1, SW, IB, WB, kHalfLast>(r, r1, ox, tiles);
  }
}

// Calls of n + 1 pixels, then of n, over [lo, hi) in `calls` calls (the same split as one call at
// a time, largest first), each taking `run(ox, size, count)`.
template <typename Run>
inline void EvenCalls(int64_t lo, int64_t hi, int64_t calls, Run run) {
  if (calls <= 0) return;
  const int64_t n = (hi - lo) / calls, longer = (hi - lo) % calls;
  if (longer > 0) run(lo, n + 1, longer);
  if (calls > longer) run(lo + (n + 1) * longer, n, calls - longer);
}

template <int IB, int WB, int FBK>
void Borders(const BlockRow& r, int64_t lo, int64_t hi, int64_t ow) {
  // The border pixels [0, lo) and [hi, ow) in pairs (a left one with a right one where both exist).
  int64_t pending = -1;
  auto border = [&](int64_t b) {
    if (pending < 0) {
      pending = b;
      return;
    }
    BorderPixels<IB, WB, FBK, 2>(r, pending, b);
    pending = -1;
  };
  for (int64_t b = 0; b < lo; ++b) border(b);
  for (int64_t b = hi; b < ow; ++b) border(b);
  if (pending >= 0) BorderPixels<IB, WB, FBK, 1>(r, pending, 0);
}

// One row of output blocks 0 .. nb - 1 (nb = 1 or 2) of r: the interior pixels block by block,
// split evenly into calls of at most 6 (26 = 6 + 5 + 5 + 5 + 5: no short call with too few
// accumulators), then the border pixels of both blocks together. half_block: the index j of a
// block whose channels 8-15 are padding (its interior takes the low half only), or -1; a pair
// ending in one runs PairPixels, 4 pixels at a time.
template <int SW, int IB, int WB>
void RowOf(const BlockRow& r, int64_t nb, int64_t lo, int64_t hi, int64_t ow, int64_t half_block) {
  auto block_row = [&](int64_t j) {
    BlockRow rj = r;
    rj.w = r.w + j * r.w_block;
    rj.bias = r.bias ? r.bias + j * B : nullptr;
    rj.y = r.y + j * r.y_ob;
    rj.residual = r.residual ? r.residual + j * r.res_ob : nullptr;
    return rj;
  };
  if (nb == 2 && half_block == 1) {
    const BlockRow r1 = block_row(1);
    EvenCalls(lo, hi, (hi - lo + kPairPixels - 1) / kPairPixels, [&](int64_t ox, int64_t n, int64_t count) {
      if constexpr (IB > 8) {
        if (r.half_last) return PairPixelsOf<SW, IB, WB, true>(r, r1, ox, n, count);
      }
      PairPixelsOf<SW, IB, WB, false>(r, r1, ox, n, count);
    });
  } else {
    for (int64_t j = 0; j < nb; ++j) {
      const BlockRow rj = block_row(j);
      EvenCalls(lo, hi, (hi - lo + kPixels - 1) / kPixels, [&](int64_t ox, int64_t n, int64_t count) {
        if (j == half_block) return InteriorPixels<SW, IB, WB, true>(rj, ox, n, count);
        InteriorPixels<SW, IB, WB, false>(rj, ox, n, count);
      });
    }
  }
  if (lo == 0 && hi == ow) return;
  if (nb == 2) return Borders<IB, WB, 2>(r, lo, hi, ow);
  Borders<IB, WB, 1>(r, lo, hi, ow);
}

template <int IB, int WB>
void RowOfStride(const BlockRow& r, int64_t nb, int64_t lo, int64_t hi, int64_t ow, int64_t half_block) {
  switch (r.g->stride[1]) {
    case 1: return RowOf<1, IB, WB>(r, nb, lo, hi, ow, half_block);
    case 2: return RowOf<2, IB, WB>(r, nb, lo, hi, ow, half_block);
    default: return RowOf<0, IB, WB>(r, nb, lo, hi, ow, half_block);
  }
}

template <int IB>
void RowOfGroup(const BlockRow& r, int64_t fb, int64_t nb, int64_t lo, int64_t hi, int64_t ow, int64_t half_block) {
  if (r.block_major) return RowOfStride<IB, 1>(r, nb, lo, hi, ow, half_block);
  switch (fb) {
    case 1: return RowOfStride<IB, 1>(r, nb, lo, hi, ow, half_block);
    case 2: return RowOfStride<IB, 2>(r, nb, lo, hi, ow, half_block);
    case 3: return RowOfStride<IB, 3>(r, nb, lo, hi, ow, half_block);
    default: return RowOfStride<IB, 4>(r, nb, lo, hi, ow, half_block);
  }
}

}  // namespace

void RowsAvx2(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1) {
  const ConvGeometry& g = *a.g;
  const int64_t ib = a.plain_input ? 1 : B;  // channels per input block
  const int64_t OH = g.out[0], OW = g.out[1], Cb = a.C / ib, Mb = a.M / B;
  const int64_t ob0 = group * kNchwcOutputBlocksPerGroup;
  const int64_t fb = std::min(Mb - ob0, kNchwcOutputBlocksPerGroup);
  int64_t lo = 0, hi = 0;
  InteriorColumns(g, &lo, &hi);
  const float* group_w = a.w + ob0 * a.C * g.kernel[0] * g.kernel[1] * B;
  // Passes over the input blocks whose weights for two output blocks (KH KW 16 x 32 floats per
  // input block) take about 80 KB (in L2; the sums go to y between passes): on Zen 3, 3x3 convs
  // at 56x56 to 7x7 ran at 87-94% of the FMA peak with 16 KB passes, 92-96% with 80 KB (200 KB:
  // slower again), ResNet-50 107.6 -> 102.7 ms at one thread.
  const int64_t block_bytes = g.kernel[0] * g.kernel[1] * ib * B * 2 * 4;
  const int64_t per_pass = std::max<int64_t>(1, (80 << 10) / block_bytes);
  // A 1x1, stride-1, unpadded conv maps pixel p of the rows [oy0, oy1) to input pixel p of the
  // same rows: the rows are one span, 6 pixels at a time across row ends.
  const bool span = g.kernel[0] == 1 && g.kernel[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 &&
                    OH == g.in[0] && OW == g.in[1] && a.y_block_stride == 0;
  BlockRow r;
  r.g = &g;
  r.x = a.x;
  r.block_major = a.w_layout == NchwcWeightLayout::kBlockMajor;
  r.w_block = r.block_major ? a.C * g.kernel[0] * g.kernel[1] * B : B;
  r.y_ob = a.y_block_stride > 0 ? a.y_block_stride : OH * OW * B;
  r.res_ob = OH * OW * B;  // the residual keeps the whole image's layout
  r.clamp = a.clamp_lo_hi;
  // A last input block of 8 real channels ends the last pass (its interior taps 8 channels).
  const bool half_in = a.half_last_in && !a.plain_input;
  auto start_pass = [&](int64_t cb0) {
    r.cb0 = cb0;
    r.cb1 = std::min(Cb, cb0 + per_pass);
    r.half_last = half_in && r.cb1 == Cb;
    r.first = cb0 == 0;
    r.last = r.cb1 == Cb;
  };
  auto next_pass = [&](int64_t cb0) { return std::min(Cb, cb0 + per_pass); };
  // The output block (of the pair from ob) whose channels 8-15 are padding, or -1.
  auto half_block = [&](int64_t ob, int64_t nb) { return a.half_last_out && ob + nb == Mb ? nb - 1 : int64_t{-1}; };
  auto row = [&](int64_t nb, int64_t row_lo, int64_t row_hi, int64_t row_w, int64_t half) {
    if (a.plain_input) return RowOfGroup<1>(r, fb, nb, row_lo, row_hi, row_w, half);
    RowOfGroup<B>(r, fb, nb, row_lo, row_hi, row_w, half);
  };
  if (span) {
    // The rows as one span of pixels, in chunks whose inputs (a pass's input blocks) stay in L2
    // while all of the group's output blocks read them: ResNet-50's 1x1 convs swept their whole
    // input (800 KB at 56x56x64) once per output block.
    const int64_t pixels = (oy1 - oy0) * OW, pass_blocks = std::min(Cb, per_pass);
    const int64_t chunk = std::max<int64_t>(8 * kPixels, (128 << 10) / (pass_blocks * ib * 4) / kPixels * kPixels);
    for (int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      const int64_t n = std::min(chunk, pixels - p0);
      for (int64_t f = 0; f < fb; f += 2) {
        const int64_t ob = ob0 + f, nb = std::min<int64_t>(2, fb - f);
        r.w = group_w + f * r.w_block;
        r.bias = a.bias ? a.bias + ob * B : nullptr;
        r.oy = oy0;
        r.x = a.x + p0 * ib;
        r.y = a.y + ob * r.y_ob + (oy0 - a.y_row0) * OW * B + p0 * B;
        r.residual = a.residual ? a.residual + ob * r.res_ob + oy0 * OW * B + p0 * B : nullptr;
        for (int64_t cb0 = 0; cb0 < Cb; cb0 = next_pass(cb0)) {
          start_pass(cb0);
          row(nb, 0, n, n, half_block(ob, nb));
        }
      }
    }
    return;
  }
  for (int64_t f = 0; f < fb; f += 2) {  // output blocks two at a time (their border pixels together)
    const int64_t ob = ob0 + f, nb = std::min<int64_t>(2, fb - f);
    r.w = group_w + f * r.w_block;
    r.bias = a.bias ? a.bias + ob * B : nullptr;
    for (int64_t cb0 = 0; cb0 < Cb; cb0 = next_pass(cb0)) {
      start_pass(cb0);
      for (int64_t oy = oy0; oy < oy1; ++oy) {
        r.oy = oy;
        r.y = a.y + ob * r.y_ob + (oy - a.y_row0) * OW * B;
        r.residual = a.residual ? a.residual + ob * r.res_ob + oy * OW * B : nullptr;
        row(nb, lo, hi, OW, half_block(ob, nb));
      }
    }
  }
}

// ------------------------------------------------------------------- depthwise, NCHW16c

namespace {

// P output pixels of one row from ox0, each tap one FMA per half and pixel in (kh, kw) order.
// Rows outside the input add w * 0 (as the NCHW kernels' zero padding); kBorder: columns outside
// too (checked per pixel). SW: the column stride if 1 or 2, 0 for any. kLoOnly: channels 8-15 are
// padding (NchwcDepthwiseArgs::half_block): their sums stay at the bias, as every product is +-0.
template <int P, bool kBorder, int SW, bool kLoOnly = false>
__attribute__((target("avx2,fma"))) void DepthwisePixels(const DepthwiseRow& r, int64_t ox0) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = SW > 0 ? SW : g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  const __m256 zero = _mm256_setzero_ps();
  const __m256 b0 = r.bias ? _mm256_loadu_ps(r.bias) : zero, b1 = r.bias ? _mm256_loadu_ps(r.bias + 8) : zero;
  Acc16 acc[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) acc[p] = {b0, b1};
  for (int64_t kh = 0; kh < KH; ++kh) {
    const int64_t iy = r.oy * sh - ph + kh * dh;
    const bool row_inside = iy >= 0 && iy < IH;
    const float* xr = row_inside ? r.x + iy * IW * B : r.x;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const float* wt = r.w + (kh * KW + kw) * B;
      const __m256 w0 = _mm256_loadu_ps(wt), w1 = _mm256_loadu_ps(wt + 8);
      const int64_t ix = ox0 * sw - pw + kw * dw;
      if (!row_inside) {
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) {
          acc[p].lo = _mm256_fmadd_ps(w0, zero, acc[p].lo);
          if (!kLoOnly) acc[p].hi = _mm256_fmadd_ps(w1, zero, acc[p].hi);
        }
        continue;
      }
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) {
        const int64_t at = ix + p * sw;
        __m256 x0 = zero, x1 = zero;
        if (!kBorder || (at >= 0 && at < IW)) {
          x0 = _mm256_loadu_ps(xr + at * B);
          if (!kLoOnly) x1 = _mm256_loadu_ps(xr + at * B + 8);
        }
        acc[p].lo = _mm256_fmadd_ps(w0, x0, acc[p].lo);
        if (!kLoOnly) acc[p].hi = _mm256_fmadd_ps(w1, x1, acc[p].hi);
      }
    }
  }
  const __m256 lo = _mm256_set1_ps(r.clamp ? r.clamp[0] : 0.f), hi = _mm256_set1_ps(r.clamp ? r.clamp[1] : 0.f);
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    __m256 v0 = acc[p].lo, v1 = acc[p].hi;
    if (r.clamp) {
      v0 = _mm256_min_ps(hi, _mm256_max_ps(lo, v0));
      v1 = _mm256_min_ps(hi, _mm256_max_ps(lo, v1));
    }
    _mm256_storeu_ps(r.y + (ox0 + p) * B, v0);
    _mm256_storeu_ps(r.y + (ox0 + p) * B + 8, v1);
  }
}

constexpr int kDepthwisePixels = 6;

}  // namespace

void DepthwiseRowsAvx2(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1) {
  if (block == a.half_block) {
    return DepthwiseRows<kDepthwisePixels>(
        a, block, oy0, oy1,
        []<int P, bool kBorder, int SW>(const DepthwiseRow& r, int64_t ox) { DepthwisePixels<P, kBorder, SW, true>(r, ox); });
  }
  DepthwiseRows<kDepthwisePixels>(a, block, oy0, oy1, []<int P, bool kBorder, int SW>(const DepthwiseRow& r, int64_t ox) {
    DepthwisePixels<P, kBorder, SW>(r, ox);
  });
}

}  // namespace quantkit::kernels::conv_nchwc
