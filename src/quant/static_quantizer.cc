// Static (calibrated) quantization: the QDQ rewrite. Rules in include/quantkit/static_quantize.h
// and docs/quantization-rules.md; weight and activation parameter math in
// runtime/kernels/ref/weight_quant.h (the one place for scale/zero-point choice).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/thread_pool.h"
#include "passes/passes.h"
#include "quant/rewrite_util.h"
#include "quantkit/static_quantize.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/kernels/ref/weight_quant.h"
#include "runtime/plan.h"

namespace quantkit {

namespace wq = rt::quant;

const std::vector<std::string>& StaticQuantizableOpTypes() {
  static const std::vector<std::string> kTypes = StaticQuantizeOptions{}.op_types;
  return kTypes;
}

namespace {

struct QParams {
  float scale = 1;
  int32_t zero_point = 0;
  bool operator==(const QParams& o) const { return scale == o.scale && zero_point == o.zero_point; }
};

QParams ActivationParams(FloatRange r, ActivationType type) {
  const ActivationQuantParams p = ActivationParamsFromRange(r, type);
  return {p.scale, p.zero_point};
}

bool IsOp(const Node& n, const char* op) { return n.IsDefaultDomain() && n.op_type == op; }

// Ops whose output is a selection or rearrangement of input values: the output keeps the input's
// quantization parameters (no requantization).
bool KeepsInputScale(const Node& n) {
  static const std::set<std::string> kOps = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                                             "Slice"};
  return n.IsDefaultDomain() && kOps.count(n.op_type);
}

// Which inputs of a quantized node are activations to quantize (the rest are weights, shapes, ...).
std::vector<size_t> ActivationInputs(const Node& n, const Graph& g) {
  auto is_const = [&](size_t i) { return g.IsInitializer(n.Input(i)) && !g.IsGraphInput(n.Input(i)); };
  const std::string& op = n.op_type;
  if (op == "Conv" || op == "ConvTranspose" || op == "Gemm") return {0};
  if (op == "MatMul") return is_const(1) ? std::vector<size_t>{0} : std::vector<size_t>{0, 1};
  if (op == "Add" || op == "Mul") {
    std::vector<size_t> v;
    for (size_t i = 0; i < 2; ++i)
      if (!is_const(i)) v.push_back(i);
    return v;
  }
  if (op == "Concat") {
    std::vector<size_t> v;
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (!is_const(i)) v.push_back(i);
    return v;
  }
  return {0};  // pooling, data movement, Resize, Slice: the data input
}

class StaticQuantizer {
 public:
  StaticQuantizer(Model& model, std::map<std::string, FloatRange> ranges, ChannelStatsMap channels,
                  const StaticQuantizeOptions& options, const quant::ExcludeList& exclude, QuantizeReport& report)
      : model_(model), g_(model.graph), ranges_(std::move(ranges)), options_(options), exclude_(exclude),
        report_(report), names_(model), channels_(std::move(channels)) {}

  Status Run() {
    const DefUse du(g_);
    EqualizeChannels(du);
    FindElementwiseRoots();
    SelectNodes(du);
    ChooseParams(du);
    // Rewrite: weights and biases first (they need the input scale), then one Q/DQ pair per tensor.
    for (size_t i : selected_) QK_RETURN_IF_ERROR(QuantizeWeights(g_.nodes[i], i));
    InsertQdqPairs();
    for (const auto& [op, count] : counts_) report_.quantized[op] += count;
    if (bias_corrected_ > 0) {
      report_.notes.push_back(fmt::format("bias correction: {} Conv/Gemm bias(es) adjusted by the mean error of their "
                                          "quantized weights over the calibrated input channel means",
                                          bias_corrected_));
    }
    return passes::TopologicalSort(g_);
  }

 private:
  bool Wanted(const Node& n) const {
    return n.IsDefaultDomain() &&
           std::find(options_.op_types.begin(), options_.op_types.end(), n.op_type) != options_.op_types.end();
  }
  bool HasRange(const std::string& t) const { return ranges_.count(t) != 0; }
  void Skip(const Node& n, std::string reason) { report_.skipped.push_back({n.Describe(), n.op_type, std::move(reason)}); }

  // Conv/Gemm/MatMul followed by Relu/Clip, Add/Mul followed by Relu (sole consumer): the
  // activation joins the unit, so only its output is quantized (a residual Add -> Relu is
  // rounded once, over [0, max] instead of the Add's signed range).
  int FusedActivation(const DefUse& du, const Node& n) const {
    const bool matmul_like = IsOp(n, "Conv") || IsOp(n, "ConvTranspose") || IsOp(n, "Gemm") || IsOp(n, "MatMul");
    const bool binary = IsOp(n, "Add") || IsOp(n, "Mul");
    if (!(matmul_like || binary) || g_.IsGraphOutput(n.outputs[0])) return -1;
    const auto& c = du.Consumers(n.outputs[0]);
    if (c.size() != 1) return -1;
    const Node& a = g_.nodes[c[0]];
    const bool fusable = IsOp(a, "Relu") || (matmul_like && IsOp(a, "Clip"));
    return fusable && !exclude_.Match(a.name) ? c[0] : -1;
  }

  // Elementwise ops whose variable inputs all derive, through such ops, from one tensor (x + 3,
  // x * Clip(x + 3, 0, 6) / 6, a * x + b with scalars a, b): their outputs are functions of that
  // root tensor alone. Quantizing each intermediate adds a rounding per op (a decomposed hardswish
  // followed by a scalar affine has six); instead the whole DAG stays between the root's and the
  // final value's quantization, and the runtime runs it as one exact 256-entry lookup.
  void FindElementwiseRoots() {
    for (const Node& n : g_.nodes) {
      if (!passes::IsElementwiseLookupOp(n) || n.outputs[0].empty()) continue;
      std::string root;
      bool single = true;
      for (const auto& in : n.inputs) {
        if (in.empty()) continue;
        if (g_.IsInitializer(in) && !g_.IsGraphInput(in)) {
          const Tensor* c = g_.FindInitializer(in);
          single = single && c->numel() == 1 && c->dtype() == DType::kFloat32;
          continue;
        }
        auto it = elementwise_root_.find(in);
        const std::string& r = it == elementwise_root_.end() ? in : it->second;
        single = single && (root.empty() || root == r);
        root = r;
      }
      if (single && !root.empty()) elementwise_root_[n.outputs[0]] = root;
    }
  }

  // Checks each candidate's structure and that its tensors have calibration ranges.
  void SelectNodes(const DefUse& du) {
    int inside_dags = 0;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const Node& n = g_.nodes[i];
      if (!Wanted(n) || n.outputs.size() != 1 || n.outputs[0].empty()) continue;
      if (const std::string* pattern = exclude_.Match(n.name)) {
        Skip(n, fmt::format("excluded by '{}'", *pattern));
        continue;
      }
      if ((IsOp(n, "Add") || IsOp(n, "Mul")) && elementwise_root_.count(n.outputs[0])) {
        ++inside_dags;
        continue;
      }
      if (HasWeights(n)) {
        const Tensor* w = g_.FindInitializer(n.Input(1));
        if (!w || w->dtype() != DType::kFloat32 || g_.IsGraphInput(n.Input(1))) {
          Skip(n, "weight is not a constant float32 tensor");
          continue;
        }
        if (IsOp(n, "Gemm") && (n.AttrInt("transA", 0) != 0 || n.AttrFloat("alpha", 1.f) != 1.f ||
                                n.AttrFloat("beta", 1.f) != 1.f)) {
          Skip(n, "Gemm with transA, alpha or beta is left float");
          continue;
        }
        if ((IsOp(n, "Gemm") || IsOp(n, "MatMul")) && w->rank() != 2) {
          Skip(n, fmt::format("weight of rank {} (2 is supported)", w->rank()));
          continue;
        }
        if ((IsOp(n, "Conv") || IsOp(n, "ConvTranspose")) && w->rank() < 3) {
          Skip(n, fmt::format("weight of rank {} (3 or more expected)", w->rank()));
          continue;
        }
        if (n.HasInput(2)) {
          const Tensor* b = g_.FindInitializer(n.Input(2));
          if (!b || b->dtype() != DType::kFloat32) {
            Skip(n, "bias is not a constant float32 tensor");
            continue;
          }
        }
      }
      const int act = FusedActivation(du, n);
      const std::string out = act >= 0 ? g_.nodes[act].outputs[0] : n.outputs[0];
      std::string missing;
      for (size_t k : ActivationInputs(n, g_))
        if (!HasRange(n.Input(k))) missing = n.Input(k);
      if (!KeepsInputScale(n) && !HasRange(out)) missing = out;
      if (!missing.empty()) {
        Skip(n, fmt::format("no calibration statistics for tensor '{}'", missing));
        continue;
      }
      selected_.push_back(i);
      unit_output_[i] = out;
      if (act >= 0) fused_act_.insert(static_cast<size_t>(act));
    }
    if (inside_dags > 0) {
      report_.notes.push_back(fmt::format(
          "{} Add/Mul node(s) compute a function of a single tensor (e.g. a hardswish written as "
          "x * Clip(x + 3, 0, 6) / 6, a scalar affine): only that tensor and the result are quantized, "
          "and the runtime runs the ops in between as one 256-entry lookup",
          inside_dags));
    }
  }

  // The part of `t`'s calibrated range that matters when every consumer of t is in the
  // elementwise DAG rooted at t (FindElementwiseRoots): where the DAG's results are constant (a
  // hardswish is 0 for x <= -3, a Clip saturates), values may be clipped at no cost, so the range
  // shrinks to where they change. Found by running the DAG on 4097 points of the range.
  FloatRange UsefulRange(const DefUse& du, const std::string& t, FloatRange r) const {
    const auto& consumers = du.Consumers(t);
    if (consumers.empty() || g_.IsGraphOutput(t) || !(r.max > r.min)) return r;
    for (int c : consumers) {
      auto it = elementwise_root_.find(g_.nodes[c].outputs[0]);
      if (it == elementwise_root_.end() || it->second != t) return r;
    }
    std::vector<int> dag;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      auto it = elementwise_root_.find(g_.nodes[i].outputs[0]);
      if (it != elementwise_root_.end() && it->second == t) dag.push_back(static_cast<int>(i));
    }
    Graph tmp;
    tmp.name = "useful_range";
    constexpr int64_t kPoints = 4097;
    Tensor grid(DType::kFloat32, {kPoints});
    for (int64_t i = 0; i < kPoints; ++i)
      grid.data<float>()[i] = r.min + (r.max - r.min) * static_cast<float>(i) / static_cast<float>(kPoints - 1);
    tmp.AddInitializer(t, grid);
    for (int d : dag) {
      const Node& n = g_.nodes[d];
      for (const auto& in : n.inputs)
        if (g_.IsInitializer(in) && !tmp.IsInitializer(in)) tmp.AddInitializer(in, *g_.FindInitializer(in));
      tmp.nodes.push_back(n);
      bool leaves = g_.IsGraphOutput(n.outputs[0]);
      for (int c : du.Consumers(n.outputs[0])) leaves = leaves || std::find(dag.begin(), dag.end(), c) == dag.end();
      if (leaves) {
        ValueInfo vi;
        vi.name = n.outputs[0];
        tmp.outputs.push_back(vi);
      }
    }
    if (tmp.outputs.empty()) return r;
    auto plan = rt::Plan::Build(tmp, model_, nullptr);
    if (!plan.ok()) return r;
    ThreadPool pool(1);
    rt::RunContext run{DefaultAllocator(), &pool};
    std::vector<Value> outs;
    if (!(*plan)->Run(run, nullptr, {}, &outs).ok()) return r;
    int64_t lo = kPoints - 1, hi = 0;  // first / last grid index where some result changes
    for (const Value& v : outs) {
      if (!v.is_tensor() || v.tensor.dtype() != DType::kFloat32 || v.tensor.numel() != kPoints) return r;
      const float* y = v.tensor.data<float>();
      int64_t a = 0, b = kPoints - 1;
      while (a + 1 < kPoints && y[a + 1] == y[0]) ++a;
      while (b > 0 && y[b - 1] == y[kPoints - 1]) --b;
      lo = std::min(lo, a);
      hi = std::max(hi, b);
    }
    if (lo >= hi) return r;
    return FloatRange{grid.data<float>()[lo], grid.data<float>()[hi]};
  }

  // Parameters per quantized tensor. Inputs from their own ranges; outputs too, except that
  // pass-through outputs reuse their input's parameters and Concat shares one scale.
  void ChooseParams(const DefUse& du) {
    for (size_t i : selected_) {
      const Node& n = g_.nodes[i];
      if (IsOp(n, "Concat")) {
        FloatRange r = ranges_.at(unit_output_[i]);
        for (size_t k : ActivationInputs(n, g_)) {
          r.min = std::min(r.min, ranges_.at(n.Input(k)).min);
          r.max = std::max(r.max, ranges_.at(n.Input(k)).max);
        }
        const QParams p = ActivationParams(r, options_.activation_type);
        for (size_t k : ActivationInputs(n, g_)) {
          SetParams(n.Input(k), p);
          concat_shared_.insert(n.Input(k));
        }
        SetParams(unit_output_[i], p);
        concat_shared_.insert(unit_output_[i]);
        continue;
      }
      for (size_t k : ActivationInputs(n, g_))
        if (!params_.count(n.Input(k))) SetParams(n.Input(k), ActivationParams(ranges_.at(n.Input(k)), options_.activation_type));
    }
    // Outputs in graph order, so a pass-through chain inherits from its (already set) input. A
    // pass-through output takes its input's parameters even when a consumer already set its own
    // (a Conv after a MaxPool): the values are a subset of the input's, and equal parameters let
    // the op run on the int8 values. Only a Concat's shared scale is kept.
    for (size_t i : selected_) {
      const Node& n = g_.nodes[i];
      const std::string& out = unit_output_[i];
      if (KeepsInputScale(n) && !concat_shared_.count(out)) {
        SetParams(out, params_.at(n.Input(0)));
        continue;
      }
      if (params_.count(out)) continue;
      SetParams(out, ActivationParams(UsefulRange(du, out, ranges_.at(out)), options_.activation_type));
    }
  }
  void SetParams(const std::string& t, QParams p) { params_[t] = p; }

  // Weights: symmetric (per output channel; int8, or uint8 with zero point 128) behind
  // DequantizeLinear; bias int32 with scale input_scale * weight_scale[c].
  Status QuantizeWeights(Node& n, size_t index) {
    ++counts_[n.op_type];
    if (!HasWeights(n)) return Status::Ok();
    const Tensor w = *g_.FindInitializer(n.Input(1));
    const bool trans_b = IsOp(n, "Gemm") && n.AttrInt("transB", 0) != 0;
    // Output-channel axis: Conv weights [M, C, k...] and transposed Gemm weights [N, K]: 0;
    // MatMul / Gemm weights [K, N] and ConvTranspose weights [C, M/group, k...]: 1. A grouped
    // ConvTranspose has no single output-channel axis: one scale for the tensor.
    const bool grouped_transpose = IsOp(n, "ConvTranspose") && n.AttrInt("group", 1) != 1;
    const int64_t axis =
        options_.per_channel && !grouped_transpose ? (IsOp(n, "Conv") || trans_b ? 0 : 1) : -1;
    const bool int8_activations = options_.activation_type != ActivationType::kUInt8Asymmetric;
    const wq::QuantizedWeights qw =
        wq::QuantizeWeightTensor(w, axis, quant::KernelWeightType(options_.weight_type, int8_activations),
                                 quant::KernelWeightRange(options_.weight_range));
    const std::string base = n.Input(1);
    const std::string wq_name = names_.Make(base + "_quantized"), ws_name = names_.Make(base + "_scale"),
                      wz_name = names_.Make(base + "_zero_point"), wd_name = names_.Make(base + "_dequantized");
    g_.AddInitializer(wq_name, qw.q);
    g_.AddInitializer(ws_name, qw.scale);
    g_.AddInitializer(wz_name, qw.zero_point);
    Node dq = quant::NewNode("DequantizeLinear", {wq_name, ws_name, wz_name}, {wd_name}, names_.Make(base + "_DequantizeLinear"));
    if (axis >= 0) dq.SetAttrInt("axis", axis);
    new_nodes_.emplace_back(index, std::move(dq));
    n.inputs[1] = wd_name;
    std::vector<double> correction = BiasCorrection(n, w, qw, axis);
    if (!n.HasInput(2) && !correction.empty()) {  // the correction needs a bias to live in
      const std::string zero_bias = names_.Make(n.name + "_bias");
      g_.AddInitializer(zero_bias, Tensor::FromVector<float>(std::vector<float>(correction.size(), 0.f),
                                                             {static_cast<int64_t>(correction.size())}));
      n.inputs.resize(3);
      n.inputs[2] = zero_bias;
    }
    if (!n.HasInput(2)) return Status::Ok();
    Tensor b = g_.FindInitializer(n.Input(2))->Clone();  // a copy: initializers may share buffers
    if (!correction.empty() && b.numel() == static_cast<int64_t>(correction.size())) {
      ++bias_corrected_;
      for (size_t c = 0; c < correction.size(); ++c)
        b.data<float>()[c] = static_cast<float>(b.data<float>()[c] - correction[c]);
    }
    const QParams in = params_.at(n.Input(0));
    const int64_t channels = qw.scale.numel();
    const int64_t M = b.numel();
    std::vector<int32_t> bq(static_cast<size_t>(M));
    std::vector<float> bs(static_cast<size_t>(M));
    for (int64_t c = 0; c < M; ++c) {
      // The float32 product QLinearConv and the runtime's fusion use: x_scale * w_scale[c].
      bs[c] = in.scale * qw.scale.data<float>()[channels == 1 ? 0 : c];
      const float r = wq::RoundHalfToEven(b.data<float>()[c] / bs[c]);
      bq[c] = static_cast<int32_t>(std::clamp<double>(r, -2147483648.0, 2147483520.0));
    }
    const std::string bbase = n.Input(2);
    const std::string bq_name = names_.Make(bbase + "_quantized"), bs_name = names_.Make(bbase + "_scale"),
                      bd_name = names_.Make(bbase + "_dequantized");
    g_.AddInitializer(bq_name, Tensor::FromVector<int32_t>(bq, {M}));
    g_.AddInitializer(bs_name, Tensor::FromVector<float>(bs, {M}));
    Node bdq = quant::NewNode("DequantizeLinear", {bq_name, bs_name}, {bd_name}, names_.Make(bbase + "_DequantizeLinear"));
    bdq.SetAttrInt("axis", 0);
    new_nodes_.emplace_back(index, std::move(bdq));
    n.inputs[2] = bd_name;
    return Status::Ok();
  }

  // Units with a constant weight (input 1) and optional bias (input 2) to quantize.
  bool HasWeights(const Node& n) const {
    return IsOp(n, "Conv") || IsOp(n, "ConvTranspose") || IsOp(n, "Gemm") ||
           (IsOp(n, "MatMul") && g_.IsInitializer(n.Input(1)));
  }

  // A Conv that will be quantized with a constant float32 weight (and bias, if any).
  bool QuantizableConv(const Node& n) const {
    if (!IsOp(n, "Conv") || !Wanted(n) || exclude_.Match(n.name) || n.outputs.size() != 1) return false;
    for (size_t k = 1; k < std::min<size_t>(n.inputs.size(), 3); ++k) {
      if (!n.HasInput(k)) continue;
      const Tensor* t = g_.FindInitializer(n.Input(k));
      if (!t || t->dtype() != DType::kFloat32 || g_.IsGraphInput(n.Input(k))) return false;
    }
    const Tensor* w = g_.FindInitializer(n.Input(1));
    return w && w->rank() >= 3;
  }

  // StaticQuantizeOptions::equalize: Conv1 -> [Relu] -> Conv2 pairs, in graph order (a Conv in
  // the middle of a chain gets its input channels scaled by one pair and its output channels by
  // the next). Rewrites weights into new initializers (others may share the old ones), and the
  // ranges and channel statistics of the tensors between.
  void EqualizeChannels(const DefUse& du) {
    if (!options_.equalize || !options_.per_channel || channels_.empty()) return;
    int pairs = 0;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (!QuantizableConv(g_.nodes[i])) continue;
      std::vector<std::string> between = {g_.nodes[i].outputs[0]};  // the tensors scaled
      int next = -1;
      while (true) {
        const std::string& t = between.back();
        if (g_.IsGraphOutput(t) || du.Consumers(t).size() != 1) break;
        const Node& c = g_.nodes[du.Consumers(t)[0]];
        if (IsOp(c, "Relu") && between.size() == 1 && c.outputs.size() == 1) {
          between.push_back(c.outputs[0]);
          continue;
        }
        if (QuantizableConv(c) && c.Input(0) == t) next = du.Consumers(t)[0];
        break;
      }
      if (next < 0) continue;
      if (EqualizePair(g_.nodes[i], g_.nodes[static_cast<size_t>(next)], between)) ++pairs;
    }
    if (pairs > 0) {
      report_.notes.push_back(fmt::format(
          "cross-layer equalization: {} Conv pair(s) rescaled per channel (exact in float); the tensors between "
          "them use the scaled per-channel min/max as their range",
          pairs));
      // For tools that compare intermediate tensors with the FP32 model (compare --per-tensor):
      // channel c of each listed tensor holds its FP32 value divided by s[c].
      nlohmann::ordered_json scales = nlohmann::ordered_json::object();
      for (const auto& [t, s] : equalized_) scales[t] = s;
      model_.metadata_props.emplace_back(std::string(kEqualizationMetadataKey),
                                         nlohmann::ordered_json{{"channel_axis", 1}, {"scales", scales}}.dump());
    }
  }

  bool EqualizePair(Node& first, Node& second, const std::vector<std::string>& between) {
    const std::string& read = between.back();  // what `second` reads: quantized with one scale
    auto stats_it = channels_.find(read);
    if (stats_it == channels_.end() || !ranges_.count(read)) return false;
    const Tensor w1 = *g_.FindInitializer(first.Input(1));  // shallow copies: SetWeight adds initializers
    const Tensor w2 = *g_.FindInitializer(second.Input(1));
    const int64_t channels = w1.dim(0);
    const int64_t groups2 = second.AttrInt("group", 1);
    const int64_t in_per_group = w2.dim(1), outputs2 = w2.dim(0);
    if (groups2 <= 0 || in_per_group * groups2 != channels || outputs2 % groups2 != 0 ||
        static_cast<int64_t>(stats_it->second.min.size()) != channels) {
      return false;
    }
    // Only tensors whose range is their min/max can be rescaled exactly: a range method that
    // clipped the tails (percentile, entropy, mse) described the unscaled distribution.
    for (const std::string& t : between) {
      auto it = channels_.find(t);
      if (it == channels_.end()) continue;
      if (static_cast<int64_t>(it->second.min.size()) != channels) return false;
      auto rit = ranges_.find(t);
      if (rit == ranges_.end()) continue;
      FloatRange all{0.f, 0.f};
      for (int64_t c = 0; c < channels; ++c) {
        if (!(it->second.min[c] <= it->second.max[c])) continue;
        all.min = std::min(all.min, it->second.min[c]);
        all.max = std::max(all.max, it->second.max[c]);
      }
      if (std::min(rit->second.min, 0.f) != all.min || std::max(rit->second.max, 0.f) != all.max) return false;
    }
    const int64_t kernel2 = w2.numel() / (outputs2 * in_per_group);
    const int64_t outputs_per_group2 = outputs2 / groups2;
    auto channel_of = [&](int64_t o, int64_t i) { return (o / outputs_per_group2) * in_per_group + i; };
    // Ranges: of each channel of the tensor read, and of the weights of `second` that read it.
    std::vector<double> act(static_cast<size_t>(channels), 0.0), wgt(static_cast<size_t>(channels), 0.0);
    for (int64_t c = 0; c < channels; ++c) {
      const float lo = stats_it->second.min[c], hi = stats_it->second.max[c];
      if (lo <= hi) act[c] = std::max(std::abs(lo), std::abs(hi));
    }
    for (int64_t o = 0; o < outputs2; ++o)
      for (int64_t i = 0; i < in_per_group; ++i)
        for (int64_t k = 0; k < kernel2; ++k) {
          const double v = std::abs(w2.data<float>()[(o * in_per_group + i) * kernel2 + k]);
          double& slot = wgt[static_cast<size_t>(channel_of(o, i))];
          slot = std::max(slot, v);
        }
    const bool depthwise = in_per_group == 1 && groups2 == channels && outputs_per_group2 == 1;
    // The common range the channels are brought to.
    double target = 0;
    for (int64_t c = 0; c < channels; ++c)
      target = std::max(target, depthwise ? act[c] : std::sqrt(act[c] * wgt[c]));
    if (!(target > 0) || !std::isfinite(target)) return false;
    // s_c: the new channel range is act_c / s_c. Channels that are constant zero keep s = 1; a
    // channel `second` ignores (zero weights) is scaled to the target; boosts are capped (1000x)
    // so that near-dead channels do not blow up `first`'s weights.
    std::vector<double> s(static_cast<size_t>(channels), 1.0);
    bool changes = false;
    for (int64_t c = 0; c < channels; ++c) {
      if (!(act[c] > 0)) continue;
      const double balanced = depthwise || !(wgt[c] > 0) ? target : std::sqrt(act[c] * wgt[c]);
      s[c] = std::max(act[c] / balanced, 1e-3);
      changes = changes || s[c] != 1.0;
    }
    if (!changes) return false;
    // Nothing is rewritten unless both Convs can be: a half-applied pair changes the function.
    if (first.HasInput(2) && g_.FindInitializer(first.Input(2))->numel() != channels) return false;
    // first: output channel c divided by s_c (weights and bias).
    Tensor nw1 = w1.Clone();
    const int64_t per_out1 = w1.numel() / channels;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t k = 0; k < per_out1; ++k) {
        float& v = nw1.data<float>()[c * per_out1 + k];
        v = static_cast<float>(v / s[c]);
      }
    SetWeight(first, 1, std::move(nw1));
    if (first.HasInput(2)) {
      Tensor nb1 = g_.FindInitializer(first.Input(2))->Clone();
      for (int64_t c = 0; c < channels; ++c) nb1.data<float>()[c] = static_cast<float>(nb1.data<float>()[c] / s[c]);
      SetWeight(first, 2, std::move(nb1));
    }
    // second: the weights reading channel c multiplied by s_c.
    Tensor nw2 = w2.Clone();
    for (int64_t o = 0; o < outputs2; ++o)
      for (int64_t i = 0; i < in_per_group; ++i)
        for (int64_t k = 0; k < kernel2; ++k) {
          float& v = nw2.data<float>()[(o * in_per_group + i) * kernel2 + k];
          v = static_cast<float>(v * s[static_cast<size_t>(channel_of(o, i))]);
        }
    SetWeight(second, 1, std::move(nw2));
    // The tensors between: channel c's values are divided by s_c.
    for (const std::string& t : between) {
      equalized_[t] = s;
      auto it = channels_.find(t);
      if (it == channels_.end()) {
        ranges_.erase(t);  // no per-channel statistics: no range for the rescaled tensor
        continue;
      }
      ChannelRanges& cr = it->second;
      FloatRange after{0.f, 0.f};  // min/max over the channels (with 0)
      for (int64_t c = 0; c < channels; ++c) {
        if (cr.min[c] <= cr.max[c]) {
          cr.min[c] = static_cast<float>(cr.min[c] / s[c]);
          cr.max[c] = static_cast<float>(cr.max[c] / s[c]);
          after.min = std::min(after.min, cr.min[c]);
          after.max = std::max(after.max, cr.max[c]);
        }
        if (!cr.mean.empty()) cr.mean[c] /= s[c];
      }
      auto rit = ranges_.find(t);
      if (rit != ranges_.end()) rit->second = after;
    }
    return true;
  }

  void SetWeight(Node& n, size_t k, Tensor t) {
    const std::string name = names_.Make(n.Input(k) + "_equalized");
    g_.AddInitializer(name, std::move(t));
    n.inputs[k] = name;
  }

  // The mean error the weights' rounding adds to each output channel of Conv/Gemm n:
  // sum_k (dequantized W - W)[o, k] * mean of input channel k (StaticQuantizeOptions::
  // bias_correction). Empty when disabled, for other ops, or without matching channel means.
  std::vector<double> BiasCorrection(const Node& n, const Tensor& w, const wq::QuantizedWeights& qw,
                                     int64_t axis) const {
    if (!options_.bias_correction || !(IsOp(n, "Conv") || IsOp(n, "Gemm"))) return {};
    auto it = channels_.find(n.Input(0));
    if (it == channels_.end() || it->second.mean.empty()) return {};
    const std::vector<double>& mean = it->second.mean;
    const bool conv = IsOp(n, "Conv");
    const bool trans_b = !conv && n.AttrInt("transB", 0) != 0;
    // View W as [outputs, inputs-per-output]; in_of(o, k) is the input channel of weight (o, k).
    const int64_t outputs = conv || trans_b ? w.dim(0) : w.dim(1);
    const int64_t per_output = w.numel() / outputs;
    const int64_t groups = conv ? n.AttrInt("group", 1) : 1;
    const int64_t kernel = conv ? per_output / w.dim(1) : 1;  // taps per input channel
    const int64_t group_inputs = conv ? w.dim(1) : per_output;
    if (groups <= 0 || outputs % groups != 0 || static_cast<int64_t>(mean.size()) != group_inputs * groups) return {};
    const int64_t channels = qw.scale.numel();
    const float* wf = w.data<float>();
    const bool uint8_weights = qw.q.dtype() == DType::kUInt8;
    std::vector<double> correction(static_cast<size_t>(outputs), 0.0);
    for (int64_t o = 0; o < outputs; ++o) {
      const int64_t first_input = (o / (outputs / groups)) * group_inputs;
      double sum = 0;
      for (int64_t k = 0; k < per_output; ++k) {
        // Element index in W's own layout, and its quantization channel (axis 0 or 1, or one).
        const int64_t idx = conv || trans_b ? o * per_output + k : k * outputs + o;
        const int64_t c = channels == 1 ? 0 : (axis == 0 ? idx / per_output : idx % outputs);
        const int32_t zp = uint8_weights ? qw.zero_point.data<uint8_t>()[c] : qw.zero_point.data<int8_t>()[c];
        const int32_t q = uint8_weights ? qw.q.data<uint8_t>()[idx] : qw.q.data<int8_t>()[idx];
        const double dequantized = static_cast<double>(q - zp) * qw.scale.data<float>()[c];
        sum += (dequantized - wf[idx]) * mean[static_cast<size_t>(first_input + k / kernel)];
      }
      correction[static_cast<size_t>(o)] = sum;
    }
    return correction;
  }

  // One QuantizeLinear -> DequantizeLinear pair per quantized tensor; every reader of the tensor
  // (except the new QuantizeLinear) then reads the dequantized value. Graph outputs keep their name.
  void InsertQdqPairs() {
    const DType qtype = options_.activation_type == ActivationType::kUInt8Asymmetric ? DType::kUInt8 : DType::kInt8;
    std::unordered_map<std::string, std::string> renamed;
    std::vector<Node> pairs;
    for (const auto& [t, p] : params_) {
      const std::string s = names_.Make(t + "_scale"), z = names_.Make(t + "_zero_point");
      const std::string q = names_.Make(t + "_quantized"), d = names_.Make(t + "_dequantized");
      g_.AddInitializer(s, Tensor::FromVector<float>({p.scale}, {}));
      g_.AddInitializer(z, qtype == DType::kUInt8 ? Tensor::FromVector<uint8_t>({static_cast<uint8_t>(p.zero_point)}, {})
                                                  : Tensor::FromVector<int8_t>({static_cast<int8_t>(p.zero_point)}, {}));
      pairs.push_back(quant::NewNode("QuantizeLinear", {t, s, z}, {q}, names_.Make(t + "_QuantizeLinear")));
      pairs.push_back(quant::NewNode("DequantizeLinear", {q, s, z}, {d}, names_.Make(t + "_DequantizeLinear")));
      renamed[t] = d;
    }
    for (auto& n : g_.nodes)
      for (auto& in : n.inputs) {
        auto it = renamed.find(in);
        if (it != renamed.end()) in = it->second;
      }
    for (auto& [pos, node] : new_nodes_) g_.nodes.push_back(std::move(node));
    for (auto& node : pairs) g_.nodes.push_back(std::move(node));
  }

  Model& model_;
  Graph& g_;
  std::map<std::string, FloatRange> ranges_;  // equalization rescales some
  const StaticQuantizeOptions& options_;
  const quant::ExcludeList& exclude_;
  QuantizeReport& report_;
  quant::NameRegistry names_;
  std::vector<size_t> selected_;
  std::map<size_t, std::string> unit_output_;
  std::set<size_t> fused_act_;
  std::map<std::string, QParams> params_;
  std::map<std::string, std::string> elementwise_root_;  // value -> the one tensor it is a function of
  std::set<std::string> concat_shared_;  // tensors whose parameters a Concat's shared scale fixed
  std::map<std::string, int> counts_;
  std::vector<std::pair<size_t, Node>> new_nodes_;
  ChannelStatsMap channels_;  // equalization rescales some
  std::map<std::string, std::vector<double>> equalized_;  // tensor -> s_c (channel c holds FP32 / s_c)
  int bias_corrected_ = 0;
};

}  // namespace

ChannelStatsMap ChannelStatsOf(const CalibrationStats& stats) {
  ChannelStatsMap map;
  for (const auto& [name, t] : stats.tensors) {
    if (t.channels.axis != 1) continue;
    ChannelRanges& c = map[name];
    c.min = t.channels.min;
    c.max = t.channels.max;
    if (t.channels.has_means()) c.mean = t.channels.means();
  }
  return map;
}

StatusOr<QuantizeReport> QuantizeStatic(Model& model, const std::map<std::string, FloatRange>& ranges,
                                        const StaticQuantizeOptions& options, const ChannelStatsMap& channels) {
  for (const auto& op : options.op_types) {
    if (std::find(StaticQuantizableOpTypes().begin(), StaticQuantizableOpTypes().end(), op) ==
        StaticQuantizableOpTypes().end()) {
      return InvalidArgument(fmt::format("op type '{}' cannot be statically quantized (supported: {})", op,
                                         fmt::join(StaticQuantizableOpTypes(), ", ")));
    }
  }
  if (options.weight_type == QuantWeightType::kUInt8 && options.per_channel) {
    return InvalidArgument(
        "uint8 (asymmetric) weights are per tensor only in static mode: QLinearConv takes one weight zero point "
        "for all channels (use uint8-symmetric, int8, or --per-tensor)");
  }
  if (options.weight_type == QuantWeightType::kUInt8 && options.activation_type != ActivationType::kUInt8Asymmetric) {
    return InvalidArgument("int8 activations need symmetric weights (int8 or uint8-symmetric), not uint8");
  }
  Model work = model;
  QuantizeReport report;
  report.opset_before = work.OpsetVersion("");
  // The same preparation as the calibrating session, so tensor names match the statistics.
  QK_RETURN_IF_ERROR(passes::OptimizeForInference(work));
  if (work.OpsetVersion("") < 13) {
    QK_RETURN_IF_ERROR(passes::UpgradeOpset(work, 13));
    report.notes.push_back(fmt::format("default-domain opset upgraded from {} to 13 (per-channel DequantizeLinear)",
                                       report.opset_before));
  }
  report.opset_after = work.OpsetVersion("");
  QK_ASSIGN_OR_RETURN(quant::ExcludeList exclude, quant::ExcludeList::Create(options.exclude, work));
  StaticQuantizer quantizer(work, ranges, channels, options, exclude, report);
  QK_RETURN_IF_ERROR(quantizer.Run());
  if (report.total_quantized() == 0) {
    return InvalidArgument(fmt::format("nothing to quantize statically: no {} node could be quantized{}",
                                       fmt::join(options.op_types, "/"),
                                       report.skipped.empty() ? "" : " (" + report.skipped[0].node + ": " +
                                                                         report.skipped[0].reason + ")"));
  }
  QK_RETURN_IF_ERROR(passes::EliminateDeadNodes(work));
  Status verify = VerifyGraph(work.graph);
  if (!verify.ok()) return Internal("statically quantized graph is malformed: " + verify.message());
  model = std::move(work);
  return report;
}

}  // namespace quantkit
