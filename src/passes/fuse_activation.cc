// Pass (runtime only, run by Session after OptimizeForInference): a float Conv whose output feeds
// only a Relu or a Clip with constant bounds becomes one com.quantkit::FusedConv with attributes
// activation_min / activation_max (Relu: 0 and +inf). The convolution clamps each block of its
// output while it is in cache, instead of a second pass over the whole tensor. Exact: the kernel
// applies the Clip kernel's expression (Relu is Clip(0, +inf) bit for bit, NaN and -0 included).
// Not part of OptimizeForInference: the quantizers run that and expect standard ops, and
// calibration observes the Conv's own output.
#include <limits>

#include "passes/passes.h"
#include "runtime/kernel.h"

namespace quantkit::passes {
namespace {

// A float32 scalar initializer (the Clip bound) or nullptr.
const Tensor* ScalarF32(const Graph& g, const std::string& name) {
  if (name.empty() || g.IsGraphInput(name)) return nullptr;
  const Tensor* t = g.FindInitializer(name);
  return t && t->dtype() == DType::kFloat32 && t->numel() == 1 ? t : nullptr;
}

// The clamp bounds of a Relu / Clip node, or false if it is not a constant clamp.
bool ClampOf(const Graph& g, const Model& model, const Node& n, float* lo, float* hi) {
  if (!n.IsDefaultDomain() || n.inputs.empty() || n.outputs.size() != 1) return false;
  *lo = -std::numeric_limits<float>::infinity();
  *hi = std::numeric_limits<float>::infinity();
  if (n.op_type == "Relu") {
    *lo = 0.f;
    return true;
  }
  if (n.op_type != "Clip") return false;
  if (model.OpsetVersion("") < 11) {
    *lo = n.AttrFloat("min", *lo);
    *hi = n.AttrFloat("max", *hi);
    return true;
  }
  for (size_t i = 1; i < n.inputs.size() && i < 3; ++i) {
    if (n.inputs[i].empty()) continue;
    const Tensor* t = ScalarF32(g, n.inputs[i]);
    if (!t) return false;
    (i == 1 ? *lo : *hi) = t->data<float>()[0];
  }
  return true;
}

void Run(Graph& g, const Model& model) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) Run(*a.g, model);
      for (auto& sg : a.graphs) Run(*sg, model);
    }
  std::vector<bool> removed(g.nodes.size(), false);
  bool any = false;
  {
    DefUse du(g);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      Node& conv = g.nodes[i];
      if (!conv.IsDefaultDomain() || conv.op_type != "Conv" || conv.outputs.size() != 1) continue;
      const std::string& y = conv.outputs[0];
      const auto& consumers = du.Consumers(y);
      if (consumers.size() != 1 || g.IsGraphOutput(y)) continue;
      const int a = consumers[0];
      if (removed[a]) continue;
      const Node& act = g.nodes[a];
      float lo = 0, hi = 0;
      if (act.inputs[0] != y || !ClampOf(g, model, act, &lo, &hi)) continue;
      // Only float32 convolutions: the bounds are float32 (a float64 Clip's would not be).
      const Tensor* w = g.FindInitializer(conv.Input(1));
      if (!w || w->dtype() != DType::kFloat32) continue;
      conv.domain = rt::kQuantkitDomain;
      conv.op_type = "FusedConv";
      conv.SetAttrFloat("activation_min", lo);
      conv.SetAttrFloat("activation_max", hi);
      conv.outputs[0] = act.outputs[0];
      removed[a] = true;
      any = true;
    }
  }
  if (!any) return;
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(nodes);
}

}  // namespace

Status FuseConvActivation(Model& model) {
  Run(model.graph, model);
  if (model.OpsetVersion(rt::kQuantkitDomain) == 0) {
    bool used = false;
    for (const auto& n : model.graph.nodes) used |= n.domain == rt::kQuantkitDomain;
    if (used) model.SetOpsetVersion(rt::kQuantkitDomain, 1);
  }
  return Status::Ok();
}

}  // namespace quantkit::passes
