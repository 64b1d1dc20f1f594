// Dynamic post-training quantization: the graph rewrite. The forms written are described in
// include/quantkit/quantize.h; the weight arithmetic is runtime/kernels/ref/weight_quant.h.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <map>

#include "passes/passes.h"
#include "quant/rewrite_util.h"
#include "quantkit/quantize.h"
#include "runtime/kernels/ref/weight_quant.h"

namespace quantkit {

namespace {

namespace wq = rt::quant;
using quant::ExcludeList;
using quant::ForEachNode;
using quant::NameRegistry;
using quant::NewNode;
using QuantizedTensor = wq::QuantizedWeights;

// Opsets the written forms need: DynamicQuantizeLinear (and Round) 11, DequantizeLinear 10, its
// per-axis form 13. Older models are upgraded to kUpgradeTarget.
constexpr int64_t kOpsetIntegerOps = 11;
constexpr int64_t kOpsetDequantize = 10;
constexpr int64_t kOpsetPerAxisDequantize = 13;
constexpr int64_t kUpgradeTarget = 13;
// ReduceMax takes axes as an input from opset 18 on.
constexpr int64_t kOpsetReduceAxesInput = 18;

using ScopeChain = std::vector<Graph*>;  // the main graph down to the graph being rewritten

bool Contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

bool IsCandidateOp(const Node& n) { return n.IsDefaultDomain() && Contains(QuantizableOpTypes(), n.op_type); }

Tensor Transpose2D(const Tensor& w) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  Tensor t(DType::kFloat32, {cols, rows});
  const float* src = w.data<float>();
  float* dst = t.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  return t;
}

// A constant weight and the graph holding it.
struct ConstantWeight {
  Graph* owner = nullptr;
  const Tensor* tensor = nullptr;
};

// Quantization outcome of one node: done, or left in float for `reason`.
struct Outcome {
  bool quantized = false;
  std::string reason;
  static Outcome Done() { return {true, ""}; }
  static Outcome Skip(std::string why) { return {false, std::move(why)}; }
};

class DynamicQuantizer {
 public:
  DynamicQuantizer(Model& model, const QuantizeOptions& options, const ExcludeList& exclude, QuantizeReport& report)
      : model_(model), opt_(options), exclude_(exclude), report_(report), names_(model) {}

  Status RewriteGraph(ScopeChain chain) {
    Graph& g = *chain.back();
    std::vector<Node> old = std::move(g.nodes);
    g.nodes.clear();
    for (auto& n : old) {
      for (auto& a : n.attributes) {
        auto sub = [&](Graph* sg) {
          ScopeChain inner = chain;
          inner.push_back(sg);
          return RewriteGraph(std::move(inner));
        };
        if (a.g) QK_RETURN_IF_ERROR(sub(a.g.get()));
        for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(sub(sg.get()));
      }
      if (!IsCandidateOp(n)) {
        g.nodes.push_back(std::move(n));
        continue;
      }
      if (!Contains(opt_.op_types, n.op_type)) {
        report_.not_selected[n.op_type]++;
        g.nodes.push_back(std::move(n));
        continue;
      }
      const std::string op_type = n.op_type;  // n may be moved into the graph by the rewrite
      Outcome outcome;
      if (const std::string* pattern = exclude_.Match(n.name)) {
        outcome = Outcome::Skip(*pattern == n.name ? "excluded" : fmt::format("excluded by '{}'", *pattern));
      } else {
        outcome = QuantizeNode(n, chain);
      }
      if (outcome.quantized) {
        report_.quantized[op_type]++;
        // The node was replaced by the nodes the rewrite appended (or, for qdq forms, it was
        // appended itself with its weight inputs rewired).
      } else {
        report_.skipped.push_back({n.Describe(), op_type, outcome.reason});
        g.nodes.push_back(std::move(n));
      }
    }
    return Status::Ok();
  }

  void AddNote(const std::string& note) {
    if (!Contains(report_.notes, note)) report_.notes.push_back(note);
  }

 private:
  Outcome QuantizeNode(Node& n, const ScopeChain& chain) {
    if (n.op_type == "LSTM" || n.op_type == "GRU") return QuantizeRecurrent(n, chain);
    if (opt_.format == QuantFormat::kQdqWeights) {
      if (n.op_type == "MatMul") return QuantizeMatMulQdq(n, chain);
      if (n.op_type == "Gemm") return QuantizeGemmQdq(n, chain);
      return QuantizeConvQdq(n, chain);
    }
    if (n.op_type == "MatMul") return QuantizeMatMulIntegerOps(n, chain);
    if (n.op_type == "Gemm") return QuantizeGemmIntegerOps(n, chain);
    return QuantizeConvIntegerOps(n, chain);
  }

  Graph& Current(const ScopeChain& chain) { return *chain.back(); }

  // The float32 constant behind input `index` of n, or the reason it cannot be quantized.
  Outcome ResolveWeight(const Node& n, size_t index, const ScopeChain& chain, const char* role, ConstantWeight* w) {
    if (!n.HasInput(index)) return Outcome::Skip(fmt::format("no {} input", role));
    const std::string name = n.inputs[index];
    const Tensor* t = nullptr;
    Graph* owner = nullptr;
    for (auto it = chain.rbegin(); it != chain.rend() && !t; ++it) {
      Graph* g = *it;
      if (g->IsGraphInput(name)) {
        return Outcome::Skip(g->IsInitializer(name)
                                 ? fmt::format("{} '{}' is a graph input (its initializer can be overridden at run time)", role, name)
                                 : fmt::format("{} '{}' is not a constant", role, name));
      }
      if ((t = g->FindInitializer(name))) owner = g;
    }
    if (!t) return Outcome::Skip(fmt::format("{} '{}' is not a constant", role, name));
    if (t->dtype() != DType::kFloat32) {
      return Outcome::Skip(fmt::format("{} '{}' is {} (only float32 weights are quantized)", role, name, DTypeName(t->dtype())));
    }
    if (t->numel() == 0) return Outcome::Skip(fmt::format("{} '{}' is empty", role, name));
    if (!wq::AllFinite(t->data<float>(), t->numel())) {
      return Outcome::Skip(fmt::format("{} '{}' contains NaN or Inf", role, name));
    }
    *w = ConstantWeight{owner, t};
    return Outcome::Done();
  }

  // Names of a quantized weight's initializers (in the weight's graph), created once per variant.
  struct WeightNames {
    std::string q, scale, zero_point;
  };
  WeightNames AddQuantizedWeight(const ConstantWeight& w, const std::string& weight_name, const std::string& variant,
                                 const std::function<QuantizedTensor()>& make) {
    const std::string key = fmt::format("{}|{}|{}", static_cast<const void*>(w.owner), weight_name, variant);
    auto it = weight_cache_.find(key);
    if (it != weight_cache_.end()) return it->second;
    QuantizedTensor qt = make();
    WeightNames names{names_.Make(weight_name + "_quantized"), names_.Make(weight_name + "_scale"),
                      names_.Make(weight_name + "_zero_point")};
    w.owner->AddInitializer(names.q, std::move(qt.q));
    w.owner->AddInitializer(names.scale, std::move(qt.scale));
    w.owner->AddInitializer(names.zero_point, std::move(qt.zero_point));
    weight_cache_.emplace(key, names);
    return names;
  }

  // Weight type for weights multiplied with int8 (per-row) or uint8/float activations.
  wq::WeightType ChosenWeightType(bool int8_activations) const {
    return quant::KernelWeightType(opt_.weight_type, int8_activations);
  }

  // A float32 scalar constant in graph g (one per value and graph).
  std::string FloatConstant(Graph& g, float v, const std::string& hint) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    const std::string key = fmt::format("{}|{}", static_cast<const void*>(&g), bits);
    auto it = constant_cache_.find(key);
    if (it != constant_cache_.end()) return it->second;
    const std::string name = names_.Make(hint);
    g.AddInitializer(name, Tensor::Scalar<float>(v));
    constant_cache_.emplace(key, name);
    return name;
  }

  // ---- activations (integer-ops form) ----

  struct QuantizedActivation {
    std::string q, scale, zero_point;  // zero_point empty for int8 symmetric rows
  };

  // DynamicQuantizeLinear (per tensor, uint8) or the per-row int8 expression, once per activation
  // and graph; the nodes go to the graph's node list right before the first consumer.
  QuantizedActivation QuantizeActivation(Graph& g, const std::string& x, bool per_row) {
    const std::string key = fmt::format("{}|{}|{}", static_cast<const void*>(&g), x, per_row);
    auto it = activation_cache_.find(key);
    if (it != activation_cache_.end()) return it->second;
    QuantizedActivation qa;
    if (!per_row) {
      qa = {names_.Make(x + "_quantized"), names_.Make(x + "_scale"), names_.Make(x + "_zero_point")};
      g.nodes.push_back(NewNode("DynamicQuantizeLinear", {x}, {qa.q, qa.scale, qa.zero_point},
                                names_.Make(x + "_DynamicQuantizeLinear")));
    } else {
      // s = max(max|x| over the last axis / 127, FLT_MIN); q = int8(clip(round(x / s), -127, 127)).
      const std::string abs = names_.Make(x + "_abs"), amax = names_.Make(x + "_absmax");
      const std::string raw_scale = names_.Make(x + "_row_scale_raw");
      qa.scale = names_.Make(x + "_row_scale");
      const std::string scaled = names_.Make(x + "_scaled"), rounded = names_.Make(x + "_rounded");
      const std::string clipped = names_.Make(x + "_clipped");
      qa.q = names_.Make(x + "_quantized");
      const std::string c127 = FloatConstant(g, 127.0f, "quant_127");
      const std::string cm127 = FloatConstant(g, -127.0f, "quant_minus_127");
      const std::string tiny = FloatConstant(g, std::numeric_limits<float>::min(), "quant_flt_min");
      g.nodes.push_back(NewNode("Abs", {x}, {abs}, names_.Make(x + "_Abs")));
      Node reduce = NewNode("ReduceMax", {abs}, {amax}, names_.Make(x + "_ReduceMax"));
      reduce.SetAttrInt("keepdims", 1);
      if (model_.OpsetVersion("") >= kOpsetReduceAxesInput) {
        const std::string axes = names_.Make("quant_axes_last");
        g.AddInitializer(axes, Tensor::FromVector<int64_t>({-1}, {1}));
        reduce.inputs.push_back(axes);
      } else {
        reduce.SetAttrInts("axes", {-1});
      }
      g.nodes.push_back(std::move(reduce));
      g.nodes.push_back(NewNode("Div", {amax, c127}, {raw_scale}, names_.Make(x + "_RowScale")));
      g.nodes.push_back(NewNode("Max", {raw_scale, tiny}, {qa.scale}, names_.Make(x + "_RowScaleFloor")));
      g.nodes.push_back(NewNode("Div", {x, qa.scale}, {scaled}, names_.Make(x + "_Scale")));
      g.nodes.push_back(NewNode("Round", {scaled}, {rounded}, names_.Make(x + "_Round")));
      g.nodes.push_back(NewNode("Clip", {rounded, cm127, c127}, {clipped}, names_.Make(x + "_Clip")));
      Node cast = NewNode("Cast", {clipped}, {qa.q}, names_.Make(x + "_CastInt8"));
      cast.SetAttrInt("to", static_cast<int64_t>(DType::kInt8));
      g.nodes.push_back(std::move(cast));
    }
    activation_cache_.emplace(key, qa);
    return qa;
  }

  wq::WeightRange Range() const { return quant::KernelWeightRange(opt_.weight_range); }

  bool PerRow() const { return opt_.activation_granularity == ActivationGranularity::kRow; }

  // int32 product -> float -> * (x_scale * w_scale) [+ bias] -> `output`.
  void AppendRescale(Graph& g, const Node& original, const std::string& acc, const std::string& x_scale,
                     const std::string& w_scale, const std::string& bias, const std::string& output) {
    const std::string& base = original.outputs[0];
    const std::string as_float = names_.Make(base + "_float"), scale = names_.Make(base + "_output_scale");
    Node cast = NewNode("Cast", {acc}, {as_float}, names_.Make(original.name + "_cast"));
    cast.SetAttrInt("to", static_cast<int64_t>(DType::kFloat32));
    g.nodes.push_back(std::move(cast));
    g.nodes.push_back(NewNode("Mul", {x_scale, w_scale}, {scale}, names_.Make(original.name + "_scale")));
    if (bias.empty()) {
      g.nodes.push_back(NewNode("Mul", {as_float, scale}, {output}, names_.Make(original.name + "_rescale")));
      return;
    }
    const std::string scaled = names_.Make(base + "_scaled");
    g.nodes.push_back(NewNode("Mul", {as_float, scale}, {scaled}, names_.Make(original.name + "_rescale")));
    g.nodes.push_back(NewNode("Add", {scaled, bias}, {output}, names_.Make(original.name + "_bias")));
  }

  // MatMulInteger(x_q, w_q [K, N]) + rescale, replacing a MatMul/Gemm whose output is `output`.
  void AppendMatMulInteger(Graph& g, const Node& original, const std::string& x, const WeightNames& w,
                           const std::string& w_scale, const std::string& bias) {
    const QuantizedActivation qa = QuantizeActivation(g, x, PerRow());
    const std::string acc = names_.Make(original.outputs[0] + "_int32");
    // Per-row activations are symmetric: no a_zero_point.
    g.nodes.push_back(NewNode("MatMulInteger", {qa.q, w.q, qa.zero_point, w.zero_point}, {acc},
                              names_.Make(original.name + "_quant")));
    AppendRescale(g, original, acc, qa.scale, w_scale, bias, original.outputs[0]);
  }

  Outcome QuantizeMatMulIntegerOps(Node& n, const ScopeChain& chain) {
    ConstantWeight w;
    Outcome r = ResolveWeight(n, 1, chain, "weight", &w);
    if (!r.quantized) return r;
    if (w.tensor->rank() != 2) {
      return Outcome::Skip(fmt::format("weight '{}' has shape {}: MatMulInteger is written for 2-D weights only "
                                       "(use --format qdq-weights for batched weights)",
                                       n.inputs[1], ShapeToString(w.tensor->shape())));
    }
    const bool per_channel = opt_.per_channel;
    const auto type = ChosenWeightType(PerRow());
    const Tensor* wt = w.tensor;
    WeightNames names = AddQuantizedWeight(w, n.inputs[1], fmt::format("cols{}{}", per_channel, int(type)), [&] {
      return wq::QuantizeWeightTensor(*wt, per_channel ? 1 : -1, type, Range());
    });
    AppendMatMulInteger(Current(chain), n, n.inputs[0], names, names.scale, "");
    return Outcome::Done();
  }

  Outcome QuantizeGemmIntegerOps(Node& n, const ScopeChain& chain) {
    if (n.AttrInt("transA", 0) != 0) {
      return Outcome::Skip("transA=1 (MatMulInteger has no transposed input; use --format qdq-weights)");
    }
    ConstantWeight w;
    Outcome r = ResolveWeight(n, 1, chain, "weight", &w);
    if (!r.quantized) return r;
    if (w.tensor->rank() != 2) return Outcome::Skip(fmt::format("weight '{}' is not 2-D", n.inputs[1]));
    const float alpha = n.AttrFloat("alpha", 1.0f), beta = n.AttrFloat("beta", 1.0f);
    const bool trans_b = n.AttrInt("transB", 0) != 0;
    // Bias: beta * C, folded when C is constant; a computed C is added as is (beta must be 1).
    std::string bias;
    if (n.HasInput(2) && beta != 0.0f) {
      ConstantWeight c;
      Outcome cr = ResolveWeight(n, 2, chain, "bias", &c);
      if (cr.quantized) {
        if (beta == 1.0f) {
          bias = n.inputs[2];
        } else {
          Tensor scaled = c.tensor->Clone();
          for (int64_t i = 0; i < scaled.numel(); ++i) scaled.data<float>()[i] *= beta;
          bias = names_.Make(n.inputs[2] + "_beta");
          c.owner->AddInitializer(bias, std::move(scaled));
        }
      } else if (beta == 1.0f) {
        bias = n.inputs[2];
      } else {
        return Outcome::Skip(fmt::format("bias C is computed at run time and beta = {} (only beta = 1 is supported then)", beta));
      }
    }
    const bool per_channel = opt_.per_channel;
    const auto type = ChosenWeightType(PerRow());
    const Tensor* wt = w.tensor;
    WeightNames names = AddQuantizedWeight(w, n.inputs[1], fmt::format("cols{}{}{}", per_channel, int(type), trans_b), [&] {
      return wq::QuantizeWeightTensor(trans_b ? Transpose2D(*wt) : *wt, per_channel ? 1 : -1, type, Range());
    });
    std::string w_scale = names.scale;
    if (alpha != 1.0f) {
      // alpha is folded into the weight scale (one float32 product per channel).
      Tensor s = w.owner->FindInitializer(names.scale)->Clone();
      for (int64_t i = 0; i < s.numel(); ++i) s.data<float>()[i] *= alpha;
      w_scale = names_.Make(names.scale + "_alpha");
      w.owner->AddInitializer(w_scale, std::move(s));
    }
    AppendMatMulInteger(Current(chain), n, n.inputs[0], names, w_scale, bias);
    return Outcome::Done();
  }

  Outcome QuantizeConvIntegerOps(Node& n, const ScopeChain& chain) {
    ConstantWeight w;
    Outcome r = ResolveWeight(n, 1, chain, "weight", &w);
    if (!r.quantized) return r;
    if (w.tensor->rank() < 3) return Outcome::Skip(fmt::format("weight '{}' has rank {} (< 3)", n.inputs[1], w.tensor->rank()));
    const int64_t m = w.tensor->dim(0), rank = static_cast<int64_t>(w.tensor->rank());
    ConstantWeight b;
    if (n.HasInput(2)) {
      Outcome br = ResolveWeight(n, 2, chain, "bias", &b);
      if (!br.quantized) return br;
      if (b.tensor->numel() != m) {
        return Outcome::Skip(fmt::format("bias '{}' has {} elements for {} output channels", n.inputs[2], b.tensor->numel(), m));
      }
    }
    const auto type = ChosenWeightType(/*int8_activations=*/false);  // Conv activations are uint8 per tensor
    bool per_channel = opt_.per_channel;
    if (per_channel && type == wq::WeightType::kUInt8Asymmetric) {
      // ConvInteger takes one weight zero point (ONNX Runtime rejects per-channel ones), and
      // asymmetric per-channel weights need one per channel.
      per_channel = false;
      AddNote("Conv with uint8 weights is quantized per tensor: ConvInteger takes a single weight zero point");
    }
    if (PerRow()) AddNote("Conv activations are quantized per tensor (row granularity applies to MatMul and Gemm)");
    const Tensor* wt = w.tensor;
    WeightNames names = AddQuantizedWeight(w, n.inputs[1], fmt::format("conv{}{}", per_channel, int(type)), [&] {
      QuantizedTensor qt = wq::QuantizeWeightTensor(*wt, per_channel ? 0 : -1, type, Range());
      // Per-channel symmetric zero points are all equal (0, or 128 for uint8): one scalar zero point
      // for ConvInteger, and the per-channel scale broadcast over [N, M, spatial...] for the rescale.
      if (per_channel) {
        Tensor zp(qt.zero_point.dtype(), {});
        std::memcpy(zp.raw_data(), qt.zero_point.raw_data(), 1);
        qt.zero_point = std::move(zp);
        Shape s(static_cast<size_t>(rank), 1);
        s[1] = m;
        qt.scale = qt.scale.Reshaped(s);
      }
      return qt;
    });
    std::string bias;
    if (b.tensor) {
      const std::string key = fmt::format("{}|{}|bias{}", static_cast<const void*>(b.owner), n.inputs[2], rank);
      auto it = constant_cache_.find(key);
      if (it == constant_cache_.end()) {
        Shape s(static_cast<size_t>(rank), 1);
        s[1] = m;
        bias = names_.Make(n.inputs[2] + "_reshaped");
        b.owner->AddInitializer(bias, b.tensor->Clone().Reshaped(s));
        constant_cache_.emplace(key, bias);
      } else {
        bias = it->second;
      }
    }
    Graph& g = Current(chain);
    const QuantizedActivation qa = QuantizeActivation(g, n.inputs[0], /*per_row=*/false);
    const std::string acc = names_.Make(n.outputs[0] + "_int32");
    Node conv = NewNode("ConvInteger", {qa.q, names.q, qa.zero_point, names.zero_point}, {acc}, names_.Make(n.name + "_quant"));
    conv.attributes = n.attributes;  // auto_pad, dilations, group, kernel_shape, pads, strides
    g.nodes.push_back(std::move(conv));
    AppendRescale(g, n, acc, qa.scale, names.scale, bias, n.outputs[0]);
    return Outcome::Done();
  }

  // ---- qdq-weights form: W_q -> DequantizeLinear -> the node's weight input ----

  Outcome DequantizeWeightInput(Node& n, size_t index, int64_t axis, wq::WeightType type, const ScopeChain& chain) {
    ConstantWeight w;
    Outcome r = ResolveWeight(n, index, chain, index == 1 ? "weight" : "recurrence weight", &w);
    if (!r.quantized) return r;
    if (axis >= static_cast<int64_t>(w.tensor->rank())) {
      return Outcome::Skip(fmt::format("weight '{}' has shape {}", n.inputs[index], ShapeToString(w.tensor->shape())));
    }
    const std::string& weight_name = n.inputs[index];
    const Tensor* wt = w.tensor;
    WeightNames names = AddQuantizedWeight(w, weight_name, fmt::format("axis{}{}", axis, int(type)), [&] {
      return wq::QuantizeWeightTensor(*wt, axis, type, Range());
    });
    Graph& g = Current(chain);
    const std::string key = fmt::format("{}|{}", static_cast<const void*>(&g), names.q);
    auto it = dequantized_cache_.find(key);
    std::string dequantized;
    if (it != dequantized_cache_.end()) {
      dequantized = it->second;
    } else {
      dequantized = names_.Make(weight_name + "_dequantized");
      Node dq = NewNode("DequantizeLinear", {names.q, names.scale, names.zero_point}, {dequantized},
                        names_.Make(weight_name + "_DequantizeLinear"));
      if (axis >= 0) dq.SetAttrInt("axis", axis);
      g.nodes.push_back(std::move(dq));
      dequantized_cache_.emplace(key, dequantized);
    }
    n.inputs[index] = dequantized;
    return Outcome::Done();
  }

  Outcome QuantizeMatMulQdq(Node& n, const ScopeChain& chain) {
    ConstantWeight w;
    Outcome r = ResolveWeight(n, 1, chain, "weight", &w);
    if (!r.quantized) return r;
    const int64_t rank = static_cast<int64_t>(w.tensor->rank());
    if (rank < 2) return Outcome::Skip(fmt::format("weight '{}' is 1-D", n.inputs[1]));
    return AppendQdqNode(n, 1, opt_.per_channel ? rank - 1 : -1, chain);
  }

  Outcome QuantizeGemmQdq(Node& n, const ScopeChain& chain) {
    const int64_t axis = n.AttrInt("transB", 0) != 0 ? 0 : 1;  // the output-column axis of B
    return AppendQdqNode(n, 1, opt_.per_channel ? axis : -1, chain);
  }

  Outcome QuantizeConvQdq(Node& n, const ScopeChain& chain) { return AppendQdqNode(n, 1, opt_.per_channel ? 0 : -1, chain); }

  Outcome AppendQdqNode(Node& n, size_t index, int64_t axis, const ScopeChain& chain) {
    Outcome r = DequantizeWeightInput(n, index, axis, ChosenWeightType(/*int8_activations=*/false), chain);
    if (r.quantized) Current(chain).nodes.push_back(std::move(n));
    return r;
  }

  // LSTM/GRU: W (input 1) and R (input 2) become int8 per output row (axis 1 of
  // [num_directions, gates * hidden, columns]) behind DequantizeLinear, in both formats.
  Outcome QuantizeRecurrent(Node& n, const ScopeChain& chain) {
    if (opt_.weight_type == QuantWeightType::kUInt8) {
      AddNote("LSTM/GRU weights are always int8 symmetric (per output row with per-channel)");
    }
    const int64_t axis = opt_.per_channel ? 1 : -1;
    Outcome w = DequantizeWeightInput(n, 1, axis, wq::WeightType::kInt8Symmetric, chain);
    Outcome r = DequantizeWeightInput(n, 2, axis, wq::WeightType::kInt8Symmetric, chain);
    if (!w.quantized && !r.quantized) return Outcome::Skip(w.reason + "; " + r.reason);
    if (!w.quantized) AddNote(fmt::format("{}: W left in float ({})", n.Describe(), w.reason));
    if (!r.quantized) AddNote(fmt::format("{}: R left in float ({})", n.Describe(), r.reason));
    Current(chain).nodes.push_back(std::move(n));
    return Outcome::Done();
  }

  Model& model_;
  const QuantizeOptions& opt_;
  const ExcludeList& exclude_;
  QuantizeReport& report_;
  NameRegistry names_;
  std::map<std::string, WeightNames> weight_cache_;
  std::map<std::string, QuantizedActivation> activation_cache_;
  std::map<std::string, std::string> dequantized_cache_;
  std::map<std::string, std::string> constant_cache_;
};

Status SortAllGraphs(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(SortAllGraphs(*a.g));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(SortAllGraphs(*sg));
    }
  return passes::TopologicalSort(g);
}

int64_t RequiredOpset(const QuantizeOptions& o, bool has_recurrent) {
  int64_t need = o.format == QuantFormat::kIntegerOps ? kOpsetIntegerOps
                                                      : (o.per_channel ? kOpsetPerAxisDequantize : kOpsetDequantize);
  if (has_recurrent) need = std::max(need, o.per_channel ? kOpsetPerAxisDequantize : kOpsetDequantize);
  return need;
}

std::string CandidateList(const std::vector<std::string>& op_types) { return fmt::format("{}", fmt::join(op_types, "/")); }

}  // namespace

StatusOr<QuantizeReport> QuantizeDynamic(Model& model, const QuantizeOptions& options) {
  QK_RETURN_IF_ERROR(ValidateQuantizeOptions(options));
  QK_ASSIGN_OR_RETURN(ExcludeList exclude, ExcludeList::Create(options.exclude, model));

  // Anything to do at all? (Before any rewrite, so the error names the real reason.)
  int candidates = 0;
  bool has_recurrent = false;
  ForEachNode(model.graph, [&](const Node& n) {
    if (!IsCandidateOp(n) || !Contains(options.op_types, n.op_type) || exclude.Match(n.name)) return;
    ++candidates;
    has_recurrent |= n.op_type == "LSTM" || n.op_type == "GRU";
  });
  if (candidates == 0) {
    return InvalidArgument(fmt::format("nothing to quantize: the model has no {} node{}", CandidateList(options.op_types),
                                       options.exclude.empty() ? "" : " outside the excluded names"));
  }

  Model work = model;
  QuantizeReport report;
  report.opset_before = work.OpsetVersion("");
  const int64_t need = RequiredOpset(options, has_recurrent);
  if (report.opset_before < need) {
    QK_RETURN_IF_ERROR(passes::UpgradeOpset(work, kUpgradeTarget));
    report.notes.push_back(fmt::format("default-domain opset upgraded from {} to {} (the quantized forms need {})",
                                       report.opset_before, kUpgradeTarget, need));
  }
  report.opset_after = work.OpsetVersion("");

  // Weights computed from constants (Constant nodes, Concat/Unsqueeze of constants, also of an
  // enclosing graph's initializers) become plain initializers first, so they count as weights.
  QK_RETURN_IF_ERROR(passes::ConstantNodesToInitializers(work));
  QK_RETURN_IF_ERROR(SortAllGraphs(work.graph));
  QK_RETURN_IF_ERROR(passes::FoldConstants(work, 64u << 20, /*keep_dequantize=*/true));

  DynamicQuantizer quantizer(work, options, exclude, report);
  QK_RETURN_IF_ERROR(quantizer.RewriteGraph({&work.graph}));
  if (report.total_quantized() == 0) {
    std::string why;
    for (size_t i = 0; i < report.skipped.size() && i < 3; ++i)
      why += fmt::format("{}{}: {}", i ? "; " : "", report.skipped[i].node, report.skipped[i].reason);
    if (report.skipped.size() > 3) why += fmt::format("; and {} more", report.skipped.size() - 3);
    return InvalidArgument(fmt::format("nothing to quantize: no {} node could be quantized ({})",
                                       CandidateList(options.op_types), why));
  }
  // The float weights nobody reads any more go away (with nodes already dead in the input).
  QK_RETURN_IF_ERROR(passes::EliminateDeadNodes(work));
  Status verify = VerifyGraph(work.graph);
  if (!verify.ok()) return Internal("quantized graph is malformed: " + verify.message());
  model = std::move(work);
  return report;
}

}  // namespace quantkit
