// Fused quantized ops the runtime lowers standard QDQ / integer-op graphs into (domain
// "com.quantkit", created only by passes/fuse_quantized.cc, never read from files):
//
//   MatMulIntegerToFloat(A, a_scale, a_zero_point, B, b_scale, b_zero_point, bias; trans_b)
//     A uint8/int8 (already quantized, a_scale per tensor or per row), or float: then A is
//     quantized here exactly as DynamicQuantizeLinear does (uint8, per tensor) before the GEMM.
//     B constant int8/uint8 [K, N] ([N, K] if trans_b), packed once at session creation.
//     y = float(acc) * (a_scale * b_scale[n]) + bias[n]   (the Cast, Mul, Mul, Add it replaces)
//
//   QLinearMatMul(A, a_scale, a_zero_point, B, b_scale, b_zero_point, y_scale, y_zero_point,
//                 bias; trans_b, q_min, q_max)
//     Static int8 MatMul/Gemm: A 8-bit with per-tensor parameters, B a constant 8-bit [K, N]
//     (per-column parameters), optional int32 bias (scale a_scale * b_scale[n]); output
//     requantized as QLinearMatMul (quantize.h's Requantize) and clamped to [q_min, q_max] (a
//     fused Relu/Clip). Without bias and clamp it is exactly ONNX QLinearMatMul.
//
//   QLinearAdd / QLinearMul(A, a_scale, a_zp, B, b_scale, b_zp, y_scale, y_zp; q_min, q_max)
//     (also registered as com.microsoft::QLinearAdd / QLinearMul, ONNX Runtime's QOperator ops)
//     Static int8 Add/Mul of two quantized tensors of the same shape, bit-identical to
//     DequantizeLinear x2 -> Add/Mul -> QuantizeLinear [with a Relu as clamp].
//
//   QLinearLookup(X, table[256]; min_rank)
//     An 8-bit to 8-bit function by table: DequantizeLinear -> elementwise float ops ->
//     QuantizeLinear, the table computed by those very ops on the 256 codes (exact).
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "runtime/kernels/lookup.h"
#include "runtime/kernels/qbinary.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

std::vector<int32_t> ZeroPoints(const Tensor* zp) {
  if (!zp) return {0};
  std::vector<int32_t> v(static_cast<size_t>(zp->numel()));
  for (int64_t i = 0; i < zp->numel(); ++i) v[i] = static_cast<int32_t>(zp->GetAsInt64(i));
  return v;
}

class MatMulIntegerToFloatKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    const Tensor* b = init.ConstantInput(3);
    const Tensor* b_scale = init.ConstantInput(4);
    const Tensor* b_zp = init.ConstantInput(5);
    const Tensor* bias = init.ConstantInput(6);
    QK_CHECK_ARG(b && b->rank() == 2 && (b->dtype() == DType::kInt8 || b->dtype() == DType::kUInt8),
                 "B must be a constant 2-D int8/uint8 tensor");
    QK_CHECK_ARG(b_scale && b_scale->dtype() == DType::kFloat32, "b_scale must be a constant float tensor");
    QK_CHECK_ARG(!init.node.HasInput(5) || (b_zp && b_zp->dtype() == b->dtype()),
                 "b_zero_point must be a constant of B's type");
    QK_CHECK_ARG(!init.node.HasInput(6) || (bias && bias->dtype() == DType::kFloat32), "bias must be a constant float tensor");
    auto k = std::unique_ptr<MatMulIntegerToFloatKernel>(new MatMulIntegerToFloatKernel);
    const bool trans_b = init.node.AttrInt("trans_b", 0) != 0;
    k->K_ = b->dim(trans_b ? 1 : 0);
    k->N_ = b->dim(trans_b ? 0 : 1);
    QK_CHECK_ARG(b_scale->numel() == 1 || b_scale->numel() == k->N_, "b_scale has {} elements, expected 1 or {}",
                 b_scale->numel(), k->N_);
    QK_CHECK_ARG(!b_zp || b_zp->numel() == 1 || b_zp->numel() == k->N_, "b_zero_point has {} elements, expected 1 or {}",
                 b_zp->numel(), k->N_);
    QK_CHECK_ARG(!bias || bias->numel() == k->N_, "bias has {} elements, expected {}", bias ? bias->numel() : 0, k->N_);
    k->b_scale_ = b_scale->ToFloatVector();
    if (bias) k->bias_ = bias->ToFloatVector();
    k->has_bias_ = bias != nullptr;
    k->packed_ = kernels::PackQWeights(b->raw_data(), b->dtype() == DType::kInt8, trans_b, k->K_, k->N_,
                                       trans_b ? k->K_ : k->N_, ZeroPoints(b_zp), kernels::DefaultQGemmIsa());
    return std::unique_ptr<OpKernel>(std::move(k));
  }

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
    QK_CHECK_ARG(a->rank() >= 1 && a->dim(a->rank() - 1) == K_, "A has shape {}, its last dimension must be {}",
                 ShapeToString(a->shape()), K_);
    const int64_t M = a->numel() / K_;
    Shape out_shape(a->shape().begin(), a->shape().end() - 1);
    out_shape.push_back(N_);
    QK_CHECK_ARG(a->dtype() == DType::kFloat32 || a->dtype() == DType::kUInt8 || a->dtype() == DType::kInt8,
                 "A must be float, uint8 or int8, got {}", DTypeName(a->dtype()));
    kernels::PackedQActivations packed_a;
    QK_ASSIGN_OR_RETURN(packed_a.storage, ctx.Scratch(DType::kUInt8, kernels::PackedQActivationsBytes(M, *packed_),
                                                      "packed activations"));
    std::vector<float> a_scales;
    if (a->dtype() == DType::kFloat32) {
      const quant::DynamicParams p = quant::ComputeDynamicParams(a->data<float>(), a->numel());
      kernels::PackQActivationsFromFloat(a->data<float>(), M, K_, K_, p.scale, p.zero_point, *packed_, &packed_a);
      a_scales = {p.scale};
    } else {
      QK_ASSIGN_OR_RETURN(const Tensor* a_scale, ctx.RequiredInput(1));
      const Tensor* a_zp = ctx.input(2);
      QK_CHECK_ARG(a_scale->numel() == 1 || a_scale->numel() == M,
                   "a_scale has {} elements: expected 1 (per tensor) or {} (per row)", a_scale->numel(), M);
      QK_CHECK_ARG(!a_zp || (a_zp->numel() == 1 && a_zp->dtype() == a->dtype()),
                   "a_zero_point must be a scalar of A's type");
      a_scales = a_scale->ToFloatVector();
      kernels::PackQActivations(a->raw_data(), a->dtype() == DType::kInt8, M, K_, K_,
                                a_zp ? static_cast<int32_t>(a_zp->GetAsInt64(0)) : 0, *packed_, &packed_a);
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, out_shape));
    kernels::QGemmOutput out;
    out.y = y->data<float>();
    out.ldc = N_;
    out.a_scale = a_scales.data();
    out.a_scale_per_row = a_scales.size() > 1;
    out.b_scale = b_scale_.data();
    out.b_scale_per_col = b_scale_.size() > 1;
    out.bias = has_bias_ ? bias_.data() : nullptr;
    kernels::QGemm(packed_a, *packed_, out, ctx.thread_pool());
    return Status::Ok();
  }

 private:
  MatMulIntegerToFloatKernel() = default;
  int64_t K_ = 0, N_ = 0;
  std::vector<float> b_scale_, bias_;
  bool has_bias_ = false;
  std::shared_ptr<const kernels::PackedQWeights> packed_;
};

class QLinearMatMulKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    const Tensor* b = init.ConstantInput(3);
    const Tensor* b_scale = init.ConstantInput(4);
    const Tensor* b_zp = init.ConstantInput(5);
    const Tensor* bias = init.ConstantInput(8);
    QK_CHECK_ARG(b && b->rank() == 2 && (b->dtype() == DType::kInt8 || b->dtype() == DType::kUInt8),
                 "B must be a constant 2-D int8/uint8 tensor");
    QK_CHECK_ARG(b_scale && b_scale->dtype() == DType::kFloat32, "b_scale must be a constant float tensor");
    QK_CHECK_ARG(b_zp && b_zp->dtype() == b->dtype(), "b_zero_point must be a constant of B's type");
    auto k = std::unique_ptr<QLinearMatMulKernel>(new QLinearMatMulKernel);
    const bool trans_b = init.node.AttrInt("trans_b", 0) != 0;
    k->K_ = b->dim(trans_b ? 1 : 0);
    k->N_ = b->dim(trans_b ? 0 : 1);
    QK_CHECK_ARG(b_scale->numel() == 1 || b_scale->numel() == k->N_, "b_scale has {} elements, expected 1 or {}",
                 b_scale->numel(), k->N_);
    QK_CHECK_ARG(b_zp->numel() == b_scale->numel(), "b_zero_point and b_scale differ in size");
    QK_CHECK_ARG(!init.node.HasInput(8) || (bias && bias->dtype() == DType::kInt32 && bias->numel() == k->N_),
                 "bias must be a constant int32 tensor of {} elements", k->N_);
    k->b_scale_ = b_scale->ToFloatVector();
    if (bias) k->bias_.assign(bias->data<int32_t>(), bias->data<int32_t>() + bias->numel());
    k->q_min_ = init.node.AttrInt("q_min", -128);
    k->q_max_ = init.node.AttrInt("q_max", 255);
    k->packed_ = kernels::PackQWeights(b->raw_data(), b->dtype() == DType::kInt8, trans_b, k->K_, k->N_,
                                       trans_b ? k->K_ : k->N_, ZeroPoints(b_zp), kernels::DefaultQGemmIsa());
    return std::unique_ptr<OpKernel>(std::move(k));
  }

  Status Compute(KernelContext& ctx) override {
    const Tensor* in[8];
    for (size_t i = 0; i < 8; ++i) {
      if (i == 3 || i == 4 || i == 5) continue;  // packed at creation
      QK_ASSIGN_OR_RETURN(in[i], ctx.RequiredInput(i));
    }
    const Tensor &a = *in[0], &a_scale = *in[1], &a_zp = *in[2], &y_scale = *in[6], &y_zp = *in[7];
    QK_CHECK_ARG(a.dtype() == DType::kUInt8 || a.dtype() == DType::kInt8, "A must be uint8 or int8, got {}",
                 DTypeName(a.dtype()));
    QK_CHECK_ARG(a.rank() >= 1 && a.dim(a.rank() - 1) == K_, "A has shape {}, its last dimension must be {}",
                 ShapeToString(a.shape()), K_);
    QK_CHECK_ARG(a_scale.numel() == 1 && a_zp.numel() == 1 && a_zp.dtype() == a.dtype(),
                 "a_scale / a_zero_point must be per-tensor, the zero point of A's type");
    QK_CHECK_ARG(y_scale.numel() == 1 && y_zp.numel() == 1 && (y_zp.dtype() == DType::kUInt8 || y_zp.dtype() == DType::kInt8),
                 "y_scale / y_zero_point must be per-tensor, the zero point 8-bit");
    const int64_t M = a.numel() / K_;
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(N_);
    const float as = static_cast<float>(a_scale.GetAsDouble(0)), ys = static_cast<float>(y_scale.GetAsDouble(0));
    std::vector<float> mult(b_scale_.size());
    for (size_t n = 0; n < mult.size(); ++n) mult[n] = quant::RequantizeMultiplier(as, b_scale_[n], ys);
    kernels::PackedQActivations packed_a;
    QK_ASSIGN_OR_RETURN(packed_a.storage, ctx.Scratch(DType::kUInt8, kernels::PackedQActivationsBytes(M, *packed_),
                                                      "packed activations"));
    kernels::PackQActivations(a.raw_data(), a.dtype() == DType::kInt8, M, K_, K_,
                              static_cast<int32_t>(a_zp.GetAsInt64(0)), *packed_, &packed_a);
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, y_zp.dtype(), out_shape));
    const bool y_signed = y_zp.dtype() == DType::kInt8;
    kernels::QGemmOutput out;
    out.q = y->raw_data();
    out.ldc = N_;
    out.q_signed = y_signed;
    out.bias_int32 = bias_.empty() ? nullptr : bias_.data();
    out.multiplier = mult.data();
    out.multiplier_per_col = mult.size() > 1;
    out.q_zero_point = static_cast<int32_t>(y_zp.GetAsInt64(0));
    out.q_min = static_cast<int32_t>(std::max<int64_t>(q_min_, y_signed ? -128 : 0));
    out.q_max = static_cast<int32_t>(std::min<int64_t>(q_max_, y_signed ? 127 : 255));
    kernels::QGemm(packed_a, *packed_, out, ctx.thread_pool());
    return Status::Ok();
  }

 private:
  QLinearMatMulKernel() = default;
  int64_t K_ = 0, N_ = 0, q_min_ = -128, q_max_ = 255;
  std::vector<float> b_scale_;
  std::vector<int32_t> bias_;
  std::shared_ptr<const kernels::PackedQWeights> packed_;
};

// The parameters of y = Q(DQ(a) op DQ(b)) clamped to [q_min, q_max], checked: 8-bit a, b and y,
// per-tensor scales and zero points, zero points of their tensor's type.
StatusOr<kernels::QBinaryParams> QBinaryParamsFrom(bool mul, DType a_type, const Tensor& a_scale, const Tensor& a_zp,
                                                   DType b_type, const Tensor& b_scale, const Tensor& b_zp,
                                                   const Tensor& y_scale, const Tensor& y_zp, int64_t q_min,
                                                   int64_t q_max) {
  QK_CHECK_ARG(a_type == a_zp.dtype() && b_type == b_zp.dtype(), "zero points must match their tensors");
  for (const Tensor* t : {&a_scale, &a_zp, &b_scale, &b_zp, &y_scale, &y_zp}) {
    QK_CHECK_ARG(t->numel() == 1, "scales and zero points must be scalars (per tensor), got shape {}",
                 ShapeToString(t->shape()));
  }
  QK_CHECK_ARG((a_type == DType::kInt8 || a_type == DType::kUInt8) && (b_type == DType::kInt8 || b_type == DType::kUInt8) &&
                   (y_zp.dtype() == DType::kInt8 || y_zp.dtype() == DType::kUInt8),
               "A, B and the output must be 8-bit");
  kernels::QBinaryParams p;
  p.mul = mul;
  p.a_signed = a_type == DType::kInt8;
  p.b_signed = b_type == DType::kInt8;
  p.y_signed = y_zp.dtype() == DType::kInt8;
  p.a_scale = static_cast<float>(a_scale.GetAsDouble(0));
  p.b_scale = static_cast<float>(b_scale.GetAsDouble(0));
  p.y_scale = static_cast<float>(y_scale.GetAsDouble(0));
  p.a_zero_point = static_cast<int32_t>(a_zp.GetAsInt64(0));
  p.b_zero_point = static_cast<int32_t>(b_zp.GetAsInt64(0));
  p.y_zero_point = static_cast<int32_t>(y_zp.GetAsInt64(0));
  p.y_min = static_cast<int32_t>(std::clamp<int64_t>(q_min, -128, 255));
  p.y_max = static_cast<int32_t>(std::clamp<int64_t>(q_max, -128, 255));
  return p;
}

// Output 0 = a op b with numpy broadcasting (kernels::QBinarySpan over runs of the output).
Status RunQLinearBinary(KernelContext& ctx, const kernels::QBinaryParams& p, const Tensor& a, const Tensor& b) {
  QK_ASSIGN_OR_RETURN(const Shape out_shape, BroadcastShapes(a.shape(), b.shape()));
  const bool same = a.shape() == b.shape();
  const std::vector<int64_t> sa = BroadcastStrides(a.shape(), out_shape.size());
  const std::vector<int64_t> sb = BroadcastStrides(b.shape(), out_shape.size());
  // Collapse adjacent output dims along which a and b both step uniformly (both contiguous, or
  // both broadcast), so the inner loop runs over long rows with fixed strides (0 or 1).
  std::vector<int64_t> dims, ca, cb;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 1) continue;
    if (!dims.empty() && ca.back() == sa[d] * out_shape[d] && cb.back() == sb[d] * out_shape[d]) {
      dims.back() *= out_shape[d];
      ca.back() = sa[d];
      cb.back() = sb[d];
    } else {
      dims.push_back(out_shape[d]);
      ca.push_back(sa[d]);
      cb.push_back(sb[d]);
    }
  }
  if (dims.empty()) dims = {1}, ca = {0}, cb = {0};
  const int64_t inner = dims.back(), step_a = ca.back(), step_b = cb.back();
  const std::vector<int64_t> outer_strides = ContiguousStrides(Shape(dims.begin(), dims.end() - 1));
  // Offsets of a and b at the start of output row r.
  auto row_offsets = [&](int64_t r, int64_t* ia, int64_t* ib) {
    *ia = *ib = 0;
    for (size_t d = 0; d + 1 < dims.size(); ++d) {
      const int64_t idx = r / outer_strides[d] % dims[d];
      *ia += idx * ca[d];
      *ib += idx * cb[d];
    }
  };
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, p.y_signed ? DType::kInt8 : DType::kUInt8, out_shape));
  const auto* pa = static_cast<const uint8_t*>(a.raw_data());
  const auto* pb = static_cast<const uint8_t*>(b.raw_data());
  auto* py = static_cast<uint8_t*>(y->raw_data());
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  if (same) {
    ctx.thread_pool()->ParallelFor(y->numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      kernels::QBinarySpan(p, pa + begin, 1, pb + begin, 1, end - begin, py + begin, isa);
    });
    return Status::Ok();
  }
  const int64_t rows = y->numel() / std::max<int64_t>(1, inner);
  ctx.thread_pool()->ParallelFor(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, inner)),
                                 [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t ia = 0, ib = 0;
      row_offsets(r, &ia, &ib);
      kernels::QBinarySpan(p, pa + ia, step_a, pb + ib, step_b, inner, py + r * inner, isa);
    }
  });
  return Status::Ok();
}

// QLinearAdd / QLinearMul (com.quantkit): y = Q(DQ(a) op DQ(b)), computed element by element with
// exactly the float32 operations of the DequantizeLinear -> Add/Mul -> QuantizeLinear it replaces
// (so bit-identical to it), then clamped to [q_min, q_max] (a fused Relu). Numpy broadcasting.
// Constant scales and zero points (the usual case) are planned once, at session creation
// (kernels::PlanQBinary: a few tenths of a millisecond); runs still check their tensors' types.
template <bool kMul>
class QLinearBinaryKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    auto k = std::make_unique<QLinearBinaryKernel>();
    const Tensor* c[8] = {};
    bool constant = true;
    for (size_t i : {1, 2, 4, 5, 6, 7}) constant = constant && (c[i] = init.ConstantInput(i)) != nullptr;
    if (constant) {
      // The zero points' types stand for A's and B's.
      auto p = QBinaryParamsFrom(kMul, c[2]->dtype(), *c[1], *c[2], c[5]->dtype(), *c[4], *c[5], *c[6], *c[7],
                                 init.node.AttrInt("q_min", -128), init.node.AttrInt("q_max", 255));
      if (p.ok()) {
        kernels::PlanQBinary(&p.value(), kernels::DefaultQGemmIsa());
        k->planned_ = p.value();
      }
    }
    return std::unique_ptr<OpKernel>(std::move(k));
  }
  Status Compute(KernelContext& ctx) override {
    const Tensor* in[8];
    for (size_t i = 0; i < 8; ++i) {
      QK_ASSIGN_OR_RETURN(in[i], ctx.RequiredInput(i));
    }
    QK_ASSIGN_OR_RETURN(const kernels::QBinaryParams p,
                        QBinaryParamsFrom(kMul, in[0]->dtype(), *in[1], *in[2], in[3]->dtype(), *in[4], *in[5], *in[6],
                                          *in[7], ctx.node().AttrInt("q_min", -128), ctx.node().AttrInt("q_max", 255)));
    return RunQLinearBinary(ctx, planned_ ? *planned_ : p, *in[0], *in[3]);
  }

 private:
  std::optional<kernels::QBinaryParams> planned_;
};

// QLinearLookup(x, table; min_rank) (com.quantkit): y[i] = table[code of x[i]], x and table 8-bit
// (table: 256 entries, the output type), y shaped as x left-padded with 1s to min_rank. Made by
// passes/fuse_quantized from DequantizeLinear -> elementwise float ops -> QuantizeLinear.
Status QLinearLookupFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* table, ctx.RequiredInput(1));
  QK_CHECK_ARG((x->dtype() == DType::kInt8 || x->dtype() == DType::kUInt8) &&
                   (table->dtype() == DType::kInt8 || table->dtype() == DType::kUInt8), "x and the table must be 8-bit (got {} and {})",
               DTypeName(x->dtype()), DTypeName(table->dtype()));
  QK_CHECK_ARG(table->numel() == 256, "the table must have 256 entries, got {}", table->numel());
  Shape shape = x->shape();
  const int64_t min_rank = ctx.node().AttrInt("min_rank", 0);
  while (static_cast<int64_t>(shape.size()) < min_rank) shape.insert(shape.begin(), 1);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, table->dtype(), shape));
  const auto* src = static_cast<const uint8_t*>(x->raw_data());
  const auto* lut = static_cast<const uint8_t*>(table->raw_data());
  auto* dst = static_cast<uint8_t*>(y->raw_data());
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  ctx.thread_pool()->ParallelFor(x->numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    kernels::LookupBytes(src + begin, end - begin, lut, dst + begin, isa);
  });
  return Status::Ok();
}

}  // namespace

void RegisterFusedQuantOps(KernelRegistry& r) {
  r.RegisterFunction(kQuantkitDomain, "QLinearLookup", &QLinearLookupFn);
  r.Register(kQuantkitDomain, "QLinearAdd", &QLinearBinaryKernel<false>::Create);
  r.Register(kQuantkitDomain, "QLinearMul", &QLinearBinaryKernel<true>::Create);
  // ONNX Runtime's contrib ops of the QOperator format: the same inputs, no clamp attribute.
  r.Register("com.microsoft", "QLinearAdd", &QLinearBinaryKernel<false>::Create);
  r.Register("com.microsoft", "QLinearMul", &QLinearBinaryKernel<true>::Create);
  r.Register(kQuantkitDomain, "MatMulIntegerToFloat", &MatMulIntegerToFloatKernel::Create);
  r.Register(kQuantkitDomain, "QLinearMatMul", &QLinearMatMulKernel::Create);
}

}  // namespace quantkit::rt
