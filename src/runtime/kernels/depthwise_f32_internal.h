// Body of DepthwiseConv2DFloat (depthwise_f32.h), always inlined into the portable build
// (depthwise_f32.cc) and the avx2 build (x86/depthwise_f32_avx2.cc). Written once with 8-wide
// GCC vectors: the portable build runs them as SSE pairs, the avx2 build as ymm; both do the same
// IEEE multiplies and adds in the same order (no FMA contraction: -ffp-contract=off).
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/kernels/depthwise_f32.h"

namespace quantkit::kernels::depthwise_f32 {

// The channel's phase plane (kernels::FillPhasePlane): every tap of consecutive output columns
// reads consecutive floats. Each phase holds the output width rounded up to 8 (plus the taps'
// reach), so 8-wide loads never leave the plane.
struct PlaneLayout {
  int64_t rows = 0, phase_len = 0, row_len = 0, out_cols = 0;
};

inline PlaneLayout Layout(const ConvGeometry& g) {
  PlaneLayout l;
  l.out_cols = (g.out[1] + 7) / 8 * 8;
  l.rows = (g.out[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1;
  l.phase_len = l.out_cols + (g.kernel[1] - 1) * g.dilation[1] / g.stride[1];
  l.row_len = l.phase_len * g.stride[1];
  return l;
}

typedef float v8f __attribute__((vector_size(32)));

// acc += w * p[0..8): one multiply and one add per lane (vectors by reference: no ABI concerns
// in the portable build).
__attribute__((always_inline)) inline void MulAdd8(v8f& acc, float w, const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  acc += w * v;
}

// Output rows computed together in the columns after the 32-wide blocks: about 4 independent
// accumulators in flight (one alone waits on each add's latency).
constexpr int64_t RowsPerBlock(int64_t vectors) { return vectors >= 3 ? 1 : vectors == 2 ? 2 : 4; }

// Columns [first, ow) of output rows [oy, oy + rows): V vectors of 8 per row, rows up to 4 / V at
// once. A row's last vector may run past ow into the following rows, which are all stored after
// it (the caller stores the 32-wide blocks after this); only a vector that would run past the
// end of the plane is stored partially.
template <int V>
__attribute__((always_inline)) inline void RestBlock(const float* plane, const PlaneLayout& l, int64_t sh,
                                                     const int64_t* off, int64_t taps, const float* w, const v8f& vbias,
                                                     int64_t oy, int64_t rows, int64_t first, int64_t ow, int64_t oh,
                                                     float* y) {
  constexpr int kMaxRows = 4;
  v8f acc[kMaxRows][V];
  const float* row[kMaxRows];
  for (int r = 0; r < kMaxRows; ++r) {
    row[r] = plane + (oy + std::min<int64_t>(r, rows - 1)) * sh * l.row_len + first;
    for (int v = 0; v < V; ++v) acc[r][v] = vbias;
  }
  if (rows == RowsPerBlock(V)) {  // the full block: constant trip counts, all in registers
    for (int64_t t = 0; t < taps; ++t) {
      const float wt = w[t];
      for (int r = 0; r < RowsPerBlock(V); ++r)
        for (int v = 0; v < V; ++v) MulAdd8(acc[r][v], wt, row[r] + off[t] + 8 * v);
    }
  } else {
    for (int64_t t = 0; t < taps; ++t) {
      const float wt = w[t];
      for (int r = 0; r < rows; ++r)
        for (int v = 0; v < V; ++v) MulAdd8(acc[r][v], wt, row[r] + off[t] + 8 * v);
    }
  }
  const int64_t plane_end = oh * ow;
  for (int r = 0; r < rows; ++r) {
    const int64_t start = (oy + r) * ow + first;
    float* yr = y + start;
    const int64_t n = ow - first;
    for (int v = 0; v < V; ++v) {
      if (8 * v + 8 <= n || start + 8 * v + 8 <= plane_end) {
        std::memcpy(yr + 8 * v, &acc[r][v], sizeof(v8f));
      } else {
        std::memcpy(yr + 8 * v, &acc[r][v], sizeof(float) * static_cast<size_t>(n - 8 * v));
      }
    }
  }
}

__attribute__((always_inline)) inline void Run(const ConvGeometry& g, const float* x, const float* w, float bias,
                                               float* y, float* plane) {
  const int64_t kh = g.kernel[0], kw = g.kernel[1];
  const int64_t oh = g.out[0], ow = g.out[1], sh = g.stride[0], sw = g.stride[1];
  const int64_t dh = g.dilation[0], dw = g.dilation[1];
  const PlaneLayout l = Layout(g);

  // 1. The padded, phase-split plane (its rows hold the output width rounded up to 8).
  FillPhasePlane(g, l.rows, l.phase_len, x, plane);

  // 2. Each output row: bias, then every tap in order (ky, kx), 32 columns at a time in
  // registers, then 8 at a time; the last partial 8 are stored through a small buffer.
  constexpr int64_t kStackTaps = 64;
  const int64_t taps = kh * kw;
  int64_t stack_off[kStackTaps];
  std::vector<int64_t> heap_off;
  int64_t* off = stack_off;
  if (taps > kStackTaps) {
    heap_off.resize(static_cast<size_t>(taps));
    off = heap_off.data();
  }
  for (int64_t ky = 0; ky < kh; ++ky) {
    for (int64_t kx = 0; kx < kw; ++kx) {
      off[ky * kw + kx] = ky * dh * l.row_len + (kx * dw) % sw * l.phase_len + (kx * dw) / sw;
    }
  }
  const v8f vbias = {bias, bias, bias, bias, bias, bias, bias, bias};
  const int64_t wide = ow / 32 * 32;  // columns done 32 at a time; the rest in blocks of V vectors
  const int64_t rest_vectors = (ow - wide + 7) / 8;
  for (int64_t oy = 0; oy < oh;) {
    const int64_t rows = std::min(RowsPerBlock(rest_vectors), oh - oy);
    switch (rest_vectors) {
      case 1: RestBlock<1>(plane, l, sh, off, taps, w, vbias, oy, rows, wide, ow, oh, y); break;
      case 2: RestBlock<2>(plane, l, sh, off, taps, w, vbias, oy, rows, wide, ow, oh, y); break;
      case 3: RestBlock<3>(plane, l, sh, off, taps, w, vbias, oy, rows, wide, ow, oh, y); break;
      case 4: RestBlock<4>(plane, l, sh, off, taps, w, vbias, oy, rows, wide, ow, oh, y); break;
      default: break;
    }
    if (wide > 0) {
      for (int64_t rr = 0; rr < rows; ++rr) {
        const float* row = plane + (oy + rr) * sh * l.row_len;
        float* yr = y + (oy + rr) * ow;
        for (int64_t ox = 0; ox < wide; ox += 32) {
          v8f a0 = vbias, a1 = vbias, a2 = vbias, a3 = vbias;
          for (int64_t t = 0; t < taps; ++t) {
            const float* s = row + off[t] + ox;
            const float wt = w[t];
            MulAdd8(a0, wt, s);
            MulAdd8(a1, wt, s + 8);
            MulAdd8(a2, wt, s + 16);
            MulAdd8(a3, wt, s + 24);
          }
          std::memcpy(yr + ox, &a0, sizeof(a0));
          std::memcpy(yr + ox + 8, &a1, sizeof(a1));
          std::memcpy(yr + ox + 16, &a2, sizeof(a2));
          std::memcpy(yr + ox + 24, &a3, sizeof(a3));
        }
      }
    }
    oy += rows;
  }
}

void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias, float* y, float* plane);

}  // namespace quantkit::kernels::depthwise_f32
