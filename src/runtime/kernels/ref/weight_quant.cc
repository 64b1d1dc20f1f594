// Offline weight quantization (formulas in weight_quant.h).
#include "runtime/kernels/ref/weight_quant.h"

#include <algorithm>
#include <cmath>

#include "runtime/kernels/ref/quantize.h"

namespace quantkit::rt::quant {

WeightParams WeightParamsFromRange(float min_value, float max_value, WeightType type, bool narrow_range) {
  WeightParams p;
  if (type == WeightType::kInt8Symmetric) {
    const float amax = std::max(std::fabs(min_value), std::fabs(max_value));
    const float qrange = narrow_range ? 254.0f : 255.0f;  // qmax - qmin
    p.scale = (amax + amax) / qrange;
    p.zero_point = 0;
  } else {
    const float lo = std::min(min_value, 0.0f), hi = std::max(max_value, 0.0f);
    p.scale = (hi - lo) / 255.0f;
    if (p.scale > 0) p.zero_point = SaturateInt<uint8_t>(RoundedToInt64(RoundHalfToEven(0.0f - lo / p.scale)));
  }
  if (!(p.scale > 0) || !std::isfinite(p.scale)) return WeightParams{1.0f, 0};
  return p;
}

namespace {

struct Range {
  float lo = 0, hi = 0;
  bool any = false;
  void Add(float v) {
    if (!std::isfinite(v)) return;
    lo = any ? std::min(lo, v) : v;
    hi = any ? std::max(hi, v) : v;
    any = true;
  }
};

}  // namespace

WeightParams ChooseWeightParams(const float* w, int64_t n, WeightType type, bool narrow_range) {
  Range r;
  for (int64_t i = 0; i < n; ++i) r.Add(w[i]);
  return WeightParamsFromRange(r.lo, r.hi, type, narrow_range);
}

std::vector<WeightParams> ChoosePerChannelParams(const float* w, const ChannelLayout& layout, WeightType type,
                                                 bool narrow_range) {
  std::vector<Range> ranges(static_cast<size_t>(layout.channels));
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t c = 0; c < layout.channels; ++c) {
      const float* src = w + (o * layout.channels + c) * layout.inner;
      for (int64_t i = 0; i < layout.inner; ++i) ranges[c].Add(src[i]);
    }
  std::vector<WeightParams> params;
  params.reserve(ranges.size());
  for (const auto& r : ranges) params.push_back(WeightParamsFromRange(r.lo, r.hi, type, narrow_range));
  return params;
}

namespace {

template <typename T>
void QuantizeAll(const float* w, const ChannelLayout& layout, const std::vector<WeightParams>& params, T* out) {
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t c = 0; c < layout.channels; ++c) {
      const int64_t base = (o * layout.channels + c) * layout.inner;
      const WeightParams& p = params[static_cast<size_t>(c)];
      for (int64_t i = 0; i < layout.inner; ++i) out[base + i] = QuantizeValue<T>(w[base + i], p.scale, p.zero_point);
    }
}

}  // namespace

void QuantizePerChannel(const float* w, const ChannelLayout& layout, const std::vector<WeightParams>& params,
                        WeightType type, void* out) {
  if (type == WeightType::kInt8Symmetric) {
    QuantizeAll(w, layout, params, static_cast<int8_t*>(out));
  } else {
    QuantizeAll(w, layout, params, static_cast<uint8_t*>(out));
  }
}

bool AllFinite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) return false;
  return true;
}

}  // namespace quantkit::rt::quant
