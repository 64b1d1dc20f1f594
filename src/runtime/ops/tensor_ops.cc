// Tensor/layout op family: shape ops (Reshape, Squeeze, Unsqueeze, Flatten, Identity, Dropout alias
// their input), Transpose, Concat, Split, Slice, Expand, Tile, Shape, Size, ConstantOfShape, Range,
// Constant, and the byte-moving helpers shared with tensor_ops_*.cc. Everything here moves bytes,
// so it dispatches on the element size rather than the dtype.
#include <algorithm>
#include <cmath>
#include <numeric>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "runtime/ops/ops.h"
#include "runtime/ops/tensor_ops_internal.h"

namespace quantkit::rt {
namespace tensor_ops {

void MaybeParallelFor(ThreadPool* pool, int64_t n, int64_t cost_per_item,
                      const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  constexpr int64_t kMinWork = 1 << 16;
  const int64_t cost = std::max<int64_t>(cost_per_item, 1);
  if (!pool || pool->num_threads() <= 1 || n < 2 || n * cost < 2 * kMinWork) {
    fn(0, n);
    return;
  }
  const int64_t min_chunk = std::max<int64_t>(1, kMinWork / cost);
  pool->ParallelFor(n, min_chunk, fn);
}

void FillBytes(void* dst, const void* value, int64_t count, size_t elem_size) {
  if (count <= 0) return;
  switch (elem_size) {
    case 1: std::memset(dst, *static_cast<const uint8_t*>(value), static_cast<size_t>(count)); return;
    case 2: {
      uint16_t v;
      std::memcpy(&v, value, 2);
      std::fill_n(static_cast<uint16_t*>(dst), count, v);
      return;
    }
    case 4: {
      uint32_t v;
      std::memcpy(&v, value, 4);
      std::fill_n(static_cast<uint32_t*>(dst), count, v);
      return;
    }
    case 8: {
      uint64_t v;
      std::memcpy(&v, value, 8);
      std::fill_n(static_cast<uint64_t*>(dst), count, v);
      return;
    }
    default:
      for (int64_t i = 0; i < count; ++i) std::memcpy(static_cast<char*>(dst) + i * elem_size, value, elem_size);
  }
}

namespace {

template <typename T>
void GatherRow(T* dst, const T* src, int64_t n, int64_t stride) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
}

void CopyRow(char* dst, const char* src, int64_t n, int64_t stride, size_t es) {
  if (stride == 1) {
    std::memcpy(dst, src, static_cast<size_t>(n) * es);
    return;
  }
  if (stride == 0) {
    FillBytes(dst, src, n, es);
    return;
  }
  switch (es) {
    case 1: GatherRow(reinterpret_cast<uint8_t*>(dst), reinterpret_cast<const uint8_t*>(src), n, stride); return;
    case 2: GatherRow(reinterpret_cast<uint16_t*>(dst), reinterpret_cast<const uint16_t*>(src), n, stride); return;
    case 4: GatherRow(reinterpret_cast<uint32_t*>(dst), reinterpret_cast<const uint32_t*>(src), n, stride); return;
    case 8: GatherRow(reinterpret_cast<uint64_t*>(dst), reinterpret_cast<const uint64_t*>(src), n, stride); return;
    default:
      for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * es, src + i * stride * static_cast<int64_t>(es), es);
  }
}

}  // namespace

void StridedCopy(void* dst, const void* src, const Shape& shape, const std::vector<int64_t>& src_strides,
                 size_t elem_size, ThreadPool* pool) {
  // Drop unit dims and merge dims that are contiguous with each other in the source.
  std::vector<int64_t> dims, st;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    if (!dims.empty() && st.back() == src_strides[i] * shape[i]) {
      dims.back() *= shape[i];
      st.back() = src_strides[i];
    } else {
      dims.push_back(shape[i]);
      st.push_back(src_strides[i]);
    }
  }
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  const int64_t es = static_cast<int64_t>(elem_size);
  if (dims.empty()) {
    std::memcpy(d, s, elem_size);
    return;
  }
  const size_t r = dims.size() - 1;  // outer dims
  const int64_t n = dims.back(), inner_stride = st.back();
  int64_t outer = 1;
  for (size_t k = 0; k < r; ++k) outer *= dims[k];
  MaybeParallelFor(pool, outer, n * es, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(r, 0);
    int64_t rem = begin, off = 0;
    for (size_t k = r; k-- > 0;) {
      idx[k] = rem % dims[k];
      rem /= dims[k];
      off += idx[k] * st[k];
    }
    for (int64_t o = begin; o < end; ++o) {
      CopyRow(d + o * n * es, s + off * es, n, inner_stride, elem_size);
      for (size_t k = r; k-- > 0;) {
        off += st[k];
        if (++idx[k] < dims[k]) break;
        off -= st[k] * dims[k];
        idx[k] = 0;
      }
    }
  });
}

namespace {

// dst[j * ldd + i] = src[i * lds + j] for i in [0, rows), j in [0, cols): a plane transpose with
// leading dimensions. Tiled so that a tile's source rows and destination rows stay in cache; the
// tile goes through a small padded buffer, which also avoids cache-set conflicts when the strides
// are multiples of 4 KiB (common for image planes).
template <typename T>
void TransposePlane(T* dst, int64_t ldd, const T* src, int64_t lds, int64_t rows, int64_t cols) {
  constexpr int64_t kB = sizeof(T) >= 8 ? 32 : 64;
  T buf[kB][kB + 1];
  for (int64_t i0 = 0; i0 < rows; i0 += kB) {
    const int64_t ni = std::min(kB, rows - i0);
    for (int64_t j0 = 0; j0 < cols; j0 += kB) {
      const int64_t nj = std::min(kB, cols - j0);
      for (int64_t i = 0; i < ni; ++i) {
        const T* sr = src + (i0 + i) * lds + j0;
        for (int64_t j = 0; j < nj; ++j) buf[j][i] = sr[j];
      }
      for (int64_t j = 0; j < nj; ++j) {
        T* dr = dst + (j0 + j) * ldd + i0;
        for (int64_t i = 0; i < ni; ++i) dr[i] = buf[j][i];
      }
    }
  }
}

#if defined(__SSE2__)
// 4-byte elements: 4x4 SSE register transposes inside 32x32 tiles (moves bits, never converts).
template <>
void TransposePlane<uint32_t>(uint32_t* dst, int64_t ldd, const uint32_t* src, int64_t lds, int64_t rows,
                              int64_t cols) {
  constexpr int64_t kB = 32;
  float* d = reinterpret_cast<float*>(dst);
  const float* s = reinterpret_cast<const float*>(src);
  for (int64_t i0 = 0; i0 < rows; i0 += kB) {
    const int64_t i1 = std::min(i0 + kB, rows);
    for (int64_t j0 = 0; j0 < cols; j0 += kB) {
      const int64_t j1 = std::min(j0 + kB, cols);
      int64_t i = i0;
      for (; i + 4 <= i1; i += 4) {
        int64_t j = j0;
        for (; j + 4 <= j1; j += 4) {
          __m128 r0 = _mm_loadu_ps(s + (i + 0) * lds + j);
          __m128 r1 = _mm_loadu_ps(s + (i + 1) * lds + j);
          __m128 r2 = _mm_loadu_ps(s + (i + 2) * lds + j);
          __m128 r3 = _mm_loadu_ps(s + (i + 3) * lds + j);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
          _mm_storeu_ps(d + (j + 0) * ldd + i, r0);
          _mm_storeu_ps(d + (j + 1) * ldd + i, r1);
          _mm_storeu_ps(d + (j + 2) * ldd + i, r2);
          _mm_storeu_ps(d + (j + 3) * ldd + i, r3);
        }
        for (; j < j1; ++j)
          for (int64_t k = 0; k < 4; ++k) dst[j * ldd + i + k] = src[(i + k) * lds + j];
      }
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
  }
}
#endif

// Transposes the planes of a coalesced permutation whose output's last dim is not the input's last
// dim. `mdims`/`mperm` describe the coalesced input shape and permutation.
template <typename T>
void TransposePlanes(void* dst, const void* src, const Shape& mdims, const std::vector<int64_t>& mperm,
                     ThreadPool* pool) {
  const size_t mr = mdims.size();
  const std::vector<int64_t> in_strides = ContiguousStrides(mdims);
  Shape out_shape(mr);
  for (size_t j = 0; j < mr; ++j) out_shape[j] = mdims[mperm[j]];
  const std::vector<int64_t> out_strides = ContiguousStrides(out_shape);
  // Output position k holds the input's contiguous last dim; the output's last dim has source stride lds.
  size_t k = 0;
  while (mperm[k] != static_cast<int64_t>(mr - 1)) ++k;
  const int64_t rows = out_shape[mr - 1];       // i: output last dim
  const int64_t cols = out_shape[k];            // j: input last dim
  const int64_t lds = in_strides[mperm[mr - 1]];
  const int64_t ldd = out_strides[k];
  // The other output dims form the outer loop.
  std::vector<int64_t> odims, ostr_in, ostr_out;
  for (size_t j = 0; j + 1 < mr; ++j) {
    if (j == k) continue;
    odims.push_back(out_shape[j]);
    ostr_in.push_back(in_strides[mperm[j]]);
    ostr_out.push_back(out_strides[j]);
  }
  int64_t outer = 1;
  for (int64_t d : odims) outer *= d;
  constexpr int64_t kRowTile = 64, kColTile = 256;
  const int64_t rb = (rows + kRowTile - 1) / kRowTile, cb = (cols + kColTile - 1) / kColTile;
  T* d = static_cast<T*>(dst);
  const T* s = static_cast<const T*>(src);
  MaybeParallelFor(pool, outer * rb * cb, kRowTile * kColTile * static_cast<int64_t>(sizeof(T)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t t = begin; t < end; ++t) {
                       const int64_t c = t % cb, r = (t / cb) % rb;
                       int64_t o = t / (cb * rb);
                       int64_t soff = 0, doff = 0;
                       for (size_t q = odims.size(); q-- > 0;) {
                         const int64_t idx = o % odims[q];
                         o /= odims[q];
                         soff += idx * ostr_in[q];
                         doff += idx * ostr_out[q];
                       }
                       const int64_t i0 = r * kRowTile, j0 = c * kColTile;
                       TransposePlane<T>(d + doff + j0 * ldd + i0, ldd, s + soff + i0 * lds + j0, lds,
                                         std::min(kRowTile, rows - i0), std::min(kColTile, cols - j0));
                     }
                   });
}

}  // namespace

void TransposeBytes(void* dst, const void* src, const Shape& in_shape, const std::vector<int64_t>& perm,
                    size_t elem_size, ThreadPool* pool) {
  const size_t rank = in_shape.size();
  for (int64_t d : in_shape)
    if (d == 0) return;
  // Drop unit dims (renumbering the permutation), then merge input dims i, i+1 that stay adjacent.
  std::vector<int64_t> keep_index(rank, -1);
  Shape dims;
  for (size_t i = 0; i < rank; ++i) {
    if (in_shape[i] != 1) {
      keep_index[i] = static_cast<int64_t>(dims.size());
      dims.push_back(in_shape[i]);
    }
  }
  std::vector<int64_t> p;
  for (int64_t a : perm)
    if (keep_index[a] >= 0) p.push_back(keep_index[a]);
  // Runs of consecutive input dims in output order become one dim.
  std::vector<std::vector<int64_t>> groups;
  for (int64_t a : p) {
    if (!groups.empty() && groups.back().back() + 1 == a) groups.back().push_back(a);
    else groups.push_back({a});
  }
  std::vector<size_t> order(groups.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return groups[x][0] < groups[y][0]; });
  Shape mdims(groups.size());
  std::vector<int64_t> mperm(groups.size());
  for (size_t k = 0; k < order.size(); ++k) {
    int64_t sz = 1;
    for (int64_t a : groups[order[k]]) sz *= dims[a];
    mdims[k] = sz;
    mperm[order[k]] = static_cast<int64_t>(k);
  }
  const size_t mr = mdims.size();
  int64_t total = 1;
  for (int64_t d : in_shape) total *= d;
  bool identity = true;
  for (size_t j = 0; j < mr; ++j) identity = identity && mperm[j] == static_cast<int64_t>(j);
  if (identity) {
    std::memcpy(dst, src, static_cast<size_t>(total) * elem_size);
    return;
  }
  if (mperm[mr - 1] != static_cast<int64_t>(mr - 1)) {
    switch (elem_size) {
      case 1: TransposePlanes<uint8_t>(dst, src, mdims, mperm, pool); return;
      case 2: TransposePlanes<uint16_t>(dst, src, mdims, mperm, pool); return;
      case 4: TransposePlanes<uint32_t>(dst, src, mdims, mperm, pool); return;
      case 8: TransposePlanes<uint64_t>(dst, src, mdims, mperm, pool); return;
      default: break;
    }
  }
  // The input's last dim stays last: rows of contiguous memory.
  const std::vector<int64_t> in_strides = ContiguousStrides(mdims);
  Shape out_shape(mr);
  std::vector<int64_t> strides(mr);
  for (size_t j = 0; j < mr; ++j) {
    out_shape[j] = mdims[mperm[j]];
    strides[j] = in_strides[mperm[j]];
  }
  StridedCopy(dst, src, out_shape, strides, elem_size, pool);
}

StatusOr<std::vector<int64_t>> ReadInts(const Tensor& t, const char* what) {
  if (t.dtype() != DType::kInt64 && t.dtype() != DType::kInt32) {
    return InvalidArgument(fmt::format("{} must be int64 or int32, got {}", what, DTypeName(t.dtype())));
  }
  if (t.rank() > 1) return InvalidArgument(fmt::format("{} must be 0-D or 1-D, got shape {}", what, ShapeToString(t.shape())));
  return t.ToInt64Vector();
}

Tensor ScalarOfType(DType dtype, double v) {
  Tensor t(dtype, {});
  switch (dtype) {
    case DType::kFloat16: *t.data<uint16_t>() = FloatToHalf(static_cast<float>(v)); break;
    case DType::kBFloat16: *t.data<uint16_t>() = FloatToBFloat16(static_cast<float>(v)); break;
    default:
      (void)DispatchNumeric(dtype, [&](auto tag) -> Status {
        using T = decltype(tag);
        if constexpr (std::is_same_v<T, bool>) *t.data<bool>() = v != 0;
        else *t.data<T>() = static_cast<T>(v);
        return Status::Ok();
      });
  }
  return t;
}

Status CheckOutputShape(const Shape& shape, const char* what) {
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument(fmt::format("{}: negative dimension in {}", what, ShapeToString(shape)));
  }
  return CheckShape(shape, DType::kUInt8, what);
}

}  // namespace tensor_ops

namespace {

using tensor_ops::ReadInts;
using tensor_ops::RegisterOpsetFn;
using tensor_ops::StridedCopy;

// ---------------------------------------------------------------- Reshape & friends (aliasing)

Status ReshapeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* s, ctx.RequiredInput(1));
  QK_CHECK_ARG(s->rank() == 1 && s->dtype() == DType::kInt64, "shape input must be a 1-D int64 tensor, got {} {}",
               DTypeName(s->dtype()), ShapeToString(s->shape()));
  const bool allowzero = ctx.node().AttrInt("allowzero", 0) != 0;
  Shape shape = s->ToInt64Vector();
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      QK_CHECK_ARG(infer < 0, "shape {} has more than one -1", ShapeToString(shape));
      infer = static_cast<int>(i);
      continue;
    }
    QK_CHECK_ARG(shape[i] >= 0, "shape {} has an invalid dimension {}", ShapeToString(shape), shape[i]);
    if (shape[i] == 0 && !allowzero) {
      QK_CHECK_ARG(i < x->rank(), "shape {}: 0 at index {} copies an input dimension, but the input has rank {}",
                   ShapeToString(shape), i, x->rank());
      shape[i] = x->dim(i);
    }
    QK_CHECK_ARG(!__builtin_mul_overflow(known, shape[i], &known), "shape {} is too large", ShapeToString(shape));
  }
  if (infer >= 0) {
    QK_CHECK_ARG(known != 0 && x->numel() % known == 0, "cannot reshape {} to {}: -1 cannot be inferred",
                 ShapeToString(x->shape()), ShapeToString(s->ToInt64Vector()));
    shape[infer] = x->numel() / known;
    known *= shape[infer];
  }
  QK_CHECK_ARG(known == x->numel(), "cannot reshape {} ({} elements) to {}", ShapeToString(x->shape()),
               x->numel(), ShapeToString(shape));
  ctx.SetOutput(0, x->Reshaped(std::move(shape)));
  return Status::Ok();
}

StatusOr<std::vector<int64_t>> AxesFromAttrOrInput(KernelContext& ctx, int64_t opset, int64_t input_opset,
                                                   size_t input_index, bool* given) {
  std::vector<int64_t> axes;
  *given = false;
  if (opset >= input_opset) {
    if (const Tensor* a = ctx.input(input_index)) {
      QK_ASSIGN_OR_RETURN(axes, ReadInts(*a, "axes"));
      *given = true;
    }
  } else if (ctx.node().FindAttr("axes")) {
    axes = ctx.node().AttrInts("axes");
    *given = true;
  }
  return axes;
}

Status SqueezeFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  bool given = false;
  QK_ASSIGN_OR_RETURN(std::vector<int64_t> axes, AxesFromAttrOrInput(ctx, opset, 13, 1, &given));
  const int64_t r = static_cast<int64_t>(x->rank());
  std::vector<bool> drop(r, false);
  if (!given) {
    for (int64_t i = 0; i < r; ++i) drop[i] = x->dim(i) == 1;
  } else {
    for (int64_t a : axes) {
      QK_ASSIGN_OR_RETURN(int64_t ax, NormalizeAxis(a, r));
      QK_CHECK_ARG(x->dim(ax) == 1, "cannot squeeze axis {}: its dimension is {} (input shape {})", a, x->dim(ax),
                   ShapeToString(x->shape()));
      drop[ax] = true;
    }
  }
  Shape out;
  for (int64_t i = 0; i < r; ++i)
    if (!drop[i]) out.push_back(x->dim(i));
  ctx.SetOutput(0, x->Reshaped(std::move(out)));
  return Status::Ok();
}

Status UnsqueezeFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  bool given = false;
  QK_ASSIGN_OR_RETURN(std::vector<int64_t> axes, AxesFromAttrOrInput(ctx, opset, 13, 1, &given));
  QK_CHECK_ARG(given, "Unsqueeze needs axes ({})", opset >= 13 ? "input #1" : "attribute 'axes'");
  const int64_t out_rank = static_cast<int64_t>(x->rank() + axes.size());
  std::vector<bool> inserted(out_rank, false);
  for (int64_t a : axes) {
    QK_ASSIGN_OR_RETURN(int64_t ax, NormalizeAxis(a, out_rank));
    QK_CHECK_ARG(!inserted[ax], "axis {} appears twice in axes", a);
    inserted[ax] = true;
  }
  Shape out(out_rank);
  size_t k = 0;
  for (int64_t i = 0; i < out_rank; ++i) out[i] = inserted[i] ? 1 : x->dim(k++);
  ctx.SetOutput(0, x->Reshaped(std::move(out)));
  return Status::Ok();
}

Status FlattenFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t r = static_cast<int64_t>(x->rank());
  int64_t axis = ctx.node().AttrInt("axis", 1);
  QK_CHECK_ARG(axis >= -r && axis <= r, "axis {} is out of range for rank {}", axis, r);
  if (axis < 0) axis += r;
  int64_t a = 1;
  for (int64_t i = 0; i < axis; ++i) a *= x->dim(i);
  int64_t b = 1;
  for (int64_t i = axis; i < r; ++i) b *= x->dim(i);
  ctx.SetOutput(0, x->Reshaped({a, b}));
  return Status::Ok();
}

Status IdentityFn(KernelContext& ctx) {
  const Value* v = ctx.input_value(0);
  QK_CHECK_ARG(v != nullptr, "required input #0 is missing");
  ctx.SetOutputValue(0, *v);
  return Status::Ok();
}

Status DropoutFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  float ratio = 0.5f;
  bool training = false;
  if (opset >= 12) {
    if (const Tensor* r = ctx.input(1)) {
      QK_CHECK_ARG(r->numel() == 1, "ratio must be a scalar, got shape {}", ShapeToString(r->shape()));
      ratio = static_cast<float>(r->GetAsDouble(0));
    }
    if (const Tensor* t = ctx.input(2)) {
      QK_CHECK_ARG(t->numel() == 1, "training_mode must be a scalar, got shape {}", ShapeToString(t->shape()));
      training = t->GetAsDouble(0) != 0;
    }
  } else {
    ratio = ctx.node().AttrFloat("ratio", 0.5f);
  }
  QK_CHECK_ARG(ratio >= 0 && ratio < 1, "ratio must be in [0, 1), got {}", ratio);
  if (training && ratio != 0) {
    return Unimplemented(fmt::format("Dropout in training mode (ratio {}) is random and not supported", ratio));
  }
  ctx.SetOutput(0, *x);
  if (ctx.num_outputs() > 1 && ctx.output_wanted(1)) {
    if (opset >= 10) {
      QK_ASSIGN_OR_RETURN(Tensor * m, ctx.Output(1, DType::kBool, x->shape()));
      if (m->numel()) std::memset(m->raw_data(), 1, m->nbytes());
    } else {
      QK_ASSIGN_OR_RETURN(Tensor * m, ctx.Output(1, x->dtype(), x->shape()));
      const Tensor one = tensor_ops::ScalarOfType(x->dtype(), 1.0);
      tensor_ops::FillBytes(m->raw_data(), one.raw_data(), m->numel(), DTypeSize(x->dtype()));
    }
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- Transpose

Status TransposeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t r = static_cast<int64_t>(x->rank());
  std::vector<int64_t> perm = ctx.node().AttrInts("perm");
  if (!ctx.node().FindAttr("perm")) {
    perm.resize(r);
    for (int64_t i = 0; i < r; ++i) perm[i] = r - 1 - i;
  }
  QK_CHECK_ARG(static_cast<int64_t>(perm.size()) == r, "perm has {} entries but the input has rank {}", perm.size(), r);
  std::vector<bool> seen(r, false);
  for (auto& p : perm) {
    QK_ASSIGN_OR_RETURN(p, NormalizeAxis(p, r));
    QK_CHECK_ARG(!seen[p], "perm repeats axis {}", p);
    seen[p] = true;
  }
  Shape out(r);
  for (int64_t i = 0; i < r; ++i) out[i] = x->dim(perm[i]);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  tensor_ops::TransposeBytes(y->raw_data(), x->raw_data(), x->shape(), perm, DTypeSize(x->dtype()), ctx.thread_pool());
  return Status::Ok();
}

// ---------------------------------------------------------------- Concat / Split

Status ConcatFn(KernelContext& ctx) {
  std::vector<const Tensor*> ins;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor* t = ctx.input(i);
    QK_CHECK_ARG(t != nullptr, "input #{} is missing", i);
    ins.push_back(t);
  }
  QK_CHECK_ARG(!ins.empty(), "Concat needs at least one input");
  QK_CHECK_ARG(ctx.node().FindAttr("axis"), "attribute 'axis' is required");
  const Tensor& first = *ins[0];
  const int64_t r = static_cast<int64_t>(first.rank());
  QK_CHECK_ARG(r > 0, "Concat inputs must have rank >= 1");
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
  Shape out = first.shape();
  out[axis] = 0;
  for (size_t i = 0; i < ins.size(); ++i) {
    const Tensor& t = *ins[i];
    QK_CHECK_ARG(t.dtype() == first.dtype(), "input #{} is {} but input #0 is {}", i, DTypeName(t.dtype()),
                 DTypeName(first.dtype()));
    QK_CHECK_ARG(static_cast<int64_t>(t.rank()) == r, "input #{} has rank {} but input #0 has rank {}", i, t.rank(), r);
    for (int64_t d = 0; d < r; ++d) {
      QK_CHECK_ARG(d == axis || t.dim(d) == first.dim(d), "input #{} has shape {}, incompatible with {} on axis {}", i,
                   ShapeToString(t.shape()), ShapeToString(first.shape()), axis);
    }
    out[axis] += t.dim(axis);
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, first.dtype(), out));
  const size_t es = DTypeSize(first.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out[d];
  for (int64_t d = axis + 1; d < r; ++d) inner *= out[d];
  const int64_t out_row = out[axis] * inner * static_cast<int64_t>(es);
  char* dst = static_cast<char*>(y->raw_data());
  int64_t col = 0;
  for (const Tensor* t : ins) {
    const int64_t row = t->dim(axis) * inner * static_cast<int64_t>(es);
    if (row > 0) {
      const char* src = static_cast<const char*>(t->raw_data());
      tensor_ops::MaybeParallelFor(ctx.thread_pool(), outer, row, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) std::memcpy(dst + o * out_row + col, src + o * row, static_cast<size_t>(row));
      });
    }
    col += row;
  }
  return Status::Ok();
}

Status SplitFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t r = static_cast<int64_t>(x->rank());
  QK_CHECK_ARG(r > 0, "Split input must have rank >= 1");
  QK_ASSIGN_OR_RETURN(const int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), r));
  const int64_t n_out = static_cast<int64_t>(ctx.num_outputs());
  const int64_t dim = x->dim(axis);
  std::vector<int64_t> split;
  bool given = false;
  if (opset >= 13) {
    if (const Tensor* s = ctx.input(1)) {
      QK_ASSIGN_OR_RETURN(split, ReadInts(*s, "split"));
      given = true;
    }
  } else if (ctx.node().FindAttr("split")) {
    split = ctx.node().AttrInts("split");
    given = true;
  }
  if (given) {
    QK_CHECK_ARG(static_cast<int64_t>(split.size()) == n_out, "split has {} entries but the node has {} outputs",
                 split.size(), n_out);
    int64_t sum = 0;
    for (int64_t s : split) {
      QK_CHECK_ARG(s >= 0, "split sizes must be non-negative, got {}", s);
      sum += s;
    }
    QK_CHECK_ARG(sum == dim, "split sizes add up to {} but axis {} has dimension {}", sum, axis, dim);
  } else if (ctx.node().FindAttr("num_outputs")) {
    const int64_t n = ctx.node().AttrInt("num_outputs", 0);
    QK_CHECK_ARG(n == n_out && n > 0, "num_outputs is {} but the node has {} outputs", n, n_out);
    const int64_t chunk = (dim + n - 1) / n;
    int64_t left = dim;
    for (int64_t i = 0; i < n; ++i) {
      split.push_back(std::min(chunk, left));
      left -= split.back();
    }
  } else {
    QK_CHECK_ARG(n_out > 0 && dim % n_out == 0, "axis {} of dimension {} cannot be split into {} equal parts", axis,
                 dim, n_out);
    split.assign(n_out, dim / n_out);
  }
  const size_t es = DTypeSize(x->dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
  for (int64_t d = axis + 1; d < r; ++d) inner *= x->dim(d);
  const int64_t in_row = dim * inner * static_cast<int64_t>(es);
  const char* src = static_cast<const char*>(x->raw_data());
  int64_t col = 0;
  for (int64_t i = 0; i < n_out; ++i) {
    Shape out = x->shape();
    out[axis] = split[i];
    const int64_t row = split[i] * inner * static_cast<int64_t>(es);
    if (ctx.output_wanted(i)) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(i, x->dtype(), out));
      char* dst = static_cast<char*>(y->raw_data());
      if (row > 0) {
        tensor_ops::MaybeParallelFor(ctx.thread_pool(), outer, row, [&](int64_t b, int64_t e) {
          for (int64_t o = b; o < e; ++o) std::memcpy(dst + o * row, src + o * in_row + col, static_cast<size_t>(row));
        });
      }
    }
    col += row;
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- Slice

Status SliceFn(KernelContext& ctx, int64_t opset) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t r = static_cast<int64_t>(x->rank());
  std::vector<int64_t> starts, ends, axes, steps;
  bool has_axes = false, has_steps = false;
  if (opset >= 10) {
    QK_ASSIGN_OR_RETURN(const Tensor* s, ctx.RequiredInput(1));
    QK_ASSIGN_OR_RETURN(const Tensor* e, ctx.RequiredInput(2));
    QK_ASSIGN_OR_RETURN(starts, ReadInts(*s, "starts"));
    QK_ASSIGN_OR_RETURN(ends, ReadInts(*e, "ends"));
    if (const Tensor* a = ctx.input(3)) {
      QK_ASSIGN_OR_RETURN(axes, ReadInts(*a, "axes"));
      has_axes = true;
    }
    if (const Tensor* st = ctx.input(4)) {
      QK_ASSIGN_OR_RETURN(steps, ReadInts(*st, "steps"));
      has_steps = true;
    }
  } else {
    starts = ctx.node().AttrInts("starts");
    ends = ctx.node().AttrInts("ends");
    has_axes = ctx.node().FindAttr("axes") != nullptr;
    axes = ctx.node().AttrInts("axes");
  }
  QK_CHECK_ARG(starts.size() == ends.size(), "starts has {} entries but ends has {}", starts.size(), ends.size());
  if (!has_axes) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (!has_steps) steps.assign(starts.size(), 1);
  QK_CHECK_ARG(axes.size() == starts.size() && steps.size() == starts.size(),
               "starts, ends, axes and steps must have the same length ({}, {}, {}, {})", starts.size(), ends.size(),
               axes.size(), steps.size());
  Shape out = x->shape();
  std::vector<int64_t> begin(r, 0), step(r, 1);
  std::vector<bool> seen(r, false);
  for (size_t i = 0; i < axes.size(); ++i) {
    QK_ASSIGN_OR_RETURN(const int64_t ax, NormalizeAxis(axes[i], r));
    QK_CHECK_ARG(!seen[ax], "axis {} appears twice in axes", axes[i]);
    seen[ax] = true;
    const int64_t dim = x->dim(ax);
    QK_CHECK_ARG(steps[i] != 0, "steps must not be 0 (axis {})", axes[i]);
    // A step longer than the axis selects at most one element; clamping it avoids overflow.
    const int64_t st = std::clamp<int64_t>(steps[i], -std::max<int64_t>(dim, 1), std::max<int64_t>(dim, 1));
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    int64_t len;
    if (dim == 0) {
      len = 0;
    } else if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      len = e > s ? (e - s + st - 1) / st : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      len = s > e ? (s - e + (-st) - 1) / (-st) : 0;
    }
    out[ax] = len;
    begin[ax] = len > 0 ? s : 0;
    step[ax] = st;
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  if (y->numel() == 0) return Status::Ok();
  const std::vector<int64_t> in_strides = ContiguousStrides(x->shape());
  std::vector<int64_t> strides(r);
  int64_t offset = 0;
  for (int64_t d = 0; d < r; ++d) {
    strides[d] = in_strides[d] * step[d];
    offset += begin[d] * in_strides[d];
  }
  const size_t es = DTypeSize(x->dtype());
  StridedCopy(y->raw_data(), static_cast<const char*>(x->raw_data()) + offset * static_cast<int64_t>(es), out,
              strides, es, ctx.thread_pool());
  return Status::Ok();
}

// ---------------------------------------------------------------- Expand / Tile

Status ExpandFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* s, ctx.RequiredInput(1));
  QK_CHECK_ARG(s->rank() == 1, "shape input must be 1-D, got {}", ShapeToString(s->shape()));
  QK_ASSIGN_OR_RETURN(const std::vector<int64_t> shape, ReadInts(*s, "shape"));
  for (int64_t d : shape) QK_CHECK_ARG(d >= 0, "shape {} has a negative dimension", ShapeToString(shape));
  QK_ASSIGN_OR_RETURN(const Shape out, BroadcastShapes(x->shape(), shape));
  if (out == x->shape()) {
    ctx.SetOutput(0, *x);
    return Status::Ok();
  }
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  if (y->numel() == 0) return Status::Ok();
  const std::vector<int64_t> strides = BroadcastStrides(x->shape(), out.size());
  StridedCopy(y->raw_data(), x->raw_data(), out, strides, DTypeSize(x->dtype()), ctx.thread_pool());
  return Status::Ok();
}

Status TileFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* rt, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const std::vector<int64_t> reps, ReadInts(*rt, "repeats"));
  const size_t r = x->rank();
  QK_CHECK_ARG(reps.size() == r, "repeats has {} entries but the input has rank {}", reps.size(), r);
  Shape out(r), view;
  std::vector<int64_t> strides;
  const std::vector<int64_t> in_strides = ContiguousStrides(x->shape());
  for (size_t i = 0; i < r; ++i) {
    QK_CHECK_ARG(reps[i] >= 0, "repeats must be non-negative, got {}", reps[i]);
    QK_CHECK_ARG(!__builtin_mul_overflow(x->dim(i), reps[i], &out[i]), "repeats {} make axis {} too large", reps[i],
                 i);
    view.push_back(reps[i]);
    strides.push_back(0);
    view.push_back(x->dim(i));
    strides.push_back(in_strides[i]);
  }
  QK_RETURN_IF_ERROR(tensor_ops::CheckOutputShape(out, "Tile output"));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), out));
  if (y->numel() == 0) return Status::Ok();
  StridedCopy(y->raw_data(), x->raw_data(), view, strides, DTypeSize(x->dtype()), ctx.thread_pool());
  return Status::Ok();
}

// ---------------------------------------------------------------- Shape, Size, constants, Range

Status ShapeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const int64_t r = static_cast<int64_t>(x->rank());
  int64_t start = ctx.node().AttrInt("start", 0);
  int64_t end = ctx.node().AttrInt("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  const int64_t n = std::max<int64_t>(end - start, 0);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt64, {n}));
  for (int64_t i = 0; i < n; ++i) y->data<int64_t>()[i] = x->dim(start + i);
  return Status::Ok();
}

Status SizeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt64, {}));
  *y->data<int64_t>() = x->numel();
  return Status::Ok();
}

class ConstantOfShapeKernel final : public OpKernel {
 public:
  explicit ConstantOfShapeKernel(Tensor value) : value_(std::move(value)) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* s, ctx.RequiredInput(0));
    QK_CHECK_ARG(s->rank() == 1, "shape input must be 1-D, got {}", ShapeToString(s->shape()));
    QK_ASSIGN_OR_RETURN(const Shape shape, ReadInts(*s, "shape"));
    QK_RETURN_IF_ERROR(tensor_ops::CheckOutputShape(shape, "ConstantOfShape output"));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, value_.dtype(), shape));
    tensor_ops::FillBytes(y->raw_data(), value_.raw_data(), y->numel(), DTypeSize(value_.dtype()));
    return Status::Ok();
  }

 private:
  Tensor value_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeConstantOfShape(const KernelInit& init) {
  Tensor value = Tensor::Scalar<float>(0.f);
  if (const Attribute* a = init.node.FindAttr("value")) {
    QK_CHECK_ARG(a->type == Attribute::Type::kTensor && a->t.defined(), "attribute 'value' must be a tensor");
    QK_CHECK_ARG(a->t.numel() == 1, "attribute 'value' must have one element, got shape {}",
                 ShapeToString(a->t.shape()));
    QK_CHECK_ARG(DTypeSize(a->t.dtype()) > 0, "attribute 'value' has unsupported dtype {}", DTypeName(a->t.dtype()));
    value = a->t;
  }
  return std::unique_ptr<OpKernel>(new ConstantOfShapeKernel(value));
}

class ConstantKernel final : public OpKernel {
 public:
  explicit ConstantKernel(Tensor value) : value_(std::move(value)) {}
  Status Compute(KernelContext& ctx) override {
    ctx.SetOutput(0, value_);
    return Status::Ok();
  }

 private:
  Tensor value_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeConstant(const KernelInit& init) {
  const Node& n = init.node;
  Tensor value;
  int found = 0;
  for (const Attribute& a : n.attributes) {
    if (a.name == "value") {
      QK_CHECK_ARG(a.type == Attribute::Type::kTensor && a.t.defined(), "attribute 'value' must be a tensor");
      if (DTypeSize(a.t.dtype()) == 0) {
        return Unimplemented(fmt::format("Constant of dtype {} is not supported", DTypeName(a.t.dtype())));
      }
      value = a.t;
    } else if (a.name == "value_float") {
      value = Tensor::Scalar<float>(a.f);
    } else if (a.name == "value_floats") {
      value = Tensor::FromVector<float>(a.floats, {static_cast<int64_t>(a.floats.size())});
    } else if (a.name == "value_int") {
      value = Tensor::Scalar<int64_t>(a.i);
    } else if (a.name == "value_ints") {
      value = Tensor::FromVector<int64_t>(a.ints, {static_cast<int64_t>(a.ints.size())});
    } else if (a.name == "value_string" || a.name == "value_strings") {
      return Unimplemented("Constant with string values is not supported");
    } else if (a.name == "sparse_value") {
      return Unimplemented("Constant with a sparse_value is not supported");
    } else {
      continue;
    }
    ++found;
  }
  QK_CHECK_ARG(found == 1, "Constant needs exactly one value attribute, got {}", found);
  return std::unique_ptr<OpKernel>(new ConstantKernel(value));
}

Status RangeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* start, ctx.RequiredInput(0));
  QK_ASSIGN_OR_RETURN(const Tensor* limit, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(const Tensor* delta, ctx.RequiredInput(2));
  for (const Tensor* t : {start, limit, delta}) {
    QK_CHECK_ARG(t->numel() == 1 && t->rank() <= 1, "start, limit and delta must be scalars, got shape {}",
                 ShapeToString(t->shape()));
    QK_CHECK_ARG(t->dtype() == start->dtype(), "start, limit and delta must have the same dtype");
  }
  const DType dt = start->dtype();
  QK_CHECK_ARG(dt != DType::kBool && dt != DType::kFloat16 && dt != DType::kBFloat16,
               "Range does not support dtype {}", DTypeName(dt));
  return DispatchNumeric(dt, [&](auto tag) -> Status {
    using T = decltype(tag);
    const T s = start->data<T>()[0], l = limit->data<T>()[0], d = delta->data<T>()[0];
    QK_CHECK_ARG(d != T(0), "delta must not be 0");
    const double count = std::ceil((static_cast<double>(l) - static_cast<double>(s)) / static_cast<double>(d));
    QK_CHECK_ARG(!std::isnan(count) && count < 9e18, "Range length is not finite ({})", count);
    const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
    QK_RETURN_IF_ERROR(CheckShape({n}, dt, "Range output"));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, {n}));
    T* out = y->data<T>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(s + static_cast<T>(i) * d);
    return Status::Ok();
  });
}

Status EyeLikeFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->rank() == 2, "EyeLike input must be 2-D, got {}", ShapeToString(x->shape()));
  DType dt = x->dtype();
  if (const Attribute* a = ctx.node().FindAttr("dtype")) {
    QK_CHECK_ARG(IsSupportedDType(static_cast<int32_t>(a->i)), "unsupported dtype {}", a->i);
    dt = static_cast<DType>(a->i);
  }
  const int64_t rows = x->dim(0), cols = x->dim(1);
  const int64_t k = std::clamp<int64_t>(ctx.node().AttrInt("k", 0), -rows - 1, cols + 1);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, x->shape()));
  if (y->nbytes()) std::memset(y->raw_data(), 0, y->nbytes());
  const Tensor one = tensor_ops::ScalarOfType(dt, 1.0);
  const size_t es = DTypeSize(dt);
  char* dst = static_cast<char*>(y->raw_data());
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t j = i + k;
    if (j >= 0 && j < cols) std::memcpy(dst + (i * cols + j) * static_cast<int64_t>(es), one.raw_data(), es);
  }
  return Status::Ok();
}

}  // namespace

void RegisterTensorShapeOps(KernelRegistry& r) {
  r.RegisterFunction("", "Reshape", &ReshapeFn);
  RegisterOpsetFn(r, "Squeeze", &SqueezeFn);
  RegisterOpsetFn(r, "Unsqueeze", &UnsqueezeFn);
  r.RegisterFunction("", "Flatten", &FlattenFn);
  r.RegisterFunction("", "Identity", &IdentityFn);
  RegisterOpsetFn(r, "Dropout", &DropoutFn);
  r.RegisterFunction("", "Transpose", &TransposeFn);
  r.RegisterFunction("", "Concat", &ConcatFn);
  RegisterOpsetFn(r, "Split", &SplitFn);
  RegisterOpsetFn(r, "Slice", &SliceFn);
  r.RegisterFunction("", "Expand", &ExpandFn);
  r.RegisterFunction("", "Tile", &TileFn);
  r.RegisterFunction("", "Shape", &ShapeFn);
  r.RegisterFunction("", "Size", &SizeFn);
  r.Register("", "ConstantOfShape", &MakeConstantOfShape);
  r.Register("", "Constant", &MakeConstant);
  r.RegisterFunction("", "Range", &RangeFn);
  r.RegisterFunction("", "EyeLike", &EyeLikeFn);
}

void RegisterTensorOps(KernelRegistry& r) {
  RegisterTensorShapeOps(r);
  RegisterTensorIndexOps(r);
  RegisterTensorPadOps(r);
  RegisterTensorResizeOps(r);
}

}  // namespace quantkit::rt
