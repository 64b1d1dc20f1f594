// Streaming observers behind CalibrationStats (include/quantkit/calibration.h explains every
// statistic, the histogram scheme and the range methods). Each observer updates from the float32
// values of one model run and merges exactly with another observer of the same settings.
#pragma once

#include <cstdint>
#include <string>

#include "quantkit/calibration.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit::quant {

// ---- min / max
void UpdateMinMax(MinMaxStats* stats, float batch_min, float batch_max);
void MergeMinMax(MinMaxStats* into, const MinMaxStats& other);

// ---- moving average of per-run min/max (one update per run that had a finite value)
void UpdateMovingAverage(MovingAverageStats* stats, float run_min, float run_max);
// `other` holds later runs than `into`.
void MergeMovingAverage(MovingAverageStats* into, const MovingAverageStats& other);

// ---- histogram (bins: a power of two; the first update sizes it)
// Adds the finite values of x; batch_min/batch_max are their extremes (from the same pass that
// found them, so the range grows once per run).
void UpdateHistogram(HistogramStats* stats, int64_t bins, const float* x, int64_t n, float batch_min, float batch_max);
// Grows the range to 2^exponent (no-op if it is already at least that).
void GrowHistogram(HistogramStats* stats, int32_t exponent);
// InvalidArgument if the bin counts differ.
Status MergeHistogram(HistogramStats* into, const HistogramStats& other);
// The smallest exponent e >= kHistogramMinExponent with -2^e <= min and max < 2^e.
int32_t HistogramExponentFor(float min, float max);

// ---- per-channel min/max
int ChannelAxisForRank(size_t rank);  // 1 for rank >= 3, 1 (last) for rank 2, -1 otherwise
void UpdateChannels(ChannelStats* stats, const Tensor& t, bool first_run);
void MergeChannels(ChannelStats* into, const ChannelStats& other);

// ---- everything for one tensor of one run (t must be float32)
void ObserveTensor(TensorStats* stats, const Tensor& t, const CalibrationSettings& settings);
// `other` holds later runs. InvalidArgument (naming nothing: callers add the tensor) if the
// histograms are incompatible.
Status MergeTensorStats(TensorStats* into, const TensorStats& other);

// ---- ranges from a histogram (all clipped to [minmax.min, minmax.max]; minmax must be non-empty)
FloatRange PercentileRange(const HistogramStats& h, const MinMaxStats& mm, double percentile, ActivationType type);
FloatRange EntropyRange(const HistogramStats& h, const MinMaxStats& mm, ActivationType type);
FloatRange MseRange(const HistogramStats& h, const MinMaxStats& mm, ActivationType type);

// Expected squared quantization error per value of the histogram's data when quantized with the
// parameters of `range`: the model MseRange minimises (see calibration.h). Exposed for tests.
double HistogramQuantizationMse(const HistogramStats& h, FloatRange range, ActivationType type);

}  // namespace quantkit::quant
