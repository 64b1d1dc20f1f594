// Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
// ConvInteger, QLinearMatMul, QLinearConv. All rounding/saturation/requantization goes through
// runtime/kernels/ref/quantize.h (one arithmetic for every op).
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <type_traits>
#include <vector>

#include "runtime/kernels/qdepthwise.h"
#include "runtime/kernels/qdirect_conv.h"
#include "runtime/kernels/quantize_span.h"
#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/quantize.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

using quant::QOperand;

bool Is8Bit(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

// Calls f(T{}) for the quantized storage types quantkit supports.
template <typename F>
Status DispatchQuantType(DType dtype, const char* what, F&& f) {
  switch (dtype) {
    case DType::kUInt8: return f(uint8_t{});
    case DType::kInt8: return f(int8_t{});
    case DType::kUInt16: return f(uint16_t{});
    case DType::kInt16: return f(int16_t{});
    case DType::kInt32: return f(int32_t{});
    default:
      return Unimplemented(fmt::format("{} of type {} is not supported (uint8, int8, uint16, int16, int32 are)",
                                       what, DTypeName(dtype)));
  }
}

// Reads a zero-point tensor (any integer type) into int32.
std::vector<int32_t> ReadZeroPoints(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = static_cast<int32_t>(t.GetAsInt64(i));
  return v;
}

// Scale tensor (float32/float16/bfloat16/double) into float32, all finite and non-zero checked by
// the caller when it matters.
std::vector<float> ReadScales(const Tensor& t) { return t.ToFloatVector(); }

Status CheckScaleType(const Tensor& t, const char* what) {
  QK_CHECK_ARG(IsFloatDType(t.dtype()), "{} must be a float tensor, got {}", what, DTypeName(t.dtype()));
  QK_CHECK_ARG(t.numel() >= 1, "{} is empty", what);
  return Status::Ok();
}

// Layout of a per-tensor or per-axis quantization parameter over x: x viewed as
// [outer, channels, inner]; the parameter index is the channel index (0 if per-tensor).
struct ParamLayout {
  int64_t outer = 1, channels = 1, inner = 1;
  bool per_axis = false;
};

StatusOr<ParamLayout> ResolveParamLayout(const Shape& x_shape, const Tensor& scale, const Tensor* zp,
                                         int64_t axis_attr) {
  ParamLayout l;
  l.inner = NumElements(x_shape);
  if (zp) {
    QK_CHECK_ARG(zp->shape() == scale.shape() || (zp->numel() == scale.numel() && scale.numel() == 1),
                 "zero point shape {} does not match scale shape {}", ShapeToString(zp->shape()),
                 ShapeToString(scale.shape()));
  }
  if (scale.numel() == 1 && scale.rank() <= 1) return l;  // per tensor
  QK_CHECK_ARG(scale.rank() == 1, "scale must be a scalar or a 1-D tensor (per-axis), got shape {}",
               ShapeToString(scale.shape()));
  QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_attr, static_cast<int64_t>(x_shape.size())));
  QK_CHECK_ARG(scale.dim(0) == x_shape[axis], "per-axis scale has {} elements but input dimension {} (axis {}) is {}",
               scale.dim(0), axis, axis_attr, x_shape[axis]);
  l.per_axis = true;
  l.outer = 1;
  for (int64_t i = 0; i < axis; ++i) l.outer *= x_shape[i];
  l.channels = x_shape[axis];
  l.inner = 1;
  for (size_t i = static_cast<size_t>(axis) + 1; i < x_shape.size(); ++i) l.inner *= x_shape[i];
  return l;
}

// Runs fn(begin, end) over [0, n), in parallel when n is large.
void ParallelRange(KernelContext& ctx, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= grain || !ctx.thread_pool()) {
    if (n > 0) fn(0, n);
    return;
  }
  ctx.thread_pool()->ParallelFor(n, grain, fn);
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear

// Blocked quantization (opset 21 block_size) and output_dtype are not supported.
Status CheckQdqAttrs(const Node& node) {
  if (node.AttrInt("block_size", 0) != 0) {
    return Unimplemented(fmt::format("blocked quantization (block_size={}) is not supported",
                                     node.AttrInt("block_size", 0)));
  }
  if (node.AttrInt("output_dtype", 0) != 0) {
    return Unimplemented("the output_dtype attribute is not supported (give a zero point of the wanted type)");
  }
  return Status::Ok();
}

class QuantizeLinearKernel final : public OpKernel {
 public:
  explicit QuantizeLinearKernel(int64_t axis) : axis_(axis) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* scale_t, ctx.RequiredInput(1));
    const Tensor* zp_t = ctx.input(2);
    QK_RETURN_IF_ERROR(CheckScaleType(*scale_t, "y_scale (input #1)"));
    QK_CHECK_ARG(IsFloatDType(x->dtype()) || x->dtype() == DType::kInt32,
                 "input x must be float or int32, got {}", DTypeName(x->dtype()));
    const DType out_type = zp_t ? zp_t->dtype() : DType::kUInt8;
    QK_CHECK_ARG(out_type != DType::kInt32, "QuantizeLinear cannot produce int32 (zero point type)");
    QK_ASSIGN_OR_RETURN(ParamLayout l, ResolveParamLayout(x->shape(), *scale_t, zp_t, axis_));
    const std::vector<float> scales = ReadScales(*scale_t);
    const std::vector<int32_t> zps = zp_t ? ReadZeroPoints(*zp_t) : std::vector<int32_t>(scales.size(), 0);
    // x as float32.
    Tensor xf;
    if (x->dtype() == DType::kFloat32) {
      xf = *x;
    } else if (x->dtype() == DType::kFloat16 || x->dtype() == DType::kBFloat16) {
      QK_ASSIGN_OR_RETURN(xf, ToFloat32IfHalf(ctx, *x, "float32 x"));
    } else {
      QK_ASSIGN_OR_RETURN(xf, ctx.Scratch(DType::kFloat32, x->numel(), "float32 x"));
      float* d = xf.data<float>();
      for (int64_t i = 0; i < x->numel(); ++i) d[i] = static_cast<float>(x->GetAsDouble(i));
    }
    const float* src = xf.data<float>();
    return DispatchQuantType(out_type, "y_zero_point (output type)", [&](auto tag) -> Status {
      using T = decltype(tag);
      if constexpr (sizeof(T) > 2) {
        return Unimplemented(fmt::format("QuantizeLinear to {} is not supported", DTypeName(out_type)));
      } else {
        QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, out_type, x->shape()));
        T* dst = y->data<T>();
        const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
        // 8-bit outputs through kernels/quantize_span (the same values as QuantizeSpan).
        auto span = [&](const float* in, int64_t n, float scale, int32_t zp, T* out) {
          if constexpr (sizeof(T) == 1) {
            kernels::QuantizeToBytes(in, n, scale, zp, std::is_signed_v<T>, out, isa);
          } else {
            quant::QuantizeSpan<T>(in, n, scale, zp, out);
          }
        };
        if (!l.per_axis) {
          ParallelRange(ctx, x->numel(), 1 << 16,
                        [&](int64_t b, int64_t e) { span(src + b, e - b, scales[0], zps[0], dst + b); });
          return Status::Ok();
        }
        const int64_t rows = l.outer * l.channels;
        ParallelRange(ctx, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, l.inner)),
                      [&](int64_t b, int64_t e) {
                        for (int64_t r = b; r < e; ++r) {
                          const int64_t c = r % l.channels;
                          span(src + r * l.inner, l.inner, scales[c], zps[c], dst + r * l.inner);
                        }
                      });
        return Status::Ok();
      }
    });
  }

 private:
  int64_t axis_;
};

class DequantizeLinearKernel final : public OpKernel {
 public:
  explicit DequantizeLinearKernel(int64_t axis) : axis_(axis) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* scale_t, ctx.RequiredInput(1));
    const Tensor* zp_t = ctx.input(2);
    QK_RETURN_IF_ERROR(CheckScaleType(*scale_t, "x_scale (input #1)"));
    if (zp_t) {
      QK_CHECK_ARG(zp_t->dtype() == x->dtype(), "x_zero_point type {} differs from x type {}",
                   DTypeName(zp_t->dtype()), DTypeName(x->dtype()));
    }
    QK_ASSIGN_OR_RETURN(ParamLayout l, ResolveParamLayout(x->shape(), *scale_t, zp_t, axis_));
    const std::vector<float> scales = ReadScales(*scale_t);
    const std::vector<int32_t> zps = zp_t ? ReadZeroPoints(*zp_t) : std::vector<int32_t>(scales.size(), 0);
    if (x->dtype() == DType::kInt32) {
      for (int32_t z : zps) QK_CHECK_ARG(z == 0, "int32 DequantizeLinear requires a zero point of 0, got {}", z);
    }
    const DType out_type = scale_t->dtype() == DType::kFloat64 ? DType::kFloat32 : scale_t->dtype();
    return DispatchQuantType(x->dtype(), "input x", [&](auto tag) -> Status {
      using T = decltype(tag);
      Tensor yf;
      float* dst;
      Tensor* y = nullptr;
      if (out_type == DType::kFloat32) {
        QK_ASSIGN_OR_RETURN(y, ctx.Output(0, DType::kFloat32, x->shape()));
        dst = y->data<float>();
      } else {
        QK_ASSIGN_OR_RETURN(yf, ctx.Scratch(DType::kFloat32, x->numel(), "float32 y"));
        yf = yf.Reshaped(x->shape());
        dst = yf.data<float>();
      }
      const T* src = x->data<T>();
      const int64_t rows = l.outer * l.channels;
      const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
      ParallelRange(ctx, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, l.inner)),
                    [&](int64_t b, int64_t e) {
                      for (int64_t r = b; r < e; ++r) {
                        const int64_t c = l.per_axis ? r % l.channels : 0;
                        const float s = scales[c];
                        const int32_t z = zps[c];
                        const T* in = src + r * l.inner;
                        float* out = dst + r * l.inner;
                        if constexpr (sizeof(T) == 1) {  // kernels/quantize_span: the same values
                          kernels::DequantizeBytes(in, std::is_signed_v<T>, l.inner, z, s, out, isa);
                        } else {
                          for (int64_t i = 0; i < l.inner; ++i) out[i] = quant::DequantizeValue(in[i], z, s);
                        }
                      }
                    });
      if (out_type != DType::kFloat32) return SetOutputFromFloat32(ctx, 0, yf, out_type);
      return Status::Ok();
    });
  }

 private:
  int64_t axis_;
};

// ---------------------------------------------------------------------------------------------
// DynamicQuantizeLinear

Status DynamicQuantizeLinearFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->dtype() == DType::kFloat32 || x->dtype() == DType::kFloat16 || x->dtype() == DType::kBFloat16,
               "input x must be float, got {}", DTypeName(x->dtype()));
  QK_ASSIGN_OR_RETURN(const Tensor xf, ToFloat32IfHalf(ctx, *x, "float32 x"));
  const float* src = xf.data<float>();
  const quant::DynamicParams p = quant::ComputeDynamicParams(src, xf.numel());
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kUInt8, x->shape()));
  uint8_t* dst = y->data<uint8_t>();
  if (p.scale == 0) {
    std::memset(dst, 0, static_cast<size_t>(y->numel()));
  } else {
    ParallelRange(ctx, xf.numel(), 65536, [&](int64_t b, int64_t e) {
      quant::QuantizeSpan<uint8_t>(src + b, e - b, p.scale, p.zero_point, dst + b);
    });
  }
  QK_ASSIGN_OR_RETURN(Tensor * s, ctx.Output(1, DType::kFloat32, {}));
  s->data<float>()[0] = p.scale;
  QK_ASSIGN_OR_RETURN(Tensor * z, ctx.Output(2, DType::kUInt8, {}));
  z->data<uint8_t>()[0] = p.zero_point;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Integer matrix multiplication (MatMulInteger, QLinearMatMul)

// Converts an 8-bit tensor to zero-point corrected int16 values (t.numel() of them into d). Zero
// points are indexed by (element index / zp_div) % zp_mod (per tensor: zp_mod 1).
Status ToOperand(const Tensor& t, const std::vector<int32_t>& zps, int64_t zp_div, int64_t zp_mod, QOperand* d) {
  const int64_t n = t.numel();
  auto run = [&](auto tag) -> Status {
    using T = decltype(tag);
    const T* s = t.data<T>();
    if (zp_mod == 1) {
      const int32_t z = zps[0];
      for (int64_t i = 0; i < n; ++i) d[i] = static_cast<QOperand>(static_cast<int32_t>(s[i]) - z);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        d[i] = static_cast<QOperand>(static_cast<int32_t>(s[i]) - zps[(i / zp_div) % zp_mod]);
      }
    }
    return Status::Ok();
  };
  if (t.dtype() == DType::kUInt8) return run(uint8_t{});
  if (t.dtype() == DType::kInt8) return run(int8_t{});
  return Unimplemented(fmt::format("integer matmul/conv operand of type {} (uint8 and int8 are supported)",
                                   DTypeName(t.dtype())));
}

// The same into scratch memory of the run (counted against the memory limit); `what` names it.
StatusOr<Tensor> ToOperandScratch(KernelContext& ctx, const Tensor& t, const std::vector<int32_t>& zps, int64_t zp_div,
                                  int64_t zp_mod, const char* what) {
  QK_ASSIGN_OR_RETURN(Tensor out, ctx.Scratch(DType::kInt16, t.numel(), what));
  QK_RETURN_IF_ERROR(ToOperand(t, zps, zp_div, zp_mod, out.data<QOperand>()));
  return out;
}

// Zero-point corrected constant operand (matmul B or conv weights), prepared at session creation.
using PackedOperand = std::shared_ptr<const std::vector<QOperand>>;

// Packs input w_idx if it and its zero point (input zp_idx, or absent) are constants with a valid
// layout; otherwise returns null and the operand is converted at run time (which reports errors).
// matmul_b: zero points per column (last dim); else per output channel (dim 0).
PackedOperand PackConstantOperand(const KernelInit& init, size_t w_idx, size_t zp_idx, bool matmul_b) {
  const Tensor* w = init.ConstantInput(w_idx);
  if (!w || !Is8Bit(w->dtype()) || w->rank() < 1) return nullptr;
  const Tensor* zp = init.ConstantInput(zp_idx);
  if (init.node.HasInput(zp_idx) && !zp) return nullptr;  // dynamic zero point
  if (zp && zp->dtype() != w->dtype()) return nullptr;
  const std::vector<int32_t> zps = zp ? ReadZeroPoints(*zp) : std::vector<int32_t>{0};
  const int64_t per_len = matmul_b ? w->dim(w->rank() - 1) : w->dim(0);
  if (zps.size() != 1 && !(zp->rank() == 1 && static_cast<int64_t>(zps.size()) == per_len)) return nullptr;
  if (zps.empty() || (!matmul_b && w->rank() < 3)) return nullptr;
  auto out = std::make_shared<std::vector<QOperand>>(static_cast<size_t>(w->numel()));
  const int64_t div = matmul_b || per_len == 0 ? 1 : w->numel() / per_len;
  if (!ToOperand(*w, zps, div, static_cast<int64_t>(zps.size()), out->data()).ok()) return nullptr;
  return out;
}

struct MatMulShapes {
  int64_t M = 0, K = 0, N = 0;
  Shape out_shape;
  Shape batch;                         // broadcast batch shape
  std::vector<int64_t> a_off, b_off;   // per output batch: element offset of A and B matrices
};

StatusOr<MatMulShapes> ResolveMatMul(const Shape& a_in, const Shape& b_in) {
  QK_CHECK_ARG(!a_in.empty() && !b_in.empty(), "matmul inputs must have rank >= 1 (got {} and {})",
               ShapeToString(a_in), ShapeToString(b_in));
  Shape a = a_in, b = b_in;
  const bool a_vec = a.size() == 1, b_vec = b.size() == 1;
  if (a_vec) a.insert(a.begin(), 1);
  if (b_vec) b.push_back(1);
  MatMulShapes s;
  s.M = a[a.size() - 2];
  s.K = a[a.size() - 1];
  s.N = b[b.size() - 1];
  QK_CHECK_ARG(b[b.size() - 2] == s.K, "matmul inner dimensions differ: A {} and B {}", ShapeToString(a_in),
               ShapeToString(b_in));
  Shape ab(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  QK_ASSIGN_OR_RETURN(s.batch, BroadcastShapes(ab, bb));
  const int64_t nb = NumElements(s.batch);
  const auto as = BroadcastStrides(ab, s.batch.size());
  const auto bs = BroadcastStrides(bb, s.batch.size());
  s.a_off.resize(nb);
  s.b_off.resize(nb);
  std::vector<int64_t> idx(s.batch.size(), 0);
  for (int64_t i = 0; i < nb; ++i) {
    int64_t ao = 0, bo = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      ao += idx[d] * as[d];
      bo += idx[d] * bs[d];
    }
    s.a_off[i] = ao * s.M * s.K;
    s.b_off[i] = bo * s.K * s.N;
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < s.batch[d]) break;
      idx[d] = 0;
    }
  }
  s.out_shape = s.batch;
  if (!a_vec) s.out_shape.push_back(s.M);
  if (!b_vec) s.out_shape.push_back(s.N);
  return s;
}

// Zero point / scale addressing for matmul operands: per tensor, per row of A (M entries), per
// column of B (N entries).
Status CheckMatMulParam(const Tensor* t, int64_t per_len, const char* what, const char* per_what) {
  if (!t) return Status::Ok();
  if (t->numel() == 1 && t->rank() <= 1) return Status::Ok();
  QK_CHECK_ARG(t->rank() == 1 && t->dim(0) == per_len,
               "{} must be a scalar or a 1-D tensor with one entry per {} ({}), got shape {}", what, per_what,
               per_len, ShapeToString(t->shape()));
  return Status::Ok();
}

// acc[batch, M, N] (int32) for A, B with zero points. Returns the shapes.
Status IntegerMatMul(KernelContext& ctx, const Tensor& a, const Tensor& b, const Tensor* a_zp, const Tensor* b_zp,
                     const MatMulShapes& s, const std::vector<QOperand>* packed_b, int32_t* acc) {
  QK_RETURN_IF_ERROR(CheckMatMulParam(a_zp, s.M, "a_zero_point", "row of A"));
  QK_RETURN_IF_ERROR(CheckMatMulParam(b_zp, s.N, "b_zero_point", "column of B"));
  if (a_zp) QK_CHECK_ARG(a_zp->dtype() == a.dtype(), "a_zero_point type {} differs from A type {}",
                         DTypeName(a_zp->dtype()), DTypeName(a.dtype()));
  if (b_zp) QK_CHECK_ARG(b_zp->dtype() == b.dtype(), "b_zero_point type {} differs from B type {}",
                         DTypeName(b_zp->dtype()), DTypeName(b.dtype()));
  const std::vector<int32_t> za = a_zp ? ReadZeroPoints(*a_zp) : std::vector<int32_t>{0};
  const std::vector<int32_t> zb = b_zp ? ReadZeroPoints(*b_zp) : std::vector<int32_t>{0};
  // row = i / K (mod M)
  QK_ASSIGN_OR_RETURN(const Tensor qa, ToOperandScratch(ctx, a, za, s.K, static_cast<int64_t>(za.size()), "int16 A"));
  Tensor qb;
  const QOperand* qb_data = packed_b ? packed_b->data() : nullptr;
  if (!packed_b) {  // col = i % N
    QK_ASSIGN_OR_RETURN(qb, ToOperandScratch(ctx, b, zb, 1, static_cast<int64_t>(zb.size()), "int16 B"));
    qb_data = qb.data<QOperand>();
  }
  const int64_t nb = static_cast<int64_t>(s.a_off.size());
  if (s.M == 0 || s.N == 0 || nb == 0) return Status::Ok();
  // Work items: (batch, block of rows).
  const int64_t work_per_row = std::max<int64_t>(1, s.K * s.N);
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>(s.M, (1 << 16) / work_per_row + 1));
  const int64_t blocks = (s.M + rows_per_block - 1) / rows_per_block;
  ParallelRange(ctx, nb * blocks, (nb * blocks * work_per_row * rows_per_block > (1 << 18)) ? 1 : nb * blocks + 1,
                [&](int64_t begin, int64_t end) {
                  for (int64_t w = begin; w < end; ++w) {
                    const int64_t bi = w / blocks, m0 = (w % blocks) * rows_per_block;
                    const int64_t mb = std::min(rows_per_block, s.M - m0);
                    quant::IntegerGemm(mb, s.N, s.K, qa.data<QOperand>() + s.a_off[bi] + m0 * s.K, s.K,
                                       qb_data + s.b_off[bi], s.N, acc + (bi * s.M + m0) * s.N, s.N);
                  }
                });
  return Status::Ok();
}

Status MatMulIntegerFn(KernelContext& ctx, const std::vector<QOperand>* packed_b) {
  QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* b, ctx.RequiredInput(1));
  QK_CHECK_ARG(Is8Bit(a->dtype()) && Is8Bit(b->dtype()), "A and B must be uint8 or int8 (got {} and {})",
               DTypeName(a->dtype()), DTypeName(b->dtype()));
  QK_ASSIGN_OR_RETURN(MatMulShapes s, ResolveMatMul(a->shape(), b->shape()));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt32, s.out_shape));
  return IntegerMatMul(ctx, *a, *b, ctx.input(2), ctx.input(3), s, packed_b, y->data<int32_t>());
}

Status QLinearMatMulFn(KernelContext& ctx, const std::vector<QOperand>* packed_b) {
  const Tensor* in[8];
  for (size_t i = 0; i < 8; ++i) {
    QK_ASSIGN_OR_RETURN(in[i], ctx.RequiredInput(i));
  }
  const Tensor &a = *in[0], &a_scale = *in[1], &b = *in[3], &b_scale = *in[4], &y_scale = *in[6], &y_zp = *in[7];
  QK_CHECK_ARG(Is8Bit(a.dtype()) && Is8Bit(b.dtype()), "a and b must be uint8 or int8 (got {} and {})",
               DTypeName(a.dtype()), DTypeName(b.dtype()));
  QK_CHECK_ARG(Is8Bit(y_zp.dtype()), "y_zero_point must be uint8 or int8, got {}", DTypeName(y_zp.dtype()));
  QK_RETURN_IF_ERROR(CheckScaleType(a_scale, "a_scale"));
  QK_RETURN_IF_ERROR(CheckScaleType(b_scale, "b_scale"));
  QK_RETURN_IF_ERROR(CheckScaleType(y_scale, "y_scale"));
  QK_CHECK_ARG(y_scale.numel() == 1 && y_zp.numel() == 1, "y_scale and y_zero_point must be per-tensor");
  QK_ASSIGN_OR_RETURN(MatMulShapes s, ResolveMatMul(a.shape(), b.shape()));
  QK_RETURN_IF_ERROR(CheckMatMulParam(&a_scale, s.M, "a_scale", "row of a"));
  QK_RETURN_IF_ERROR(CheckMatMulParam(&b_scale, s.N, "b_scale", "column of b"));
  const int64_t total = NumElements(s.out_shape);
  QK_ASSIGN_OR_RETURN(Tensor acc_t, ctx.Scratch(DType::kInt32, total, "int32 accumulator"));
  int32_t* acc = acc_t.data<int32_t>();
  QK_RETURN_IF_ERROR(IntegerMatMul(ctx, a, b, in[2], in[5], s, packed_b, acc));
  const std::vector<float> as = ReadScales(a_scale), bs = ReadScales(b_scale);
  const float ys = static_cast<float>(y_scale.GetAsDouble(0));
  const int32_t yz = static_cast<int32_t>(y_zp.GetAsInt64(0));
  // Multipliers per (row, column): (a_scale[m] * b_scale[n]) / y_scale in float32.
  // Per-row a_scale and per-column b_scale make this M x N: scratch like the accumulator.
  const int64_t am = static_cast<int64_t>(as.size()), bn = static_cast<int64_t>(bs.size());
  QK_ASSIGN_OR_RETURN(Tensor mult_t, ctx.Scratch(DType::kFloat32, am * bn, "requantize multipliers"));
  float* mult = mult_t.data<float>();
  for (int64_t i = 0; i < am; ++i)
    for (int64_t j = 0; j < bn; ++j) mult[i * bn + j] = quant::RequantizeMultiplier(as[i], bs[j], ys);
  return DispatchQuantType(y_zp.dtype(), "y_zero_point", [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (sizeof(T) > 2) {
      return Unimplemented("QLinearMatMul output must be 8-bit");
    } else {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, y_zp.dtype(), s.out_shape));
      T* dst = y->data<T>();
      const int64_t rows = s.N == 0 ? 0 : total / s.N;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t m = r % s.M;
        const float* mrow = mult + (am == 1 ? 0 : m) * bn;
        if (bn == 1) {
          quant::RequantizeSpan<T>(acc + r * s.N, s.N, mrow[0], yz, dst + r * s.N);
        } else {
          for (int64_t n = 0; n < s.N; ++n) dst[r * s.N + n] = quant::Requantize<T>(acc[r * s.N + n], mrow[n], yz);
        }
      }
      return Status::Ok();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Integer convolution (ConvInteger, QLinearConv)

struct ConvAttrs {
  std::string auto_pad = "NOTSET";
  std::vector<int64_t> dilations, kernel_shape, pads, strides;
  int64_t group = 1;
};

StatusOr<ConvAttrs> ReadConvAttrs(const Node& node) {
  ConvAttrs a;
  a.auto_pad = node.AttrString("auto_pad", "NOTSET");
  a.dilations = node.AttrInts("dilations");
  a.kernel_shape = node.AttrInts("kernel_shape");
  a.pads = node.AttrInts("pads");
  a.strides = node.AttrInts("strides");
  a.group = node.AttrInt("group", 1);
  QK_CHECK_ARG(a.auto_pad == "NOTSET" || a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER" ||
                   a.auto_pad == "VALID",
               "auto_pad '{}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", a.auto_pad);
  QK_CHECK_ARG(a.group >= 1, "group must be >= 1, got {}", a.group);
  for (int64_t d : a.dilations) QK_CHECK_ARG(d >= 1, "dilations must be >= 1, got {}", d);
  for (int64_t s : a.strides) QK_CHECK_ARG(s >= 1, "strides must be >= 1, got {}", s);
  for (int64_t p : a.pads) QK_CHECK_ARG(p >= 0, "pads must be >= 0, got {}", p);
  for (int64_t k : a.kernel_shape) QK_CHECK_ARG(k >= 1, "kernel_shape entries must be >= 1, got {}", k);
  return a;
}

struct ConvGeometry {
  int64_t N = 0, C = 0, M = 0, group = 1, Cg = 0, Mg = 0;
  size_t nd = 0;
  Shape in_sp, k_sp, out_sp;
  std::vector<int64_t> stride, dil, pad_begin;
  int64_t in_size = 1, k_size = 1, out_size = 1;
  Shape out_shape;
};

StatusOr<ConvGeometry> ResolveConv(const ConvAttrs& a, const Shape& x, const Shape& w) {
  QK_CHECK_ARG(x.size() >= 3, "input x must have rank >= 3 (N, C, spatial...), got {}", ShapeToString(x));
  QK_CHECK_ARG(w.size() == x.size(), "weight rank {} differs from input rank {}", w.size(), x.size());
  ConvGeometry g;
  g.nd = x.size() - 2;
  g.N = x[0];
  g.C = x[1];
  g.M = w[0];
  g.group = a.group;
  QK_CHECK_ARG(g.C % g.group == 0 && g.M % g.group == 0, "channels ({} in, {} out) not divisible by group {}", g.C,
               g.M, g.group);
  g.Cg = g.C / g.group;
  g.Mg = g.M / g.group;
  QK_CHECK_ARG(w[1] == g.Cg, "weight has {} input channels per group, expected {} (C={} / group={})", w[1], g.Cg,
               g.C, g.group);
  g.in_sp.assign(x.begin() + 2, x.end());
  g.k_sp.assign(w.begin() + 2, w.end());
  if (!a.kernel_shape.empty()) {
    QK_CHECK_ARG(a.kernel_shape == g.k_sp, "kernel_shape {} does not match weight shape {}",
                 ShapeToString(a.kernel_shape), ShapeToString(w));
  }
  auto per_dim = [&](const std::vector<int64_t>& v, const char* what, std::vector<int64_t>* out) -> Status {
    if (v.empty()) {
      out->assign(g.nd, 1);
      return Status::Ok();
    }
    QK_CHECK_ARG(v.size() == g.nd, "{} has {} entries, expected {}", what, v.size(), g.nd);
    *out = v;
    return Status::Ok();
  };
  QK_RETURN_IF_ERROR(per_dim(a.strides, "strides", &g.stride));
  QK_RETURN_IF_ERROR(per_dim(a.dilations, "dilations", &g.dil));
  std::vector<int64_t> pads = a.pads;
  if (pads.empty()) pads.assign(2 * g.nd, 0);
  QK_CHECK_ARG(pads.size() == 2 * g.nd, "pads has {} entries, expected {}", pads.size(), 2 * g.nd);
  g.pad_begin.assign(g.nd, 0);
  g.out_sp.assign(g.nd, 0);
  for (size_t d = 0; d < g.nd; ++d) {
    const int64_t ek = (g.k_sp[d] - 1) * g.dil[d] + 1;
    const int64_t in = g.in_sp[d];
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      const int64_t out = (in + g.stride[d] - 1) / g.stride[d];
      const int64_t total = std::max<int64_t>(0, (out - 1) * g.stride[d] + ek - in);
      g.pad_begin[d] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.out_sp[d] = out;
    } else if (a.auto_pad == "VALID") {
      QK_CHECK_ARG(in >= ek, "input spatial dim {} ({}) smaller than the dilated kernel ({})", d, in, ek);
      g.out_sp[d] = (in - ek) / g.stride[d] + 1;
    } else {
      g.pad_begin[d] = pads[d];
      const int64_t padded = in + pads[d] + pads[d + g.nd];
      QK_CHECK_ARG(padded >= ek, "padded input spatial dim {} ({}) smaller than the dilated kernel ({})", d, padded,
                   ek);
      g.out_sp[d] = (padded - ek) / g.stride[d] + 1;
    }
    g.in_size *= in;
    g.k_size *= g.k_sp[d];
    g.out_size *= g.out_sp[d];
  }
  g.out_shape = {g.N, g.M};
  g.out_shape.insert(g.out_shape.end(), g.out_sp.begin(), g.out_sp.end());
  return g;
}

// im2col of one (batch, group) slice: col[(c * k_size + kidx), o] = x[c, in(o, kidx)] or `pad`.
template <typename T>
void Im2Col(const ConvGeometry& g, const T* x, T* col, T pad) {
  const size_t nd = g.nd;
  std::vector<int64_t> kidx(nd), oidx(nd), in_stride(nd);
  int64_t s = 1;
  for (size_t d = nd; d-- > 0;) {
    in_stride[d] = s;
    s *= g.in_sp[d];
  }
  const int64_t last = nd - 1;
  const int64_t out_last = g.out_sp[last];
  for (int64_t c = 0; c < g.Cg; ++c) {
    const T* xc = x + c * g.in_size;
    std::fill(kidx.begin(), kidx.end(), 0);
    for (int64_t k = 0; k < g.k_size; ++k) {
      T* row = col + (c * g.k_size + k) * g.out_size;
      std::fill(oidx.begin(), oidx.end(), 0);
      // Iterate over all output positions but the last dim, then the last dim in a tight loop.
      for (int64_t o = 0; o < g.out_size; o += out_last) {
        int64_t base = 0;
        bool valid = true;
        for (size_t d = 0; d + 1 < nd; ++d) {
          const int64_t p = oidx[d] * g.stride[d] - g.pad_begin[d] + kidx[d] * g.dil[d];
          if (p < 0 || p >= g.in_sp[d]) {
            valid = false;
            break;
          }
          base += p * in_stride[d];
        }
        T* r = row + o;
        if (!valid) {
          std::fill(r, r + out_last, pad);
        } else {
          const int64_t st = g.stride[last], off = kidx[last] * g.dil[last] - g.pad_begin[last];
          const int64_t in_last = g.in_sp[last];
          const T* xr = xc + base;
          for (int64_t j = 0; j < out_last; ++j) {
            const int64_t p = j * st + off;
            r[j] = (p >= 0 && p < in_last) ? xr[p] : pad;
          }
        }
        for (size_t d = nd - 1; d-- > 0;) {  // advance output index over dims [0, nd-1)
          if (++oidx[d] < g.out_sp[d]) break;
          oidx[d] = 0;
        }
      }
      for (size_t d = nd; d-- > 0;) {
        if (++kidx[d] < g.k_sp[d]) break;
        kidx[d] = 0;
      }
    }
  }
}

// acc[N, M, out...] = conv(x - x_zp, w - w_zp[m]).
Status IntegerConv(KernelContext& ctx, const ConvGeometry& g, const Tensor& x, const Tensor& w, const Tensor* x_zp,
                   const Tensor* w_zp, const std::vector<QOperand>* packed_w, int32_t* acc) {
  if (x_zp) {
    QK_CHECK_ARG(x_zp->numel() == 1, "x zero point must be a scalar (per-tensor), got shape {}",
                 ShapeToString(x_zp->shape()));
    QK_CHECK_ARG(x_zp->dtype() == x.dtype(), "x zero point type {} differs from x type {}", DTypeName(x_zp->dtype()),
                 DTypeName(x.dtype()));
  }
  if (w_zp) {
    QK_CHECK_ARG(w_zp->numel() == 1 || (w_zp->rank() == 1 && w_zp->dim(0) == g.M),
                 "w zero point must be a scalar or have one entry per output channel ({}), got shape {}", g.M,
                 ShapeToString(w_zp->shape()));
    QK_CHECK_ARG(w_zp->dtype() == w.dtype(), "w zero point type {} differs from w type {}", DTypeName(w_zp->dtype()),
                 DTypeName(w.dtype()));
  }
  const std::vector<int32_t> zx = x_zp ? ReadZeroPoints(*x_zp) : std::vector<int32_t>{0};
  const std::vector<int32_t> zw = w_zp ? ReadZeroPoints(*w_zp) : std::vector<int32_t>{0};
  const int64_t KK = g.Cg * g.k_size;
  if (g.out_size == 0 || g.M == 0 || g.N == 0) return Status::Ok();
  QK_ASSIGN_OR_RETURN(const Tensor qx, ToOperandScratch(ctx, x, zx, 1, 1, "int16 x"));
  Tensor qw;
  const QOperand* qw_data = packed_w ? packed_w->data() : nullptr;
  if (!packed_w) {  // per output channel
    QK_ASSIGN_OR_RETURN(qw, ToOperandScratch(ctx, w, zw, g.Cg * g.k_size, static_cast<int64_t>(zw.size()), "int16 w"));
    qw_data = qw.data<QOperand>();
  }
  // A 1x1, stride 1, unpadded convolution reads x directly.
  bool pointwise = true;
  for (size_t d = 0; d < g.nd; ++d) {
    pointwise = pointwise && g.k_sp[d] == 1 && g.stride[d] == 1 && g.pad_begin[d] == 0 && g.out_sp[d] == g.in_sp[d];
  }
  Tensor col;
  if (!pointwise) {
    QK_ASSIGN_OR_RETURN(col, ctx.Scratch(DType::kInt16, KK * g.out_size, "im2col"));
  }
  const int64_t work_per_row = std::max<int64_t>(1, KK * g.out_size);
  const int64_t rows_per_block = std::max<int64_t>(1, std::min<int64_t>(g.Mg, (1 << 16) / work_per_row + 1));
  const int64_t blocks = (g.Mg + rows_per_block - 1) / rows_per_block;
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t grp = 0; grp < g.group; ++grp) {
      const QOperand* xg = qx.data<QOperand>() + (n * g.C + grp * g.Cg) * g.in_size;
      const QOperand* b = xg;
      if (!pointwise) {
        Im2Col<QOperand>(g, xg, col.data<QOperand>(), 0);
        b = col.data<QOperand>();
      }
      const QOperand* wg = qw_data + grp * g.Mg * KK;
      int32_t* out = acc + (n * g.M + grp * g.Mg) * g.out_size;
      ParallelRange(ctx, blocks, blocks * work_per_row * rows_per_block > (1 << 18) ? 1 : blocks + 1,
                    [&](int64_t bb, int64_t be) {
                      for (int64_t blk = bb; blk < be; ++blk) {
                        const int64_t m0 = blk * rows_per_block, mb = std::min(rows_per_block, g.Mg - m0);
                        quant::IntegerGemm(mb, g.out_size, KK, wg + m0 * KK, KK, b, g.out_size, out + m0 * g.out_size,
                                           g.out_size);
                      }
                    });
    }
  }
  return Status::Ok();
}

// Constant QLinearConv weights packed for the int8 GEMM kernels, one block per group:
// B = W_g^T [Cg * k_size, Mg].
struct FastConvWeights {
  std::vector<std::shared_ptr<const kernels::PackedQWeights>> groups;
  // Depthwise 2-D convolutions (one input and one output channel per group) run a direct kernel
  // instead of one tiny GEMM per channel: w - w_zp per channel, [M, kh * kw].
  std::vector<int32_t> depthwise;
  // 1x1 kernels of one group, where the ISA has the direct pointwise kernel (kernels/qdirect_conv.h).
  std::shared_ptr<const kernels::QDirectConvWeights> pointwise;
};

// w_idx / w_zp_idx: the weight's and its zero point's inputs (QLinearConv 3 and 5, ConvInteger
// 1 and 3; ConvInteger's zero point is optional, 0 when absent).
// with_pointwise: also fast.pointwise (QLinearConv, and ConvIntegerToFloat's float rows).
std::optional<FastConvWeights> PackFastConvWeights(const KernelInit& init, const ConvAttrs& a, size_t w_idx,
                                                   size_t w_zp_idx, bool with_pointwise = false) {
  const Tensor* w = init.ConstantInput(w_idx);
  const Tensor* w_zp = init.ConstantInput(w_zp_idx);
  const bool zp_absent = w_zp_idx >= init.node.inputs.size() || init.node.inputs[w_zp_idx].empty();
  if (!w || !Is8Bit(w->dtype()) || w->rank() < 3 || (!w_zp && !zp_absent) || (w_zp && w_zp->dtype() != w->dtype())) {
    return std::nullopt;
  }
  const int64_t M = w->dim(0);
  if (M % a.group != 0 || (w_zp && !(w_zp->numel() == 1 || (w_zp->rank() == 1 && w_zp->dim(0) == M)))) {
    return std::nullopt;
  }
  const int64_t Mg = M / a.group, KK = w->numel() / M;
  const std::vector<int32_t> zps = w_zp ? ReadZeroPoints(*w_zp) : std::vector<int32_t>{0};
  FastConvWeights f;
  if (a.group == M && KK == w->numel() / M && w->dim(1) == 1 && w->rank() == 4) {
    f.depthwise.resize(static_cast<size_t>(M * KK));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < KK; ++k)
        f.depthwise[m * KK + k] =
            static_cast<int32_t>(w->GetAsInt64(m * KK + k)) - zps[zps.size() == 1 ? 0 : static_cast<size_t>(m)];
    return f;
  }
  if (with_pointwise && a.group == 1 && KK == w->dim(1) && kernels::QDirectConvSupported(kernels::DefaultQGemmIsa())) {
    f.pointwise = std::make_shared<const kernels::QDirectConvWeights>(
        kernels::PackQDirectConvWeights(w->raw_data(), w->dtype() == DType::kInt8, M, KK, zps));
  }
  for (int64_t grp = 0; grp < a.group; ++grp) {
    std::vector<int32_t> gz = zps.size() == 1 ? zps : std::vector<int32_t>(zps.begin() + grp * Mg, zps.begin() + (grp + 1) * Mg);
    const auto* base = static_cast<const uint8_t*>(w->raw_data()) + grp * Mg * KK;
    f.groups.push_back(kernels::PackQWeights(base, w->dtype() == DType::kInt8, /*trans_b=*/true, KK, Mg, KK, gz,
                                             kernels::DefaultQGemmIsa()));
  }
  return f;
}

// The GEMM output of image n, group grp, from output pixel `first` on (rows are output pixels,
// columns the group's output channels, written transposed: NCHW).
using ConvOutputFor = std::function<kernels::QGemmOutput(int64_t n, int64_t grp, int64_t first)>;

Status RunBlockedConv(KernelContext& ctx, const FastConvWeights& fast, const ConvGeometry& g,
                      const kernels::QConv2DShape* shape2d, const Tensor& x, int32_t x_zp,
                      const ConvOutputFor& output_for);

// The integer GEMM path of a convolution with packed constant weights (QLinearConv, ConvInteger).
// Pointwise and 2-D: RunBlockedConv. Otherwise (1-D, 3-D) im2col (pad = the input zero point) into
// A^T = [Cg * k_size, output pixels], int8 GEMM against the packed weights, requantized (bias,
// multiplier, zero point, clamp) straight into NCHW.
Status RunFastConv(KernelContext& ctx, const FastConvWeights& fast, const ConvGeometry& g, const Tensor& x,
                   int32_t x_zp, const ConvOutputFor& output_for) {
  const bool x_signed = x.dtype() == DType::kInt8;
  const int64_t KK = g.Cg * g.k_size;
  bool pointwise = true;
  for (size_t d = 0; d < g.nd; ++d) {
    pointwise = pointwise && g.k_sp[d] == 1 && g.stride[d] == 1 && g.pad_begin[d] == 0 && g.out_sp[d] == g.in_sp[d];
  }
  // Pointwise and 2-D convolutions pack blocks of pixels straight from the image; others go
  // through an im2col matrix.
  const bool direct_2d = !pointwise && g.nd == 2;
  kernels::QConv2DShape shape2d;
  if (direct_2d) {
    shape2d = {g.Cg,       g.in_sp[0], g.in_sp[1], g.k_sp[0],  g.k_sp[1],      g.out_sp[0],    g.out_sp[1],
               g.stride[0], g.stride[1], g.dil[0],   g.dil[1],   g.pad_begin[0], g.pad_begin[1]};
  }
  if (direct_2d || pointwise) {
    return RunBlockedConv(ctx, fast, g, direct_2d ? &shape2d : nullptr, x, x_zp, output_for);
  }
  // Scratch from the run's pool, reused for every image and group: the im2col matrix and the
  // packed activations.
  QK_ASSIGN_OR_RETURN(Tensor col, ctx.Scratch(DType::kUInt8, KK * g.out_size, "im2col"));
  kernels::PackedQActivations packed;
  int64_t packed_bytes = 0;
  for (const auto& w : fast.groups) {
    packed_bytes = std::max(packed_bytes, kernels::PackedQActivationsBytes(g.out_size, *w));
  }
  QK_ASSIGN_OR_RETURN(packed.storage, ctx.Scratch(DType::kUInt8, packed_bytes, "packed activations"));
  const auto* xb = static_cast<const uint8_t*>(x.raw_data());
  for (int64_t n = 0; n < g.N; ++n) {
    for (int64_t grp = 0; grp < g.group; ++grp) {
      const kernels::PackedQWeights& w = *fast.groups[grp];
      Im2Col<uint8_t>(g, xb + (n * g.C + grp * g.Cg) * g.in_size, col.data<uint8_t>(), static_cast<uint8_t>(x_zp));
      kernels::PackQActivationsTransposed(col.data<uint8_t>(), x_signed, g.out_size, KK, g.out_size, x_zp, w, &packed);
      const kernels::QGemmOutput out = output_for(n, grp, 0);
      kernels::QGemm(packed, w, out, ctx.thread_pool());
    }
  }
  return Status::Ok();
}

// The input of a 2-D conv (shape: the group's geometry) as planes that hold its padding (the
// zero point's byte) and everything the windows reach; shape becomes that of the padded planes
// (no padding left). Returns xb itself when nothing needs padding, else the padded copy (in
// `padded`, from the run's pool).
StatusOr<const uint8_t*> PadConvPlanes(KernelContext& ctx, const ConvGeometry& g, const uint8_t* xb, int32_t x_zp,
                                       kernels::QConv2DShape* shape, Tensor* padded) {
  const kernels::QConv2DShape src = *shape;
  const int64_t Hp = std::max(src.pad_top + src.H, (src.OH - 1) * src.stride_h + (src.KH - 1) * src.dilation_h + 1);
  const int64_t Wp = std::max(src.pad_left + src.W, (src.OW - 1) * src.stride_w + (src.KW - 1) * src.dilation_w + 1);
  if (Hp == src.H && Wp == src.W) return xb;
  const int64_t planes = g.N * g.C;
  QK_ASSIGN_OR_RETURN(*padded, ctx.Scratch(DType::kUInt8, planes * Hp * Wp, "padded input"));
  auto* pb = padded->data<uint8_t>();
  const auto pad = static_cast<uint8_t>(x_zp);  // the stored byte of the zero point (int8: its bit pattern)
  auto copy = [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      uint8_t* dst = pb + p * Hp * Wp;
      const uint8_t* from = xb + p * g.in_size;
      std::memset(dst, pad, static_cast<size_t>(Hp * Wp));
      for (int64_t h = 0; h < src.H; ++h) {
        std::memcpy(dst + (h + src.pad_top) * Wp + src.pad_left, from + h * src.W, static_cast<size_t>(src.W));
      }
    }
  };
  if (ThreadPool* pool = ctx.thread_pool()) {
    pool->ParallelFor(planes, 1, copy);
  } else {
    copy(0, planes);
  }
  shape->H = Hp, shape->W = Wp, shape->pad_top = 0, shape->pad_left = 0;
  return static_cast<const uint8_t*>(pb);
}

// Dense 2-D (`shape2d` set) or pointwise convolution in blocks of output pixels: each worker
// packs a block straight from the image (PackQActivationsConv2D; for pointwise the block of
// every channel, PackQActivationsTransposed) into its own cache-sized buffer and multiplies it
// at once, so the packed rows are read back from cache and the packing runs in parallel too.
Status RunBlockedConv(KernelContext& ctx, const FastConvWeights& fast, const ConvGeometry& g,
                      const kernels::QConv2DShape* shape2d, const Tensor& x, int32_t x_zp,
                      const ConvOutputFor& output_for) {
  const bool x_signed = x.dtype() == DType::kInt8;
  const int64_t k_padded = fast.groups[0]->k_padded;
  // About 192 KiB of packed rows (bytes, plus int16 words on avx2) per block, a multiple of the
  // rows the micro-kernel takes per call (amx: 32; a remainder would run the narrower VNNI one).
  const int64_t granule = kernels::QGemmRowGranule(*fast.groups[0]);
  const int64_t max_block = std::clamp<int64_t>((192 << 10) / (3 * k_padded) / granule * granule, granule, 384);
  int64_t blocks = (g.out_size + max_block - 1) / max_block;
  ThreadPool* pool = ctx.thread_pool();
  // One map at several threads: as many blocks as a multiple of the threads, of even sizes. With
  // the largest blocks and a short last one, one thread got 512 of a 784-pixel map and the other
  // 272 (ResNet-50's stride-2 downsample convs scaled 1.54x at two threads).
  const int64_t threads = pool ? pool->num_threads() : 1;
  if (g.N * g.group == 1 && threads > 1 && blocks > 1) blocks = (blocks + threads - 1) / threads * threads;
  const int64_t block = std::min(max_block, ((g.out_size + blocks - 1) / blocks + granule - 1) / granule * granule);
  blocks = (g.out_size + block - 1) / block;
  const int64_t tasks = g.N * g.group * blocks;
  // Fewer blocks than threads (small maps: 7x7 is one block): one worker packs, and the GEMM
  // splits its columns (output channels) over the pool instead.
  const bool split_columns = pool && pool->num_threads() > tasks;
  const int64_t workers = split_columns ? 1 : std::min<int64_t>(pool ? pool->num_threads() : 1, tasks);
  std::vector<kernels::PackedQActivations> packed(static_cast<size_t>(workers));
  for (auto& p : packed) {
    int64_t bytes = 0;
    for (const auto& w : fast.groups) bytes = std::max(bytes, kernels::PackedQActivationsBytes(block, *w));
    QK_ASSIGN_OR_RETURN(p.storage, ctx.Scratch(DType::kUInt8, bytes, "packed activations"));
  }
  const auto* xb = static_cast<const uint8_t*>(x.raw_data());
  // A padded 2-D convolution first copies the input into planes that hold the padding (the zero
  // point's byte) and everything the windows reach: then every output pixel takes the packer's
  // fast path (taps at fixed offsets, one load per kernel row), none the per-tap border loop.
  kernels::QConv2DShape shape;
  int64_t in_plane = g.in_size;
  Tensor padded;
  if (shape2d) {
    shape = *shape2d;
    QK_ASSIGN_OR_RETURN(xb, PadConvPlanes(ctx, g, xb, x_zp, &shape, &padded));
    in_plane = shape.H * shape.W;
  }
  std::atomic<int64_t> next_task{0};
  auto run = [&](int64_t worker) {  // worker owns packed[worker]; tasks taken in order as workers free up
    for (int64_t t = next_task.fetch_add(1); t < tasks; t = next_task.fetch_add(1)) {
      const int64_t b = t % blocks, ng = t / blocks, n = ng / g.group, grp = ng % g.group;
      const kernels::PackedQWeights& w = *fast.groups[grp];
      const int64_t first = b * block, rows = std::min(block, g.out_size - first);
      const uint8_t* xg = xb + (n * g.C + grp * g.Cg) * in_plane;
      if (shape2d) {
        kernels::PackQActivationsConv2D(xg, x_signed, shape, first, rows, x_zp, w, &packed[worker]);
      } else {
        kernels::PackQActivationsTransposed(xg + first, x_signed, rows, g.Cg, g.in_size, x_zp, w, &packed[worker]);
      }
      // Pixel rows [first, first + rows): element (m, c) at c * out_size + first + m.
      const kernels::QGemmOutput out = output_for(n, grp, first);
      kernels::QGemm(packed[worker], w, out, split_columns ? pool : nullptr);
    }
  };
  if (workers > 1) {
    pool->ParallelFor(workers, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) run(k);
    });
  } else {
    run(0);
  }
  return Status::Ok();
}

// A depthwise 2-D conv (one channel per group) on fast.depthwise: kernels::QDepthwiseConv2D per
// (image, channel), in parallel. output_for(nm, &c) sets the output fields of channel nm = n * M + m
// (requantized bytes, the sums, or floats). Each worker takes its plane and row scratch from the
// run's pool (counted against the memory limit).
using DepthwiseOutputFor = std::function<void(int64_t nm, kernels::QDepthwiseChannel* c)>;

Status RunDepthwiseConv(KernelContext& ctx, const FastConvWeights& fast, const ConvGeometry& g, const Tensor& x,
                        int32_t x_zp, const DepthwiseOutputFor& output_for) {
  kernels::QDepthwiseShape s;
  s.H = g.in_sp[0], s.W = g.in_sp[1], s.OH = g.out_sp[0], s.OW = g.out_sp[1];
  s.KH = g.k_sp[0], s.KW = g.k_sp[1], s.stride_h = g.stride[0], s.stride_w = g.stride[1];
  s.dilation_h = g.dil[0], s.dilation_w = g.dil[1], s.pad_top = g.pad_begin[0], s.pad_left = g.pad_begin[1];
  const int64_t plane_elems = kernels::QDepthwisePlaneElems(s), row_elems = kernels::QDepthwiseRowElems(s);
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  const auto* xb = static_cast<const uint8_t*>(x.raw_data());  // int8 or uint8: one byte per element
  std::mutex mu;
  Status failed;
  // Channel nm's fields into c: a struct made once per task and refilled (output_for sets the
  // same fields for every channel), not value-initialized per channel (a rep stos each: 17% of a
  // 7x7 depthwise conv's time).
  auto channel = [&](int64_t nm, kernels::QDepthwiseChannel* c) {
    c->x = xb + nm * g.in_size;
    c->x_signed = x.dtype() == DType::kInt8;
    c->x_zero_point = x_zp;
    c->w = fast.depthwise.data() + (nm % g.M) * s.KH * s.KW;
    output_for(nm, c);
  };
  if (kernels::QDepthwiseUseLanes(s, isa)) {  // small maps: 8 channels per call, in the lanes
    constexpr int64_t L = kernels::kQDepthwiseLanes;
    const int64_t lane_plane = kernels::QDepthwiseLanesPlaneElems(s), lane_acc = kernels::QDepthwiseLanesAccElems(s);
    ctx.thread_pool()->ParallelFor((g.N * g.M + L - 1) / L, 1, [&](int64_t begin, int64_t end) {
      auto plane = ctx.Scratch(DType::kInt16, lane_plane, "depthwise lane plane");
      auto acc = plane.ok() ? ctx.Scratch(DType::kInt32, lane_acc, "depthwise lane sums") : plane.status();
      auto row = acc.ok() ? ctx.Scratch(DType::kInt32, row_elems, "depthwise row") : acc.status();
      if (!row.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (failed.ok()) failed = row.status();
        return;
      }
      kernels::QDepthwiseChannel cs[L];
      for (int64_t t = begin; t < end; ++t) {
        const int n = static_cast<int>(std::min(L, g.N * g.M - t * L));
        for (int j = 0; j < n; ++j) channel(t * L + j, &cs[j]);
        kernels::QDepthwiseConv2DLanes(s, cs, n, plane.value().template data<int16_t>(),
                                       acc.value().template data<int32_t>(), row.value().template data<int32_t>());
      }
    });
    return failed;
  }
  ctx.thread_pool()->ParallelFor(g.N * g.M, 1, [&](int64_t begin, int64_t end) {
    auto plane = ctx.Scratch(DType::kInt16, plane_elems, "depthwise plane");
    auto row = plane.ok() ? ctx.Scratch(DType::kInt32, row_elems, "depthwise row") : plane.status();
    if (!plane.ok() || !row.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      if (failed.ok()) failed = plane.ok() ? row.status() : plane.status();
      return;
    }
    kernels::QDepthwiseChannel c;
    for (int64_t nm = begin; nm < end; ++nm) {
      channel(nm, &c);
      kernels::QDepthwiseConv2D(s, c, plane.value().template data<int16_t>(), row.value().template data<int32_t>(), isa);
    }
  });
  return failed;
}

// A pointwise conv (1x1, stride 1, unpadded, one group) with requantized output on
// fast.pointwise (kernels/qdirect_conv.h) where that kernel is the faster one: tasks of runs of
// about 256 pixels of one image, and when those are fewer than twice the threads (a 14x14 map is one run),
// of a share of its output channels too (multiples of the kernel's 6-channel tiles: MobileNetV2
// at two threads was 10% slower with runs alone); each task takes its panel scratch from the
// run's pool.
struct QDirectConvOutput {
  const int32_t* bias;
  const float* multiplier;
  bool y_signed;
  int32_t y_zero_point, y_min, y_max;
  void* y;
  // Or floats (ConvIntegerToFloat): kernels::QDirectConvArgs::y_float and the fields after it.
  float* y_float = nullptr;
  const float* y_scale = nullptr;
  const float* y_bias = nullptr;
  bool y_clamp = false;
  float y_clamp_lo = 0, y_clamp_hi = 0;
};

bool QDirectPointwiseFits(const FastConvWeights& fast, const ConvGeometry& g) {
  if (!fast.pointwise || g.group != 1 || fast.pointwise->M != g.M || fast.pointwise->K != g.C) return false;
  for (size_t d = 0; d < g.nd; ++d) {
    if (g.k_sp[d] != 1 || g.stride[d] != 1 || g.pad_begin[d] != 0 || g.out_sp[d] != g.in_sp[d]) return false;
  }
  return kernels::QDirectPointwiseFaster(g.M, g.C, g.out_size);
}

// The direct kernel takes stride-1 2-D convs too, as strips of 16 pixels of the output map (a
// strip may span rows: kernels::QDirectConvArgs). Per conv at one thread on Zen 3 (direct / GEMM
// time): where its weights are few, the GEMM's im2col packing costs more than its tile saves:
// Fashion CNN's 16 -> 32 3x3 at 28x28 0.77, 1 -> 16 0.5, ResNet-18's 64 x 64 3x3 at 56x56
// 0.87-0.94; with more weights the GEMM keeps up (128 x 128 at 28x28 0.97-1.02) or wins (512 x 512
// at 7x7 1.08-1.11). Maps a multiple of 16 or 100+ wide: M-LSD's 160-wide 0.84-0.92, its dilated
// conv 0.59 (the GEMM's packer gathers dilated taps one by one). Stride 2 too, as stride 1 over
// the padded planes split by row and column parity (RunQDirectConv): the first convs of few
// input channels, 0.70-0.85 of the GEMM's time (BlazeFace back's 5x5 3 -> 24 1.10 -> 0.85 ms,
// PP-OCR cls's 3x3 3 -> 8 1.19 -> 0.86 ms, ResNet's 7x7 2.19 -> 2.06 ms).
bool DirectConv2DFits(const ConvGeometry& g) {
  constexpr int64_t kMaxDirectWeights = 65536;
  const bool stride_1_or_2 = (g.stride[0] == 1 && g.stride[1] == 1) || (g.stride[0] == 2 && g.stride[1] == 2);
  return g.nd == 2 && g.group == 1 && g.k_size > 1 && stride_1_or_2 &&
         (g.out_sp[1] % 16 == 0 || g.out_sp[1] >= 100 || g.C <= 2 || g.M * g.C * g.k_size <= kMaxDirectWeights) &&
         kernels::QDirectConvSupported(kernels::DefaultQGemmIsa());
}

// A 2-D conv's weights for the direct kernel, packed on the first run that takes it (runs may be
// concurrent, hence once; a conv whose maps do not fit keeps only the GEMM's copy).
class LazyDirectWeights {
 public:
  const kernels::QDirectConvWeights& Get(const Tensor& w, const Tensor* w_zp, const ConvGeometry& g) {
    std::call_once(once_, [&] {
      const std::vector<int32_t> zps = w_zp ? ReadZeroPoints(*w_zp) : std::vector<int32_t>{0};
      weights_ = std::make_unique<const kernels::QDirectConvWeights>(
          kernels::PackQDirectConvWeights(w.raw_data(), w.dtype() == DType::kInt8, g.M, g.C * g.k_size, zps));
    });
    return *weights_;
  }

 private:
  std::once_flag once_;
  std::unique_ptr<const kernels::QDirectConvWeights> weights_;
};

Status RunQDirectConv(KernelContext& ctx, const kernels::QDirectConvWeights& w, const ConvGeometry& g,
                         const Tensor& x, int32_t x_zp, const QDirectConvOutput& out) {
  constexpr int64_t kTileRows = 6, kStrip = 16;
  const int64_t threads = ctx.thread_pool()->num_threads(), panel_elems = kernels::QDirectConvPanelElems(w);
  // About 256 pixels per run, as many runs per image as a multiple of the threads (13 runs of a
  // 56x56 map left one of two threads idle for a run: ResNet-50 static 3% slower at two threads).
  int64_t runs = (g.out_size + 255) / 256;
  if (threads > 1 && g.N == 1) runs = (runs + threads - 1) / threads * threads;
  const int64_t run_pixels = ((g.out_size + runs - 1) / runs + kStrip - 1) / kStrip * kStrip;
  runs = (g.out_size + run_pixels - 1) / run_pixels;
  const int64_t tiles = (g.M + kTileRows - 1) / kTileRows;
  const int64_t shares =
      threads > 1 ? std::clamp<int64_t>((2 * threads + g.N * runs - 1) / (g.N * runs), 1, tiles) : 1;
  const int64_t share_rows = (tiles + shares - 1) / shares * kTileRows;
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  const auto* xb = static_cast<const uint8_t*>(x.raw_data());
  // A 2-D conv (stride 1): the padded planes and each input k's offset in them.
  const bool pointwise = g.k_size == 1 && g.in_size == g.out_size;
  Tensor padded;
  std::vector<int64_t> taps;
  int64_t in_plane = g.in_size, in_w = 0;
  Tensor phases;
  if (!pointwise) {
    kernels::QConv2DShape shape{g.C,        g.in_sp[0], g.in_sp[1], g.k_sp[0], g.k_sp[1], g.out_sp[0], g.out_sp[1],
                                g.stride[0], g.stride[1], g.dil[0],   g.dil[1],  g.pad_begin[0], g.pad_begin[1]};
    QK_ASSIGN_OR_RETURN(xb, PadConvPlanes(ctx, g, xb, x_zp, &shape, &padded));
    in_plane = shape.H * shape.W;
    in_w = shape.W;
    if (g.stride[0] == 2) {
      // Stride 2 as stride 1: each padded plane split into its four (row, column) parities,
      // phase (ry, rx) holding rows ry, ry + 2, ... and columns rx, rx + 2, ...; tap (kh, kw)
      // reads phase (dy % 2, dx % 2) at (dy / 2, dx / 2), dy = kh * dilation_h, so output pixel
      // (oy, ox) reads padded (2 oy + dy, 2 ox + dx) as the stride-1 kernel walks its rows.
      const int64_t Hp = shape.H, Wp = shape.W, PH = (Hp + 1) / 2, PW = (Wp + 1) / 2;
      QK_ASSIGN_OR_RETURN(phases, ctx.Scratch(DType::kUInt8, g.N * g.C * 4 * PH * PW, "stride phases"));
      uint8_t* pb = phases.data<uint8_t>();
      const uint8_t* src_planes = xb;
      auto split = [&](int64_t begin, int64_t end) {
        for (int64_t plane = begin; plane < end; ++plane) {
          const uint8_t* src = src_planes + plane * in_plane;
          uint8_t* dst = pb + plane * 4 * PH * PW;
          std::memset(dst, static_cast<uint8_t>(x_zp), static_cast<size_t>(4 * PH * PW));
          for (int64_t y = 0; y < Hp; ++y) {
            uint8_t* even = dst + ((y % 2) * 2 * PH + y / 2) * PW;
            uint8_t* odd = even + PH * PW;
            const uint8_t* row = src + y * Wp;
            // Two loops of one stride each (one loop choosing by parity stayed scalar).
            for (int64_t i = 0; i < (Wp + 1) / 2; ++i) even[i] = row[2 * i];
            for (int64_t i = 0; i < Wp / 2; ++i) odd[i] = row[2 * i + 1];
          }
        }
      };
      ctx.thread_pool()->ParallelFor(g.N * g.C, 1, split);
      xb = pb;
      in_plane = 4 * PH * PW;
      in_w = PW;
    }
    // Tap (c, kh, kw): its row dy and column dx in the padded plane; at stride 2, their parity
    // plane and the place in it.
    const bool parity_planes = g.stride[0] == 2;
    const int64_t phase_plane = in_plane / 4;
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t kh = 0; kh < shape.KH; ++kh)
        for (int64_t kw = 0; kw < shape.KW; ++kw) {
          const int64_t dy = kh * shape.dilation_h, dx = kw * shape.dilation_w;
          taps.push_back(c * in_plane + (parity_planes ? ((dy % 2) * 2 + dx % 2) * phase_plane + (dy / 2) * in_w + dx / 2
                                                       : dy * in_w + dx));
        }
  }
  std::mutex mu;
  Status failed;
  ctx.thread_pool()->ParallelFor(g.N * runs * shares, 1, [&](int64_t begin, int64_t end) {
    auto panel = ctx.Scratch(DType::kInt16, panel_elems, "direct conv panel");
    if (!panel.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      if (failed.ok()) failed = panel.status();
      return;
    }
    for (int64_t t = begin; t < end; ++t) {
      const int64_t share = t % shares, n = t / shares / runs, p0 = t / shares % runs * run_pixels;
      kernels::QDirectConvArgs a;
      a.m_begin = std::min(g.M, share * share_rows);
      a.m_end = std::min(g.M, a.m_begin + share_rows);
      a.w = &w;
      a.x = xb + n * g.C * in_plane;
      if (!pointwise) {
        a.taps = taps.data();
        a.out_w = g.out_sp[1];
        a.in_w = in_w;
        a.ld_y = g.out_size;
      }
      a.x_signed = x.dtype() == DType::kInt8;
      a.x_zero_point = x_zp;
      a.ld = g.out_size;
      a.bias = out.bias;
      a.multiplier = out.multiplier;
      a.y_signed = out.y_signed;
      a.y_zero_point = out.y_zero_point;
      a.y_min = out.y_min;
      a.y_max = out.y_max;
      a.y = out.y ? static_cast<uint8_t*>(out.y) + n * g.M * g.out_size : nullptr;
      if (out.y_float) {
        a.y_float = out.y_float + n * g.M * g.out_size;
        a.y_scale = out.y_scale;
        a.y_bias = out.y_bias;
        a.y_clamp = out.y_clamp;
        a.y_clamp_lo = out.y_clamp_lo;
        a.y_clamp_hi = out.y_clamp_hi;
      }
      kernels::QDirectConv(a, p0, std::min(g.out_size, p0 + run_pixels), panel.value().template data<int16_t>(),
                              isa);
    }
  });
  return failed;
}

// Whether `fast` holds a depthwise conv's weights matching geometry g.
bool FastDepthwiseFits(const FastConvWeights& fast, const ConvGeometry& g) {
  return !fast.depthwise.empty() && g.nd == 2 && g.Cg == 1 && g.Mg == 1 &&
         fast.depthwise.size() == static_cast<size_t>(g.M * g.k_size);
}

// Whether `fast` holds packed GEMM weights (one block per group) matching geometry g.
bool FastGemmFits(const FastConvWeights& fast, const ConvGeometry& g) {
  return fast.groups.size() == static_cast<size_t>(g.group) && fast.groups[0]->N == g.Mg &&
         fast.groups[0]->K == g.Cg * g.k_size;
}

// An optional scalar zero point of x's type that the fast paths take (else the reference runs).
bool FastZeroPointFits(const Tensor* x_zp, const Tensor& x) {
  return !x_zp || (x_zp->numel() == 1 && x_zp->dtype() == x.dtype());
}

int32_t ZeroPointOrZero(const Tensor* zp) { return zp ? static_cast<int32_t>(zp->GetAsInt64(0)) : 0; }

// ConvInteger: the exact int32 sums of (x - x_zp)(w - w_zp). With constant weights, the int8 GEMM
// path of QLinearConv (RunFastConv) writing the accumulators; else the reference IntegerConv.
class ConvIntegerKernel final : public OpKernel {
 public:
  ConvIntegerKernel(ConvAttrs a, PackedOperand packed, std::optional<FastConvWeights> fast)
      : a_(std::move(a)), packed_(std::move(packed)), fast_(std::move(fast)) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* w, ctx.RequiredInput(1));
    QK_CHECK_ARG(Is8Bit(x->dtype()) && Is8Bit(w->dtype()), "x and w must be uint8 or int8 (got {} and {})",
                 DTypeName(x->dtype()), DTypeName(w->dtype()));
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveConv(a_, x->shape(), w->shape()));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt32, g.out_shape));
    const Tensor* x_zp = ctx.input(2);
    int32_t* acc = y->data<int32_t>();
    if (fast_ && FastZeroPointFits(x_zp, *x) && FastDepthwiseFits(*fast_, g)) {
      return RunDepthwiseConv(ctx, *fast_, g, *x, ZeroPointOrZero(x_zp),
                              [&](int64_t nm, kernels::QDepthwiseChannel* c) { c->acc_out = acc + nm * g.out_size; });
    }
    if (fast_ && FastZeroPointFits(x_zp, *x) && FastGemmFits(*fast_, g)) {
      return RunFastConv(ctx, *fast_, g, *x, ZeroPointOrZero(x_zp),
                         [&](int64_t n, int64_t grp, int64_t first) {
                           kernels::QGemmOutput out;
                           out.acc = acc + (n * g.M + grp * g.Mg) * g.out_size + first;
                           out.ldc = g.out_size;
                           out.transpose = true;
                           return out;
                         });
    }
    return IntegerConv(ctx, g, *x, *w, x_zp, ctx.input(3), packed_.get(), acc);
  }

 private:
  ConvAttrs a_;
  PackedOperand packed_;  // zero-point corrected constant weights for IntegerConv (or null)
  std::optional<FastConvWeights> fast_;
};

// com.quantkit::ConvIntegerToFloat(x_q, a_scale, x_zp, W_q, w_scale, w_zp, bias; clamp_lo, clamp_hi),
// the fused dynamic Conv (passes/fuse_quantized.cc): y = float(sum) * (a_scale * w_scale[m]) +
// bias[m], then min(max(y, clamp_lo), clamp_hi) when the clamp attributes are given, with the sum
// of ConvInteger. On the GEMM path the epilogue writes y (the same float32 operations in the
// same order as Cast -> Mul -> Add); otherwise the reference sums, then that epilogue.
class ConvIntegerToFloatKernel final : public OpKernel {
 public:
  ConvIntegerToFloatKernel(ConvAttrs a, PackedOperand packed, std::optional<FastConvWeights> fast, bool clamp,
                           float lo, float hi)
      : a_(std::move(a)), packed_(std::move(packed)), fast_(std::move(fast)), clamp_(clamp), lo_(lo), hi_(hi) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* a_scale, ctx.RequiredInput(1));
    QK_ASSIGN_OR_RETURN(const Tensor* w, ctx.RequiredInput(3));
    QK_ASSIGN_OR_RETURN(const Tensor* w_scale, ctx.RequiredInput(4));
    const Tensor* x_zp = ctx.input(2);
    const Tensor* bias = ctx.input(6);
    QK_CHECK_ARG(Is8Bit(x->dtype()) && Is8Bit(w->dtype()), "x and w must be uint8 or int8 (got {} and {})",
                 DTypeName(x->dtype()), DTypeName(w->dtype()));
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveConv(a_, x->shape(), w->shape()));
    QK_CHECK_ARG(a_scale->dtype() == DType::kFloat32 && a_scale->numel() == 1, "a_scale must be a float scalar");
    QK_CHECK_ARG(w_scale->dtype() == DType::kFloat32 && (w_scale->numel() == 1 || w_scale->numel() == g.M),
                 "w_scale must be a float scalar or have {} values, got shape {}", g.M, ShapeToString(w_scale->shape()));
    QK_CHECK_ARG(!bias || (bias->dtype() == DType::kFloat32 && bias->numel() == g.M),
                 "bias must be {} float values, got shape {}", g.M, bias ? ShapeToString(bias->shape()) : "");
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, g.out_shape));
    const float* sa = a_scale->data<float>();
    const float* ws = w_scale->data<float>();
    const bool per_channel = w_scale->numel() > 1;
    const float* bd = bias ? bias->data<float>() : nullptr;
    float* yd = y->data<float>();
    if (fast_ && FastZeroPointFits(x_zp, *x) && FastDepthwiseFits(*fast_, g)) {
      return RunDepthwiseConv(ctx, *fast_, g, *x, ZeroPointOrZero(x_zp),
                              [&](int64_t nm, kernels::QDepthwiseChannel* c) {
                                const int64_t m = nm % g.M;
                                c->y_float = yd + nm * g.out_size;
                                c->y_scale = sa[0] * ws[per_channel ? m : 0];
                                c->y_bias = bd ? bd + m : nullptr;
                                c->y_clamp = clamp_;
                                c->y_clamp_lo = lo_;
                                c->y_clamp_hi = hi_;
                              });
    }
    if (fast_ && FastZeroPointFits(x_zp, *x) && (QDirectPointwiseFits(*fast_, g) || DirectConv2DFits(g))) {
      // The direct kernel with float rows: each channel's scale a_scale * w_scale as the GEMM
      // epilogue forms it.
      std::vector<float> scale(static_cast<size_t>(g.M));
      for (int64_t m = 0; m < g.M; ++m) scale[static_cast<size_t>(m)] = sa[0] * ws[per_channel ? m : 0];
      QDirectConvOutput out{nullptr, nullptr, false, 0, 0, 0, nullptr};
      out.y_float = yd;
      out.y_scale = scale.data();
      out.y_bias = bd;
      out.y_clamp = clamp_;
      out.y_clamp_lo = lo_;
      out.y_clamp_hi = hi_;
      if (QDirectPointwiseFits(*fast_, g)) return RunQDirectConv(ctx, *fast_->pointwise, g, *x, ZeroPointOrZero(x_zp), out);
      return RunQDirectConv(ctx, direct_.Get(*w, ctx.input(5), g), g, *x, ZeroPointOrZero(x_zp), out);
    }
    if (fast_ && FastZeroPointFits(x_zp, *x) && FastGemmFits(*fast_, g)) {
      return RunFastConv(ctx, *fast_, g, *x, ZeroPointOrZero(x_zp),
                         [&](int64_t n, int64_t grp, int64_t first) {
                           kernels::QGemmOutput out;
                           out.y = yd + (n * g.M + grp * g.Mg) * g.out_size + first;
                           out.ldc = g.out_size;
                           out.transpose = true;
                           out.a_scale = sa;
                           out.b_scale = ws + (per_channel ? grp * g.Mg : 0);
                           out.b_scale_per_col = per_channel;
                           out.bias = bd ? bd + grp * g.Mg : nullptr;
                           out.clamp = clamp_;
                           out.clamp_lo = lo_;
                           out.clamp_hi = hi_;
                           return out;
                         });
    }
    const int64_t total = NumElements(g.out_shape);
    QK_ASSIGN_OR_RETURN(Tensor acc_t, ctx.Scratch(DType::kInt32, total, "int32 accumulator"));
    const int32_t* acc = acc_t.data<int32_t>();
    QK_RETURN_IF_ERROR(IntegerConv(ctx, g, *x, *w, x_zp, ctx.input(5), packed_.get(), acc_t.data<int32_t>()));
    for (int64_t nm = 0; nm < g.N * g.M; ++nm) {
      const int64_t m = nm % g.M;
      const float scale = sa[0] * ws[per_channel ? m : 0];
      for (int64_t i = 0; i < g.out_size; ++i) {
        float v = static_cast<float>(acc[nm * g.out_size + i]) * scale;
        if (bd) v = v + bd[m];
        if (clamp_) v = std::min(std::max(v, lo_), hi_);
        yd[nm * g.out_size + i] = v;
      }
    }
    return Status::Ok();
  }

 private:
  ConvAttrs a_;
  PackedOperand packed_;  // zero-point corrected constant weights for IntegerConv (or null)
  std::optional<FastConvWeights> fast_;
  bool clamp_;  // a fused Relu / Clip: y = min(max(y, lo_), hi_)
  float lo_, hi_;
  LazyDirectWeights direct_;  // DirectConv2DFits convs
};

// QLinearConv, and com.quantkit::QLinearConv (the same plus attributes q_min / q_max: a Relu or
// Clip fused as a clamp of the quantized output).
class QLinearConvKernel final : public OpKernel {
 public:
  QLinearConvKernel(ConvAttrs a, PackedOperand packed, std::optional<FastConvWeights> fast, int64_t q_min,
                    int64_t q_max)
      : a_(std::move(a)), packed_(std::move(packed)), fast_(std::move(fast)), q_min_(q_min), q_max_(q_max) {}
  Status Compute(KernelContext& ctx) override {
    const Tensor* in[8];
    for (size_t i = 0; i < 8; ++i) {
      QK_ASSIGN_OR_RETURN(in[i], ctx.RequiredInput(i));
    }
    const Tensor &x = *in[0], &x_scale = *in[1], &w = *in[3], &w_scale = *in[4], &y_scale = *in[6], &y_zp = *in[7];
    const Tensor* bias = ctx.input(8);
    QK_CHECK_ARG(Is8Bit(x.dtype()) && Is8Bit(w.dtype()), "x and w must be uint8 or int8 (got {} and {})",
                 DTypeName(x.dtype()), DTypeName(w.dtype()));
    QK_CHECK_ARG(Is8Bit(y_zp.dtype()), "y_zero_point must be uint8 or int8, got {}", DTypeName(y_zp.dtype()));
    QK_RETURN_IF_ERROR(CheckScaleType(x_scale, "x_scale"));
    QK_RETURN_IF_ERROR(CheckScaleType(w_scale, "w_scale"));
    QK_RETURN_IF_ERROR(CheckScaleType(y_scale, "y_scale"));
    QK_CHECK_ARG(x_scale.numel() == 1, "x_scale must be a scalar, got shape {}", ShapeToString(x_scale.shape()));
    QK_CHECK_ARG(y_scale.numel() == 1 && y_zp.numel() == 1, "y_scale and y_zero_point must be scalars");
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveConv(a_, x.shape(), w.shape()));
    QK_CHECK_ARG(w_scale.numel() == 1 || (w_scale.rank() == 1 && w_scale.dim(0) == g.M),
                 "w_scale must be a scalar or have one entry per output channel ({}), got shape {}", g.M,
                 ShapeToString(w_scale.shape()));
    if (bias) {
      QK_CHECK_ARG(bias->dtype() == DType::kInt32, "bias B must be int32, got {}", DTypeName(bias->dtype()));
      QK_CHECK_ARG(bias->rank() == 1 && bias->dim(0) == g.M, "bias B must have shape [{}], got {}", g.M,
                   ShapeToString(bias->shape()));
    }
    if (in[2]) {
      QK_CHECK_ARG(in[2]->numel() == 1 && in[2]->dtype() == x.dtype(), "x_zero_point must be a scalar of x's type");
    }
    const float xs = static_cast<float>(x_scale.GetAsDouble(0)), ys = static_cast<float>(y_scale.GetAsDouble(0));
    const std::vector<float> ws = ReadScales(w_scale);
    std::vector<float> mult(static_cast<size_t>(g.M));
    for (int64_t m = 0; m < g.M; ++m) mult[m] = quant::RequantizeMultiplier(xs, ws[ws.size() == 1 ? 0 : m], ys);
    const int32_t yz = static_cast<int32_t>(y_zp.GetAsInt64(0));
    const int32_t* bd = bias ? bias->data<int32_t>() : nullptr;
    const bool y_signed = y_zp.dtype() == DType::kInt8;
    const int32_t lo = static_cast<int32_t>(std::max<int64_t>(q_min_, y_signed ? -128 : 0));
    const int32_t hi = static_cast<int32_t>(std::min<int64_t>(q_max_, y_signed ? 127 : 255));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, y_zp.dtype(), g.out_shape));
    if (fast_ && FastDepthwiseFits(*fast_, g)) {
      void* yv = y->raw_data();
      return RunDepthwiseConv(ctx, *fast_, g, x, ZeroPointOrZero(in[2]),
                              [&](int64_t nm, kernels::QDepthwiseChannel* c) {
                                const int64_t m = nm % g.M;
                                c->bias = bd ? bd[m] : 0;
                                c->multiplier = mult[m];
                                c->y_zero_point = yz;
                                c->y_min = lo;
                                c->y_max = hi;
                                c->y = static_cast<uint8_t*>(yv) + nm * g.out_size;
                                c->y_signed = y_signed;
                              });
    }
    if (fast_ && QDirectPointwiseFits(*fast_, g)) {
      return RunQDirectConv(ctx, *fast_->pointwise, g, x, ZeroPointOrZero(in[2]),
                               {bd, mult.data(), y_signed, yz, lo, hi, y->raw_data()});
    }
    if (fast_ && DirectConv2DFits(g)) {
      return RunQDirectConv(ctx, direct_.Get(w, in[5], g), g, x, ZeroPointOrZero(in[2]),
                               {bd, mult.data(), y_signed, yz, lo, hi, y->raw_data()});
    }
    if (fast_ && FastGemmFits(*fast_, g)) {
      auto* yb = static_cast<uint8_t*>(y->raw_data());
      return RunFastConv(ctx, *fast_, g, x, ZeroPointOrZero(in[2]),
                         [&](int64_t n, int64_t grp, int64_t first) {
                           return RequantizedNchwOutput(g, yb + (n * g.M + grp * g.Mg) * g.out_size + first, grp, mult,
                                                        bd, yz, y_signed, lo, hi);
                         });
    }
    const int64_t total = NumElements(g.out_shape);
    QK_ASSIGN_OR_RETURN(Tensor acc_t, ctx.Scratch(DType::kInt32, total, "int32 accumulator"));
    int32_t* acc = acc_t.data<int32_t>();
    QK_RETURN_IF_ERROR(IntegerConv(ctx, g, x, w, in[2], in[5], packed_.get(), acc));
    return DispatchQuantType(y_zp.dtype(), "y_zero_point", [&](auto tag) -> Status {
      using T = decltype(tag);
      if constexpr (sizeof(T) > 2) {
        return Unimplemented("QLinearConv output must be 8-bit");
      } else {
        T* dst = y->data<T>();
        for (int64_t nm = 0; nm < g.N * g.M; ++nm) {
          const int64_t m = nm % g.M;
          int32_t* a = acc + nm * g.out_size;
          if (bd) {  // int32 bias added to the accumulator (wrapping, never UB)
            const uint32_t bv = static_cast<uint32_t>(bd[m]);
            for (int64_t i = 0; i < g.out_size; ++i) a[i] = static_cast<int32_t>(static_cast<uint32_t>(a[i]) + bv);
          }
          T* d = dst + nm * g.out_size;
          quant::RequantizeSpan<T>(a, g.out_size, mult[m], yz, d);
          for (int64_t i = 0; i < g.out_size; ++i) d[i] = static_cast<T>(std::clamp<int32_t>(d[i], lo, hi));
        }
        return Status::Ok();
      }
    });
  }

 private:
  // The GEMM epilogue of a group: rows are output pixels, columns the group's output channels,
  // written transposed (NCHW) from `y` on, requantized with the group's bias and multipliers.
  static kernels::QGemmOutput RequantizedNchwOutput(const ConvGeometry& g, uint8_t* y, int64_t grp,
                                                    const std::vector<float>& mult, const int32_t* bias, int32_t y_zp,
                                                    bool y_signed, int32_t lo, int32_t hi) {
    kernels::QGemmOutput out;
    out.q = y;
    out.ldc = g.out_size;
    out.transpose = true;
    out.q_signed = y_signed;
    out.bias_int32 = bias ? bias + grp * g.Mg : nullptr;
    out.multiplier = mult.data() + grp * g.Mg;
    out.multiplier_per_col = true;
    out.q_zero_point = y_zp;
    out.q_min = lo;
    out.q_max = hi;
    return out;
  }

  ConvAttrs a_;
  PackedOperand packed_;  // zero-point corrected constant weights (or null)
  std::optional<FastConvWeights> fast_;
  int64_t q_min_, q_max_;
  LazyDirectWeights direct_;  // DirectConv2DFits convs
};

KernelFactory QLinearConvFactory() {
  return [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(ConvAttrs a, ReadConvAttrs(init.node));
    const int64_t q_min = init.node.AttrInt("q_min", -128), q_max = init.node.AttrInt("q_max", 255);
    auto fast = PackFastConvWeights(init, a, 3, 5, /*with_pointwise=*/true);
    return std::unique_ptr<OpKernel>(
        new QLinearConvKernel(a, fast ? nullptr : PackConstantOperand(init, 3, 5, false), std::move(fast), q_min, q_max));
  };
}

// MatMulInteger / QLinearMatMul with B pre-converted when it (and its zero point) are constant.
class MatMulKernel final : public OpKernel {
 public:
  using Fn = Status (*)(KernelContext&, const std::vector<QOperand>*);
  MatMulKernel(Fn fn, PackedOperand packed) : fn_(fn), packed_(std::move(packed)) {}
  Status Compute(KernelContext& ctx) override { return fn_(ctx, packed_.get()); }

 private:
  Fn fn_;
  PackedOperand packed_;
};

KernelFactory MatMulFactory(MatMulKernel::Fn fn, size_t b_idx, size_t b_zp_idx) {
  return [fn, b_idx, b_zp_idx](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new MatMulKernel(fn, PackConstantOperand(init, b_idx, b_zp_idx, true)));
  };
}

}  // namespace

void RegisterQuantOps(KernelRegistry& r) {
  r.Register("", "QuantizeLinear", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_RETURN_IF_ERROR(CheckQdqAttrs(init.node));
    return std::unique_ptr<OpKernel>(new QuantizeLinearKernel(init.node.AttrInt("axis", 1)));
  });
  r.Register("", "DequantizeLinear", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_RETURN_IF_ERROR(CheckQdqAttrs(init.node));
    return std::unique_ptr<OpKernel>(new DequantizeLinearKernel(init.node.AttrInt("axis", 1)));
  });
  r.RegisterFunction("", "DynamicQuantizeLinear", &DynamicQuantizeLinearFn);
  r.Register("", "MatMulInteger", MatMulFactory(&MatMulIntegerFn, 1, 3));
  r.Register("", "QLinearMatMul", MatMulFactory(&QLinearMatMulFn, 3, 5));
  r.Register("", "ConvInteger", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(ConvAttrs a, ReadConvAttrs(init.node));
    auto fast = PackFastConvWeights(init, a, 1, 3);
    PackedOperand packed = fast ? nullptr : PackConstantOperand(init, 1, 3, false);
    return std::unique_ptr<OpKernel>(new ConvIntegerKernel(std::move(a), std::move(packed), std::move(fast)));
  });
  r.Register(kQuantkitDomain, "ConvIntegerToFloat", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(ConvAttrs a, ReadConvAttrs(init.node));
    auto fast = PackFastConvWeights(init, a, 3, 5, /*with_pointwise=*/true);
    PackedOperand packed = fast ? nullptr : PackConstantOperand(init, 3, 5, false);
    const bool clamp = init.node.FindAttr("clamp_lo") != nullptr;
    const float lo = init.node.AttrFloat("clamp_lo", 0.f), hi = init.node.AttrFloat("clamp_hi", 0.f);
    return std::unique_ptr<OpKernel>(
        new ConvIntegerToFloatKernel(std::move(a), std::move(packed), std::move(fast), clamp, lo, hi));
  });
  r.Register("", "QLinearConv", QLinearConvFactory());
  r.Register(kQuantkitDomain, "QLinearConv", QLinearConvFactory());
}

}  // namespace quantkit::rt
