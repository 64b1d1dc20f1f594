// The float depthwise kernel gives the same bits on every ISA build, and the values of the
// reference loop (kernels::DepthwiseConv2DChannel<float>, which skips padding taps where the
// kernel adds w * 0: equal as floats, +0 vs -0 aside): strides 1-3 (stride-phase plane),
// dilation, pads, kernels wider than the input, narrow outputs and wide ones (blocks of 32 / 64,
// tails), with and without a fused Clip; the avx512 build is 16 wide.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "runtime/kernels/depthwise_f32.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::ConvGeometry;
using kernels::QGemmIsa;

TEST(DepthwiseFloat, EveryIsaSameBitsAndTheReferenceValues) {
  struct Case {
    int64_t H, W, KH, KW, sh, sw, dh, dw, ph, pw, pb, pr;
  };
  const std::vector<Case> cases = {
      {10, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {11, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {9, 35, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2}, {8, 30, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},
      {7, 50, 3, 5, 3, 3, 1, 2, 0, 1, 2, 0}, {3, 20, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},
      {1, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      // Wide outputs: stride 2 and 3 through the phase plane, odd widths, blocks of 32 plus tails.
      {9, 81, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, {6, 100, 3, 5, 3, 3, 1, 2, 1, 2, 1, 2},
      {5, 75, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2}, {4, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
      // MobileNet's small maps: 14x14 and 7x7, stride 1 and 2; no padding.
      {14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {14, 14, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1},
      {7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {12, 9, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
      // Rows narrower than a vector: several rows per vector store, none past the plane.
      {6, 6, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0}, {5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 9, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0},
  };
  std::mt19937 rng(17);
  std::normal_distribution<float> normal;
  for (const Case& c : cases) {
    const ConvGeometry g = testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.ph, c.pw, c.pb, c.pr);
    std::vector<float> x(static_cast<size_t>(c.H * c.W)), w(static_cast<size_t>(c.KH * c.KW));
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    const int64_t n = g.out[0] * g.out[1];
    const float lo_hi[2] = {-0.5f, 0.75f};
    for (const float* clamp : {static_cast<const float*>(nullptr), lo_hi}) {  // without and with a fused Clip
      std::vector<float> want(static_cast<size_t>(n));
      kernels::DepthwiseConv2DChannel<float>(g, x.data(), w.data(), 0.375f, want.data());
      if (clamp) {
        for (float& v : want) v = std::min(std::max(v, clamp[0]), clamp[1]);
      }
      std::vector<float> first;
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<float> plane(static_cast<size_t>(kernels::DepthwiseFloatPlaneElems(g)), std::nanf(""));
        std::vector<float> got(static_cast<size_t>(n) + 16, -1.f);
        kernels::DepthwiseConv2DFloat(g, x.data(), w.data(), 0.375f, got.data(), plane.data(), isa, clamp);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(got[i], want[i]) << kernels::QGemmIsaName(isa) << " W=" << c.W << " stride " << c.sw
                                     << " element " << i << (clamp ? " clamped" : "");
        }
        for (int64_t i = n; i < n + 16; ++i) ASSERT_EQ(got[i], -1.f) << "wrote past the output";
        if (first.empty()) {
          first = got;
        } else {
          ASSERT_EQ(std::memcmp(first.data(), got.data(), got.size() * sizeof(float)), 0) << kernels::QGemmIsaName(isa);
        }
      }
    }
  }
}

// The channel-lane path (several channels per call, one per vector lane) gives each channel the
// bits of the per-channel kernel at every ISA: full and partial lane groups, strides, dilation,
// uneven pads, a 5x5 kernel, maps up to 150 wide (the AVX-512 build's 16 x 16 transposes, column
// tails; several bands of output rows), with and without a fused Clip, a NaN weight (padding
// taps' w * 0); nothing read past the input (a guard page) or written past the channels' planes.
TEST(DepthwiseFloat, ChannelLanesEqualThePerChannelKernel) {
  struct Case {
    int64_t C, H, W, KH, KW, sh, sw, dh, dw, ph, pw, pb, pr;
  };
  const std::vector<Case> cases = {
      {16, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {35, 14, 14, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1},
      {5, 9, 11, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2}, {20, 6, 8, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2},
      {9, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},  {17, 1, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {8, 12, 15, 3, 5, 3, 2, 1, 1, 1, 2, 0, 1},
      // Wider maps (the AVX-512 build's width): 16-column blocks with tails, odd widths, stride 2.
      {19, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {16, 57, 45, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {3, 20, 37, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2},  {33, 9, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
      // Maps taken in bands of output rows (the interleaved rows of a band stay in cache).
      {5, 64, 150, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {7, 61, 130, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {2, 45, 100, 5, 5, 1, 1, 2, 2, 4, 4, 4, 4},
  };
  std::mt19937 rng(23);
  std::normal_distribution<float> normal;
  for (const Case& c : cases) {
    const ConvGeometry g =
        testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.ph, c.pw, c.pb, c.pr);
    const int64_t in_size = c.H * c.W, out_size = g.out[0] * g.out[1], taps = c.KH * c.KW;
    std::vector<float> x(static_cast<size_t>(c.C * in_size)), w(static_cast<size_t>(c.C * taps)), bias(c.C);
    for (auto& v : x) v = normal(rng);
    std::vector<uint8_t> x_bytes(x.size() * sizeof(float));
    std::memcpy(x_bytes.data(), x.data(), x_bytes.size());
    testing::GuardedBytes guarded_x(x_bytes);  // the channels end at a guard page: no over-read
    const auto* xg = reinterpret_cast<const float*>(guarded_x.data());
    for (auto& v : w) v = normal(rng);
    for (auto& v : bias) v = normal(rng);
    w[static_cast<size_t>(taps)] = std::nanf("");  // channel 1's first tap: NaN, also where it reads padding
    const float lo_hi[2] = {-0.5f, 0.75f};
    for (const float* clamp : {static_cast<const float*>(nullptr), lo_hi}) {
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        // The per-channel kernel, channel by channel.
        std::vector<float> want(static_cast<size_t>(c.C * out_size));
        std::vector<float> plane(static_cast<size_t>(kernels::DepthwiseFloatPlaneElems(g)));
        std::vector<float> want_pad(static_cast<size_t>(out_size) + 16);
        for (int64_t ch = 0; ch < c.C; ++ch) {
          kernels::DepthwiseConv2DFloat(g, x.data() + ch * in_size, w.data() + ch * taps, bias[ch], want_pad.data(),
                                        plane.data(), isa, clamp);
          std::copy_n(want_pad.begin(), out_size, want.begin() + ch * out_size);
        }
        // Lane groups, the last one partial; a margin after the output must stay untouched.
        const int lanes = kernels::DepthwiseFloatChannelLanes(isa);
        std::vector<float> got(static_cast<size_t>(c.C * out_size) + 16, -1.f);
        std::vector<float> scratch(static_cast<size_t>(kernels::DepthwiseFloatChannelScratchElems(g, lanes)),
                                   std::nanf(""));
        for (int64_t c0 = 0; c0 < c.C; c0 += lanes) {
          kernels::DepthwiseConv2DFloatChannels(g, xg + c0 * in_size, in_size, w.data() + c0 * taps,
                                                bias.data() + c0, std::min<int64_t>(lanes, c.C - c0),
                                                got.data() + c0 * out_size, out_size, scratch.data(), isa, clamp);
        }
        ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << kernels::QGemmIsaName(isa) << " C=" << c.C << " " << c.H << "x" << c.W << (clamp ? " clamped" : "");
        for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], -1.f) << "wrote past the output";
      }
    }
  }
  // Which widths take it: up to 64 on AVX-512 (register transposes), up to 8 elsewhere.
  const ConvGeometry at7 = testing::Conv2DGeometry(7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  const ConvGeometry at14 = testing::Conv2DGeometry(14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  const ConvGeometry at112 = testing::Conv2DGeometry(112, 112, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
  EXPECT_TRUE(kernels::DepthwiseFloatUseChannels(at7, QGemmIsa::kRef));
  EXPECT_FALSE(kernels::DepthwiseFloatUseChannels(at14, QGemmIsa::kAvx2));
  EXPECT_TRUE(kernels::DepthwiseFloatUseChannels(at14, QGemmIsa::kAvx512Vnni));
  EXPECT_FALSE(kernels::DepthwiseFloatUseChannels(at112, QGemmIsa::kAvx512Vnni));
}

// The phase plane's AVX-512 build writes every float of the plane, the same as the portable one
// (a plane prefilled with NaN shows any float left unwritten), strides 1 to 3, pads wider than
// the kernel's reach, rows shorter and longer than a vector, without reading past the input (it
// ends at a guard page).
TEST(PhasePlane, Avx512FillEqualsThePortableFill) {
  if (!kernels::QGemmIsaSupported(QGemmIsa::kAvx512Vnni)) GTEST_SKIP() << "no AVX-512";
  struct Case {
    int64_t H, W, KH, KW, sh, sw, dh, dw, ph, pw, pb, pr;
  };
  const std::vector<Case> cases = {
      {10, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {11, 40, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1}, {9, 35, 5, 5, 2, 2, 1, 1, 2, 2, 1, 2},
      {7, 50, 3, 5, 3, 3, 1, 2, 0, 1, 2, 0},  {1, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},   {112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
      {28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1}, {6, 33, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0},   {5, 4, 5, 5, 1, 1, 1, 1, 4, 4, 4, 4},
      {8, 17, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3},
  };
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  for (const Case& c : cases) {
    const kernels::ConvGeometry g =
        testing::Conv2DGeometry(c.H, c.W, c.KH, c.KW, c.sh, c.sw, c.dh, c.dw, c.ph, c.pw, c.pb, c.pr);
    const kernels::ConvPanelPlanes l = kernels::ConvPanelPlanesFor(g);
    std::vector<uint8_t> bytes(static_cast<size_t>(c.H * c.W) * sizeof(float));
    for (size_t i = 0; i < bytes.size(); i += sizeof(float)) {
      const float v = normal(rng);
      std::memcpy(&bytes[i], &v, sizeof(v));
    }
    testing::GuardedBytes x(bytes);
    const auto* xf = reinterpret_cast<const float*>(x.data());
    std::vector<float> want(static_cast<size_t>(l.plane_floats), std::nanf("")), got(want);
    kernels::phase_plane::FillPortable(g, l.rows, l.phase_len, xf, want.data());
    kernels::phase_plane::FillAvx512(g, l.rows, l.phase_len, xf, got.data());
    ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0) << c.H << "x" << c.W << " stride " << c.sw;
    for (float v : want) ASSERT_FALSE(std::isnan(v)) << "a float of the plane left unwritten";
  }
}

}  // namespace
}  // namespace quantkit
