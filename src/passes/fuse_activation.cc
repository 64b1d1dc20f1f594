// Pass (runtime only, run by Session after OptimizeForInference): float fusions that keep the
// separate ops' float operations in their order, so the same bits. Not part of
// OptimizeForInference: the quantizers run that and expect standard ops, and calibration observes
// each op's own output. In the order Run applies them:
// 1. A float Conv whose output feeds only an Add with another tensor (a residual), optionally
//    then a Relu / Clip, becomes a FusedConv with the addend as input 3: z = clamp(conv + r) in
//    one pass over the conv's output (FuseConvResidualAdd); the graph is sorted again, as the
//    fused node now reads the other branch.
// 2. A MatMul by a constant matrix followed by the Add of a constant vector becomes
//    com.quantkit::FusedMatMul (FuseMatMulBias); the erf GELU's five ops one GeluErfChain.
// 3. A decomposed hard-swish, y = x * Clip(x + a, lo, hi) / d (or * m), as exported by
//    PaddlePaddle and TensorFlow (Add, Clip, Mul, Div: four passes over the tensor), becomes one
//    com.quantkit::HardSwishChain that runs the same four float operations per element in one pass.
// 4. A float Conv whose output feeds only a Relu or a Clip with constant bounds becomes one
//    com.quantkit::FusedConv with attributes activation_min / activation_max (Relu: 0 and +inf):
//    the convolution clamps each block of its output while it is in cache, with the Clip kernel's
//    expression (Relu is Clip(0, +inf) bit for bit, NaN and -0 included).
// 5. A float Conv / FusedConv whose output feeds only a 2x2, stride-2 MaxPool without padding
//    becomes a FusedConv with max_pool_2x2 = 1 (FuseConvMaxPool).
// First of all (FusePadIntoConv): a zero, constant-mode Pad of the spatial dims whose output only
// float 2-D Convs read (TensorFlow exports pad explicitly before stride-2 convs) is dropped and
// its pads added to each Conv's: the same taps read zeros (the values of the separate ops; a
// kernel that skips padding taps can turn a -0 sum into +0, nothing else), one pass over the
// tensor less, and the convs link up for the blocked layout (passes::BlockConvChannels).
#include <algorithm>
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

// The only consumer of value v (not a graph output), or -1.
int SoleConsumer(const Graph& g, const DefUse& du, const std::string& v) {
  const auto& c = du.Consumers(v);
  return c.size() == 1 && !g.IsGraphOutput(v) ? c[0] : -1;
}

// x -> Add(x, a) -> Clip(lo, hi) -> Mul(x, .) -> Div(., d) | Mul(., m), each intermediate used once:
// one HardSwishChain node in place of the Add (the others removed).
bool FuseHardSwishChains(Graph& g, const Model& model, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& add = g.nodes[i];
    if (removed[i] || !add.IsDefaultDomain() || add.op_type != "Add" || add.inputs.size() != 2 ||
        add.outputs.size() != 1) {
      continue;
    }
    const int const_at = ScalarF32(g, add.inputs[1]) ? 1 : ScalarF32(g, add.inputs[0]) ? 0 : -1;
    if (const_at < 0) continue;
    const std::string x = add.inputs[1 - const_at];
    const Tensor* a = ScalarF32(g, add.inputs[const_at]);
    const int ci = SoleConsumer(g, du, add.outputs[0]);
    if (ci < 0 || removed[ci]) continue;
    const Node& clip = g.nodes[ci];
    float lo = 0, hi = 0;
    if (clip.op_type != "Clip" || clip.inputs[0] != add.outputs[0] || !ClampOf(g, model, clip, &lo, &hi)) continue;
    const int mi = SoleConsumer(g, du, clip.outputs[0]);
    if (mi < 0 || removed[mi]) continue;
    const Node& mul = g.nodes[mi];
    if (!mul.IsDefaultDomain() || mul.op_type != "Mul" || mul.inputs.size() != 2 || mul.outputs.size() != 1) continue;
    if (!((mul.inputs[0] == x && mul.inputs[1] == clip.outputs[0]) ||
          (mul.inputs[1] == x && mul.inputs[0] == clip.outputs[0]))) {
      continue;
    }
    const int si = SoleConsumer(g, du, mul.outputs[0]);
    if (si < 0 || removed[si]) continue;
    const Node& scale = g.nodes[si];
    if (!scale.IsDefaultDomain() || (scale.op_type != "Div" && scale.op_type != "Mul") || scale.inputs.size() != 2 ||
        scale.outputs.size() != 1 || scale.inputs[0] != mul.outputs[0]) {
      continue;
    }
    const Tensor* d = ScalarF32(g, scale.inputs[1]);
    if (!d) continue;
    // Scalars of shape [1] broadcast a rank-0 x to [1]: the kernel keeps that rank.
    const auto const_rank = static_cast<int64_t>(std::max(a->rank(), d->rank()));
    Node fused;
    fused.name = add.name.empty() ? scale.name : add.name;
    fused.domain = rt::kQuantkitDomain;
    fused.op_type = "HardSwishChain";
    fused.inputs = {x};
    fused.outputs = {scale.outputs[0]};
    fused.SetAttrFloat("add", a->data<float>()[0]);
    fused.SetAttrFloat("clip_min", lo);
    fused.SetAttrFloat("clip_max", hi);
    fused.SetAttrFloat("scale", d->data<float>()[0]);
    fused.SetAttrInt("divide", scale.op_type == "Div" ? 1 : 0);
    fused.SetAttrInt("min_rank", const_rank);
    add = std::move(fused);
    removed[ci] = removed[mi] = removed[si] = true;
    any = true;
  }
  return any;
}

// A MaxPool that FusedConv can apply itself (its max_pool_2x2 attribute): a 2x2 window, stride
// 2, no padding or dilation, floor rounding, no Indices output: each output row reads two whole
// input rows, as kernels::MaxPool2x2RowFloat does in the MaxPool kernel.
bool IsPlain2x2MaxPool(const Node& n) {
  if (!n.IsDefaultDomain() || n.op_type != "MaxPool" || n.inputs.size() != 1 || n.outputs.empty()) return false;
  if (n.outputs.size() > 1 && !n.outputs[1].empty()) return false;
  const std::string auto_pad = n.AttrString("auto_pad", "NOTSET");
  const auto all = [](const std::vector<int64_t>& v, int64_t x) {
    return std::all_of(v.begin(), v.end(), [x](int64_t e) { return e == x; });
  };
  const std::vector<int64_t> pads = n.AttrInts("pads"), dilations = n.AttrInts("dilations");
  return (auto_pad == "NOTSET" || auto_pad == "VALID") && n.AttrInts("kernel_shape") == std::vector<int64_t>{2, 2} &&
         n.AttrInts("strides") == std::vector<int64_t>{2, 2} && all(pads, 0) && all(dilations, 1) &&
         n.AttrInt("ceil_mode", 0) == 0;
}

// A float32 Conv (or FusedConv) of 2-D images whose output feeds only such a MaxPool: the conv
// pools each image's output while it is in cache (FusedConv max_pool_2x2 = 1) instead of writing
// the whole tensor and reading it back. The pool takes the same elements, so the same bits.
bool FuseConvMaxPool(Graph& g, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& conv = g.nodes[i];
    const bool fused = conv.domain == rt::kQuantkitDomain && conv.op_type == "FusedConv";
    if (!(fused || (conv.IsDefaultDomain() && conv.op_type == "Conv")) || conv.outputs.size() != 1) continue;
    const Tensor* w = g.FindInitializer(conv.Input(1));
    if (!w || w->dtype() != DType::kFloat32 || w->rank() != 4 || conv.AttrInt("max_pool_2x2", 0) != 0 ||
        conv.HasInput(3)) {
      continue;
    }
    const int pi = SoleConsumer(g, du, conv.outputs[0]);
    if (pi < 0 || removed[pi] || !IsPlain2x2MaxPool(g.nodes[pi])) continue;
    conv.domain = rt::kQuantkitDomain;
    conv.op_type = "FusedConv";
    conv.SetAttrInt("max_pool_2x2", 1);
    conv.outputs[0] = g.nodes[pi].outputs[0];
    removed[pi] = true;
    any = true;
  }
  return any;
}

// A float32 Conv whose output feeds only an Add of another float value (a residual branch), that
// Add's output optionally feeding only a Relu / constant Clip: one FusedConv with the other addend
// as input 3, y = clamp(conv(x) + r), the Add's one rounding and the Clip's expression (the same
// bits as the separate ops). The sum is taken while the conv's output is in cache, and the Add's
// and Relu's passes over the tensor are gone. The fused node reads r, so it may have to move
// after r's producer: the caller sorts the graph again.
bool FuseConvResidualAdd(Graph& g, const Model& model, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& conv = g.nodes[i];
    if (removed[i] || !conv.IsDefaultDomain() || conv.op_type != "Conv" || conv.outputs.size() != 1 ||
        conv.inputs.size() > 3) {
      continue;
    }
    const Tensor* w = g.FindInitializer(conv.Input(1));
    if (!w || w->dtype() != DType::kFloat32) continue;
    const int ai = SoleConsumer(g, du, conv.outputs[0]);
    if (ai < 0 || removed[ai]) continue;
    const Node& add = g.nodes[ai];
    if (!add.IsDefaultDomain() || add.op_type != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1 ||
        add.inputs[0] == add.inputs[1]) {
      continue;
    }
    const std::string& r = add.inputs[0] == conv.outputs[0] ? add.inputs[1] : add.inputs[0];
    // A constant addend is a bias (better folded), not a residual; r's producer must not depend
    // on the conv's output (it cannot: the Add is the conv's only reader).
    if (r.empty() || g.IsInitializer(r)) continue;
    conv.domain = rt::kQuantkitDomain;
    conv.op_type = "FusedConv";
    conv.inputs.resize(3);
    conv.inputs.push_back(r);
    conv.outputs[0] = add.outputs[0];
    removed[ai] = true;
    const int ci = SoleConsumer(g, du, add.outputs[0]);
    float lo = 0, hi = 0;
    if (ci >= 0 && !removed[ci] && g.nodes[ci].inputs[0] == add.outputs[0] && ClampOf(g, model, g.nodes[ci], &lo, &hi)) {
      conv.SetAttrFloat("activation_min", lo);
      conv.SetAttrFloat("activation_max", hi);
      conv.outputs[0] = g.nodes[ci].outputs[0];
      removed[ci] = true;
    }
    any = true;
  }
  return any;
}

// The erf form of GELU as PyTorch exports it, y = x * (erf(x / c) + 1) * 0.5: Div (or Mul) by a
// constant, Erf, Add of a constant, Mul by x, Mul (or Div) by a constant, each intermediate used
// once: one com.quantkit::GeluErfChain running the same five float operations per element in one
// pass (the Erf op's own vector erf: the same bits).
bool FuseGeluErfChains(Graph& g, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  auto is = [](const Node& n, std::initializer_list<const char*> ops) {
    if (!n.IsDefaultDomain() || n.outputs.size() != 1) return false;
    for (const char* op : ops)
      if (n.op_type == op) return true;
    return false;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& pre = g.nodes[i];
    if (removed[i] || !is(pre, {"Div", "Mul"}) || pre.inputs.size() != 2) continue;
    const Tensor* c1 = ScalarF32(g, pre.inputs[1]);
    if (!c1) continue;
    const std::string x = pre.inputs[0];
    const int ei = SoleConsumer(g, du, pre.outputs[0]);
    if (ei < 0 || removed[ei] || !is(g.nodes[ei], {"Erf"})) continue;
    const int ai = SoleConsumer(g, du, g.nodes[ei].outputs[0]);
    if (ai < 0 || removed[ai] || !is(g.nodes[ai], {"Add"}) || g.nodes[ai].inputs.size() != 2) continue;
    const Node& add = g.nodes[ai];
    const std::string& e = g.nodes[ei].outputs[0];
    const Tensor* c2 = add.inputs[0] == e ? ScalarF32(g, add.inputs[1]) : ScalarF32(g, add.inputs[0]);
    if (!c2 || (add.inputs[0] != e && add.inputs[1] != e)) continue;
    const int mi = SoleConsumer(g, du, add.outputs[0]);
    if (mi < 0 || removed[mi] || !is(g.nodes[mi], {"Mul"}) || g.nodes[mi].inputs.size() != 2) continue;
    const Node& mul = g.nodes[mi];
    if (!((mul.inputs[0] == x && mul.inputs[1] == add.outputs[0]) ||
          (mul.inputs[1] == x && mul.inputs[0] == add.outputs[0]))) {
      continue;
    }
    const int si = SoleConsumer(g, du, mul.outputs[0]);
    if (si < 0 || removed[si] || !is(g.nodes[si], {"Mul", "Div"}) || g.nodes[si].inputs.size() != 2 ||
        g.nodes[si].inputs[0] != mul.outputs[0]) {
      continue;
    }
    const Tensor* c3 = ScalarF32(g, g.nodes[si].inputs[1]);
    if (!c3) continue;
    const auto const_rank = static_cast<int64_t>(std::max({c1->rank(), c2->rank(), c3->rank()}));
    Node fused;
    fused.name = pre.name.empty() ? g.nodes[si].name : pre.name;
    fused.domain = rt::kQuantkitDomain;
    fused.op_type = "GeluErfChain";
    fused.inputs = {x};
    fused.outputs = {g.nodes[si].outputs[0]};
    fused.SetAttrFloat("pre", c1->data<float>()[0]);
    fused.SetAttrInt("pre_divide", pre.op_type == "Div" ? 1 : 0);
    fused.SetAttrFloat("add", c2->data<float>()[0]);
    fused.SetAttrFloat("post", c3->data<float>()[0]);
    fused.SetAttrInt("post_divide", g.nodes[si].op_type == "Div" ? 1 : 0);
    fused.SetAttrInt("min_rank", const_rank);
    removed[ei] = removed[ai] = removed[mi] = removed[si] = true;
    pre = std::move(fused);
    any = true;
  }
  return any;
}

// A MatMul by a constant float32 [K, N] matrix whose output feeds only an Add of a constant
// float32 [N] vector (a Linear layer as exporters write it): one com.quantkit::FusedMatMul
// (A, B, bias) that adds the bias to each output row while it is in cache (the Add's one
// rounding per element: the same bits), instead of a second pass and another tensor.
bool FuseMatMulBias(Graph& g, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& mm = g.nodes[i];
    if (removed[i] || !mm.IsDefaultDomain() || mm.op_type != "MatMul" || mm.inputs.size() != 2 ||
        mm.outputs.size() != 1) {
      continue;
    }
    const Tensor* b = g.FindInitializer(mm.Input(1));
    if (!b || b->dtype() != DType::kFloat32 || b->rank() != 2 || g.IsGraphInput(mm.Input(1))) continue;
    const int ai = SoleConsumer(g, du, mm.outputs[0]);
    if (ai < 0 || removed[ai]) continue;
    const Node& add = g.nodes[ai];
    if (!add.IsDefaultDomain() || add.op_type != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1) continue;
    const std::string& other = add.inputs[0] == mm.outputs[0] ? add.inputs[1] : add.inputs[0];
    const Tensor* bias = g.IsGraphInput(other) ? nullptr : g.FindInitializer(other);
    if (!bias || bias->dtype() != DType::kFloat32 || bias->rank() != 1 || bias->dim(0) != b->dim(1)) continue;
    mm.domain = rt::kQuantkitDomain;
    mm.op_type = "FusedMatMul";
    mm.inputs.push_back(other);
    mm.outputs[0] = add.outputs[0];
    removed[ai] = true;
    any = true;
  }
  return any;
}

// The spatial pads [h_begin, w_begin, h_end, w_end] of a zero, constant-mode Pad of a 4-D tensor
// that pads neither N nor C, or false.
bool ZeroSpatialPads(const Graph& g, const Model& model, const Node& pad, std::vector<int64_t>* spatial) {
  if (!pad.IsDefaultDomain() || pad.op_type != "Pad" || pad.outputs.size() != 1 || pad.inputs.empty()) return false;
  if (pad.AttrString("mode", "constant") != "constant") return false;
  std::vector<int64_t> pads;
  if (model.OpsetVersion("") < 11) {
    if (pad.AttrFloat("value", 0.f) != 0.f) return false;
    pads = pad.AttrInts("pads");
  } else {
    if (pad.inputs.size() > 3 || pad.Input(1).empty() || g.IsGraphInput(pad.Input(1))) return false;
    const Tensor* p = g.FindInitializer(pad.Input(1));
    if (!p || p->dtype() != DType::kInt64) return false;
    pads.assign(p->data<int64_t>(), p->data<int64_t>() + p->numel());
    if (!pad.Input(2).empty()) {
      const Tensor* v = ScalarF32(g, pad.Input(2));
      if (!v || v->data<float>()[0] != 0.f) return false;
    }
  }
  if (pads.size() != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0) return false;
  for (int64_t p : pads)
    if (p < 0) return false;
  *spatial = {pads[2], pads[3], pads[6], pads[7]};
  return true;
}

// Pads whose readers are all such Convs go into the Convs' pads (see the file comment).
bool FusePadIntoConv(Graph& g, const Model& model, std::vector<bool>& removed) {
  bool any = false;
  DefUse du(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& pad = g.nodes[i];
    std::vector<int64_t> spatial;
    if (removed[i] || !ZeroSpatialPads(g, model, pad, &spatial) || g.IsGraphOutput(pad.outputs[0])) continue;
    const auto& readers = du.Consumers(pad.outputs[0]);
    bool all_convs = !readers.empty();
    for (int r : readers) {
      const Node& c = g.nodes[r];
      const Tensor* w = c.HasInput(1) ? g.FindInitializer(c.inputs[1]) : nullptr;
      all_convs = all_convs && !removed[r] && c.IsDefaultDomain() && c.op_type == "Conv" && c.Input(0) == pad.outputs[0] &&
                  c.Input(1) != pad.outputs[0] && c.Input(2) != pad.outputs[0] && w && w->dtype() == DType::kFloat32 &&
                  w->rank() == 4 && c.AttrString("auto_pad", "NOTSET") == "NOTSET" &&
                  (c.AttrInts("pads").empty() || c.AttrInts("pads").size() == 4);
    }
    if (!all_convs) continue;
    for (int r : readers) {
      Node& c = g.nodes[r];
      std::vector<int64_t> pads = c.AttrInts("pads");
      if (pads.empty()) pads.assign(4, 0);
      for (int d = 0; d < 4; ++d) pads[d] += spatial[d];
      c.SetAttrInts("pads", pads);
      c.inputs[0] = pad.inputs[0];
    }
    removed[i] = true;
    any = true;
  }
  return any;
}

// Drops the removed nodes.
void Compact(Graph& g, std::vector<bool>& removed) {
  std::vector<Node> nodes;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(nodes);
  removed.assign(g.nodes.size(), false);
}

Status Run(Graph& g, const Model& model) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(Run(*a.g, model));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(Run(*sg, model));
    }
  std::vector<bool> removed(g.nodes.size(), false);
  if (FusePadIntoConv(g, model, removed)) Compact(g, removed);
  if (FuseConvResidualAdd(g, model, removed)) {
    Compact(g, removed);
    QK_RETURN_IF_ERROR(TopologicalSort(g));  // the fused nodes now read r
  }
  if (FuseMatMulBias(g, removed)) Compact(g, removed);
  if (FuseGeluErfChains(g, removed)) Compact(g, removed);
  bool any = FuseHardSwishChains(g, model, removed);
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
  if (any) Compact(g, removed);
  if (FuseConvMaxPool(g, removed)) Compact(g, removed);
  return Status::Ok();
}

}  // namespace

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


Status FuseConvActivation(Model& model) {
  QK_RETURN_IF_ERROR(Run(model.graph, model));
  if (model.OpsetVersion(rt::kQuantkitDomain) == 0) {
    bool used = false;
    for (const auto& n : model.graph.nodes) used |= n.domain == rt::kQuantkitDomain;
    if (used) model.SetOpsetVersion(rt::kQuantkitDomain, 1);
  }
  return Status::Ok();
}

}  // namespace quantkit::passes
