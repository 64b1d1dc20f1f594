// Shared pieces of the quantizers' graph rewrites (dynamic and static): fresh names, --exclude
// matching, new nodes. (Weight quantization itself: runtime/kernels/ref/weight_quant.h.)
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <unordered_set>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/quantize.h"
#include "quantkit/status.h"
#include "runtime/kernels/ref/weight_quant.h"

namespace quantkit::quant {

// The public weight-range option as the weight-quantization kernels spell it.
inline rt::quant::WeightRange KernelWeightRange(WeightRange r) {
  switch (r) {
    case WeightRange::kFull: return rt::quant::WeightRange::kFull;
    case WeightRange::kReduced: return rt::quant::WeightRange::kReduced;
    default: return rt::quant::WeightRange::kNarrow;
  }
}

// The public weight-type option as the weight-quantization kernels spell it, for weights multiplied
// with int8 or uint8 activations: uint8 symmetric becomes int8 next to int8 activations (ONNX
// Runtime pairs int8 activations with int8 weights only; the arithmetic is the same).
inline rt::quant::WeightType KernelWeightType(QuantWeightType t, bool int8_activations) {
  switch (t) {
    case QuantWeightType::kInt8: return rt::quant::WeightType::kInt8Symmetric;
    case QuantWeightType::kUInt8: return rt::quant::WeightType::kUInt8Asymmetric;
    default: return int8_activations ? rt::quant::WeightType::kInt8Symmetric : rt::quant::WeightType::kUInt8Symmetric;
  }
}

// Calls f(node) for every node of g and of its subgraphs.
template <typename F>
void ForEachNode(const Graph& g, const F& f) {
  for (const auto& n : g.nodes) {
    f(n);
    for (const auto& a : n.attributes) {
      if (a.g) ForEachNode(*a.g, f);
      for (const auto& sg : a.graphs) ForEachNode(*sg, f);
    }
  }
}

// Fresh value and node names, unique across the whole model (subgraphs must not shadow outer names).
class NameRegistry {
 public:
  explicit NameRegistry(const Model& model);
  std::string Make(const std::string& base);

 private:
  std::unordered_set<std::string> used_;
};

// --exclude entries: an exact node name, else an ECMAScript regular expression over the whole name.
// Every entry must match at least one node of the model.
class ExcludeList {
 public:
  static StatusOr<ExcludeList> Create(const std::vector<std::string>& patterns, const Model& model);
  // The entry that excludes this node name, or null.
  const std::string* Match(const std::string& node_name) const;

 private:
  struct Entry {
    std::string pattern;
    std::optional<std::regex> regex;
  };
  std::vector<Entry> entries_;
};

Node NewNode(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs, std::string name);

}  // namespace quantkit::quant
