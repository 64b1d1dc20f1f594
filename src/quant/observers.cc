// Streaming observers and the range methods (formulas and the exact-merge argument in
// include/quantkit/calibration.h).
#include "quant/observers.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>

#include "runtime/kernels/ref/weight_quant.h"

namespace quantkit {

// ---------------------------------------------------------------- names, parameters

std::string ToString(CalibrationMethod method) {
  switch (method) {
    case CalibrationMethod::kMinMax: return "minmax";
    case CalibrationMethod::kMovingAverage: return "moving-average";
    case CalibrationMethod::kPercentile: return "percentile";
    case CalibrationMethod::kEntropy: return "entropy";
    case CalibrationMethod::kMse: return "mse";
  }
  return "?";
}

std::string ToString(ActivationType type) { return type == ActivationType::kUInt8Asymmetric ? "uint8" : "int8"; }

StatusOr<CalibrationMethod> ParseCalibrationMethod(const std::string& name) {
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kMovingAverage, CalibrationMethod::kPercentile,
                 CalibrationMethod::kEntropy, CalibrationMethod::kMse}) {
    if (name == ToString(m)) return m;
  }
  return InvalidArgument(
      fmt::format("unknown calibration method '{}' (minmax, moving-average, percentile, entropy or mse)", name));
}

StatusOr<ActivationType> ParseActivationType(const std::string& name) {
  if (name == "uint8") return ActivationType::kUInt8Asymmetric;
  if (name == "int8") return ActivationType::kInt8Symmetric;
  return InvalidArgument(fmt::format("unknown activation type '{}' (uint8 or int8)", name));
}

Status ValidateRangeOptions(const RangeOptions& options) {
  if (options.method == CalibrationMethod::kPercentile && !(options.percentile > 0 && options.percentile <= 100)) {
    return InvalidArgument(fmt::format("percentile {} is outside (0, 100]", options.percentile));
  }
  return Status::Ok();
}

ActivationQuantParams ActivationParamsFromRange(FloatRange range, ActivationType type) {
  const auto p = rt::quant::WeightParamsFromRange(range.min, range.max,
                                                  type == ActivationType::kInt8Symmetric
                                                      ? rt::quant::WeightType::kInt8Symmetric
                                                      : rt::quant::WeightType::kUInt8Asymmetric,
                                                  /*narrow_range=*/false);
  return {p.scale, p.zero_point};
}

double MovingAverageStats::min() const {
  return runs == 0 ? 0.0 : std::pow(1.0 - momentum, static_cast<double>(runs - 1)) * first_min + tail_min;
}
double MovingAverageStats::max() const {
  return runs == 0 ? 0.0 : std::pow(1.0 - momentum, static_cast<double>(runs - 1)) * first_max + tail_max;
}

double HistogramStats::bin_width() const {
  if (counts.empty()) return 0;
  return std::ldexp(2.0, exponent) / static_cast<double>(counts.size());
}
double HistogramStats::lower_edge(int64_t bin) const {
  return std::ldexp(1.0, exponent) * -1.0 + static_cast<double>(bin) * bin_width();
}
uint64_t HistogramStats::total() const {
  uint64_t t = 0;
  for (uint64_t c : counts) t += c;
  return t;
}

std::vector<double> ChannelStats::means() const {
  std::vector<double> m(sum.size(), 0.0);
  for (size_t i = 0; i < sum.size(); ++i)
    if (count[i] > 0) m[i] = sum[i] / static_cast<double>(count[i]);
  return m;
}

}  // namespace quantkit

namespace quantkit::quant {

// ---------------------------------------------------------------- min / max, moving average

void UpdateMinMax(MinMaxStats* stats, float batch_min, float batch_max) {
  stats->min = std::min(stats->min, batch_min);
  stats->max = std::max(stats->max, batch_max);
}

void MergeMinMax(MinMaxStats* into, const MinMaxStats& other) {
  if (!other.empty()) UpdateMinMax(into, other.min, other.max);
}

void UpdateMovingAverage(MovingAverageStats* s, float run_min, float run_max) {
  if (s->runs == 0) {
    s->first_min = run_min;
    s->first_max = run_max;
    s->tail_min = s->tail_max = 0;
  } else {
    const double keep = 1.0 - s->momentum;
    s->tail_min = keep * s->tail_min + s->momentum * run_min;
    s->tail_max = keep * s->tail_max + s->momentum * run_max;
  }
  ++s->runs;
}

void MergeMovingAverage(MovingAverageStats* into, const MovingAverageStats& other) {
  if (other.runs == 0) return;
  if (into->runs == 0) {
    *into = other;
    return;
  }
  const double keep = 1.0 - into->momentum;
  const double decay_all = std::pow(keep, static_cast<double>(other.runs));      // (1-c)^nB
  const double decay_first = std::pow(keep, static_cast<double>(other.runs - 1));  // (1-c)^(nB-1)
  into->tail_min = decay_all * into->tail_min + into->momentum * decay_first * other.first_min + other.tail_min;
  into->tail_max = decay_all * into->tail_max + into->momentum * decay_first * other.first_max + other.tail_max;
  into->runs += other.runs;
}

// ---------------------------------------------------------------- histogram

int32_t HistogramExponentFor(float min, float max) {
  int32_t e = kHistogramMinExponent;
  if (max > 0) {
    int k = 0;
    std::frexp(max, &k);  // max = m 2^k, m in [0.5, 1): max < 2^k, max >= 2^(k-1)
    e = std::max(e, static_cast<int32_t>(k));
  }
  if (min < 0) {
    int k = 0;
    const float m = std::frexp(-min, &k);  // -min = m 2^k; -2^e <= min needs -min <= 2^e
    e = std::max(e, static_cast<int32_t>(m == 0.5f ? k - 1 : k));
  }
  return e;
}

void GrowHistogram(HistogramStats* h, int32_t exponent) {
  if (exponent <= h->exponent) return;
  if (h->counts.empty()) {
    h->exponent = exponent;
    return;
  }
  const int64_t half = static_cast<int64_t>(h->counts.size() / 2);
  const int shift = static_cast<int>(std::min<int64_t>(int64_t{exponent} - h->exponent, 62));
  std::vector<uint64_t> grown(h->counts.size(), 0);
  for (int64_t i = 0; i < static_cast<int64_t>(h->counts.size()); ++i) {
    if (h->counts[i] == 0) continue;
    // floor((i - half) / 2^shift): C++20 defines >> on negative values as floor division.
    grown[static_cast<size_t>(((i - half) >> shift) + half)] += h->counts[i];
  }
  h->counts = std::move(grown);
  h->exponent = exponent;
}

void UpdateHistogram(HistogramStats* h, int64_t bins, const float* x, int64_t n, float batch_min, float batch_max) {
  if (h->counts.empty()) h->counts.assign(static_cast<size_t>(bins), 0);
  if (batch_min > batch_max) return;  // no finite value
  GrowHistogram(h, HistogramExponentFor(batch_min, batch_max));
  const int64_t nbins = static_cast<int64_t>(h->counts.size());
  const int64_t half = nbins / 2;
  const int log2_bins = std::countr_zero(static_cast<uint64_t>(nbins));
  // x / width = x * 2^(log2_bins - 1 - exponent): a power-of-two product, exact in double.
  const double to_bins = std::ldexp(1.0, log2_bins - 1 - h->exponent);
  uint64_t* counts = h->counts.data();
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) continue;
    const double scaled = static_cast<double>(v) * to_bins;  // |scaled| <= bins/2
    int64_t bin = static_cast<int64_t>(scaled);               // truncation, then floor:
    bin -= scaled < static_cast<double>(bin);                 // (std::floor is a libm call here)
    bin = std::clamp<int64_t>(bin + half, 0, nbins - 1);      // never needed when the range holds v
    ++counts[bin];
  }
}

Status MergeHistogram(HistogramStats* into, const HistogramStats& other) {
  if (other.counts.empty()) return Status::Ok();
  if (into->counts.empty()) {
    *into = other;
    return Status::Ok();
  }
  if (into->counts.size() != other.counts.size()) {
    return InvalidArgument(fmt::format("histograms have {} and {} bins", into->counts.size(), other.counts.size()));
  }
  const int32_t e = std::max(into->exponent, other.exponent);
  GrowHistogram(into, e);
  HistogramStats o = other;
  GrowHistogram(&o, e);
  for (size_t i = 0; i < o.counts.size(); ++i) into->counts[i] += o.counts[i];
  return Status::Ok();
}

// ---------------------------------------------------------------- per channel

int ChannelAxisForRank(size_t rank) { return rank >= 2 ? 1 : -1; }

namespace {

void DropChannels(ChannelStats* c) {
  c->axis = -1;
  c->min.clear();
  c->max.clear();
  c->sum.clear();
  c->count.clear();
}

// One pass over t viewed as [outer, channels, inner]: per-channel extremes (if kept), the
// tensor's extremes and the number of non-finite values.
struct RunExtremes {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  uint64_t nonfinite = 0;
};

RunExtremes ScanTensor(const Tensor& t, ChannelStats* channels) {
  RunExtremes r;
  const float* x = t.data<float>();
  const int64_t n = t.numel();
  if (channels->axis < 0) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (!std::isfinite(v)) {
        ++r.nonfinite;
        continue;
      }
      r.min = std::min(r.min, v);
      r.max = std::max(r.max, v);
    }
    return r;
  }
  const size_t axis = static_cast<size_t>(channels->axis);
  const int64_t c_count = t.dim(axis);
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= t.dim(d);
  for (size_t d = axis + 1; d < t.rank(); ++d) inner *= t.dim(d);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < c_count; ++c) {
      const float* src = x + (o * c_count + c) * inner;
      // This run's extremes (the moving average needs them apart from earlier runs').
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      double sum = 0;
      uint64_t bad = 0;
      for (int64_t i = 0; i < inner; ++i) {
        const float v = src[i];
        if (!std::isfinite(v)) {
          ++bad;
          continue;
        }
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        sum += v;
      }
      r.nonfinite += bad;
      r.min = std::min(r.min, lo);
      r.max = std::max(r.max, hi);
      channels->min[c] = std::min(channels->min[c], lo);
      channels->max[c] = std::max(channels->max[c], hi);
      channels->sum[c] += sum;
      channels->count[c] += static_cast<uint64_t>(inner) - bad;
    }
  }
  return r;
}

}  // namespace

void UpdateChannels(ChannelStats* c, const Tensor& t, bool first_run) {
  const int axis = ChannelAxisForRank(t.rank());
  if (first_run) {
    DropChannels(c);
    if (axis < 0) return;
    c->axis = axis;
    const auto count = static_cast<size_t>(t.dim(static_cast<size_t>(axis)));
    c->min.assign(count, std::numeric_limits<float>::infinity());
    c->max.assign(count, -std::numeric_limits<float>::infinity());
    c->sum.assign(count, 0.0);
    c->count.assign(count, 0);
    return;
  }
  if (c->axis < 0) return;  // dropped earlier: stays dropped
  if (axis != c->axis || static_cast<size_t>(t.dim(static_cast<size_t>(axis))) != c->min.size()) DropChannels(c);
}

void MergeChannels(ChannelStats* into, const ChannelStats& other) {
  if (into->axis < 0) return;
  if (other.axis != into->axis || other.min.size() != into->min.size()) {
    DropChannels(into);
    return;
  }
  for (size_t i = 0; i < into->min.size(); ++i) {
    into->min[i] = std::min(into->min[i], other.min[i]);
    into->max[i] = std::max(into->max[i], other.max[i]);
  }
  if (into->sum.empty() || other.sum.empty()) {  // a file without sums: means unavailable
    into->sum.clear();
    into->count.clear();
    return;
  }
  for (size_t i = 0; i < into->sum.size(); ++i) {
    into->sum[i] += other.sum[i];
    into->count[i] += other.count[i];
  }
}


// ---------------------------------------------------------------- one tensor

void ObserveTensor(TensorStats* s, const Tensor& t, const CalibrationSettings& settings) {
  const bool first = s->runs == 0;
  if (first) {
    s->dtype = t.dtype();
    s->shape = t.shape();
    s->rank_varies = false;
    s->moving_average.momentum = settings.momentum;
  } else if (!s->rank_varies) {
    if (s->shape.size() != t.rank()) {
      s->rank_varies = true;
      s->shape.clear();
    } else {
      for (size_t d = 0; d < t.rank(); ++d)
        if (s->shape[d] != t.dim(d)) s->shape[d] = -1;
    }
  }
  UpdateChannels(&s->channels, t, first);
  const RunExtremes r = ScanTensor(t, &s->channels);
  s->nonfinite += r.nonfinite;
  s->elements += static_cast<uint64_t>(t.numel()) - r.nonfinite;
  if (r.min <= r.max) {
    UpdateMinMax(&s->minmax, r.min, r.max);
    UpdateMovingAverage(&s->moving_average, r.min, r.max);
  }
  UpdateHistogram(&s->histogram, settings.histogram_bins, t.data<float>(), t.numel(), r.min, r.max);
  ++s->runs;
}

Status MergeTensorStats(TensorStats* into, const TensorStats& other) {
  if (other.runs == 0) return Status::Ok();
  if (into->runs == 0) {
    *into = other;
    return Status::Ok();
  }
  if (into->dtype != other.dtype) {
    return InvalidArgument(fmt::format("dtype {} vs {}", DTypeName(into->dtype), DTypeName(other.dtype)));
  }
  QK_RETURN_IF_ERROR(MergeHistogram(&into->histogram, other.histogram));
  if (!into->rank_varies) {
    if (other.rank_varies || other.shape.size() != into->shape.size()) {
      into->rank_varies = true;
      into->shape.clear();
    } else {
      for (size_t d = 0; d < into->shape.size(); ++d)
        if (into->shape[d] != other.shape[d]) into->shape[d] = -1;
    }
  }
  into->runs += other.runs;
  into->elements += other.elements;
  into->nonfinite += other.nonfinite;
  MergeMinMax(&into->minmax, other.minmax);
  MergeMovingAverage(&into->moving_average, other.moving_average);
  MergeChannels(&into->channels, other.channels);
  return Status::Ok();
}

// ---------------------------------------------------------------- ranges from the histogram

namespace {

FloatRange Clip(const MinMaxStats& mm, double lo, double hi) {
  return {static_cast<float>(std::max<double>(mm.min, lo)), static_cast<float>(std::min<double>(mm.max, hi))};
}

// Histogram of |x|: bin k covers magnitudes [k w, (k+1) w].
std::vector<uint64_t> AbsHistogram(const HistogramStats& h) {
  const size_t half = h.counts.size() / 2;
  std::vector<uint64_t> abs(half);
  for (size_t k = 0; k < half; ++k) abs[k] = h.counts[half + k] + h.counts[half - 1 - k];
  return abs;
}

size_t UsedBins(const std::vector<uint64_t>& counts) {
  size_t n = counts.size();
  while (n > 0 && counts[n - 1] == 0) --n;
  return n;
}

bool BothSigns(const MinMaxStats& mm) { return mm.min < 0 && mm.max > 0; }

}  // namespace

FloatRange PercentileRange(const HistogramStats& h, const MinMaxStats& mm, double percentile, ActivationType type) {
  const uint64_t total = h.total();
  if (total == 0) return {mm.min, mm.max};
  const double upper_target = percentile / 100.0 * static_cast<double>(total);
  const double w = h.bin_width();
  if (type == ActivationType::kInt8Symmetric) {
    const std::vector<uint64_t> abs = AbsHistogram(h);
    uint64_t cum = 0;
    double t = static_cast<double>(abs.size()) * w;
    for (size_t k = 0; k < abs.size(); ++k) {
      cum += abs[k];
      if (static_cast<double>(cum) >= upper_target) {
        t = static_cast<double>(k + 1) * w;
        break;
      }
    }
    return Clip(mm, -t, t);
  }
  const double lower_target = (1.0 - percentile / 100.0) * static_cast<double>(total);
  const int64_t n = static_cast<int64_t>(h.counts.size());
  double lo = h.lower_edge(0), hi = h.lower_edge(n);
  uint64_t cum = 0;
  bool lo_found = false;
  for (int64_t j = 0; j < n; ++j) {
    cum += h.counts[j];
    if (!lo_found && static_cast<double>(cum) > lower_target) {
      lo = h.lower_edge(j);
      lo_found = true;
    }
    if (static_cast<double>(cum) >= upper_target) {
      hi = h.lower_edge(j + 1);
      break;
    }
  }
  return Clip(mm, lo, hi);
}

FloatRange EntropyRange(const HistogramStats& h, const MinMaxStats& mm, ActivationType type) {
  const std::vector<uint64_t> abs = AbsHistogram(h);
  const size_t used = UsedBins(abs);
  const size_t levels = (type == ActivationType::kInt8Symmetric || BothSigns(mm)) ? 128 : 256;
  const double amax = std::max(std::fabs(static_cast<double>(mm.min)), std::fabs(static_cast<double>(mm.max)));
  double threshold = amax;
  if (used > levels) {
    // KL(P||Q) for threshold i, with a_k = abs[k] (plus the outliers at k = i-1), Sp = sum a_k,
    // Sq = sum of abs[0, i), and per group g: A_g = sum of a_k, G_g = sum of abs_k, n_g = number
    // of k with a_k > 0 (Q spreads G_g evenly over them, q = G_g / (n_g Sq)):
    //   KL = sum_k a_k/Sp (log(a_k/Sp) - log q_k)
    //      = (1/Sp) [sum_k a_k log a_k + sum_g A_g (log n_g - log G_g + log Sq)] - log Sp.
    // A group with G_g = 0 but A_g > 0 (outliers beyond an empty stretch) has q floored at eps:
    // its term is A_g (log eps) subtracted instead. Prefix sums make each threshold O(levels).
    constexpr double kEps = 1e-4;
    std::vector<double> cum(used + 1, 0), alog(used + 1, 0);
    std::vector<uint32_t> nonzero(used + 1, 0);
    for (size_t k = 0; k < used; ++k) {
      const double a = static_cast<double>(abs[k]);
      cum[k + 1] = cum[k] + a;
      alog[k + 1] = alog[k] + (a > 0 ? a * std::log(a) : 0.0);
      nonzero[k + 1] = nonzero[k] + (abs[k] > 0);
    }
    const double total = cum[used];
    double best_kl = std::numeric_limits<double>::infinity();
    size_t best_i = used;
    for (size_t i = levels; i <= used; ++i) {
      const double outliers = total - cum[i];
      const double last = static_cast<double>(abs[i - 1]) + outliers;  // a_{i-1}
      const double log_sq = std::log(cum[i]);
      double sum = alog[i - 1] + (last > 0 ? last * std::log(last) : 0.0);
      const size_t merged = i / levels;
      for (size_t g = 0; g < levels; ++g) {
        const size_t start = g * merged, end = g + 1 == levels ? i : start + merged;
        const double group = cum[end] - cum[start];  // G_g
        double mass = group;                         // A_g
        double n = static_cast<double>(nonzero[end] - nonzero[start]);
        if (end == i) {
          mass += outliers;
          n += (abs[i - 1] == 0 && last > 0) ? 1 : 0;
        }
        if (mass == 0) continue;
        sum += group > 0 ? mass * (std::log(n) - std::log(group) + log_sq) : -mass * std::log(kEps);
      }
      const double kl = sum / total - std::log(total);
      if (kl < best_kl) {
        best_kl = kl;
        best_i = i;
      }
    }
    threshold = std::min(amax, static_cast<double>(best_i) * h.bin_width());
  }
  if (type == ActivationType::kInt8Symmetric || BothSigns(mm)) return Clip(mm, -threshold, threshold);
  if (mm.min >= 0) return Clip(mm, mm.min, threshold);
  return Clip(mm, -threshold, mm.max);
}

namespace {

// The MSE model over a histogram: values uniform within each bin; a value outside the grid's
// range costs its exact squared distance to the nearest end (integrated over the bin), a value
// inside costs step^2 / 12 (uniform rounding noise). Prefix sums over the bins make every
// evaluation O(1), so the search can try every bin edge.
class MseModel {
 public:
  explicit MseModel(const HistogramStats& h) : h_(h), w_(h.bin_width()), n_(static_cast<int64_t>(h.counts.size())) {
    p0_.assign(h.counts.size() + 1, 0);
    p1_ = p2_ = p0_;
    for (int64_t k = 0; k < n_; ++k) {
      const double c = static_cast<double>(h.counts[k]);
      const double m = h.lower_edge(k) + 0.5 * w_;
      p0_[k + 1] = p0_[k] + c;
      p1_[k + 1] = p1_[k] + c * m;
      p2_[k + 1] = p2_[k] + c * (m * m + w_ * w_ / 12.0);
    }
  }

  double Mse(FloatRange range, ActivationType type) const {
    const double total = p0_[n_];
    if (total == 0) return 0;
    const ActivationQuantParams p = ActivationParamsFromRange(range, type);
    const double qmin = type == ActivationType::kInt8Symmetric ? -128 : 0;
    const double qmax = type == ActivationType::kInt8Symmetric ? 127 : 255;
    const double step = p.scale, lo = (qmin - p.zero_point) * step, hi = (qmax - p.zero_point) * step;
    const int64_t jl = BinOf(lo), jh = BinOf(hi);
    // Whole bins below jl clip to lo, whole bins above jh clip to hi, whole bins between round.
    double sum = Clipped(0, jl, lo) + Clipped(jh + 1, n_, hi);
    if (jh > jl + 1) sum += (p0_[jh] - p0_[jl + 1]) * step * step / 12.0;
    sum += PartialBin(jl, lo, hi, step);
    if (jh != jl) sum += PartialBin(jh, lo, hi, step);
    return sum / total;
  }

 private:
  int64_t BinOf(double x) const {
    // Clamped as a double first: a grid end can lie far outside the histogram (scale 1 for an
    // all-zero tensor), beyond what int64 holds.
    const double bin = std::clamp(std::floor((x - h_.lower_edge(0)) / w_), 0.0, static_cast<double>(n_ - 1));
    return static_cast<int64_t>(bin);
  }
  // Sum over bins [from, to) of count * mean((x - edge)^2) = count ((m - edge)^2 + w^2/12).
  double Clipped(int64_t from, int64_t to, double edge) const {
    if (to <= from) return 0;
    return (p2_[to] - p2_[from]) - 2 * edge * (p1_[to] - p1_[from]) + edge * edge * (p0_[to] - p0_[from]);
  }
  // A bin split by the grid's ends: each part costs what its values cost.
  double PartialBin(int64_t k, double lo, double hi, double step) const {
    const double c = static_cast<double>(h_.counts[k]);
    if (c == 0) return 0;
    const double a = h_.lower_edge(k), b = a + w_;
    const auto square_integral = [](double from, double to, double edge) {  // of (x - edge)^2
      return ((to - edge) * (to - edge) * (to - edge) - (from - edge) * (from - edge) * (from - edge)) / 3.0;
    };
    double integral = 0;
    if (a < lo) integral += square_integral(a, std::min(b, lo), lo);
    if (b > hi) integral += square_integral(std::max(a, hi), b, hi);
    const double inside = std::max(0.0, std::min(b, hi) - std::max(a, lo));
    integral += inside * step * step / 12.0;
    return c * integral / w_;
  }

  const HistogramStats& h_;
  double w_;
  int64_t n_;
  std::vector<double> p0_, p1_, p2_;  // prefix sums of count, count * centre, count * mean(x^2)
};

// The k in [1, n] with the smallest cost(k); ties keep the smaller k.
template <typename Cost>
int64_t ArgMinEdge(int64_t n, Cost cost) {
  int64_t best = 1;
  double best_cost = cost(1);
  for (int64_t k = 2; k <= n; ++k) {
    const double c = cost(k);
    if (c < best_cost) best_cost = c, best = k;
  }
  return best;
}

}  // namespace

double HistogramQuantizationMse(const HistogramStats& h, FloatRange range, ActivationType type) {
  return MseModel(h).Mse(range, type);
}

FloatRange MseRange(const HistogramStats& h, const MinMaxStats& mm, ActivationType type) {
  if (h.total() == 0) return {mm.min, mm.max};
  const MseModel model(h);
  const double w = h.bin_width();
  // Candidate ends are bin edges k * w on each side of zero, k = 1..n, the last one at the data.
  const auto edges_to_cover = [w](double magnitude) {
    return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(magnitude / w)));
  };
  const double pos = std::max(0.0, static_cast<double>(mm.max)), neg = std::max(0.0, -static_cast<double>(mm.min));
  const auto edge = [w](int64_t k, double limit) { return std::min(limit, static_cast<double>(k) * w); };
  if (type == ActivationType::kInt8Symmetric || !BothSigns(mm)) {
    // One free end: symmetric T, or the data's one side for uint8 on one-signed data.
    const double amax = std::max(pos, neg);
    const auto range_for = [&](int64_t k) {
      const double t = edge(k, amax);
      if (type == ActivationType::kInt8Symmetric) return Clip(mm, -t, t);
      return mm.min >= 0 ? Clip(mm, mm.min, t) : Clip(mm, -t, mm.max);
    };
    return range_for(ArgMinEdge(edges_to_cover(amax), [&](int64_t k) { return model.Mse(range_for(k), type); }));
  }
  // uint8 on data of both signs: optimise the two ends in turn from [min, max] until neither moves.
  double lo = mm.min, hi = mm.max;
  for (int round = 0; round < 8; ++round) {
    const double old_lo = lo, old_hi = hi;
    hi = edge(ArgMinEdge(edges_to_cover(pos), [&](int64_t k) { return model.Mse(Clip(mm, lo, edge(k, pos)), type); }),
              pos);
    lo = -edge(ArgMinEdge(edges_to_cover(neg), [&](int64_t k) { return model.Mse(Clip(mm, -edge(k, neg), hi), type); }),
               neg);
    if (lo == old_lo && hi == old_hi) break;
  }
  return Clip(mm, lo, hi);
}

}  // namespace quantkit::quant

// ---------------------------------------------------------------- public: ranges

namespace quantkit {

StatusOr<FloatRange> ComputeRange(const TensorStats& stats, const RangeOptions& options) {
  QK_RETURN_IF_ERROR(ValidateRangeOptions(options));
  const MinMaxStats& mm = stats.minmax;
  if (mm.empty()) return FloatRange{0, 0};
  switch (options.method) {
    case CalibrationMethod::kMinMax: return FloatRange{mm.min, mm.max};
    case CalibrationMethod::kMovingAverage: {
      const MovingAverageStats& ma = stats.moving_average;
      return FloatRange{static_cast<float>(std::clamp<double>(ma.min(), mm.min, mm.max)),
                        static_cast<float>(std::clamp<double>(ma.max(), mm.min, mm.max))};
    }
    case CalibrationMethod::kPercentile:
      return quant::PercentileRange(stats.histogram, mm, options.percentile, options.type);
    case CalibrationMethod::kEntropy: return quant::EntropyRange(stats.histogram, mm, options.type);
    case CalibrationMethod::kMse: return quant::MseRange(stats.histogram, mm, options.type);
  }
  return Internal("unknown calibration method");
}

StatusOr<std::map<std::string, FloatRange>> ComputeRanges(const CalibrationStats& stats, const RangeOptions& options) {
  QK_RETURN_IF_ERROR(ValidateRangeOptions(options));
  std::map<std::string, FloatRange> ranges;
  for (const auto& [name, ts] : stats.tensors) {
    if (ts.minmax.empty()) continue;
    QK_ASSIGN_OR_RETURN(ranges[name], ComputeRange(ts, options));
  }
  return ranges;
}

}  // namespace quantkit
