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
// Weights: int8 symmetric; uint8 asymmetric; or uint8 symmetric (the default): the int8 symmetric
// values plus 128 with zero point 128 -- the same arithmetic, but ONNX Runtime runs uint8 x uint8
// exactly on every x86 CPU, while its uint8 x int8 kernels add product pairs in saturating int16
// on CPUs without VNNI (AVX2, AVX-512 before Cascade Lake / Zen 4). Where the activations are
// int8 (row granularity, static int8 activations) uint8 symmetric is written as int8, the only
// weight type ONNX Runtime pairs with int8 activations.
enum class QuantWeightType { kInt8, kUInt8, kUInt8Symmetric };
enum class QuantFormat { kIntegerOps, kQdqWeights };
enum class ActivationGranularity { kTensor, kRow };  // row: int8 symmetric per row (per token)
// Integer range of symmetric weights: narrow [-127, 127], full [-128, 127], reduced [-64, 64] (7 bits,
// so ONNX Runtime's uint8 x int8 kernels on AVX2 without VNNI cannot saturate even with int8
// weights); plus 128 for uint8 symmetric; uint8 asymmetric: reduced [0, 127].
enum class WeightRange { kNarrow, kFull, kReduced };

struct QuantizeOptions {
  QuantMode mode = QuantMode::kDynamic;
  // Op types to quantize: MatMul, Gemm, Conv, LSTM, GRU.
  std::vector<std::string> op_types = {"MatMul", "Gemm", "LSTM", "GRU"};
  // Node names to leave in float: each entry is an exact name or a regular expression (ECMAScript,
  // matching the whole name). Every entry must match at least one node.
  std::vector<std::string> exclude;
  QuantWeightType weight_type = QuantWeightType::kUInt8Symmetric;
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
// row granularity needs symmetric weights, mode dynamic).
Status ValidateQuantizeOptions(const QuantizeOptions& options);

}  // namespace quantkit
