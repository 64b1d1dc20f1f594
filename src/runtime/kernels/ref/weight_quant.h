// How constant weights are quantized offline (the quantizers use this; the runtime never needs to
// choose weight parameters). Rounding and saturation are quantize.h's QuantizeValue, so a weight
// quantized here and a value quantized by QuantizeLinear with the same parameters are identical.
//
//  * int8, symmetric (zero point 0): amax = max |w| over the channel, scale = 2 amax / (qmax - qmin):
//        narrow  [-127, 127]: scale = amax / 127   (default)
//        full    [-128, 127]: scale = 2 amax / 255 (the -128 end is reachable)
//        reduced [ -64,  64]: scale = amax / 64    (7 bits: a uint8 x int8 pair product sum stays
//                              within int16, so x86 kernels built on vpmaddubsw, e.g. ONNX
//                              Runtime's on AVX2 without VNNI, cannot saturate)
//    This is onnxruntime's quantizer formula scale = (rmax - rmin) / (qmax - qmin) with
//    rmin = -amax, rmax = amax, all in float32.
//  * uint8, symmetric: exactly the int8 symmetric values plus 128, stored as uint8 with zero point
//    128 (same scale; ranges [1, 255], [0, 255], [64, 192]). (q - zp) is the same integer as for
//    int8, so every product and sum is too; ONNX Runtime runs uint8 x uint8 with exact int32
//    arithmetic on every x86 CPU, where its uint8 x int8 kernels saturate without VNNI.
//  * uint8, asymmetric: rmin = min(0, min w), rmax = max(0, max w) (the range always contains 0,
//    so 0 is exact), scale = (rmax - rmin) / (qmax - qmin), zero_point = saturate(
//    round_half_even(qmin - rmin / scale)) to [qmin, qmax] -- for [0, 255] the formula of
//    DynamicQuantizeLinear. Ranges: [0, 255] (narrow and full), [0, 127] (reduced).
//  * Quantized values are clamped to [qmin, qmax].
//  * A channel whose range is empty (all zeros) or whose scale underflows to 0 gets scale 1 and
//    zero point 0 (128 for uint8 symmetric): every weight quantizes to the zero point and
//    dequantizes back to exactly 0.
//  * Callers reject non-finite weights before quantizing (ranges ignore them here).
#pragma once

#include <cstdint>
#include <vector>

#include "quantkit/tensor.h"

namespace quantkit::rt::quant {

enum class WeightType { kInt8Symmetric, kUInt8Asymmetric, kUInt8Symmetric };
// kInt8Symmetric or kUInt8Symmetric.
bool IsSymmetric(WeightType type);
enum class WeightRange { kNarrow, kFull, kReduced };

struct QuantRange {
  int32_t qmin, qmax;
};
QuantRange RangeOf(WeightType type, WeightRange range);

struct WeightParams {
  float scale = 1;
  int32_t zero_point = 0;
};

// Parameters for a channel whose finite values span [min_value, max_value].
WeightParams WeightParamsFromRange(float min_value, float max_value, WeightType type, WeightRange range);

// Parameters for n contiguous values (non-finite values are ignored for the range).
WeightParams ChooseWeightParams(const float* w, int64_t n, WeightType type, WeightRange range);

// A weight tensor viewed as [outer, channels, inner] around its channel axis; per-tensor
// quantization is channels = 1.
struct ChannelLayout {
  int64_t outer = 1;
  int64_t channels = 1;
  int64_t inner = 1;
  int64_t size() const { return outer * channels * inner; }
};

// One WeightParams per channel.
std::vector<WeightParams> ChoosePerChannelParams(const float* w, const ChannelLayout& layout, WeightType type,
                                                 WeightRange range);

// Quantizes w (layout.size() values) with the per-channel parameters into `out`, which holds
// int8_t values for kInt8Symmetric and uint8_t for the uint8 types.
void QuantizePerChannel(const float* w, const ChannelLayout& layout, const std::vector<WeightParams>& params,
                        WeightType type, WeightRange range, void* out);

// WeightParamsFromRange with narrow_range true = kNarrow, false = kFull.
WeightParams WeightParamsFromRange(float min_value, float max_value, WeightType type, bool narrow_range);

// A float32 weight tensor quantized per channel along `axis` (axis < 0: per tensor): values (int8 for
// kInt8Symmetric, uint8 otherwise; the weight's shape), scale (float32) and zero point (the values'
// type), both [channels] or scalars.
struct QuantizedWeights {
  Tensor q, scale, zero_point;
};
QuantizedWeights QuantizeWeightTensor(const Tensor& w, int64_t axis, WeightType type, WeightRange range);

// True if every value is finite (weights with NaN/Inf are left in float by the quantizers).
bool AllFinite(const float* w, int64_t n);

}  // namespace quantkit::rt::quant
