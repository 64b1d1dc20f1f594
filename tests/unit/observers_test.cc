// Observers and range methods on known data (src/quant/observers.h).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant/observers.h"
#include "quantkit/calibration.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit {
namespace {

using quant::MergeTensorStats;
using quant::ObserveTensor;

TensorStats Observe(const std::vector<std::vector<float>>& runs, const CalibrationSettings& settings = {}) {
  TensorStats s;
  for (const auto& r : runs) ObserveTensor(&s, Tensor::FromVector<float>(r, {static_cast<int64_t>(r.size())}), settings);
  return s;
}

std::vector<float> Gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Empirical mean squared error of quantizing `data` with the parameters of `range`.
double EmpiricalMse(const std::vector<float>& data, FloatRange range, ActivationType type) {
  const ActivationQuantParams p = ActivationParamsFromRange(range, type);
  double sum = 0;
  for (float x : data) {
    const int64_t q = type == ActivationType::kInt8Symmetric ? rt::quant::QuantizeValue<int8_t>(x, p.scale, p.zero_point)
                                                             : rt::quant::QuantizeValue<uint8_t>(x, p.scale, p.zero_point);
    const double e = static_cast<double>(x) - rt::quant::DequantizeValue(q, p.zero_point, p.scale);
    sum += e * e;
  }
  return sum / static_cast<double>(data.size());
}

TEST(Observers, MinMaxIsExactAndIgnoresNonFinite) {
  TensorStats s = Observe({{3.5f, -2.25f, 1.0f}, {NAN, 7.125f, INFINITY, -0.5f}, {}});
  EXPECT_EQ(s.minmax.min, -2.25f);
  EXPECT_EQ(s.minmax.max, 7.125f);
  EXPECT_EQ(s.runs, 3u);
  EXPECT_EQ(s.elements, 5u);
  EXPECT_EQ(s.nonfinite, 2u);
  EXPECT_EQ(s.histogram.total(), 5u);
  EXPECT_EQ(s.shape, (std::vector<int64_t>{-1}));  // the length varied
  FloatRange r = *ComputeRange(s, {CalibrationMethod::kMinMax});
  EXPECT_EQ(r.min, -2.25f);
  EXPECT_EQ(r.max, 7.125f);
}

TEST(Observers, AllZeroAndEmptyTensorsGiveAnEmptyRange) {
  TensorStats zeros = Observe({{0, 0, 0, 0}});
  EXPECT_EQ(zeros.histogram.exponent, kHistogramMinExponent);
  TensorStats nothing = Observe({{NAN}});
  for (CalibrationMethod m : {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverage, CalibrationMethod::kPercentile,
                              CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    for (ActivationType type : {ActivationType::kUInt8Asymmetric, ActivationType::kInt8Symmetric}) {
      for (const TensorStats* s : {&zeros, &nothing}) {
        auto r = ComputeRange(*s, {m, 99.9, type});
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->min, 0.0f);
        EXPECT_EQ(r->max, 0.0f);
        EXPECT_EQ(ActivationParamsFromRange(*r, type).scale, 1.0f);
      }
    }
  }
}

TEST(Observers, MovingAverageFollowsPyTorchRecurrenceAndMerges) {
  CalibrationSettings settings;
  settings.momentum = 0.1;
  std::vector<std::vector<float>> runs;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-3, 3);
  for (int i = 0; i < 40; ++i) runs.push_back({u(rng), u(rng), u(rng)});
  TensorStats all = Observe(runs, settings);
  // PyTorch's MovingAverageMinMaxObserver: m = x_1, then m += c (x_k - m).
  double mmin = 0, mmax = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    const double lo = *std::min_element(runs[i].begin(), runs[i].end());
    const double hi = *std::max_element(runs[i].begin(), runs[i].end());
    mmin = i == 0 ? lo : mmin + 0.1 * (lo - mmin);
    mmax = i == 0 ? hi : mmax + 0.1 * (hi - mmax);
  }
  EXPECT_NEAR(all.moving_average.min(), mmin, 1e-12);
  EXPECT_NEAR(all.moving_average.max(), mmax, 1e-12);
  // Closed-form merge of the first 15 runs and the other 25.
  TensorStats a = Observe({runs.begin(), runs.begin() + 15}, settings);
  TensorStats b = Observe({runs.begin() + 15, runs.end()}, settings);
  ASSERT_TRUE(quant::MergeTensorStats(&a, b).ok());
  EXPECT_NEAR(a.moving_average.min(), all.moving_average.min(), 1e-13);
  EXPECT_NEAR(a.moving_average.max(), all.moving_average.max(), 1e-13);
  EXPECT_EQ(a.moving_average.runs, 40u);
}

TEST(Observers, HistogramBinsExactlyAndGrowthEqualsDirectBinning) {
  CalibrationSettings settings;
  settings.histogram_bins = 256;
  // Exponent: the smallest e with -2^e <= min and max < 2^e.
  EXPECT_EQ(quant::HistogramExponentFor(0.0f, 1.0f), 1);
  EXPECT_EQ(quant::HistogramExponentFor(0.0f, 0.999f), 0);
  EXPECT_EQ(quant::HistogramExponentFor(-1.0f, 0.5f), 0);
  EXPECT_EQ(quant::HistogramExponentFor(-1.01f, 0.5f), 1);
  EXPECT_EQ(quant::HistogramExponentFor(0.0f, 0.0f), kHistogramMinExponent);

  TensorStats s = Observe({{0.0f, 0.5f, -0.25f, 0.999f}}, settings);
  ASSERT_EQ(s.histogram.exponent, 0);  // range [-1, 1), width 2/256
  EXPECT_EQ(s.histogram.bin_width(), 1.0 / 128);
  EXPECT_EQ(s.histogram.counts[128], 1u);        // 0
  EXPECT_EQ(s.histogram.counts[128 + 64], 1u);   // 0.5
  EXPECT_EQ(s.histogram.counts[128 - 32], 1u);   // -0.25
  EXPECT_EQ(s.histogram.counts[255], 1u);        // 0.999

  // Small values first, then a large one: the grown histogram must equal binning everything at once.
  std::vector<float> small = Gaussian(5000, 1, 0.01f), big = Gaussian(5000, 2, 30.0f);
  TensorStats grown = Observe({small, big}, settings);
  std::vector<float> both = small;
  both.insert(both.end(), big.begin(), big.end());
  TensorStats direct = Observe({both}, settings);
  EXPECT_EQ(grown.histogram.exponent, direct.histogram.exponent);
  EXPECT_EQ(grown.histogram.counts, direct.histogram.counts);
  EXPECT_EQ(direct.histogram.exponent, quant::HistogramExponentFor(direct.minmax.min, direct.minmax.max));
}

TEST(Observers, HistogramMergeIsExactInAnyOrder) {
  const std::vector<float> a = Gaussian(20000, 3, 0.3f), b = Gaussian(20000, 4, 5.0f), c = {0, 0, 0, -100.0f};
  TensorStats ab = Observe({a}), ba = Observe({b}), all = Observe({a, b, c});
  ASSERT_TRUE(quant::MergeTensorStats(&ab, Observe({b})).ok());
  ASSERT_TRUE(quant::MergeTensorStats(&ab, Observe({c})).ok());
  ASSERT_TRUE(quant::MergeTensorStats(&ba, Observe({c})).ok());
  ASSERT_TRUE(quant::MergeTensorStats(&ba, Observe({a})).ok());
  EXPECT_EQ(ab.histogram.exponent, all.histogram.exponent);
  EXPECT_EQ(ab.histogram.counts, all.histogram.counts);
  EXPECT_EQ(ba.histogram.counts, all.histogram.counts);
  HistogramStats other;
  other.counts.assign(512, 0);
  EXPECT_FALSE(quant::MergeHistogram(&ab.histogram, other).ok());  // different bin counts
}

TEST(Observers, PercentileOfUniformData) {
  // 0, 1, ..., 99999 scaled to [0, 1): the 99th percentile is 0.99 up to one bin.
  std::vector<float> v(100000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / 100000.0f;
  TensorStats s = Observe({v});
  const double w = s.histogram.bin_width();
  FloatRange r = *ComputeRange(s, {CalibrationMethod::kPercentile, 99.0, ActivationType::kUInt8Asymmetric});
  EXPECT_NEAR(r.max, 0.99, w + 1e-6);
  EXPECT_GE(r.max, 0.99f);
  EXPECT_NEAR(r.min, 0.01, w + 1e-6);  // two-tailed: the lowest 1% is cut too
  // Symmetric data: the two-tailed uint8 range cuts 1% on each side, int8 takes |x|'s percentile.
  std::vector<float> sym(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) sym[2 * i] = v[i], sym[2 * i + 1] = -v[i];
  TensorStats ss = Observe({sym});
  FloatRange ru = *ComputeRange(ss, {CalibrationMethod::kPercentile, 99.0, ActivationType::kUInt8Asymmetric});
  EXPECT_NEAR(ru.max, 0.98, ss.histogram.bin_width() + 1e-6);
  EXPECT_NEAR(ru.min, -0.98, ss.histogram.bin_width() + 1e-6);
  FloatRange ri = *ComputeRange(ss, {CalibrationMethod::kPercentile, 99.0, ActivationType::kInt8Symmetric});
  EXPECT_NEAR(ri.max, 0.99, ss.histogram.bin_width() + 1e-6);
  EXPECT_EQ(ri.min, -ri.max);
  // 100% is min/max; out-of-range percentiles are errors.
  FloatRange all = *ComputeRange(s, {CalibrationMethod::kPercentile, 100.0});
  EXPECT_EQ(all.min, s.minmax.min);
  EXPECT_EQ(all.max, s.minmax.max);
  EXPECT_FALSE(ComputeRange(s, {CalibrationMethod::kPercentile, 0.0}).ok());
  EXPECT_FALSE(ComputeRange(s, {CalibrationMethod::kPercentile, 100.5}).ok());
}

std::vector<float> GaussianWithOutliers() {
  std::vector<float> v = Gaussian(200000, 11);
  for (int i = 0; i < 20; ++i) v.push_back(i % 2 ? 60.0f : -60.0f);
  return v;
}

TEST(Observers, EntropyThresholdIsSaneOnGaussianWithOutliers) {
  const std::vector<float> v = GaussianWithOutliers();
  TensorStats s = Observe({v});
  FloatRange r = *ComputeRange(s, {.method = CalibrationMethod::kEntropy, .type = ActivationType::kInt8Symmetric});
  // The 20 outliers at +-60 are clipped; the Gaussian's body (sigma 1) is kept.
  EXPECT_EQ(r.min, -r.max);
  EXPECT_GT(r.max, 2.5f);
  EXPECT_LT(r.max, 20.0f);
  // uint8 on two-signed data uses the same threshold on both sides (clipped to the data).
  FloatRange ru = *ComputeRange(s, {.method = CalibrationMethod::kEntropy, .type = ActivationType::kUInt8Asymmetric});
  EXPECT_EQ(ru.max, r.max);
  // One-signed data (ReLU output): 256 levels on [0, T].
  std::vector<float> relu;
  for (float x : v) relu.push_back(std::max(0.0f, x));
  TensorStats sr = Observe({relu});
  FloatRange rr = *ComputeRange(sr, {.method = CalibrationMethod::kEntropy, .type = ActivationType::kUInt8Asymmetric});
  EXPECT_EQ(rr.min, 0.0f);
  EXPECT_GT(rr.max, 2.5f);
  EXPECT_LT(rr.max, 20.0f);  // the far outliers cost little under the 1e-4 floor
  // Without outliers on a narrow uniform distribution nothing needs clipping.
  std::vector<float> uni(50000);
  for (size_t i = 0; i < uni.size(); ++i) uni[i] = static_cast<float>(i) / static_cast<float>(uni.size());
  FloatRange ruf = *ComputeRange(Observe({uni}), {.method = CalibrationMethod::kEntropy, .type = ActivationType::kUInt8Asymmetric});
  EXPECT_GT(ruf.max, 0.95f);
}

// KL(P||Q) of threshold i (bins) written out directly, O(i): the prefix-sum form must agree.
double DirectKl(const std::vector<double>& abs, size_t used, size_t levels, size_t i) {
  std::vector<double> p(abs.begin(), abs.begin() + static_cast<std::ptrdiff_t>(i)), q(i, 0.0);
  for (size_t k = i; k < used; ++k) p[i - 1] += abs[k];
  const size_t merged = i / levels;
  for (size_t g = 0; g < levels; ++g) {
    const size_t start = g * merged, end = g + 1 == levels ? i : start + merged;
    double sum = 0, nonzero = 0;
    for (size_t k = start; k < end; ++k) sum += abs[k], nonzero += p[k] != 0;
    for (size_t k = start; k < end; ++k)
      if (p[k] != 0) q[k] = sum / nonzero;
  }
  double sp = 0, sq = 0, kl = 0;
  for (size_t k = 0; k < i; ++k) sp += p[k], sq += q[k];
  for (size_t k = 0; k < i; ++k)
    if (p[k] > 0) kl += p[k] / sp * std::log((p[k] / sp) / (q[k] > 0 ? q[k] / sq : 1e-4));
  return kl;
}

TEST(Observers, EntropyMatchesTheDirectKlLoop) {
  CalibrationSettings settings;
  settings.histogram_bins = 1024;
  for (uint32_t seed : {21u, 22u, 23u}) {
    std::vector<float> v = Gaussian(30000, seed, 0.5f + seed % 3);
    std::mt19937 rng(seed);
    for (int i = 0; i < 30; ++i) v.push_back(std::uniform_real_distribution<float>(-40, 40)(rng));
    TensorStats s;
    ObserveTensor(&s, Tensor::FromVector<float>(v, {static_cast<int64_t>(v.size())}), settings);
    const HistogramStats& h = s.histogram;
    std::vector<double> abs(h.counts.size() / 2);
    for (size_t k = 0; k < abs.size(); ++k) abs[k] = static_cast<double>(h.counts[abs.size() + k] + h.counts[abs.size() - 1 - k]);
    size_t used = abs.size();
    while (abs[used - 1] == 0) --used;
    double best = INFINITY;
    for (size_t i = 128; i <= used; ++i) best = std::min(best, DirectKl(abs, used, 128, i));
    FloatRange r = *ComputeRange(s, {.method = CalibrationMethod::kEntropy, .type = ActivationType::kInt8Symmetric});
    // [-T, T] clipped to the data: the larger end is T (or the data's largest magnitude).
    const size_t chosen = static_cast<size_t>(std::lround(std::max(-r.min, r.max) / h.bin_width()));
    ASSERT_GE(chosen, 128u);
    ASSERT_LE(chosen, used);
    // The chosen threshold is a minimiser of the directly computed divergence (up to rounding).
    EXPECT_NEAR(DirectKl(abs, used, 128, chosen), best, 1e-9) << seed << ": threshold " << r.max;
  }
}

TEST(Observers, MseRangeMinimisesQuantizationError) {
  // Laplace(b = 1): the 8-bit MSE-optimal clipping is near 9.9 b (Banner et al., ACIQ), below the
  // sample maximum (about ln(200000) = 12.2).
  std::mt19937 rng(17);
  std::exponential_distribution<float> e(1.0f);
  std::vector<float> v(200000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (i % 2 ? 1.0f : -1.0f) * e(rng);
  TensorStats s = Observe({v});
  for (ActivationType type : {ActivationType::kInt8Symmetric, ActivationType::kUInt8Asymmetric}) {
    SCOPED_TRACE(ToString(type));
    FloatRange mse = *ComputeRange(s, {.method = CalibrationMethod::kMse, .type = type});
    FloatRange mm = *ComputeRange(s, {.method = CalibrationMethod::kMinMax, .type = type});
    EXPECT_GT(mse.max, 7.0f);
    EXPECT_LT(mse.max, 0.95f * mm.max);
    EXPECT_LT(mse.min, -7.0f);
    // The histogram's error model agrees with the real error of quantizing the data...
    const double model = quant::HistogramQuantizationMse(s.histogram, mse, type);
    const double real = EmpiricalMse(v, mse, type);
    EXPECT_NEAR(model, real, 0.05 * real);
    // ... and the chosen range beats min/max and nearby ranges on the real data.
    EXPECT_LT(real, EmpiricalMse(v, mm, type));
    for (float f : {0.8f, 1.2f}) {
      FloatRange other{std::max(mm.min, mse.min * f), std::min(mm.max, mse.max * f)};
      EXPECT_LT(real, EmpiricalMse(v, other, type)) << "scaled by " << f;
    }
  }
  // One-signed data keeps 0 as the lower end.
  std::vector<float> relu;
  for (float x : v) relu.push_back(std::max(0.0f, x));
  FloatRange r = *ComputeRange(Observe({relu}), {.method = CalibrationMethod::kMse});
  EXPECT_EQ(r.min, 0.0f);
  EXPECT_GT(r.max, 5.0f);
}

TEST(Observers, PerChannelMinMax) {
  CalibrationSettings settings;
  TensorStats nchw;
  // [2, 3, 1, 2]: channel c holds c*10 + {0..3} spread over both batch items.
  std::vector<float> x;
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 2; ++i) x.push_back(static_cast<float>(c * 10 + n * 2 + i) * (c == 1 ? -1.0f : 1.0f));
  ObserveTensor(&nchw, Tensor::FromVector<float>(x, {2, 3, 1, 2}), settings);
  ASSERT_EQ(nchw.channels.axis, 1);
  EXPECT_EQ(nchw.channels.min, (std::vector<float>{0, -13, 20}));
  EXPECT_EQ(nchw.channels.max, (std::vector<float>{3, -10, 23}));
  EXPECT_EQ(nchw.channels.count, (std::vector<uint64_t>{4, 4, 4}));
  EXPECT_EQ(nchw.channels.means(), (std::vector<double>{1.5, -11.5, 21.5}));
  // Means cover every run and skip non-finite values; merging adds sums and counts.
  TensorStats second;
  ObserveTensor(&second, Tensor::FromVector<float>({NAN, 7.5f, 1, 1, 2, INFINITY}, {1, 3, 1, 2}), settings);
  EXPECT_EQ(second.channels.means(), (std::vector<double>{7.5, 1, 2}));
  TensorStats both = nchw;
  ObserveTensor(&both, Tensor::FromVector<float>({NAN, 7.5f, 1, 1, 2, INFINITY}, {1, 3, 1, 2}), settings);
  ASSERT_TRUE(MergeTensorStats(&nchw, second).ok());
  EXPECT_EQ(nchw.channels.count, (std::vector<uint64_t>{5, 6, 5}));
  EXPECT_EQ(nchw.channels.sum, both.channels.sum);
  EXPECT_EQ(nchw.channels.means()[0], (6 + 7.5) / 5);
  // Rank 2: the last axis.
  TensorStats rows;
  ObserveTensor(&rows, Tensor::FromVector<float>({1, 5, -2, 4}, {2, 2}), settings);
  EXPECT_EQ(rows.channels.min, (std::vector<float>{-2, 4}));
  EXPECT_EQ(rows.channels.max, (std::vector<float>{1, 5}));
  // A changed channel count drops the per-channel statistics; rank 1 has none.
  ObserveTensor(&rows, Tensor::FromVector<float>({1, 2, 3}, {1, 3}), settings);
  EXPECT_EQ(rows.channels.axis, -1);
  EXPECT_TRUE(rows.channels.min.empty());
  EXPECT_EQ(Observe({{1, 2}}).channels.axis, -1);
}

TEST(Observers, ActivationParamsFromRange) {
  ActivationQuantParams p = ActivationParamsFromRange({-1.0f, 3.0f}, ActivationType::kUInt8Asymmetric);
  EXPECT_FLOAT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 64);  // round(1 / (4/255)) = round(63.75)
  p = ActivationParamsFromRange({0.5f, 2.0f}, ActivationType::kUInt8Asymmetric);  // widened to [0, 2]
  EXPECT_FLOAT_EQ(p.scale, 2.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  p = ActivationParamsFromRange({-1.25f, 126.25f}, ActivationType::kUInt8Asymmetric);  // -min/scale = 2.5
  EXPECT_EQ(p.scale, 0.5f);
  EXPECT_EQ(p.zero_point, 2);  // ties to even
  p = ActivationParamsFromRange({-1.0f, 3.0f}, ActivationType::kInt8Symmetric);
  EXPECT_FLOAT_EQ(p.scale, 6.0f / 255.0f);
  EXPECT_EQ(p.zero_point, 0);
  p = ActivationParamsFromRange({0.0f, 0.0f}, ActivationType::kUInt8Asymmetric);
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zero_point, 0);
}

TEST(Observers, MethodNamesRoundTrip) {
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverage, CalibrationMethod::kPercentile,
                 CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    EXPECT_EQ(*ParseCalibrationMethod(ToString(m)), m);
  }
  EXPECT_FALSE(ParseCalibrationMethod("kl").ok());
  EXPECT_EQ(*ParseActivationType("int8"), ActivationType::kInt8Symmetric);
  EXPECT_FALSE(ParseActivationType("int4").ok());
}

}  // namespace
}  // namespace quantkit
