// Gemm (transA/transB, alpha, beta, unidirectionally broadcast C; optional C from opset 11) and
// MatMul (numpy semantics: 1-D operands, batched with broadcast batch dims).
// float32 uses the packed SGEMM, float16/bfloat16 compute in float32, double and 32/64-bit
// integers use a simple loop (integers wrap on overflow).
#include <algorithm>
#include <memory>

#include "runtime/kernels/ref/sgemm.h"
#include "runtime/ops/nn_common.h"
#include "runtime/ops/op_util.h"

namespace quantkit::rt {
namespace {

bool IsGemmDType(DType d) {
  switch (d) {
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kInt32:
    case DType::kInt64:
    case DType::kUInt32:
    case DType::kUInt64:
      return true;
    default:
      return false;
  }
}

// Calls f(T{}) for the GEMM-capable dtypes (half types must be converted first).
template <typename F>
Status DispatchGemm(DType d, F&& f) {
  switch (d) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    case DType::kInt32: return f(int32_t{});
    case DType::kInt64: return f(int64_t{});
    case DType::kUInt32: return f(uint32_t{});
    case DType::kUInt64: return f(uint64_t{});
    default: return Unimplemented(fmt::format("dtype {} is not supported", DTypeName(d)));
  }
}

// Runs `compute(inputs_as_computed, output_dtype, out)` where half inputs are converted to
// float32 and the float32 result converted back into output 0.
template <typename F>
Status WithHalfConversion(KernelContext& ctx, std::vector<const Tensor*> ins, const Shape& yshape, F&& compute) {
  const DType dt = ins[0]->dtype();
  if (!IsHalf(dt)) {
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, yshape));
    return compute(ins, y);
  }
  Allocator* alloc = ctx.allocator();
  std::vector<Tensor> conv;
  conv.reserve(ins.size());
  for (const Tensor* t : ins) {
    conv.emplace_back();
    if (t) {
      QK_ASSIGN_OR_RETURN(conv.back(), ToFloat32IfHalf(ctx, *t, "float32 input"));
    }
  }
  std::vector<const Tensor*> fins;
  for (size_t i = 0; i < ins.size(); ++i) fins.push_back(ins[i] ? &conv[i] : nullptr);
  QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, yshape, alloc, "float32 output"));
  QK_RETURN_IF_ERROR(compute(fins, &yf));
  return SetOutputFromFloat32(ctx, 0, yf, dt);
}

// ------------------------------------------------------------------------------------ Gemm

// A constant float32 weight, op(B) packed once for kernels::SgemmWithPackedB; null when not worth
// it (under 16 columns: mostly padding in the 16-wide slivers).
std::unique_ptr<kernels::SgemmPackedB> PackConstantB(const Tensor& b, bool trans) {
  if (b.dtype() != DType::kFloat32 || b.rank() != 2) return nullptr;
  const int64_t K = trans ? b.dim(1) : b.dim(0), N = trans ? b.dim(0) : b.dim(1);
  if (K == 0 || N < 16) return nullptr;
  return std::make_unique<kernels::SgemmPackedB>(trans, b.data<float>(), b.dim(1), K, N);
}

// The packed B is used for this call: it is this input (constant: the same tensor every run).
// One row (a classifier head at batch 1) streams it with kernels::SgemvWithPackedB.
bool UsePackedB(const kernels::SgemmPackedB* packed, const Tensor* b, int64_t K, int64_t N) {
  return packed && b->dtype() == DType::kFloat32 && packed->depth() == K && packed->cols() == N;
}

class GemmKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    auto k = std::make_unique<GemmKernel>();
    k->trans_a_ = init.node.AttrInt("transA", 0) != 0;
    k->trans_b_ = init.node.AttrInt("transB", 0) != 0;
    k->alpha_ = init.node.AttrFloat("alpha", 1.f);
    k->beta_ = init.node.AttrFloat("beta", 1.f);
    if (const Tensor* b = init.ConstantInput(1)) {
      QK_CHECK_ARG(b->rank() == 2, "input B must be 2-D, got shape {}", ShapeToString(b->shape()));
      k->packed_b_ = PackConstantB(*b, k->trans_b_);
    }
    return std::unique_ptr<OpKernel>(std::move(k));
  }

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* b, ctx.RequiredInput(1));
    const Tensor* c = ctx.input(2);
    if (!IsGemmDType(a->dtype())) {
      return Unimplemented(fmt::format("input A has unsupported dtype {}", DTypeName(a->dtype())));
    }
    QK_CHECK_ARG(b->dtype() == a->dtype(), "input B has dtype {} but A has {}", DTypeName(b->dtype()),
                 DTypeName(a->dtype()));
    QK_CHECK_ARG(!c || c->dtype() == a->dtype(), "input C has dtype {} but A has {}", DTypeName(c->dtype()),
                 DTypeName(a->dtype()));
    QK_CHECK_ARG(a->rank() == 2, "input A must be 2-D, got shape {}", ShapeToString(a->shape()));
    QK_CHECK_ARG(b->rank() == 2, "input B must be 2-D, got shape {}", ShapeToString(b->shape()));
    const int64_t M = trans_a_ ? a->dim(1) : a->dim(0), K = trans_a_ ? a->dim(0) : a->dim(1);
    const int64_t Kb = trans_b_ ? b->dim(1) : b->dim(0), N = trans_b_ ? b->dim(0) : b->dim(1);
    QK_CHECK_ARG(K == Kb, "inner dimensions differ: op(A) is [{}, {}] and op(B) is [{}, {}] (A {}, B {}, transA={}, transB={})",
                 M, K, Kb, N, ShapeToString(a->shape()), ShapeToString(b->shape()), trans_a_, trans_b_);
    if (c) {
      const Shape& cs = c->shape();
      bool ok = cs.size() <= 2;
      if (ok && cs.size() == 2) ok = (cs[0] == 1 || cs[0] == M) && (cs[1] == 1 || cs[1] == N);
      if (ok && cs.size() == 1) ok = cs[0] == 1 || cs[0] == N;
      QK_CHECK_ARG(ok, "input C of shape {} cannot be broadcast to [{}, {}]", ShapeToString(cs), M, N);
    }
    const bool use_c = c && beta_ != 0.f;
    return WithHalfConversion(ctx, {a, b, use_c ? c : nullptr}, {M, N},
                              [&](const std::vector<const Tensor*>& in, Tensor* y) -> Status {
      return DispatchGemm(in[0]->dtype(), [&](auto tag) -> Status {
        using T = decltype(tag);
        T* yd = y->data<T>();
        const Tensor* ct = in[2];
        if (ct) {
          const Shape& cs = ct->shape();
          const int64_t cm = cs.size() == 2 ? cs[0] : 1, cn = cs.empty() ? 1 : cs.back();
          const T* cd = ct->data<T>();
          for (int64_t i = 0; i < M; ++i) {
            const T* crow = cd + (cm == 1 ? 0 : i) * cn;
            T* yrow = yd + i * N;
            if (cn == 1) {
              std::fill(yrow, yrow + N, crow[0]);
            } else {
              std::copy(crow, crow + N, yrow);
            }
          }
        }
        if constexpr (std::is_same_v<T, float>) {
          if (UsePackedB(packed_b_.get(), in[1], K, N)) {
            if (M == 1 && alpha_ == 1.f) {  // y = a B + beta C (C already in y); A [1, K] or [K, 1]: contiguous
              kernels::SgemvWithPackedB(in[0]->data<float>(), *packed_b_, ct ? beta_ : 0.f, yd, ctx.thread_pool());
              return Status::Ok();
            }
            kernels::SgemmWithPackedB(trans_a_, M, alpha_, in[0]->data<float>(), in[0]->dim(1), *packed_b_,
                                      ct ? beta_ : 0.f, yd, N, ctx.thread_pool());
            return Status::Ok();
          }
        }
        GemmT<T>(trans_a_, trans_b_, M, N, K, static_cast<T>(alpha_), in[0]->data<T>(), in[0]->dim(1),
                 in[1]->data<T>(), in[1]->dim(1), ct ? static_cast<T>(beta_) : T(0), yd, N, ctx.thread_pool());
        return Status::Ok();
      });
    });
  }

 private:
  bool trans_a_ = false, trans_b_ = false;
  float alpha_ = 1.f, beta_ = 1.f;
  std::unique_ptr<kernels::SgemmPackedB> packed_b_;  // constant float32 B, packed at creation
};

// ---------------------------------------------------------------------------------- MatMul

// y[r, j] += bias[j] over every row of the float output: the Add's one rounding per element
// (com.quantkit::FusedMatMul, passes::FuseConvActivation), while the rows are still in cache.
void AddBiasRows(KernelContext& ctx, const float* bias, float* y, int64_t rows, int64_t n) {
  auto body = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = y + r * n;
      for (int64_t j = 0; j < n; ++j) row[j] = row[j] + bias[j];
    }
  };
  ThreadPool* pool = ctx.thread_pool();
  if (pool && rows > 1 && rows * n >= (int64_t{1} << 16)) {
    pool->ParallelFor(rows, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(n, 1)), body);
  } else {
    body(0, rows);
  }
}

Status MatMulCompute(KernelContext& ctx, const kernels::SgemmPackedB* packed_b, const Tensor* bias = nullptr) {
  QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* b, ctx.RequiredInput(1));
  if (!IsGemmDType(a->dtype())) {
    return Unimplemented(fmt::format("input A has unsupported dtype {}", DTypeName(a->dtype())));
  }
  QK_CHECK_ARG(b->dtype() == a->dtype(), "input B has dtype {} but A has {}", DTypeName(b->dtype()),
               DTypeName(a->dtype()));
  QK_CHECK_ARG(a->rank() >= 1 && b->rank() >= 1, "inputs must have rank >= 1, got shapes {} and {}",
               ShapeToString(a->shape()), ShapeToString(b->shape()));
  Shape as = a->shape(), bs = b->shape();
  if (as.size() == 1) as.insert(as.begin(), 1);
  if (bs.size() == 1) bs.push_back(1);
  const int64_t M = as[as.size() - 2], K = as.back(), Kb = bs[bs.size() - 2], N = bs.back();
  QK_CHECK_ARG(K == Kb, "inner dimensions differ: A {} and B {}", ShapeToString(a->shape()), ShapeToString(b->shape()));
  const Shape batch_a(as.begin(), as.end() - 2), batch_b(bs.begin(), bs.end() - 2);
  QK_ASSIGN_OR_RETURN(Shape batch, BroadcastShapes(batch_a, batch_b));
  Shape yshape = batch;
  if (a->rank() > 1) yshape.push_back(M);
  if (b->rank() > 1) yshape.push_back(N);
  const int64_t nbatch = NumElements(batch);
  const int64_t nb_b = NumElements(batch_b);
  if (bias) {
    QK_CHECK_ARG(a->dtype() == DType::kFloat32 && bias->dtype() == DType::kFloat32 && bias->rank() == 1 &&
                     bias->dim(0) == N,
                 "the fused bias has shape {} {}, expected float32 [{}]", DTypeName(bias->dtype()),
                 ShapeToString(bias->shape()), N);
    QK_RETURN_IF_ERROR(MatMulCompute(ctx, packed_b));
    Tensor* y = ctx.produced_output(0);
    if (y && y->dtype() == DType::kFloat32 && y->numel() > 0) {  // (no output tensor when its value is unwanted)
      AddBiasRows(ctx, bias->data<float>(), y->data<float>(), y->numel() / N, N);
    }
    return Status::Ok();
  }

  return WithHalfConversion(ctx, {a, b}, yshape, [&](const std::vector<const Tensor*>& in, Tensor* y) -> Status {
    return DispatchGemm(in[0]->dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      const T* ad = in[0]->data<T>();
      const T* bd = in[1]->data<T>();
      T* yd = y->data<T>();
      ThreadPool* pool = ctx.thread_pool();
      if (nbatch == 0 || M == 0 || N == 0) return Status::Ok();
      if (nb_b == 1) {  // B is one matrix: all of A's rows in one GEMM
        if constexpr (std::is_same_v<T, float>) {
          if (b->rank() == 2 && UsePackedB(packed_b, in[1], K, N)) {
            if (nbatch * M == 1) {
              kernels::SgemvWithPackedB(ad, *packed_b, 0.f, yd, pool);
            } else {
              kernels::SgemmWithPackedB(false, nbatch * M, 1.f, ad, K, *packed_b, 0.f, yd, N, pool);
            }
            return Status::Ok();
          }
        }
        GemmT<T>(false, false, nbatch * M, N, K, T(1), ad, K, bd, N, T(0), yd, N, pool);
        return Status::Ok();
      }
      const size_t r = batch.size();
      const std::vector<int64_t> sa = BroadcastStrides(batch_a, r), sb = BroadcastStrides(batch_b, r);
      auto one = [&](int64_t i, ThreadPool* tp) {
        int64_t rem = i, oa = 0, ob = 0;
        for (size_t d = r; d-- > 0;) {
          const int64_t idx = rem % batch[d];
          rem /= batch[d];
          oa += idx * sa[d];
          ob += idx * sb[d];
        }
        GemmT<T>(false, false, M, N, K, T(1), ad + oa * M * K, K, bd + ob * K * N, N, T(0), yd + i * M * N, N, tp);
      };
      const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
      if (pool && nbatch > 1 && flops < 4e6) {
        pool->ParallelFor(nbatch, std::max<int64_t>(1, static_cast<int64_t>(1e5 / std::max(flops, 1.0))),
                          [&](int64_t s, int64_t e) {
                            for (int64_t i = s; i < e; ++i) one(i, nullptr);
                          });
      } else {
        for (int64_t i = 0; i < nbatch; ++i) one(i, pool);
      }
      return Status::Ok();
    });
  });
}

// MatMul: constant 2-D float32 weights are packed once (kernels::SgemmPackedB).
class MatMulKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    auto k = std::make_unique<MatMulKernel>();
    if (const Tensor* b = init.ConstantInput(1)) k->packed_b_ = PackConstantB(*b, false);
    return std::unique_ptr<OpKernel>(std::move(k));
  }
  // MatMul, or com.quantkit::FusedMatMul (A, B, bias): MatMul then Add of a 1-D bias.
  Status Compute(KernelContext& ctx) override { return MatMulCompute(ctx, packed_b_.get(), ctx.input(2)); }

 private:
  std::unique_ptr<kernels::SgemmPackedB> packed_b_;
};

}  // namespace

void RegisterNnGemmOps(KernelRegistry& r) {
  r.Register("", "Gemm", &GemmKernel::Create);
  r.Register("", "MatMul", &MatMulKernel::Create);
  r.Register(kQuantkitDomain, "FusedMatMul", &MatMulKernel::Create);
}

}  // namespace quantkit::rt
