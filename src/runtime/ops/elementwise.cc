// Elementwise binary ops: arithmetic with numpy broadcasting, comparisons, logic and bitwise ops,
// PRelu, Pow, and the variadic Sum/Mean/Max/Min. Math functions and activations live in
// elementwise_unary.cc, Cast/CastLike/Where in elementwise_cast.cc.
//
// Binary and variadic ops go through one broadcast engine (elementwise_util.h): the output shape
// is collapsed into a few dims whose innermost run is contiguous or broadcast for each input, so
// same-shape, scalar and row/channel broadcasts all become tight loops over contiguous memory.
// float16/bfloat16 are computed in float32.
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

struct BinaryOpBase {
  static constexpr bool kBoolOut = false;
  static constexpr bool kCheckDivisor = false;
  static constexpr int64_t kGrain = kCheapGrain;
};

struct AddOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T> T operator()(T a, T b) const { return WrapAdd(a, b); }
};
struct SubOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T> T operator()(T a, T b) const { return WrapSub(a, b); }
};
struct MulOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T> T operator()(T a, T b) const { return WrapMul(a, b); }
};
struct DivOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  static constexpr bool kCheckDivisor = true;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (kIsInt<T> && std::is_signed_v<T>) {
      if (b == T(-1)) return WrapNeg(a);  // INT_MIN / -1 would trap
    }
    return static_cast<T>(a / b);
  }
};
struct ModOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  static constexpr bool kCheckDivisor = true;
  bool fmod = false;
  Status Init(const KernelInit& init) {
    const int64_t f = init.node.AttrInt("fmod", 0);
    QK_CHECK_ARG(f == 0 || f == 1, "attribute fmod must be 0 or 1, got {}", f);
    fmod = f == 1;
    return Status::Ok();
  }
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      T r = std::fmod(a, b);
      if (!fmod && r != 0 && ((r < 0) != (b < 0))) r += b;
      return r;
    } else if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return T(0);
      T r = static_cast<T>(a % b);
      if (!fmod && r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
      return r;
    } else {
      return static_cast<T>(a % b);
    }
  }
};
struct MaxOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a > b || std::isnan(a)) ? a : b;
    } else {
      return a > b ? a : b;
    }
  }
};
struct MinOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      return (a < b || std::isnan(a)) ? a : b;
    } else {
      return a < b ? a : b;
    }
  }
};
struct PReluOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes | kSignedInts | kUnsignedInts;
  template <typename T>
  T operator()(T x, T slope) const {
    if constexpr (std::is_unsigned_v<T>) {
      (void)slope;
      return x;
    } else {
      return x < T(0) ? WrapMul(x, slope) : x;
    }
  }
};

struct CompareBase : BinaryOpBase {
  static constexpr bool kBoolOut = true;
};
struct EqualOp : CompareBase {
  static constexpr uint32_t kTypes = kNumericTypes | kBoolType;
  template <typename T> bool operator()(T a, T b) const { return a == b; }
};
struct GreaterOp : CompareBase {
  static constexpr uint32_t kTypes = kNumericTypes | kBoolType;
  template <typename T> bool operator()(T a, T b) const { return a > b; }
};
struct GreaterOrEqualOp : CompareBase {
  static constexpr uint32_t kTypes = kNumericTypes | kBoolType;
  template <typename T> bool operator()(T a, T b) const { return a >= b; }
};
struct LessOp : CompareBase {
  static constexpr uint32_t kTypes = kNumericTypes | kBoolType;
  template <typename T> bool operator()(T a, T b) const { return a < b; }
};
struct LessOrEqualOp : CompareBase {
  static constexpr uint32_t kTypes = kNumericTypes | kBoolType;
  template <typename T> bool operator()(T a, T b) const { return a <= b; }
};

struct AndOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kBoolType;
  template <typename T> T operator()(T a, T b) const { return a && b; }
};
struct OrOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kBoolType;
  template <typename T> T operator()(T a, T b) const { return a || b; }
};
struct XorOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kBoolType;
  template <typename T> T operator()(T a, T b) const { return a != b; }
};
struct BitwiseAndOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kIntTypes;
  template <typename T> T operator()(T a, T b) const { return static_cast<T>(a & b); }
};
struct BitwiseOrOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kIntTypes;
  template <typename T> T operator()(T a, T b) const { return static_cast<T>(a | b); }
};
struct BitwiseXorOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kIntTypes;
  template <typename T> T operator()(T a, T b) const { return static_cast<T>(a ^ b); }
};
struct BitShiftOp : BinaryOpBase {
  static constexpr uint32_t kTypes = kUnsignedInts;
  bool left = true;
  Status Init(const KernelInit& init) {
    const std::string dir = init.node.AttrString("direction", "");
    if (dir == "LEFT") {
      left = true;
    } else if (dir == "RIGHT") {
      left = false;
    } else {
      return InvalidArgument(fmt::format("attribute direction must be \"LEFT\" or \"RIGHT\", got \"{}\"", dir));
    }
    return Status::Ok();
  }
  template <typename T>
  T operator()(T a, T b) const {
    if (b >= static_cast<T>(sizeof(T) * 8)) return T(0);
    return left ? static_cast<T>(static_cast<Wide<T>>(a) << b) : static_cast<T>(a >> b);
  }
};

template <typename T>
bool HasZero(const Tensor& t) {
  const T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (p[i] == T(0)) return true;
  }
  return false;
}

// Computes out = op(a, b) with broadcasting. a, b: same dtype (not half). out preallocated with
// the broadcast shape and the op's output type.
template <typename Op, typename T>
Status BinaryTyped(const Op& op, const BcastPlan<2>& plan, const Tensor& a, const Tensor& b, Tensor* out,
                   ThreadPool* tp) {
  if constexpr (Op::kCheckDivisor && kIsInt<T>) {
    if (HasZero<T>(b)) return InvalidArgument("integer division by zero (input #1 contains 0)");
  }
  using TO = std::conditional_t<Op::kBoolOut, bool, T>;
  BinaryBroadcast(plan, a.data<T>(), b.data<T>(), out->data<TO>(), tp, Op::kGrain,
                  [&op](T x, T y) -> TO { return op(x, y); });
  return Status::Ok();
}

template <typename Op>
class BinaryKernel final : public OpKernel {
 public:
  explicit BinaryKernel(Op op) : op_(op) {}
  // Opset < 7 semantics: with broadcast=1, input #1 is aligned with input #0 starting at `axis`
  // (instead of numpy's trailing alignment); PRelu's 1-D slope applies along the channel dim.
  void SetLegacy(bool broadcast, bool has_axis, int64_t axis) {
    legacy_ = true;
    legacy_broadcast_ = broadcast;
    legacy_has_axis_ = has_axis;
    legacy_axis_ = axis;
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* b, ctx.RequiredInput(1));
    Tensor b_view;
    if (legacy_) {
      const int64_t ra = static_cast<int64_t>(a->rank()), rb = static_cast<int64_t>(b->rank());
      int64_t axis = -1;
      if constexpr (std::is_same_v<Op, PReluOp>) {
        if (rb == 1 && ra >= 2 && b->dim(0) == a->dim(1) && b->dim(0) != a->dim(ra - 1)) axis = 1;
      } else if (legacy_broadcast_ && legacy_has_axis_) {
        QK_ASSIGN_OR_RETURN(axis, NormalizeAxis(legacy_axis_, ra));
      }
      if (axis >= 0) {
        QK_CHECK_ARG(axis + rb <= ra, "input #1 of shape {} does not fit input #0 of shape {} at axis {}",
                     ShapeToString(b->shape()), ShapeToString(a->shape()), axis);
        Shape s(axis, 1);
        s.insert(s.end(), b->shape().begin(), b->shape().end());
        s.resize(ra, 1);
        b_view = b->Reshaped(s);
        b = &b_view;
      }
    }
    QK_CHECK_ARG(a->dtype() == b->dtype(), "inputs #0 and #1 must have the same type, got {} and {}",
                 DTypeName(a->dtype()), DTypeName(b->dtype()));
    const DType dt = a->dtype();
    if (!InSet(Op::kTypes, dt)) {
      return Unimplemented(fmt::format("{} does not support element type {}", ctx.node().op_type, DTypeName(dt)));
    }
    QK_ASSIGN_OR_RETURN(BcastPlan<2> plan, MakeBcastPlan<2>({&a->shape(), &b->shape()}));
    ThreadPool* tp = ctx.thread_pool();
    if constexpr (std::is_same_v<Op, PReluOp>) {
      QK_CHECK_ARG(plan.out_shape == a->shape(), "slope of shape {} is not broadcastable to X of shape {}",
                   ShapeToString(b->shape()), ShapeToString(a->shape()));
    }
    if (IsHalf(dt)) {
      if constexpr ((Op::kTypes & kHalfTypes) != 0) {
        QK_ASSIGN_OR_RETURN(Tensor af, ToFloat(*a, ctx.allocator(), tp));
        QK_ASSIGN_OR_RETURN(Tensor bf, ToFloat(*b, ctx.allocator(), tp));
        if constexpr (Op::kBoolOut) {
          QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kBool, plan.out_shape));
          return BinaryTyped<Op, float>(op_, plan, af, bf, y, tp);
        } else {
          QK_ASSIGN_OR_RETURN(Tensor tmp, Tensor::CreateUninitialized(DType::kFloat32, plan.out_shape,
                                                                      ctx.allocator(), "float32 result"));
          QK_RETURN_IF_ERROR((BinaryTyped<Op, float>(op_, plan, af, bf, &tmp, tp)));
          QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, plan.out_shape));
          StoreHalf(tmp.data<float>(), y->data<uint16_t>(), tmp.numel(), dt, tp);
          return Status::Ok();
        }
      }
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, Op::kBoolOut ? DType::kBool : dt, plan.out_shape));
    return Dispatch<Op::kTypes>(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      return BinaryTyped<Op, T>(op_, plan, *a, *b, y, tp);
    });
  }

 private:
  Op op_;
  bool legacy_ = false, legacy_broadcast_ = false, legacy_has_axis_ = false;
  int64_t legacy_axis_ = 0;
};

template <typename Op>
void RegisterBinary(KernelRegistry& r, const char* name) {
  r.Register("", name, [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(Op op, MakeOp<Op>(init));
    auto k = std::make_unique<BinaryKernel<Op>>(op);
    if (init.opset > 0 && init.opset < 7) {
      k->SetLegacy(init.node.AttrInt("broadcast", 0) != 0, init.node.FindAttr("axis") != nullptr,
                   init.node.AttrInt("axis", 0));
    }
    return std::unique_ptr<OpKernel>(std::move(k));
  });
}

// ---------------------------------------------------------------------------------------------
// Variadic Sum / Mean / Max / Min: folds pairwise into the output (which has the full broadcast shape).
template <typename Op, bool kMean>
class VariadicKernel final : public OpKernel {
 public:
  explicit VariadicKernel(const KernelInit&) {}
  Status Compute(KernelContext& ctx) override {
    const size_t n = ctx.num_inputs();
    QK_CHECK_ARG(n >= 1, "{} needs at least one input", ctx.node().op_type);
    std::vector<const Tensor*> in(n);
    for (size_t i = 0; i < n; ++i) {
      QK_ASSIGN_OR_RETURN(in[i], ctx.RequiredInput(i));
      QK_CHECK_ARG(in[i]->dtype() == in[0]->dtype(), "input #{} has type {}, input #0 has {}", i,
                   DTypeName(in[i]->dtype()), DTypeName(in[0]->dtype()));
    }
    const DType dt = in[0]->dtype();
    constexpr uint32_t kTypes = kMean ? kFloatTypes : Op::kTypes;
    if (!InSet(kTypes, dt)) {
      return Unimplemented(fmt::format("{} does not support element type {}", ctx.node().op_type, DTypeName(dt)));
    }
    Shape out_shape = in[0]->shape();
    for (size_t i = 1; i < n; ++i) {
      QK_ASSIGN_OR_RETURN(out_shape, BroadcastShapes(out_shape, in[i]->shape()));
    }
    ThreadPool* tp = ctx.thread_pool();
    Allocator* alloc = ctx.allocator();
    const bool half = IsHalf(dt);
    const DType cdt = half ? DType::kFloat32 : dt;
    // Accumulator: the output itself, or a float32 buffer for halves.
    Tensor acc_storage;
    Tensor* acc = nullptr;
    if (half) {
      QK_ASSIGN_OR_RETURN(acc_storage, Tensor::CreateUninitialized(cdt, out_shape, alloc, "float32 result"));
      acc = &acc_storage;
    } else {
      QK_ASSIGN_OR_RETURN(acc, ctx.Output(0, dt, out_shape));
    }
    constexpr uint32_t kComputeTypes = kTypes & ~kHalfTypes;
    QK_ASSIGN_OR_RETURN(Tensor first, ToFloat(*in[0], alloc, tp));
    size_t next_input = 1;
    if (n >= 2 && BroadcastShapes(first.shape(), in[1]->shape()).value() == out_shape) {
      // acc = op(in0, in1) directly.
      QK_ASSIGN_OR_RETURN(Tensor second, ToFloat(*in[1], alloc, tp));
      QK_ASSIGN_OR_RETURN(BcastPlan<2> plan, MakeBcastPlan<2>({&first.shape(), &second.shape()}));
      QK_RETURN_IF_ERROR(Dispatch<kComputeTypes>(cdt, [&](auto tag) -> Status {
        using T = decltype(tag);
        return BinaryTyped<Op, T>(Op{}, plan, first, second, acc, tp);
      }));
      next_input = 2;
    } else {
      // acc = in0 expanded to the output shape.
      QK_ASSIGN_OR_RETURN(BcastPlan<2> plan, MakeBcastPlan<2>({&out_shape, &first.shape()}));
      QK_RETURN_IF_ERROR(Dispatch<kComputeTypes>(cdt, [&](auto tag) -> Status {
        using T = decltype(tag);
        T* pacc = acc->data<T>();
        BinaryBroadcast(plan, pacc, first.data<T>(), pacc, tp, kCheapGrain, [](T, T v) { return v; });
        return Status::Ok();
      }));
    }
    for (size_t i = next_input; i < n; ++i) {
      QK_ASSIGN_OR_RETURN(Tensor next, ToFloat(*in[i], alloc, tp));
      QK_ASSIGN_OR_RETURN(BcastPlan<2> plan, MakeBcastPlan<2>({&out_shape, &next.shape()}));
      QK_RETURN_IF_ERROR(Dispatch<kComputeTypes>(cdt, [&](auto tag) -> Status {
        using T = decltype(tag);
        return BinaryTyped<Op, T>(Op{}, plan, *acc, next, acc, tp);
      }));
    }
    if constexpr (kMean) {
      QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(cdt, [&](auto tag) -> Status {
        using T = decltype(tag);
        T* p = acc->data<T>();
        const T inv = T(1) / static_cast<T>(n);
        for (int64_t i = 0; i < acc->numel(); ++i) p[i] *= inv;
        return Status::Ok();
      }));
    }
    if (half) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, out_shape));
      StoreHalf(acc->data<float>(), y->data<uint16_t>(), acc->numel(), dt, tp);
    }
    return Status::Ok();
  }
};

// ---------------------------------------------------------------------------------------------
// Pow: base type T, exponent type U (may differ), output T.
template <typename T>
T IntPow(T base, int64_t e) {
  if (e < 0) {
    if (base == T(1)) return T(1);
    if constexpr (std::is_signed_v<T>) {
      if (base == T(-1)) return (e & 1) ? T(-1) : T(1);
    }
    return T(0);
  }
  Wide<T> result = 1, b = static_cast<Wide<T>>(base);
  while (e) {
    if (e & 1) result = static_cast<Wide<T>>(result * b);
    b = static_cast<Wide<T>>(b * b);
    e >>= 1;
  }
  return static_cast<T>(result);
}

template <typename T, typename U>
inline T PowValue(T a, U b) {
  if constexpr (std::is_floating_point_v<T>) {
    if constexpr (std::is_same_v<T, U>) {
      return std::pow(a, b);
    } else {
      return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    }
  } else if constexpr (std::is_integral_v<U>) {
    int64_t e;
    if constexpr (std::is_same_v<U, uint64_t>) {
      e = b > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                         : static_cast<int64_t>(b);
    } else {
      e = static_cast<int64_t>(b);
    }
    return IntPow(a, e);
  } else {
    return FloatToInt<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
  }
}

Status PowFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* b, ctx.RequiredInput(1));
  constexpr uint32_t kBase = kFloatTypes | kIntTypes;
  constexpr uint32_t kExp = kFloatTypes | kIntTypes;
  const DType dt = a->dtype();
  if (!InSet(kBase, dt)) return Unimplemented(fmt::format("Pow does not support base type {}", DTypeName(dt)));
  if (!InSet(kExp, b->dtype())) {
    return Unimplemented(fmt::format("Pow does not support exponent type {}", DTypeName(b->dtype())));
  }
  QK_ASSIGN_OR_RETURN(BcastPlan<2> plan, MakeBcastPlan<2>({&a->shape(), &b->shape()}));
  ThreadPool* tp = ctx.thread_pool();
  Allocator* alloc = ctx.allocator();
  QK_ASSIGN_OR_RETURN(Tensor af, ToFloat(*a, alloc, tp));
  QK_ASSIGN_OR_RETURN(Tensor bf, ToFloat(*b, alloc, tp));
  const bool half = IsHalf(dt);
  Tensor tmp;
  Tensor* y = nullptr;
  if (half) {
    QK_ASSIGN_OR_RETURN(tmp, Tensor::CreateUninitialized(DType::kFloat32, plan.out_shape, alloc, "float32 result"));
    y = &tmp;
  } else {
    QK_ASSIGN_OR_RETURN(y, ctx.Output(0, dt, plan.out_shape));
  }
  QK_RETURN_IF_ERROR(Dispatch<kBase & ~kHalfTypes>(af.dtype(), [&](auto ta) -> Status {
    using T = decltype(ta);
    return Dispatch<kExp & ~kHalfTypes>(bf.dtype(), [&](auto tb) -> Status {
      using U = decltype(tb);
      const T* pa = af.data<T>();
      const U* pb = bf.data<U>();
      T* po = y->data<T>();
      if constexpr (std::is_floating_point_v<T>) {
        if (bf.numel() == 1 && af.shape() == plan.out_shape) {
          const U e = pb[0];
          if (e == U(2)) {
            ParallelRange(tp, af.numel(), kCheapGrain, [&](int64_t s, int64_t t) {
              for (int64_t i = s; i < t; ++i) po[i] = pa[i] * pa[i];
            });
            return Status::Ok();
          }
          if (e == U(1)) {
            std::memcpy(po, pa, af.nbytes());
            return Status::Ok();
          }
        }
      }
      BinaryBroadcast(plan, pa, pb, po, tp, kHeavyGrain, [](T x, U e) -> T { return PowValue<T, U>(x, e); });
      return Status::Ok();
    });
  }));
  if (half) {
    QK_ASSIGN_OR_RETURN(Tensor * out, ctx.Output(0, dt, plan.out_shape));
    StoreHalf(tmp.data<float>(), out->data<uint16_t>(), tmp.numel(), dt, tp);
  }
  return Status::Ok();
}

}  // namespace

void RegisterElementwiseOps(KernelRegistry& r) {
  RegisterBinary<AddOp>(r, "Add");
  RegisterBinary<SubOp>(r, "Sub");
  RegisterBinary<MulOp>(r, "Mul");
  RegisterBinary<DivOp>(r, "Div");
  RegisterBinary<ModOp>(r, "Mod");
  RegisterBinary<PReluOp>(r, "PRelu");
  RegisterBinary<EqualOp>(r, "Equal");
  RegisterBinary<GreaterOp>(r, "Greater");
  RegisterBinary<GreaterOrEqualOp>(r, "GreaterOrEqual");
  RegisterBinary<LessOp>(r, "Less");
  RegisterBinary<LessOrEqualOp>(r, "LessOrEqual");
  RegisterBinary<AndOp>(r, "And");
  RegisterBinary<OrOp>(r, "Or");
  RegisterBinary<XorOp>(r, "Xor");
  RegisterBinary<BitwiseAndOp>(r, "BitwiseAnd");
  RegisterBinary<BitwiseOrOp>(r, "BitwiseOr");
  RegisterBinary<BitwiseXorOp>(r, "BitwiseXor");
  RegisterBinary<BitShiftOp>(r, "BitShift");
  r.RegisterFunction("", "Pow", &PowFn);

  r.RegisterClass<VariadicKernel<AddOp, false>>("", "Sum");
  r.RegisterClass<VariadicKernel<AddOp, true>>("", "Mean");
  r.RegisterClass<VariadicKernel<MaxOp, false>>("", "Max");
  r.RegisterClass<VariadicKernel<MinOp, false>>("", "Min");

  RegisterElementwiseUnaryOps(r);
  RegisterElementwiseCastOps(r);
}

}  // namespace quantkit::rt
