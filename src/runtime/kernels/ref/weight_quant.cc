// Offline weight quantization (formulas in weight_quant.h).
#include "runtime/kernels/ref/weight_quant.h"

#include <algorithm>
#include <cmath>

#include "runtime/kernels/ref/quantize.h"

namespace quantkit::rt::quant {

bool IsSymmetric(WeightType type) { return type != WeightType::kUInt8Asymmetric; }

namespace {
// The zero point of symmetric weights: uint8 symmetric stores int8 values plus 128.
int32_t SymmetricZeroPoint(WeightType type) { return type == WeightType::kUInt8Symmetric ? 128 : 0; }
}  // namespace

QuantRange RangeOf(WeightType type, WeightRange range) {
  if (IsSymmetric(type)) {
    const int32_t zp = SymmetricZeroPoint(type);
    switch (range) {
      case WeightRange::kNarrow: return {zp - 127, zp + 127};
      case WeightRange::kFull: return {zp - 128, zp + 127};
      case WeightRange::kReduced: return {zp - 64, zp + 64};
    }
  }
  return range == WeightRange::kReduced ? QuantRange{0, 127} : QuantRange{0, 255};
}

WeightParams WeightParamsFromRange(float min_value, float max_value, WeightType type, WeightRange range) {
  const QuantRange q = RangeOf(type, range);
  const float qspan = static_cast<float>(q.qmax - q.qmin);
  WeightParams p;
  if (IsSymmetric(type)) {
    const float amax = std::max(std::fabs(min_value), std::fabs(max_value));
    p.scale = (amax + amax) / qspan;
    p.zero_point = SymmetricZeroPoint(type);
  } else {
    const float lo = std::min(min_value, 0.0f), hi = std::max(max_value, 0.0f);
    p.scale = (hi - lo) / qspan;
    if (p.scale > 0) {
      const int64_t zp = RoundedToInt64(RoundHalfToEven(static_cast<float>(q.qmin) - lo / p.scale));
      p.zero_point = static_cast<int32_t>(std::clamp<int64_t>(zp, q.qmin, q.qmax));
    }
  }
  if (!(p.scale > 0) || !std::isfinite(p.scale)) return WeightParams{1.0f, IsSymmetric(type) ? SymmetricZeroPoint(type) : 0};
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

WeightParams ChooseWeightParams(const float* w, int64_t n, WeightType type, WeightRange range) {
  Range r;
  for (int64_t i = 0; i < n; ++i) r.Add(w[i]);
  return WeightParamsFromRange(r.lo, r.hi, type, range);
}

std::vector<WeightParams> ChoosePerChannelParams(const float* w, const ChannelLayout& layout, WeightType type,
                                                 WeightRange range) {
  std::vector<Range> ranges(static_cast<size_t>(layout.channels));
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t c = 0; c < layout.channels; ++c) {
      const float* src = w + (o * layout.channels + c) * layout.inner;
      for (int64_t i = 0; i < layout.inner; ++i) ranges[c].Add(src[i]);
    }
  std::vector<WeightParams> params;
  params.reserve(ranges.size());
  for (const auto& r : ranges) params.push_back(WeightParamsFromRange(r.lo, r.hi, type, range));
  return params;
}

namespace {

template <typename T>
void QuantizeAll(const float* w, const ChannelLayout& layout, const std::vector<WeightParams>& params, QuantRange q,
                 T* out) {
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t c = 0; c < layout.channels; ++c) {
      const int64_t base = (o * layout.channels + c) * layout.inner;
      const WeightParams& p = params[static_cast<size_t>(c)];
      for (int64_t i = 0; i < layout.inner; ++i) {
        // Rounding half to even can land one step outside a range narrower than T's.
        const int32_t v = QuantizeValue<T>(w[base + i], p.scale, p.zero_point);
        out[base + i] = static_cast<T>(std::clamp(v, q.qmin, q.qmax));
      }
    }
}

}  // namespace

void QuantizePerChannel(const float* w, const ChannelLayout& layout, const std::vector<WeightParams>& params,
                        WeightType type, WeightRange range, void* out) {
  const QuantRange q = RangeOf(type, range);
  if (type == WeightType::kInt8Symmetric) {
    QuantizeAll(w, layout, params, q, static_cast<int8_t*>(out));
  } else {
    QuantizeAll(w, layout, params, q, static_cast<uint8_t*>(out));
  }
}

WeightParams WeightParamsFromRange(float min_value, float max_value, WeightType type, bool narrow_range) {
  return WeightParamsFromRange(min_value, max_value, type, narrow_range ? WeightRange::kNarrow : WeightRange::kFull);
}

QuantizedWeights QuantizeWeightTensor(const Tensor& w, int64_t axis, WeightType type, WeightRange range) {
  ChannelLayout layout;
  if (axis >= 0) {
    for (int64_t i = 0; i < axis; ++i) layout.outer *= w.dim(static_cast<size_t>(i));
    layout.channels = w.dim(static_cast<size_t>(axis));
    for (size_t i = static_cast<size_t>(axis) + 1; i < w.rank(); ++i) layout.inner *= w.dim(i);
  } else {
    layout.inner = w.numel();
  }
  const auto params = ChoosePerChannelParams(w.data<float>(), layout, type, range);
  const DType qtype = type == WeightType::kInt8Symmetric ? DType::kInt8 : DType::kUInt8;
  QuantizedWeights out;
  out.q = Tensor(qtype, w.shape());
  QuantizePerChannel(w.data<float>(), layout, params, type, range, out.q.raw_data());
  const Shape pshape = axis >= 0 ? Shape{layout.channels} : Shape{};
  out.scale = Tensor(DType::kFloat32, pshape);
  out.zero_point = Tensor(qtype, pshape);
  for (size_t c = 0; c < params.size(); ++c) {
    out.scale.data<float>()[c] = params[c].scale;
    if (qtype == DType::kInt8) {
      out.zero_point.data<int8_t>()[c] = static_cast<int8_t>(params[c].zero_point);
    } else {
      out.zero_point.data<uint8_t>()[c] = static_cast<uint8_t>(params[c].zero_point);
    }
  }
  return out;
}

bool AllFinite(const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(w[i])) return false;
  return true;
}

}  // namespace quantkit::rt::quant
