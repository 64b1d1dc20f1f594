// NN op family: Conv, ConvTranspose, Gemm, MatMul, pooling. The ops live in nn_conv.cc,
// nn_gemm.cc and nn_pool.cc; this file registers them and holds the shared helpers.
#include <algorithm>
#include <memory>
#include <type_traits>

#include "runtime/kernels/ref/sgemm.h"
#include "runtime/ops/nn_common.h"
#include "runtime/ops/ops.h"

namespace quantkit::rt {

void RegisterNnOps(KernelRegistry& r) {
  RegisterNnConvOps(r);
  RegisterNnGemmOps(r);
  RegisterNnPoolOps(r);
}

template <>
void GemmT<float>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                  int64_t ldc, ThreadPool* pool) {
  kernels::Sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
}

namespace {
template <typename T, bool = std::is_integral_v<T>>
struct GemmAcc {
  using type = T;
};
template <typename T>
struct GemmAcc<T, true> {
  using type = std::make_unsigned_t<T>;
};
}  // namespace

template <typename T>
void GemmT(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
           int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc, ThreadPool* pool) {
  // Integers accumulate in the unsigned type so that overflow wraps instead of being UB.
  using Acc = typename GemmAcc<T>::type;
  if (M <= 0 || N <= 0) return;
  // Each row of C is computed in column blocks of kBlock accumulators on the stack (the same sums,
  // in the same order, as a whole-row accumulator): no scratch that grows with N.
  constexpr int64_t kBlock = 512;
  auto body = [&](int64_t i0, int64_t i1) {
    Acc acc[kBlock];
    const Acc al = static_cast<Acc>(alpha), be = static_cast<Acc>(beta);
    for (int64_t i = i0; i < i1; ++i) {
      T* c = C + i * ldc;
      for (int64_t j0 = 0; j0 < N; j0 += kBlock) {
        const int64_t nb = std::min(kBlock, N - j0);
        std::fill(acc, acc + nb, Acc(0));
        for (int64_t k = 0; k < K; ++k) {
          const Acc a = static_cast<Acc>(trans_a ? A[k * lda + i] : A[i * lda + k]);
          if (!trans_b) {
            const T* brow = B + k * ldb + j0;
            for (int64_t j = 0; j < nb; ++j) acc[j] += a * static_cast<Acc>(brow[j]);
          } else {
            for (int64_t j = 0; j < nb; ++j) acc[j] += a * static_cast<Acc>(B[(j0 + j) * ldb + k]);
          }
        }
        for (int64_t j = 0; j < nb; ++j) {
          c[j0 + j] = beta == T(0) ? static_cast<T>(al * acc[j])
                                   : static_cast<T>(al * acc[j] + be * static_cast<Acc>(c[j0 + j]));
        }
      }
    }
  };
  if (pool && M > 1 && M * N * std::max<int64_t>(K, 1) >= (int64_t{1} << 15)) {
    pool->ParallelFor(M, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(N * std::max<int64_t>(K, 1), 1)), body);
  } else {
    body(0, M);
  }
}

#define QK_INSTANTIATE_GEMM(T)                                                                  \
  template void GemmT<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                         int64_t, T, T*, int64_t, ThreadPool*);
QK_INSTANTIATE_GEMM(double)
QK_INSTANTIATE_GEMM(int32_t)
QK_INSTANTIATE_GEMM(int64_t)
QK_INSTANTIATE_GEMM(uint32_t)
QK_INSTANTIATE_GEMM(uint64_t)
#undef QK_INSTANTIATE_GEMM

Status ParseSpatialAttrs(const Node& node, bool with_ceil_mode, SpatialAttrs* a) {
  a->auto_pad = node.AttrString("auto_pad", "NOTSET");
  if (a->auto_pad.empty()) a->auto_pad = "NOTSET";
  if (a->auto_pad != "NOTSET" && a->auto_pad != "SAME_UPPER" && a->auto_pad != "SAME_LOWER" &&
      a->auto_pad != "VALID") {
    return InvalidArgument(fmt::format("attribute auto_pad has unknown value '{}'", a->auto_pad));
  }
  a->kernel_shape = node.AttrInts("kernel_shape");
  a->strides = node.AttrInts("strides");
  a->dilations = node.AttrInts("dilations");
  a->pads = node.AttrInts("pads");
  for (int64_t k : a->kernel_shape) QK_CHECK_ARG(k >= 1, "attribute kernel_shape has a non-positive value {}", k);
  for (int64_t s : a->strides) QK_CHECK_ARG(s >= 1, "attribute strides has a non-positive value {}", s);
  for (int64_t d : a->dilations) QK_CHECK_ARG(d >= 1, "attribute dilations has a non-positive value {}", d);
  for (int64_t p : a->pads) QK_CHECK_ARG(p >= 0, "attribute pads has a negative value {}", p);
  QK_CHECK_ARG(a->pads.size() % 2 == 0, "attribute pads must have an even number of values, got {}",
               a->pads.size());
  if (with_ceil_mode) a->ceil_mode = node.AttrInt("ceil_mode", 0) != 0;
  return Status::Ok();
}

StatusOr<kernels::ConvGeometry> ResolveGeometry(const SpatialAttrs& a, const std::vector<int64_t>& in,
                                                const std::vector<int64_t>& kernel) {
  const size_t nd = in.size();
  QK_CHECK_ARG(nd >= 1, "expected at least one spatial dimension");
  QK_CHECK_ARG(kernel.size() == nd, "kernel has {} spatial dims but the input has {}", kernel.size(), nd);
  if (!a.kernel_shape.empty()) {
    QK_CHECK_ARG(a.kernel_shape == kernel, "attribute kernel_shape {} does not match the weight's kernel {}",
                 ShapeToString(a.kernel_shape), ShapeToString(kernel));
  }
  QK_CHECK_ARG(a.strides.empty() || a.strides.size() == nd, "attribute strides has {} values, expected {}",
               a.strides.size(), nd);
  QK_CHECK_ARG(a.dilations.empty() || a.dilations.size() == nd,
               "attribute dilations has {} values, expected {}", a.dilations.size(), nd);
  QK_CHECK_ARG(a.pads.empty() || a.pads.size() == 2 * nd, "attribute pads has {} values, expected {}",
               a.pads.size(), 2 * nd);
  kernels::ConvGeometry g;
  g.nd = static_cast<int>(nd);
  g.in = in;
  g.kernel = kernel;
  g.stride = a.strides.empty() ? std::vector<int64_t>(nd, 1) : a.strides;
  g.dilation = a.dilations.empty() ? std::vector<int64_t>(nd, 1) : a.dilations;
  g.out.assign(nd, 0);
  g.pad_begin.assign(nd, 0);
  for (size_t d = 0; d < nd; ++d) {
    QK_CHECK_ARG(kernel[d] >= 1, "kernel dim {} is {}", d, kernel[d]);
    QK_CHECK_ARG(in[d] >= 0, "input spatial dim {} is {}", d, in[d]);
    const int64_t s = g.stride[d];
    const int64_t ek = (kernel[d] - 1) * g.dilation[d] + 1;
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      const int64_t out = (in[d] + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (out - 1) * s + ek - in[d]);
      g.out[d] = out;
      g.pad_begin[d] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      continue;
    }
    const bool valid = a.auto_pad == "VALID";
    const int64_t pb = valid || a.pads.empty() ? 0 : a.pads[d];
    const int64_t pe = valid || a.pads.empty() ? 0 : a.pads[d + nd];
    const int64_t span = in[d] + pb + pe - ek;
    QK_CHECK_ARG(span >= 0,
                 "spatial dim {}: input size {} with pads {}+{} is smaller than the (dilated) kernel {}", d,
                 in[d], pb, pe, ek);
    int64_t out = (a.ceil_mode ? (span + s - 1) / s : span / s) + 1;
    // A last window that would start inside the end padding is dropped (as PyTorch/ORT do).
    if (a.ceil_mode && (out - 1) * s >= in[d] + pb) --out;
    g.out[d] = out;
    g.pad_begin[d] = pb;
  }
  return g;
}

}  // namespace quantkit::rt
