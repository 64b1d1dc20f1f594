// Helpers shared by op implementations: axis normalisation, broadcasting, dtype dispatch.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "quantkit/float16.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"
#include "runtime/kernel.h"

namespace quantkit::rt {

// Maps a possibly negative axis into [0, rank). Error names the axis and rank.
inline StatusOr<int64_t> NormalizeAxis(int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    return InvalidArgument(fmt::format("axis {} is out of range for rank {}", axis, rank));
  }
  return axis < 0 ? axis + rank : axis;
}

// Numpy-style multidirectional broadcast of two shapes.
inline StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i + a.size() >= r ? a[i + a.size() - r] : 1;
    const int64_t db = i + b.size() >= r ? b[i + b.size() - r] : 1;
    if (da != db && da != 1 && db != 1) {
      return InvalidArgument(fmt::format("shapes {} and {} cannot be broadcast", ShapeToString(a), ShapeToString(b)));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Row-major strides of `shape`, aligned to rank `out_rank`, with 0 for broadcast dims.
inline std::vector<int64_t> BroadcastStrides(const Shape& shape, size_t out_rank) {
  std::vector<int64_t> strides(out_rank, 0);
  int64_t s = 1;
  for (size_t k = shape.size(); k-- > 0;) {
    const size_t o = k + out_rank - shape.size();
    strides[o] = shape[k] == 1 ? 0 : s;
    s *= shape[k];
  }
  return strides;
}

inline std::vector<int64_t> ContiguousStrides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t k = shape.size(); k-- > 1;) strides[k - 1] = strides[k] * shape[k];
  return strides;
}

// Calls f(T{}) with T the C++ type of dtype. float16/bfloat16 are not included (convert first).
template <typename F>
Status DispatchNumeric(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat64: return f(double{});
    case DType::kInt8: return f(int8_t{});
    case DType::kUInt8: return f(uint8_t{});
    case DType::kInt16: return f(int16_t{});
    case DType::kUInt16: return f(uint16_t{});
    case DType::kInt32: return f(int32_t{});
    case DType::kUInt32: return f(uint32_t{});
    case DType::kInt64: return f(int64_t{});
    case DType::kUInt64: return f(uint64_t{});
    case DType::kBool: return f(bool{});
    default: return Unimplemented(fmt::format("dtype {} is not supported here", DTypeName(dtype)));
  }
}

// Converts float16/bfloat16 tensors to float32 (others are returned unchanged, sharing the buffer).
// For constants at session creation (alloc null: the default allocator).
Tensor ToFloat32IfHalf(const Tensor& t, Allocator* alloc);
// The same at run time: the float32 copy is scratch of the run (KernelContext::Scratch, counted
// against the memory limit; `what` names it in the error).
StatusOr<Tensor> ToFloat32IfHalf(KernelContext& ctx, const Tensor& t, const char* what);
// Sets output i to the float32 tensor `t` converted to `dtype` (float16/bfloat16; float32 shares t).
Status SetOutputFromFloat32(KernelContext& ctx, size_t i, const Tensor& t, DType dtype);

}  // namespace quantkit::rt
