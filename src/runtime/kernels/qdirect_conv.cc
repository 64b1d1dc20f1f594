#include "runtime/kernels/qdirect_conv.h"

#include <algorithm>

#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels {

QDirectConvWeights PackQDirectConvWeights(const void* w, bool w_signed, int64_t M, int64_t K,
                                        const std::vector<int32_t>& w_zp) {
  QDirectConvWeights p;
  p.M = M;
  p.K = K;
  p.k_pairs = (K + 1) / 2;
  p.w.assign(static_cast<size_t>(M * 2 * p.k_pairs), 0);
  p.sums.assign(static_cast<size_t>(M), 0);
  for (int64_t m = 0; m < M; ++m) {
    const int32_t zp = w_zp[w_zp.size() == 1 ? 0 : static_cast<size_t>(m)];
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int32_t v = w_signed ? static_cast<const int8_t*>(w)[m * K + k] : static_cast<const uint8_t*>(w)[m * K + k];
      p.w[static_cast<size_t>(m * 2 * p.k_pairs + k)] = static_cast<int16_t>(v - zp);  // |v - zp| <= 255
      sum += v - zp;
    }
    p.sums[static_cast<size_t>(m)] = sum;
  }
  return p;
}

bool QDirectConvSupported(QGemmIsa isa) { return isa == QGemmIsa::kAvx2; }

bool QDirectPointwiseFaster(int64_t M, int64_t K, int64_t pixels) {
  return M <= 8 || pixels >= 512 || (pixels >= 64 && M * K <= 65536);
}

int64_t QDirectConvPanelElems(const QDirectConvWeights& w) { return w.k_pairs * 32; }

void QDirectConvBounds(const QDirectConvArgs& a, float* lo, float* hi) {
  const int32_t lo_q = std::max(a.y_min, a.y_signed ? -128 : 0), hi_q = std::min(a.y_max, a.y_signed ? 127 : 255);
  *lo = static_cast<float>(lo_q - a.y_zero_point);
  *hi = static_cast<float>(hi_q - a.y_zero_point);
}

namespace {

// The definition, one output at a time (uint32 wrapping as the GEMM's epilogue).
void RunPortable(const QDirectConvArgs& a, int64_t p0, int64_t p1) {
  const QDirectConvWeights& w = *a.w;
  float lo, hi;
  QDirectConvBounds(a, &lo, &hi);
  const int64_t m_end = a.m_end < 0 ? w.M : a.m_end;
  const int64_t ld_y = a.taps ? a.ld_y : a.ld;
  for (int64_t m = a.m_begin; m < m_end; ++m) {
    const int16_t* wm = w.w.data() + m * 2 * w.k_pairs;
    for (int64_t p = p0; p < p1; ++p) {
      uint32_t acc = a.bias ? static_cast<uint32_t>(a.bias[m]) : 0u;
      for (int64_t k = 0; k < w.K; ++k) {
        const int64_t at = a.taps ? a.taps[k] + p / a.out_w * a.in_w + p % a.out_w : k * a.ld + p;
        const int32_t x = a.x_signed ? static_cast<const int8_t*>(a.x)[at] : static_cast<const uint8_t*>(a.x)[at];
        acc += static_cast<uint32_t>(wm[k] * (x - a.x_zero_point));
      }
      if (a.y_float) {
        float v = static_cast<float>(static_cast<int32_t>(acc)) * a.y_scale[m];
        if (a.y_bias) v = v + a.y_bias[m];
        if (a.y_clamp) v = std::min(std::max(v, a.y_clamp_lo), a.y_clamp_hi);
        a.y_float[m * ld_y + p] = v;
        continue;
      }
      const int32_t q = rt::quant::detail::ClampRoundAddZero<int32_t>(
          static_cast<float>(static_cast<int32_t>(acc)) * a.multiplier[m], lo, hi, a.y_zero_point);
      static_cast<uint8_t*>(a.y)[m * ld_y + p] = static_cast<uint8_t>(q);
    }
  }
}

}  // namespace

void QDirectConv(const QDirectConvArgs& a, int64_t p0, int64_t p1, int16_t* panel, QGemmIsa isa) {
  if (isa == QGemmIsa::kRef) return RunPortable(a, p0, p1);
  qdirect::RunAvx2(a, p0, p1, panel);
}

}  // namespace quantkit::kernels
