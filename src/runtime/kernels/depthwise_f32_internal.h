// Body of DepthwiseConv2DFloat (depthwise_f32.h), always inlined into the portable build
// (depthwise_f32.cc), the avx2 build and the avx512 build (x86/depthwise_f32_avx2.cc). Written
// once over GCC vectors: 8 wide for the portable build (SSE pairs) and avx2 (ymm), 16 wide for
// avx512 (zmm); all do the same fused multiply-adds in the same order per output, so the same
// bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/kernels/depthwise_f32.h"
#include "runtime/kernels/transpose_f32.h"

namespace quantkit::kernels::depthwise_f32 {

// The channel's phase plane (kernels::FillPhasePlane): every tap of consecutive output columns
// reads consecutive floats. Each phase holds the output width rounded up to 16 (plus the taps'
// reach), so 8- and 16-wide loads never leave the plane.
struct PlaneLayout {
  int64_t rows = 0, phase_len = 0, row_len = 0, out_cols = 0;
};

inline PlaneLayout Layout(const ConvGeometry& g) {
  PlaneLayout l;
  l.out_cols = (g.out[1] + 15) / 16 * 16;
  l.rows = (g.out[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1;
  l.phase_len = l.out_cols + (g.kernel[1] - 1) * g.dilation[1] / g.stride[1];
  l.row_len = l.phase_len * g.stride[1];
  return l;
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

// The fused Clip (com.quantkit::FusedConv): y = min(max(y, lo), hi), the Clip kernel's expression.
struct Clamp {
  bool on = false;
  float lo = 0.f, hi = 0.f;
};

// Each build is a policy: its vector type VT and MulAdd(acc, w, p): acc = fma(w, p[0..L), acc)
// per lane, one rounding (the portable build calls std::fma per lane: slow, but the same bits as
// the vector builds' FMA instructions). Vectors by reference: no ABI concerns in the portable build.
struct PortableOps {
  using VT = v8f;
  __attribute__((always_inline)) static inline void MulAdd(VT& acc, float w, const float* p) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(w, p[l], acc[l]);
  }
  // Per-lane weights (RunChannels: one channel per lane).
  __attribute__((always_inline)) static inline void MulAddV(VT& acc, const VT& w, const float* p) {
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(w[l], p[l], acc[l]);
  }
};
// The vector builds: acc + w * v, contracted into one FMA instruction by their functions'
// fp-contract=fast (x86/depthwise_f32_avx2.cc).
// clang ignores GCC's optimize attribute, so there the lanes are fused explicitly (llvm.fma, one
// FMA instruction per lane or per vector in the FMA-enabled functions): the same bits.
template <typename V>
struct VectorOps {
  using VT = V;
  __attribute__((always_inline)) static inline void MulAdd(VT& acc, float w, const float* p) {
    VT v;
    std::memcpy(&v, p, sizeof(v));
#if defined(__clang__)
    for (int l = 0; l < static_cast<int>(sizeof(VT) / sizeof(float)); ++l) acc[l] = __builtin_fmaf(w, v[l], acc[l]);
#else
    acc += w * v;
#endif
  }
  __attribute__((always_inline)) static inline void MulAddV(VT& acc, const VT& w, const float* p) {
    VT v;
    std::memcpy(&v, p, sizeof(v));
#if defined(__clang__)
    for (int l = 0; l < static_cast<int>(sizeof(VT) / sizeof(float)); ++l) acc[l] = __builtin_fmaf(w[l], v[l], acc[l]);
#else
    acc += w * v;
#endif
  }
};

// v = std::min(std::max(v, lo), hi) per lane: NaN and -0 pass as in the Clip kernel (in place:
// vectors by reference, no ABI concerns).
template <typename VT>
__attribute__((always_inline)) inline void ApplyClamp(VT& v, const Clamp& c) {
  if (!c.on) return;
  const VT m = v < c.lo ? VT{} + c.lo : v;
  v = c.hi < m ? VT{} + c.hi : m;
}

// Output rows computed together in the columns after the wide blocks: about 4 independent
// accumulators in flight (one alone waits on each add's latency).
constexpr int64_t RowsPerBlock(int64_t vectors) { return vectors >= 3 ? 1 : vectors == 2 ? 2 : 4; }

// Columns [first, ow) of output rows [oy, oy + rows): V vectors of L floats per row, rows up to
// 4 / V at once. A row's last vector may run past ow into the following rows, which are all stored
// after it (the caller stores the wide blocks after this); only a vector that would run past the
// end of the plane is stored partially.
template <typename Ops, int V, typename VT = typename Ops::VT>
__attribute__((always_inline)) inline void RestBlock(const float* plane, const PlaneLayout& l, int64_t sh,
                                                     const int64_t* off, int64_t taps, const float* w, const VT& vbias,
                                                     const Clamp& clamp, int64_t oy, int64_t rows, int64_t first,
                                                     int64_t ow, int64_t oh, float* y) {
  constexpr int L = sizeof(VT) / sizeof(float);
  constexpr int kMaxRows = 4;
  VT acc[kMaxRows][V];
  const float* row[kMaxRows];
  for (int r = 0; r < kMaxRows; ++r) {
    row[r] = plane + (oy + std::min<int64_t>(r, rows - 1)) * sh * l.row_len + first;
    for (int v = 0; v < V; ++v) acc[r][v] = vbias;
  }
  if (rows == RowsPerBlock(V)) {  // the full block: constant trip counts, all in registers
    for (int64_t t = 0; t < taps; ++t) {
      const float wt = w[t];
      for (int r = 0; r < RowsPerBlock(V); ++r)
        for (int v = 0; v < V; ++v) Ops::MulAdd(acc[r][v], wt, row[r] + off[t] + L * v);
    }
  } else {
    for (int64_t t = 0; t < taps; ++t) {
      const float wt = w[t];
      for (int r = 0; r < rows; ++r)
        for (int v = 0; v < V; ++v) Ops::MulAdd(acc[r][v], wt, row[r] + off[t] + L * v);
    }
  }
  const int64_t plane_end = oh * ow;
  for (int r = 0; r < rows; ++r) {
    const int64_t start = (oy + r) * ow + first;
    float* yr = y + start;
    const int64_t n = ow - first;
    for (int v = 0; v < V; ++v) {
      VT out = acc[r][v];
      ApplyClamp(out, clamp);
      if (L * v + L <= n || start + L * v + L <= plane_end) {
        std::memcpy(yr + L * v, &out, sizeof(VT));
      } else {
        std::memcpy(yr + L * v, &out, sizeof(float) * static_cast<size_t>(n - L * v));
      }
    }
  }
}

template <typename Ops, typename VT = typename Ops::VT>
__attribute__((always_inline)) inline void Run(const ConvGeometry& g, const float* x, const float* w, float bias,
                                               const Clamp& clamp, float* y, float* plane) {
  constexpr int L = sizeof(VT) / sizeof(float);
  const int64_t kh = g.kernel[0], kw = g.kernel[1];
  const int64_t oh = g.out[0], ow = g.out[1], sh = g.stride[0], sw = g.stride[1];
  const int64_t dh = g.dilation[0], dw = g.dilation[1];
  const PlaneLayout l = Layout(g);

  // 1. The padded, phase-split plane (its rows hold the output width rounded up to 16).
  FillPhasePlane(g, l.rows, l.phase_len, x, plane);

  // 2. Each output row: bias, then every tap in order (ky, kx), 4 vectors at a time in
  // registers, then up to 4 vectors in blocks of rows; partial vectors stored partially.
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
  const VT vbias = VT{} + bias;
  const int64_t wide = ow / (4 * L) * (4 * L);  // columns done 4 vectors at a time; the rest in blocks
  const int64_t rest_vectors = (ow - wide + L - 1) / L;
  for (int64_t oy = 0; oy < oh;) {
    const int64_t rows = std::min(RowsPerBlock(rest_vectors), oh - oy);
    switch (rest_vectors) {
      case 1: RestBlock<Ops, 1>(plane, l, sh, off, taps, w, vbias, clamp, oy, rows, wide, ow, oh, y); break;
      case 2: RestBlock<Ops, 2>(plane, l, sh, off, taps, w, vbias, clamp, oy, rows, wide, ow, oh, y); break;
      case 3: RestBlock<Ops, 3>(plane, l, sh, off, taps, w, vbias, clamp, oy, rows, wide, ow, oh, y); break;
      case 4: RestBlock<Ops, 4>(plane, l, sh, off, taps, w, vbias, clamp, oy, rows, wide, ow, oh, y); break;
      default: break;
    }
    if (wide > 0) {
      for (int64_t rr = 0; rr < rows; ++rr) {
        const float* row = plane + (oy + rr) * sh * l.row_len;
        float* yr = y + (oy + rr) * ow;
        for (int64_t ox = 0; ox < wide; ox += 4 * L) {
          VT a0 = vbias, a1 = vbias, a2 = vbias, a3 = vbias;
          for (int64_t t = 0; t < taps; ++t) {
            const float* s = row + off[t] + ox;
            const float wt = w[t];
            Ops::MulAdd(a0, wt, s);
            Ops::MulAdd(a1, wt, s + L);
            Ops::MulAdd(a2, wt, s + 2 * L);
            Ops::MulAdd(a3, wt, s + 3 * L);
          }
          ApplyClamp(a0, clamp);
          ApplyClamp(a1, clamp);
          ApplyClamp(a2, clamp);
          ApplyClamp(a3, clamp);
          std::memcpy(yr + ox, &a0, sizeof(a0));
          std::memcpy(yr + ox + L, &a1, sizeof(a1));
          std::memcpy(yr + ox + 2 * L, &a2, sizeof(a2));
          std::memcpy(yr + ox + 3 * L, &a3, sizeof(a3));
        }
      }
    }
    oy += rows;
  }
}

// Small maps, L channels at a time (one per vector lane): the channels' zero-padded inputs
// interleaved ([row][col][lane]), every output a vector of L channels (bias, then the taps in
// order (ky, kx), one fused multiply-add each: per output the same operations as Run, so the
// same bits), then back to the channels' planes. On a 7x7 map Run fills under half of a 16-wide
// vector per row, and each channel's plane costs more than its products.
struct ChannelsLayout {
  int64_t cols = 0;       // padded input columns
  int64_t band = 0;       // output rows per band
  int64_t band_rows = 0;  // padded input rows a band reads
};
// Bands of output rows whose interleaved input and output (up to 512 KB) stay in L2: 96 channels
// at 112 -> 56 stride 2 (1 MB interleaved) 0.49 -> 0.45 ms; smaller bands were slower on 56x56.
constexpr int64_t kChannelsBandFloats = 128 * 1024;
inline ChannelsLayout LayoutChannels(const ConvGeometry& g, int lanes) {
  ChannelsLayout l;
  l.cols = (g.out[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1;
  const int64_t reach = (g.kernel[0] - 1) * g.dilation[0] + 1;  // input rows of one output row
  const int64_t per_row = g.stride[0] * l.cols + g.out[1];       // floats / lane per further row
  const int64_t budget = kChannelsBandFloats / lanes - reach * l.cols - g.out[1];
  l.band = std::clamp<int64_t>(1 + (budget > 0 ? budget / per_row : 0), 1, std::max<int64_t>(g.out[0], 1));
  l.band_rows = (l.band - 1) * g.stride[0] + reach;
  return l;
}
inline int64_t ChannelsScratchElems(const ConvGeometry& g, int lanes) {
  const ChannelsLayout l = LayoutChannels(g, lanes);
  return (l.band_rows * l.cols + l.band * g.out[1] + g.kernel[0] * g.kernel[1]) * lanes;
}

// Q output positions (row oy of the band, ox .. ox+Q-1) of RunChannels: L channels each, bias then
// every tap.
template <typename Ops, int Q, typename VT = typename Ops::VT>
__attribute__((always_inline)) inline void ChannelPositions(const ChannelsLayout& l, const ConvGeometry& g,
                                                            const float* in, const float* wv, const VT& vbias,
                                                            const Clamp& clamp, int64_t oy, int64_t ox, float* out) {
  constexpr int L = sizeof(VT) / sizeof(float);
  const int64_t kh = g.kernel[0], kw = g.kernel[1], sw = g.stride[1];
  VT acc[Q];
  for (int q = 0; q < Q; ++q) acc[q] = vbias;
  const float* base = in + (oy * g.stride[0] * l.cols + ox * sw) * L;
  for (int64_t ky = 0; ky < kh; ++ky) {
    const float* row = base + ky * g.dilation[0] * l.cols * L;
    for (int64_t kx = 0; kx < kw; ++kx) {
      VT wt;
      std::memcpy(&wt, wv + (ky * kw + kx) * L, sizeof(VT));
      const float* p = row + kx * g.dilation[1] * L;
      for (int q = 0; q < Q; ++q) Ops::MulAddV(acc[q], wt, p + q * sw * L);
    }
  }
  for (int q = 0; q < Q; ++q) {
    ApplyClamp(acc[q], clamp);
    std::memcpy(out + (oy * g.out[1] + ox + q) * L, &acc[q], sizeof(VT));
  }
}

// TRANSPOSE moves the data between the channels' planes and the interleaved layout
// (kernels::TransposeFloat's builds: data movement only, the same values either way).
using TransposeFn = void (*)(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd,
                             const float* clamp_lo_hi);
template <typename Ops, TransposeFn TRANSPOSE, typename VT = typename Ops::VT>
__attribute__((always_inline)) inline void RunChannels(const ConvGeometry& g, const float* x, int64_t x_stride,
                                                       const float* w, const float* bias, int64_t channels,
                                                       const Clamp& clamp, float* y, int64_t y_stride,
                                                       float* scratch) {
  constexpr int L = sizeof(VT) / sizeof(float);
  const int64_t taps = g.kernel[0] * g.kernel[1];
  const int64_t oh = g.out[0], ow = g.out[1], sh = g.stride[0];
  const int64_t ih = g.in[0], iw = g.in[1], ph = g.pad_begin[0], pw = g.pad_begin[1];
  const ChannelsLayout l = LayoutChannels(g, L);
  float* in = scratch;                        // [band_rows][cols][L]
  float* out = in + l.band_rows * l.cols * L;  // [band * ow][L]
  float* wv = out + l.band * ow * L;           // [taps][L]
  std::memset(wv, 0, static_cast<size_t>(taps * L) * sizeof(float));
  for (int64_t ch = 0; ch < channels; ++ch) {
    for (int64_t t = 0; t < taps; ++t) wv[t * L + ch] = w[ch * taps + t];
  }
  VT vbias{};
  for (int64_t ch = 0; ch < channels; ++ch) vbias[ch] = bias ? bias[ch] : 0.f;
  const int64_t r_lo = std::max<int64_t>(0, ph), r_hi = ih + ph;  // padded rows holding input
  const int64_t c_lo = std::max<int64_t>(0, pw), c_hi = std::min(l.cols, iw + pw);
  const int64_t row_floats = l.cols * L;
  for (int64_t oy0 = 0; oy0 < oh; oy0 += l.band) {
    const int64_t rows = std::min(l.band, oh - oy0);
    // 1. Interleave the band's input rows: zeros (padding, unused lanes), then the channels' rows.
    const int64_t r0 = oy0 * sh, band_rows = (rows - 1) * sh + (l.band_rows - (l.band - 1) * sh);
    for (int64_t br = 0; br < band_rows; ++br) {
      const int64_t r = r0 + br;
      float* d = in + br * row_floats;
      if (r < r_lo || r >= r_hi || c_lo >= c_hi) {
        std::memset(d, 0, static_cast<size_t>(row_floats) * sizeof(float));
        continue;
      }
      std::memset(d, 0, static_cast<size_t>(c_lo * L) * sizeof(float));
      std::memset(d + c_hi * L, 0, static_cast<size_t>((l.cols - c_hi) * L) * sizeof(float));
      if (channels < L) {  // unused lanes: zero
        for (int64_t c = c_lo; c < c_hi; ++c) std::memset(d + c * L + channels, 0, (L - channels) * sizeof(float));
      }
      // Columns [c_lo, c_hi) of the channels' row r - ph into lanes [0, channels) of d.
      TRANSPOSE(x + (r - ph) * iw + c_lo - pw, channels, c_hi - c_lo, x_stride, d + c_lo * L, L, nullptr);
    }
    // 2. Every output position of the band: L channels at once, 4 positions side by side.
    for (int64_t by = 0; by < rows; ++by) {
      int64_t ox = 0;
      for (; ox + 4 <= ow; ox += 4) ChannelPositions<Ops, 4>(l, g, in, wv, vbias, clamp, by, ox, out);
      for (; ox < ow; ++ox) ChannelPositions<Ops, 1>(l, g, in, wv, vbias, clamp, by, ox, out);
    }
    // 3. Back to the channels' planes.
    TRANSPOSE(out, rows * ow, channels, L, y + oy0 * ow, y_stride, nullptr);
  }
}

void RunChannelsAvx2(const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias,
                     int64_t channels, const Clamp& clamp, float* y, int64_t y_stride, float* scratch);
void RunChannelsAvx512(const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias,
                       int64_t channels, const Clamp& clamp, float* y, int64_t y_stride, float* scratch);

void RunAvx2(const ConvGeometry& g, const float* x, const float* w, float bias, const Clamp& clamp, float* y,
             float* plane);
void RunAvx512(const ConvGeometry& g, const float* x, const float* w, float bias, const Clamp& clamp, float* y,
               float* plane);

}  // namespace quantkit::kernels::depthwise_f32
