// Reductions (Reduce*, ArgMax/ArgMin), Softmax/LogSoftmax/Hardmax and normalisations
// (LayerNormalization, BatchNormalization, InstanceNormalization, LpNormalization,
// MeanVarianceNormalization).
//
// Reductions collapse the input shape into alternating kept/reduced dims and walk it in memory
// order; every contiguous inner run is either reduced into one accumulator or combined
// elementwise into a row of accumulators. Parallelism: over the leading kept dim, over the
// columns of an [R, K] reduction, or with per-thread partials for a full reduction.
// float16/bfloat16 are computed in float32.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "runtime/ops/elementwise_util.h"
#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {
namespace {

using namespace ew;  // NOLINT

constexpr int64_t kGrain = 1 << 15;

// ---------------------------------------------------------------------------------------------
// Reduction plan.
struct ReducePlan {
  BcastPlan<1> walk;      // iteration space = collapsed input dims; strides = output offsets
  std::vector<bool> red;  // per collapsed dim: reduced?
  int64_t in_numel = 0, out_numel = 0, count = 0;
  Shape out_shape;
};

ReducePlan MakeReducePlan(const Shape& in, const std::vector<bool>& mask, bool keepdims) {
  ReducePlan rp;
  std::vector<int64_t> dims;
  for (size_t d = 0; d < in.size(); ++d) {
    if (in[d] == 1) continue;
    if (!dims.empty() && rp.red.back() == mask[d]) {
      dims.back() *= in[d];
    } else {
      dims.push_back(in[d]);
      rp.red.push_back(mask[d]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    rp.red.push_back(false);
  }
  rp.walk.dims = dims;
  rp.walk.strides.resize(dims.size());
  int64_t s = 1;
  for (size_t d = dims.size(); d-- > 0;) {
    if (rp.red[d]) {
      rp.walk.strides[d][0] = 0;
    } else {
      rp.walk.strides[d][0] = s;
      s *= dims[d];
    }
  }
  rp.in_numel = NumElements(in);
  rp.walk.numel = rp.in_numel;
  rp.walk.out_shape = in;
  rp.count = 1;
  for (size_t d = 0; d < in.size(); ++d) {
    if (mask[d]) {
      rp.count *= in[d];
      if (keepdims) rp.out_shape.push_back(1);
    } else {
      rp.out_shape.push_back(in[d]);
    }
  }
  rp.out_numel = NumElements(rp.out_shape);
  return rp;
}

// Default run: combine x[0..n) into acc (kept: elementwise; else into acc[0]).
template <typename R, typename T, typename A>
inline void DefaultRun(const R& r, const T* x, A* acc, int64_t n, bool kept) {
  if (kept) {
    for (int64_t i = 0; i < n; ++i) acc[i] = r.Combine(acc[i], r.Map(x[i]));
    return;
  }
  A lanes[8];
  for (auto& l : lanes) l = r.init;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] = r.Combine(lanes[j], r.Map(x[i + j]));
  }
  A a = lanes[0];
  for (int j = 1; j < 8; ++j) a = r.Combine(a, lanes[j]);
  for (; i < n; ++i) a = r.Combine(a, r.Map(x[i]));
  acc[0] = r.Combine(acc[0], a);
}

template <typename T, typename A>
struct SumR {
  A init = A(0);
  A Map(T x) const { return static_cast<A>(x); }
  A Combine(A a, A b) const { return a + b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
template <typename T, typename A>
struct SumSquareR {
  A init = A(0);
  A Map(T x) const { return static_cast<A>(x) * static_cast<A>(x); }
  A Combine(A a, A b) const { return a + b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
template <typename T, typename A>
struct L1R {
  A init = A(0);
  A Map(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      return static_cast<A>(std::fabs(x));
    } else if constexpr (std::is_signed_v<T>) {
      return x < 0 ? A(0) - static_cast<A>(x) : static_cast<A>(x);
    } else {
      return static_cast<A>(x);
    }
  }
  A Combine(A a, A b) const { return a + b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
template <typename T, typename A>
struct ProdR {
  A init = A(1);
  A Map(T x) const { return static_cast<A>(x); }
  A Combine(A a, A b) const { return a * b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
template <typename T, typename A>
struct MaxR {
  A init = std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::lowest();
  A Map(T x) const { return static_cast<A>(x); }
  A Combine(A a, A b) const { return a > b ? a : b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
template <typename T, typename A>
struct MinR {
  A init = std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity() : std::numeric_limits<A>::max();
  A Map(T x) const { return static_cast<A>(x); }
  A Combine(A a, A b) const { return a < b ? a : b; }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t) const { DefaultRun(*this, x, acc, n, kept); }
};
// sum(exp(x - m)) with m the per-output maximum (treated as 0 when not finite).
template <typename T, typename A>
struct ExpSumR {
  const A* maxv = nullptr;
  A init = A(0);
  A Combine(A a, A b) const { return a + b; }
  static A Shift(A m) { return std::isfinite(m) ? m : A(0); }
  void Run(const T* x, A* acc, int64_t n, bool kept, int64_t out_off) const {
    if (kept) {
      for (int64_t i = 0; i < n; ++i) acc[i] += std::exp(static_cast<A>(x[i]) - Shift(maxv[out_off + i]));
      return;
    }
    const A m = Shift(maxv[out_off]);
    A s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<A>(x[i]) - m);
    acc[0] += s;
  }
};

// Runs reducer r over the plan into acc (out_numel accumulators).
template <typename T, typename A, typename R>
void ReduceRuns(const ReducePlan& rp, const T* x, A* acc, const R& r, ThreadPool* tp) {
  std::fill(acc, acc + rp.out_numel, r.init);
  if (rp.in_numel == 0) return;
  const BcastPlan<1>& p = rp.walk;
  const size_t nd = p.dims.size();
  auto fn = [&](int64_t cur, const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& st) {
    r.Run(x + cur, acc + off[0], len, st[0] != 0, off[0]);
  };
  if (nd == 1 && rp.red[0]) {  // full reduction: per-chunk partials
    const int64_t n = rp.in_numel;
    int64_t chunks = tp ? std::min<int64_t>(tp->num_threads(), n / kGrain) : 1;
    if (chunks <= 1) {
      r.Run(x, acc, n, false, 0);
      return;
    }
    std::vector<A> part(chunks, r.init);
    tp->ParallelFor(chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        const int64_t s = n * c / chunks, t = n * (c + 1) / chunks;
        r.Run(x + s, &part[c], t - s, false, 0);
      }
    });
    for (int64_t c = 0; c < chunks; ++c) acc[0] = r.Combine(acc[0], part[c]);
    return;
  }
  if (!rp.red[0]) {  // leading kept dim: rows write disjoint outputs
    const int64_t rows = p.dims[0], blk = rp.in_numel / rows;
    ParallelRange(tp, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, blk)),
                  [&](int64_t b, int64_t e) { WalkRuns(p, b * blk, e * blk, fn); });
    return;
  }
  if (nd == 2) {  // [R, K]: split the K columns
    const int64_t rows = p.dims[0], cols = p.dims[1];
    ParallelRange(tp, cols, std::max<int64_t>(1, kGrain / rows), [&](int64_t c0, int64_t c1) {
      for (int64_t i = 0; i < rows; ++i) r.Run(x + i * cols + c0, acc + c0, c1 - c0, true, c0);
    });
    return;
  }
  WalkRuns(p, 0, rp.in_numel, fn);
}

enum class RK { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

template <typename T>
T FromDouble(double v) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(v);
  } else {
    return FloatToInt<T>(v);
  }
}

// Accumulator types: floats accumulate in their own type; integers in uint64 (wrapping) for
// sum-like reductions, in their own type for max/min, in double for L2/LogSum/LogSumExp.
template <typename T>
using IntAcc = std::conditional_t<std::is_floating_point_v<T>, T, uint64_t>;
template <typename T>
using RealAcc = std::conditional_t<std::is_floating_point_v<T>, T, double>;

// Accumulators: `n` zeroed values of A as scratch of the run (counted against the memory limit).
template <typename A>
StatusOr<Tensor> AccScratch(KernelContext& ctx, int64_t n, const char* what) {
  QK_ASSIGN_OR_RETURN(Tensor t, ctx.Scratch(DTypeOf<A>::value, n, what));
  std::fill(t.data<A>(), t.data<A>() + n, A(0));
  return t;
}

template <typename T>
Status ReduceTyped(KernelContext& ctx, RK kind, const ReducePlan& rp, const T* x, T* y, ThreadPool* tp) {
  const int64_t no = rp.out_numel;
  switch (kind) {
    case RK::kSum: case RK::kMean: case RK::kSumSquare: case RK::kL1: case RK::kProd: {
      using A = IntAcc<T>;
      QK_ASSIGN_OR_RETURN(Tensor acc_t, AccScratch<A>(ctx, no, "accumulator"));
      A* acc = acc_t.data<A>();
      if (kind == RK::kSumSquare) ReduceRuns(rp, x, acc, SumSquareR<T, A>{}, tp);
      else if (kind == RK::kL1) ReduceRuns(rp, x, acc, L1R<T, A>{}, tp);
      else if (kind == RK::kProd) ReduceRuns(rp, x, acc, ProdR<T, A>{}, tp);
      else ReduceRuns(rp, x, acc, SumR<T, A>{}, tp);
      if (kind == RK::kMean) {
        for (int64_t i = 0; i < no; ++i) {
          if constexpr (std::is_floating_point_v<T>) {
            y[i] = acc[i] / static_cast<T>(rp.count);
          } else if constexpr (std::is_signed_v<T>) {
            y[i] = rp.count ? static_cast<T>(static_cast<int64_t>(acc[i]) / rp.count) : T(0);
          } else {
            y[i] = rp.count ? static_cast<T>(acc[i] / static_cast<uint64_t>(rp.count)) : T(0);
          }
        }
      } else {
        for (int64_t i = 0; i < no; ++i) y[i] = static_cast<T>(acc[i]);
      }
      return Status::Ok();
    }
    case RK::kMax: case RK::kMin: {
      if (kind == RK::kMax) ReduceRuns(rp, x, y, MaxR<T, T>{}, tp);
      else ReduceRuns(rp, x, y, MinR<T, T>{}, tp);
      return Status::Ok();
    }
    case RK::kL2: case RK::kLogSum: {
      using A = RealAcc<T>;
      QK_ASSIGN_OR_RETURN(Tensor acc_t, AccScratch<A>(ctx, no, "accumulator"));
      A* acc = acc_t.data<A>();
      if (kind == RK::kL2) {
        ReduceRuns(rp, x, acc, SumSquareR<T, A>{}, tp);
        for (int64_t i = 0; i < no; ++i) y[i] = FromDouble<T>(std::sqrt(acc[i]));
      } else {
        ReduceRuns(rp, x, acc, SumR<T, A>{}, tp);
        for (int64_t i = 0; i < no; ++i) y[i] = FromDouble<T>(std::log(acc[i]));
      }
      return Status::Ok();
    }
    case RK::kLogSumExp: {
      using A = RealAcc<T>;
      QK_ASSIGN_OR_RETURN(Tensor mx_t, AccScratch<A>(ctx, no, "maximum"));
      QK_ASSIGN_OR_RETURN(Tensor acc_t, AccScratch<A>(ctx, no, "accumulator"));
      A* mx = mx_t.data<A>();
      A* acc = acc_t.data<A>();
      ReduceRuns(rp, x, mx, MaxR<T, A>{}, tp);
      ExpSumR<T, A> es;
      es.maxv = mx;
      ReduceRuns(rp, x, acc, es, tp);
      for (int64_t i = 0; i < no; ++i) y[i] = FromDouble<T>(std::log(acc[i]) + ExpSumR<T, A>::Shift(mx[i]));
      return Status::Ok();
    }
  }
  return Internal("unknown reduction");
}

StatusOr<std::vector<bool>> AxesMask(const std::vector<int64_t>& axes, int64_t rank) {
  std::vector<bool> mask(rank, false);
  for (int64_t a : axes) {
    QK_ASSIGN_OR_RETURN(int64_t n, NormalizeAxis(a, rank));
    mask[n] = true;
  }
  return mask;
}

class ReduceKernel final : public OpKernel {
 public:
  ReduceKernel(RK kind, const KernelInit& init, int64_t axes_input_opset) : kind_(kind) {
    axes_from_input_ = init.opset >= axes_input_opset;
    if (!axes_from_input_) attr_axes_ = init.node.AttrInts("axes");
    keepdims_ = init.node.AttrInt("keepdims", 1) != 0;
    noop_ = init.node.AttrInt("noop_with_empty_axes", 0) != 0;
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    std::vector<int64_t> axes = attr_axes_;
    if (axes_from_input_) {
      if (const Tensor* a = ctx.input(1)) {
        QK_CHECK_ARG(a->dtype() == DType::kInt64 || a->dtype() == DType::kInt32,
                     "axes (input #1) must be int64, got {}", DTypeName(a->dtype()));
        QK_CHECK_ARG(a->rank() <= 1, "axes (input #1) must be 1-D, got shape {}", ShapeToString(a->shape()));
        axes = a->ToInt64Vector();
      }
    }
    const int64_t rank = static_cast<int64_t>(x->rank());
    std::vector<bool> mask;
    if (axes.empty()) {
      if (noop_) {
        ctx.SetOutput(0, *x);
        return Status::Ok();
      }
      mask.assign(rank, true);
    } else {
      QK_ASSIGN_OR_RETURN(mask, AxesMask(axes, rank));
    }
    const DType dt = x->dtype();
    if (!InSet(kNumericTypes, dt)) {
      return Unimplemented(fmt::format("{} does not support element type {}", ctx.node().op_type, DTypeName(dt)));
    }
    const ReducePlan rp = MakeReducePlan(x->shape(), mask, keepdims_);
    ThreadPool* tp = ctx.thread_pool();
    if (IsHalf(dt)) {
      QK_ASSIGN_OR_RETURN(Tensor xf, ToFloat(*x, ctx.allocator(), tp));
      QK_ASSIGN_OR_RETURN(Tensor yf, ctx.Scratch(DType::kFloat32, rp.out_numel, "float32 result"));
      QK_RETURN_IF_ERROR(ReduceTyped<float>(ctx, kind_, rp, xf.data<float>(), yf.data<float>(), tp));
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, rp.out_shape));
      FloatToHalfN(yf.data<float>(), y->data<uint16_t>(), rp.out_numel, dt);
      return Status::Ok();
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, rp.out_shape));
    return Dispatch<kNumericTypes & ~kHalfTypes>(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      return ReduceTyped<T>(ctx, kind_, rp, x->data<T>(), y->data<T>(), tp);
    });
  }

 private:
  RK kind_;
  bool axes_from_input_ = false;
  std::vector<int64_t> attr_axes_;
  bool keepdims_ = true;
  bool noop_ = false;
};

// ---------------------------------------------------------------------------------------------
// ArgMax / ArgMin.
template <bool kMax>
class ArgKernel final : public OpKernel {
 public:
  explicit ArgKernel(const KernelInit& init) {
    axis_ = init.node.AttrInt("axis", 0);
    keepdims_ = init.node.AttrInt("keepdims", 1) != 0;
    last_ = init.node.AttrInt("select_last_index", 0) != 0;
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const int64_t rank = static_cast<int64_t>(x->rank());
    QK_CHECK_ARG(rank >= 1, "input must have rank >= 1");
    QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank));
    const Shape& s = x->shape();
    const int64_t R = s[axis];
    QK_CHECK_ARG(R > 0, "cannot take {} over the empty axis {}", kMax ? "ArgMax" : "ArgMin", axis);
    int64_t O = 1, I = 1;
    for (int64_t d = 0; d < axis; ++d) O *= s[d];
    for (int64_t d = axis + 1; d < rank; ++d) I *= s[d];
    Shape out_shape;
    for (int64_t d = 0; d < rank; ++d) {
      if (d != axis) out_shape.push_back(s[d]);
      else if (keepdims_) out_shape.push_back(1);
    }
    const DType dt = x->dtype();
    if (!InSet(kNumericTypes, dt)) return Unimplemented(fmt::format("element type {} is not supported", DTypeName(dt)));
    ThreadPool* tp = ctx.thread_pool();
    QK_ASSIGN_OR_RETURN(Tensor xf, ToFloat(*x, ctx.allocator(), tp));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt64, out_shape));
    int64_t* py = y->data<int64_t>();
    const bool last = last_;
    return Dispatch<kNumericTypes & ~kHalfTypes>(xf.dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      const T* px = xf.data<T>();
      auto better = [last](T v, T best) {
        if constexpr (kMax) {
          return last ? v >= best : v > best;
        } else {
          return last ? v <= best : v < best;
        }
      };
      ParallelRange(tp, O, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, R * I)), [&](int64_t b, int64_t e) {
        std::vector<T> best(I > 1 ? I : 0);
        for (int64_t o = b; o < e; ++o) {
          const T* row = px + o * R * I;
          int64_t* out = py + o * I;
          if (I == 1) {
            T bv = row[0];
            int64_t bi = 0;
            for (int64_t r = 1; r < R; ++r) {
              if (better(row[r], bv)) {
                bv = row[r];
                bi = r;
              }
            }
            out[0] = bi;
            continue;
          }
          std::copy(row, row + I, best.begin());
          std::fill(out, out + I, 0);
          for (int64_t r = 1; r < R; ++r) {
            const T* v = row + r * I;
            for (int64_t i = 0; i < I; ++i) {
              if (better(v[i], best[i])) {
                best[i] = v[i];
                out[i] = r;
              }
            }
          }
        }
      });
      return Status::Ok();
    });
  }

 private:
  int64_t axis_ = 0;
  bool keepdims_ = true;
  bool last_ = false;
};

// ---------------------------------------------------------------------------------------------
// Softmax / LogSoftmax / Hardmax. Opset < 13: the input is coerced to 2-D at `axis` (default 1);
// opset >= 13: along one axis (default -1).
enum class SM { kSoftmax, kLogSoftmax, kHardmax };

// Reduction of x[0..n) with 8 independent lanes (vectorisable without reassociation flags).
template <typename T, typename F>
inline T LaneReduce(const T* x, int64_t n, T init, F f) {
  T lanes[8];
  for (auto& l : lanes) l = init;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) lanes[j] = f(lanes[j], x[i + j]);
  }
  T a = lanes[0];
  for (int j = 1; j < 8; ++j) a = f(a, lanes[j]);
  for (; i < n; ++i) a = f(a, x[i]);
  return a;
}

template <typename T>
void SoftmaxRow(SM kind, const T* x, T* y, int64_t n) {
  if (kind == SM::kHardmax) {
    int64_t bi = 0;
    for (int64_t i = 1; i < n; ++i) {
      if (x[i] > x[bi]) bi = i;
    }
    std::fill(y, y + n, T(0));
    if (n > 0) y[bi] = T(1);
    return;
  }
  T m = LaneReduce(x, n, -std::numeric_limits<T>::infinity(), [](T a, T b) { return a > b ? a : b; });
  if (!std::isfinite(m)) m = std::isnan(m) ? m : T(0);
  // exp into y (vectorised), then the sum.
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] - m;
  ExpArray(y, y, n);
  const T s = LaneReduce(y, n, T(0), [](T a, T b) { return a + b; });
  if (kind == SM::kSoftmax) {
    const T inv = T(1) / s;
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  } else {
    const T off = m + std::log(s);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - off;
  }
}

// Columns [i0, i1) of one [R, I] block.
template <typename T>
void SoftmaxCols(SM kind, const T* x, T* y, int64_t R, int64_t I, int64_t i0, int64_t i1, std::vector<T>& m,
                 std::vector<T>& s) {
  const int64_t w = i1 - i0;
  m.assign(w, -std::numeric_limits<T>::infinity());
  if (kind == SM::kHardmax) {
    std::vector<int64_t> bi(w, 0);
    for (int64_t r = 0; r < R; ++r) {
      const T* v = x + r * I + i0;
      for (int64_t i = 0; i < w; ++i) {
        if (r == 0 || v[i] > m[i]) {
          m[i] = v[i];
          bi[i] = r;
        }
      }
    }
    for (int64_t r = 0; r < R; ++r) {
      T* o = y + r * I + i0;
      for (int64_t i = 0; i < w; ++i) o[i] = bi[i] == r ? T(1) : T(0);
    }
    return;
  }
  for (int64_t r = 0; r < R; ++r) {
    const T* v = x + r * I + i0;
    for (int64_t i = 0; i < w; ++i) m[i] = std::max(m[i], v[i]);
  }
  for (int64_t i = 0; i < w; ++i) {
    if (!std::isfinite(m[i]) && !std::isnan(m[i])) m[i] = T(0);
  }
  s.assign(w, T(0));
  for (int64_t r = 0; r < R; ++r) {
    const T* v = x + r * I + i0;
    T* o = y + r * I + i0;
    for (int64_t i = 0; i < w; ++i) o[i] = v[i] - m[i];
    ExpArray(o, o, w);
    for (int64_t i = 0; i < w; ++i) s[i] += o[i];
  }
  if (kind == SM::kSoftmax) {
    for (int64_t i = 0; i < w; ++i) s[i] = T(1) / s[i];
    for (int64_t r = 0; r < R; ++r) {
      T* o = y + r * I + i0;
      for (int64_t i = 0; i < w; ++i) o[i] *= s[i];
    }
  } else {
    for (int64_t i = 0; i < w; ++i) s[i] = m[i] + std::log(s[i]);
    for (int64_t r = 0; r < R; ++r) {
      const T* v = x + r * I + i0;
      T* o = y + r * I + i0;
      for (int64_t i = 0; i < w; ++i) o[i] = v[i] - s[i];
    }
  }
}

template <typename T>
void SoftmaxTyped(SM kind, const T* x, T* y, int64_t O, int64_t R, int64_t I, ThreadPool* tp) {
  if (I == 1) {
    ParallelRange(tp, O, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, R)), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) SoftmaxRow(kind, x + o * R, y + o * R, R);
    });
    return;
  }
  constexpr int64_t kCols = 256;
  const int64_t nblk = (I + kCols - 1) / kCols;
  ParallelRange(tp, O * nblk, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, R * std::min(I, kCols))),
                [&](int64_t b, int64_t e) {
                  std::vector<T> m, s;
                  for (int64_t u = b; u < e; ++u) {
                    const int64_t o = u / nblk, blk = u % nblk;
                    const int64_t i0 = blk * kCols, i1 = std::min(I, i0 + kCols);
                    SoftmaxCols(kind, x + o * R * I, y + o * R * I, R, I, i0, i1, m, s);
                  }
                });
}

class SoftmaxKernel final : public OpKernel {
 public:
  SoftmaxKernel(SM kind, const KernelInit& init) : kind_(kind), legacy_(init.opset < 13) {
    axis_ = init.node.AttrInt("axis", legacy_ ? 1 : -1);
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const int64_t rank = static_cast<int64_t>(x->rank());
    const DType dt = x->dtype();
    if (!InSet(kFloatTypes, dt)) {
      return Unimplemented(fmt::format("{} does not support element type {}", ctx.node().op_type, DTypeName(dt)));
    }
    const Shape& s = x->shape();
    int64_t O = 1, R = 1, I = 1;
    if (rank == 0) {
      // A scalar is a single row of one element.
    } else {
      QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank));
      for (int64_t d = 0; d < axis; ++d) O *= s[d];
      if (legacy_) {
        for (int64_t d = axis; d < rank; ++d) R *= s[d];
      } else {
        R = s[axis];
        for (int64_t d = axis + 1; d < rank; ++d) I *= s[d];
      }
    }
    ThreadPool* tp = ctx.thread_pool();
    if (IsHalf(dt)) {
      QK_ASSIGN_OR_RETURN(Tensor xf, ToFloat(*x, ctx.allocator(), tp));
      QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, s, ctx.allocator(), "float32 result"));
      SoftmaxTyped<float>(kind_, xf.data<float>(), yf.data<float>(), O, R, I, tp);
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, s));
      StoreHalf(yf.data<float>(), y->data<uint16_t>(), yf.numel(), dt, tp);
      return Status::Ok();
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, s));
    return Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      SoftmaxTyped<T>(kind_, x->data<T>(), y->data<T>(), O, R, I, tp);
      return Status::Ok();
    });
  }

 private:
  SM kind_;
  bool legacy_;
  int64_t axis_;
};

// ---------------------------------------------------------------------------------------------
// Normalisation helpers.

// Reads a small parameter tensor (any float type) as doubles.
std::vector<double> ParamValues(const Tensor& t) {
  std::vector<double> v(t.numel());
  if (IsHalf(t.dtype())) {
    const uint16_t* p = t.data<uint16_t>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      v[i] = t.dtype() == DType::kFloat16 ? HalfToFloat(p[i]) : BFloat16ToFloat(p[i]);
    }
  } else {
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.GetAsDouble(i);
  }
  return v;
}

// Expands a parameter unidirectionally to `shape` (numpy broadcast), as doubles.
StatusOr<std::vector<double>> ExpandParam(const Tensor& t, const Shape& shape, const char* what) {
  std::vector<double> v = ParamValues(t);
  const int64_t n = NumElements(shape);
  if (static_cast<int64_t>(v.size()) == n && t.rank() <= shape.size()) {
    // Same element count: fine if the trailing dims match (leading 1s allowed).
    bool ok = true;
    for (size_t i = 0; i < t.rank(); ++i) ok = ok && t.dim(t.rank() - 1 - i) == shape[shape.size() - 1 - i];
    if (ok) return v;
  }
  auto b = BroadcastShapes(shape, t.shape());
  if (!b.ok() || b.value() != shape) {
    return InvalidArgument(fmt::format("{} of shape {} cannot be broadcast to {}", what, ShapeToString(t.shape()),
                                       ShapeToString(shape)));
  }
  std::vector<double> out(n);
  const auto strides = BroadcastStrides(t.shape(), shape.size());
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * strides[d];
    out[i] = v[off];
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// Input as float32 or float64 tensor (halves converted).
StatusOr<Tensor> ComputeCopy(const Tensor& x, KernelContext& ctx) { return ToFloat(x, ctx.allocator(), ctx.thread_pool()); }

// Allocates output i with dtype dt; for halves returns a float32 staging tensor in *stage.
struct OutputStage {
  Tensor* out = nullptr;
  Tensor stage;
  DType dt = DType::kUndefined;
  void* data() { return IsHalf(dt) ? stage.raw_data() : out->raw_data(); }
  void Finish(ThreadPool* tp) {
    if (IsHalf(dt)) StoreHalf(stage.data<float>(), out->data<uint16_t>(), stage.numel(), dt, tp);
  }
};
Status MakeOutput(KernelContext& ctx, size_t i, DType dt, const Shape& shape, OutputStage* st) {
  st->dt = dt;
  QK_ASSIGN_OR_RETURN(st->out, ctx.Output(i, dt, shape));
  if (IsHalf(dt)) {
    QK_ASSIGN_OR_RETURN(st->stage, Tensor::CreateUninitialized(DType::kFloat32, shape, ctx.allocator(), "float32 result"));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// LayerNormalization (opset 17).
class LayerNormKernel final : public OpKernel {
 public:
  explicit LayerNormKernel(const KernelInit& init) {
    axis_ = init.node.AttrInt("axis", -1);
    eps_ = init.node.AttrFloat("epsilon", 1e-5f);
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* scale, ctx.RequiredInput(1));
    const Tensor* bias = ctx.input(2);
    const DType dt = x->dtype();
    if (!InSet(kFloatTypes, dt)) return Unimplemented(fmt::format("LayerNormalization does not support {}", DTypeName(dt)));
    const int64_t rank = static_cast<int64_t>(x->rank());
    QK_CHECK_ARG(rank >= 1, "input X must have rank >= 1");
    QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_, rank));
    const Shape& s = x->shape();
    const Shape norm_shape(s.begin() + axis, s.end());
    int64_t O = 1;
    for (int64_t d = 0; d < axis; ++d) O *= s[d];
    const int64_t N = NumElements(norm_shape);
    QK_ASSIGN_OR_RETURN(std::vector<double> sc, ExpandParam(*scale, norm_shape, "Scale"));
    std::vector<double> bi;
    if (bias) {
      QK_ASSIGN_OR_RETURN(bi, ExpandParam(*bias, norm_shape, "B"));
    }
    Shape stat_shape(s.begin(), s.begin() + axis);
    stat_shape.resize(rank, 1);
    ThreadPool* tp = ctx.thread_pool();
    QK_ASSIGN_OR_RETURN(Tensor xc, ComputeCopy(*x, ctx));
    OutputStage ys;
    QK_RETURN_IF_ERROR(MakeOutput(ctx, 0, dt, s, &ys));
    float* mean_out = nullptr;
    float* inv_out = nullptr;
    if (ctx.output_wanted(1)) {
      QK_ASSIGN_OR_RETURN(Tensor * t, ctx.Output(1, DType::kFloat32, stat_shape));
      mean_out = t->data<float>();
    }
    if (ctx.output_wanted(2)) {
      QK_ASSIGN_OR_RETURN(Tensor * t, ctx.Output(2, DType::kFloat32, stat_shape));
      inv_out = t->data<float>();
    }
    const double eps = eps_;
    QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      const T* px = xc.data<T>();
      T* py = static_cast<T*>(ys.data());
      std::vector<T> sct(sc.begin(), sc.end()), bit(bi.begin(), bi.end());
      ParallelRange(tp, O, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, N)), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          const T* row = px + o * N;
          T* out = py + o * N;
          double sum = 0;
          for (int64_t i = 0; i < N; ++i) sum += row[i];
          const double mean = N ? sum / N : 0.0;
          double sq = 0;
          for (int64_t i = 0; i < N; ++i) {
            const double d = row[i] - mean;
            sq += d * d;
          }
          const double var = N ? sq / N : 0.0;
          const double inv = 1.0 / std::sqrt(var + eps);
          const T m = static_cast<T>(mean), iv = static_cast<T>(inv);
          if (bit.empty()) {
            for (int64_t i = 0; i < N; ++i) out[i] = (row[i] - m) * iv * sct[i];
          } else {
            for (int64_t i = 0; i < N; ++i) out[i] = (row[i] - m) * iv * sct[i] + bit[i];
          }
          if (mean_out) mean_out[o] = static_cast<float>(mean);
          if (inv_out) inv_out[o] = static_cast<float>(inv);
        }
      });
      return Status::Ok();
    }));
    ys.Finish(tp);
    return Status::Ok();
  }

 private:
  int64_t axis_;
  float eps_;
};

// ---------------------------------------------------------------------------------------------
// BatchNormalization. Inference mode for every opset; training mode (opset >= 14,
// training_mode=1) computes batch statistics and the updated running mean/var.
class BatchNormKernel final : public OpKernel {
 public:
  explicit BatchNormKernel(const KernelInit& init) : opset_(init.opset) {
    eps_ = init.node.AttrFloat("epsilon", 1e-5f);
    momentum_ = init.node.AttrFloat("momentum", 0.9f);
    training_ = opset_ >= 14 && init.node.AttrInt("training_mode", 0) != 0;
  }
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    std::array<const Tensor*, 4> params{};
    for (size_t i = 0; i < 4; ++i) {
      QK_ASSIGN_OR_RETURN(params[i], ctx.RequiredInput(i + 1));
      if (!InSet(kFloatTypes, params[i]->dtype())) {
        return Unimplemented(fmt::format("input #{} has unsupported type {}", i + 1, DTypeName(params[i]->dtype())));
      }
    }
    const DType dt = x->dtype();
    if (!InSet(kFloatTypes, dt)) return Unimplemented(fmt::format("BatchNormalization does not support {}", DTypeName(dt)));
    QK_CHECK_ARG(x->rank() >= 2, "input X must have rank >= 2 (N x C x ...), got shape {}", ShapeToString(x->shape()));
    if (!training_) {
      for (size_t o = 1; o < ctx.num_outputs(); ++o) {
        if (ctx.output_wanted(o)) {
          return Unimplemented(fmt::format("output #{} (training statistics) is only supported with training_mode=1 "
                                           "(opset >= 14)", o));
        }
      }
    }
    const Shape& s = x->shape();
    const int64_t N = s[0], C = s[1];
    const int64_t S = C ? x->numel() / std::max<int64_t>(1, N * C) : 0;
    std::array<std::vector<double>, 4> p;
    bool per_element = false;
    for (size_t i = 0; i < 4; ++i) {
      p[i] = ParamValues(*params[i]);
      const int64_t n = static_cast<int64_t>(p[i].size());
      if (n == C) continue;
      if (!training_ && n == C * S && S > 1) {  // spatial=0 (opset < 9): per-activation statistics
        per_element = true;
        continue;
      }
      static const char* kNames[] = {"scale", "B", "mean", "var"};
      return InvalidArgument(fmt::format("{} (input #{}) has shape {}, expected [{}] for X of shape {}", kNames[i], i + 1,
                                         ShapeToString(params[i]->shape()), C, ShapeToString(s)));
    }
    if (per_element) {
      for (size_t i = 0; i < 4; ++i) {
        if (static_cast<int64_t>(p[i].size()) == C) {  // mix of per-channel and per-element: expand
          std::vector<double> e(C * S);
          for (int64_t c = 0; c < C; ++c) std::fill(e.begin() + c * S, e.begin() + (c + 1) * S, p[i][c]);
          p[i] = std::move(e);
        }
      }
    }
    ThreadPool* tp = ctx.thread_pool();
    QK_ASSIGN_OR_RETURN(Tensor xc, ComputeCopy(*x, ctx));
    std::vector<double> batch_mean, batch_var;
    if (training_) {
      batch_mean.assign(C, 0.0);
      batch_var.assign(C, 0.0);
      QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
        using T = decltype(tag);
        const T* px = xc.data<T>();
        const double cnt = static_cast<double>(N * S);
        for (int64_t c = 0; c < C; ++c) {
          double sum = 0;
          for (int64_t n = 0; n < N; ++n) {
            const T* q = px + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) sum += q[i];
          }
          const double mean = cnt > 0 ? sum / cnt : 0.0;
          double sq = 0;
          for (int64_t n = 0; n < N; ++n) {
            const T* q = px + (n * C + c) * S;
            for (int64_t i = 0; i < S; ++i) sq += (q[i] - mean) * (q[i] - mean);
          }
          batch_mean[c] = mean;
          batch_var[c] = cnt > 0 ? sq / cnt : 0.0;
        }
        return Status::Ok();
      }));
    }
    const std::vector<double>& mean = training_ ? batch_mean : p[2];
    const std::vector<double>& var = training_ ? batch_var : p[3];
    // y = x * a + b
    const size_t np = p[0].size();
    std::vector<double> a(np), bb(np);
    for (size_t i = 0; i < np; ++i) {
      a[i] = p[0][i] / std::sqrt(var[i] + static_cast<double>(eps_));
      bb[i] = p[1][i] - mean[i] * a[i];
    }
    OutputStage ys;
    QK_RETURN_IF_ERROR(MakeOutput(ctx, 0, dt, s, &ys));
    QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      const T* px = xc.data<T>();
      T* py = static_cast<T*>(ys.data());
      std::vector<T> at(a.begin(), a.end()), bt(bb.begin(), bb.end());
      ParallelRange(tp, N * C, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, S)), [&](int64_t b, int64_t e) {
        for (int64_t nc = b; nc < e; ++nc) {
          const int64_t c = nc % C;
          const T* q = px + nc * S;
          T* o = py + nc * S;
          if (per_element) {
            const T* ac = at.data() + c * S;
            const T* bc = bt.data() + c * S;
            for (int64_t i = 0; i < S; ++i) o[i] = q[i] * ac[i] + bc[i];
          } else {
            const T ac = at[c], bc = bt[c];
            for (int64_t i = 0; i < S; ++i) o[i] = q[i] * ac + bc;
          }
        }
      });
      return Status::Ok();
    }));
    ys.Finish(tp);
    if (training_) {
      for (size_t o = 1; o <= 2 && o < ctx.num_outputs(); ++o) {
        if (!ctx.output_wanted(o)) continue;
        const Tensor& running = *params[o + 1];  // input mean / var
        const std::vector<double>& cur = o == 1 ? batch_mean : batch_var;
        std::vector<float> vals(C);
        const double mom = momentum_;
        for (int64_t c = 0; c < C; ++c) vals[c] = static_cast<float>(p[o + 1][c] * mom + cur[c] * (1.0 - mom));
        OutputStage rs;
        QK_RETURN_IF_ERROR(MakeOutput(ctx, o, running.dtype(), running.shape(), &rs));
        if (running.dtype() == DType::kFloat64) {
          double* d = static_cast<double*>(rs.data());
          for (int64_t c = 0; c < C; ++c) d[c] = p[o + 1][c] * mom + cur[c] * (1.0 - mom);
        } else {
          std::memcpy(rs.data(), vals.data(), C * sizeof(float));
        }
        rs.Finish(tp);
      }
    }
    return Status::Ok();
  }

 private:
  int64_t opset_;
  float eps_, momentum_;
  bool training_ = false;
};

// ---------------------------------------------------------------------------------------------
// InstanceNormalization.
Status InstanceNormFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* scale, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const Tensor* bias, ctx.RequiredInput(2));
  const DType dt = x->dtype();
  if (!InSet(kFloatTypes, dt)) return Unimplemented(fmt::format("InstanceNormalization does not support {}", DTypeName(dt)));
  QK_CHECK_ARG(x->rank() >= 2, "input must have rank >= 2 (N x C x ...), got shape {}", ShapeToString(x->shape()));
  const int64_t N = x->dim(0), C = x->dim(1);
  const int64_t S = (N != 0 && C != 0) ? x->numel() / (N * C) : 0;
  QK_CHECK_ARG(scale->numel() == C, "scale must have {} elements, got shape {}", C, ShapeToString(scale->shape()));
  QK_CHECK_ARG(bias->numel() == C, "B must have {} elements, got shape {}", C, ShapeToString(bias->shape()));
  const std::vector<double> sc = ParamValues(*scale), bi = ParamValues(*bias);
  const double eps = ctx.node().AttrFloat("epsilon", 1e-5f);
  ThreadPool* tp = ctx.thread_pool();
  QK_ASSIGN_OR_RETURN(Tensor xc, ComputeCopy(*x, ctx));
  OutputStage ys;
  QK_RETURN_IF_ERROR(MakeOutput(ctx, 0, dt, x->shape(), &ys));
  QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
    using T = decltype(tag);
    const T* px = xc.data<T>();
    T* py = static_cast<T*>(ys.data());
    ParallelRange(tp, N * C, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, S)), [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) {
        const int64_t c = nc % C;
        const T* q = px + nc * S;
        T* o = py + nc * S;
        double sum = 0;
        for (int64_t i = 0; i < S; ++i) sum += q[i];
        const double mean = S ? sum / S : 0.0;
        double sq = 0;
        for (int64_t i = 0; i < S; ++i) sq += (q[i] - mean) * (q[i] - mean);
        const double var = S ? sq / S : 0.0;
        const double a = sc[c] / std::sqrt(var + eps);
        const T at = static_cast<T>(a), bt = static_cast<T>(bi[c] - mean * a);
        for (int64_t i = 0; i < S; ++i) o[i] = q[i] * at + bt;
      }
    });
    return Status::Ok();
  }));
  ys.Finish(tp);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// LpNormalization (p = 1 or 2 along one axis).
Status LpNormFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const DType dt = x->dtype();
  if (!InSet(kFloatTypes, dt)) return Unimplemented(fmt::format("LpNormalization does not support {}", DTypeName(dt)));
  const int64_t p = ctx.node().AttrInt("p", 2);
  QK_CHECK_ARG(p == 1 || p == 2, "attribute p must be 1 or 2, got {}", p);
  const int64_t rank = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(rank >= 1, "input must have rank >= 1");
  QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", -1), rank));
  const Shape& s = x->shape();
  int64_t O = 1, I = 1;
  const int64_t R = s[axis];
  for (int64_t d = 0; d < axis; ++d) O *= s[d];
  for (int64_t d = axis + 1; d < rank; ++d) I *= s[d];
  ThreadPool* tp = ctx.thread_pool();
  QK_ASSIGN_OR_RETURN(Tensor xc, ComputeCopy(*x, ctx));
  OutputStage ys;
  QK_RETURN_IF_ERROR(MakeOutput(ctx, 0, dt, s, &ys));
  QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
    using T = decltype(tag);
    const T* px = xc.data<T>();
    T* py = static_cast<T*>(ys.data());
    ParallelRange(tp, O, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, R * I)), [&](int64_t b, int64_t e) {
      std::vector<T> norm(I);
      for (int64_t o = b; o < e; ++o) {
        const T* q = px + o * R * I;
        T* out = py + o * R * I;
        std::fill(norm.begin(), norm.end(), T(0));
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t i = 0; i < I; ++i) {
            const T v = q[r * I + i];
            norm[i] += p == 1 ? std::fabs(v) : v * v;
          }
        }
        for (int64_t i = 0; i < I; ++i) {
          if (p == 2) norm[i] = std::sqrt(norm[i]);
          norm[i] = norm[i] != T(0) ? T(1) / norm[i] : T(0);
        }
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t i = 0; i < I; ++i) out[r * I + i] = q[r * I + i] * norm[i];
        }
      }
    });
    return Status::Ok();
  }));
  ys.Finish(tp);
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// MeanVarianceNormalization: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9) over `axes`.
Status MvnFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const DType dt = x->dtype();
  if (!InSet(kFloatTypes, dt)) return Unimplemented(fmt::format("MeanVarianceNormalization does not support {}", DTypeName(dt)));
  const int64_t rank = static_cast<int64_t>(x->rank());
  const Attribute* attr = ctx.node().FindAttr("axes");
  std::vector<int64_t> axes = attr ? attr->ints : std::vector<int64_t>{0, 2, 3};
  QK_ASSIGN_OR_RETURN(std::vector<bool> mask, AxesMask(axes, rank));
  const ReducePlan rp = MakeReducePlan(x->shape(), mask, true);
  ThreadPool* tp = ctx.thread_pool();
  QK_ASSIGN_OR_RETURN(Tensor xc, ComputeCopy(*x, ctx));
  OutputStage ys;
  QK_RETURN_IF_ERROR(MakeOutput(ctx, 0, dt, x->shape(), &ys));
  QK_RETURN_IF_ERROR(Dispatch<Bit(DType::kFloat32) | Bit(DType::kFloat64)>(xc.dtype(), [&](auto tag) -> Status {
    using T = decltype(tag);
    const T* px = xc.data<T>();
    T* py = static_cast<T*>(ys.data());
    QK_ASSIGN_OR_RETURN(Tensor sum_t, AccScratch<double>(ctx, rp.out_numel, "sum"));
    QK_ASSIGN_OR_RETURN(Tensor sq_t, AccScratch<double>(ctx, rp.out_numel, "sum of squares"));
    QK_ASSIGN_OR_RETURN(Tensor mean_t, ctx.Scratch(DTypeOf<T>::value, rp.out_numel, "mean"));
    QK_ASSIGN_OR_RETURN(Tensor scale_t, ctx.Scratch(DTypeOf<T>::value, rp.out_numel, "scale"));
    double* sum = sum_t.data<double>();
    double* sq = sq_t.data<double>();
    T* mean = mean_t.data<T>();
    T* scale = scale_t.data<T>();
    ReduceRuns(rp, px, sum, SumR<T, double>{}, tp);
    ReduceRuns(rp, px, sq, SumSquareR<T, double>{}, tp);
    const double cnt = static_cast<double>(std::max<int64_t>(1, rp.count));
    for (int64_t i = 0; i < rp.out_numel; ++i) {
      const double m = sum[i] / cnt;
      const double var = std::max(0.0, sq[i] / cnt - m * m);
      mean[i] = static_cast<T>(m);
      scale[i] = static_cast<T>(1.0 / (std::sqrt(var) + 1e-9));
    }
    if (rp.in_numel == 0) return Status::Ok();
    ForEachRun(rp.walk, tp, kGrain,
               [&](int64_t cur, const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& st) {
                 const T* q = px + cur;
                 T* o = py + cur;
                 if (st[0]) {
                   const T* m = mean + off[0];
                   const T* sc = scale + off[0];
                   for (int64_t i = 0; i < len; ++i) o[i] = (q[i] - m[i]) * sc[i];
                 } else {
                   const T m = mean[off[0]], sc = scale[off[0]];
                   for (int64_t i = 0; i < len; ++i) o[i] = (q[i] - m) * sc;
                 }
               });
    return Status::Ok();
  }));
  ys.Finish(tp);
  return Status::Ok();
}

void RegisterReduce(KernelRegistry& r, const char* name, RK kind, int64_t axes_input_opset) {
  r.Register("", name, [kind, axes_input_opset](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new ReduceKernel(kind, init, axes_input_opset));
  });
}

void RegisterSoftmax(KernelRegistry& r, const char* name, SM kind) {
  r.Register("", name, [kind](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new SoftmaxKernel(kind, init));
  });
}

}  // namespace

void RegisterReductionOps(KernelRegistry& r) {
  RegisterReduce(r, "ReduceSum", RK::kSum, 13);
  RegisterReduce(r, "ReduceMean", RK::kMean, 18);
  RegisterReduce(r, "ReduceMax", RK::kMax, 18);
  RegisterReduce(r, "ReduceMin", RK::kMin, 18);
  RegisterReduce(r, "ReduceProd", RK::kProd, 18);
  RegisterReduce(r, "ReduceL1", RK::kL1, 18);
  RegisterReduce(r, "ReduceL2", RK::kL2, 18);
  RegisterReduce(r, "ReduceLogSum", RK::kLogSum, 18);
  RegisterReduce(r, "ReduceLogSumExp", RK::kLogSumExp, 18);
  RegisterReduce(r, "ReduceSumSquare", RK::kSumSquare, 18);
  r.RegisterClass<ArgKernel<true>>("", "ArgMax");
  r.RegisterClass<ArgKernel<false>>("", "ArgMin");
  RegisterSoftmax(r, "Softmax", SM::kSoftmax);
  RegisterSoftmax(r, "LogSoftmax", SM::kLogSoftmax);
  RegisterSoftmax(r, "Hardmax", SM::kHardmax);
  r.RegisterClass<LayerNormKernel>("", "LayerNormalization");
  r.RegisterClass<BatchNormKernel>("", "BatchNormalization");
  r.RegisterFunction("", "InstanceNormalization", &InstanceNormFn);
  r.RegisterFunction("", "LpNormalization", &LpNormFn);
  r.RegisterFunction("", "MeanVarianceNormalization", &MvnFn);
}

}  // namespace quantkit::rt
