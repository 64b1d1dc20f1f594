// Pass: BatchNormalization (inference form) folded into the preceding Conv, ConvTranspose or Gemm.
//   y = (x - mean) * s + beta, s = gamma / sqrt(var + eps)
//   Conv:  W'[oc,...] = W[oc,...] * s[oc];  B'[oc] = (B[oc] - mean[oc]) * s[oc] + beta[oc]
//   ConvTranspose: W is [Cin, Cout/group, k...]; output channel g*Cout/group + j scales W[:, j, ...]
//   Gemm:  Y = alpha * A * B + beta_g * C; BN over Y's columns: scale column n of B by s[n] and
//          C'[n] = (beta_g * C[n] - mean[n]) * s[n] + beta[n], with beta_g set to 1.
// Applies only when the producer's output feeds nothing but the BN and all parameters are float32
// initializers.
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

bool TryFold(Graph& g, const DefUse& du, size_t bn_index, std::vector<bool>& removed) {
  Node& bn = g.nodes[bn_index];
  if (bn.outputs.size() != 1 && !(bn.outputs.size() > 1 && std::all_of(bn.outputs.begin() + 1, bn.outputs.end(),
                                                                     [](const std::string& o) { return o.empty(); })))
    return false;
  if (bn.AttrInt("training_mode", 0) != 0 || bn.inputs.size() < 5) return false;
  const int p = du.Producer(bn.Input(0));
  if (p < 0 || removed[p]) return false;
  Node& prod = g.nodes[p];
  if (!prod.IsDefaultDomain() || prod.outputs.size() != 1) return false;
  if (du.Consumers(bn.Input(0)).size() != 1 || g.IsGraphOutput(bn.Input(0))) return false;
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
  const std::string b_name = g.UniqueName(bn.outputs[0] + "_bias_bnfolded");
  g.AddInitializer(b_name, std::move(nb));
  prod.inputs.resize(3);
  prod.inputs[1] = w_name;
  prod.inputs[2] = b_name;
  prod.outputs[0] = bn.outputs[0];
  removed[bn_index] = true;
  return true;
}

void Run(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) Run(*a.g);
      for (auto& sg : a.graphs) Run(*sg);
    }
  std::vector<bool> removed(g.nodes.size(), false);
  bool any = false;
  {
    DefUse du(g);
    for (size_t i = 0; i < g.nodes.size(); ++i)
      if (g.nodes[i].op_type == "BatchNormalization" && g.nodes[i].IsDefaultDomain())
        any |= TryFold(g, du, i, removed);
  }
  if (!any) return;
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(nodes);
}

}  // namespace

Status FoldBatchNorm(Model& model) {
  Run(model.graph);
  return EliminateDeadNodes(model);  // the old weights are unused now
}

}  // namespace quantkit::passes
