// Calibration end to end on the bundled Fashion-MNIST CNN: merged shards equal one run exactly,
// statistics files round-trip exactly and reject corruption, .npz files and image folders.
#include <gtest/gtest.h>

#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "quant/calibrator.h"
#include "quant/dataset.h"
#include "quant/image_folder.h"
#include "quant/npz.h"
#include "quant/observers.h"
#include "quantkit/calibration.h"
#include "quantkit/static_quantize.h"
#include "quantkit/npy.h"
#include "test_util.h"

namespace quantkit {
namespace {

namespace fs = std::filesystem;

const std::string kModel = std::string(QUANTKIT_SOURCE_DIR) + "/assets/fashion_mnist_cnn.onnx";

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("qk_calib_" + tag + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path operator/(const std::string& s) const { return path_ / s; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// n images [1, 1, 28, 28], roughly normalised like Fashion-MNIST (deterministic).
std::vector<Tensor> Images(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<Tensor> images;
  for (int i = 0; i < n; ++i) {
    std::vector<float> v(28 * 28);
    for (float& x : v) x = dist(rng) * (i % 3 + 1) * 0.5f;
    images.push_back(Tensor::FromVector<float>(v, {1, 1, 28, 28}));
  }
  return images;
}

void WriteImages(const std::vector<Tensor>& images, size_t from, size_t to, const fs::path& dir) {
  fs::create_directories(dir);
  for (size_t i = from; i < to; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "img%03zu.npy", i);
    ASSERT_TRUE(WriteNpy(images[i], (dir / name).string()).ok());
  }
}

CalibrationStats Calibrate(const std::string& dir, int64_t batch_size = 1) {
  CalibrationOptions options;
  options.threads = 1;
  options.settings.batch_size = batch_size;
  auto stats = CalibrateModel(kModel, dir, options);
  EXPECT_TRUE(stats.ok()) << stats.status().message();
  return stats.ok() ? *stats : CalibrationStats{};
}

// Everything except the moving average must be bit-identical.
void ExpectSameStatistics(const CalibrationStats& a, const CalibrationStats& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, ta] : a.tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.tensors.count(name));
    const TensorStats& tb = b.tensors.at(name);
    EXPECT_EQ(ta.runs, tb.runs);
    EXPECT_EQ(ta.elements, tb.elements);
    EXPECT_EQ(ta.shape, tb.shape);
    EXPECT_EQ(ta.minmax.min, tb.minmax.min);
    EXPECT_EQ(ta.minmax.max, tb.minmax.max);
    EXPECT_EQ(ta.histogram.exponent, tb.histogram.exponent);
    EXPECT_EQ(ta.histogram.counts, tb.histogram.counts);
    EXPECT_EQ(ta.channels.axis, tb.channels.axis);
    EXPECT_EQ(ta.channels.min, tb.channels.min);
    EXPECT_EQ(ta.channels.max, tb.channels.max);
    EXPECT_EQ(ta.channels.count, tb.channels.count);
    // Channel sums add in another order when merged: equal to rounding (they feed bias
    // correction, never a range).
    ASSERT_EQ(ta.channels.sum.size(), tb.channels.sum.size());
    for (size_t c = 0; c < ta.channels.sum.size(); ++c)
      EXPECT_NEAR(ta.channels.sum[c], tb.channels.sum[c], 1e-12 * (1 + std::abs(ta.channels.sum[c])));
    EXPECT_EQ(ta.moving_average.runs, tb.moving_average.runs);
  }
}

const std::vector<CalibrationMethod> kMethods = {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverage,
                                                 CalibrationMethod::kPercentile, CalibrationMethod::kEntropy,
                                                 CalibrationMethod::kMse};

TEST(Calibration, MergedHalvesGiveExactlyTheScalesOfOneRun) {
  TempDir tmp("merge");
  const std::vector<Tensor> images = Images(24, 5);
  WriteImages(images, 0, 12, tmp / "a");
  WriteImages(images, 12, 24, tmp / "b");
  WriteImages(images, 0, 24, tmp / "all");
  const CalibrationStats all = Calibrate((tmp / "all").string());
  CalibrationStats merged = Calibrate((tmp / "a").string());
  ASSERT_TRUE(MergeCalibrationStats(&merged, Calibrate((tmp / "b").string()), "b").ok());
  EXPECT_EQ(merged.items, 24u);
  EXPECT_EQ(all.items, 24u);
  // Graph input, every Conv/Relu/MaxPool/Gemm output and the logits.
  EXPECT_TRUE(all.tensors.count("image"));
  EXPECT_TRUE(all.tensors.count("logits"));
  EXPECT_GE(all.tensors.size(), 12u);
  ExpectSameStatistics(merged, all);
  int compared = 0;
  for (CalibrationMethod method : kMethods) {
    for (ActivationType type : {ActivationType::kUInt8Asymmetric, ActivationType::kInt8Symmetric}) {
      SCOPED_TRACE(ToString(method) + " " + ToString(type));
      const RangeOptions ro{method, 99.9, type};
      auto ra = ComputeRanges(all, ro);
      auto rm = ComputeRanges(merged, ro);
      ASSERT_TRUE(ra.ok() && rm.ok());
      ASSERT_EQ(ra->size(), all.tensors.size());
      for (const auto& [name, r] : *ra) {
        SCOPED_TRACE(name);
        const FloatRange& m = rm->at(name);
        EXPECT_EQ(r.min, m.min);
        EXPECT_EQ(r.max, m.max);
        const ActivationQuantParams pa = ActivationParamsFromRange(r, type), pm = ActivationParamsFromRange(m, type);
        EXPECT_EQ(pa.scale, pm.scale);
        EXPECT_EQ(pa.zero_point, pm.zero_point);
        EXPECT_LE(r.min, r.max);
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 10 * static_cast<int>(all.tensors.size()));
  // Ranges narrow as expected: every method stays within min/max.
  const auto mm = *ComputeRanges(all, {CalibrationMethod::kMinMax});
  const auto ent = *ComputeRanges(all, {CalibrationMethod::kEntropy});
  for (const auto& [name, r] : ent) {
    EXPECT_GE(r.min, mm.at(name).min);
    EXPECT_LE(r.max, mm.at(name).max);
  }
}

TEST(Calibration, BatchFilesAreSplitIntoTheSameRuns) {
  TempDir tmp("batch");
  const std::vector<Tensor> images = Images(8, 9);
  WriteImages(images, 0, 8, tmp / "files");
  Tensor batch(DType::kFloat32, {8, 1, 28, 28});
  for (int i = 0; i < 8; ++i) std::memcpy(batch.data<float>() + i * 784, images[i].data<float>(), 784 * sizeof(float));
  fs::create_directories(tmp / "batch");
  ASSERT_TRUE(WriteNpy(batch, (tmp / "batch" / "image.npy").string()).ok());
  const CalibrationStats files = Calibrate((tmp / "files").string());
  const CalibrationStats one_file = Calibrate((tmp / "batch").string());
  EXPECT_EQ(one_file.items, 8u);
  EXPECT_EQ(one_file.runs, 8u);
  ExpectSameStatistics(files, one_file);
  for (const auto& [name, t] : files.tensors) {
    EXPECT_EQ(t.moving_average.min(), one_file.tensors.at(name).moving_average.min()) << name;
  }
  // Runs of 4 items: two runs; the same histograms, another moving average.
  const CalibrationStats by4 = Calibrate((tmp / "batch").string(), 4);
  EXPECT_EQ(by4.runs, 2u);
  EXPECT_EQ(by4.tensors.at("logits").histogram.counts, files.tensors.at("logits").histogram.counts);
  // --calib-samples: the first 3 items only.
  CalibrationOptions options;
  options.max_items = 3;
  auto three = CalibrateModel(kModel, (tmp / "batch").string(), options);
  ASSERT_TRUE(three.ok()) << three.status().message();
  EXPECT_EQ(three->items, 3u);
  EXPECT_EQ(three->tensors.at("image").elements, 3u * 784);
}

TEST(Calibration, SaveLoadRoundTripIsExact) {
  TempDir tmp("io");
  WriteImages(Images(6, 3), 0, 6, tmp / "data");
  CalibrationStats stats = Calibrate((tmp / "data").string());
  stats.settings.ranges = {CalibrationMethod::kPercentile, 99.99, ActivationType::kInt8Symmetric};
  // A channel that never saw a finite value, and a tensor without any, survive too.
  TensorStats& odd = stats.tensors["odd"];
  quant::ObserveTensor(&odd, Tensor::FromVector<float>({NAN, NAN}, {1, 2}), stats.settings);
  const std::string path = (tmp / "stats.json").string();
  ASSERT_TRUE(SaveCalibrationStats(stats, path).ok());
  auto loaded = LoadCalibrationStats(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ExpectSameStatistics(stats, *loaded);
  EXPECT_EQ(loaded->model_sha256, stats.model_sha256);
  EXPECT_EQ(loaded->settings.ranges.method, CalibrationMethod::kPercentile);
  EXPECT_EQ(loaded->settings.ranges.percentile, 99.99);
  EXPECT_EQ(loaded->settings.ranges.type, ActivationType::kInt8Symmetric);
  EXPECT_EQ(loaded->items, stats.items);
  for (const auto& [name, t] : stats.tensors) {
    const TensorStats& l = loaded->tensors.at(name);
    EXPECT_EQ(t.moving_average.tail_min, l.moving_average.tail_min) << name;
    EXPECT_EQ(t.moving_average.tail_max, l.moving_average.tail_max) << name;
    EXPECT_EQ(t.moving_average.first_min, l.moving_average.first_min) << name;
    EXPECT_EQ(t.nonfinite, l.nonfinite);
  }
  EXPECT_EQ(CalibrationStatsToJson(*loaded), CalibrationStatsToJson(stats));
  for (const auto& [name, t] : stats.tensors) EXPECT_EQ(t.channels.sum, loaded->tensors.at(name).channels.sum) << name;
  EXPECT_TRUE(loaded->tensors.at("image").channels.has_means());
  EXPECT_TRUE(loaded->tensors.at("odd").minmax.empty());
  EXPECT_EQ(loaded->tensors.at("odd").nonfinite, 2u);
}

TEST(Calibration, CorruptStatisticsAndForeignMergesAreErrors) {
  TempDir tmp("corrupt");
  WriteImages(Images(2, 4), 0, 2, tmp / "data");
  const CalibrationStats stats = Calibrate((tmp / "data").string());
  const std::string text = CalibrationStatsToJson(stats);
  const auto expect_error = [&](const std::string& bad, const std::string& want) {
    auto r = CalibrationStatsFromJson(bad, "s.json");
    ASSERT_FALSE(r.ok()) << want;
    EXPECT_NE(r.status().message().find("s.json"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(want), std::string::npos) << r.status().message();
  };
  expect_error(text.substr(0, text.size() / 2), "not valid JSON");
  expect_error("[1, 2]", "not a calibration statistics file");
  const auto replaced = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const size_t pos = t.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return pos == std::string::npos ? t : t.replace(pos, from.size(), to);
  };
  expect_error(replaced("\"histogram_bins\": 4096", "\"histogram_bins\": 1000"), "power of two");
  expect_error(replaced("\"bins\":4096", "\"bins\":2048"), "is 2048, the settings say 4096");
  expect_error(replaced("\"elements\":1568", "\"elements\":1569"), "sum to 1568");
  expect_error(replaced("\"dtype\":\"float32\"", "\"dtype\":\"int8\""), "float32");
  expect_error(replaced("\"sha256\": \"", "\"sha256\": \"x"), "sha256");
  expect_error(replaced("\"count\":[", "\"count\":[7,"), "one entry per channel");
  // Files written before channel sums were kept still load; their means are unavailable.
  std::string old_format = text;
  for (size_t at; (at = old_format.find(",\"sum\":[")) != std::string::npos;) {
    const size_t count_end = old_format.find(']', old_format.find(",\"count\":[", at));
    old_format.erase(at, count_end + 1 - at);
  }
  ASSERT_NE(old_format, text);
  auto old_stats = CalibrationStatsFromJson(old_format, "old.json");
  ASSERT_TRUE(old_stats.ok()) << old_stats.status().message();
  EXPECT_FALSE(old_stats->tensors.at("image").channels.has_means());
  EXPECT_EQ(old_stats->tensors.at("image").channels.min, stats.tensors.at("image").channels.min);
  EXPECT_TRUE(ChannelStatsOf(*old_stats).at("image").mean.empty());
  EXPECT_EQ(ChannelStatsOf(stats).at("image").mean.size(), 1u);
  CalibrationStats mixed = stats;  // merging with an old file drops the sums
  ASSERT_TRUE(MergeCalibrationStats(&mixed, *old_stats, "old.json").ok());
  EXPECT_FALSE(mixed.tensors.at("image").channels.has_means());

  CalibrationStats other = stats;
  other.model_sha256 = std::string(64, 'a');
  CalibrationStats into = stats;
  Status s = MergeCalibrationStats(&into, other, "b.json");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("b.json: statistics of a different model"), std::string::npos) << s.message();
  EXPECT_EQ(into.items, stats.items);  // unchanged
  other = stats;
  other.settings.histogram_bins = 2048;
  EXPECT_FALSE(MergeCalibrationStats(&into, other, "c.json").ok());
  EXPECT_FALSE(LoadCalibrationStats((tmp / "missing.json").string()).ok());
}

TEST(Calibration, BadCalibrationDataNamesTheFileAndInput) {
  TempDir tmp("bad");
  const auto expect_error = [&](const std::string& dir, const std::vector<std::string>& wants) {
    auto r = CalibrateModel(kModel, dir, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().message();
    for (const auto& w : wants) EXPECT_NE(r.status().message().find(w), std::string::npos) << r.status().message();
  };
  fs::create_directories(tmp / "empty");
  expect_error((tmp / "empty").string(), {"empty", "holds no samples"});
  fs::create_directories(tmp / "dtype");
  ASSERT_TRUE(WriteNpy(Tensor(DType::kInt32, {1, 1, 28, 28}), (tmp / "dtype" / "x.npy").string()).ok());
  expect_error((tmp / "dtype").string(), {"x.npy", "'image'", "int32"});
  fs::create_directories(tmp / "shape");
  ASSERT_TRUE(WriteNpy(Tensor(DType::kFloat32, {1, 1, 28, 27}), (tmp / "shape" / "x.npy").string()).ok());
  expect_error((tmp / "shape").string(), {"x.npy", "'image'", "shape"});
  fs::create_directories(tmp / "nan");
  WriteImages(Images(2, 1), 0, 2, tmp / "nan");
  Tensor nan_image = Images(1, 2)[0];
  nan_image.data<float>()[100] = INFINITY;
  ASSERT_TRUE(WriteNpy(nan_image, (tmp / "nan" / "z.npy").string()).ok());
  expect_error((tmp / "nan").string(), {"z.npy", "'image'", "NaN or Inf"});
}

// ---- .npz

std::string U16(uint16_t v) { return std::string{static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)}; }
std::string U32(uint32_t v) { return U16(static_cast<uint16_t>(v & 0xFFFF)) + U16(static_cast<uint16_t>(v >> 16)); }

// A zip archive as Python's zipfile writes it (no zip64), members stored or deflated.
std::string MakeZip(const std::vector<std::pair<std::string, std::string>>& members, bool compress) {
  std::string body, directory;
  for (const auto& [name, data] : members) {
    std::string stored = data;
    if (compress) {
      z_stream zs{};
      EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
      stored.resize(deflateBound(&zs, static_cast<uLong>(data.size())));
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
      zs.avail_in = static_cast<uInt>(data.size());
      zs.next_out = reinterpret_cast<Bytef*>(stored.data());
      zs.avail_out = static_cast<uInt>(stored.size());
      EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
      stored.resize(zs.total_out);
      deflateEnd(&zs);
    }
    const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    const uint16_t method = compress ? 8 : 0;
    const uint32_t offset = static_cast<uint32_t>(body.size());
    const std::string common = U16(20) + U16(0) + U16(method) + U16(0) + U16(0) + U32(crc) +
                               U32(static_cast<uint32_t>(stored.size())) + U32(static_cast<uint32_t>(data.size())) +
                               U16(static_cast<uint16_t>(name.size())) + U16(0);
    body += U32(0x04034b50) + common + name + stored;
    directory += U32(0x02014b50) + U16(20) + common + U16(0) + U16(0) + U16(0) + U32(0) + U32(offset) + name;
  }
  const uint16_t n = static_cast<uint16_t>(members.size());
  return body + directory + U32(0x06054b50) + U16(0) + U16(0) + U16(n) + U16(n) +
         U32(static_cast<uint32_t>(directory.size())) + U32(static_cast<uint32_t>(body.size())) + U16(0);
}

void WriteFile(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(Npz, ReadsStoredAndDeflatedMembersAndRejectsCorruption) {
  TempDir tmp("npz");
  const Tensor a = Tensor::FromVector<float>({1.5f, -2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = Tensor::FromVector<int64_t>({7, 8, 9}, {3});
  const std::vector<std::pair<std::string, std::string>> members = {{"a.npy", SerializeNpy(a)},
                                                                     {"b.npy", SerializeNpy(b)}};
  for (bool deflate : {false, true}) {
    SCOPED_TRACE(deflate ? "deflate" : "stored");
    const fs::path p = tmp / (deflate ? "d.npz" : "s.npz");
    const std::string zip = MakeZip(members, deflate);
    WriteFile(p, zip);
    auto npz = quant::NpzFile::Open(p.string());
    ASSERT_TRUE(npz.ok()) << npz.status().message();
    EXPECT_EQ(npz->keys(), (std::vector<std::string>{"a", "b"}));
    auto ta = npz->Read("a");
    ASSERT_TRUE(ta.ok()) << ta.status().message();
    EXPECT_EQ(ta->shape(), (Shape{2, 3}));
    EXPECT_EQ(ta->ToFloatVector(), a.ToFloatVector());
    EXPECT_EQ(npz->Read("b")->ToInt64Vector(), b.ToInt64Vector());
    EXPECT_FALSE(npz->Read("c").ok());
    // One flipped byte in the first member's data: CRC (stored) or inflate/CRC (deflate) catches it.
    std::string bad = zip;
    bad[30 + 5 + 20] ^= 0x55;
    WriteFile(tmp / "bad.npz", bad);
    auto r = quant::NpzFile::Open((tmp / "bad.npz").string())->Read("a");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("bad.npz"), std::string::npos) << r.status().message();
    // Truncated: the end record is gone.
    WriteFile(tmp / "short.npz", zip.substr(0, zip.size() - 10));
    EXPECT_FALSE(quant::NpzFile::Open((tmp / "short.npz").string()).ok());
  }
  WriteFile(tmp / "text.npz", "hello, this is not a zip archive at all");
  auto r = quant::NpzFile::Open((tmp / "text.npz").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("text.npz"), std::string::npos);
}

TEST(Npz, SampleDirectoryChecksKeysAgainstInputs) {
  TempDir tmp("npzdir");
  ValueInfo x = testing::MakeValueInfo("x:0", DType::kFloat32, {1, 2});
  ValueInfo y = testing::MakeValueInfo("y", DType::kFloat32, {1, 2});
  const std::string f2 = SerializeNpy(Tensor::FromVector<float>({1, 2}, {1, 2}));
  // Keys by name or by SafeFileName ("x_0").
  WriteFile(tmp / "s1.npz", MakeZip({{"x_0.npy", f2}, {"y.npy", f2}}, true));
  auto sd = quant::SampleDirectory::Open(tmp.str(), {x, y});
  ASSERT_TRUE(sd.ok()) << sd.status().message();
  ASSERT_EQ(sd->size(), 1u);
  auto sample = sd->Read(0);
  ASSERT_TRUE(sample.ok()) << sample.status().message();
  EXPECT_EQ((*sample)[0].first, "x:0");
  EXPECT_EQ((*sample)[1].second.ToFloatVector(), (std::vector<float>{1, 2}));
  const auto expect_error = [&](const std::string& zip, const std::vector<std::string>& wants) {
    WriteFile(tmp / "s1.npz", zip);
    auto r = quant::SampleDirectory::Open(tmp.str(), {x, y})->Read(0);
    ASSERT_FALSE(r.ok());
    for (const auto& w : wants) EXPECT_NE(r.status().message().find(w), std::string::npos) << r.status().message();
  };
  expect_error(MakeZip({{"x_0.npy", f2}}, false), {"s1.npz", "no array for input 'y'"});
  expect_error(MakeZip({{"x_0.npy", f2}, {"y.npy", f2}, {"z.npy", f2}}, false), {"s1.npz", "'z' is not an input"});
  expect_error(MakeZip({{"x_0.npy", f2}, {"y.npy", SerializeNpy(Tensor::FromVector<int32_t>({1, 2}, {1, 2}))}}, false),
               {"s1.npz", "'y'", "int32"});
}

// ---- image folders

TEST(ImageFolder, DecodesResizesAndNormalises) {
  TempDir tmp("images");
  // 4x2 RGB PPM: pixel (y, x) = (10 x, 100 y, 7).
  std::string ppm = "P6\n# test\n4 2\n255\n";
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) ppm += std::string{static_cast<char>(10 * x), static_cast<char>(100 * y), 7};
  fs::create_directories(tmp / "class_a");
  WriteFile(tmp / "class_a" / "img.ppm", ppm);
  EXPECT_TRUE(quant::LooksLikeImageFolder(tmp.str()));
  ImagePreprocessing spec;
  spec.mean = {0.5};
  spec.std = {0.25};
  ValueInfo nchw = testing::MakeValueInfo("pixels", DType::kFloat32, {1, 3, 2, 4});
  auto folder = quant::ImageFolder::Open(tmp.str(), nchw, spec);
  ASSERT_TRUE(folder.ok()) << folder.status().message();
  ASSERT_EQ(folder->size(), 1u);
  auto s = folder->Read(0);
  ASSERT_TRUE(s.ok()) << s.status().message();
  const Tensor& t = (*s)[0].second;
  EXPECT_EQ(t.shape(), (Shape{1, 3, 2, 4}));
  const auto expect = [](double pixel) { return static_cast<float>((pixel / 255.0 - 0.5) / 0.25); };
  EXPECT_FLOAT_EQ(t.data<float>()[0 * 8 + 1 * 4 + 3], expect(30));   // R at (1, 3)
  EXPECT_FLOAT_EQ(t.data<float>()[1 * 8 + 1 * 4 + 3], expect(100));  // G
  EXPECT_FLOAT_EQ(t.data<float>()[2 * 8 + 0 * 4 + 0], expect(7));    // B
  // BGR, NHWC.
  spec.color = "BGR";
  ValueInfo nhwc = testing::MakeValueInfo("pixels", DType::kFloat32, {1, 2, 4, 3});
  auto bgr = quant::ImageFolder::Open(tmp.str(), nhwc, spec);
  ASSERT_TRUE(bgr.ok()) << bgr.status().message();
  EXPECT_EQ(bgr->Describe().find("NHWC") != std::string::npos, true);
  auto bgr_sample = bgr->Read(0);
  ASSERT_TRUE(bgr_sample.ok()) << bgr_sample.status().message();
  const Tensor& tb = (*bgr_sample)[0].second;
  EXPECT_FLOAT_EQ(tb.data<float>()[(1 * 4 + 3) * 3 + 0], expect(7));
  EXPECT_FLOAT_EQ(tb.data<float>()[(1 * 4 + 3) * 3 + 2], expect(30));
  // Gray input: luma.
  ValueInfo gray = testing::MakeValueInfo("pixels", DType::kFloat32, {1, 1, 2, 4});
  spec.color = "RGB";
  auto gray_sample = quant::ImageFolder::Open(tmp.str(), gray, spec)->Read(0);
  ASSERT_TRUE(gray_sample.ok()) << gray_sample.status().message();
  const Tensor& tg = (*gray_sample)[0].second;
  EXPECT_FLOAT_EQ(tg.data<float>()[4], expect((0 * 299 + 100 * 587 + 7 * 114 + 500) / 1000));
  // Spec errors.
  ImagePreprocessing wrong;
  wrong.height = 3;
  wrong.width = 4;
  EXPECT_FALSE(quant::ImageFolder::Open(tmp.str(), nchw, wrong).ok());  // does not fit the model
  ValueInfo dynamic = nchw;
  dynamic.shape[2] = Dim{-1, "h"};
  dynamic.shape[3] = Dim{-1, "w"};
  auto no_size = quant::ImageFolder::Open(tmp.str(), dynamic, {});
  ASSERT_FALSE(no_size.ok());
  EXPECT_NE(no_size.status().message().find("--image-size"), std::string::npos);
  wrong = {};
  wrong.mean = {1, 2};
  EXPECT_FALSE(quant::ImageFolder::Open(tmp.str(), nchw, wrong).ok());
  // A broken file names itself.
  WriteFile(tmp / "class_a" / "broken.png", "\x89PNG\r\n\x1a\nnot really");
  auto broken = quant::ImageFolder::Open(tmp.str(), nchw, {});
  ASSERT_TRUE(broken.ok());
  auto r = broken->Read(0);  // sorted: broken.png first
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("broken.png"), std::string::npos) << r.status().message();
}

TEST(ImageFolder, BilinearResizeUsesHalfPixelCentres) {
  quant::DecodedImage img{1, 2, 1, {0, 100}};
  const std::vector<float> up = quant::ResizeBilinear(img, 1, 4, 0, 0, 1, 4);
  EXPECT_EQ(up, (std::vector<float>{0, 25, 75, 100}));
  // Resize to 1x8 then keep the centre 1x4.
  const std::vector<float> crop = quant::ResizeBilinear(img, 1, 8, 0, 2, 1, 4);
  EXPECT_EQ(crop, (std::vector<float>{12.5, 37.5, 62.5, 87.5}));
}

}  // namespace
}  // namespace quantkit
