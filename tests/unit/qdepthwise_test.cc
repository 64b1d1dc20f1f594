// The quantized depthwise kernel on every ISA build equals the definition (a direct loop over
// the taps with quantize.h's scalar Requantize) exactly: strides 1-3, dilation, asymmetric pads,
// kernels wider than the input, signed and unsigned input and output, a fused clamp, and the
// input behind a guard page.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "runtime/kernels/qdepthwise.h"
#include "runtime/kernels/ref/quantize.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QDepthwiseShape;
using kernels::QGemmIsa;

int64_t OutSize(int64_t in, int64_t k, int64_t stride, int64_t dil, int64_t pad_begin, int64_t pad_end) {
  return (in + pad_begin + pad_end - ((k - 1) * dil + 1)) / stride + 1;
}

TEST(QDepthwise, EveryIsaEqualsTheDefinition) {
  struct Case {
    int64_t H, W, KH, KW, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, pad_bottom, pad_right;
    bool x_signed, y_signed;
    int32_t y_min, y_max;  // within the output type
  };
  const std::vector<Case> cases = {
      {10, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, 0, 255},
      {11, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, false, 0, 255},    // MobileNet's stride 2
      {9, 17, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2, false, true, -128, 127},  // BlazeFace 5x5, uneven pads
      {8, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, true, true, -20, 90},      // dilation, clamp
      {7, 23, 3, 5, 3, 3, 1, 2, 0, 1, 2, 0, false, false, 128, 200},  // stride 3, fused Relu-like
      {3, 20, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, true, false, 0, 255},     // kernel taller than the input
      {1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, 0, 255},     // one pixel
      // Rows of 16 and more outputs (the avx2 build's vector loop, then its tail): odd and even
      // tap counts.
      {6, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, 0, 255},
      {5, 37, 2, 3, 1, 1, 1, 1, 0, 1, 1, 1, true, true, -128, 127},
      {7, 70, 1, 4, 1, 2, 1, 1, 0, 0, 0, 2, false, true, -128, 127},
  };
  std::mt19937 rng(5);
  for (const Case& c : cases) {
    QDepthwiseShape s;
    s.H = c.H, s.W = c.W, s.KH = c.KH, s.KW = c.KW, s.stride_h = c.stride_h, s.stride_w = c.stride_w;
    s.dilation_h = c.dil_h, s.dilation_w = c.dil_w, s.pad_top = c.pad_top, s.pad_left = c.pad_left;
    s.OH = OutSize(c.H, c.KH, c.stride_h, c.dil_h, c.pad_top, c.pad_bottom);
    s.OW = OutSize(c.W, c.KW, c.stride_w, c.dil_w, c.pad_left, c.pad_right);
    std::vector<uint8_t> x_values(static_cast<size_t>(c.H * c.W));
    for (auto& v : x_values) v = static_cast<uint8_t>(rng() % 4 == 0 ? (rng() % 2 ? 255 : 0) : rng());
    testing::GuardedBytes x(x_values);
    const int32_t x_zp = c.x_signed ? -7 : 131;
    std::vector<int32_t> w(static_cast<size_t>(c.KH * c.KW));
    for (auto& v : w) v = static_cast<int32_t>(rng() % 383) - 255;  // uint8 weights minus zero points reach +-255
    const int32_t bias = -1234, y_zp = c.y_signed ? 5 : 120;
    const float multiplier = 0.0037f;
    // The definition.
    std::vector<int32_t> want(static_cast<size_t>(s.OH * s.OW));
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        int32_t acc = bias;
        for (int64_t kh = 0; kh < s.KH; ++kh)
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dilation_h;
            const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dilation_w;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            const uint8_t raw = x_values[ih * s.W + iw];
            const int32_t xv = c.x_signed ? static_cast<int8_t>(raw) : raw;
            acc += (xv - x_zp) * w[kh * s.KW + kw];
          }
        const int32_t q = c.y_signed ? rt::quant::Requantize<int8_t>(acc, multiplier, y_zp)
                                     : rt::quant::Requantize<uint8_t>(acc, multiplier, y_zp);
        want[oh * s.OW + ow] = std::clamp(q, c.y_min, c.y_max);
      }
    for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
      if (!kernels::QGemmIsaSupported(isa)) continue;
      std::vector<uint8_t> y(want.size(), 0xAA);
      std::vector<int16_t> plane(static_cast<size_t>(kernels::QDepthwisePlaneElems(s)));
      std::vector<int32_t> row(static_cast<size_t>(kernels::QDepthwiseRowElems(s)));
      kernels::QDepthwiseChannel ch;
      ch.x = x.data();
      ch.x_signed = c.x_signed;
      ch.x_zero_point = x_zp;
      ch.w = w.data();
      ch.bias = bias;
      ch.multiplier = multiplier;
      ch.y_zero_point = y_zp;
      ch.y_min = c.y_min;
      ch.y_max = c.y_max;
      ch.y = y.data();
      ch.y_signed = c.y_signed;
      kernels::QDepthwiseConv2D(s, ch, plane.data(), row.data(), isa);
      for (size_t i = 0; i < want.size(); ++i) {
        const int32_t got = c.y_signed ? static_cast<int8_t>(y[i]) : y[i];
        ASSERT_EQ(got, want[i]) << kernels::QGemmIsaName(isa) << " H=" << c.H << " W=" << c.W << " element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace quantkit
