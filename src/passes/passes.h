// Graph passes. Each lives in its own file, edits the model in place and returns a Status.
// Passes recurse into subgraphs where that is meaningful.
#pragma once

#include <limits>
#include <string>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/status.h"

namespace quantkit::passes {

// Orders nodes so every value is produced before it is read (Kahn's algorithm, stable: keeps the
// original order among ready nodes). Errors on cycles, naming a node on the cycle.
Status TopologicalSort(Graph& graph);
// Turns Constant nodes into initializers (all value_* attribute forms).
Status ConstantNodesToInitializers(Model& model);
// Evaluates nodes whose inputs are all constants with the runtime's own kernels and stores the
// results as initializers. Skips nodes whose output would be larger than max_output_bytes. With
// keep_dequantize, DequantizeLinear nodes are never folded (quantizers: int8 weights already
// behind DequantizeLinear must stay int8 in the file, not turn back into float).
Status FoldConstants(Model& model, uint64_t max_output_bytes = 64u << 20, bool keep_dequantize = false);
// Removes nodes whose outputs are never used, and initializers nobody reads.
Status EliminateDeadNodes(Model& model);
// Removes Identity, Dropout (inference) and Cast to the same type, rewiring consumers.
Status EliminateIdentities(Model& model);
// Replaces If nodes whose condition is a constant by the taken branch's nodes.
Status InlineConstantIf(Model& model);
// Folds BatchNormalization into a preceding Conv/ConvTranspose/Gemm with constant weights.
Status FoldBatchNorm(Model& model);
// Lowers dynamically quantized MatMul/Gemm forms (integer ops, or int8 weights behind
// DequantizeLinear) to the runtime's fused com.quantkit::MatMulIntegerToFloat.
Status FuseQuantizedOps(Model& model);
// Rewrites a static QDQ model into the QOperator format for other runtimes: each quantized unit
// that a standard op expresses exactly becomes ONNX QLinearConv / QLinearMatMul or ONNX Runtime's
// com.microsoft::QLinearAdd / QLinearMul; data-movement ops run on the int8 values; everything
// else (float islands, units with a Relu/Clip that is not implicit in the output range) keeps
// its QuantizeLinear / DequantizeLinear pairs.
Status ConvertQdqToQOperator(Model& model);
// Elementwise float ops that a quantized model may keep between a DequantizeLinear and a
// QuantizeLinear and that the runtime runs as one 256-entry lookup (Relu, Clip, Add, Mul, Div,
// Sigmoid, HardSwish, ...), when their other inputs are float scalars.
bool IsElementwiseLookupOp(const Node& n);
// Runtime only (Session, after OptimizeForInference): float Conv -> Relu | Clip (constant bounds)
// becomes com.quantkit::FusedConv, which clamps its output blocks while they are in cache.
Status FuseConvActivation(Model& model);
// Runtime only (Session, after FuseConvActivation, when kernels::ConvNchwcSupported): float
// convs with channel counts multiple of 16 that read each other's outputs keep them in NCHW16c
// (5-D) between them, with reorders only where other ops read them (block_channels.cc). report
// (optional): one line per component of eligible convs, blocked or not and why.
struct BlockLayoutOptions {
  // A component stays NCHW when padding its channel counts to blocks of 16 multiplies its work
  // (its convs' multiply-adds with the padded counts over those without) by more than this.
  double max_padded_work = std::numeric_limits<double>::infinity();
  // The kernels skip the padded half of a last block of at most 8 real channels (the AVX2 build:
  // NchwcConvArgs::half_last_out / _in, NchwcDepthwiseArgs::half_block), so such a block costs 8
  // channels there, not 16.
  bool half_blocks_skipped = false;
};
Status BlockConvChannels(Model& model, const BlockLayoutOptions& options = {}, std::string* report = nullptr);
// ONNX's shape inference, then quantkit's own propagation for what it leaves unknown.
Status InferShapes(Model& model);
Status UpgradeOpset(Model& model, int64_t target_version = 13);  // default domain, opset >= 7 to <= 13; see upgrade_opset.cc

// The inference pipeline run by Session (in order): constants to initializers, topological sort,
// fuse quantized ops (before folding would dequantize constant weights), inline constant If, eliminate identities, fold constants, fold BatchNorm, dead nodes.
Status OptimizeForInference(Model& model);

// The bounds of a Relu (0, +inf) or of a Clip with constant float32 bounds (attributes before
// opset 11, inputs from 11; absent ones infinite), for passes that fuse it as a clamp with the
// Clip kernel's expression; false for anything else.
bool ClampOf(const Graph& g, const Model& model, const Node& n, float* lo, float* hi);

}  // namespace quantkit::passes
