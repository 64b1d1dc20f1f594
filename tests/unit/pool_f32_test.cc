// The float 2x2 MaxPool row kernel gives the same bits on every ISA build (a selection, so
// NaN payloads and the sign of tied zeros too), for every row length through the 16-wide
// step and its masked tail, with both rows ending at a guard page (no read past 2n floats).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "runtime/kernels/pool_f32.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

std::vector<uint8_t> AsBytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

TEST(MaxPool2x2RowFloat, EveryIsaSameBitsAsThePortableLoop) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal;
  const float nan_a = std::nanf("1"), nan_b = std::nanf("2");
  auto value = [&] {  // NaNs (two payloads), both zeros and ties are frequent
    switch (rng() % 8) {
      case 0: return nan_a;
      case 1: return nan_b;
      case 2: return 0.f;
      case 3: return -0.f;
      case 4: return 1.f;
      default: return normal(rng);
    }
  };
  for (int64_t n : {1, 2, 7, 8, 9, 14, 15, 16, 17, 31, 32, 33, 56, 112}) {
    std::vector<float> a(static_cast<size_t>(2 * n)), b(a.size());
    for (auto& v : a) v = value();
    for (auto& v : b) v = value();
    testing::GuardedBytes ga(AsBytes(a)), gb(AsBytes(b));
    const auto* pa = reinterpret_cast<const float*>(ga.data());
    const auto* pb = reinterpret_cast<const float*>(gb.data());
    std::vector<float> want(static_cast<size_t>(n));
    kernels::MaxPool2x2RowFloat(pa, pb, want.data(), n, QGemmIsa::kRef);
    for (int64_t i = 0; i < n; ++i) {  // the portable loop is MaxPool's rule (spot check of its meaning)
      const float a0 = a[2 * i];
      if (std::isnan(a0)) {
        EXPECT_EQ(std::memcmp(&want[i], &a0, sizeof(float)), 0);
      } else {
        float best = a0;
        for (float v : {a[2 * i + 1], b[2 * i], b[2 * i + 1]})
          if (v > best) best = v;
        EXPECT_EQ(want[i], best);
      }
    }
    for (QGemmIsa isa : {QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
      if (!kernels::QGemmIsaSupported(isa)) continue;
      std::vector<float> got(static_cast<size_t>(n) + 16, 7.f);
      kernels::MaxPool2x2RowFloat(pa, pb, got.data(), n, isa);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
          << kernels::QGemmIsaName(isa) << " n=" << n;
      for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 7.f) << "stored past n=" << n;
    }
  }
}

}  // namespace
}  // namespace quantkit
