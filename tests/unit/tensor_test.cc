// Tensor, dtype and float16 conversion tests.
#include <gtest/gtest.h>

#include <cmath>

#include "quantkit/float16.h"
#include "quantkit/tensor.h"

namespace quantkit {
namespace {

TEST(Float16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << "half bits " << h;
  }
}

TEST(Float16, RoundsHalfToEven) {
  // 1 + 2^-11 is exactly between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  // 1 + 3*2^-11 is between 1+2^-10 (odd) and 1+2^-9 (even): goes up.
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(FloatToHalf(70000.f), 0x7c00);
  EXPECT_EQ(FloatToHalf(-70000.f), 0xfc00);
}

TEST(Tensor, CreateRejectsNegativeAndHugeShapes) {
  EXPECT_FALSE(Tensor::Create(DType::kFloat32, {2, -1}, nullptr, "x").ok());
  auto huge = Tensor::Create(DType::kFloat32, {1000000, 1000000, 1000}, nullptr, "big");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("big"), std::string::npos);
}

TEST(Tensor, ReshapeSharesBufferCloneDoesNot) {
  Tensor t = Tensor::FromVector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor r = t.Reshaped({3, 2});
  EXPECT_TRUE(r.SharesBufferWith(t));
  Tensor c = t.Clone();
  EXPECT_FALSE(c.SharesBufferWith(t));
  c.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[0], 1);
  EXPECT_EQ(r.dim(0), 3);
  EXPECT_EQ(t.ToInt64Vector(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
}

}  // namespace
}  // namespace quantkit
