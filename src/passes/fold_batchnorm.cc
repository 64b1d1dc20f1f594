// Pass: BatchNormalization (inference form) folded into the preceding Conv, ConvTranspose or Gemm.
//   y = (x - mean) * s + beta, s = gamma / sqrt(var + eps)
//   Conv:  W'[oc,...] = W[oc,...] * s[oc];  B'[oc] = (B[oc] - mean[oc]) * s[oc] + beta[oc]
//   ConvTranspose: W is [Cin, Cout/group, k...]; output channel g*Cout/group + j scales W[:, j, ...]
//   Gemm:  Y = alpha * A * B + beta_g * C; BN over Y's columns: scale column n of B by s[n] and
//          C'[n] = (beta_g * C[n] - mean[n]) * s[n] + beta[n], with beta_g set to 1.
// Applies only when the producer's output feeds nothing but the BN and all parameters are float32
// initializers.
// The same fold takes a per-channel affine written as plain ops (PaddlePaddle exports, MobileOne
// blocks): producer -> Mul(constant s) and producer -> Add(constant shift) / Sub(x, constant), the
// constant a scalar or one value per output channel (broadcasting along the channel axis only).
// Folding them keeps static quantization from quantizing a tensor before a per-channel rescale
// (which would crush the channels that get scaled up).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "passes/passes.h"

namespace quantkit::passes {

namespace {

const Tensor* ConstF32(const Graph& g, const std::string& name) {
  if (name.empty() || g.IsGraphInput(name)) return nullptr;
  const Tensor* t = g.FindInitializer(name);
  return t && t->dtype() == DType::kFloat32 ? t : nullptr;
}

// The Conv / ConvTranspose / Gemm producing `value` when `value` feeds only the node being folded.
int FoldableProducer(const Graph& g, const DefUse& du, const std::string& value, const std::vector<bool>& removed) {
  const int p = du.Producer(value);
  if (p < 0 || removed[p]) return -1;
  const Node& prod = g.nodes[p];
  if (!prod.IsDefaultDomain() || prod.outputs.size() != 1) return -1;
  if (du.Consumers(value).size() != 1 || g.IsGraphOutput(value)) return -1;
  return p;
}

// prod's output y becomes y * s[c] + shift[c] per output channel c, written to `out`.
bool ApplyAffine(Graph& g, Node& prod, const std::vector<float>& s, const std::vector<float>& shift,
                 const std::string& out) {
  const int64_t c = static_cast<int64_t>(s.size());
  const bool is_conv = prod.op_type == "Conv";
  const bool is_convt = prod.op_type == "ConvTranspose";
  const bool is_gemm = prod.op_type == "Gemm";
  if (!is_conv && !is_convt && !is_gemm) return false;
  const Tensor* w = ConstF32(g, prod.Input(1));
  if (!w) return false;
  const Tensor* b = prod.HasInput(2) ? ConstF32(g, prod.Input(2)) : nullptr;
  if (prod.HasInput(2) && !b) return false;
  Tensor nw = w->Clone();
  float* wd = nw.data<float>();
  Tensor nb = Tensor::FromVector<float>(std::vector<float>(c, 0.f), {c});
  float* bd = nb.data<float>();
  if (is_conv) {
    if (w->rank() < 3 || w->dim(0) != c) return false;
    if (b && b->numel() != c) return false;
    const int64_t per = w->numel() / c;
    for (int64_t oc = 0; oc < c; ++oc) {
      for (int64_t k = 0; k < per; ++k) wd[oc * per + k] *= s[oc];
      bd[oc] = (b ? b->data<float>()[oc] : 0.f) * s[oc] + shift[oc];
    }
  } else if (is_convt) {
    const int64_t group = prod.AttrInt("group", 1);
    if (w->rank() < 3 || w->dim(1) * group != c) return false;
    if (b && b->numel() != c) return false;
    const int64_t cin = w->dim(0), cpg = w->dim(1), per = w->numel() / (cin * cpg);
    const int64_t cin_per_group = cin / group;
    for (int64_t ic = 0; ic < cin; ++ic) {
      const int64_t gi = ic / cin_per_group;
      for (int64_t j = 0; j < cpg; ++j) {
        const float sc = s[gi * cpg + j];
        for (int64_t k = 0; k < per; ++k) wd[(ic * cpg + j) * per + k] *= sc;
      }
    }
    for (int64_t oc = 0; oc < c; ++oc) bd[oc] = (b ? b->data<float>()[oc] : 0.f) * s[oc] + shift[oc];
  } else {
    if (w->rank() != 2) return false;
    const bool trans_b = prod.AttrInt("transB", 0) != 0;
    const int64_t n = trans_b ? w->dim(0) : w->dim(1);
    const int64_t k = trans_b ? w->dim(1) : w->dim(0);
    if (n != c) return false;
    const float beta_g = prod.AttrFloat("beta", 1.f);
    // C may be a scalar, [N] or [1,N]; anything depending on the row index cannot be folded.
    if (b && !(b->numel() == 1 || b->numel() == n) ) return false;
    if (b && b->rank() == 2 && b->dim(0) != 1) return false;
    for (int64_t col = 0; col < n; ++col) {
      for (int64_t r = 0; r < k; ++r) (trans_b ? wd[col * k + r] : wd[r * n + col]) *= s[col];
      const float cv = b ? b->data<float>()[b->numel() == 1 ? 0 : col] * beta_g : 0.f;
      bd[col] = cv * s[col] + shift[col];
    }
    prod.SetAttrFloat("beta", 1.f);
  }
  const std::string w_name = g.UniqueName(prod.Input(1) + "_bnfolded");
  g.AddInitializer(w_name, std::move(nw));
  const std::string b_name = g.UniqueName(out + "_bias_bnfolded");
  g.AddInitializer(b_name, std::move(nb));
  prod.inputs.resize(3);
  prod.inputs[1] = w_name;
  prod.inputs[2] = b_name;
  prod.outputs[0] = out;
  return true;
}

bool TryFoldBatchNorm(Graph& g, const DefUse& du, size_t bn_index, std::vector<bool>& removed) {
  Node& bn = g.nodes[bn_index];
  if (bn.outputs.size() != 1 && !(bn.outputs.size() > 1 && std::all_of(bn.outputs.begin() + 1, bn.outputs.end(),
                                                                     [](const std::string& o) { return o.empty(); })))
    return false;
  if (bn.AttrInt("training_mode", 0) != 0 || bn.inputs.size() < 5) return false;
  const int p = FoldableProducer(g, du, bn.Input(0), removed);
  if (p < 0) return false;
  const Tensor* gamma = ConstF32(g, bn.Input(1));
  const Tensor* beta = ConstF32(g, bn.Input(2));
  const Tensor* mean = ConstF32(g, bn.Input(3));
  const Tensor* var = ConstF32(g, bn.Input(4));
  if (!gamma || !beta || !mean || !var) return false;
  const int64_t c = gamma->numel();
  if (beta->numel() != c || mean->numel() != c || var->numel() != c) return false;
  const float eps = bn.AttrFloat("epsilon", 1e-5f);
  std::vector<float> s(c), shift(c);
  for (int64_t i = 0; i < c; ++i) {
    s[i] = gamma->data<float>()[i] / std::sqrt(var->data<float>()[i] + eps);
    shift[i] = beta->data<float>()[i] - mean->data<float>()[i] * s[i];
  }
  if (!ApplyAffine(g, g.nodes[p], s, shift, bn.outputs[0])) return false;
  removed[bn_index] = true;
  return true;
}

// Output channels of a Conv / ConvTranspose / Gemm with a constant weight, and the channel axis of
// its output and that output's rank; false if unknown.
bool ChannelsOf(const Graph& g, const Node& prod, int64_t* channels, size_t* axis, size_t* rank) {
  const Tensor* w = ConstF32(g, prod.Input(1));
  if (!w || w->rank() < 2) return false;
  if (prod.op_type == "Conv") {
    *channels = w->dim(0), *axis = 1, *rank = w->rank();
  } else if (prod.op_type == "ConvTranspose") {
    *channels = w->dim(1) * prod.AttrInt("group", 1), *axis = 1, *rank = w->rank();
  } else if (prod.op_type == "Gemm") {
    *channels = prod.AttrInt("transB", 0) != 0 ? w->dim(0) : w->dim(1), *axis = 1, *rank = 2;
  } else {
    return false;
  }
  return true;
}

// Mul / Add / Sub(x, constant) of the producer's output by a constant that varies at most along
// the channel axis.
bool TryFoldConstantAffine(Graph& g, const DefUse& du, size_t index, std::vector<bool>& removed) {
  const Node& n = g.nodes[index];
  const bool is_mul = n.op_type == "Mul", is_add = n.op_type == "Add", is_sub = n.op_type == "Sub";
  if (!n.IsDefaultDomain() || !(is_mul || is_add || is_sub) || n.inputs.size() != 2 || n.outputs.size() != 1) return false;
  for (int var = 0; var < 2; ++var) {
    if (is_sub && var == 1) break;  // constant - x is not an affine map of the producer's output
    const Tensor* k = ConstF32(g, n.Input(1 - var));
    if (!k) continue;
    const int p = FoldableProducer(g, du, n.Input(var), removed);
    if (p < 0) continue;
    int64_t c = 0;
    size_t axis = 0, rank = 0;
    if (!ChannelsOf(g, g.nodes[p], &c, &axis, &rank) || k->rank() > rank) return false;
    // Right-aligned against the output: every dim 1 but the channel dim (1 or c).
    const size_t lead = rank - k->rank();
    for (size_t d = 0; d < k->rank(); ++d) {
      const int64_t dim = k->dim(d);
      if (dim != 1 && !(lead + d == axis && dim == c)) return false;
    }
    std::vector<float> s(static_cast<size_t>(c), 1.f), shift(static_cast<size_t>(c), 0.f);
    for (int64_t ch = 0; ch < c; ++ch) {
      const float v = k->data<float>()[k->numel() == 1 ? 0 : ch];
      if (is_mul) s[ch] = v;
      else shift[ch] = is_sub ? -v : v;
    }
    if (!ApplyAffine(g, g.nodes[p], s, shift, n.outputs[0])) return false;
    removed[index] = true;
    return true;
  }
  return false;
}

// One sweep; true if anything was folded (a Mul folded now exposes the Add after it to the next).
bool Sweep(Graph& g) {
  std::vector<bool> removed(g.nodes.size(), false);
  bool any = false;
  {
    DefUse du(g);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      if (removed[i]) continue;
      if (g.nodes[i].op_type == "BatchNormalization" && g.nodes[i].IsDefaultDomain()) {
        any |= TryFoldBatchNorm(g, du, i, removed);
      } else if (TryFoldConstantAffine(g, du, i, removed)) {
        any = true;
        break;  // the producer's output was renamed: recompute def-use before folding more
      }
    }
  }
  if (!any) return false;
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(nodes);
  return true;
}

void Run(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) Run(*a.g);
      for (auto& sg : a.graphs) Run(*sg);
    }
  while (Sweep(g)) {
  }
}

}  // namespace

Status FoldBatchNorm(Model& model) {
  Run(model.graph);
  return EliminateDeadNodes(model);  // the old weights are unused now
}

}  // namespace quantkit::passes
