#include "runtime/kernels/conv_nchwc.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <new>

#include "runtime/kernels/transpose_f32.h"

namespace quantkit::kernels {

bool ConvNchwcSupported(QGemmIsa isa) { return QGemmIsaHasAvx512(isa) || QGemmIsaIsAvx2Fma(isa); }

NchwcWeightLayout NchwcWeightLayoutFor(QGemmIsa isa) {
  return QGemmIsaHasAvx512(isa) ? NchwcWeightLayout::kGroupRows : NchwcWeightLayout::kBlockMajor;
}

int64_t NchwcWeightOffset(int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib, int64_t ob, int64_t cb,
                          int64_t kh, int64_t kw, int64_t i, int64_t o, NchwcWeightLayout layout) {
  constexpr int64_t B = kNchwcBlock;
  const int64_t row = ((cb * KH + kh) * KW + kw) * ib + i;  // the input channel and tap
  if (layout == NchwcWeightLayout::kBlockMajor) return ob * C * KH * KW * B + row * B + o;
  const int64_t ob0 = ob / kNchwcOutputBlocksPerGroup * kNchwcOutputBlocksPerGroup;
  const int64_t fb = std::min(M / B - ob0, kNchwcOutputBlocksPerGroup);
  return ob0 * C * KH * KW * B + row * fb * B + (ob - ob0) * B + o;
}

void PackNchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib,
                      NchwcWeightLayout layout, float* dst) {
  constexpr int64_t B = kNchwcBlock;
  for (int64_t ob = 0; ob < M / B; ++ob)
    for (int64_t cb = 0; cb < C / ib; ++cb)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw)
          for (int64_t i = 0; i < ib; ++i)
            for (int64_t o = 0; o < B; ++o) {
              dst[NchwcWeightOffset(M, C, KH, KW, ib, ob, cb, kh, kw, i, o, layout)] =
                  w[(((ob * B + o) * C + cb * ib + i) * KH + kh) * KW + kw];
            }
}

void NchwcWeights::Free::operator()(float* p) const { std::free(p); }

void PackNchwcDepthwiseWeights(const float* w, int64_t C, int64_t KH, int64_t KW, float* dst) {
  constexpr int64_t B = kNchwcBlock;
  for (int64_t cb = 0; cb < C / B; ++cb)
    for (int64_t t = 0; t < KH * KW; ++t)
      for (int64_t c = 0; c < B; ++c) dst[(cb * KH * KW + t) * B + c] = w[(cb * B + c) * KH * KW + t];
}

void NchwcWeights::Allocate(int64_t floats) {
  const size_t n = static_cast<size_t>(std::max<int64_t>(floats, 16));
  data_.reset(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)));
  if (!data_) throw std::bad_alloc();
}

NchwcWeights::NchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib)
    : NchwcWeights(w, M, C, KH, KW, ib, NchwcWeightLayoutFor(DefaultQGemmIsa())) {}

NchwcWeights::NchwcWeights(const float* w, int64_t M, int64_t C, int64_t KH, int64_t KW, int64_t ib,
                           NchwcWeightLayout layout)
    : layout_(layout) {
  Allocate(M * C * KH * KW);
  PackNchwcWeights(w, M, C, KH, KW, ib, layout, data_.get());
}

NchwcWeights::NchwcWeights(Depthwise, const float* w, int64_t C, int64_t KH, int64_t KW) {
  Allocate(C * KH * KW);
  PackNchwcDepthwiseWeights(w, C, KH, KW, data_.get());
}

void conv_nchwc::InteriorColumns(const ConvGeometry& g, int64_t* lo, int64_t* hi) {
  const int64_t sw = g.stride[1], pw = g.pad_begin[1], span = (g.kernel[1] - 1) * g.dilation[1];
  const int64_t iw = g.in[1], ow = g.out[1];
  // ox * sw - pw >= 0 and ox * sw - pw + span <= iw - 1
  int64_t l = (pw + sw - 1) / sw;
  const int64_t top = iw - 1 - span + pw;
  int64_t h = top < 0 ? 0 : top / sw + 1;
  l = std::clamp<int64_t>(l, 0, ow);
  h = std::clamp<int64_t>(h, l, ow);
  *lo = l;
  *hi = h;
}

void conv_nchwc::RowsPortable(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1) {
  constexpr int64_t B = kNchwcBlock;
  const ConvGeometry& g = *a.g;
  const int64_t IH = g.in[0], IW = g.in[1], OH = g.out[0], OW = g.out[1];
  const int64_t ib = a.plain_input ? 1 : B;
  const int64_t KH = g.kernel[0], KW = g.kernel[1], Cb = a.C / ib, Mb = a.M / B;
  const int64_t ob0 = group * kNchwcOutputBlocksPerGroup, ob1 = std::min(Mb, ob0 + kNchwcOutputBlocksPerGroup);
  for (int64_t ob = ob0; ob < ob1; ++ob) {
    for (int64_t oy = oy0; oy < oy1; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        for (int64_t o = 0; o < B; ++o) {
          float acc = 0.f;
          for (int64_t cb = 0; cb < Cb; ++cb) {
            for (int64_t kh = 0; kh < KH; ++kh) {
              const int64_t iy = oy * g.stride[0] - g.pad_begin[0] + kh * g.dilation[0];
              if (iy < 0 || iy >= IH) continue;
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kw * g.dilation[1];
                if (ix < 0 || ix >= IW) continue;
                const float* xp = a.x + ((cb * IH + iy) * IW + ix) * ib;
                for (int64_t i = 0; i < ib; ++i) {
                  acc = std::fma(xp[i], a.w[NchwcWeightOffset(a.M, a.C, KH, KW, ib, ob, cb, kh, kw, i, o, a.w_layout)],
                                 acc);
                }
              }
            }
          }
          const int64_t at = ((ob * OH + oy) * OW + ox) * B + o;
          float v = acc + (a.bias ? a.bias[ob * B + o] : 0.f);
          if (a.residual) v = v + a.residual[at];
          if (a.clamp_lo_hi) v = std::min(std::max(v, a.clamp_lo_hi[0]), a.clamp_lo_hi[1]);
          const int64_t y_ob = a.y_block_stride > 0 ? a.y_block_stride : OH * OW * B;
          a.y[ob * y_ob + ((oy - a.y_row0) * OW + ox) * B + o] = v;
        }
      }
    }
  }
}

void conv_nchwc::DepthwiseRowsPortable(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1) {
  constexpr int64_t B = kNchwcBlock;
  const ConvGeometry& g = *a.g;
  const int64_t IH = g.in[0], IW = g.in[1], OH = g.out[0], OW = g.out[1], KH = g.kernel[0], KW = g.kernel[1];
  const float* x = a.x + block * IH * IW * B;
  const float* w = a.w + block * KH * KW * B;
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      for (int64_t c = 0; c < B; ++c) {
        float acc = a.bias ? a.bias[block * B + c] : 0.f;
        for (int64_t kh = 0; kh < KH; ++kh) {
          const int64_t iy = oy * g.stride[0] - g.pad_begin[0] + kh * g.dilation[0];
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int64_t ix = ox * g.stride[1] - g.pad_begin[1] + kw * g.dilation[1];
            const bool inside = iy >= 0 && iy < IH && ix >= 0 && ix < IW;
            acc = std::fma(w[(kh * KW + kw) * B + c], inside ? x[(iy * IW + ix) * B + c] : 0.f, acc);
          }
        }
        if (a.clamp_lo_hi) acc = std::min(std::max(acc, a.clamp_lo_hi[0]), a.clamp_lo_hi[1]);
        a.y[((block * OH + oy) * OW + ox) * B + c] = acc;
      }
    }
  }
}

void NchwcDepthwiseRows(const NchwcDepthwiseArgs& a, int64_t block, int64_t oy0, int64_t oy1, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return conv_nchwc::DepthwiseRowsAvx512(a, block, oy0, oy1);
  if (QGemmIsaIsAvx2Fma(isa)) return conv_nchwc::DepthwiseRowsAvx2(a, block, oy0, oy1);
  conv_nchwc::DepthwiseRowsPortable(a, block, oy0, oy1);
}

void BlockToNchwc(const float* src, int64_t plane, float* dst, QGemmIsa isa) {
  TransposeFloat(src, kNchwcBlock, plane, plane, dst, kNchwcBlock, nullptr, isa);
}

void BlockFromNchwc(const float* src, int64_t plane, float* dst, QGemmIsa isa) {
  TransposeFloat(src, plane, kNchwcBlock, kNchwcBlock, dst, plane, nullptr, isa);
}

void ConvNchwcRows(const NchwcConvArgs& a, int64_t group, int64_t oy0, int64_t oy1, QGemmIsa isa) {
  // RowsAvx512 takes the AVX2 build's rows for kBlockMajor weights.
  if (QGemmIsaHasAvx512(isa)) return conv_nchwc::RowsAvx512(a, group, oy0, oy1);
  if (QGemmIsaIsAvx2Fma(isa)) return conv_nchwc::RowsAvx2(a, group, oy0, oy1);
  conv_nchwc::RowsPortable(a, group, oy0, oy1);
}

}  // namespace quantkit::kernels
