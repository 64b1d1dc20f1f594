// Shared helpers of the tensor/layout op family (tensor_ops*.cc): byte-moving copies that work for
// every dtype (dispatch on element size), and the sub-registration functions.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "runtime/kernel.h"
#include "runtime/ops/op_util.h"

namespace quantkit::rt {

void RegisterTensorShapeOps(KernelRegistry& r);   // tensor_ops.cc: Reshape, Transpose, Slice, Concat, ...
void RegisterTensorIndexOps(KernelRegistry& r);   // tensor_ops_index.cc: Gather*, Scatter*, TopK, ...
void RegisterTensorPadOps(KernelRegistry& r);     // tensor_ops_pad.cc: Pad, DepthToSpace, SpaceToDepth
void RegisterTensorResizeOps(KernelRegistry& r);  // tensor_ops_resize.cc: Resize, Upsample

namespace tensor_ops {

// Copies a strided view of `src` into contiguous `dst`. `shape` is the view's (= dst's) shape,
// `src_strides` are in elements and may be 0 (broadcast) or negative; `src` points at the view's
// first element. Works for any element size.
void StridedCopy(void* dst, const void* src, const Shape& shape, const std::vector<int64_t>& src_strides,
                 size_t elem_size, ThreadPool* pool);

// Transposes contiguous `src` of shape `in_shape` by `perm` into contiguous `dst`.
void TransposeBytes(void* dst, const void* src, const Shape& in_shape, const std::vector<int64_t>& perm,
                    size_t elem_size, ThreadPool* pool);

// Runs fn(begin, end) over [0, n) on the pool when the work (n * cost_per_item bytes or ops) is large.
void MaybeParallelFor(ThreadPool* pool, int64_t n, int64_t cost_per_item,
                      const std::function<void(int64_t, int64_t)>& fn);

// Fills `count` elements of `elem_size` bytes at dst with the element at `value`.
void FillBytes(void* dst, const void* value, int64_t count, size_t elem_size);

// Reads a 0-D or 1-D integer tensor (int32/int64) into a vector; errors name `what`.
StatusOr<std::vector<int64_t>> ReadInts(const Tensor& t, const char* what);

// A one-element tensor of `dtype` holding `v` (converted).
Tensor ScalarOfType(DType dtype, double v);

// Verifies a non-negative, bounded output shape; names `what` in errors.
Status CheckOutputShape(const Shape& shape, const char* what);

}  // namespace tensor_ops
}  // namespace quantkit::rt

namespace quantkit::rt::tensor_ops {

// A kernel that is a function of (context, opset): for ops whose inputs/attributes moved across opsets.
class OpsetFnKernel final : public OpKernel {
 public:
  using Fn = Status (*)(KernelContext&, int64_t opset);
  OpsetFnKernel(Fn fn, int64_t opset) : fn_(fn), opset_(opset) {}
  Status Compute(KernelContext& ctx) override { return fn_(ctx, opset_); }

 private:
  Fn fn_;
  int64_t opset_;
};

inline void RegisterOpsetFn(KernelRegistry& r, const std::string& op_type, OpsetFnKernel::Fn fn) {
  r.Register("", op_type, [fn](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new OpsetFnKernel(fn, init.opset));
  });
}

}  // namespace quantkit::rt::tensor_ops
