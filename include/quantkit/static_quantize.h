// Post-training static quantization: the QDQ rewrite, given every activation's calibrated range.
// (Calibration itself — observers, statistics files, range methods — is include/quantkit/calibration.h.)
//
// The rules (docs/quantization-rules.md):
//  * The model is first prepared by the inference pipeline (constants folded, BatchNormalization
//    folded into Conv/Gemm), the same pipeline the calibrating session runs, so tensor names match
//    the statistics.
//  * Conv, ConvTranspose, Gemm (transA = 0, alpha = beta = 1) and MatMul with constant weights:
//    weights symmetric per output channel (one scale for a grouped ConvTranspose; or per tensor;
//    stored as uint8 with zero point 128 by default, see QuantWeightType), behind
//    DequantizeLinear; bias int32 with scale
//    input_scale * weight_scale, bias-corrected where the input's channel means are known; a
//    following Relu/Clip joins the unit (its output is quantized, not the Conv's). MatMul of two
//    activations: both inputs quantized. Add/Mul followed by Relu: one unit too.
//  * Add, Mul: inputs and output quantized. Concat: inputs and output share one scale (the union of
//    their ranges).
//  * MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Slice, Resize, AveragePool,
//    GlobalAveragePool: input quantized; MaxPool and the data-movement ops reuse the input's
//    scale for their output (no requantization), the averaging ones get their own.
//  * Everything else (Softmax, LayerNormalization, ...) stays float; `exclude` keeps any node float.
//  * Each quantized activation tensor T gets one QuantizeLinear -> DequantizeLinear pair; every
//    consumer of T reads the dequantized value.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quantkit/calibration.h"
#include "quantkit/ir.h"
#include "quantkit/quantize.h"
#include "quantkit/status.h"

namespace quantkit {

struct StaticQuantizeOptions {
  std::vector<std::string> op_types = {"Conv",      "ConvTranspose", "Gemm",      "MatMul",
                                       "Add",       "Mul",           "Concat",    "MaxPool",
                                       "Reshape",   "Flatten",       "Transpose", "Squeeze",
                                       "Unsqueeze", "Slice",         "Resize",    "AveragePool",
                                       "GlobalAveragePool"};
  std::vector<std::string> exclude;  // exact node names or whole-name regexes
  ActivationType activation_type = ActivationType::kUInt8Asymmetric;
  bool per_channel = true;
  // uint8 asymmetric only per tensor: ONNX Runtime's QLinearConv takes one weight zero point.
  QuantWeightType weight_type = QuantWeightType::kUInt8Symmetric;
  // kNarrow: int8 [-127, 127] (+128 for uint8 symmetric). kReduced (7 bits) keeps ONNX Runtime's
  // u8 x s8 AVX2 kernels (which add pairs of products in saturating int16) exact on CPUs without VNNI
  // even with int8 weights, at some accuracy cost.
  WeightRange weight_range = WeightRange::kNarrow;
  // Empirical bias correction (Nagel et al., "Data-Free Quantization", 2019): a Conv or Gemm whose
  // input has calibrated per-channel means gets bias[o] -= sum_k (dequantized W - W)[o, k] *
  // mean[channel of k], removing the average error the weights' rounding adds to each output
  // channel. It matters where a few large filter taps of both signs meet inputs that sit far from
  // zero (depthwise convolutions after Relu6: M-LSD's first one gains ~14 dB).
  bool bias_correction = true;
  // Cross-layer equalization (Nagel et al. 2019; SmoothQuant's balance, Xiao et al. 2022): for
  // Conv1 -> [Relu] -> Conv2 where Conv2 is Conv1's only reader, output channel c of Conv1 is
  // divided by s_c and Conv2's weights reading channel c are multiplied by s_c, which leaves the
  // float model's output unchanged (Relu(x / s) = Relu(x) / s for s > 0) but evens out the
  // channels of the tensor between them, which is quantized with one scale. s_c brings every
  // channel to the largest channel's range when Conv2 is depthwise (its per-channel weight
  // scales absorb s_c), else balances the channel's activation and weight ranges:
  // s_c = sqrt(range_c / weight_range_c). Needs per-channel weights and the channels'
  // calibrated min/max; the equalized tensors' ranges become the scaled channel min/max (the
  // histogram no longer describes them, whatever the range method).
  // Off by default: it gains where a tensor's channels span orders of magnitude (BlazeFace's
  // regressors +7 dB) and is neutral to slightly negative elsewhere (see quantization-rules.md).
  bool equalize = false;
};

// Metadata key of an equalized model: {"channel_axis": 1, "scales": {tensor: [s_c, ...]}}, channel
// c of each listed tensor holding its FP32 value divided by s_c (`compare --per-tensor` undoes it).
inline constexpr const char* kEqualizationMetadataKey = "quantkit.equalization";

// Per-channel statistics of a calibrated activation (channel axis 1): min/max of each channel,
// and the means when the statistics keep them (else empty).
struct ChannelRanges {
  std::vector<float> min, max;
  std::vector<double> mean;
};
using ChannelStatsMap = std::map<std::string, ChannelRanges>;

// The op types StaticQuantizeOptions::op_types may name.
const std::vector<std::string>& StaticQuantizableOpTypes();

// Rewrites `model` (FP32) into QDQ form using `ranges` (tensor name -> calibrated range, e.g. from
// ComputeRanges of calibration statistics). Nodes whose
// tensors have no range are left float (listed in the report). Errors: nothing quantized, bad
// options, an exclude entry matching no node.
// `channels` (e.g. ChannelStatsOf(stats)) enables bias correction (tensors with means) and
// equalization (tensors with min/max); without it neither happens.
StatusOr<QuantizeReport> QuantizeStatic(Model& model, const std::map<std::string, FloatRange>& ranges,
                                        const StaticQuantizeOptions& options, const ChannelStatsMap& channels = {});

// The per-channel statistics kept in `stats` (tensors with channel axis 1).
ChannelStatsMap ChannelStatsOf(const CalibrationStats& stats);

}  // namespace quantkit
