// OutputComparison (compare's metrics) and SampleDirectory (sample folders) tests.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "quant/dataset.h"
#include "quant/metrics.h"
#include "quantkit/npy.h"
#include "test_util.h"

namespace quantkit {
namespace {

namespace fs = std::filesystem;

TEST(OutputComparison, KnownSqnrCosineAndTop1) {
  quant::OutputComparison c;
  // Reference rows [3,1] and [0,2]; candidate adds noise 0.1 per element, flips the argmax of
  // the second row: [3.1,0.9] and [0.1,1.9] -> same argmax; then a flipped row.
  ASSERT_TRUE(c.Add(Tensor::FromVector<float>({3, 1, 0, 2}, {2, 2}), Tensor::FromVector<float>({3.1f, 0.9f, 0.1f, 1.9f}, {2, 2})).ok());
  // signal = 9+1+0+4 = 14; noise = 4 * 0.01 = 0.04 -> 10 log10(350) = 25.44 dB.
  EXPECT_NEAR(c.sqnr_db(), 10 * std::log10(14.0 / 0.04), 1e-3);
  EXPECT_NEAR(c.max_abs_error(), 0.1, 1e-6);
  EXPECT_DOUBLE_EQ(c.top1_agreement(), 1.0);
  ASSERT_TRUE(c.Add(Tensor::FromVector<float>({1, 2}, {1, 2}), Tensor::FromVector<float>({2, 1}, {1, 2})).ok());
  EXPECT_NEAR(c.top1_agreement(), 2.0 / 3.0, 1e-12);
  EXPECT_LT(c.cosine(), 1.0);
  EXPECT_FALSE(c.Add(Tensor::FromVector<float>({1}, {1}), Tensor::FromVector<float>({1, 2}, {2})).ok());
}

TEST(OutputComparison, IdenticalIsInfiniteSqnr) {
  quant::OutputComparison c;
  Tensor t = Tensor::FromVector<float>({1, -2, 3}, {3});
  ASSERT_TRUE(c.Add(t, t).ok());
  EXPECT_TRUE(std::isinf(c.sqnr_db()) && c.sqnr_db() > 0);
  EXPECT_DOUBLE_EQ(c.cosine(), 1.0);
  EXPECT_FALSE(c.has_top1());
}

TEST(SampleDirectory, FindsLayoutsAndRejectsBadData) {
  const fs::path dir = fs::temp_directory_path() / ("qk_samples_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "a");
  fs::create_directories(dir / "b");
  ValueInfo in = testing::MakeValueInfo("in:0", DType::kFloat32, {1, 2});
  ASSERT_TRUE(WriteNpy(Tensor::FromVector<float>({1, 2}, {1, 2}), (dir / "a" / "in_0.npy").string()).ok());
  ASSERT_TRUE(WriteNpy(Tensor::FromVector<float>({3, 4}, {1, 2}), (dir / "b" / "in_0.npy").string()).ok());
  auto sd = quant::SampleDirectory::Open(dir.string(), {in});
  ASSERT_TRUE(sd.ok()) << sd.status().message();
  ASSERT_EQ(sd->size(), 2u);
  auto s1 = sd->Read(1);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ((*s1)[0].second.ToFloatVector(), (std::vector<float>{3, 4}));

  // Wrong shape, wrong dtype and NaN are errors naming the file and the input.
  ASSERT_TRUE(WriteNpy(Tensor::FromVector<float>({1, 2, 3}, {1, 3}), (dir / "b" / "in_0.npy").string()).ok());
  auto bad = quant::SampleDirectory::Open(dir.string(), {in})->Read(1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("in:0"), std::string::npos) << bad.status().message();
  ASSERT_TRUE(WriteNpy(Tensor::FromVector<float>({NAN, 2}, {1, 2}), (dir / "b" / "in_0.npy").string()).ok());
  bad = quant::SampleDirectory::Open(dir.string(), {in})->Read(1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("NaN"), std::string::npos);
  ASSERT_TRUE(WriteNpy(Tensor::FromVector<int32_t>({1, 2}, {1, 2}), (dir / "b" / "in_0.npy").string()).ok());
  bad = quant::SampleDirectory::Open(dir.string(), {in})->Read(1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("int32"), std::string::npos);

  // Empty folder.
  const fs::path empty = dir / "empty";
  fs::create_directories(empty);
  EXPECT_FALSE(quant::SampleDirectory::Open(empty.string(), {in}).ok());
  fs::remove_all(dir);
}

TEST(Npy, RoundTripAndMalformedHeaders) {
  Tensor t = Tensor::FromVector<int64_t>({1, -2, 3, 4, 5, 6}, {2, 3});
  auto back = ParseNpy(SerializeNpy(t), "t");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->shape(), (Shape{2, 3}));
  EXPECT_EQ(back->ToInt64Vector(), t.ToInt64Vector());
  std::string bytes = SerializeNpy(t);
  EXPECT_FALSE(ParseNpy(bytes.substr(0, bytes.size() - 1), "short").ok());  // data shorter than shape
  EXPECT_FALSE(ParseNpy("garbage", "g").ok());
  std::string huge = bytes;
  huge.replace(huge.find("(2,3)"), 5, "(9999999999,9999999999)");
  auto h = ParseNpy(huge, "huge");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("huge"), std::string::npos);
}

}  // namespace
}  // namespace quantkit
