// Cast, CastLike (every numeric type, float16/bfloat16 and bool) and Where.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>

#include "runtime/ops/elementwise_util.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

using namespace ew;  // NOLINT

template <typename D, typename S>
inline D ConvertValue(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    return s != S{0};
  } else if constexpr (std::is_same_v<S, bool>) {
    return static_cast<D>(s ? 1 : 0);
  } else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    return FloatToInt<D>(s);
  } else {
    return static_cast<D>(s);
  }
}

// double -> float rounded to odd, so that a second rounding to half/bfloat16 is correct.
inline float DoubleToFloatRoundOdd(double d) {
  float f = static_cast<float>(d);
  if (std::isfinite(f) && static_cast<double>(f) != d) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::fabs(static_cast<double>(f)) > std::fabs(d)) u -= 1;
    u |= 1;
    std::memcpy(&f, &u, 4);
  }
  return f;
}

// One inner run of Where; each operand is contiguous (true) or broadcast (false).
template <bool kC, bool kX, bool kY, typename T>
inline void WhereRun(const bool* c, const T* x, const T* y, T* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = c[kC ? i : 0] ? x[kX ? i : 0] : y[kY ? i : 0];
}

// ---------------------------------------------------------------------------------------------
// Where(cond, X, Y): ternary broadcast, dispatched on element size.
Status WhereFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* c, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const Tensor* y, ctx.RequiredInput(2));
  QK_CHECK_ARG(c->dtype() == DType::kBool, "condition (input #0) must be bool, got {}", DTypeName(c->dtype()));
  QK_CHECK_ARG(x->dtype() == y->dtype(), "X and Y must have the same type, got {} and {}", DTypeName(x->dtype()),
               DTypeName(y->dtype()));
  const size_t es = DTypeSize(x->dtype());
  if (es == 0) return Unimplemented(fmt::format("Where does not support type {}", DTypeName(x->dtype())));
  QK_ASSIGN_OR_RETURN(BcastPlan<3> plan, MakeBcastPlan<3>({&c->shape(), &x->shape(), &y->shape()}));
  QK_ASSIGN_OR_RETURN(Tensor * out, ctx.Output(0, x->dtype(), plan.out_shape));
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const bool* pc = c->data<bool>();
    const T* px = x->data<T>();
    const T* py = y->data<T>();
    T* po = out->data<T>();
    ForEachRun(plan, ctx.thread_pool(), kCheapGrain,
               [&](int64_t oo, const std::array<int64_t, 3>& io, int64_t n, const std::array<int64_t, 3>& st) {
                 const bool* cc = pc + io[0];
                 const T* xx = px + io[1];
                 const T* yy = py + io[2];
                 T* o = po + oo;
                 switch ((st[0] << 2) | (st[1] << 1) | st[2]) {
                   case 7: WhereRun<true, true, true>(cc, xx, yy, o, n); break;
                   case 6: WhereRun<true, true, false>(cc, xx, yy, o, n); break;
                   case 5: WhereRun<true, false, true>(cc, xx, yy, o, n); break;
                   case 4: WhereRun<true, false, false>(cc, xx, yy, o, n); break;
                   case 3: WhereRun<false, true, true>(cc, xx, yy, o, n); break;
                   case 2: WhereRun<false, true, false>(cc, xx, yy, o, n); break;
                   case 1: WhereRun<false, false, true>(cc, xx, yy, o, n); break;
                   default: WhereRun<false, false, false>(cc, xx, yy, o, n); break;
                 }
               });
  };
  switch (es) {
    case 1: run(uint8_t{}); break;
    case 2: run(uint16_t{}); break;
    case 4: run(uint32_t{}); break;
    case 8: run(uint64_t{}); break;
    default: return Unimplemented(fmt::format("Where does not support type {}", DTypeName(x->dtype())));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Cast / CastLike.
constexpr uint32_t kCastTypes = kNumericTypes | kBoolType;

Status CastTensor(const Tensor& x, DType to, Tensor* y, ThreadPool* tp, Allocator* alloc) {
  const int64_t n = x.numel();
  // Half sources go through float32 (exact).
  QK_ASSIGN_OR_RETURN(Tensor src, ToFloat(x, alloc, tp));
  return Dispatch<kCastTypes & ~kHalfTypes>(src.dtype(), [&](auto stag) -> Status {
    using S = decltype(stag);
    const S* ps = src.data<S>();
    if (IsHalf(to)) {
      uint16_t* pd = y->data<uint16_t>();
      const bool fp16 = to == DType::kFloat16;
      ParallelRange(tp, n, kCheapGrain, [&](int64_t b, int64_t e) {
        if constexpr (std::is_same_v<S, float>) {
          FloatToHalfN(ps + b, pd + b, e - b, to);
          return;
        }
        for (int64_t i = b; i < e; ++i) {
          float f;
          if constexpr (std::is_same_v<S, float>) {
            f = ps[i];
          } else if constexpr (std::is_same_v<S, bool>) {
            f = ps[i] ? 1.0f : 0.0f;
          } else {
            f = DoubleToFloatRoundOdd(static_cast<double>(ps[i]));
          }
          pd[i] = fp16 ? FloatToHalf(f) : FloatToBFloat16(f);
        }
      });
      return Status::Ok();
    }
    return Dispatch<kCastTypes & ~kHalfTypes>(to, [&](auto dtag) -> Status {
      using D = decltype(dtag);
      D* pd = y->data<D>();
      ParallelRange(tp, n, kCheapGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) pd[i] = ConvertValue<D, S>(ps[i]);
      });
      return Status::Ok();
    });
  });
}

Status CheckCastTarget(int64_t to) {
  if (to == static_cast<int64_t>(DType::kString)) return Unimplemented("casting to string is not supported");
  if (to < 0 || to > 1000 || !IsSupportedDType(static_cast<int32_t>(to))) {
    return Unimplemented(fmt::format("casting to element type {} is not supported", to));
  }
  return Status::Ok();
}

Status DoCast(KernelContext& ctx, const Tensor& x, DType to) {
  if (!InSet(kCastTypes, x.dtype())) {
    return Unimplemented(fmt::format("casting from {} is not supported", DTypeName(x.dtype())));
  }
  if (x.dtype() == to) {
    ctx.SetOutput(0, x);
    return Status::Ok();
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, to, x.shape()));
  return CastTensor(x, to, y, ctx.thread_pool(), ctx.allocator());
}

class CastKernel final : public OpKernel {
 public:
  explicit CastKernel(DType to) : to_(to) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    return DoCast(ctx, *x, to_);
  }

 private:
  DType to_;
};

Status CastLikeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* like, ctx.RequiredInput(1));
  if (!InSet(kCastTypes, like->dtype())) {
    return Unimplemented(fmt::format("casting to {} is not supported", DTypeName(like->dtype())));
  }
  return DoCast(ctx, *x, like->dtype());
}

}  // namespace

namespace ew {

void RegisterElementwiseCastOps(KernelRegistry& r) {
  r.RegisterFunction("", "Where", &WhereFn);
  r.Register("", "Cast", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    const Attribute* a = init.node.FindAttr("to");
    QK_CHECK_ARG(a != nullptr, "Cast needs the attribute 'to'");
    QK_RETURN_IF_ERROR(CheckCastTarget(a->i));
    return std::unique_ptr<OpKernel>(new CastKernel(static_cast<DType>(a->i)));
  });
  r.RegisterFunction("", "CastLike", &CastLikeFn);
}

}  // namespace ew
}  // namespace quantkit::rt
