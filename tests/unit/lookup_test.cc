// The 8-bit table lookup on every ISA build equals table[x] for every byte value, at lengths that
// leave tails of the 32-byte vector loop, and with the input behind a guard page.
#include <gtest/gtest.h>

#include <random>

#include "runtime/kernels/lookup.h"
#include "test_util.h"

namespace quantkit {
namespace {

using kernels::QGemmIsa;

TEST(LookupBytes, EveryIsaEqualsTheTable) {
  std::mt19937 rng(9);
  std::vector<uint8_t> table(256);
  for (auto& t : table) t = static_cast<uint8_t>(rng());
  for (int64_t n : {0, 1, 31, 32, 33, 256, 1000}) {
    std::vector<uint8_t> x_values(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) x_values[i] = static_cast<uint8_t>(i < 256 ? i : rng());  // every code
    testing::GuardedBytes x(x_values);
    for (QGemmIsa isa : {QGemmIsa::kRef, QGemmIsa::kAvx2, QGemmIsa::kAvx512Vnni, QGemmIsa::kAmx}) {
      if (!kernels::QGemmIsaSupported(isa)) continue;
      std::vector<uint8_t> y(static_cast<size_t>(n), 0);
      kernels::LookupBytes(x.data(), n, table.data(), y.data(), isa);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(y[i], table[x_values[i]]) << kernels::QGemmIsaName(isa) << " n=" << n << " i=" << i;
      }
    }
  }
}

}  // namespace
}  // namespace quantkit
