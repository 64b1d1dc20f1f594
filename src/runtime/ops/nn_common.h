// Shared pieces of the NN op family (nn.cc, nn_conv.cc, nn_gemm.cc, nn_pool.cc).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/kernel.h"
#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::rt {

void RegisterNnConvOps(KernelRegistry& r);  // Conv, ConvTranspose
void RegisterNnGemmOps(KernelRegistry& r);  // Gemm, MatMul
void RegisterNnPoolOps(KernelRegistry& r);  // MaxPool, AveragePool, LpPool, Global*Pool

// C[M,N] = alpha * op(A) * op(B) + beta * C (beta == 0: C write-only). float goes to the packed
// SGEMM; double and integer types use a simple row-parallel loop (integers wrap).
template <typename T>
void GemmT(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
           int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, ThreadPool* pool);

// Attributes shared by Conv / ConvTranspose / pooling ops.
struct SpatialAttrs {
  std::string auto_pad = "NOTSET";  // NOTSET, SAME_UPPER, SAME_LOWER, VALID
  std::vector<int64_t> kernel_shape, strides, dilations, pads;
  bool ceil_mode = false;
};

// Reads and validates auto_pad, kernel_shape, strides, dilations, pads (and ceil_mode if
// `with_ceil_mode`). Rank consistency is checked later by ResolveGeometry.
Status ParseSpatialAttrs(const Node& node, bool with_ceil_mode, SpatialAttrs* a);

// Output dims and begin pads of a forward conv/pool over input dims `in` with kernel dims
// `kernel` (kernel_shape attr, if given, must match); ceil_mode (pools) rounds the output up.
StatusOr<kernels::ConvGeometry> ResolveGeometry(const SpatialAttrs& a, const std::vector<int64_t>& in,
                                                const std::vector<int64_t>& kernel);

inline bool IsHalf(DType t) { return t == DType::kFloat16 || t == DType::kBFloat16; }

}  // namespace quantkit::rt
