// im2col / col2im / direct depthwise convolution (see conv_kernels.h).
#include "runtime/kernels/ref/conv_kernels.h"

#include <algorithm>
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

PaddedPlanes PaddedPlanesFor(const ConvGeometry& g) {
  PaddedPlanes pp;
  pp.height = std::max(g.pad_begin[0] + g.in[0], (g.out[0] - 1) * g.stride[0] + (g.kernel[0] - 1) * g.dilation[0] + 1);
  pp.width = std::max(g.pad_begin[1] + g.in[1], (g.out[1] - 1) * g.stride[1] + (g.kernel[1] - 1) * g.dilation[1] + 1);
  pp.needed = pp.height != g.in[0] || pp.width != g.in[1] || g.pad_begin[0] != 0 || g.pad_begin[1] != 0;
  return pp;
}

template <typename T>
void PadPlanes(const ConvGeometry& g, const PaddedPlanes& pp, const T* x, int64_t planes, T pad, T* dst) {
  const int64_t h = g.in[0], w = g.in[1], top = g.pad_begin[0], left = g.pad_begin[1];
  for (int64_t p = 0; p < planes; ++p) {
    T* d = dst + p * pp.height * pp.width;
    const T* s = x + p * h * w;
    std::fill(d, d + top * pp.width, pad);
    for (int64_t r = 0; r < h; ++r) {
      T* dr = d + (top + r) * pp.width;
      std::fill(dr, dr + left, pad);
      std::copy(s + r * w, s + (r + 1) * w, dr + left);
      std::fill(dr + left + w, dr + pp.width, pad);
    }
    std::fill(d + (top + h) * pp.width, d + pp.height * pp.width, pad);
  }
}

ConvGeometry OverPaddedPlanes(const ConvGeometry& g, const PaddedPlanes& pp) {
  ConvGeometry gp = g;
  gp.in = {pp.height, pp.width};
  gp.pad_begin = {0, 0};
  return gp;
}

void Im2ColPanel2D(const ConvGeometry& g, const float* x, int64_t k0, int64_t kc, int64_t p0, int64_t np, int nr,
                   float* dst) {
  constexpr int kMaxNr = 16;
  const int64_t iw = g.in[1], kh = g.kernel[0], kw = g.kernel[1], ow = g.out[1];
  const int64_t sh = g.stride[0], sw = g.stride[1], dh = g.dilation[0], dw = g.dilation[1];
  const int64_t ksize = kh * kw, in_size = g.InSize();
  // Offset of each row's tap from its output position's window origin, for this K block.
  int64_t tap[256];
  const int64_t kc_max = std::min<int64_t>(kc, 256);
  for (int64_t pc = 0; pc < kc; pc += kc_max) {  // K blocks above 256 rows: in pieces
    const int64_t n_rows = std::min(kc_max, kc - pc);
    for (int64_t r = 0; r < n_rows; ++r) {
      const int64_t k = k0 + pc + r, t = k % ksize;
      tap[r] = (k / ksize) * in_size + (t / kw) * dh * iw + (t % kw) * dw;
    }
    for (int64_t q0 = 0; q0 < np; q0 += nr) {
      const int64_t n = std::min<int64_t>(nr, np - q0);
      int64_t origin[kMaxNr];  // window origin of each position of this sliver
      for (int64_t i = 0; i < n; ++i) {
        const int64_t p = p0 + q0 + i;
        origin[i] = (p / ow) * sh * iw + (p % ow) * sw;
      }
      // One output row with stride 1: the sliver reads n consecutive values per tap.
      const bool contiguous = sw == 1 && (p0 + q0) / ow == (p0 + q0 + n - 1) / ow;
      float* d = dst + (q0 / nr) * kc * nr + pc * nr;
      for (int64_t r = 0; r < n_rows; ++r, d += nr) {
        const float* src = x + tap[r];
        if (contiguous && n == kMaxNr) {
          std::memcpy(d, src + origin[0], kMaxNr * sizeof(float));
        } else if (contiguous) {
          std::copy(src + origin[0], src + origin[0] + n, d);
        } else {
          for (int64_t i = 0; i < n; ++i) d[i] = src[origin[i]];
        }
        std::fill(d + n, d + nr, 0.f);
      }
    }
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
            for (int64_t i = 0; i < n; ++i) ys[i] += wv * xs[i];
          }
        } else {
          for (int64_t ox = lo[kx]; ox < hi[kx]; ++ox) yr[ox] += wv * xr[ox * sw + base];
        }
      }
    }
  }
}

#define QK_INSTANTIATE_CONV(T)                                                                   \
  template void Im2ColChannel<T>(const ConvGeometry&, const T*, int64_t, int64_t, T*, int64_t); \
  template void Col2ImChannelAdd<T>(const ConvGeometry&, const T*, int64_t, int64_t, int64_t, T*);                 \
  template void DepthwiseConv2DChannel<T>(const ConvGeometry&, const T*, const T*, T, T*);                          \
  template void PadPlanes<T>(const ConvGeometry&, const PaddedPlanes&, const T*, int64_t, T, T*);
QK_INSTANTIATE_CONV(float)
QK_INSTANTIATE_CONV(double)
template void PadPlanes<uint8_t>(const ConvGeometry&, const PaddedPlanes&, const uint8_t*, int64_t, uint8_t,
                                  uint8_t*);
#undef QK_INSTANTIATE_CONV

}  // namespace quantkit::kernels
