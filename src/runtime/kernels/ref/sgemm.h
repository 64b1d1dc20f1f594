// Single-precision GEMM: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major.
// op(A) = A^T when trans_a (then A is stored [K, M] with leading dimension lda), likewise for B.
// beta == 0 means C is write-only (its old contents, even NaN, are ignored). Blocked and packed
// (Goto-style) with a register-blocked micro-kernel chosen at run time (AVX-512 8x32, AVX2+FMA
// 6x16, or a portable one). Splits large problems over `pool` (may be null: single-threaded).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

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

// Name of the micro-kernel Sgemm uses on this machine ("avx512f_8x32", "avx2_fma_6x16", "generic_4x8").
const char* SgemmKernelName();

// The float micro-kernels. AVX2 and AVX-512 compute every sum the same way (one FMA per term, in
// k order, same blocking): the same bits. The portable one rounds each product: close, not equal.
enum class SgemmIsa { kPortable, kAvx2, kAvx512 };
const char* SgemmIsaName(SgemmIsa isa);
bool SgemmIsaSupported(SgemmIsa isa);
// The best this CPU supports, capped by QUANTKIT_ISA (ref: portable; avx2: AVX2).
SgemmIsa DefaultSgemmIsa();
// Testing hooks: Sgemm (and packed operands built afterwards) use `isa` if this CPU supports it;
// reset returns to the default.
void SgemmForceIsa(SgemmIsa isa);
void SgemmResetIsa();

// ---- GEMM with a constant left operand packed once (convolution weights) -------------------------
//
// C[M, N] = A[M, K] * B[K, N] with A packed at session creation, B packed panel by panel by the
// caller's packer (a convolution writes its im2col values straight into the panel: no im2col
// matrix, no second copy) and a fused epilogue: + bias[row], then Clip. The blocking and the
// order of every sum are those of Sgemm's blocked path with the bias prefilled into C (bias +
// first K block, + each next block), so both give the same bits.

// A packed in the MR-row slivers of the micro-kernel chosen when it is built.
class SgemmPackedA {
 public:
  SgemmPackedA() = default;
  SgemmPackedA(const float* A, int64_t lda, int64_t M, int64_t K);

  int64_t rows() const { return rows_; }
  int64_t depth() const { return depth_; }
  int64_t padded_rows() const { return padded_rows_; }
  SgemmIsa isa() const { return isa_; }
  bool four_rows() const { return four_rows_; }  // tiles of 4 rows (few rows, a multiple of 4)
  const float* data() const { return data_.data(); }

 private:
  int64_t rows_ = 0, depth_ = 0, padded_rows_ = 0;
  SgemmIsa isa_ = SgemmIsa::kPortable;
  bool four_rows_ = false;
  std::vector<float> data_;
};

// Writes B[k0 : k0+kc, j0 : j0+nc] in nr-column slivers, k-major: element (k, j) at
// dst[((j - j0) / nr) * kc * nr + (k - k0) * nr + (j - j0) % nr]; the columns of the last
// sliver past j0 + nc are zero. Called from worker threads (each with its own dst).
using SgemmPanelPacker =
    std::function<void(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst)>;

// The packer for a row-major B (leading dimension ldb).
void SgemmPackRows(const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr,
                   float* dst);

struct SgemmEpilogue {
  const float* bias = nullptr;  // M values, or null
  bool clamp = false;           // c = min(max(c, lo), hi), Clip's expression (NaN passes)
  float lo = 0.f, hi = 0.f;
  // c = c + residual[i * ldr + j] before the clamp, the rounding of a separate Add (a conv's fused
  // residual Add; M x N in the output's layout, row stride ldr), or null.
  const float* residual = nullptr;
  int64_t ldr = 0;
};

// ---- GEMM with B read in place: a stride-1 convolution over zero-padded input planes ------------
//
// B[k, j] = base[taps[k] + j]. With a conv's input in padded planes of row_len floats per row
// (kernels::FillPhasePlane, stride 1), output column j = oy * row_len + ox and tap k = (c, ky, kx)
// at c * plane + ky * dh * row_len + kx * dw, a row of a B sliver is consecutive floats of a
// plane: no im2col copy at all. Columns with j % row_len >= out_w (the row_len - out_w padding
// columns of each row) are computed and dropped; the others go to y[i * ldy + oy * out_w + ox].
// The blocking, sums and epilogue are SgemmPacked's: the same bits as packing the im2col values.
struct SgemmPlaneOutput {
  float* y = nullptr;
  int64_t ldy = 0, row_len = 0, out_w = 0;
};

// Floats of `workspace` SgemmPackedTaps needs for N columns with this pool.
int64_t SgemmPackedTapsWorkspace(const SgemmPackedA& a, int64_t N, ThreadPool* pool);

// Columns j < N (N = (out_h - 1) * row_len + out_w); reads base[taps[k] + j] for j up to
// N rounded up to 16 (the caller keeps 15 readable floats past its planes). taps: a.depth() values.
void SgemmPackedTaps(const SgemmPackedA& a, int64_t N, const float* base, const int64_t* taps,
                     const SgemmPlaneOutput& out, const SgemmEpilogue& epi, ThreadPool* pool, float* workspace);

// ---- GEMM with a constant right operand packed once (MatMul / Gemm weights) ----------------------

// op(B) [K, N] packed in the NR-column slivers of the micro-kernel chosen when it is built.
class SgemmPackedB {
 public:
  SgemmPackedB() = default;
  SgemmPackedB(bool trans, const float* B, int64_t ldb, int64_t K, int64_t N);

  int64_t depth() const { return depth_; }
  int64_t cols() const { return cols_; }
  SgemmIsa isa() const { return isa_; }
  const float* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(float* p) const;
  };
  int64_t depth_ = 0, cols_ = 0;
  SgemmIsa isa_ = SgemmIsa::kPortable;
  std::unique_ptr<float[], Free> data_;  // 64-byte aligned: the micro-kernel loads B slivers aligned
};

// C = alpha * op(A) * B + beta * C (beta == 0: C write-only), op(A) [M, K]: the sums of Sgemm's
// blocked path (M == 1 or N == 1 take Sgemm's matrix-vector loops there: close, not the same bits).
void SgemmWithPackedB(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const SgemmPackedB& b,
                      float beta, float* C, int64_t ldc, ThreadPool* pool);

// y[j] = sum_k x[k] * B[k, j] + beta * y[j] for j < b.cols() (beta == 0: y write-only): the
// one-row product (a recurrent cell's hidden state times R^T) over the packed slivers, which are
// contiguous per column block, so the weights stream at memory speed (1.6x the strided row-major
// loop on a 512 x 2048 LSTM weight). Sums each column in k order (not SgemmWithPackedB's bits).
void SgemvWithPackedB(const float* x, const SgemmPackedB& b, float beta, float* y, ThreadPool* pool);
// The same for the column groups [g0, g1) of 64 columns (columns [64 g0, 64 g1)), on the calling
// thread: each column's sum is SgemvWithPackedB's (a recurrent cell splits its gates this way).
void SgemvColumnsWithPackedB(const float* x, const SgemmPackedB& b, float beta, float* y, int64_t g0, int64_t g1);

// Floats of `workspace` SgemmPacked needs for N columns with this pool (64-byte aligned).
int64_t SgemmPackedWorkspace(const SgemmPackedA& a, int64_t N, ThreadPool* pool);

// C[i * ldc + j] = epilogue(sum_k A[i, k] * B[k, j]) for i < a.rows(), j < N.
void SgemmPacked(const SgemmPackedA& a, int64_t N, const SgemmPanelPacker& pack_b, float* C, int64_t ldc,
                 const SgemmEpilogue& epi, ThreadPool* pool, float* workspace);

}  // namespace quantkit::kernels
