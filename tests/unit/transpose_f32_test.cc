// kernels::TransposeFloat: every ISA build gives the values of the definition (dst[j][i] =
// Clip(src[i][j])), NaN and -0 through the Clip as Clip does; edges of every size around the
// AVX-512 build's 16 x 16 blocks, leading dimensions wider than the matrices; nothing read past
// the source (a guard page) and nothing written outside the destination's rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "runtime/kernels/transpose_f32.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

TEST(TransposeFloat, EveryIsaEqualsTheDefinition) {
  struct Case {
    int64_t rows, cols, lds, ldd;
  };
  const std::vector<Case> cases = {{1, 1, 1, 1},    {16, 16, 16, 16}, {49, 960, 960, 49}, {17, 33, 40, 20},
                                   {7, 5, 9, 7},    {31, 16, 16, 31}, {16, 1, 3, 16},     {3, 100, 100, 5},
                                   {64, 47, 50, 64}};
  std::mt19937 rng(31);
  std::normal_distribution<float> normal;
  for (const Case& c : cases) {
    // The source ends at a guard page: its last row is only `cols` floats long.
    const int64_t src_floats = (c.rows - 1) * c.lds + c.cols;
    std::vector<float> src(static_cast<size_t>(src_floats));
    for (auto& v : src) v = normal(rng);
    src[0] = std::nanf("");
    if (src.size() > 1) src[1] = -0.f;
    std::vector<uint8_t> bytes(src.size() * sizeof(float));
    std::memcpy(bytes.data(), src.data(), bytes.size());
    testing::GuardedBytes guarded(bytes);
    const auto* sg = reinterpret_cast<const float*>(guarded.data());
    const float lo_hi[2] = {-0.5f, 0.75f};
    for (const float* clamp : {static_cast<const float*>(nullptr), lo_hi}) {
      std::vector<float> want(static_cast<size_t>(c.cols * c.ldd), 7.f);
      for (int64_t i = 0; i < c.rows; ++i) {
        for (int64_t j = 0; j < c.cols; ++j) {
          const float v = src[i * c.lds + j];
          want[j * c.ldd + i] = clamp ? std::min(std::max(v, clamp[0]), clamp[1]) : v;
        }
      }
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<float> got(want.size(), 7.f);  // 7: the gaps between rows must stay untouched
        kernels::TransposeFloat(sg, c.rows, c.cols, c.lds, got.data(), c.ldd, clamp, isa);
        ASSERT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0)
            << kernels::QGemmIsaName(isa) << " " << c.rows << "x" << c.cols << (clamp ? " clamped" : "");
      }
    }
  }
}

}  // namespace
}  // namespace quantkit
