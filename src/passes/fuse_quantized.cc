// Pass: lowers the standard ONNX forms of dynamically quantized MatMul/Gemm to the runtime's fused
// com.quantkit::MatMulIntegerToFloat (runtime/ops/fused_quant_ops.cc), so they run as one int8
// GEMM with the rescale and bias in its epilogue:
//
//  integer-ops form (what quantkit and ONNX Runtime's quantize_dynamic write):
//    MatMulInteger(A_q, B_q, a_zp, b_zp) -> Cast(float) -> Mul(., S) [-> Add(., bias)]
//    with S = Mul(a_scale, b_scale), B_q/b_zp/b_scale/bias constants.
//    Exact: the fused op computes the same int32 accumulators and the same float32 operations in
//    the same order (Cast, a_scale * b_scale, product, + bias), so results are bit-identical.
//
//  qdq-weights form: DequantizeLinear(B_q, b_scale, b_zp) -> MatMul(A, .) / Gemm(A, .; C)
//    A stays float in the file; the fused op quantizes it on the fly (uint8 per tensor, exactly
//    DynamicQuantizeLinear) and runs the integer GEMM: the dynamic-quantization execution of the
//    file, not a dequantize-weights-then-float-GEMM.
//
//  LSTM/GRU/RNN whose W and R are int8 behind DequantizeLinear: com.quantkit::LSTM/GRU/RNN with
//    int8 gate GEMMs (runtime/ops/rnn.cc).
//
// Applies only to constants of the same graph (recurses into subgraphs) and when the intermediate
// values feed nothing else. The dequantize nodes left without consumers are removed right away, so
// constant folding never materialises float copies of the weights.
#include <fmt/format.h>

#include "passes/passes.h"
#include "runtime/kernel.h"

namespace quantkit::passes {

namespace {

const Tensor* Constant(const Graph& g, const std::string& name) {
  if (name.empty() || g.IsGraphInput(name)) return nullptr;
  return g.FindInitializer(name);
}

bool Is8Bit(DType t) { return t == DType::kInt8 || t == DType::kUInt8; }

// A per-tensor (one element) or per-column (1-D, N elements) float32 constant.
bool IsColumnParam(const Tensor* t, int64_t N, DType dtype) {
  return t && t->dtype() == dtype && (t->numel() == 1 || (t->rank() == 1 && t->dim(0) == N));
}

// The single consumer of `value` (not a graph output), or -1.
int SoleConsumer(const Graph& g, const DefUse& du, const std::string& value) {
  if (g.IsGraphOutput(value)) return -1;
  const auto& c = du.Consumers(value);
  return c.size() == 1 ? c[0] : -1;
}

// The input of a binary node other than `value` (or "" if `value` is not exactly one input).
std::string OtherInput(const Node& n, const std::string& value) {
  if (n.inputs.size() != 2) return "";
  if (n.inputs[0] == value && n.inputs[1] != value) return n.inputs[1];
  if (n.inputs[1] == value && n.inputs[0] != value) return n.inputs[0];
  return "";
}

bool IsOp(const Node& n, const char* op) { return n.IsDefaultDomain() && n.op_type == op; }

Node FusedNode(const Graph& g, const std::string& base_name) {
  Node f;
  f.op_type = "MatMulIntegerToFloat";
  f.domain = rt::kQuantkitDomain;
  f.name = g.UniqueName((base_name.empty() ? std::string("matmul") : base_name) + "_fused_int8");
  return f;
}

// Follows y through an optional Add with a constant [N] float bias. Returns the bias name ("" if
// none) and updates *out / marks the Add removed.
std::string AbsorbBias(const Graph& g, const DefUse& du, int64_t N, std::string* out, std::vector<bool>& removed) {
  const int add = SoleConsumer(g, du, *out);
  if (add < 0 || removed[add] || !IsOp(g.nodes[add], "Add") || g.nodes[add].outputs.size() != 1) return "";
  const std::string bias = OtherInput(g.nodes[add], *out);
  const Tensor* b = Constant(g, bias);
  if (!b || b->dtype() != DType::kFloat32 || b->rank() != 1 || b->dim(0) != N) return "";
  removed[add] = true;
  *out = g.nodes[add].outputs[0];
  return bias;
}

// MatMulInteger -> Cast -> Mul(S) [-> Add]. Returns the fused node or nothing.
bool FuseIntegerOps(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused) {
  const Node& mm = g.nodes[i];
  if (!IsOp(mm, "MatMulInteger") || mm.outputs.size() != 1) return false;
  const Tensor* b = Constant(g, mm.Input(1));
  if (!b || b->rank() != 2 || !Is8Bit(b->dtype())) return false;
  const int64_t N = b->dim(1);
  if (mm.HasInput(3) && !IsColumnParam(Constant(g, mm.Input(3)), N, b->dtype())) return false;
  if (mm.HasInput(2)) {  // a_zero_point: per tensor only (DynamicQuantizeLinear's, or a scalar constant)
    const int p = du.Producer(mm.Input(2));
    const Tensor* c = Constant(g, mm.Input(2));
    if (!(c && c->numel() == 1) && !(p >= 0 && IsOp(g.nodes[p], "DynamicQuantizeLinear"))) return false;
  }
  const int cast = SoleConsumer(g, du, mm.outputs[0]);
  if (cast < 0 || !IsOp(g.nodes[cast], "Cast") || g.nodes[cast].AttrInt("to", 0) != static_cast<int64_t>(DType::kFloat32))
    return false;
  const std::string cast_out = g.nodes[cast].outputs[0];
  const int mul = SoleConsumer(g, du, cast_out);
  if (mul < 0 || !IsOp(g.nodes[mul], "Mul") || g.nodes[mul].outputs.size() != 1) return false;
  const std::string s = OtherInput(g.nodes[mul], cast_out);
  const int smul = du.Producer(s);
  if (smul < 0 || !IsOp(g.nodes[smul], "Mul")) return false;
  std::string a_scale, b_scale;
  for (int k = 0; k < 2; ++k) {
    const std::string& x = g.nodes[smul].inputs[k];
    if (IsColumnParam(Constant(g, x), N, DType::kFloat32) && b_scale.empty()) {
      b_scale = x;
    } else {
      a_scale = x;
    }
  }
  if (a_scale.empty() || b_scale.empty() || Constant(g, a_scale)) return false;
  std::string out = g.nodes[mul].outputs[0];
  removed[cast] = removed[mul] = true;
  const std::string bias = AbsorbBias(g, du, N, &out, removed);
  Node f = FusedNode(g, mm.name);
  f.inputs = {mm.Input(0), a_scale, mm.Input(2), mm.Input(1), b_scale, mm.Input(3), bias};
  f.outputs = {out};
  removed[i] = true;
  fused.push_back(std::move(f));
  return true;
}

// DequantizeLinear(B_q) -> MatMul / Gemm.
bool FuseQdqWeights(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused) {
  const Node& mm = g.nodes[i];
  const bool is_gemm = IsOp(mm, "Gemm");
  if (!(IsOp(mm, "MatMul") || is_gemm) || mm.outputs.size() != 1) return false;
  const int a_producer = du.Producer(mm.Input(0));
  if (a_producer >= 0 && IsOp(g.nodes[a_producer], "DequantizeLinear")) return false;  // static QDQ: not ours
  const int dq = du.Producer(mm.Input(1));
  if (dq < 0 || !IsOp(g.nodes[dq], "DequantizeLinear")) return false;
  const Node& d = g.nodes[dq];
  const Tensor* b = Constant(g, d.Input(0));
  if (!b || b->rank() != 2 || !Is8Bit(b->dtype())) return false;
  const bool trans_b = is_gemm && mm.AttrInt("transB", 0) != 0;
  const int64_t N = b->dim(trans_b ? 0 : 1);
  const Tensor* scale = Constant(g, d.Input(1));
  if (!IsColumnParam(scale, N, DType::kFloat32)) return false;
  if (d.HasInput(2) && !IsColumnParam(Constant(g, d.Input(2)), N, b->dtype())) return false;
  if (scale->numel() > 1) {  // per-axis: the axis must be the output-column axis
    const int64_t axis = d.AttrInt("axis", 1);
    if (axis != (trans_b ? 0 : 1) && axis != (trans_b ? -2 : -1)) return false;
  }
  std::string bias;
  if (is_gemm) {
    if (mm.AttrInt("transA", 0) != 0 || mm.AttrFloat("alpha", 1.0f) != 1.0f) return false;
    if (mm.HasInput(2)) {
      const Tensor* c = Constant(g, mm.Input(2));
      if (!c || c->dtype() != DType::kFloat32 || c->numel() != N || c->dim(c->rank() - 1) != N) return false;
      // Gemm adds beta * C: precompute it (the same float32 product Gemm forms per element).
      const float beta = mm.AttrFloat("beta", 1.0f);
      std::vector<float> v = c->ToFloatVector();
      for (float& x : v) x = beta * x;
      bias = g.UniqueName(mm.Input(2) + "_bias");
      g.AddInitializer(bias, Tensor::FromVector<float>(v, {N}));
    }
  }
  Node f = FusedNode(g, mm.name);
  f.inputs = {mm.Input(0), "", "", d.Input(0), d.Input(1), d.Input(2), bias};
  f.outputs = {mm.outputs[0]};
  if (trans_b) f.SetAttrInt("trans_b", 1);
  removed[i] = true;
  fused.push_back(std::move(f));
  return true;
}

// LSTM/GRU/RNN with W and R behind DequantizeLinear -> com.quantkit::LSTM/GRU/RNN taking the
// int8 tensors directly (inputs 1, 2) and their scales/zero points as inputs 8..11. Edits in place.
bool FuseQuantizedRnn(Graph& g, const DefUse& du, size_t i) {
  Node& rnn = g.nodes[i];
  if (!(IsOp(rnn, "LSTM") || IsOp(rnn, "GRU") || IsOp(rnn, "RNN"))) return false;
  std::string q[2], scale[2], zp[2];
  for (int k = 0; k < 2; ++k) {
    const int dq = du.Producer(rnn.Input(1 + k));
    if (dq < 0 || !IsOp(g.nodes[dq], "DequantizeLinear")) return false;
    const Node& d = g.nodes[dq];
    const Tensor* w = Constant(g, d.Input(0));
    if (!w || w->rank() != 3 || !Is8Bit(w->dtype())) return false;
    const Tensor* s = Constant(g, d.Input(1));
    if (!IsColumnParam(s, w->dim(1), DType::kFloat32)) return false;
    if (s->numel() > 1 && d.AttrInt("axis", 1) != 1 && d.AttrInt("axis", 1) != -2) return false;
    if (d.HasInput(2)) {
      const Tensor* z = Constant(g, d.Input(2));
      if (!z || z->dtype() != w->dtype() || z->numel() != s->numel()) return false;
    }
    q[k] = d.Input(0);
    scale[k] = d.Input(1);
    zp[k] = d.Input(2);
  }
  if (Constant(g, q[0])->dtype() != Constant(g, q[1])->dtype()) return false;
  rnn.domain = rt::kQuantkitDomain;
  rnn.inputs.resize(8);
  rnn.inputs[1] = q[0];
  rnn.inputs[2] = q[1];
  rnn.inputs.insert(rnn.inputs.end(), {scale[0], zp[0], scale[1], zp[1]});
  return true;
}

Status FuseGraph(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(FuseGraph(*a.g));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(FuseGraph(*sg));
    }
  const DefUse du(g);
  std::vector<bool> removed(g.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;  // position of the anchor -> fused node
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (removed[i]) continue;
    if (FuseQuantizedRnn(g, du, i)) continue;
    std::vector<Node> fused;
    if (FuseIntegerOps(g, du, i, removed, fused) || FuseQdqWeights(g, du, i, removed, fused)) {
      replacements.emplace_back(i, std::move(fused.back()));
    }
  }
  if (replacements.empty()) return Status::Ok();
  std::vector<Node> nodes;
  nodes.reserve(g.nodes.size());
  size_t r = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    // The fused node takes the place of its last removed node so its inputs are defined before it
    // and its consumers after it; a topological sort follows anyway.
    if (!removed[i]) nodes.push_back(std::move(g.nodes[i]));
    while (r < replacements.size() && replacements[r].first == i) nodes.push_back(std::move(replacements[r++].second));
  }
  g.nodes = std::move(nodes);
  return TopologicalSort(g);
}

}  // namespace

Status FuseQuantizedOps(Model& model) {
  QK_RETURN_IF_ERROR(FuseGraph(model.graph));
  if (model.OpsetVersion(rt::kQuantkitDomain) == 0) model.SetOpsetVersion(rt::kQuantkitDomain, 1);
  return EliminateDeadNodes(model);  // the dequantized float weights are never materialised
}

}  // namespace quantkit::passes
