// Int8 convolution straight on NCHW planes, pointwise (1x1, stride 1, unpadded, group 1) or any
// stride-1 2-D one (group 1), with the weights as the broadcast operand and the input as the panels:
//   y[m, p] = clamp(Requantize(sum_k (w[m, k] - w_zp[m]) * (x[k, p] - x_zp) + bias[m],
//                              multiplier[m], y_zp), y_min, y_max)
// the integers (modulo 2^32) and the requantization of quantize.h, as the int8 GEMM path
// (qgemm.h) computes them: the same bytes. That path takes output pixels as rows, so it
// transposes the input to pack it and the output to store it, and pads the output channels to
// 16-column panels; here a strip of 16 pixels of every input channel is interleaved in pairs of
// channels (no transpose), tiles of up to 6 output channels run over it, and each tile's rows go
// straight to the output planes. On AVX2 only (the VNNI kernels keep the GEMM path). With `taps`
// it computes a stride-1 2-D convolution the same way, the panel's rows being the taps' runs of
// 16 consecutive bytes in zero-point-padded planes (a stride-2 one is given to it as stride 1
// over the planes split by row and column parity: ops/quant_ops.cc). With y_float it writes ConvIntegerToFloat's
// floats instead: float(acc) * y_scale[m] (+ y_bias[m]) (clamped), acc the exact sums.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

struct QDirectConvWeights {
  int64_t M = 0, K = 0, k_pairs = 0;
  std::vector<int16_t> w;     // [M][2 k_pairs]: w - w_zp, zeros past K
  std::vector<int32_t> sums;  // [M]: sum over k of (w - w_zp)
};

// w [M, K] (int8, or uint8 when !w_signed); w_zp: one zero point, or one per output channel.
QDirectConvWeights PackQDirectConvWeights(const void* w, bool w_signed, int64_t M, int64_t K,
                                        const std::vector<int32_t>& w_zp);

struct QDirectConvArgs {
  const QDirectConvWeights* w = nullptr;
  const void* x = nullptr;  // [K][ld] bytes, int8 when x_signed
  bool x_signed = false;
  int32_t x_zero_point = 0;
  int64_t ld = 0;                    // elements between channel planes (the map's pixels)
  const int32_t* bias = nullptr;     // [M] or null
  const float* multiplier = nullptr;  // [M]
  bool y_signed = false;
  int32_t y_zero_point = 0, y_min = 0, y_max = 255;  // [y_min, y_max]: the type's range or narrower
  void* y = nullptr;  // [M][ld] bytes (int8 keeps its bit pattern)
  int64_t m_begin = 0, m_end = -1;  // the output channels to compute (-1: through M)
  // A 2-D convolution of stride 1 (any kernel, dilation) over zero-point-padded planes instead:
  // input k (channel c, tap kh, kw) of output pixel p = (oy, ox) at x[taps[k] + oy * in_w + ox],
  // taps[k] = c * plane + kh * dilation_h * in_w + kw * dilation_w; outputs [M][ld_y], out_w wide.
  // A 16-pixel strip may span output rows (each row's run read from its own place).
  const int64_t* taps = nullptr;
  int64_t out_w = 0, in_w = 0, ld_y = 0;
  // Floats instead of bytes (y unused): y_float[m][ld or ld_y] = float(acc) * y_scale[m], then +
  // y_bias[m] when given, then min(max(., lo), hi) when y_clamp (the GEMM path's float epilogue).
  float* y_float = nullptr;
  const float* y_scale = nullptr;  // [M]
  const float* y_bias = nullptr;   // [M] or null
  bool y_clamp = false;
  float y_clamp_lo = 0, y_clamp_hi = 0;
};

// Whether this ISA runs the direct kernel (AVX2), and the int16 scratch a call needs.
bool QDirectConvSupported(QGemmIsa isa);
// Whether the direct kernel beats the GEMM path for M output and K input channels over `pixels`
// pixels per image. Measured per conv at one thread on Zen 3 (direct / GEMM time): it wins on
// every map of 512 pixels or more (24 x 24 at 128x128: 0.55, MobileNetV2's 24 x 144 at 56x56 0.58,
// ResNet-50's 64 x 256 at 56x56 0.85, 128 x 512 at 28x28 0.88) and for a few output channels,
// which the GEMM pads to 16 columns (2 x 96: 0.29); on 14x14 maps it is even up to 64K weights
// (MobileNetV2's 576 x 96: 0.9-1.0) and behind beyond (ResNet-50's 1024 x 256: 1.13); on 7x7
// maps, 3 strips of 16 and a 1-pixel one, it loses (1280 x 320: 1.22).
bool QDirectPointwiseFaster(int64_t M, int64_t K, int64_t pixels);
int64_t QDirectConvPanelElems(const QDirectConvWeights& w);

// Pixels [p0, p1) of every output channel; panel: QDirectConvPanelElems int16 of scratch.
// kRef: the portable definition (the tests' reference); otherwise the AVX2 kernel.
void QDirectConv(const QDirectConvArgs& a, int64_t p0, int64_t p1, int16_t* panel, QGemmIsa isa);

// The requantizer's bounds, [y_min, y_max] within the type, minus the zero point (as floats).
void QDirectConvBounds(const QDirectConvArgs& a, float* lo, float* hi);

namespace qdirect {
void RunAvx2(const QDirectConvArgs& a, int64_t p0, int64_t p1, int16_t* panel);
}  // namespace qdirect

}  // namespace quantkit::kernels
