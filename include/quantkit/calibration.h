// Calibration for post-training static quantization.
//
// `CalibrateModel` runs the FP32 model over a calibration set, one item at a time, and keeps
// streaming statistics of every float32 activation (graph inputs and every node output of the
// main graph): memory does not depend on the number of samples. The statistics hold everything
// every method needs, so the method (and the percentile) can be changed later without running
// the model again:
//
//   CalibrationStats stats = ...CalibrateModel(...) or LoadCalibrationStats("stats.json");
//   RangeOptions ro;  ro.method = CalibrationMethod::kEntropy;  ro.type = ActivationType::kUInt8Asymmetric;
//   auto ranges = ComputeRanges(stats, ro);                        // tensor name -> FloatRange
//   ActivationQuantParams p = ActivationParamsFromRange((*ranges)["conv1_out"], ro.type);
//
// What is kept per tensor (TensorStats), and why each is exactly mergeable:
//  * min / max of the finite values (MinMaxStats): min of mins, max of maxes.
//  * a moving average of per-run min and max (MovingAverageStats), PyTorch's
//    MovingAverageMinMaxObserver: m_1 = x_1, m_k = m_{k-1} + c (x_k - m_{k-1}), c = momentum
//    (default 0.01), one x_k per model run (a run feeds `batch_size` items). It is kept as
//    m_n = (1-c)^(n-1) first + tail, tail_k = (1-c) tail_{k-1} + c x_k, so two shards merge in
//    closed form: tail = (1-c)^nB tail_A + c (1-c)^(nB-1) first_B + tail_B. The average is
//    order-dependent by definition: merging A then B equals one run over A's samples then B's.
//    This merge is exact in real arithmetic; in double precision it equals the one-pass value to
//    about 1e-15 relative (the float32 ranges and scales derived from it come out identical except
//    when a value lies within that distance of a float32 rounding boundary). Every other
//    statistic merges bit-exactly.
//  * a histogram (HistogramStats) of `bins` equal bins (a power of two, default 4096) over the
//    symmetric range [-2^e, 2^e), e the smallest exponent (>= kHistogramMinExponent) whose range
//    holds every finite value seen. A value's bin is floor(x / width) + bins/2, computed exactly
//    (the width is a power of two). When larger values arrive, the range doubles and bins merge
//    pairwise (new bin = floor(old/2) + bins/4), which is the same as binning every value at the
//    new range from the start. So the histogram is a function of the multiset of values only:
//    merging shards, or any split into runs, gives bit-identical counts, hence identical
//    percentile / entropy / MSE ranges. Resolution: the data's largest magnitude always uses
//    between bins/4 and bins/2 bins on its side of zero.
//  * per-channel min/max and mean (ChannelStats; the means drive static quantization's bias
//    correction, min/max are kept for SmoothQuant and later work): channel axis 1 for
//    rank >= 3 (NCHW activations, and [batch, seq, hidden] as [N, C, ...]), the last axis for
//    rank 2 ([batch, features]); none for rank 0/1. Dropped (axis -1) if the channel count
//    changes between runs. The channel sums are accumulated in double and added on merge, so a
//    merged mean equals the one-pass mean to about 1e-15 relative (no range depends on them).
//  Non-finite activation values (NaN/Inf produced by the model) are counted and ignored.
//
// Methods (ComputeRange; every range is clipped to [min, max] of the data):
//  * kMinMax: [min, max].   * kMovingAverage: the moving averages of per-run min and max.
//  * kPercentile (p, default 99.999): uint8 asymmetric: [lower edge of the bin holding the
//    (100-p)% quantile, upper edge of the bin holding the p% quantile] of the signed histogram;
//    int8 symmetric: [-T, T], T the upper edge of the bin holding the p% quantile of |x|.
//  * kEntropy: TensorRT's KL-divergence calibration on the histogram of |x|: for every
//    threshold i (in bins) from L to the last non-empty bin, P = the first i bins with the
//    outliers added to bin i-1, Q = those i bins (without outliers) merged into L groups, each
//    group's mass spread evenly over the bins where P is non-zero; T = i * width for the i with
//    the smallest KL(P||Q), computed exactly except that where P has mass and Q has none (the
//    outliers when the last group is otherwise empty) Q counts as 1e-4, so clipping a few far
//    outliers costs little (MXNet's / ONNX Runtime's smoothing constant). Each threshold costs
//    O(L) with prefix sums.
//    L = 128 quantization levels over [0, T] for int8 symmetric and for uint8 on data of both
//    signs (which gets [-T, T] clipped to the data), L = 256 for uint8 on one-signed data (range
//    [0, T] or [-T, 0]).
//  * kMse: the range that minimises the expected squared quantization error over the histogram
//    with the exact scale/zero point of ActivationParamsFromRange: values uniform within a bin,
//    a value beyond the grid's ends costs its squared distance to the end, a value inside costs
//    step^2/12 (uniform rounding noise). Every bin edge is tried as the free end (symmetric T; the
//    data's side for one-signed uint8); uint8 on data of both signs optimises the upper and the
//    lower end in turn until neither moves.
//
// Scale and zero point: ActivationParamsFromRange, one definition shared with the weights
// (runtime/kernels/ref/weight_quant.h, full range): uint8 asymmetric widens the range to
// contain 0, scale = (max - min) / 255, zero point = round_half_even(-min / scale); int8
// symmetric: scale = 2 max(|min|, |max|) / 255, zero point 0; an empty range gets scale 1.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "quantkit/dtype.h"
#include "quantkit/status.h"

namespace quantkit {

// ---------------------------------------------------------------- methods and quantized types

enum class CalibrationMethod { kMinMax, kMovingAverage, kPercentile, kEntropy, kMse };
enum class ActivationType { kUInt8Asymmetric, kInt8Symmetric };

// CLI / JSON names: "minmax", "moving-average", "percentile", "entropy", "mse"; "uint8", "int8".
std::string ToString(CalibrationMethod method);
std::string ToString(ActivationType type);
StatusOr<CalibrationMethod> ParseCalibrationMethod(const std::string& name);
StatusOr<ActivationType> ParseActivationType(const std::string& name);

struct RangeOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.999;  // kPercentile only; in (0, 100] (checked only for kPercentile)
  ActivationType type = ActivationType::kUInt8Asymmetric;
};
Status ValidateRangeOptions(const RangeOptions& options);

struct FloatRange {
  float min = 0;
  float max = 0;
};

struct ActivationQuantParams {
  float scale = 1;
  int32_t zero_point = 0;  // 0 for int8 symmetric
};

// The scale and zero point of an activation whose values span `range` (the one place of this
// math: rt::quant::WeightParamsFromRange with the full integer range).
ActivationQuantParams ActivationParamsFromRange(FloatRange range, ActivationType type);

// ---------------------------------------------------------------- statistics of one tensor

// Smallest histogram exponent: an all-zero tensor keeps the range [-2^-126, 2^-126).
inline constexpr int32_t kHistogramMinExponent = -126;

struct MinMaxStats {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  bool empty() const { return min > max; }
};

struct MovingAverageStats {
  double momentum = 0.01;  // c; the same for every tensor of a CalibrationStats (its settings)
  uint64_t runs = 0;       // runs that contributed (runs with no finite value do not)
  float first_min = 0, first_max = 0;
  double tail_min = 0, tail_max = 0;
  double min() const;  // (1-c)^(runs-1) first_min + tail_min; 0 when runs == 0
  double max() const;
};

struct HistogramStats {
  int32_t exponent = kHistogramMinExponent;  // range [-2^exponent, 2^exponent)
  std::vector<uint64_t> counts;               // `bins` entries; empty until the first update
  size_t bins() const { return counts.size(); }
  double bin_width() const;                   // 2^(exponent+1) / bins, exact
  double lower_edge(int64_t bin) const;       // -2^exponent + bin * width, exact
  uint64_t total() const;
};

struct ChannelStats {
  int axis = -1;  // -1: not kept (rank < 2, or the channel count changed)
  std::vector<float> min, max;
  // Sum and count of each channel's finite values (their mean drives bias correction). Empty in
  // files written before they were kept: means are then unavailable.
  std::vector<double> sum;
  std::vector<uint64_t> count;
  bool has_means() const { return axis >= 0 && !sum.empty(); }
  std::vector<double> means() const;  // sum / count; 0 for a channel without values
};

struct TensorStats {
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;  // of the first run; -1 where later runs differed
  bool rank_varies = false;    // the rank itself differed between runs (shape is then empty)
  uint64_t runs = 0;           // model runs that produced this tensor
  uint64_t elements = 0;       // finite values seen
  uint64_t nonfinite = 0;      // NaN/Inf values seen (ignored by every statistic)
  MinMaxStats minmax;
  MovingAverageStats moving_average;
  HistogramStats histogram;
  ChannelStats channels;
};

// ---------------------------------------------------------------- statistics of a model

// Settings that determine what the statistics mean. Merging requires equal settings (except
// `ranges`, the default method, which is taken from the first file).
struct CalibrationSettings {
  int64_t histogram_bins = 4096;  // power of two in [256, 65536]
  double momentum = 0.01;         // moving average; in (0, 1]
  int64_t batch_size = 1;         // items per model run (0: every file fed whole)
  RangeOptions ranges;            // the method chosen at calibration: the quantizer's default
};
Status ValidateCalibrationSettings(const CalibrationSettings& settings);

struct CalibrationStats {
  std::string model_sha256;  // of the model file; merging requires equal
  std::string model_path;    // informational
  CalibrationSettings settings;
  uint64_t items = 0;        // calibration items (samples) seen
  uint64_t runs = 0;         // model runs
  std::vector<std::string> data_sources;  // calibration directories, informational
  std::map<std::string, TensorStats> tensors;  // float32 activations by name
};

// The range of one tensor (InvalidArgument for bad options). A tensor without any finite value
// gets [0, 0].
StatusOr<FloatRange> ComputeRange(const TensorStats& stats, const RangeOptions& options);
// Ranges of every tensor that saw at least one finite value.
StatusOr<std::map<std::string, FloatRange>> ComputeRanges(const CalibrationStats& stats, const RangeOptions& options);

// ---------------------------------------------------------------- files

// JSON (format "quantkit-calibration", version 1; see docs in src/quant/calib_stats_io.cc).
// Saving writes a temp file and renames it (never a partial file); `ranges` adds, per tensor,
// the range and scale/zero point of settings.ranges for people to read (ignored when loading).
Status SaveCalibrationStats(const CalibrationStats& stats, const std::string& path);
std::string CalibrationStatsToJson(const CalibrationStats& stats);
// Validates everything (types, bin counts, exponents, channel vectors); errors name the file and
// the tensor.
StatusOr<CalibrationStats> LoadCalibrationStats(const std::string& path);
StatusOr<CalibrationStats> CalibrationStatsFromJson(const std::string& json_text, const std::string& what);
// Appends `other` (gathered on later samples) to `into`. InvalidArgument naming `other_what` if
// the model sha256 or the settings differ.
Status MergeCalibrationStats(CalibrationStats* into, const CalibrationStats& other, const std::string& other_what);

// ---------------------------------------------------------------- running the model

// How image files become model input (image folders only). Pixels are decoded as 8-bit RGB
// (or gray for 1-channel inputs), resized with bilinear interpolation (half-pixel centres, no
// antialiasing), then value = (pixel * scale - mean[c]) / std[c].
struct ImagePreprocessing {
  int64_t height = 0, width = 0;  // 0: from the model input's static shape
  int64_t resize_shorter = 0;     // > 0: resize the shorter side to this, then centre-crop HxW
  std::string layout;             // "NCHW" or "NHWC"; empty: guessed from the model input shape
  std::string color = "RGB";      // "RGB" or "BGR" channel order
  double scale = 1.0 / 255.0;
  std::vector<double> mean = {0.0};  // one value, or one per channel
  std::vector<double> std = {1.0};
};

struct CalibrationProgress {
  uint64_t items_done = 0;
  uint64_t items_expected = 0;  // an estimate until every file was read
  std::string current;          // the file being read
};

struct CalibrationOptions {
  uint64_t max_items = 0;  // 0: every item of the data directory (--calib-samples)
  int threads = 0;         // 0: all cores
  CalibrationSettings settings;
  ImagePreprocessing image;  // used when the directory holds images
  std::function<void(const CalibrationProgress&)> progress;  // after every run
  std::function<void(const std::string&)> log;               // one-line notes (data layout found)
};

// Runs the FP32 model over the calibration data in `data_dir` (SampleDirectory layouts: .npy,
// .npz, ONNX .pb sample folders; or an image folder) and returns the statistics. Files holding a
// batch along axis 0 are split into runs of settings.batch_size items. Bad data (names, shapes,
// dtypes that do not fit the model's inputs, NaN/Inf, an empty folder) is InvalidArgument naming
// the file and the input.
StatusOr<CalibrationStats> CalibrateModel(const std::string& model_path, const std::string& data_dir,
                                          const CalibrationOptions& options);

}  // namespace quantkit
