// The quantized depthwise kernel on every ISA build equals the definition (a direct loop over
// the taps with quantize.h's scalar Requantize) exactly: strides 1-3, dilation, asymmetric pads,
// kernels wider than the input, signed and unsigned input and output, a fused clamp, the input
// behind a guard page, and nothing written past the output. The channel-lane kernel (small maps, 8 channels at once) gives the
// plane kernel's outputs in every output mode (bytes, sums, floats with bias and clamp) for 1 to
// 8 channels with their own weights, biases, multipliers and zero points.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
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

// The shape of a test case (fields H, W, KH, KW, stride_h/w, dil_h/w, pad_top/left/bottom/right).
template <typename Case>
QDepthwiseShape ShapeOf(const Case& c) {
  QDepthwiseShape s;
  s.H = c.H, s.W = c.W, s.KH = c.KH, s.KW = c.KW, s.stride_h = c.stride_h, s.stride_w = c.stride_w;
  s.dilation_h = c.dil_h, s.dilation_w = c.dil_w, s.pad_top = c.pad_top, s.pad_left = c.pad_left;
  s.OH = OutSize(c.H, c.KH, c.stride_h, c.dil_h, c.pad_top, c.pad_bottom);
  s.OW = OutSize(c.W, c.KW, c.stride_w, c.dil_w, c.pad_left, c.pad_right);
  return s;
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
      // The avx2 plane fill's stride-2 split: a lone phase-1 value first (odd pad), a lone
      // phase-0 value last (odd count left), 6, 9 and 22 pairs (scalar, overlapping 8s, 16s).
      {4, 46, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, true, false, 0, 255},
      {3, 12, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, false, false, 0, 255},
      {3, 19, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, false, true, -128, 127},
  };
  std::mt19937 rng(5);
  // Every case twice: with a multiplier below 1 (the avx2 build's saturating packs), then with 1
  // (its float clamp).
  for (size_t k = 0; k < 2 * cases.size(); ++k) {
    const Case& c = cases[k % cases.size()];
    const float multiplier = k < cases.size() ? 0.0037f : 1.0f;
    const QDepthwiseShape s = ShapeOf(c);
    std::vector<uint8_t> x_values(static_cast<size_t>(c.H * c.W));
    for (auto& v : x_values) v = static_cast<uint8_t>(rng() % 4 == 0 ? (rng() % 2 ? 255 : 0) : rng());
    testing::GuardedBytes x(x_values);
    const int32_t x_zp = c.x_signed ? -7 : 131;
    std::vector<int32_t> w(static_cast<size_t>(c.KH * c.KW));
    for (auto& v : w) v = static_cast<int32_t>(rng() % 383) - 255;  // uint8 weights minus zero points reach +-255
    const int32_t bias = -1234, y_zp = c.y_signed ? 5 : 120;
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
      // 32 bytes after the output: a kernel may only write its own channel's bytes (the next
      // channel may belong to another thread).
      std::vector<uint8_t> y(want.size() + 32, 0xAA);
      // Scratch as a previous channel leaves it: every padding entry must be written.
      std::vector<int16_t> plane(static_cast<size_t>(kernels::QDepthwisePlaneElems(s)), 0x5A5A);
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
      for (size_t i = want.size(); i < y.size(); ++i) {
        ASSERT_EQ(y[i], 0xAA) << kernels::QGemmIsaName(isa) << " wrote past its output: H=" << c.H << " W=" << c.W;
      }
    }
  }
}


TEST(QDepthwise, LanesGiveThePlaneKernelsOutputs) {
  if (!kernels::QGemmIsaSupported(QGemmIsa::kAvx2)) GTEST_SKIP() << "no AVX2";
  struct Case {
    int64_t H, W, KH, KW, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left, pad_bottom, pad_right;
    bool x_signed, y_signed;
    int channels;
  };
  const std::vector<Case> cases = {
      {7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, false, 8},     // MobileNetV2's 7x7
      {14, 14, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, true, false, 5},    // 14 -> 7, stride 2, 5 channels
      {14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, false, true, 8},    // 14 wide: 8-column fill + tail
      {9, 17, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2, true, true, 3},      // 5x5, uneven pads
      {8, 9, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, false, false, 1},     // dilation, one channel
      {3, 4, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, true, false, 7},      // kernel larger than the input
      {6, 16, 2, 3, 1, 3, 1, 1, 0, 1, 1, 1, false, false, 8},    // even taps, stride 3
  };
  std::mt19937 rng(9);
  for (const Case& c : cases) {
    const QDepthwiseShape s = ShapeOf(c);
    // The lane kernel takes any width (it is chosen for 8 outputs or fewer); some cases are wider
    // to cover its 8-column fill and tails.
    if (s.OW <= 8) {
      ASSERT_TRUE(kernels::QDepthwiseUseLanes(s, QGemmIsa::kAvx2));
    }
    const int64_t out = s.OH * s.OW, taps = s.KH * s.KW;
    std::vector<std::unique_ptr<testing::GuardedBytes>> xs;  // each channel behind its own guard page
    std::vector<std::vector<int32_t>> ws;
    for (int j = 0; j < c.channels; ++j) {
      std::vector<uint8_t> v(static_cast<size_t>(c.H * c.W));
      for (auto& b : v) b = static_cast<uint8_t>(rng() % 4 == 0 ? (rng() % 2 ? 255 : 0) : rng());
      xs.push_back(std::make_unique<testing::GuardedBytes>(v));
      std::vector<int32_t> w(static_cast<size_t>(taps));
      for (auto& x : w) x = static_cast<int32_t>(rng() % 511) - 255;
      ws.push_back(w);
    }
    const float y_bias = 0.75f;
    for (int mode = 0; mode < 3; ++mode) {  // bytes, sums, floats (+ bias, clamp)
      SCOPED_TRACE("H=" + std::to_string(c.H) + " W=" + std::to_string(c.W) + " mode " + std::to_string(mode));
      std::vector<std::vector<uint8_t>> y_want(8), y_got(8);
      std::vector<std::vector<int32_t>> a_want(8), a_got(8);
      std::vector<std::vector<float>> f_want(8), f_got(8);
      auto channel = [&](int j, bool got) {
        kernels::QDepthwiseChannel ch;
        ch.x = xs[j]->data();
        ch.x_signed = c.x_signed;
        ch.x_zero_point = c.x_signed ? -3 : 128;
        ch.w = ws[j].data();
        ch.bias = -900 + 311 * j;
        ch.multiplier = 0.0021f * static_cast<float>(j + 1);
        ch.y_zero_point = c.y_signed ? -4 : 119;
        ch.y_min = c.y_signed ? -100 : 10;
        ch.y_max = c.y_signed ? 127 : 250;
        ch.y_signed = c.y_signed;
        auto& y = got ? y_got[j] : y_want[j];
        auto& a = got ? a_got[j] : a_want[j];
        auto& f = got ? f_got[j] : f_want[j];
        y.assign(static_cast<size_t>(out), 0xAA);
        a.assign(static_cast<size_t>(out), -1);
        f.assign(static_cast<size_t>(out), -1.f);
        if (mode == 0) ch.y = y.data();
        if (mode == 1) ch.acc_out = a.data();
        if (mode == 2) {
          ch.y_float = f.data();
          ch.y_scale = 0.013f;
          ch.y_bias = &y_bias;
          ch.y_clamp = true;
          ch.y_clamp_lo = -3.f;
          ch.y_clamp_hi = 6.f;
        }
        return ch;
      };
      std::vector<int16_t> plane(static_cast<size_t>(kernels::QDepthwisePlaneElems(s)));
      std::vector<int32_t> row(static_cast<size_t>(kernels::QDepthwiseRowElems(s)));
      for (int j = 0; j < c.channels; ++j) kernels::QDepthwiseConv2D(s, channel(j, false), plane.data(), row.data(), QGemmIsa::kRef);
      kernels::QDepthwiseChannel cs[kernels::kQDepthwiseLanes];
      for (int j = 0; j < c.channels; ++j) cs[j] = channel(j, true);
      std::vector<int16_t> lane_plane(static_cast<size_t>(kernels::QDepthwiseLanesPlaneElems(s)));
      std::vector<int32_t> lane_acc(static_cast<size_t>(kernels::QDepthwiseLanesAccElems(s)));
      kernels::QDepthwiseConv2DLanes(s, cs, c.channels, lane_plane.data(), lane_acc.data(), row.data());
      for (int j = 0; j < c.channels; ++j) {
        ASSERT_EQ(y_got[j], y_want[j]) << "channel " << j;
        ASSERT_EQ(a_got[j], a_want[j]) << "channel " << j;
        ASSERT_EQ(0, std::memcmp(f_got[j].data(), f_want[j].data(), f_want[j].size() * sizeof(float))) << "channel " << j;
      }
    }
  }
}

}  // namespace
}  // namespace quantkit
