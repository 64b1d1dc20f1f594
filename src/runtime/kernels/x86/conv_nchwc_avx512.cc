// AVX-512 build of kernels::ConvNchwcRows: FB output blocks (16 channels each) x P output pixels
// of one row in 16 * FB * P accumulators (4 x 6, 3 x 8, 2 x 12 or 1 x 16 registers); per input
// channel, FB weight rows and P broadcast input values. Interior pixels (every tap inside the
// input row) run P at a time without bounds checks; border pixels two at a time, each skipping
// its own taps outside. All skip the taps of rows outside the input, so every pixel gets the
// portable build's sum.
#include <immintrin.h>

#include <algorithm>
#include <utility>

#include "runtime/kernels/conv_nchwc.h"
#include "runtime/kernels/conv_nchwc_internal.h"

namespace quantkit::kernels::conv_nchwc {
namespace {

constexpr int64_t B = kNchwcBlock;

struct Row {
  const ConvGeometry* g;
  const float* x;         // image, [Cb][IH][IW][IB] (IB = 16, or 1: NCHW)
  const float* w;         // the group's weights: [Cb][KH][KW][IB in][FB * 16 out]
  int64_t cb0, cb1;       // the input blocks of this pass
  bool first, last;       // first pass: the sums start at 0 (else from y); last: the epilogue
  int64_t oy;
  const float* bias;      // first channel of the group, or null
  const float* residual;  // row oy of the group's first block, or null
  float* y;               // row oy of the group's first block
  int64_t y_ob;           // floats between output blocks of y
  int64_t res_ob;         // and of the residual
  const float* clamp;
};

// The sums of pixels ox(0) .. ox(P-1): 0 on the first pass, else the partial sums in y.
template <int FB, int P, typename Ox>
__attribute__((target("avx512f"), always_inline)) inline void StartSums(const Row& r, __m512 (&acc)[FB][P], Ox ox) {
#pragma GCC unroll 4
  for (int f = 0; f < FB; ++f)
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      acc[f][p] = r.first ? _mm512_setzero_ps() : _mm512_loadu_ps(r.y + f * r.y_ob + ox(p) * B);
    }
}

// After a pass: the partial sums to y, or on the last pass y = sum + bias (+ residual), clamped.
template <int FB, int P, typename Ox>
__attribute__((target("avx512f"), always_inline)) inline void FinishSums(const Row& r, __m512 (&acc)[FB][P], Ox ox) {
  if (!r.last) {  // the partial sums, continued by the next pass (stored exactly)
#pragma GCC unroll 4
    for (int f = 0; f < FB; ++f)
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) _mm512_storeu_ps(r.y + f * r.y_ob + ox(p) * B, acc[f][p]);
    return;
  }
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(r.clamp ? r.clamp[0] : 0.f), hi = _mm512_set1_ps(r.clamp ? r.clamp[1] : 0.f);
#pragma GCC unroll 4
  for (int f = 0; f < FB; ++f) {
    const __m512 bv = r.bias ? _mm512_loadu_ps(r.bias + f * B) : _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      const int64_t at = f * r.y_ob + ox(p) * B;
      __m512 v = _mm512_add_ps(acc[f][p], bv);
      if (r.residual) v = _mm512_add_ps(v, _mm512_loadu_ps(r.residual + f * r.res_ob + ox(p) * B));
      if (r.clamp) v = _mm512_maskz_min_ps(kAll, hi, _mm512_maskz_max_ps(kAll, lo, v));
      _mm512_storeu_ps(r.y + at, v);
    }
  }
}

// SW: the column stride when 1 or 2 (every input and weight address a constant offset from two
// base pointers), 0 for any stride (read from the geometry).
template <int FB, int P, bool kBorder, int SW, int IB>
__attribute__((target("avx512f"))) void Pixels(const Row& r, int64_t ox0) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = SW > 0 ? SW : g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  __m512 acc[FB][P];
  const auto ox = [ox0](int p) { return ox0 + p; };
  StartSums<FB, P>(r, acc, ox);
  const int64_t xstep = sw * IB;  // floats between the P pixels' inputs
  for (int64_t cb = r.cb0; cb < r.cb1; ++cb) {
    const float* xc = r.x + cb * IH * IW * IB;
    const float* wc = r.w + cb * KH * KW * IB * FB * B;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t iy = r.oy * sh - ph + kh * dh;
      if (iy < 0 || iy >= IH) continue;
      const float* xr = xc + iy * IW * IB;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ix = ox0 * sw - pw + kw * dw;
        if constexpr (kBorder) {
          if (ix < 0 || ix >= IW) continue;
        }
        const float* xp = xr + ix * IB;
        const float* wt = wc + (kh * KW + kw) * IB * FB * B;
#pragma GCC unroll 16
        for (int i = 0; i < IB; ++i) {
          __m512 wv[FB];
#pragma GCC unroll 4
          for (int f = 0; f < FB; ++f) wv[f] = _mm512_load_ps(wt + (i * FB + f) * B);
#pragma GCC unroll 16
          for (int p = 0; p < P; ++p) {
            const __m512 xv = _mm512_set1_ps(xp[p * xstep + i]);
#pragma GCC unroll 4
            for (int f = 0; f < FB; ++f) acc[f][p] = _mm512_fmadd_ps(xv, wv[f], acc[f][p]);
          }
        }
      }
    }
  }
  FinishSums<FB, P>(r, acc, ox);
}

// The taps of one (input block, kh, kw) for two border pixels, kValid: which of them read a
// column inside the input (the others skip the tap, as the portable build).
template <int FB, int IB, unsigned kValid>
__attribute__((target("avx512f"), always_inline)) inline void PairTap(__m512 (&acc)[FB][2], const float* x0,
                                                                      const float* x1, const float* wt) {
#pragma GCC unroll 16
  for (int i = 0; i < IB; ++i) {
    __m512 wv[FB];
#pragma GCC unroll 4
    for (int f = 0; f < FB; ++f) wv[f] = _mm512_load_ps(wt + (i * FB + f) * B);
    if constexpr (kValid & 1) {
      const __m512 xv = _mm512_set1_ps(x0[i]);
#pragma GCC unroll 4
      for (int f = 0; f < FB; ++f) acc[f][0] = _mm512_fmadd_ps(xv, wv[f], acc[f][0]);
    }
    if constexpr (kValid & 2) {
      const __m512 xv = _mm512_set1_ps(x1[i]);
#pragma GCC unroll 4
      for (int f = 0; f < FB; ++f) acc[f][1] = _mm512_fmadd_ps(xv, wv[f], acc[f][1]);
    }
  }
}

// Two border pixels (anywhere in the row) at once, each skipping its own taps outside the input:
// 2 FB accumulators in flight, where one pixel alone (FB) leaves the FMA latency exposed (a 7-wide
// map has 2 border pixels in 7). The portable build's sums.
template <int FB, int IB>
__attribute__((target("avx512f"))) void BorderPair(const Row& r, int64_t ox_a, int64_t ox_b) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  __m512 acc[FB][2];
  const auto ox = [ox_a, ox_b](int p) { return p == 0 ? ox_a : ox_b; };
  StartSums<FB, 2>(r, acc, ox);
  for (int64_t cb = r.cb0; cb < r.cb1; ++cb) {
    const float* xc = r.x + cb * IH * IW * IB;
    const float* wc = r.w + cb * KH * KW * IB * FB * B;
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t iy = r.oy * sh - ph + kh * dh;
      if (iy < 0 || iy >= IH) continue;
      const float* xr = xc + iy * IW * IB;
      for (int64_t kw = 0; kw < KW; ++kw) {
        const int64_t ia = ox_a * sw - pw + kw * dw, ib = ox_b * sw - pw + kw * dw;
        const unsigned valid = (ia >= 0 && ia < IW ? 1u : 0u) | (ib >= 0 && ib < IW ? 2u : 0u);
        const float* x0 = xr + (valid & 1 ? ia : 0) * IB;
        const float* x1 = xr + (valid & 2 ? ib : 0) * IB;
        const float* wt = wc + (kh * KW + kw) * IB * FB * B;
        switch (valid) {
          case 3: PairTap<FB, IB, 3>(acc, x0, x1, wt); break;
          case 2: PairTap<FB, IB, 2>(acc, x0, x1, wt); break;
          case 1: PairTap<FB, IB, 1>(acc, x0, x1, wt); break;
          default: break;
        }
      }
    }
  }
  FinishSums<FB, 2>(r, acc, ox);
}

using PixelsFn = void (*)(const Row&, int64_t);

// Interior pixels per call for FB output blocks: about 24 accumulators (FB * P), so that the FMA
// latency stays hidden and each weight vector is reused P times.
constexpr int MaxPixels(int FB) { return FB == 1 ? 16 : FB == 2 ? 12 : FB == 3 ? 8 : 6; }

template <int FB, int SW, int IB, int... Ps>
PixelsFn InteriorFnOf(int p, std::integer_sequence<int, Ps...>) {
  static constexpr PixelsFn kByCount[] = {&Pixels<FB, Ps + 1, false, SW, IB>...};
  return kByCount[p - 1];
}

// The interior kernel for p = 1 .. MaxPixels(FB) pixels.
template <int FB, int SW, int IB>
PixelsFn InteriorFn(int p) {
  return InteriorFnOf<FB, SW, IB>(p, std::make_integer_sequence<int, MaxPixels(FB)>{});
}

template <int FB, int SW, int IB>
void RowOf(const Row& r, int64_t lo, int64_t hi, int64_t ow) {
  constexpr int P = MaxPixels(FB);
  int64_t ox = lo;
  for (; ox + P <= hi; ox += P) Pixels<FB, P, false, SW, IB>(r, ox);
  if (ox < hi) InteriorFn<FB, SW, IB>(static_cast<int>(hi - ox))(r, ox);
  // The border pixels [0, lo) and [hi, ow) in pairs (a left one with a right one where both exist).
  int64_t pending = -1;
  auto border = [&](int64_t b) {
    if (pending < 0) {
      pending = b;
      return;
    }
    BorderPair<FB, IB>(r, pending, b);
    pending = -1;
  };
  for (int64_t b = 0; b < lo; ++b) border(b);
  for (int64_t b = hi; b < ow; ++b) border(b);
  if (pending >= 0) Pixels<FB, 1, true, SW, IB>(r, pending);
}

template <int FB, int IB>
void RowOfStride(const Row& r, int64_t lo, int64_t hi, int64_t ow) {
  switch (r.g->stride[1]) {
    case 1: return RowOf<FB, 1, IB>(r, lo, hi, ow);
    case 2: return RowOf<FB, 2, IB>(r, lo, hi, ow);
    default: return RowOf<FB, 0, IB>(r, lo, hi, ow);
  }
}

template <int IB>
void RowOfGroup(const Row& r, int64_t fb, int64_t lo, int64_t hi, int64_t ow) {
  switch (fb) {
    case 1: return RowOfStride<1, IB>(r, lo, hi, ow);
    case 2: return RowOfStride<2, IB>(r, lo, hi, ow);
    case 3: return RowOfStride<3, IB>(r, lo, hi, ow);
    default: return RowOfStride<4, IB>(r, lo, hi, ow);
  }
}

}  // namespace

void RowsAvx512(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1) {
  // This build loads a group's 4 weight rows of a channel together (kGroupRows); weights packed
  // for another ISA (kBlockMajor) take the AVX2 build, which every AVX-512 CPU runs (the same bits).
  if (a.w_layout != NchwcWeightLayout::kGroupRows) return RowsAvx2(a, group, oy0, oy1);
  const ConvGeometry& g = *a.g;
  const int64_t ib = a.plain_input ? 1 : B;  // channels per input block
  const int64_t OH = g.out[0], OW = g.out[1], Cb = a.C / ib, Mb = a.M / B;
  const int64_t ob0 = group * kNchwcOutputBlocksPerGroup;
  const int64_t fb = std::min(Mb - ob0, kNchwcOutputBlocksPerGroup);
  int64_t lo = 0, hi = 0;
  InteriorColumns(g, &lo, &hi);
  Row r;
  r.g = &g;
  r.x = a.x;
  r.w = a.w + ob0 * a.C * g.kernel[0] * g.kernel[1] * B;
  r.bias = a.bias ? a.bias + ob0 * B : nullptr;
  r.y_ob = a.y_block_stride > 0 ? a.y_block_stride : OH * OW * B;
  r.res_ob = OH * OW * B;  // the residual keeps the whole image's layout
  r.clamp = a.clamp_lo_hi;
  // Passes over the input blocks whose weights (KH KW 16 x 16 fb floats per block) fill about a
  // third of L1, so they stay there across the rows' pixels; the sums go to y between passes.
  const int64_t block_bytes = g.kernel[0] * g.kernel[1] * ib * B * fb * 4;
  const int64_t per_pass = std::max<int64_t>(1, (16 << 10) / block_bytes);
  // A 1x1, stride-1, unpadded conv maps pixel p of the rows [oy0, oy1) to input pixel p of the
  // same rows: the rows are one span, 6 pixels at a time across row ends (a 7-wide row alone
  // would leave one pixel of 7 to a 4-accumulator call).
  const bool span = g.kernel[0] == 1 && g.kernel[1] == 1 && g.stride[0] == 1 && g.stride[1] == 1 &&
                    OH == g.in[0] && OW == g.in[1] && a.y_block_stride == 0;
  for (int64_t cb0 = 0; cb0 < Cb; cb0 += per_pass) {
    r.cb0 = cb0;
    r.cb1 = std::min(Cb, cb0 + per_pass);
    r.first = cb0 == 0;
    r.last = r.cb1 == Cb;
    if (span) {
      const int64_t pixels = (oy1 - oy0) * OW;
      r.oy = oy0;
      r.y = a.y + ob0 * r.y_ob + (oy0 - a.y_row0) * OW * B;
      r.residual = a.residual ? a.residual + ob0 * r.res_ob + oy0 * OW * B : nullptr;
      if (a.plain_input) {
        RowOfGroup<1>(r, fb, 0, pixels, pixels);
      } else {
        RowOfGroup<B>(r, fb, 0, pixels, pixels);
      }
      continue;
    }
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      r.oy = oy;
      r.y = a.y + ob0 * r.y_ob + (oy - a.y_row0) * OW * B;
      r.residual = a.residual ? a.residual + ob0 * r.res_ob + oy * OW * B : nullptr;
      if (a.plain_input) {
        RowOfGroup<1>(r, fb, lo, hi, OW);
      } else {
        RowOfGroup<B>(r, fb, lo, hi, OW);
      }
    }
  }
}

}  // namespace quantkit::kernels::conv_nchwc

// ------------------------------------------------------------------- depthwise, NCHW16c

namespace quantkit::kernels::conv_nchwc {
namespace {

// P output pixels of one row from ox0, each tap one vector FMA per pixel in (kh, kw) order. Rows
// outside the input add w * 0 (as the NCHW kernels' zero padding); kBorder: columns outside too
// (checked per pixel), else every column is inside. SW: the column stride if 1 or 2, 0 for any.
template <int P, bool kBorder, int SW>
__attribute__((target("avx512f"))) void DepthwisePixels(const DepthwiseRow& r, int64_t ox0) {
  const ConvGeometry& g = *r.g;
  const int64_t IH = g.in[0], IW = g.in[1], KH = g.kernel[0], KW = g.kernel[1];
  const int64_t sh = g.stride[0], sw = SW > 0 ? SW : g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ph = g.pad_begin[0], pw = g.pad_begin[1];
  const __m512 zero = _mm512_setzero_ps();
  const __m512 bv = r.bias ? _mm512_loadu_ps(r.bias) : zero;
  __m512 acc[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) acc[p] = bv;
  for (int64_t kh = 0; kh < KH; ++kh) {
    const int64_t iy = r.oy * sh - ph + kh * dh;
    const bool row_inside = iy >= 0 && iy < IH;
    const float* xr = row_inside ? r.x + iy * IW * B : r.x;
    for (int64_t kw = 0; kw < KW; ++kw) {
      const __m512 wv = _mm512_load_ps(r.w + (kh * KW + kw) * B);
      const int64_t ix = ox0 * sw - pw + kw * dw;
      if (!row_inside) {
#pragma GCC unroll 8
        for (int p = 0; p < P; ++p) acc[p] = _mm512_fmadd_ps(wv, zero, acc[p]);
        continue;
      }
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) {
        const int64_t at = ix + p * sw;
        __m512 xv;
        if constexpr (kBorder) {
          xv = at >= 0 && at < IW ? _mm512_loadu_ps(xr + at * B) : zero;
        } else {
          xv = _mm512_loadu_ps(xr + at * B);
        }
        acc[p] = _mm512_fmadd_ps(wv, xv, acc[p]);
      }
    }
  }
  constexpr __mmask16 kAll = 0xFFFF;
  const __m512 lo = _mm512_set1_ps(r.clamp ? r.clamp[0] : 0.f), hi = _mm512_set1_ps(r.clamp ? r.clamp[1] : 0.f);
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
    __m512 v = acc[p];
    if (r.clamp) v = _mm512_maskz_min_ps(kAll, hi, _mm512_maskz_max_ps(kAll, lo, v));
    _mm512_storeu_ps(r.y + (ox0 + p) * B, v);
  }
}

constexpr int kDepthwisePixels = 8;

}  // namespace

void DepthwiseRowsAvx512(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1) {
  DepthwiseRows<kDepthwisePixels>(a, block, oy0, oy1, []<int P, bool kBorder, int SW>(const DepthwiseRow& r, int64_t ox) {
    DepthwisePixels<P, kBorder, SW>(r, ox);
  });
}

}  // namespace quantkit::kernels::conv_nchwc
