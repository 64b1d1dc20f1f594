// Elementwise unary ops: math functions, activations, IsNaN/IsInf, Not/BitwiseNot, and Clip.
// float16/bfloat16 are converted to float32 in small stack blocks.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>

#include "runtime/kernels/qgemm.h"
#include "runtime/ops/elementwise_util.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

using namespace ew;  // NOLINT

// ---------------------------------------------------------------------------------------------
// Unary ops. kTypes: supported types; kBoolOut: bool output; Init(const KernelInit&) optional.
struct UnaryOpBase {
  static constexpr bool kBoolOut = false;
  static constexpr int64_t kGrain = kHeavyGrain;
};
struct CheapUnaryBase : UnaryOpBase {
  static constexpr int64_t kGrain = kCheapGrain;
};

#define QK_FLOAT_UNARY(Name, expr)                          \
  struct Name : UnaryOpBase {                               \
    static constexpr uint32_t kTypes = kFloatTypes;         \
    template <typename T>                                   \
    T operator()(T x) const {                               \
      return static_cast<T>(expr);                          \
    }                                                       \
  };
// Same with a 4-wide float32 form V() used for float arrays.
#define QK_FLOAT_UNARY_V(Name, expr, vexpr)                 \
  struct Name : UnaryOpBase {                               \
    static constexpr uint32_t kTypes = kFloatTypes;         \
    template <typename T>                                   \
    T operator()(T x) const {                               \
      return static_cast<T>(expr);                          \
    }                                                       \
    simd::v4f V(simd::v4f v) const { return vexpr; }        \
  };

QK_FLOAT_UNARY(SqrtOp, std::sqrt(x))
QK_FLOAT_UNARY_V(ExpOp, ExpT(x), simd::Exp(v))
QK_FLOAT_UNARY(LogOp, std::log(x))
QK_FLOAT_UNARY(ReciprocalOp, T(1) / x)
QK_FLOAT_UNARY(FloorOp, std::floor(x))
QK_FLOAT_UNARY(CeilOp, std::ceil(x))
QK_FLOAT_UNARY(RoundOp, std::nearbyint(x))  // default rounding mode: half to even
QK_FLOAT_UNARY(SinOp, std::sin(x))
QK_FLOAT_UNARY(CosOp, std::cos(x))
QK_FLOAT_UNARY(TanOp, std::tan(x))
QK_FLOAT_UNARY(AsinOp, std::asin(x))
QK_FLOAT_UNARY(AcosOp, std::acos(x))
QK_FLOAT_UNARY(AtanOp, std::atan(x))
QK_FLOAT_UNARY(SinhOp, std::sinh(x))
QK_FLOAT_UNARY(CoshOp, std::cosh(x))
QK_FLOAT_UNARY(AsinhOp, std::asinh(x))
QK_FLOAT_UNARY(AcoshOp, std::acosh(x))
QK_FLOAT_UNARY(AtanhOp, std::atanh(x))
QK_FLOAT_UNARY_V(ErfOp, ErfT(x), simd::Erf(v))
QK_FLOAT_UNARY_V(TanhOp, TanhT(x), simd::Tanh(v))
QK_FLOAT_UNARY_V(SoftsignOp, x / (T(1) + std::fabs(x)), v / (1.0f + simd::Abs(v)))
QK_FLOAT_UNARY_V(SigmoidOp, T(1) / (T(1) + ExpT(-x)), simd::Sigmoid(v))
QK_FLOAT_UNARY(SoftplusOp, x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)))
QK_FLOAT_UNARY(MishOp, x * std::tanh(x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x))))
#undef QK_FLOAT_UNARY
#undef QK_FLOAT_UNARY_V

struct AbsOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) {
      return x;
    } else if constexpr (std::is_floating_point_v<T>) {
      return std::fabs(x);
    } else {
      return x < T(0) ? WrapNeg(x) : x;
    }
  }
};
struct NegOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kFloatTypes | kSignedInts;
  template <typename T> T operator()(T x) const { return WrapNeg(x); }
};
struct SignOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kNumericTypes;
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    return x > T(0) ? T(1) : (x < T(0) ? static_cast<T>(-1) : T(0));
  }
};
struct ReluOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kFloatTypes | kSignedInts;
  template <typename T> T operator()(T x) const { return x < T(0) ? T(0) : x; }  // NaN stays NaN
  simd::v4f V(simd::v4f v) const { return v < 0.0f ? simd::Splat(0.0f) : v; }
};
struct NotOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kBoolType;
  template <typename T> T operator()(T x) const { return !x; }
};
struct BitwiseNotOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kIntTypes;
  template <typename T> T operator()(T x) const { return static_cast<T>(~x); }
};
struct IsNaNOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr bool kBoolOut = true;
  template <typename T> bool operator()(T x) const { return std::isnan(x); }
};
struct IsInfOp : CheapUnaryBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr bool kBoolOut = true;
  bool neg = true, pos = true;
  Status Init(const KernelInit& init) {
    neg = init.node.AttrInt("detect_negative", 1) != 0;
    pos = init.node.AttrInt("detect_positive", 1) != 0;
    return Status::Ok();
  }
  template <typename T>
  bool operator()(T x) const {
    return std::isinf(x) && ((x > 0 && pos) || (x < 0 && neg));
  }
};

struct LeakyReluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr int64_t kGrain = kCheapGrain;
  float alpha = 0.01f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", 0.01f);
    return Status::Ok();
  }
  template <typename T> T operator()(T x) const { return x < T(0) ? static_cast<T>(alpha) * x : x; }
  simd::v4f V(simd::v4f v) const { return v < 0.0f ? v * alpha : v; }
};
struct ThresholdedReluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr int64_t kGrain = kCheapGrain;
  float alpha = 1.0f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", 1.0f);
    return Status::Ok();
  }
  template <typename T> T operator()(T x) const { return x > static_cast<T>(alpha) ? x : T(0); }
  simd::v4f V(simd::v4f v) const { return v > alpha ? v : simd::Splat(0.0f); }
};
struct EluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  float alpha = 1.0f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", 1.0f);
    return Status::Ok();
  }
  template <typename T> T operator()(T x) const { return x < T(0) ? static_cast<T>(alpha) * std::expm1(x) : x; }
};
struct SeluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  float alpha = 1.67326319217681884765625f, gamma = 1.05070102214813232421875f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", alpha);
    gamma = init.node.AttrFloat("gamma", gamma);
    return Status::Ok();
  }
  template <typename T>
  T operator()(T x) const {
    return x > T(0) ? static_cast<T>(gamma) * x : static_cast<T>(gamma) * (static_cast<T>(alpha) * ExpT(x) - static_cast<T>(alpha));
  }
  simd::v4f V(simd::v4f v) const { return v > 0.0f ? v * gamma : (simd::Exp(v) * alpha - alpha) * gamma; }
};
struct CeluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  float alpha = 1.0f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", 1.0f);
    QK_CHECK_ARG(alpha != 0.0f, "attribute alpha must not be 0");
    return Status::Ok();
  }
  template <typename T>
  T operator()(T x) const {
    const T a = static_cast<T>(alpha);
    return std::max(T(0), x) + std::min(T(0), a * std::expm1(x / a));
  }
};
struct HardSigmoidOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr int64_t kGrain = kCheapGrain;
  float alpha = 0.2f, beta = 0.5f;
  Status Init(const KernelInit& init) {
    alpha = init.node.AttrFloat("alpha", 0.2f);
    beta = init.node.AttrFloat("beta", 0.5f);
    return Status::Ok();
  }
  template <typename T>
  T operator()(T x) const {
    return std::max(T(0), std::min(T(1), static_cast<T>(alpha) * x + static_cast<T>(beta)));
  }
  simd::v4f V(simd::v4f v) const {
    return simd::KeepNaN(v, simd::Max(simd::Min(v * alpha + beta, simd::Splat(1.0f)), simd::Splat(0.0f)));
  }
};
struct HardSwishOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  static constexpr int64_t kGrain = kCheapGrain;
  template <typename T>
  T operator()(T x) const {
    return x * std::max(T(0), std::min(T(1), x * static_cast<T>(1.0 / 6.0) + static_cast<T>(0.5)));
  }
  simd::v4f V(simd::v4f v) const {
    return simd::KeepNaN(
        v, v * simd::Max(simd::Min(v * static_cast<float>(1.0 / 6.0) + 0.5f, simd::Splat(1.0f)), simd::Splat(0.0f)));
  }
};
struct GeluOp : UnaryOpBase {
  static constexpr uint32_t kTypes = kFloatTypes;
  bool tanh_approx = false;
  Status Init(const KernelInit& init) {
    const std::string a = init.node.AttrString("approximate", "none");
    if (a == "none") {
      tanh_approx = false;
    } else if (a == "tanh") {
      tanh_approx = true;
    } else {
      return InvalidArgument(fmt::format("attribute approximate must be \"none\" or \"tanh\", got \"{}\"", a));
    }
    return Status::Ok();
  }
  template <typename T>
  T operator()(T x) const {
    if (tanh_approx) {
      const T k = static_cast<T>(0.7978845608028654);  // sqrt(2/pi)
      return T(0.5) * x * (T(1) + TanhT(k * (x + static_cast<T>(0.044715) * x * x * x)));
    }
    return T(0.5) * x * (T(1) + ErfT(x * static_cast<T>(0.7071067811865476)));
  }
  simd::v4f V(simd::v4f v) const {
    if (tanh_approx) return 0.5f * v * (1.0f + simd::Tanh(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    return 0.5f * v * (1.0f + simd::Erf(v * 0.7071067811865476f));
  }
};

// y = op(x) over float arrays, with the op's 4-wide form when it has one.
template <typename Op>
inline void ApplyFloat(const Op& op, const float* x, float* y, int64_t n) {
  if constexpr (requires(simd::v4f v) { op.V(v); }) {
    simd::Map(x, y, n, [&op](simd::v4f v) { return op.V(v); });
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = op(x[i]);
  }
}

template <typename Op>
class UnaryKernel final : public OpKernel {
 public:
  explicit UnaryKernel(Op op) : op_(op) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const DType dt = x->dtype();
    if (!InSet(Op::kTypes, dt)) {
      return Unimplemented(fmt::format("{} does not support element type {}", ctx.node().op_type, DTypeName(dt)));
    }
    const int64_t n = x->numel();
    ThreadPool* tp = ctx.thread_pool();
    const Op& op = op_;
    if (IsHalf(dt)) {
      if constexpr ((Op::kTypes & kHalfTypes) != 0) {
        const uint16_t* src = x->data<uint16_t>();
        if constexpr (Op::kBoolOut) {
          QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kBool, x->shape()));
          bool* dst = y->data<bool>();
          ParallelRange(tp, n, Op::kGrain, [&](int64_t b, int64_t e) {
            float buf[512];
            for (int64_t i0 = b; i0 < e; i0 += 512) {
              const int64_t m = std::min<int64_t>(512, e - i0);
              HalfToFloatN(src + i0, buf, m, dt);
              for (int64_t j = 0; j < m; ++j) dst[i0 + j] = op(buf[j]);
            }
          });
        } else {
          QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, x->shape()));
          uint16_t* dst = y->data<uint16_t>();
          ParallelRange(tp, n, Op::kGrain, [&](int64_t b, int64_t e) {
            float buf[512];
            for (int64_t i0 = b; i0 < e; i0 += 512) {
              const int64_t m = std::min<int64_t>(512, e - i0);
              HalfToFloatN(src + i0, buf, m, dt);
              ApplyFloat(op, buf, buf, m);
              FloatToHalfN(buf, dst + i0, m, dt);
            }
          });
        }
        return Status::Ok();
      }
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, Op::kBoolOut ? DType::kBool : dt, x->shape()));
    return Dispatch<Op::kTypes & ~kHalfTypes>(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      using TO = std::conditional_t<Op::kBoolOut, bool, T>;
      const T* src = x->data<T>();
      TO* dst = y->data<TO>();
      ParallelRange(tp, n, Op::kGrain, [&](int64_t b, int64_t e) {
        if constexpr (std::is_same_v<T, float> && !Op::kBoolOut) {
          ApplyFloat(op, src + b, dst + b, e - b);
        } else {
          for (int64_t i = b; i < e; ++i) dst[i] = op(src[i]);
        }
      });
      return Status::Ok();
    });
  }

 private:
  Op op_;
};

template <typename Op>
void RegisterUnary(KernelRegistry& r, const char* name) {
  r.Register("", name, [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    QK_ASSIGN_OR_RETURN(Op op, MakeOp<Op>(init));
    return std::unique_ptr<OpKernel>(new UnaryKernel<Op>(op));
  });
}

// ---------------------------------------------------------------------------------------------
// Clip: opset < 11 reads attributes min/max (float only); opset >= 11 optional scalar inputs.
class ClipKernel final : public OpKernel {
 public:
  explicit ClipKernel(const KernelInit& init) : opset_(init.opset) {
    if (opset_ < 11) {
      attr_min_ = init.node.AttrFloat("min", -std::numeric_limits<float>::infinity());
      attr_max_ = init.node.AttrFloat("max", std::numeric_limits<float>::infinity());
    }
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const DType dt = x->dtype();
    const Tensor* tmin = opset_ >= 11 ? ctx.input(1) : nullptr;
    const Tensor* tmax = opset_ >= 11 ? ctx.input(2) : nullptr;
    for (const Tensor* t : {tmin, tmax}) {
      if (!t) continue;
      QK_CHECK_ARG(t->dtype() == dt, "min/max must have the input's type {}, got {}", DTypeName(dt),
                   DTypeName(t->dtype()));
      QK_CHECK_ARG(t->numel() == 1, "min/max must be scalars, got shape {}", ShapeToString(t->shape()));
    }
    if (!InSet(kNumericTypes, dt)) return Unimplemented(fmt::format("Clip does not support type {}", DTypeName(dt)));
    ThreadPool* tp = ctx.thread_pool();
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, x->shape()));
    const int64_t n = x->numel();
    if (IsHalf(dt)) {
      float lo = opset_ < 11 ? attr_min_ : -std::numeric_limits<float>::infinity();
      float hi = opset_ < 11 ? attr_max_ : std::numeric_limits<float>::infinity();
      if (tmin) HalfToFloatN(tmin->data<uint16_t>(), &lo, 1, dt);
      if (tmax) HalfToFloatN(tmax->data<uint16_t>(), &hi, 1, dt);
      const uint16_t* src = x->data<uint16_t>();
      uint16_t* dst = y->data<uint16_t>();
      ParallelRange(tp, n, kCheapGrain, [&](int64_t b, int64_t e) {
        float buf[512];
        for (int64_t i0 = b; i0 < e; i0 += 512) {
          const int64_t m = std::min<int64_t>(512, e - i0);
          HalfToFloatN(src + i0, buf, m, dt);
          for (int64_t j = 0; j < m; ++j) buf[j] = std::min(std::max(buf[j], lo), hi);
          FloatToHalfN(buf, dst + i0, m, dt);
        }
      });
      return Status::Ok();
    }
    return Dispatch<kNumericTypes & ~kHalfTypes>(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
      if constexpr (std::is_floating_point_v<T>) {
        lo = -std::numeric_limits<T>::infinity();
        hi = std::numeric_limits<T>::infinity();
        if (opset_ < 11) {
          lo = static_cast<T>(attr_min_);
          hi = static_cast<T>(attr_max_);
        }
      } else if (opset_ < 11) {
        return Unimplemented(fmt::format("Clip-{} supports only float types, got {}", opset_, DTypeName(dt)));
      }
      if (tmin) lo = tmin->data<T>()[0];
      if (tmax) hi = tmax->data<T>()[0];
      const T* src = x->data<T>();
      T* dst = y->data<T>();
      ParallelRange(tp, n, kCheapGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) dst[i] = std::min(std::max(src[i], lo), hi);
      });
      return Status::Ok();
    });
  }

 private:
  int64_t opset_;
  float attr_min_ = 0, attr_max_ = 0;
};

// The float32 input and output of a fused elementwise chain; constants of shape [1] broadcast a
// lower-rank x up to `min_rank` dims, as the separate ops would.
struct ChainIo {
  const Tensor* x;
  Tensor* y;
};
StatusOr<ChainIo> ChainInputOutput(KernelContext& ctx, int64_t min_rank) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->dtype() == DType::kFloat32, "input has dtype {}, expected float32", DTypeName(x->dtype()));
  Shape shape = x->shape();
  while (static_cast<int64_t>(shape.size()) < min_rank) shape.insert(shape.begin(), 1);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, shape));
  return ChainIo{x, y};
}

// com.quantkit::HardSwishChain (passes::FuseConvActivation): Add(x, add) -> Clip(clip_min,
// clip_max) -> Mul(x, .) -> Div(., scale) or Mul(., scale), float32, in one pass: per element the
// same four operations as those kernels (Clip's expression; products and sums commute exactly).
class HardSwishChainKernel final : public OpKernel {
 public:
  explicit HardSwishChainKernel(const KernelInit& init)
      : add_(init.node.AttrFloat("add", 0.f)),
        lo_(init.node.AttrFloat("clip_min", -std::numeric_limits<float>::infinity())),
        hi_(init.node.AttrFloat("clip_max", std::numeric_limits<float>::infinity())),
        scale_(init.node.AttrFloat("scale", 1.f)),
        divide_(init.node.AttrInt("divide", 1) != 0),
        min_rank_(init.node.AttrInt("min_rank", 0)) {}

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const ChainIo io, ChainInputOutput(ctx, min_rank_));
    const float* src = io.x->data<float>();
    float* dst = io.y->data<float>();
    const float add = add_, lo = lo_, hi = hi_, scale = scale_;
    ParallelRange(ctx.thread_pool(), io.x->numel(), kCheapGrain, [&](int64_t b, int64_t e) {
      if (divide_) {
        for (int64_t i = b; i < e; ++i) dst[i] = src[i] * std::min(std::max(src[i] + add, lo), hi) / scale;
      } else {
        for (int64_t i = b; i < e; ++i) dst[i] = src[i] * std::min(std::max(src[i] + add, lo), hi) * scale;
      }
    });
    return Status::Ok();
  }

 private:
  float add_, lo_, hi_, scale_;
  bool divide_;
  int64_t min_rank_;
};

// com.quantkit::GeluErfChain (passes::FuseConvActivation): t = x / pre (or x * pre), e = Erf(t)
// (the Erf op's vector erf), a = e + add, m = x * a, y = m * post (or m / post): the five ops'
// float operations in their order, in one pass.
class GeluErfChainKernel final : public OpKernel {
 public:
  explicit GeluErfChainKernel(const KernelInit& init)
      : pre_(init.node.AttrFloat("pre", 1.f)),
        add_(init.node.AttrFloat("add", 1.f)),
        post_(init.node.AttrFloat("post", 1.f)),
        pre_divide_(init.node.AttrInt("pre_divide", 1) != 0),
        post_divide_(init.node.AttrInt("post_divide", 0) != 0),
        min_rank_(init.node.AttrInt("min_rank", 0)) {}

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const ChainIo io, ChainInputOutput(ctx, min_rank_));
    const float* src = io.x->data<float>();
    float* dst = io.y->data<float>();
    const float pre = pre_, add = add_, post = post_;
    const bool pre_divide = pre_divide_, post_divide = post_divide_;
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    const bool wide = kernels::QGemmIsaHasAvx512(isa), avx2 = isa == kernels::QGemmIsa::kAvx2;
    ParallelRange(ctx.thread_pool(), io.x->numel(), kCheapGrain, [&](int64_t b, int64_t e) {
      const int64_t done = wide   ? ChainAvx512(src + b, dst + b, e - b, pre, add, post, pre_divide, post_divide)
                           : avx2 ? ChainAvx2(src + b, dst + b, e - b, pre, add, post, pre_divide, post_divide)
                                  : 0;
      simd::Map(src + b + done, dst + b + done, e - b - done, [&](simd::v4f v) {
        simd::v4f y;
        Chain(v, pre, add, post, pre_divide, post_divide, y);
        return y;
      });
    });
    return Status::Ok();
  }

 private:
  // The chain on a vector of any width (the same operations per lane, so the same bits; vectors by
  // reference, as simd::ErfV).
  template <typename V>
  __attribute__((always_inline)) static inline void Chain(const V& v, float pre, float add, float post,
                                                          bool pre_divide, bool post_divide, V& y) {
    const V t = pre_divide ? v / pre : v * pre;
    V e;
    simd::ErfV(t, e);
    const V m = v * (e + add);
    y = post_divide ? m / post : m * post;
  }
  // Whole vectors of V (sizeof(V) / 4 floats) at a time; returns how many it did. Inlined into
  // the ISA builds below, so each vector width compiles for its instructions.
  template <typename V>
  __attribute__((always_inline)) static inline int64_t ChainVectors(const float* src, float* dst, int64_t n,
                                                                    float pre, float add, float post, bool pre_divide,
                                                                    bool post_divide) {
    constexpr int64_t kLanes = sizeof(V) / sizeof(float);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      V v, y;
      std::memcpy(&v, src + i, sizeof v);
      Chain(v, pre, add, post, pre_divide, post_divide, y);
      std::memcpy(dst + i, &y, sizeof y);
    }
    return i;
  }
  // 16 at a time with AVX-512 (GELU is 16% of the INT8 encoder's time), 8 with AVX2 (4.3% of it
  // on Zen 3 4 wide).
  __attribute__((target("avx512f"))) static int64_t ChainAvx512(const float* src, float* dst, int64_t n, float pre,
                                                               float add, float post, bool pre_divide,
                                                               bool post_divide) {
    return ChainVectors<simd::v16f>(src, dst, n, pre, add, post, pre_divide, post_divide);
  }
  __attribute__((target("avx2"))) static int64_t ChainAvx2(const float* src, float* dst, int64_t n, float pre,
                                                           float add, float post, bool pre_divide, bool post_divide) {
    return ChainVectors<simd::v8f>(src, dst, n, pre, add, post, pre_divide, post_divide);
  }

  float pre_, add_, post_;
  bool pre_divide_, post_divide_;
  int64_t min_rank_;
};

}  // namespace

namespace ew {

namespace {
__attribute__((target("avx2"))) int64_t ExpArray8(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    simd::v8f v, e;
    std::memcpy(&v, x + i, sizeof v);
    simd::ExpV<simd::v8f, simd::v8i, simd::v8u>(v, e);
    std::memcpy(y + i, &e, sizeof e);
  }
  return i;
}
}  // namespace

int64_t ExpArrayAvx2(const float* x, float* y, int64_t n) {
  static const bool avx2 = kernels::DefaultQGemmIsa() != kernels::QGemmIsa::kRef;
  return avx2 ? ExpArray8(x, y, n) : 0;
}

void RegisterElementwiseUnaryOps(KernelRegistry& r) {
  r.Register(kQuantkitDomain, "GeluErfChain", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new GeluErfChainKernel(init));
  });
  r.Register(kQuantkitDomain, "HardSwishChain", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new HardSwishChainKernel(init));
  });
  RegisterUnary<SqrtOp>(r, "Sqrt");
  RegisterUnary<ExpOp>(r, "Exp");
  RegisterUnary<LogOp>(r, "Log");
  RegisterUnary<AbsOp>(r, "Abs");
  RegisterUnary<NegOp>(r, "Neg");
  RegisterUnary<ReciprocalOp>(r, "Reciprocal");
  RegisterUnary<FloorOp>(r, "Floor");
  RegisterUnary<CeilOp>(r, "Ceil");
  RegisterUnary<RoundOp>(r, "Round");
  RegisterUnary<SignOp>(r, "Sign");
  RegisterUnary<SinOp>(r, "Sin");
  RegisterUnary<CosOp>(r, "Cos");
  RegisterUnary<TanOp>(r, "Tan");
  RegisterUnary<AsinOp>(r, "Asin");
  RegisterUnary<AcosOp>(r, "Acos");
  RegisterUnary<AtanOp>(r, "Atan");
  RegisterUnary<SinhOp>(r, "Sinh");
  RegisterUnary<CoshOp>(r, "Cosh");
  RegisterUnary<AsinhOp>(r, "Asinh");
  RegisterUnary<AcoshOp>(r, "Acosh");
  RegisterUnary<AtanhOp>(r, "Atanh");
  RegisterUnary<ErfOp>(r, "Erf");
  RegisterUnary<ReluOp>(r, "Relu");
  RegisterUnary<LeakyReluOp>(r, "LeakyRelu");
  RegisterUnary<EluOp>(r, "Elu");
  RegisterUnary<SeluOp>(r, "Selu");
  RegisterUnary<CeluOp>(r, "Celu");
  RegisterUnary<ThresholdedReluOp>(r, "ThresholdedRelu");
  RegisterUnary<SoftplusOp>(r, "Softplus");
  RegisterUnary<SoftsignOp>(r, "Softsign");
  RegisterUnary<SigmoidOp>(r, "Sigmoid");
  RegisterUnary<HardSigmoidOp>(r, "HardSigmoid");
  RegisterUnary<HardSwishOp>(r, "HardSwish");
  RegisterUnary<TanhOp>(r, "Tanh");
  RegisterUnary<GeluOp>(r, "Gelu");
  RegisterUnary<MishOp>(r, "Mish");
  RegisterUnary<IsNaNOp>(r, "IsNaN");
  RegisterUnary<IsInfOp>(r, "IsInf");
  RegisterUnary<NotOp>(r, "Not");
  RegisterUnary<BitwiseNotOp>(r, "BitwiseNot");

  r.Register("", "Clip", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new ClipKernel(init));
  });
}

}  // namespace ew
}  // namespace quantkit::rt
