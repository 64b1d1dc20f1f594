// The float MaxPool row kernels (2x2, and 3-wide stride 2) give the same bits on every ISA build
// (a selection, so NaN payloads and the sign of tied zeros too), for every row length through the
// 16-wide step and its masked tail, with their rows ending at a guard page (no read past the end).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
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

// Pool inputs where NaNs (two payloads), both zeros and ties are frequent.
class PoolValues {
 public:
  explicit PoolValues(std::mt19937& rng) : rng_(rng) {}
  float operator()() {
    switch (rng_() % 8) {
      case 0: return std::nanf("1");
      case 1: return std::nanf("2");
      case 2: return 0.f;
      case 3: return -0.f;
      case 4: return 1.f;
      default: return normal_(rng_);
    }
  }

 private:
  std::mt19937& rng_;
  std::normal_distribution<float> normal_;
};

TEST(MaxPool2x2RowFloat, EveryIsaSameBitsAsThePortableLoop) {
  std::mt19937 rng(23);
  PoolValues value(rng);
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

TEST(MaxPool3Stride2RowFloat, EveryIsaSameBitsAsThePortableLoop) {
  std::mt19937 rng(29);
  PoolValues value(rng);
  for (int64_t nrows : {1, 2, 3}) {
    for (int64_t n : {1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 55, 112}) {
      std::vector<std::vector<float>> rows(static_cast<size_t>(nrows), std::vector<float>(static_cast<size_t>(2 * n + 1)));
      std::vector<std::unique_ptr<testing::GuardedBytes>> guarded;  // neither copied nor moved
      for (auto& row : rows) {
        for (auto& v : row) v = value();
        guarded.push_back(std::make_unique<testing::GuardedBytes>(AsBytes(row)));
      }
      const float* ptrs[3] = {};
      for (size_t r = 0; r < rows.size(); ++r) ptrs[r] = reinterpret_cast<const float*>(guarded[r]->data());
      std::vector<float> want(static_cast<size_t>(n));
      kernels::MaxPool3Stride2RowFloat(ptrs, nrows, want.data(), n, QGemmIsa::kRef);
      for (int64_t i = 0; i < n; ++i) {  // the rule, spelled out: a NaN first tap, else the max skipping NaNs
        const float tap = rows[0][2 * i];
        float best = std::numeric_limits<float>::quiet_NaN();
        for (int64_t c = 2 * i; c < 2 * i + 3; ++c)
          for (const auto& row : rows)
            if (std::isnan(best) || row[c] > best) best = row[c];
        const float got = want[i];
        if (std::isnan(tap)) {
          EXPECT_EQ(std::memcmp(&got, &tap, sizeof(float)), 0) << "n=" << n << " i=" << i;
        } else {
          EXPECT_TRUE(got == best || (std::isnan(got) && std::isnan(best))) << "n=" << n << " i=" << i;
        }
      }
      for (QGemmIsa isa : {QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<float> got(static_cast<size_t>(n) + 16, 7.f);
        kernels::MaxPool3Stride2RowFloat(ptrs, nrows, got.data(), n, isa);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << kernels::QGemmIsaName(isa) << " rows=" << nrows << " n=" << n;
        for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 7.f) << "stored past n=" << n;
      }
    }
  }
}

// The blocked (NCHW16c) row over window shapes of the MaxPool op and of the conv + pool fusion:
// 2x2 stride 2, 3x3 stride 2 with padding (edge windows shorter), dilation, and empty windows.
TEST(MaxPoolBlockedRowFloat, EveryIsaSameBitsAsThePortableLoop) {
  constexpr int64_t B = 16;
  std::mt19937 rng(31);
  PoolValues value(rng);
  struct Window {
    int64_t k, stride, pad, dil;
  };
  for (const Window w : {Window{2, 2, 0, 1}, Window{3, 2, 1, 1}, Window{3, 1, 1, 2}, Window{1, 1, 0, 1}}) {
    for (int64_t nrows : {0, 1, 2, 3}) {
      for (int64_t n : {1, 2, 5, 14, 28}) {
        const int64_t width = (n - 1) * w.stride + (w.k - 1) * w.dil + 1 - w.pad;  // columns read
        std::vector<int64_t> k_lo(static_cast<size_t>(n)), k_hi(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          int64_t lo = 0, hi = w.k;
          while (lo < hi && i * w.stride - w.pad + lo * w.dil < 0) ++lo;
          while (hi > lo && i * w.stride - w.pad + (hi - 1) * w.dil >= width) --hi;
          k_lo[static_cast<size_t>(i)] = lo;
          k_hi[static_cast<size_t>(i)] = (i % 7 == 6) ? lo : hi;  // some empty windows
        }
        std::vector<std::unique_ptr<testing::GuardedBytes>> guarded;
        const float* ptrs[3] = {};
        for (int64_t r = 0; r < nrows; ++r) {
          std::vector<float> row(static_cast<size_t>(width * B));
          for (auto& v : row) v = value();
          guarded.push_back(std::make_unique<testing::GuardedBytes>(AsBytes(row)));
          ptrs[r] = reinterpret_cast<const float*>(guarded.back()->data());
        }
        std::vector<float> want(static_cast<size_t>(n * B));
        kernels::MaxPoolBlockedRowFloat(ptrs, nrows, k_lo.data(), k_hi.data(), w.stride, w.pad, w.dil, want.data(), n,
                                        QGemmIsa::kRef);
        if (nrows > 0 && k_hi[0] > k_lo[0]) {  // the rule, spelled out for pixel 0, lane 3
          float best = ptrs[0][(k_lo[0] * w.dil - w.pad) * B + 3];
          for (int64_t r = 0; r < nrows; ++r)
            for (int64_t k = k_lo[0]; k < k_hi[0]; ++k) {
              const float v = ptrs[r][(k * w.dil - w.pad) * B + 3];
              if (v > best) best = v;
            }
          EXPECT_EQ(std::memcmp(&want[3], &best, sizeof(float)), 0);
        }
        for (QGemmIsa isa : {QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
          if (!kernels::QGemmIsaSupported(isa)) continue;
          std::vector<float> got(static_cast<size_t>((n + 1) * B), 7.f);
          kernels::MaxPoolBlockedRowFloat(ptrs, nrows, k_lo.data(), k_hi.data(), w.stride, w.pad, w.dil, got.data(),
                                          n, isa);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
              << kernels::QGemmIsaName(isa) << " k=" << w.k << " rows=" << nrows << " n=" << n;
          for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], 7.f) << "stored past n=" << n;
        }
      }
    }
  }
}

// The 8-bit 2x2 rows: the plain maximum of the four taps, on every ISA, for both signs, with the
// extreme values frequent, row lengths through the 16-wide step and its scalar tail, rows ending
// at a guard page.
template <typename T, typename Fn>
void Check8BitPairRows(Fn pool) {
  std::mt19937 rng(37);
  for (int64_t n : {1, 3, 4, 5, 7, 8, 9, 14, 15, 16, 17, 31, 32, 33, 56, 112}) {
    std::vector<uint8_t> a(static_cast<size_t>(2 * n)), b(a.size());
    for (auto* row : {&a, &b})
      for (auto& v : *row) v = rng() % 4 == 0 ? (rng() % 2 ? 0x80 : 0x7F) : static_cast<uint8_t>(rng());
    testing::GuardedBytes ga(a), gb(b);
    const auto* pa = reinterpret_cast<const T*>(ga.data());
    const auto* pb = reinterpret_cast<const T*>(gb.data());
    std::vector<T> want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) want[i] = std::max({pa[2 * i], pa[2 * i + 1], pb[2 * i], pb[2 * i + 1]});
    for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
      if (!kernels::QGemmIsaSupported(isa)) continue;
      std::vector<T> got(static_cast<size_t>(n) + 16, T{7});
      pool(pa, pb, got.data(), n, isa);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], want[i]) << kernels::QGemmIsaName(isa) << " n=" << n << " i=" << i;
      for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], T{7}) << "stored past n=" << n;
    }
  }
}

TEST(MaxPool2x2Row8Bit, EveryIsaTakesTheMaximum) {
  Check8BitPairRows<uint8_t>(kernels::MaxPool2x2RowU8);
  Check8BitPairRows<int8_t>(kernels::MaxPool2x2RowS8);
}

// The 8-bit 3-wide stride-2 rows (ResNet's stem pool on quantized maps): the maximum of each
// window's 3 columns over 1-3 rows, every ISA, both signs, rows of exactly 2n + 1 values ending at
// a guard page (the vector loads stay within them).
template <typename T, typename Fn>
void Check8BitThreeWideRows(Fn pool) {
  std::mt19937 rng(43);
  for (int64_t nrows : {1, 2, 3}) {
    for (int64_t n : {1, 5, 7, 8, 9, 15, 16, 17, 31, 55, 56, 112}) {
      std::vector<std::unique_ptr<testing::GuardedBytes>> guarded;
      const T* ptrs[3] = {};
      for (int64_t r = 0; r < nrows; ++r) {
        std::vector<uint8_t> row(static_cast<size_t>(2 * n + 1));
        for (auto& v : row) v = rng() % 4 == 0 ? (rng() % 2 ? 0x80 : 0x7F) : static_cast<uint8_t>(rng());
        guarded.push_back(std::make_unique<testing::GuardedBytes>(row));
        ptrs[r] = reinterpret_cast<const T*>(guarded.back()->data());
      }
      std::vector<T> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        T best = ptrs[0][2 * i];
        for (int64_t r = 0; r < nrows; ++r)
          for (int64_t c = 2 * i; c < 2 * i + 3; ++c) best = std::max(best, ptrs[r][c]);
        want[i] = best;
      }
      for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
        if (!kernels::QGemmIsaSupported(isa)) continue;
        std::vector<T> got(static_cast<size_t>(n) + 16, T{7});
        pool(ptrs, nrows, got.data(), n, isa);
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(got[i], want[i]) << kernels::QGemmIsaName(isa) << " rows=" << nrows << " n=" << n << " i=" << i;
        for (size_t i = want.size(); i < got.size(); ++i) ASSERT_EQ(got[i], T{7}) << "stored past n=" << n;
      }
    }
  }
}

TEST(MaxPool3Stride2Row8Bit, EveryIsaTakesTheMaximum) {
  Check8BitThreeWideRows<uint8_t>(kernels::MaxPool3Stride2RowU8);
  Check8BitThreeWideRows<int8_t>(kernels::MaxPool3Stride2RowS8);
}

}  // namespace
}  // namespace quantkit
