// Body of DepthwiseConv2DFloat (depthwise_f32.h), always inlined into the portable build
// (depthwise_f32.cc) and the avx2 build (x86/depthwise_f32_avx2.cc).
#pragma once

#include <algorithm>
#include <vector>

#include "runtime/kernels/depthwise_f32.h"

namespace quantkit::kernels::depthwise_f32 {

inline int64_t PhaseLen(const ConvGeometry& g) { return (g.in[1] + g.stride[1] - 1) / g.stride[1]; }

// Output columns [0, n) where every listed tap is valid: y[i] += w[t] * src[t][i] for t in order.
// The portable version, tap by tap over the row; the avx2 build blocks the row in registers.
__attribute__((always_inline)) inline void InteriorPortable(const float* const* src, const float* w, int64_t taps,
                                                            int64_t n, float* y) {
  for (int64_t t = 0; t < taps; ++t) {
    const float wv = w[t];
    const float* xs = src[t];
    for (int64_t i = 0; i < n; ++i) y[i] += wv * xs[i];
  }
}

// Outputs narrower than this take the reference loop (DepthwiseConv2DFloat): on short rows the
// tables and border loops here cost more than they save (measured on 14x14: 0.85x).
constexpr int64_t kBlockedMinWidth = 24;

using InteriorFn = void (*)(const float* const* src, const float* w, int64_t taps, int64_t n, float* y);

template <InteriorFn kInterior>
__attribute__((always_inline)) inline void Run(const ConvGeometry& g, const float* x, const float* w, float bias,
                                               float* y, float* plane) {
  const int64_t ih = g.in[0], iw = g.in[1], kh = g.kernel[0], kw = g.kernel[1];
  const int64_t oh = g.out[0], ow = g.out[1], sh = g.stride[0], sw = g.stride[1];
  const int64_t dh = g.dilation[0], dw = g.dilation[1], ph = g.pad_begin[0], pw = g.pad_begin[1];
  // Per-call tables, on the stack for kernels up to 64 taps (the heap beyond): this runs once per
  // channel, thousands of times per inference.
  constexpr int64_t kStackTaps = 64;
  const int64_t taps_max = kh * kw;
  int64_t stack_i64[5 * kStackTaps];
  const float* stack_ptr[2 * kStackTaps];
  float stack_w[kStackTaps];
  std::vector<int64_t> heap_i64;
  std::vector<const float*> heap_ptr;
  std::vector<float> heap_w;
  int64_t* i64 = stack_i64;
  const float** ptr = stack_ptr;
  float* tap_w = stack_w;
  if (taps_max > kStackTaps) {
    heap_i64.resize(static_cast<size_t>(5 * taps_max));
    heap_ptr.resize(static_cast<size_t>(2 * taps_max));
    heap_w.resize(static_cast<size_t>(taps_max));
    i64 = heap_i64.data(), ptr = heap_ptr.data(), tap_w = heap_w.data();
  }
  int64_t* lo = i64;                         // [kw]: valid output columns [lo, hi) per kernel column,
  int64_t* hi = i64 + taps_max;              //       those whose input column lies in [0, iw)
  int64_t* col_offset = i64 + 2 * taps_max;  // [kw]: the run of output column lo within a (plane) row
  int64_t* tap_lo = i64 + 3 * taps_max;      // [taps], per output row: the valid taps' column ranges
  int64_t* tap_hi = i64 + 4 * taps_max;
  const float** tap_src = ptr;
  const float** tap_at = ptr + taps_max;
  const int64_t phase_len = PhaseLen(g), row_len = phase_len * sw;
  for (int64_t kx = 0; kx < kw; ++kx) {
    const int64_t base = -pw + kx * dw;
    const int64_t a = base >= 0 ? 0 : (-base + sw - 1) / sw;
    const int64_t b = iw - base > 0 ? (iw - base + sw - 1) / sw : 0;
    lo[kx] = std::min(a, ow);
    hi[kx] = std::max(lo[kx], std::min(b, ow));
    const int64_t phase = ((base % sw) + sw) % sw;  // input column (ox * sw + base) is in this phase
    col_offset[kx] = sw == 1 ? lo[kx] + base : phase * phase_len + lo[kx] + (base - phase) / sw;
  }
  if (sw > 1) {  // column ix of row iy -> plane[iy * row_len + (ix % sw) * phase_len + ix / sw]
    for (int64_t iy = 0; iy < ih; ++iy) {
      const float* xr = x + iy * iw;
      float* pr = plane + iy * row_len;
      if (sw == 2) {  // constant stride: a loop the compiler vectorizes
        float* even = pr;
        float* odd = pr + phase_len;
        const int64_t pairs = iw / 2;
        for (int64_t i = 0; i < pairs; ++i) {
          even[i] = xr[2 * i];
          odd[i] = xr[2 * i + 1];
        }
        if (iw % 2) even[pairs] = xr[iw - 1];
        continue;
      }
      for (int64_t p = 0; p < sw; ++p) {
        float* dst = pr + p * phase_len;
        for (int64_t ix = p, i = 0; ix < iw; ix += sw, ++i) dst[i] = xr[ix];
      }
    }
  }
  // Per output row: the valid taps in order (weight, run pointer at output column lo, lo, hi).
  const float* rows = sw == 1 ? x : plane;
  const int64_t rows_len = sw == 1 ? iw : row_len;
  for (int64_t oy = 0; oy < oh; ++oy) {
    float* yr = y + oy * ow;
    for (int64_t ox = 0; ox < ow; ++ox) yr[ox] = bias;
    int64_t taps = 0, in_lo = 0, in_hi = ow;  // [in_lo, in_hi): columns every tap covers
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t iy = oy * sh - ph + ky * dh;
      if (iy < 0 || iy >= ih) continue;
      for (int64_t kx = 0; kx < kw; ++kx) {
        if (hi[kx] <= lo[kx]) continue;
        tap_w[taps] = w[ky * kw + kx];
        tap_src[taps] = rows + iy * rows_len + col_offset[kx];  // [i] = x[iy, (lo + i) * sw + base]
        tap_lo[taps] = lo[kx];
        tap_hi[taps] = hi[kx];
        in_lo = std::max(in_lo, lo[kx]);
        in_hi = std::min(in_hi, hi[kx]);
        ++taps;
      }
    }
    if (in_hi <= in_lo) in_lo = in_hi = 0;
    // Each column gets its taps in order either way: the border columns tap by tap, the interior
    // ones through kInterior.
    for (int64_t t = 0; t < taps; ++t) {
      const float wv = tap_w[t];
      const float* xs = tap_src[t] - tap_lo[t];  // xs[ox] for ox in [lo, hi)
      for (int64_t ox = tap_lo[t]; ox < std::min(tap_hi[t], in_lo); ++ox) yr[ox] += wv * xs[ox];
      for (int64_t ox = std::max(tap_lo[t], in_hi); ox < tap_hi[t]; ++ox) yr[ox] += wv * xs[ox];
      tap_at[t] = xs + in_lo;
    }
    if (in_hi > in_lo) kInterior(tap_at, tap_w, taps, in_hi - in_lo, yr + in_lo);
  }
}

void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane);

}  // namespace quantkit::kernels::depthwise_f32
