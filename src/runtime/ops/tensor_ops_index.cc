// Tensor/layout op family, indexing part: Gather, GatherElements, GatherND, ScatterElements (and the
// deprecated Scatter), ScatterND, NonZero, CumSum, OneHot, Trilu, TopK, Compress.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/ops/tensor_ops_internal.h"

namespace quantkit::rt {
namespace {

using tensor_ops::MaybeParallelFor;
using tensor_ops::ReadInts;

// Copies one element of `es` bytes.
inline void CopyElem(char* dst, const char* src, size_t es) {
  switch (es) {
    case 1: *dst = *src; return;
    case 2: std::memcpy(dst, src, 2); return;
    case 4: std::memcpy(dst, src, 4); return;
    case 8: std::memcpy(dst, src, 8); return;
    default: std::memcpy(dst, src, es);
  }
}

// Reads an index tensor (int32/int64), maps negative indices, checks [0, dim). `what` names it.
Status ReadIndex(const Tensor& t, int64_t i, int64_t dim, int64_t* out, const char* what) {
  int64_t v = t.dtype() == DType::kInt64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i];
  if (v < 0) v += dim;
  if (v < 0 || v >= dim) {
    return InvalidArgument(fmt::format("{} value {} at position {} is out of range for a dimension of {}", what,
                                       t.dtype() == DType::kInt64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i], i,
                                       dim));
  }
  *out = v;
  return Status::Ok();
}

Status CheckIndexType(const Tensor& t, const char* what) {
  QK_CHECK_ARG(t.dtype() == DType::kInt64 || t.dtype() == DType::kInt32, "{} must be int32 or int64, got {}", what,
               DTypeName(t.dtype()));
  return Status::Ok();
}

// ---------------------------------------------------------------- reductions for Scatter*

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

StatusOr<Reduction> ParseReduction(const Node& n) {
  const std::string s = n.AttrString("reduction", "none");
  if (s == "none") return Reduction::kNone;
  if (s == "add") return Reduction::kAdd;
  if (s == "mul") return Reduction::kMul;
  if (s == "max") return Reduction::kMax;
  if (s == "min") return Reduction::kMin;
  return InvalidArgument(fmt::format("unknown reduction '{}' (expected none, add, mul, max or min)", s));
}

template <typename T>
inline T Reduce(Reduction r, T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    switch (r) {
      case Reduction::kAdd: case Reduction::kMax: return a || b;
      case Reduction::kMul: case Reduction::kMin: return a && b;
      default: return b;
    }
  } else {
    switch (r) {
      case Reduction::kAdd: return static_cast<T>(a + b);
      case Reduction::kMul: return static_cast<T>(a * b);
      case Reduction::kMax: return std::max(a, b);
      case Reduction::kMin: return std::min(a, b);
      default: return b;
    }
  }
}

// dst[i] = reduce(dst[i], src[i]) for n elements of dtype dt.
void ReduceInto(Reduction red, DType dt, void* dst, const void* src, int64_t n) {
  if (red == Reduction::kNone) {
    std::memcpy(dst, src, static_cast<size_t>(n) * DTypeSize(dt));
    return;
  }
  if (dt == DType::kFloat16 || dt == DType::kBFloat16) {
    uint16_t* d = static_cast<uint16_t*>(dst);
    const uint16_t* s = static_cast<const uint16_t*>(src);
    const bool half = dt == DType::kFloat16;
    for (int64_t i = 0; i < n; ++i) {
      const float a = half ? HalfToFloat(d[i]) : BFloat16ToFloat(d[i]);
      const float b = half ? HalfToFloat(s[i]) : BFloat16ToFloat(s[i]);
      const float c = Reduce(red, a, b);
      d[i] = half ? FloatToHalf(c) : FloatToBFloat16(c);
    }
    return;
  }
  (void)DispatchNumeric(dt, [&](auto tag) -> Status {
    using T = decltype(tag);
    T* d = static_cast<T*>(dst);
    const T* s = static_cast<const T*>(src);
    for (int64_t i = 0; i < n; ++i) d[i] = Reduce<T>(red, d[i], s[i]);
    return Status::Ok();
  });
}

// ---------------------------------------------------------------- Gather

Status GatherFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(1));
  QK_RETURN_IF_ERROR(CheckIndexType(*idx, "indices"));
  const int64_t r = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(r >= 1, "Gather data must have rank >= 1");
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
  Shape out(x->shape().begin(), x->shape().begin() + axis);
  out.insert(out.end(), idx->shape().begin(), idx->shape().end());
  out.insert(out.end(), x->shape().begin() + axis + 1, x->shape().end());
  const int64_t dim = x->dim(axis);
  const int64_t n = idx->numel();
  std::vector<int64_t> ind(n);
  for (int64_t i = 0; i < n; ++i) QK_RETURN_IF_ERROR(ReadIndex(*idx, i, dim, &ind[i], "indices"));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  if (y->numel() == 0) return Status::Ok();
  const size_t es = DTypeSize(x->dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
  for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  const int64_t chunk = inner * static_cast<int64_t>(es);
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  MaybeParallelFor(ctx.thread_pool(), outer * n, chunk, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / n, j = t % n;
      const char* s = src + (o * dim + ind[j]) * chunk;
      if (chunk <= 8) CopyElem(dst + t * chunk, s, static_cast<size_t>(chunk));
      else std::memcpy(dst + t * chunk, s, static_cast<size_t>(chunk));
    }
  });
  return Status::Ok();
}

// Walks the multi-indices of `shape` in row-major order, tracking an offset into a tensor with
// `strides` (the walked axis `skip` is left out of the offset).
class OffsetWalker {
 public:
  OffsetWalker(const Shape& shape, std::vector<int64_t> strides, int64_t skip)
      : shape_(shape), strides_(std::move(strides)), idx_(shape.size(), 0) {
    if (skip >= 0) strides_[skip] = 0;
  }
  int64_t offset() const { return offset_; }
  int64_t index(size_t d) const { return idx_[d]; }
  void Next() {
    for (size_t k = shape_.size(); k-- > 0;) {
      offset_ += strides_[k];
      if (++idx_[k] < shape_[k]) return;
      offset_ -= strides_[k] * shape_[k];
      idx_[k] = 0;
    }
  }

 private:
  const Shape& shape_;
  std::vector<int64_t> strides_;
  std::vector<int64_t> idx_;
  int64_t offset_ = 0;
};

Status GatherElementsFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(1));
  QK_RETURN_IF_ERROR(CheckIndexType(*idx, "indices"));
  const int64_t r = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(r >= 1, "GatherElements data must have rank >= 1");
  QK_CHECK_ARG(static_cast<int64_t>(idx->rank()) == r, "indices has rank {} but data has rank {}", idx->rank(), r);
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
  for (int64_t d = 0; d < r; ++d) {
    QK_CHECK_ARG(d == axis || idx->dim(d) <= x->dim(d), "indices shape {} exceeds data shape {} on axis {}",
                 ShapeToString(idx->shape()), ShapeToString(x->shape()), d);
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), idx->shape()));
  const size_t es = DTypeSize(x->dtype());
  const std::vector<int64_t> strides = ContiguousStrides(x->shape());
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  OffsetWalker w(idx->shape(), strides, axis);
  const int64_t dim = x->dim(axis), astride = strides[axis];
  for (int64_t i = 0; i < idx->numel(); ++i, w.Next()) {
    int64_t j;
    QK_RETURN_IF_ERROR(ReadIndex(*idx, i, dim, &j, "indices"));
    CopyElem(dst + i * static_cast<int64_t>(es), src + (w.offset() + j * astride) * static_cast<int64_t>(es), es);
  }
  return Status::Ok();
}

Status GatherNDFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(1));
  QK_CHECK_ARG(idx->dtype() == DType::kInt64, "indices must be int64, got {}", DTypeName(idx->dtype()));
  const int64_t r = static_cast<int64_t>(x->rank()), q = static_cast<int64_t>(idx->rank());
  const int64_t b = ctx.node().AttrInt("batch_dims", 0);
  QK_CHECK_ARG(r >= 1 && q >= 1, "data and indices must have rank >= 1");
  QK_CHECK_ARG(b >= 0 && b < std::min(r, q), "batch_dims {} must be less than the ranks of data ({}) and indices ({})",
               b, r, q);
  const int64_t k = idx->dim(q - 1);
  QK_CHECK_ARG(k >= 1 && k <= r - b, "indices last dimension {} must be in [1, {}]", k, r - b);
  for (int64_t d = 0; d < b; ++d) {
    QK_CHECK_ARG(x->dim(d) == idx->dim(d), "batch dimension {} differs: data {} vs indices {}", d,
                 ShapeToString(x->shape()), ShapeToString(idx->shape()));
  }
  Shape out(idx->shape().begin(), idx->shape().end() - 1);
  out.insert(out.end(), x->shape().begin() + b + k, x->shape().end());
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  int64_t batch = 1, slice = 1;
  for (int64_t d = 0; d < b; ++d) batch *= x->dim(d);
  for (int64_t d = b + k; d < r; ++d) slice *= x->dim(d);
  const std::vector<int64_t> strides = ContiguousStrides(x->shape());
  const int64_t batch_stride = b > 0 ? strides[b - 1] : 0;
  const int64_t tuples = batch ? idx->numel() / k / batch : 0;
  const int64_t* ind = idx->data<int64_t>();
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t bi = 0; bi < batch; ++bi) {
    for (int64_t t = 0; t < tuples; ++t) {
      const int64_t* tup = ind + (bi * tuples + t) * k;
      int64_t off = bi * batch_stride;
      for (int64_t j = 0; j < k; ++j) {
        int64_t v = tup[j];
        const int64_t dim = x->dim(b + j);
        if (v < 0) v += dim;
        QK_CHECK_ARG(v >= 0 && v < dim, "index {} is out of range for data dimension {} of size {}", tup[j], b + j,
                     dim);
        off += v * strides[b + j];
      }
      std::memcpy(dst + (bi * tuples + t) * slice * es, src + off * es, static_cast<size_t>(slice * es));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- Scatter

class ScatterElementsKernel final : public OpKernel {
 public:
  explicit ScatterElementsKernel(Reduction red) : red_(red) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(1));
    QK_ASSIGN_OR_RETURN(const Tensor* upd, ctx.RequiredInput(2));
    QK_RETURN_IF_ERROR(CheckIndexType(*idx, "indices"));
    const int64_t r = static_cast<int64_t>(x->rank());
    QK_CHECK_ARG(r >= 1, "data must have rank >= 1");
    QK_CHECK_ARG(upd->dtype() == x->dtype(), "updates is {} but data is {}", DTypeName(upd->dtype()),
                 DTypeName(x->dtype()));
    QK_CHECK_ARG(idx->shape() == upd->shape(), "indices shape {} differs from updates shape {}",
                 ShapeToString(idx->shape()), ShapeToString(upd->shape()));
    QK_CHECK_ARG(static_cast<int64_t>(idx->rank()) == r, "indices has rank {} but data has rank {}", idx->rank(), r);
    QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
    for (int64_t d = 0; d < r; ++d) {
      QK_CHECK_ARG(d == axis || idx->dim(d) <= x->dim(d), "indices shape {} exceeds data shape {} on axis {}",
                   ShapeToString(idx->shape()), ShapeToString(x->shape()), d);
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), x->shape()));
    if (x->nbytes()) std::memcpy(y->raw_data(), x->raw_data(), x->nbytes());
    const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
    const std::vector<int64_t> strides = ContiguousStrides(x->shape());
    char* dst = static_cast<char*>(y->raw_data());
    const char* src = static_cast<const char*>(upd->raw_data());
    OffsetWalker w(idx->shape(), strides, axis);
    const int64_t dim = x->dim(axis), astride = strides[axis];
    for (int64_t i = 0; i < idx->numel(); ++i, w.Next()) {
      int64_t j;
      QK_RETURN_IF_ERROR(ReadIndex(*idx, i, dim, &j, "indices"));
      char* d = dst + (w.offset() + j * astride) * es;
      if (red_ == Reduction::kNone) CopyElem(d, src + i * es, static_cast<size_t>(es));
      else ReduceInto(red_, x->dtype(), d, src + i * es, 1);
    }
    return Status::Ok();
  }

 private:
  Reduction red_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeScatterElements(const KernelInit& init) {
  QK_ASSIGN_OR_RETURN(const Reduction red, ParseReduction(init.node));
  return std::unique_ptr<OpKernel>(new ScatterElementsKernel(red));
}

class ScatterNDKernel final : public OpKernel {
 public:
  explicit ScatterNDKernel(Reduction red) : red_(red) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(1));
    QK_ASSIGN_OR_RETURN(const Tensor* upd, ctx.RequiredInput(2));
    QK_CHECK_ARG(idx->dtype() == DType::kInt64, "indices must be int64, got {}", DTypeName(idx->dtype()));
    QK_CHECK_ARG(upd->dtype() == x->dtype(), "updates is {} but data is {}", DTypeName(upd->dtype()),
                 DTypeName(x->dtype()));
    const int64_t r = static_cast<int64_t>(x->rank()), q = static_cast<int64_t>(idx->rank());
    QK_CHECK_ARG(r >= 1 && q >= 1, "data and indices must have rank >= 1");
    const int64_t k = idx->dim(q - 1);
    QK_CHECK_ARG(k >= 1 && k <= r, "indices last dimension {} must be in [1, {}]", k, r);
    Shape want(idx->shape().begin(), idx->shape().end() - 1);
    want.insert(want.end(), x->shape().begin() + k, x->shape().end());
    QK_CHECK_ARG(upd->shape() == want, "updates shape {} must be {}", ShapeToString(upd->shape()),
                 ShapeToString(want));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), x->shape()));
    if (x->nbytes()) std::memcpy(y->raw_data(), x->raw_data(), x->nbytes());
    const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
    int64_t slice = 1;
    for (int64_t d = k; d < r; ++d) slice *= x->dim(d);
    const std::vector<int64_t> strides = ContiguousStrides(x->shape());
    const int64_t tuples = idx->numel() / k;
    const int64_t* ind = idx->data<int64_t>();
    char* dst = static_cast<char*>(y->raw_data());
    const char* src = static_cast<const char*>(upd->raw_data());
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (int64_t j = 0; j < k; ++j) {
        int64_t v = ind[t * k + j];
        const int64_t dim = x->dim(j);
        if (v < 0) v += dim;
        QK_CHECK_ARG(v >= 0 && v < dim, "index {} is out of range for data dimension {} of size {}", ind[t * k + j],
                     j, dim);
        off += v * strides[j];
      }
      ReduceInto(red_, x->dtype(), dst + off * es, src + t * slice * es, slice);
    }
    return Status::Ok();
  }

 private:
  Reduction red_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeScatterND(const KernelInit& init) {
  QK_ASSIGN_OR_RETURN(const Reduction red, ParseReduction(init.node));
  return std::unique_ptr<OpKernel>(new ScatterNDKernel(red));
}

// ---------------------------------------------------------------- NonZero

template <typename T>
bool IsNonZero(T v) {
  return v != T(0);
}

Status NonZeroFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t n = x->numel();
  std::vector<int64_t> hits;
  if (x->dtype() == DType::kFloat16 || x->dtype() == DType::kBFloat16) {
    const uint16_t* p = x->data<uint16_t>();
    for (int64_t i = 0; i < n; ++i)
      if (p[i] & 0x7fff) hits.push_back(i);
  } else {
    QK_RETURN_IF_ERROR(DispatchNumeric(x->dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      const T* p = x->data<T>();
      for (int64_t i = 0; i < n; ++i)
        if (IsNonZero(p[i])) hits.push_back(i);
      return Status::Ok();
    }));
  }
  const int64_t r = std::max<int64_t>(1, static_cast<int64_t>(x->rank()));
  const int64_t nnz = static_cast<int64_t>(hits.size());
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt64, {r, nnz}));
  int64_t* out = y->data<int64_t>();
  const Shape shape = x->rank() ? x->shape() : Shape{1};
  for (int64_t j = 0; j < nnz; ++j) {
    int64_t rem = hits[j];
    for (int64_t d = r; d-- > 0;) {
      out[d * nnz + j] = rem % shape[d];
      rem /= shape[d];
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- CumSum

template <typename T, typename Acc>
void CumSumImpl(const T* src, T* dst, int64_t outer, int64_t dim, int64_t inner, bool exclusive, bool reverse) {
  std::vector<Acc> acc(inner);
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc.begin(), acc.end(), Acc(0));
    for (int64_t kk = 0; kk < dim; ++kk) {
      const int64_t k = reverse ? dim - 1 - kk : kk;
      const T* s = src + (o * dim + k) * inner;
      T* d = dst + (o * dim + k) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        if (exclusive) {
          d[i] = static_cast<T>(acc[i]);
          acc[i] += static_cast<Acc>(s[i]);
        } else {
          acc[i] += static_cast<Acc>(s[i]);
          d[i] = static_cast<T>(acc[i]);
        }
      }
    }
  }
}

Status CumSumFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* a, ctx.RequiredInput(1));
  QK_CHECK_ARG(a->numel() == 1, "axis must be a scalar, got shape {}", ShapeToString(a->shape()));
  QK_ASSIGN_OR_RETURN(const std::vector<int64_t> av, ReadInts(*a, "axis"));
  const int64_t r = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(r >= 1, "CumSum input must have rank >= 1");
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(av[0], r));
  const bool exclusive = ctx.node().AttrInt("exclusive", 0) != 0;
  const bool reverse = ctx.node().AttrInt("reverse", 0) != 0;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
  for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  const int64_t dim = x->dim(axis);
  if (x->dtype() == DType::kFloat16 || x->dtype() == DType::kBFloat16) {
    QK_ASSIGN_OR_RETURN(const Tensor xf, ToFloat32IfHalf(ctx, *x, "float32 X"));
    QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, x->shape(), ctx.allocator(), "CumSum"));
    CumSumImpl<float, float>(xf.data<float>(), yf.data<float>(), outer, dim, inner, exclusive, reverse);
    return SetOutputFromFloat32(ctx, 0, yf, x->dtype());
  }
  QK_CHECK_ARG(x->dtype() != DType::kBool, "CumSum does not support bool");
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), x->shape()));
  return DispatchNumeric(x->dtype(), [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, bool>) {
      CumSumImpl<T, T>(x->data<T>(), y->data<T>(), outer, dim, inner, exclusive, reverse);
    }
    return Status::Ok();
  });
}

// ---------------------------------------------------------------- OneHot

Status OneHotFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* idx, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* depth_t, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const Tensor* values, ctx.RequiredInput(2));
  QK_CHECK_ARG(depth_t->numel() == 1, "depth must have one element, got shape {}", ShapeToString(depth_t->shape()));
  QK_CHECK_ARG(values->numel() == 2, "values must have two elements [off, on], got shape {}",
               ShapeToString(values->shape()));
  QK_CHECK_ARG(DTypeSize(idx->dtype()) > 0 && DTypeSize(values->dtype()) > 0, "unsupported dtype");
  const double depth_d = depth_t->GetAsDouble(0);
  QK_CHECK_ARG(depth_d >= 1 && depth_d < 9e15, "depth must be positive, got {}", depth_d);
  const int64_t depth = static_cast<int64_t>(depth_d);
  const int64_t r = static_cast<int64_t>(idx->rank());
  int64_t axis = ctx.node().AttrInt("axis", -1);
  QK_CHECK_ARG(axis >= -(r + 1) && axis <= r, "axis {} is out of range for output rank {}", axis, r + 1);
  if (axis < 0) axis += r + 1;
  Shape out = idx->shape();
  out.insert(out.begin() + axis, depth);
  QK_RETURN_IF_ERROR(CheckShape(out, values->dtype(), "OneHot output"));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, values->dtype(), out));
  const size_t es = DTypeSize(values->dtype());
  const char* off_v = static_cast<const char*>(values->raw_data());
  const char* on_v = off_v + es;
  tensor_ops::FillBytes(y->raw_data(), off_v, y->numel(), es);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= idx->dim(d);
  for (int64_t d = axis; d < r; ++d) inner *= idx->dim(d);
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      const double v = idx->GetAsDouble(o * inner + i);
      int64_t k = static_cast<int64_t>(v);
      if (k < 0) k += depth;
      if (k < 0 || k >= depth) continue;
      CopyElem(dst + ((o * depth + k) * inner + i) * static_cast<int64_t>(es), on_v, es);
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- Trilu

Status TriluFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->rank() >= 2, "Trilu input must have rank >= 2, got {}", ShapeToString(x->shape()));
  int64_t k = 0;
  if (const Tensor* kt = ctx.input(1)) {
    QK_CHECK_ARG(kt->numel() == 1, "k must be a scalar, got shape {}", ShapeToString(kt->shape()));
    QK_ASSIGN_OR_RETURN(const std::vector<int64_t> kv, ReadInts(*kt, "k"));
    k = kv[0];
  }
  const bool upper = ctx.node().AttrInt("upper", 1) != 0;
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), x->shape()));
  const int64_t rows = x->dim(x->rank() - 2), cols = x->dim(x->rank() - 1);
  k = std::clamp<int64_t>(k, -rows - 1, cols + 1);
  const int64_t es = static_cast<int64_t>(DTypeSize(x->dtype()));
  const int64_t mats = (rows > 0 && cols > 0) ? x->numel() / (rows * cols) : 0;
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t m = 0; m < mats * rows; ++m) {
    const int64_t i = m % rows;
    const char* s = src + m * cols * es;
    char* d = dst + m * cols * es;
    // Kept columns: upper j >= i + k; lower j <= i + k.
    int64_t lo, hi;  // kept range [lo, hi)
    if (upper) {
      lo = std::clamp<int64_t>(i + k, 0, cols);
      hi = cols;
    } else {
      lo = 0;
      hi = std::clamp<int64_t>(i + k + 1, 0, cols);
    }
    std::memset(d, 0, static_cast<size_t>(cols * es));
    if (hi > lo) std::memcpy(d + lo * es, s + lo * es, static_cast<size_t>((hi - lo) * es));
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- TopK

template <typename T, typename K>
void TopKSlices(const T* src, T* vals, int64_t* inds, int64_t outer, int64_t dim, int64_t inner, int64_t k,
                bool largest, ThreadPool* pool, K key) {
  MaybeParallelFor(pool, outer * inner, dim * 8, [&](int64_t b, int64_t e) {
    std::vector<int64_t> order(dim);
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / inner, i = t % inner;
      const T* s = src + o * dim * inner + i;
      std::iota(order.begin(), order.end(), 0);
      auto cmp = [&](int64_t a, int64_t c) {
        const auto va = key(s[a * inner]), vc = key(s[c * inner]);
        const bool na = va != va, nc = vc != vc;  // NaN sorts as the largest value
        if (na || nc) {
          if (na && nc) return a < c;
          return largest ? na : nc;
        }
        if (va != vc) return largest ? va > vc : va < vc;
        return a < c;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), cmp);
      for (int64_t j = 0; j < k; ++j) {
        vals[(o * k + j) * inner + i] = s[order[j] * inner];
        inds[(o * k + j) * inner + i] = order[j];
      }
    }
  });
}

Status TopKFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  int64_t k;
  if (opset >= 10) {
    QK_ASSIGN_OR_RETURN(const Tensor* kt, ctx.RequiredInput(1));
    QK_CHECK_ARG(kt->numel() == 1, "K must have one element, got shape {}", ShapeToString(kt->shape()));
    QK_ASSIGN_OR_RETURN(const std::vector<int64_t> kv, ReadInts(*kt, "K"));
    k = kv[0];
  } else {
    QK_CHECK_ARG(ctx.node().FindAttr("k"), "attribute 'k' is required");
    k = ctx.node().AttrInt("k", 0);
  }
  const int64_t r = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(r >= 1, "TopK input must have rank >= 1");
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", -1), r));
  const int64_t dim = x->dim(axis);
  QK_CHECK_ARG(k >= 0 && k <= dim, "K = {} is out of range for axis {} of dimension {}", k, axis, dim);
  const bool largest = ctx.node().AttrInt("largest", 1) != 0;
  Shape out = x->shape();
  out[axis] = k;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
  for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  QK_ASSIGN_OR_RETURN(Tensor * vals, ctx.Output(0, x->dtype(), out));
  QK_ASSIGN_OR_RETURN(Tensor * inds, ctx.Output(1, DType::kInt64, out));
  if (vals->numel() == 0) return Status::Ok();
  if (x->dtype() == DType::kFloat16) {
    TopKSlices(x->data<uint16_t>(), vals->data<uint16_t>(), inds->data<int64_t>(), outer, dim, inner, k, largest,
               ctx.thread_pool(), [](uint16_t h) { return HalfToFloat(h); });
    return Status::Ok();
  }
  if (x->dtype() == DType::kBFloat16) {
    TopKSlices(x->data<uint16_t>(), vals->data<uint16_t>(), inds->data<int64_t>(), outer, dim, inner, k, largest,
               ctx.thread_pool(), [](uint16_t h) { return BFloat16ToFloat(h); });
    return Status::Ok();
  }
  return DispatchNumeric(x->dtype(), [&](auto tag) -> Status {
    using T = decltype(tag);
    TopKSlices(x->data<T>(), vals->data<T>(), inds->data<int64_t>(), outer, dim, inner, k, largest,
               ctx.thread_pool(), [](T v) { return v; });
    return Status::Ok();
  });
}

// ---------------------------------------------------------------- Compress

Status CompressFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* c, ctx.RequiredInput(1));
  QK_CHECK_ARG(c->dtype() == DType::kBool && c->rank() == 1, "condition must be a 1-D bool tensor, got {} {}",
               DTypeName(c->dtype()), ShapeToString(c->shape()));
  const bool has_axis = ctx.node().FindAttr("axis") != nullptr;
  const int64_t r = static_cast<int64_t>(x->rank());
  int64_t axis = 0, outer = 1, inner = 1, dim = x->numel();
  if (has_axis) {
    QK_CHECK_ARG(r >= 1, "Compress with an axis needs rank >= 1");
    QK_ASSIGN_OR_RETURN(axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
    dim = x->dim(axis);
    for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
    for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  }
  const bool* cond = c->data<bool>();
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < c->numel(); ++i) {
    if (!cond[i]) continue;
    QK_CHECK_ARG(i < dim, "condition selects index {} but the dimension is {}", i, dim);
    keep.push_back(i);
  }
  Shape out;
  if (has_axis) {
    out = x->shape();
    out[axis] = static_cast<int64_t>(keep.size());
  } else {
    out = {static_cast<int64_t>(keep.size())};
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  const int64_t chunk = inner * static_cast<int64_t>(DTypeSize(x->dtype()));
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  const int64_t nk = static_cast<int64_t>(keep.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < nk; ++j)
      std::memcpy(dst + (o * nk + j) * chunk, src + (o * dim + keep[j]) * chunk, static_cast<size_t>(chunk));
  return Status::Ok();
}

// ---------------------------------------------------------------- Unique

// Items are the slices x[o, k, i] for fixed k (k in [0, dim)), compared lexicographically over (o, i).
template <typename T, typename K>
void UniqueOrder(const T* x, int64_t outer, int64_t dim, int64_t inner, K key, std::vector<int64_t>* order,
                 std::vector<int64_t>* group_of_sorted) {
  auto cmp3 = [&](int64_t a, int64_t b) -> int {
    for (int64_t o = 0; o < outer; ++o) {
      const T* pa = x + (o * dim + a) * inner;
      const T* pb = x + (o * dim + b) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const auto va = key(pa[i]), vb = key(pb[i]);
        if (va < vb) return -1;
        if (vb < va) return 1;
      }
    }
    return 0;
  };
  order->resize(dim);
  std::iota(order->begin(), order->end(), 0);
  std::stable_sort(order->begin(), order->end(), [&](int64_t a, int64_t b) { return cmp3(a, b) < 0; });
  group_of_sorted->assign(dim, 0);
  for (int64_t j = 1; j < dim; ++j) {
    (*group_of_sorted)[j] = (*group_of_sorted)[j - 1] + (cmp3((*order)[j - 1], (*order)[j]) != 0 ? 1 : 0);
  }
}

Status UniqueFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const bool sorted = ctx.node().AttrInt("sorted", 1) != 0;
  const bool has_axis = ctx.node().FindAttr("axis") != nullptr;
  const int64_t r = static_cast<int64_t>(x->rank());
  int64_t axis = 0, outer = 1, inner = 1, dim = x->numel();
  if (has_axis) {
    QK_CHECK_ARG(r >= 1, "Unique with an axis needs rank >= 1");
    QK_ASSIGN_OR_RETURN(axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
    dim = x->dim(axis);
    for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
    for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  }
  std::vector<int64_t> order, group;
  if (x->dtype() == DType::kFloat16 || x->dtype() == DType::kBFloat16) {
    const bool half = x->dtype() == DType::kFloat16;
    UniqueOrder(x->data<uint16_t>(), outer, dim, inner,
                [half](uint16_t h) { return half ? HalfToFloat(h) : BFloat16ToFloat(h); }, &order, &group);
  } else {
    QK_RETURN_IF_ERROR(DispatchNumeric(x->dtype(), [&](auto tag) -> Status {
      using T = decltype(tag);
      UniqueOrder(x->data<T>(), outer, dim, inner, [](T v) { return v; }, &order, &group);
      return Status::Ok();
    }));
  }
  const int64_t n_unique = dim ? group.back() + 1 : 0;
  // First occurrence (smallest k, thanks to the stable sort) and count of each sorted group.
  std::vector<int64_t> first(n_unique, -1), count(n_unique, 0);
  for (int64_t j = 0; j < dim; ++j) {
    if (first[group[j]] < 0) first[group[j]] = order[j];
    ++count[group[j]];
  }
  // Output order of the groups: sorted, or by first occurrence.
  std::vector<int64_t> out_order(n_unique);
  std::iota(out_order.begin(), out_order.end(), 0);
  if (!sorted) std::sort(out_order.begin(), out_order.end(), [&](int64_t a, int64_t b) { return first[a] < first[b]; });
  std::vector<int64_t> pos_of_group(n_unique);
  for (int64_t u = 0; u < n_unique; ++u) pos_of_group[out_order[u]] = u;
  Shape yshape = has_axis ? x->shape() : Shape{n_unique};
  if (has_axis) yshape[axis] = n_unique;
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), yshape));
  const int64_t chunk = inner * static_cast<int64_t>(DTypeSize(x->dtype()));
  const char* src = static_cast<const char*>(x->raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t u = 0; u < n_unique; ++u)
      std::memcpy(dst + (o * n_unique + u) * chunk, src + (o * dim + first[out_order[u]]) * chunk,
                  static_cast<size_t>(chunk));
  if (ctx.num_outputs() > 1) {
    QK_ASSIGN_OR_RETURN(Tensor * ind, ctx.Output(1, DType::kInt64, {n_unique}));
    for (int64_t u = 0; u < n_unique; ++u) ind->data<int64_t>()[u] = first[out_order[u]];
  }
  if (ctx.num_outputs() > 2) {
    QK_ASSIGN_OR_RETURN(Tensor * inv, ctx.Output(2, DType::kInt64, {dim}));
    for (int64_t j = 0; j < dim; ++j) inv->data<int64_t>()[order[j]] = pos_of_group[group[j]];
  }
  if (ctx.num_outputs() > 3) {
    QK_ASSIGN_OR_RETURN(Tensor * cnt, ctx.Output(3, DType::kInt64, {n_unique}));
    for (int64_t u = 0; u < n_unique; ++u) cnt->data<int64_t>()[u] = count[out_order[u]];
  }
  return Status::Ok();
}

}  // namespace

void RegisterTensorIndexOps(KernelRegistry& r) {
  r.RegisterFunction("", "Gather", &GatherFn);
  r.RegisterFunction("", "GatherElements", &GatherElementsFn);
  r.RegisterFunction("", "GatherND", &GatherNDFn);
  r.Register("", "ScatterElements", &MakeScatterElements);
  r.Register("", "Scatter", &MakeScatterElements);
  r.Register("", "ScatterND", &MakeScatterND);
  r.RegisterFunction("", "NonZero", &NonZeroFn);
  r.RegisterFunction("", "CumSum", &CumSumFn);
  r.RegisterFunction("", "OneHot", &OneHotFn);
  r.RegisterFunction("", "Trilu", &TriluFn);
  tensor_ops::RegisterOpsetFn(r, "TopK", &TopKFn);
  r.RegisterFunction("", "Compress", &CompressFn);
  r.RegisterFunction("", "Unique", &UniqueFn);
}

}  // namespace quantkit::rt
