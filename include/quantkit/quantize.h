// Post-training quantization of a Model (graph rewrite; the runtime executes the result).
//
// Dynamic mode: constant weights become int8/uint8 offline, activations are quantized at inference
// time from their own values. The rewritten model is standard ONNX that ONNX Runtime also runs:
//  * integer-ops: X -> DynamicQuantizeLinear -> MatMulInteger/ConvInteger(X_q, W_q, X_zp, W_zp)
//    -> Cast(float) -> Mul(X_scale * W_scale) [-> Add(bias)];
//  * qdq-weights: W_q -> DequantizeLinear(per axis) -> the original op, activations stay float.
//  LSTM/GRU weights (W, R) always use the qdq-weights form.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/status.h"

namespace quantkit {

enum class QuantMode { kDynamic, kStatic };
enum class QuantWeightType { kInt8, kUInt8 };  // int8 symmetric, uint8 asymmetric
enum class QuantFormat { kIntegerOps, kQdqWeights };
enum class ActivationGranularity { kTensor, kRow };  // row: int8 symmetric per row (per token)
// Integer range of int8 weights: narrow [-127, 127], full [-128, 127], reduced [-64, 64] (7 bits, so
// ONNX Runtime's uint8 x int8 kernels on AVX2 without VNNI cannot saturate); uint8: reduced [0, 127].
enum class WeightRange { kNarrow, kFull, kReduced };

struct QuantizeOptions {
  QuantMode mode = QuantMode::kDynamic;
  // Op types to quantize: MatMul, Gemm, Conv, LSTM, GRU.
  std::vector<std::string> op_types = {"MatMul", "Gemm", "LSTM", "GRU"};
  // Node names to leave in float: each entry is an exact name or a regular expression (ECMAScript,
  // matching the whole name). Every entry must match at least one node.
  std::vector<std::string> exclude;
  QuantWeightType weight_type = QuantWeightType::kInt8;
  bool per_channel = true;
  WeightRange weight_range = WeightRange::kNarrow;
  ActivationGranularity activation_granularity = ActivationGranularity::kTensor;
  QuantFormat format = QuantFormat::kIntegerOps;
};

// The op types QuantizeOptions::op_types may name.
const std::vector<std::string>& QuantizableOpTypes();

struct QuantizeReport {
  std::map<std::string, int> quantized;  // op type -> nodes quantized
  struct Skipped {
    std::string node;     // Node::Describe()
    std::string op_type;
    std::string reason;
  };
  std::vector<Skipped> skipped;          // candidate nodes left in float, with the reason
  std::map<std::string, int> not_selected;  // quantizable op types present but not in op_types
  std::vector<std::string> notes;        // opset upgrade, forms adjusted for compatibility, ...
  int64_t opset_before = 0;
  int64_t opset_after = 0;
  int total_quantized() const;
};

// Rewrites `model` in place. Errors (bad options, nothing to quantize, an op the opset upgrade cannot
// convert) leave `model` unchanged. Constant nodes become initializers and constant subexpressions
// are folded first, so weights computed from constants (Concat/Unsqueeze of Constants) count as
// constants; subgraphs (If/Loop bodies) are quantized too.
StatusOr<QuantizeReport> QuantizeDynamic(Model& model, const QuantizeOptions& options);

// Names used in the CLI, the JSON config and the metadata ("int8", "integer-ops", "row", ...).
std::string ToString(QuantMode v);
std::string ToString(QuantWeightType v);
std::string ToString(QuantFormat v);
std::string ToString(ActivationGranularity v);
std::string ToString(WeightRange v);
StatusOr<QuantMode> ParseQuantMode(const std::string& s);
StatusOr<QuantWeightType> ParseQuantWeightType(const std::string& s);
StatusOr<QuantFormat> ParseQuantFormat(const std::string& s);
StatusOr<ActivationGranularity> ParseActivationGranularity(const std::string& s);
StatusOr<WeightRange> ParseWeightRange(const std::string& s);

// Checks option values that do not depend on a model (op types known, exclude patterns valid regexes,
// row granularity needs int8 weights, mode dynamic).
Status ValidateQuantizeOptions(const QuantizeOptions& options);

}  // namespace quantkit
