// Winograd F(2x2, 3x3): the transforms with the 16 products in double give the direct
// convolution (to float rounding), for odd output sizes, uneven pads and blocks of tile rows;
// images side by side in a block give each image's own values; and
// each transform's AVX-512 build gives the baseline build's bits (NaN passing the Clip
// included), reading no further than the input's last float (guard page).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "runtime/kernels/winograd_f32.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;
using kernels::WinogradF23Shape;

struct Case {
  int64_t C, M, in_h, in_w, pad_top, pad_left, pad_bottom, pad_right;
};

WinogradF23Shape ShapeOf(const Case& c) {
  WinogradF23Shape s;
  s.in_h = c.in_h;
  s.in_w = c.in_w;
  s.out_h = c.in_h + c.pad_top + c.pad_bottom - 2;
  s.out_w = c.in_w + c.pad_left + c.pad_right - 2;
  s.pad_top = c.pad_top;
  s.pad_left = c.pad_left;
  return s;
}

std::vector<uint8_t> AsBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

const Case kCases[] = {
    {5, 7, 9, 11, 1, 1, 1, 1},   // odd output 9x11: partial last tile row and column
    {3, 4, 8, 8, 0, 0, 0, 0},    // no padding, 6x6
    {4, 6, 10, 7, 2, 0, 1, 2},   // uneven pads
    {2, 3, 3, 3, 1, 1, 1, 1},    // a single 3x3 output (2x2 tiles, three of them partial)
    {6, 5, 16, 20, 1, 1, 1, 1},  // several tile rows per block
};

TEST(WinogradF23, TransformsAndProductsGiveTheDirectConvolution) {
  std::mt19937 rng(31);
  std::normal_distribution<float> normal;
  for (const Case& c : kCases) {
    const WinogradF23Shape s = ShapeOf(c);
    std::vector<float> x(static_cast<size_t>(c.C * c.in_h * c.in_w)), w(static_cast<size_t>(c.M * c.C * 9));
    std::vector<float> bias(static_cast<size_t>(c.M));
    for (auto& v : x) v = normal(rng);
    for (auto& v : w) v = normal(rng);
    for (auto& v : bias) v = normal(rng);
    testing::GuardedBytes gx(AsBytes(x));
    const float* px = reinterpret_cast<const float*>(gx.data());
    std::vector<float> u(static_cast<size_t>(16 * c.M * c.C));
    kernels::WinogradF23TransformWeights(w.data(), c.M, c.C, u.data());
    std::vector<float> y(static_cast<size_t>(c.M * s.out_h * s.out_w), -7.f);
    std::vector<float> row_buf(static_cast<size_t>(kernels::WinogradF23RowBufferFloats(s)));
    // Blocks of 2 tile rows (the last one shorter when the count is odd), as the conv op does.
    for (int64_t ty0 = 0; ty0 < s.TilesH(); ty0 += 2) {
      const int64_t ty1 = std::min(s.TilesH(), ty0 + 2), T = (ty1 - ty0) * s.TilesW();
      std::vector<float> v(static_cast<size_t>(16 * c.C * T)), mm(static_cast<size_t>(16 * c.M * T));
      kernels::WinogradF23TransformInput(s, px, c.C, ty0, ty1, T, 0, v.data(), row_buf.data(), QGemmIsa::kRef);
      for (int p = 0; p < 16; ++p) {
        for (int64_t m = 0; m < c.M; ++m) {
          for (int64_t t = 0; t < T; ++t) {
            double acc = 0;
            for (int64_t ch = 0; ch < c.C; ++ch) {
              acc += static_cast<double>(u[(p * c.M + m) * c.C + ch]) * v[(p * c.C + ch) * T + t];
            }
            mm[(p * c.M + m) * T + t] = static_cast<float>(acc);
          }
        }
      }
      kernels::WinogradF23TransformOutput(s, mm.data(), c.M, ty0, ty1, T, 0, bias.data(), false, 0.f, 0.f, y.data(),
                                          row_buf.data(), QGemmIsa::kRef);
    }
    for (int64_t m = 0; m < c.M; ++m) {
      for (int64_t oy = 0; oy < s.out_h; ++oy) {
        for (int64_t ox = 0; ox < s.out_w; ++ox) {
          double want = bias[m], scale = std::abs(bias[m]);
          for (int64_t ch = 0; ch < c.C; ++ch) {
            for (int ky = 0; ky < 3; ++ky) {
              for (int kx = 0; kx < 3; ++kx) {
                const int64_t iy = oy - c.pad_top + ky, ix = ox - c.pad_left + kx;
                if (iy < 0 || iy >= c.in_h || ix < 0 || ix >= c.in_w) continue;
                const double term = static_cast<double>(x[(ch * c.in_h + iy) * c.in_w + ix]) * w[(m * c.C + ch) * 9 + ky * 3 + kx];
                want += term;
                scale += std::abs(term);
              }
            }
          }
          const float got = y[(m * s.out_h + oy) * s.out_w + ox];
          EXPECT_NEAR(got, want, 1e-5 * scale + 1e-6)
              << "C=" << c.C << " M=" << c.M << " in " << c.in_h << "x" << c.in_w << " m=" << m << " (" << oy << ", "
              << ox << ")";
        }
      }
    }
  }
}

TEST(WinogradF23, Avx512TransformsGiveTheBaselineBits) {
  if (!kernels::QGemmIsaSupported(QGemmIsa::kAvx512Vnni)) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937 rng(37);
  std::normal_distribution<float> normal;
  for (const Case& c : kCases) {
    const WinogradF23Shape s = ShapeOf(c);
    std::vector<float> x(static_cast<size_t>(c.C * c.in_h * c.in_w));
    for (auto& v : x) v = normal(rng);
    testing::GuardedBytes gx(AsBytes(x));
    const float* px = reinterpret_cast<const float*>(gx.data());
    std::vector<float> row_buf(static_cast<size_t>(kernels::WinogradF23RowBufferFloats(s)));
    const int64_t ty0 = s.TilesH() > 1 ? 1 : 0, ty1 = s.TilesH(), T = (ty1 - ty0) * s.TilesW();
    std::vector<float> want(static_cast<size_t>(16 * c.C * T)), got(want.size());
    kernels::WinogradF23TransformInput(s, px, c.C, ty0, ty1, T, 0, want.data(), row_buf.data(), QGemmIsa::kRef);
    kernels::WinogradF23TransformInput(s, px, c.C, ty0, ty1, T, 0, got.data(), row_buf.data(), QGemmIsa::kAvx512Vnni);
    ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float))) << "input, C=" << c.C;
    // Output: GEMM results with NaNs and signed zeros, a bias and a Clip.
    std::vector<float> mm(static_cast<size_t>(16 * c.M * T));
    for (auto& v : mm) {
      const unsigned r = rng() % 16;
      v = r == 0 ? std::numeric_limits<float>::quiet_NaN() : r == 1 ? -0.f : normal(rng);
    }
    std::vector<float> bias(static_cast<size_t>(c.M));
    for (auto& v : bias) v = normal(rng);
    for (bool clamp : {false, true}) {
      std::vector<float> y_ref(static_cast<size_t>(c.M * s.out_h * s.out_w), 5.f), y_avx(y_ref);
      kernels::WinogradF23TransformOutput(s, mm.data(), c.M, ty0, ty1, T, 0, bias.data(), clamp, -0.5f, 1.5f,
                                          y_ref.data(), row_buf.data(), QGemmIsa::kRef);
      kernels::WinogradF23TransformOutput(s, mm.data(), c.M, ty0, ty1, T, 0, bias.data(), clamp, -0.5f, 1.5f,
                                          y_avx.data(), row_buf.data(), QGemmIsa::kAvx512Vnni);
      ASSERT_EQ(0, std::memcmp(y_ref.data(), y_avx.data(), y_ref.size() * sizeof(float)))
          << "output, C=" << c.C << " clamp=" << clamp;
      // Rows above ty0's outputs are untouched.
      for (int64_t i = 0; i < 2 * ty0 * s.out_w; ++i) ASSERT_EQ(y_ref[i], 5.f);
    }
  }
}

// Several small maps side by side in one block (rows of ld tiles, each image from column t0)
// give each image's own transform, bit for bit.
TEST(WinogradF23, ImagesSideBySideGiveEachImagesValues) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal;
  const Case c = {4, 5, 9, 11, 1, 1, 1, 1};
  const WinogradF23Shape s = ShapeOf(c);
  const int64_t T = s.Tiles(), images = 3, ld = images * T;
  std::vector<float> x(static_cast<size_t>(images * c.C * c.in_h * c.in_w));
  for (auto& v : x) v = normal(rng);
  std::vector<float> row_buf(static_cast<size_t>(kernels::WinogradF23RowBufferFloats(s)));
  std::vector<float> together(static_cast<size_t>(16 * c.C * ld)), alone(static_cast<size_t>(16 * c.C * T));
  for (int64_t n = 0; n < images; ++n) {
    kernels::WinogradF23TransformInput(s, x.data() + n * c.C * c.in_h * c.in_w, c.C, 0, s.TilesH(), ld, n * T,
                                       together.data(), row_buf.data(), kernels::DefaultQGemmIsa());
  }
  for (int64_t n = 0; n < images; ++n) {
    kernels::WinogradF23TransformInput(s, x.data() + n * c.C * c.in_h * c.in_w, c.C, 0, s.TilesH(), T, 0,
                                       alone.data(), row_buf.data(), kernels::DefaultQGemmIsa());
    for (int64_t row = 0; row < 16 * c.C; ++row) {
      ASSERT_EQ(0, std::memcmp(alone.data() + row * T, together.data() + row * ld + n * T, T * sizeof(float)))
          << "image " << n << " row " << row;
    }
  }
  // Output: each image's slice of the GEMM results gives its own map.
  std::vector<float> mm(static_cast<size_t>(16 * c.M * ld)), bias(static_cast<size_t>(c.M));
  for (auto& v : mm) v = normal(rng);
  for (auto& v : bias) v = normal(rng);
  const int64_t out = c.M * s.out_h * s.out_w;
  std::vector<float> y(static_cast<size_t>(images * out)), y_alone(static_cast<size_t>(out)), mm_alone(alone.size() / c.C * c.M);
  for (int64_t n = 0; n < images; ++n) {
    kernels::WinogradF23TransformOutput(s, mm.data(), c.M, 0, s.TilesH(), ld, n * T, bias.data(), true, 0.f, 2.f,
                                        y.data() + n * out, row_buf.data(), kernels::DefaultQGemmIsa());
  }
  for (int64_t n = 0; n < images; ++n) {
    for (int64_t row = 0; row < 16 * c.M; ++row) {
      std::memcpy(mm_alone.data() + row * T, mm.data() + row * ld + n * T, T * sizeof(float));
    }
    kernels::WinogradF23TransformOutput(s, mm_alone.data(), c.M, 0, s.TilesH(), T, 0, bias.data(), true, 0.f, 2.f,
                                        y_alone.data(), row_buf.data(), kernels::DefaultQGemmIsa());
    ASSERT_EQ(0, std::memcmp(y_alone.data(), y.data() + n * out, out * sizeof(float))) << "image " << n;
  }
}

}  // namespace
}  // namespace quantkit
