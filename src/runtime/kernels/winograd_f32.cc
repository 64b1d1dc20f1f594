#include "runtime/kernels/winograd_f32.h"

#include <algorithm>

namespace quantkit::kernels {

void WinogradF23TransformWeights(const float* w, int64_t M, int64_t C, float* u) {
  const int64_t plane = M * C;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (m * C + c) * 9;
      // tmp = G g (4 x 3), G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]; then tmp G^T (4 x 4).
      double tmp[4][3];
      for (int j = 0; j < 3; ++j) {
        const double g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
        tmp[0][j] = g0;
        tmp[1][j] = 0.5 * (g0 + g1 + g2);
        tmp[2][j] = 0.5 * (g0 - g1 + g2);
        tmp[3][j] = g2;
      }
      for (int r = 0; r < 4; ++r) {
        const double t0 = tmp[r][0], t1 = tmp[r][1], t2 = tmp[r][2];
        const double row[4] = {t0, 0.5 * (t0 + t1 + t2), 0.5 * (t0 - t1 + t2), t2};
        for (int q = 0; q < 4; ++q) u[(r * 4 + q) * plane + m * C + c] = static_cast<float>(row[q]);
      }
    }
  }
}

// The transforms' bodies are written once and compiled twice, for the baseline ISA and with
// AVX-512 (the loops vectorise 16 wide): adds and subtracts only, in the same order, so both give
// the same bits. Each row of the padded input is split into its even and odd columns, so a
// tile's four columns are E[tx], O[tx], E[tx + 1], O[tx + 1]: contiguous loads.
int64_t WinogradF23RowBufferFloats(const WinogradF23Shape& s) { return 16 * (s.TilesW() + 1); }

namespace {

#define QK_WINO_INLINE __attribute__((always_inline)) inline

// One row of B^T d times B for tiles [0, n). The row is x - y (kAdd: x + y) of two input rows,
// each split into even (e*) and odd (o*) columns, so the tile's columns t0 t1 t2 t3 are
// xe[tx] - ye[tx], xo[tx] - yo[tx], xe[tx + 1] - ye[tx + 1], xo[tx + 1] - yo[tx + 1]. The row is
// not stored in between (reading it back unaligned stalled on store forwarding).
template <bool kAdd>
QK_WINO_INLINE void TileColumns(const float* __restrict xe, const float* __restrict ye, const float* __restrict xo,
                                const float* __restrict yo, float* __restrict o0, float* __restrict o1,
                                float* __restrict o2, float* __restrict o3, int64_t n) {
  auto op = [](float a, float b) { return kAdd ? a + b : a - b; };
  for (int64_t tx = 0; tx < n; ++tx) {
    const float t0 = op(xe[tx], ye[tx]), t1 = op(xo[tx], yo[tx]);
    const float t2 = op(xe[tx + 1], ye[tx + 1]), t3 = op(xo[tx + 1], yo[tx + 1]);
    o0[tx] = t0 - t2;
    o1[tx] = t1 + t2;
    o2[tx] = t2 - t1;
    o3[tx] = t1 - t3;
  }
}

// dst[q] = src[2q] for q in [0, n).
QK_WINO_INLINE void EveryOther(const float* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t q = 0; q < n; ++q) dst[q] = src[2 * q];
}

QK_WINO_INLINE void TransformInputBody(const WinogradF23Shape& s, const float* x, int64_t C, int64_t ty0, int64_t ty1,
                                       int64_t ld, int64_t t0, float* v, float* row_buf) {
  const int64_t tiles_w = s.TilesW(), plane = C * ld;
  const int64_t half = tiles_w + 1;  // even (or odd) padded columns the tiles of a row read
  float* even[4];
  float* odd[4];
  for (int i = 0; i < 4; ++i) {
    even[i] = row_buf + (2 * i) * half;
    odd[i] = row_buf + (2 * i + 1) * half;
  }
  for (int64_t c = 0; c < C; ++c) {
    const float* xc = x + c * s.in_h * s.in_w;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      // The 4 input rows of this row of tiles, zero outside the input: padded column j is input
      // column j - pad_left; even[i][q] = column 2q, odd[i][q] = column 2q + 1.
      for (int i = 0; i < 4; ++i) {
        const int64_t iy = 2 * ty - s.pad_top + i;
        if (iy < 0 || iy >= s.in_h) {
          std::fill(even[i], even[i] + half, 0.f);
          std::fill(odd[i], odd[i] + half, 0.f);
          continue;
        }
        const float* src = xc + iy * s.in_w - s.pad_left;  // src[j]: padded column j
        for (int k = 0; k < 2; ++k) {
          float* dst = k == 0 ? even[i] : odd[i];
          // q with 0 <= 2q + k - pad_left < in_w
          const int64_t q_lo = std::min(half, std::max<int64_t>(0, (s.pad_left - k + 1) / 2));
          const int64_t q_hi = std::max(q_lo, std::min(half, (s.in_w + s.pad_left - k + 1) / 2));
          std::fill(dst, dst + q_lo, 0.f);
          EveryOther(src + 2 * q_lo + k, dst + q_lo, q_hi - q_lo);
          std::fill(dst + q_hi, dst + half, 0.f);
        }
      }
      // B^T d (rows d0 - d2, d1 + d2, d2 - d1, d1 - d3), then (B^T d) B per tile (columns
      // t0 - t2, t1 + t2, t2 - t1, t1 - t3 of its 4 columns).
      float* out = v + c * ld + t0 + (ty - ty0) * tiles_w;
      float* o[16];
      for (int p = 0; p < 16; ++p) o[p] = out + p * plane;
      TileColumns<false>(even[0], even[2], odd[0], odd[2], o[0], o[1], o[2], o[3], tiles_w);
      TileColumns<true>(even[1], even[2], odd[1], odd[2], o[4], o[5], o[6], o[7], tiles_w);
      TileColumns<false>(even[2], even[1], odd[2], odd[1], o[8], o[9], o[10], o[11], tiles_w);
      TileColumns<false>(even[1], even[3], odd[1], odd[3], o[12], o[13], o[14], o[15], tiles_w);
    }
  }
}

// Tiles [0, n) of one row: A^T m (rows m0 + m1 + m2, m1 - m2 - m3), then (A^T m) A (columns
// likewise), + bias, Clip: the 2x2 block's values in r00, r01 (top row) and r10, r11. The bias and
// the Clip are template flags so that the loop over tiles vectorises.
template <bool kBias, bool kClamp>
QK_WINO_INLINE void OutputTiles(const float* in, int64_t plane, int64_t n, float b, float lo, float hi,
                                float* __restrict r00, float* __restrict r01, float* __restrict r10,
                                float* __restrict r11) {
  for (int64_t tx = 0; tx < n; ++tx) {
    float s0[4], s1[4];
    for (int q = 0; q < 4; ++q) {
      const float v0 = in[q * plane + tx], v1 = in[(4 + q) * plane + tx];
      const float v2 = in[(8 + q) * plane + tx], v3 = in[(12 + q) * plane + tx];
      s0[q] = v0 + v1 + v2;
      s1[q] = v1 - v2 - v3;
    }
    float o[4] = {s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3], s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]};
    for (int k = 0; k < 4; ++k) {
      if constexpr (kBias) o[k] = o[k] + b;
      if constexpr (kClamp) o[k] = std::min(std::max(o[k], lo), hi);
    }
    r00[tx] = o[0];
    r01[tx] = o[1];
    r10[tx] = o[2];
    r11[tx] = o[3];
  }
}

// y[2 tx] = even[tx], y[2 tx + 1] = odd[tx] for tx in [0, n).
QK_WINO_INLINE void Interleave(const float* __restrict even, const float* __restrict odd, float* __restrict y,
                               int64_t n) {
  for (int64_t tx = 0; tx < n; ++tx) {
    y[2 * tx] = even[tx];
    y[2 * tx + 1] = odd[tx];
  }
}

QK_WINO_INLINE void TransformOutputBody(const WinogradF23Shape& s, const float* mm, int64_t M, int64_t ty0,
                                        int64_t ty1, int64_t ld, int64_t t0, const float* bias, bool clamp, float lo,
                                        float hi, float* y, float* row_buf) {
  const int64_t tiles_w = s.TilesW(), plane = M * ld;
  const int64_t full_w = s.out_w / 2;  // tiles with both output columns inside
  float* r00 = row_buf;
  float* r01 = r00 + tiles_w;
  float* r10 = r01 + tiles_w;
  float* r11 = r10 + tiles_w;
  for (int64_t m = 0; m < M; ++m) {
    float* ym = y + m * s.out_h * s.out_w;
    for (int64_t ty = ty0; ty < ty1; ++ty) {
      const float* in = mm + m * ld + t0 + (ty - ty0) * tiles_w;
      const float b = bias ? bias[m] : 0.f;
      if (bias && clamp) {
        OutputTiles<true, true>(in, plane, tiles_w, b, lo, hi, r00, r01, r10, r11);
      } else if (bias) {
        OutputTiles<true, false>(in, plane, tiles_w, b, lo, hi, r00, r01, r10, r11);
      } else if (clamp) {
        OutputTiles<false, true>(in, plane, tiles_w, b, lo, hi, r00, r01, r10, r11);
      } else {
        OutputTiles<false, false>(in, plane, tiles_w, b, lo, hi, r00, r01, r10, r11);
      }
      float* y0 = ym + 2 * ty * s.out_w;
      Interleave(r00, r01, y0, full_w);
      if (full_w < tiles_w) y0[2 * full_w] = r00[full_w];  // odd width: the last tile's left column
      if (2 * ty + 1 < s.out_h) {
        float* y1 = y0 + s.out_w;
        Interleave(r10, r11, y1, full_w);
        if (full_w < tiles_w) y1[2 * full_w] = r10[full_w];
      }
    }
  }
}

__attribute__((target("avx512f"))) void TransformInputAvx512(const WinogradF23Shape& s, const float* x, int64_t C,
                                                             int64_t ty0, int64_t ty1, int64_t ld, int64_t t0, float* v,
                                                             float* row_buf) {
  TransformInputBody(s, x, C, ty0, ty1, ld, t0, v, row_buf);
}
__attribute__((target("avx512f"))) void TransformOutputAvx512(const WinogradF23Shape& s, const float* mm, int64_t M,
                                                              int64_t ty0, int64_t ty1, int64_t ld, int64_t t0,
                                                              const float* bias, bool clamp, float lo, float hi,
                                                              float* y, float* row_buf) {
  TransformOutputBody(s, mm, M, ty0, ty1, ld, t0, bias, clamp, lo, hi, y, row_buf);
}

}  // namespace

void WinogradF23TransformInput(const WinogradF23Shape& s, const float* x, int64_t C, int64_t ty0, int64_t ty1,
                               int64_t ld, int64_t t0, float* v, float* row_buf, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return TransformInputAvx512(s, x, C, ty0, ty1, ld, t0, v, row_buf);
  TransformInputBody(s, x, C, ty0, ty1, ld, t0, v, row_buf);
}

void WinogradF23TransformOutput(const WinogradF23Shape& s, const float* mm, int64_t M, int64_t ty0, int64_t ty1,
                                int64_t ld, int64_t t0, const float* bias, bool clamp, float lo, float hi, float* y,
                                float* row_buf, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return TransformOutputAvx512(s, mm, M, ty0, ty1, ld, t0, bias, clamp, lo, hi, y, row_buf);
  TransformOutputBody(s, mm, M, ty0, ty1, ld, t0, bias, clamp, lo, hi, y, row_buf);
}

}  // namespace quantkit::kernels
