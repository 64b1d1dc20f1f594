// Pass: lowers the standard ONNX forms of dynamically quantized MatMul/Gemm to the runtime's fused
// com.quantkit::MatMulIntegerToFloat (runtime/ops/fused_quant_ops.cc), so they run as one int8
// GEMM with the rescale and bias in its epilogue (ConvInteger likewise to ConvIntegerToFloat,
// runtime/ops/quant_ops.cc):
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

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/thread_pool.h"
#include "passes/passes.h"
#include "runtime/kernel.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/plan.h"

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

constexpr const char* kMicrosoftDomain = "com.microsoft";  // ONNX Runtime's contrib ops

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

// The rescale after an integer op (MatMulInteger, ConvInteger) `op` whose activation zero point
// (input 2) is per tensor (DynamicQuantizeLinear's, or a scalar constant): op -> Cast(float) ->
// Mul(., S) with S = Mul(., .) (the caller sorts S's inputs into activation and weight scales).
struct IntegerRescale {
  int cast = -1, mul = -1, scale_product = -1;
};
bool MatchIntegerRescale(const Graph& g, const DefUse& du, const Node& op, IntegerRescale* r) {
  if (op.HasInput(2)) {
    const int p = du.Producer(op.Input(2));
    const Tensor* c = Constant(g, op.Input(2));
    if (!(c && c->numel() == 1) && !(p >= 0 && IsOp(g.nodes[p], "DynamicQuantizeLinear"))) return false;
  }
  r->cast = SoleConsumer(g, du, op.outputs[0]);
  if (r->cast < 0 || !IsOp(g.nodes[r->cast], "Cast") ||
      g.nodes[r->cast].AttrInt("to", 0) != static_cast<int64_t>(DType::kFloat32))
    return false;
  const std::string& cast_out = g.nodes[r->cast].outputs[0];
  r->mul = SoleConsumer(g, du, cast_out);
  if (r->mul < 0 || !IsOp(g.nodes[r->mul], "Mul") || g.nodes[r->mul].outputs.size() != 1) return false;
  r->scale_product = du.Producer(OtherInput(g.nodes[r->mul], cast_out));
  return r->scale_product >= 0 && IsOp(g.nodes[r->scale_product], "Mul") &&
         g.nodes[r->scale_product].inputs.size() == 2;
}

// MatMulInteger -> Cast -> Mul(S) [-> Add]. Returns the fused node or nothing.
bool FuseIntegerOps(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused) {
  const Node& mm = g.nodes[i];
  if (!IsOp(mm, "MatMulInteger") || mm.outputs.size() != 1) return false;
  const Tensor* b = Constant(g, mm.Input(1));
  if (!b || b->rank() != 2 || !Is8Bit(b->dtype())) return false;
  const int64_t N = b->dim(1);
  if (mm.HasInput(3) && !IsColumnParam(Constant(g, mm.Input(3)), N, b->dtype())) return false;
  IntegerRescale r;
  if (!MatchIntegerRescale(g, du, mm, &r)) return false;
  std::string a_scale, b_scale;
  for (int k = 0; k < 2; ++k) {
    const std::string& x = g.nodes[r.scale_product].inputs[k];
    if (IsColumnParam(Constant(g, x), N, DType::kFloat32) && b_scale.empty()) {
      b_scale = x;
    } else {
      a_scale = x;
    }
  }
  if (a_scale.empty() || b_scale.empty() || Constant(g, a_scale)) return false;
  std::string out = g.nodes[r.mul].outputs[0];
  removed[r.cast] = removed[r.mul] = true;
  const std::string bias = AbsorbBias(g, du, N, &out, removed);
  Node f = FusedNode(g, mm.name);
  f.inputs = {mm.Input(0), a_scale, mm.Input(2), mm.Input(1), b_scale, mm.Input(3), bias};
  f.outputs = {out};
  removed[i] = true;
  fused.push_back(std::move(f));
  return true;
}

// A constant float32 of one element, or of M elements along axis 1 of a rank-`rank` tensor
// (broadcast from the right: [1, M, 1, 1], [M, 1, 1]), as a per-output-channel conv parameter.
bool IsChannelParam(const Tensor* t, int64_t M, size_t rank) {
  if (!t || t->dtype() != DType::kFloat32) return false;
  if (t->numel() == 1) return true;
  if (t->numel() != M || t->rank() > rank || t->rank() + 1 < rank) return false;
  const size_t channel = 1 - (rank - t->rank());  // axis 1 of the output, in t's dims
  for (size_t k = 0; k < t->rank(); ++k)
    if (t->dim(k) != (k == channel ? M : 1)) return false;
  return true;
}

// `name` as a 1-D [numel] initializer (the fused kernels index per-channel values directly).
std::string Flattened(Graph& g, const std::string& name) {
  const Tensor* t = Constant(g, name);
  if (t->rank() == 1) return name;
  const std::string flat = g.UniqueName(name + "_flat");
  g.AddInitializer(flat, Tensor::FromVector<float>(t->ToFloatVector(), {t->numel()}));
  return flat;
}

// The dynamic Conv form: ConvInteger(x_q, W_q, x_zp, w_zp) -> Cast(float) -> Mul(., S) [-> Add(.,
// bias)] with S = Mul(a_scale, w_scale), W_q / w_zp / w_scale / bias constants (w_scale and bias
// per tensor or per output channel on axis 1) [-> Relu | constant Clip] ==>
// com.quantkit::ConvIntegerToFloat: the int8 GEMM path of the conv with the rescale, bias and
// clamp (attributes clamp_lo / clamp_hi, the Clip kernel's expression) in its epilogue. The same int32 sums and the same
// float32 operations in the same order (Cast, a_scale * w_scale, product, + bias): bit-identical.
bool FuseConvIntegerOps(Graph& g, const Model& model, const DefUse& du, size_t i, std::vector<bool>& removed,
                        std::vector<Node>& fused) {
  const Node& conv = g.nodes[i];
  if (!IsOp(conv, "ConvInteger") || conv.outputs.size() != 1) return false;
  const Tensor* w = Constant(g, conv.Input(1));
  if (!w || w->rank() < 3 || !Is8Bit(w->dtype())) return false;
  const int64_t M = w->dim(0);
  const size_t rank = w->rank();
  if (conv.HasInput(3)) {
    const Tensor* wz = Constant(g, conv.Input(3));
    if (!wz || wz->dtype() != w->dtype() || !(wz->numel() == 1 || (wz->rank() == 1 && wz->dim(0) == M))) return false;
  }
  IntegerRescale r;
  if (!MatchIntegerRescale(g, du, conv, &r)) return false;
  std::string a_scale, w_scale;
  for (const std::string& x : g.nodes[r.scale_product].inputs) {
    if (w_scale.empty() && IsChannelParam(Constant(g, x), M, rank)) {
      w_scale = x;
    } else {
      a_scale = x;
    }
  }
  if (a_scale.empty() || w_scale.empty() || Constant(g, a_scale)) return false;
  std::string out = g.nodes[r.mul].outputs[0], bias;
  const int add = SoleConsumer(g, du, out);
  if (add >= 0 && IsOp(g.nodes[add], "Add") && g.nodes[add].outputs.size() == 1) {
    const std::string b = OtherInput(g.nodes[add], out);
    if (!b.empty() && IsChannelParam(Constant(g, b), M, rank)) {
      bias = Flattened(g, b);
      removed[add] = true;
      out = g.nodes[add].outputs[0];
    }
  }
  // A Relu / constant Clip next: the clamp in the same epilogue.
  float lo = 0, hi = 0;
  const int act = SoleConsumer(g, du, out);
  const bool clamp = act >= 0 && ClampOf(g, model, g.nodes[act], &lo, &hi);
  if (clamp) {
    removed[act] = true;
    out = g.nodes[act].outputs[0];
  }
  removed[r.cast] = removed[r.mul] = removed[i] = true;
  Node f;
  f.op_type = "ConvIntegerToFloat";
  f.domain = rt::kQuantkitDomain;
  f.name = g.UniqueName((conv.name.empty() ? std::string("conv") : conv.name) + "_fused_int8");
  f.attributes = conv.attributes;
  f.inputs = {conv.Input(0), a_scale, conv.Input(2), conv.Input(1), Flattened(g, w_scale), conv.Input(3), bias};
  f.outputs = {out};
  if (clamp) {
    f.SetAttrFloat("clamp_lo", lo);
    f.SetAttrFloat("clamp_hi", hi);
  }
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

// The quantized side of a static QDQ unit: activation input DequantizeLinear (per tensor, constant
// parameters), weight DequantizeLinear (constant 8-bit, per tensor or per output channel on
// `w_axis`), optional int32 bias DequantizeLinear with scale x_scale * w_scale, and the output
// [Relu | Clip] -> QuantizeLinear.
struct StaticUnit {
  std::string x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias, y_scale, y_zp, y_q;
  int act = -1, q = -1;
  int64_t q_min = 0, q_max = 255;
};

// The quantized inputs of a static unit: input 0 behind a per-tensor DequantizeLinear with
// constant parameters, input 1 a constant 8-bit weight behind DequantizeLinear, per tensor or per
// output channel (dimension `out_channel_dim`, DequantizeLinear axis `w_axis`). Returns the number
// of output channels, or -1 if the inputs do not match. `need_w_zp`: the weight zero point must be
// given (QLinear ops take it as a required input).
int64_t MatchStaticInputs(const Graph& g, const DefUse& du, const Node& op, int64_t w_axis, int64_t out_channel_dim,
                          bool need_w_zp, StaticUnit* u) {
  const int dx = du.Producer(op.Input(0)), dw = du.Producer(op.Input(1));
  if (dx < 0 || dw < 0 || !IsOp(g.nodes[dx], "DequantizeLinear") || !IsOp(g.nodes[dw], "DequantizeLinear")) return -1;
  const Node& xdq = g.nodes[dx];
  const Node& wdq = g.nodes[dw];
  const Tensor* xs = Constant(g, xdq.Input(1));
  const Tensor* xz = Constant(g, xdq.Input(2));
  if (!xs || xs->numel() != 1 || xs->dtype() != DType::kFloat32 || !xz || xz->numel() != 1 || !Is8Bit(xz->dtype()))
    return -1;
  const Tensor* w = Constant(g, wdq.Input(0));
  const Tensor* ws = Constant(g, wdq.Input(1));
  const Tensor* wz = Constant(g, wdq.Input(2));
  if (!w || !Is8Bit(w->dtype()) || static_cast<int64_t>(w->rank()) <= out_channel_dim) return -1;
  if (need_w_zp && !wz) return -1;
  if (wdq.HasInput(2) && (!wz || wz->dtype() != w->dtype())) return -1;
  const int64_t M = w->dim(out_channel_dim);
  if (!IsColumnParam(ws, M, DType::kFloat32) || (wz && wz->numel() != ws->numel())) return -1;
  if (ws->numel() > 1 && wdq.AttrInt("axis", 1) != w_axis) return -1;
  u->x_q = xdq.Input(0), u->x_scale = xdq.Input(1), u->x_zp = xdq.Input(2);
  u->w_q = wdq.Input(0), u->w_scale = wdq.Input(1), u->w_zp = wdq.Input(2);
  return M;
}

bool MatchStaticUnit(const Graph& g, const DefUse& du, const Node& op, int64_t w_axis, int64_t out_channel_dim,
                     size_t bias_input, StaticUnit* u) {
  const int64_t M = MatchStaticInputs(g, du, op, w_axis, out_channel_dim, /*need_w_zp=*/true, u);
  if (M < 0) return false;
  const Tensor* xs = Constant(g, u->x_scale);
  const Tensor* ws = Constant(g, u->w_scale);
  if (op.HasInput(bias_input)) {  // int32 bias with scale x_scale * w_scale (QLinearConv's bias)
    const int db = du.Producer(op.Input(bias_input));
    if (db < 0 || !IsOp(g.nodes[db], "DequantizeLinear")) return false;
    const Node& bdq = g.nodes[db];
    const Tensor* b = Constant(g, bdq.Input(0));
    const Tensor* bs = Constant(g, bdq.Input(1));
    if (!b || b->dtype() != DType::kInt32 || b->numel() != M || !bs || bs->dtype() != DType::kFloat32) return false;
    if (bdq.HasInput(2)) {
      const Tensor* bz = Constant(g, bdq.Input(2));
      if (!bz) return false;
      for (int64_t k = 0; k < bz->numel(); ++k)
        if (bz->GetAsInt64(k) != 0) return false;
    }
    if (bs->numel() != 1 && bs->numel() != M) return false;
    for (int64_t m = 0; m < M; ++m) {
      const float want = xs->data<float>()[0] * ws->data<float>()[ws->numel() == 1 ? 0 : m];
      if (bs->data<float>()[bs->numel() == 1 ? 0 : m] != want) return false;
    }
    u->bias = bdq.Input(0);
  }
  // op -> [Relu | Clip] -> QuantizeLinear.
  int next = SoleConsumer(g, du, op.outputs[0]);
  if (next < 0) return false;
  if (IsOp(g.nodes[next], "Relu") || IsOp(g.nodes[next], "Clip")) {
    u->act = next;
    next = SoleConsumer(g, du, g.nodes[next].outputs[0]);
    if (next < 0) return false;
  }
  const Node& q = g.nodes[next];
  if (!IsOp(q, "QuantizeLinear") || q.outputs.size() != 1) return false;
  const Tensor* ys = Constant(g, q.Input(1));
  const Tensor* yz = Constant(g, q.Input(2));
  if (!ys || ys->numel() != 1 || ys->dtype() != DType::kFloat32 || !yz || yz->numel() != 1 || !Is8Bit(yz->dtype()))
    return false;
  u->q = next;
  u->y_scale = q.Input(1), u->y_zp = q.Input(2), u->y_q = q.outputs[0];
  const bool y_signed = yz->dtype() == DType::kInt8;
  const float y_scale = ys->data<float>()[0];
  const int32_t y_zp = static_cast<int32_t>(yz->GetAsInt64(0));
  u->q_min = y_signed ? -128 : 0;
  u->q_max = y_signed ? 127 : 255;
  if (u->act >= 0 && IsOp(g.nodes[u->act], "Relu")) {
    u->q_min = y_zp;
  } else if (u->act >= 0) {  // Clip: bounds are inputs from opset 11, attributes before
    const Node& clip = g.nodes[u->act];
    float lo = clip.AttrFloat("min", -INFINITY), hi = clip.AttrFloat("max", INFINITY);
    for (size_t k = 1; k <= 2; ++k) {
      if (!clip.HasInput(k)) continue;
      const Tensor* t = Constant(g, clip.Input(k));
      if (!t || t->numel() != 1 || t->dtype() != DType::kFloat32) return false;
      (k == 1 ? lo : hi) = t->data<float>()[0];
    }
    auto quantize = [&](float v) -> int64_t {
      return y_signed ? rt::quant::QuantizeValue<int8_t>(v, y_scale, y_zp) : rt::quant::QuantizeValue<uint8_t>(v, y_scale, y_zp);
    };
    if (lo > -INFINITY) u->q_min = quantize(lo);
    if (hi < INFINITY) u->q_max = quantize(hi);
  }
  return true;
}

// What the fusion writes: the runtime's own ops (com.quantkit, for execution), or standard
// QOperator-format ops (ONNX QLinearConv / QLinearMatMul, com.microsoft QLinearAdd / QLinearMul)
// where those express the unit exactly, for files other runtimes read.
enum class Target { kRuntime, kQOperator };

// True when a unit's clamp is the output type's own range (nothing left for a Relu/Clip to do).
bool ClampIsTypeRange(const Graph& g, const std::string& y_zp, int64_t q_min, int64_t q_max) {
  const bool y_signed = Constant(g, y_zp)->dtype() == DType::kInt8;
  return q_min <= (y_signed ? -128 : 0) && q_max >= (y_signed ? 127 : 255);
}

Node StaticFusedNode(const Graph& g, const Node& op, const char* fused_op, const StaticUnit& u) {
  Node f;
  f.op_type = fused_op;
  f.domain = rt::kQuantkitDomain;
  f.name = g.UniqueName((op.name.empty() ? op.op_type : op.name) + "_int8");
  f.inputs = {u.x_q, u.x_scale, u.x_zp, u.w_q, u.w_scale, u.w_zp, u.y_scale, u.y_zp, u.bias};
  if (u.bias.empty()) f.inputs.pop_back();
  f.outputs = {u.y_q};
  f.SetAttrInt("q_min", u.q_min);
  f.SetAttrInt("q_max", u.q_max);
  return f;
}

void MarkUnitRemoved(size_t i, const StaticUnit& u, std::vector<bool>& removed) {
  removed[i] = removed[u.q] = true;
  if (u.act >= 0) removed[u.act] = true;
}

// Static QDQ Conv: DequantizeLinear(x_q), DequantizeLinear(w_q) [, DequantizeLinear(b_q int32)]
// -> Conv [-> Relu | Clip] -> QuantizeLinear  ==>  com.quantkit::QLinearConv, the Relu/Clip as a
// clamp of the quantized output (exact: quantization is monotone, so Q(relu(v)) = max(Q(v), zp)
// and Q(clip(v, lo, hi)) = clamp(Q(v), Q(lo), Q(hi))). The int8 result differs from running the
// float Conv on dequantized values only by that float computation's rounding (within one step).
bool FuseStaticConv(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused,
                    Target target) {
  const Node& conv = g.nodes[i];
  StaticUnit u;
  if (!IsOp(conv, "Conv") || conv.outputs.size() != 1 || !MatchStaticUnit(g, du, conv, 0, 0, 2, &u)) return false;
  Node f = StaticFusedNode(g, conv, "QLinearConv", u);
  if (target == Target::kQOperator) {
    if (!ClampIsTypeRange(g, u.y_zp, u.q_min, u.q_max)) return false;  // ONNX QLinearConv has no clamp
    f.domain = "";
    f.attributes.clear();
  }
  for (const auto& a : conv.attributes) f.attributes.push_back(a);
  MarkUnitRemoved(i, u, removed);
  fused.push_back(std::move(f));
  return true;
}

// Static QDQ MatMul (weights [K, N], per column on axis 1) and Gemm (transA = 0, alpha = beta = 1;
// transB: weights [N, K], per row on axis 0; bias as for Conv) ==> com.quantkit::QLinearMatMul.
bool FuseStaticMatMul(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused,
                      Target target) {
  const Node& op = g.nodes[i];
  const bool is_gemm = IsOp(op, "Gemm");
  if (target == Target::kQOperator && is_gemm) return false;  // ONNX QLinearMatMul has no bias
  if (!(IsOp(op, "MatMul") || is_gemm) || op.outputs.size() != 1) return false;
  if (is_gemm && (op.AttrInt("transA", 0) != 0 || op.AttrFloat("alpha", 1.f) != 1.f || op.AttrFloat("beta", 1.f) != 1.f))
    return false;
  const bool trans_b = is_gemm && op.AttrInt("transB", 0) != 0;
  StaticUnit u;
  if (!MatchStaticUnit(g, du, op, trans_b ? 0 : 1, trans_b ? 0 : 1, is_gemm ? 2 : 99, &u)) return false;
  if (Constant(g, u.w_q)->rank() != 2) return false;
  Node f = StaticFusedNode(g, op, "QLinearMatMul", u);
  if (trans_b) f.SetAttrInt("trans_b", 1);
  if (target == Target::kQOperator) {
    if (!ClampIsTypeRange(g, u.y_zp, u.q_min, u.q_max)) return false;
    f.domain = "";
    f.attributes.clear();
  }
  MarkUnitRemoved(i, u, removed);
  fused.push_back(std::move(f));
  return true;
}

// Static QDQ MatMul/Gemm whose output stays float (the classifier head: nothing quantizes its
// output) ==> com.quantkit::MatMulIntegerToFloat on the quantized input and weights, the int32
// bias dequantized once into a float bias: y = float(acc) * (x_scale * w_scale[n]) + bias[n].
bool FuseStaticMatMulFloatOutput(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed,
                                 std::vector<Node>& fused) {
  const Node& op = g.nodes[i];
  const bool is_gemm = IsOp(op, "Gemm");
  if (!(IsOp(op, "MatMul") || is_gemm) || op.outputs.size() != 1) return false;
  if (is_gemm && (op.AttrInt("transA", 0) != 0 || op.AttrFloat("alpha", 1.f) != 1.f || op.AttrFloat("beta", 1.f) != 1.f))
    return false;
  const bool trans_b = is_gemm && op.AttrInt("transB", 0) != 0;
  StaticUnit u;
  const int64_t N = MatchStaticInputs(g, du, op, trans_b ? 0 : 1, trans_b ? 0 : 1, /*need_w_zp=*/false, &u);
  if (N < 0 || Constant(g, u.w_q)->rank() != 2) return false;
  std::string bias;
  if (is_gemm && op.HasInput(2)) {
    std::vector<float> b;
    const int db = du.Producer(op.Input(2));
    if (const Tensor* c = Constant(g, op.Input(2))) {
      if (c->dtype() != DType::kFloat32 || c->numel() != N) return false;
      b = c->ToFloatVector();
    } else if (db >= 0 && IsOp(g.nodes[db], "DequantizeLinear") && !g.nodes[db].HasInput(2)) {
      const Tensor* bq = Constant(g, g.nodes[db].Input(0));
      const Tensor* bs = Constant(g, g.nodes[db].Input(1));
      if (!bq || bq->dtype() != DType::kInt32 || bq->numel() != N || !bs || bs->dtype() != DType::kFloat32 ||
          (bs->numel() != 1 && bs->numel() != N))
        return false;
      b.resize(static_cast<size_t>(N));
      for (int64_t n = 0; n < N; ++n)  // DequantizeLinear's own arithmetic
        b[n] = rt::quant::DequantizeValue(bq->data<int32_t>()[n], 0, bs->data<float>()[bs->numel() == 1 ? 0 : n]);
    } else {
      return false;
    }
    bias = g.UniqueName(op.Input(2) + "_float");
    g.AddInitializer(bias, Tensor::FromVector<float>(b, {N}));
  }
  Node f = FusedNode(g, op.name);
  f.inputs = {u.x_q, u.x_scale, u.x_zp, u.w_q, u.w_scale, u.w_zp, bias};
  f.outputs = {op.outputs[0]};
  if (trans_b) f.SetAttrInt("trans_b", 1);
  removed[i] = true;
  fused.push_back(std::move(f));
  return true;
}

// Static QDQ Add/Mul of two quantized tensors: DQ(a), DQ(b) -> Add|Mul [-> Relu] -> Q  ==>
// com.quantkit::QLinearAdd/QLinearMul (bit-identical, broadcasting included).
bool FuseStaticBinary(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused,
                      Target target) {
  const Node& op = g.nodes[i];
  const bool is_mul = IsOp(op, "Mul");
  if (!(IsOp(op, "Add") || is_mul) || op.outputs.size() != 1 || op.inputs.size() != 2) return false;
  std::string q_in[2][3];
  for (int k = 0; k < 2; ++k) {
    const int d = du.Producer(op.Input(k));
    if (d < 0 || !IsOp(g.nodes[d], "DequantizeLinear")) return false;
    const Node& dq = g.nodes[d];
    const Tensor* s = Constant(g, dq.Input(1));
    const Tensor* z = Constant(g, dq.Input(2));
    if (!s || s->numel() != 1 || s->dtype() != DType::kFloat32 || !z || z->numel() != 1 || !Is8Bit(z->dtype())) return false;
    q_in[k][0] = dq.Input(0), q_in[k][1] = dq.Input(1), q_in[k][2] = dq.Input(2);
  }
  int next = SoleConsumer(g, du, op.outputs[0]);
  if (next < 0) return false;
  int relu = -1;
  if (IsOp(g.nodes[next], "Relu")) {
    relu = next;
    next = SoleConsumer(g, du, g.nodes[relu].outputs[0]);
    if (next < 0) return false;
  }
  const Node& q = g.nodes[next];
  if (!IsOp(q, "QuantizeLinear") || q.outputs.size() != 1) return false;
  const Tensor* ys = Constant(g, q.Input(1));
  const Tensor* yz = Constant(g, q.Input(2));
  if (!ys || ys->numel() != 1 || ys->dtype() != DType::kFloat32 || !yz || yz->numel() != 1 || !Is8Bit(yz->dtype()))
    return false;
  Node f;
  f.op_type = is_mul ? "QLinearMul" : "QLinearAdd";
  f.domain = rt::kQuantkitDomain;
  f.name = g.UniqueName((op.name.empty() ? op.op_type : op.name) + "_int8");
  f.inputs = {q_in[0][0], q_in[0][1], q_in[0][2], q_in[1][0], q_in[1][1], q_in[1][2], q.Input(1), q.Input(2)};
  f.outputs = {q.outputs[0]};
  if (relu >= 0) f.SetAttrInt("q_min", yz->GetAsInt64(0));
  if (target == Target::kQOperator) {
    // com.microsoft::QLinearAdd/QLinearMul (ONNX Runtime's contrib ops): same inputs, no clamp.
    if (relu >= 0 && !ClampIsTypeRange(g, q.Input(2), yz->GetAsInt64(0), 255)) return false;
    f.domain = kMicrosoftDomain;
    f.attributes.clear();
  }
  removed[i] = removed[next] = true;
  if (relu >= 0) removed[relu] = true;
  fused.push_back(std::move(f));
  return true;
}

// QuantizeLinear(P(DequantizeLinear(x))) with the same constant scale and zero point, for P an op
// that only moves or selects values (MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
// Concat of inputs that all share the output's parameters):
// P runs on the quantized values directly (exact: Q(DQ(v)) = v for these parameters).
bool FusePassThrough(Graph& g, const DefUse& du, size_t i, std::vector<bool>& removed, std::vector<Node>& fused) {
  const Node& p = g.nodes[i];
  static const char* kOps[] = {"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat"};
  bool known = false;
  for (const char* op : kOps) known = known || IsOp(p, op);
  if (!known || p.outputs.size() != 1 || p.inputs.empty()) return false;
  const int q = SoleConsumer(g, du, p.outputs[0]);
  if (q < 0 || !IsOp(g.nodes[q], "QuantizeLinear")) return false;
  const Node& qn = g.nodes[q];
  const Tensor *qs = Constant(g, qn.Input(1)), *qz = Constant(g, qn.Input(2));
  if (!qs || !qz || qs->numel() != 1 || qz->numel() != 1 || qs->dtype() != DType::kFloat32) return false;
  Node moved = p;
  // The data inputs (all of Concat's, the first of the others) must be dequantized with exactly
  // the output's parameters. A Concat may also take constant float inputs (BlazeFace pads
  // channels with a block of zeros): Q(Concat(DQ(x), c)) = Concat(x, Q(c)), so c is quantized
  // once here, with QuantizeLinear's own arithmetic.
  const size_t data_inputs = IsOp(p, "Concat") ? p.inputs.size() : 1;
  std::vector<std::pair<size_t, const Tensor*>> constants;
  for (size_t k = 0; k < data_inputs; ++k) {
    const int dq = du.Producer(p.Input(k));
    const Tensor* c = IsOp(p, "Concat") && dq < 0 ? Constant(g, p.Input(k)) : nullptr;
    if (c && c->dtype() == DType::kFloat32) {
      constants.emplace_back(k, c);
      continue;
    }
    if (dq < 0 || !IsOp(g.nodes[dq], "DequantizeLinear")) return false;
    const Node& d = g.nodes[dq];
    const Tensor *ds = Constant(g, d.Input(1)), *dz = Constant(g, d.Input(2));
    if (!ds || !dz || ds->numel() != 1 || dz->numel() != 1 || ds->dtype() != DType::kFloat32) return false;
    if (dz->dtype() != qz->dtype() || ds->data<float>()[0] != qs->data<float>()[0] || dz->GetAsInt64(0) != qz->GetAsInt64(0))
      return false;
    moved.inputs[k] = d.Input(0);
  }
  if (constants.size() == data_inputs) return false;  // nothing quantized flows through
  if (!constants.empty() && !Is8Bit(qz->dtype())) return false;
  const float scale = qs->data<float>()[0];
  const int32_t zp = static_cast<int32_t>(qz->GetAsInt64(0));
  for (const auto& [k, c] : constants) {
    Tensor cq(qz->dtype(), c->shape());
    const float* v = c->data<float>();
    for (int64_t e = 0; e < c->numel(); ++e) {
      if (qz->dtype() == DType::kInt8) {
        cq.data<int8_t>()[e] = rt::quant::QuantizeValue<int8_t>(v[e], scale, zp);
      } else {
        cq.data<uint8_t>()[e] = rt::quant::QuantizeValue<uint8_t>(v[e], scale, zp);
      }
    }
    const std::string name = g.UniqueName(p.Input(k) + "_quantized");
    g.AddInitializer(name, std::move(cq));
    moved.inputs[k] = name;
  }
  moved.outputs = {qn.outputs[0]};
  removed[i] = removed[q] = true;
  fused.push_back(std::move(moved));
  return true;
}

// Elementwise float ops between a dequantize and a quantize: DQ(x) -> f1 -> ... -> fn -> Q, each fi
// an elementwise op whose other inputs are constant float scalars (x + 3, Clip(0, 6), / 6,
// HardSigmoid, Sigmoid, ...); or a DAG of them where every variable input derives from the same
// DQ(x), such as a hardswish written as x * Clip(x + 3, 0, 6) / 6; or no op at all (a requantize).
// The result depends only on the 8-bit code of x, so the ops become
// com.quantkit::QLinearLookup(x_q, table[256]), the table made by running the very nodes, with the
// runtime's own kernels, on all 256 codes: exact. (The float kernels are position-independent:
// vector tails run the same lane code.)
std::string VariableInputs(const Graph& g, const Node& n, size_t* rank, std::vector<std::string>* vars);

// The ops between dq_out and q's input: every node of the DAG is a lookup op (not yet fused), its
// inputs are constant float scalars or values of the DAG or dq_out, and every value it makes feeds
// only the DAG (or, the last one, only q). Returns the nodes in graph order, or false.
bool CollectLookupDag(const Graph& g, const DefUse& du, const std::vector<bool>& removed, size_t q,
                      std::string* root, std::vector<int>* dag, size_t* const_rank) {
  constexpr size_t kMaxNodes = 64;
  std::vector<std::string> pending = {g.nodes[q].Input(0)};
  std::vector<int> nodes;
  root->clear();
  while (!pending.empty()) {
    const std::string v = pending.back();
    pending.pop_back();
    const int p = du.Producer(v);
    if (p < 0 || removed[p]) return false;
    const Node& n = g.nodes[p];
    if (IsOp(n, "DequantizeLinear")) {
      if (!root->empty() && *root != v) return false;  // two different quantized sources
      *root = v;
      continue;
    }
    if (std::find(nodes.begin(), nodes.end(), p) != nodes.end()) continue;
    if (!IsElementwiseLookupOp(n) || nodes.size() >= kMaxNodes) return false;
    std::vector<std::string> vars;
    VariableInputs(g, n, const_rank, &vars);
    if (vars.empty()) return false;
    nodes.push_back(p);
    pending.insert(pending.end(), vars.begin(), vars.end());
  }
  if (root->empty()) return false;
  // Closed: the DAG's values feed only the DAG, except its last value, which feeds only q.
  for (int p : nodes) {
    const std::string& out = g.nodes[p].outputs[0];
    if (g.IsGraphOutput(out)) return false;
    for (int c : du.Consumers(out))
      if (std::find(nodes.begin(), nodes.end(), c) == nodes.end() && !(c == static_cast<int>(q) &&
                                                                           out == g.nodes[q].Input(0))) {
        return false;
      }
  }
  if (!nodes.empty() && SoleConsumer(g, du, g.nodes[q].Input(0)) != static_cast<int>(q)) return false;
  std::sort(nodes.begin(), nodes.end());
  *dag = std::move(nodes);
  return true;
}

}  // namespace

bool IsElementwiseLookupOp(const Node& n) {
  static const char* kOps[] = {"Relu", "LeakyRelu", "Clip",  "HardSigmoid", "HardSwish", "Sigmoid", "Tanh",
                               "Elu",  "Selu",      "Erf",   "Exp",         "Neg",       "Abs",     "Sqrt",
                               "Softplus", "Mish",  "Add",   "Sub",         "Mul",       "Div",     "Pow",
                               "Max",  "Min"};
  if (!n.IsDefaultDomain() || n.outputs.size() != 1) return false;
  for (const auto& a : n.attributes)
    if (a.g || !a.graphs.empty()) return false;
  for (const char* op : kOps)
    if (n.op_type == op) return true;
  return false;
}

namespace {

// The non-constant inputs of an elementwise lookup op (into *vars; empty if a constant input is
// not a float scalar). *rank: the largest constant rank (it can raise the output's rank by
// broadcasting).
std::string VariableInputs(const Graph& g, const Node& n, size_t* rank, std::vector<std::string>* vars) {
  vars->clear();
  for (const auto& in : n.inputs) {
    if (in.empty()) continue;
    if (const Tensor* c = Constant(g, in)) {
      if (c->numel() != 1 || c->dtype() != DType::kFloat32) {
        vars->clear();
        return "";
      }
      *rank = std::max(*rank, c->rank());
      continue;
    }
    if (std::find(vars->begin(), vars->end(), in) == vars->end()) vars->push_back(in);
  }
  return vars->empty() ? "" : vars->front();
}

bool ScalarQuantParams(const Graph& g, const Node& n) {
  const Tensor* s = Constant(g, n.Input(1));
  const Tensor* z = Constant(g, n.Input(2));
  return s && s->numel() == 1 && s->dtype() == DType::kFloat32 && z && z->numel() == 1 && Is8Bit(z->dtype());
}

bool FuseLookup(Graph& g, const Model& model, const DefUse& du, size_t i, std::vector<bool>& removed,
                std::vector<Node>& fused) {
  const Node& q = g.nodes[i];
  if (!IsOp(q, "QuantizeLinear") || q.outputs.size() != 1 || !ScalarQuantParams(g, q)) return false;
  std::string root;
  std::vector<int> dag;
  size_t const_rank = 0;
  if (!CollectLookupDag(g, du, removed, i, &root, &dag, &const_rank)) return false;
  const int p = du.Producer(root);
  if (p < 0 || !ScalarQuantParams(g, g.nodes[p])) return false;
  const Node& dq = g.nodes[p];
  const Tensor* x = Constant(g, dq.Input(0));
  if (x) return false;  // constants are folded, not looked up
  // The table: the DAG run on the 256 codes of x's type.
  const DType x_type = Constant(g, dq.Input(2))->dtype();
  Graph tmp;
  tmp.name = "lookup";
  Tensor codes(x_type, {256});
  for (int c = 0; c < 256; ++c) static_cast<uint8_t*>(codes.raw_data())[c] = static_cast<uint8_t>(c);
  tmp.AddInitializer(dq.Input(0), codes);
  std::vector<const Node*> nodes = {&dq};
  for (int d : dag) nodes.push_back(&g.nodes[d]);
  nodes.push_back(&q);
  for (const Node* n : nodes) {
    for (const auto& in : n->inputs)
      if (const Tensor* c = Constant(g, in); c && !tmp.IsInitializer(in)) tmp.AddInitializer(in, *c);
    tmp.nodes.push_back(*n);
  }
  ValueInfo out;
  out.name = q.outputs[0];
  tmp.outputs.push_back(out);
  std::vector<Value> outs;
  {
    auto plan = rt::Plan::Build(tmp, model, nullptr);
    if (!plan.ok()) return false;
    ThreadPool pool(1);
    rt::RunContext run{DefaultAllocator(), &pool};
    if (!(*plan)->Run(run, nullptr, {}, &outs).ok()) return false;
  }
  if (outs.size() != 1 || !outs[0].is_tensor()) return false;
  Tensor table = outs[0].tensor.Reshaped({256});
  if (const_rank > 0 && table.numel() != 256) return false;
  Node f;
  f.op_type = "QLinearLookup";
  f.domain = rt::kQuantkitDomain;
  f.name = g.UniqueName((q.name.empty() ? std::string("lookup") : q.name) + "_lookup");
  const std::string table_name = g.UniqueName(q.outputs[0] + "_table");
  g.AddInitializer(table_name, table.Clone());
  f.inputs = {dq.Input(0), table_name};
  f.outputs = {q.outputs[0]};
  if (const_rank > 0) f.SetAttrInt("min_rank", static_cast<int64_t>(const_rank));
  removed[i] = true;
  for (int d : dag) removed[d] = true;
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

Status FuseGraph(Graph& g, const Model& model, Target target) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(FuseGraph(*a.g, model, target));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(FuseGraph(*sg, model, target));
    }
  const DefUse du(g);
  std::vector<bool> removed(g.nodes.size(), false);
  std::vector<std::pair<size_t, Node>> replacements;  // position of the anchor -> fused node
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (removed[i]) continue;
    std::vector<Node> fused;
    if (target == Target::kQOperator) {
      if (FuseStaticConv(g, du, i, removed, fused, target) || FuseStaticMatMul(g, du, i, removed, fused, target) ||
          FuseStaticBinary(g, du, i, removed, fused, target) || FusePassThrough(g, du, i, removed, fused)) {
        replacements.emplace_back(i, std::move(fused.back()));
      }
      continue;
    }
    if (FuseQuantizedRnn(g, du, i)) continue;
    if (FuseIntegerOps(g, du, i, removed, fused) || FuseConvIntegerOps(g, model, du, i, removed, fused) ||
        FuseQdqWeights(g, du, i, removed, fused) || FuseStaticConv(g, du, i, removed, fused, target) || FuseStaticMatMul(g, du, i, removed, fused, target) ||
        FuseStaticMatMulFloatOutput(g, du, i, removed, fused) || FuseStaticBinary(g, du, i, removed, fused, target) ||
        FusePassThrough(g, du, i, removed, fused)) {
      replacements.emplace_back(i, std::move(fused.back()));
    }
  }
  // Lookups last: the quantize nodes still left over close float islands of elementwise ops.
  for (size_t i = 0; i < g.nodes.size() && target == Target::kRuntime; ++i) {
    std::vector<Node> fused;
    if (!removed[i] && FuseLookup(g, model, du, i, removed, fused)) replacements.emplace_back(i, std::move(fused.back()));
  }
  std::sort(replacements.begin(), replacements.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
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

// Declares `domain` (version 1) when some node uses it.
void ImportDomainIfUsed(Model& model, const std::string& domain) {
  bool used = false;
  std::function<void(const Graph&)> scan = [&](const Graph& g) {
    for (const auto& n : g.nodes) {
      used |= n.domain == domain;
      for (const auto& a : n.attributes) {
        if (a.g) scan(*a.g);
        for (const auto& sg : a.graphs) scan(*sg);
      }
    }
  };
  scan(model.graph);
  if (used && model.OpsetVersion(domain) == 0) model.SetOpsetVersion(domain, 1);
}

}  // namespace

Status FuseQuantizedOps(Model& model) {
  QK_RETURN_IF_ERROR(FuseGraph(model.graph, model, Target::kRuntime));
  ImportDomainIfUsed(model, rt::kQuantkitDomain);
  return EliminateDeadNodes(model);  // the dequantized float weights are never materialised
}

Status ConvertQdqToQOperator(Model& model) {
  QK_RETURN_IF_ERROR(FuseGraph(model.graph, model, Target::kQOperator));
  ImportDomainIfUsed(model, kMicrosoftDomain);
  return EliminateDeadNodes(model);
}

}  // namespace quantkit::passes
