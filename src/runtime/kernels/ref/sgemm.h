// Single-precision GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major.
// op(A) = A^T when trans_a (then A is stored [K, M] with leading dimension lda), likewise for B.
// beta == 0 means C is write-only (its old contents, even NaN, are ignored). Blocked and packed
// (Goto-style) with a register-blocked micro-kernel chosen at run time (AVX2+FMA 6x16, or a
// portable one). Splits large problems over `pool` (may be null: single-threaded).
#pragma once

#include <cstdint>

namespace quantkit {
class ThreadPool;
}

namespace quantkit::kernels {

void Sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           ThreadPool* pool);

// Reference triple loop (double accumulation), same contract as Sgemm. For tests and tiny cases.
void SgemmNaive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc);

// Name of the micro-kernel Sgemm uses on this machine ("avx2_fma_6x16", "generic_4x8").
const char* SgemmKernelName();

// Testing hook: when true, Sgemm uses the portable micro-kernel even if AVX2 is available.
void SgemmForcePortable(bool force);

}  // namespace quantkit::kernels
