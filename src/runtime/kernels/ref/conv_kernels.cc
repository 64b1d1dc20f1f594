// im2col / col2im / direct depthwise convolution (see conv_kernels.h).
#include "runtime/kernels/ref/conv_kernels.h"

#include "runtime/kernels/qgemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace quantkit::kernels {
namespace {

// ceil(a / b) for b > 0 and any sign of a.
inline int64_t CeilDiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Output positions o in [lo, hi) read an in-bounds input along a dim: 0 <= o*s + base < in.
inline void ValidRange(int64_t base, int64_t s, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  *lo = std::clamp<int64_t>(CeilDiv(-base, s), 0, out);
  *hi = std::clamp<int64_t>(CeilDiv(in - base, s), *lo, out);
}

int64_t Product(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// Walks the output rows (all dims but the last) of positions [p0, p1) for kernel tap `kidx`, and
// calls fn(in_offset_of_row or -1 if the row is out of bounds, first_last_dim_pos, len, col_pos).
template <typename F>
void ForEachOutputRow(const ConvGeometry& g, const std::vector<int64_t>& kidx,
                      const std::vector<int64_t>& in_strides, int64_t p0, int64_t p1, F&& fn) {
  const int nd = g.nd;
  const int64_t ow = g.out[nd - 1];
  int64_t p = p0;
  while (p < p1) {
    int64_t q = p / ow;
    const int64_t ol = p % ow;
    const int64_t len = std::min(ow - ol, p1 - p);
    int64_t off = 0;
    bool valid = true;
    for (int d = nd - 2; d >= 0; --d) {
      const int64_t od = q % g.out[d];
      q /= g.out[d];
      const int64_t id = od * g.stride[d] - g.pad_begin[d] + kidx[d] * g.dilation[d];
      if (id < 0 || id >= g.in[d]) {
        valid = false;
        break;
      }
      off += id * in_strides[d];
    }
    fn(valid ? off : -1, ol, len, p - p0);
    p += len;
  }
}

std::vector<int64_t> InStrides(const ConvGeometry& g) {
  std::vector<int64_t> s(g.nd, 1);
  for (int d = g.nd - 1; d > 0; --d) s[d - 1] = s[d] * g.in[d];
  return s;
}

void NextIndex(std::vector<int64_t>& idx, const std::vector<int64_t>& dims) {
  for (size_t d = dims.size(); d-- > 0;) {
    if (++idx[d] < dims[d]) return;
    idx[d] = 0;
  }
}

}  // namespace

int64_t ConvGeometry::InSize() const { return Product(in); }
int64_t ConvGeometry::OutSize() const { return Product(out); }
int64_t ConvGeometry::KernelSize() const { return Product(kernel); }

bool ConvGeometry::IsPointwise() const {
  for (int d = 0; d < nd; ++d) {
    if (kernel[d] != 1 || stride[d] != 1 || pad_begin[d] != 0 || in[d] != out[d]) return false;
  }
  return true;
}

template <typename T>
void Im2ColChannel(const ConvGeometry& g, const T* x, int64_t p0, int64_t p1, T* col, int64_t ldcol) {
  const int nd = g.nd;
  const std::vector<int64_t> in_strides = InStrides(g);
  const int64_t iw = g.in[nd - 1], sw = g.stride[nd - 1], ow = g.out[nd - 1];
  std::vector<int64_t> kidx(nd, 0);
  const int64_t ksize = g.KernelSize();
  for (int64_t r = 0; r < ksize; ++r, NextIndex(kidx, g.kernel)) {
    T* dst = col + r * ldcol;
    const int64_t base = -g.pad_begin[nd - 1] + kidx[nd - 1] * g.dilation[nd - 1];
    int64_t lo, hi;
    ValidRange(base, sw, iw, ow, &lo, &hi);
    ForEachOutputRow(g, kidx, in_strides, p0, p1, [&](int64_t off, int64_t ol, int64_t len, int64_t cp) {
      T* d = dst + cp;
      if (off < 0) {
        std::fill(d, d + len, T(0));
        return;
      }
      const int64_t a = std::clamp(lo, ol, ol + len), b = std::clamp(hi, a, ol + len);
      std::fill(d, d + (a - ol), T(0));
      const T* xr = x + off;
      if (sw == 1) {
        std::copy(xr + (a + base), xr + (b + base), d + (a - ol));
      } else {
        for (int64_t o = a; o < b; ++o) d[o - ol] = xr[o * sw + base];
      }
      std::fill(d + (b - ol), d + len, T(0));
    });
  }
}

void FillPhasePlane(const ConvGeometry& g, int64_t rows, int64_t phase_len, const float* x, float* dst) {
  static const bool avx512 = QGemmIsaHasAvx512(DefaultQGemmIsa());
  if (avx512) return phase_plane::FillAvx512(g, rows, phase_len, x, dst);
  phase_plane::FillPortable(g, rows, phase_len, x, dst);
}

phase_plane::PhaseColumns phase_plane::ColumnsOfPhase(const ConvGeometry& g, int64_t p, int64_t phase_len) {
  const int64_t iw = g.in[1], sw = g.stride[1];
  PhaseColumns c;
  c.first = g.pad_begin[1] - p;
  c.i_lo = std::clamp<int64_t>(c.first <= 0 ? 0 : (c.first + sw - 1) / sw, 0, phase_len);
  c.i_hi = std::clamp<int64_t>(iw + c.first > 0 ? (iw + c.first + sw - 1) / sw : 0, c.i_lo, phase_len);
  return c;
}

void phase_plane::FillPortable(const ConvGeometry& g, int64_t rows, int64_t phase_len, const float* x, float* dst) {
  const int64_t ih = g.in[0], iw = g.in[1], sw = g.stride[1], ph = g.pad_begin[0];
  const int64_t row_len = sw * phase_len;
  // Zeros everywhere first (one pass over the plane), then the input rows into place: per row
  // only copies, no small fills (called for every channel of every conv, rows are often short).
  std::memset(dst, 0, static_cast<size_t>(rows * row_len) * sizeof(float));
  const int64_t r_begin = std::max<int64_t>(0, ph), r_end = std::min(rows, ih + ph);
  for (int64_t p = 0; p < sw; ++p) {
    const PhaseColumns pc = ColumnsOfPhase(g, p, phase_len);
    const int64_t first = pc.first, i_lo = pc.i_lo, n = pc.i_hi - pc.i_lo;
    if (n <= 0) continue;
    for (int64_t r = r_begin; r < r_end; ++r) {
      float* d = dst + r * row_len + p * phase_len + i_lo;
      const float* src = x + (r - ph) * iw + i_lo * sw - first;
      if (sw == 1) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) std::memcpy(d + i, src + i, 8 * sizeof(float));  // inlined, no call
        for (; i < n; ++i) d[i] = src[i];
      } else if (sw == 2) {  // a constant stride: the compiler vectorizes the gather
        for (int64_t i = 0; i < n; ++i) d[i] = src[2 * i];
      } else {
        for (int64_t i = 0; i < n; ++i) d[i] = src[i * sw];
      }
    }
  }
}

ConvPanelPlanes ConvPanelPlanesFor(const ConvGeometry& g) {
  ConvPanelPlanes l;
  l.rows = (g.out[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1;
  l.phase_len = g.out[1] + (g.kernel[1] - 1) * g.dilation[1] / g.stride[1];
  l.row_len = l.phase_len * g.stride[1];
  l.plane_floats = l.rows * l.row_len;
  return l;
}

namespace {

// Panel rows [k0, k0+kc) for the slivers of positions [p0, p0+np) (see Im2ColPanel2D).
template <int NR>
void Im2ColPanelNr(const ConvGeometry& g, const ConvPanelPlanes& l, const float* x, int64_t k0, int64_t kc, int64_t p0,
                   int64_t np, float* dst) {
  const int64_t kw = g.kernel[1], ow = g.out[1], sh = g.stride[0], ksize = g.kernel[0] * kw;
  constexpr int64_t kTapBlock = 256;
  int64_t tap[kTapBlock];  // offset of each panel row's tap from its output position's origin
  for (int64_t pc = 0; pc < kc; pc += kTapBlock) {
    const int64_t rows = std::min(kTapBlock, kc - pc);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = k0 + pc + r, c = k / ksize, t = k % ksize;
      tap[r] = c * l.plane_floats + PhasePlaneTapOffset(g, l, t / kw, t % kw);
    }
    for (int64_t q0 = 0; q0 < np; q0 += NR) {
      const int n = static_cast<int>(std::min<int64_t>(NR, np - q0));
      // Runs of consecutive positions on one output row: positions [start[j], start[j+1]) of the
      // sliver read base[j] + i (i the position in the sliver).
      int start[NR + 1];
      int64_t base[NR];
      int runs = 0;
      for (int i = 0; i < n;) {
        const int64_t p = p0 + q0 + i, oy = p / ow, ox = p % ow;
        start[runs] = i;
        base[runs] = oy * sh * l.row_len + ox - i;
        ++runs;
        i += static_cast<int>(std::min<int64_t>(ow - ox, n - i));
      }
      start[runs] = n;
      float* d = dst + (q0 / NR) * kc * NR + pc * NR;
      if (runs == 1 && n == NR) {  // the common case: one vector per tap row
        for (int64_t r = 0; r < rows; ++r, d += NR) std::memcpy(d, x + tap[r] + base[0], NR * sizeof(float));
        continue;
      }
      // Each run copies a whole vector to its place in the row (the part past the run spills
      // into the rest of this row, overwritten by the next runs, or into the next row, written
      // next); the sliver's last row goes through a buffer, its spill has nowhere to go.
      for (int64_t r = 0; r < rows; ++r, d += NR) {
        float spill[2 * NR];
        float* out = pc + r + 1 < kc ? d : spill;
        for (int j = 0; j < runs; ++j) {
          std::memcpy(out + start[j], x + tap[r] + base[j] + start[j], NR * sizeof(float));
        }
        std::fill(out + n, out + NR, 0.f);
        if (out == spill) std::memcpy(d, spill, NR * sizeof(float));
      }
    }
  }
}

}  // namespace

void Im2ColPanel2D(const ConvGeometry& g, const ConvPanelPlanes& l, const float* planes, int64_t k0, int64_t kc,
                   int64_t p0, int64_t np, int nr, float* dst) {
  if (nr == 16) {
    Im2ColPanelNr<16>(g, l, planes, k0, kc, p0, np, dst);
  } else {
    Im2ColPanelNr<8>(g, l, planes, k0, kc, p0, np, dst);
  }
}

template <typename T>
void Col2ImChannelAdd(const ConvGeometry& g, const T* col, int64_t ldcol, int64_t p0, int64_t p1,
                      T* y) {
  const int nd = g.nd;
  const std::vector<int64_t> in_strides = InStrides(g);
  const int64_t iw = g.in[nd - 1], sw = g.stride[nd - 1], ow = g.out[nd - 1];
  std::vector<int64_t> kidx(nd, 0);
  const int64_t ksize = g.KernelSize();
  for (int64_t r = 0; r < ksize; ++r, NextIndex(kidx, g.kernel)) {
    const T* src = col + r * ldcol;
    const int64_t base = -g.pad_begin[nd - 1] + kidx[nd - 1] * g.dilation[nd - 1];
    int64_t lo, hi;
    ValidRange(base, sw, iw, ow, &lo, &hi);
    ForEachOutputRow(g, kidx, in_strides, p0, p1, [&](int64_t off, int64_t ol, int64_t len, int64_t cp) {
      if (off < 0) return;
      const T* s = src + cp;
      const int64_t a = std::clamp(lo, ol, ol + len), b = std::clamp(hi, a, ol + len);
      T* yr = y + off;
      if (sw == 1) {
        for (int64_t o = a; o < b; ++o) yr[o + base] += s[o - ol];
      } else {
        for (int64_t o = a; o < b; ++o) yr[o * sw + base] += s[o - ol];
      }
    });
  }
}

template <typename T>
void DepthwiseConv2DChannel(const ConvGeometry& g, const T* x, const T* w, T bias, T* y) {
  const int64_t ih = g.in[0], iw = g.in[1], kh = g.kernel[0], kw = g.kernel[1];
  const int64_t oh = g.out[0], ow = g.out[1], sh = g.stride[0], sw = g.stride[1];
  const int64_t dh = g.dilation[0], dw = g.dilation[1], ph = g.pad_begin[0], pw = g.pad_begin[1];
  // Valid output column range per kernel column.
  std::vector<int64_t> lo(kw), hi(kw);
  for (int64_t kx = 0; kx < kw; ++kx) ValidRange(-pw + kx * dw, sw, iw, ow, &lo[kx], &hi[kx]);
  for (int64_t oy = 0; oy < oh; ++oy) {
    T* yr = y + oy * ow;
    std::fill(yr, yr + ow, bias);
    for (int64_t ky = 0; ky < kh; ++ky) {
      const int64_t iy = oy * sh - ph + ky * dh;
      if (iy < 0 || iy >= ih) continue;
      const T* xr = x + iy * iw;
      for (int64_t kx = 0; kx < kw; ++kx) {
        const T wv = w[ky * kw + kx];
        const int64_t base = -pw + kx * dw;
        if (sw == 1) {
          if (hi[kx] > lo[kx]) {
            const T* xs = xr + (lo[kx] + base);
            T* ys = yr + lo[kx];
            const int64_t n = hi[kx] - lo[kx];
            for (int64_t i = 0; i < n; ++i) ys[i] = std::fma(wv, xs[i], ys[i]);
          }
        } else {
          for (int64_t ox = lo[kx]; ox < hi[kx]; ++ox) yr[ox] = std::fma(wv, xr[ox * sw + base], yr[ox]);
        }
      }
    }
  }
}

#define QK_INSTANTIATE_CONV(T)                                                                   \
  template void Im2ColChannel<T>(const ConvGeometry&, const T*, int64_t, int64_t, T*, int64_t); \
  template void Col2ImChannelAdd<T>(const ConvGeometry&, const T*, int64_t, int64_t, int64_t, T*);                 \
  template void DepthwiseConv2DChannel<T>(const ConvGeometry&, const T*, const T*, T, T*);
QK_INSTANTIATE_CONV(float)
QK_INSTANTIATE_CONV(double)
#undef QK_INSTANTIATE_CONV

}  // namespace quantkit::kernels
