// Integer GEMM for quantized MatMul/Gemm: uint8 activations x int8 (or uint8) weights, exact int32
// accumulation, then either int32 output (MatMulInteger) or the float rescale epilogue
// y = float(acc) * (a_scale * b_scale[n]) + bias[n] of dynamic quantization.
//
// Arithmetic (docs/arithmetic.md): the result is exactly
//   acc[m, n] = sum_k (a[m, k] - a_zp) * (b[k, n] - b_zp[n])        (mod 2^32)
// for every ISA. The kernels compute raw products of the stored bytes and correct for the zero
// points with row and column sums (all integer, so no ISA can change the result):
//   weights are stored as b' = b - shift (int8; shift 128 for uint8 weights, 0 for int8), so
//   acc = sum a*b' - a_zp * colsum(b') + (shift - b_zp[n]) * (rowsum(a) - K * a_zp).
// int8 activations are turned into uint8 by adding 128 (and 128 to their zero point).
//
// Micro-kernels (chosen once from CPUID, override with QUANTKIT_ISA=ref|avx2|avx512vnni|amx):
//   amx:        tdpbusd on 16 x 64 tiles (the same exact u8 x s8 products as vpdpbusd), on the
//               avx512vnni layout; row and k tails run the avx512vnni kernel.
//   avx512vnni: vpdpbusd (u8 x s8, 4 products summed into int32 without saturation).
//   avx2:       weights pre-widened to int16 and multiplied with vpmaddwd (exact); never
//               vpmaddubsw, whose int16 pair sums saturate (255*127*2 > 32767).
//   ref:        portable scalar loops, the definition the others are tested against.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "quantkit/tensor.h"

namespace quantkit {
class ThreadPool;
}

namespace quantkit::kernels {

enum class QGemmIsa { kRef, kAvx2, kAvx512Vnni, kAmx };
// Whether kernels chosen by this ISA level may use AVX-512 (F, BW, VL: avx512vnni and amx imply
// them), for the ops that take their width from the int8 GEMM's level.
inline bool QGemmIsaHasAvx512(QGemmIsa isa) { return isa == QGemmIsa::kAvx512Vnni || isa == QGemmIsa::kAmx; }
// The avx2 level on a CPU that also has FMA (the float kernels' AVX2 builds need both).
inline bool QGemmIsaIsAvx2Fma(QGemmIsa isa) {
  static const bool fma = __builtin_cpu_supports("fma");
  return isa == QGemmIsa::kAvx2 && fma;
}
const char* QGemmIsaName(QGemmIsa isa);
// The ISA used by default on this machine (CPUID, or QUANTKIT_ISA if set and supported).
QGemmIsa DefaultQGemmIsa();
// Whether this CPU can run the ISA's kernels.
bool QGemmIsaSupported(QGemmIsa isa);
// One line per ISA: chosen or why not (for --verbose logs).
std::string DescribeQGemmIsaChoice();

// Weights B [K, N] packed for one ISA (fixed at packing time), with the zero-point data the
// epilogue needs. Immutable once built; shared by all runs of a session.
struct PackedQWeights {
  QGemmIsa isa = QGemmIsa::kRef;
  int64_t K = 0, N = 0;
  int64_t k_padded = 0;   // K rounded up to the kernel's k step
  int64_t n_panels = 0;   // N / 16 rounded up
  std::vector<int8_t> bytes;            // ref / avx512vnni / amx layout (panels of 16 columns x 4 k)
  std::vector<int16_t> words;           // avx2 layout (panels of 16 columns x 2 k, int16)
  std::vector<int32_t> col_sums;        // sum_k b'[k, n]
  std::vector<int32_t> col_offset;      // shift - b_zp[n]
  // Whether any col_offset is nonzero, i.e. whether the activations' row sums matter. Symmetric
  // weights (int8 with zero point 0, uint8-symmetric with 128) need none, so packers may skip them.
  bool needs_row_sums = true;
};

// Packs B (row-major [K, N] with row stride ldb; or [N, K] when trans_b, i.e. B^T stored) of type
// uint8 or int8 with per-tensor (size 1) or per-column (size N) zero points.
std::shared_ptr<const PackedQWeights> PackQWeights(const void* b, bool b_is_signed, bool trans_b, int64_t K,
                                                   int64_t N, int64_t ldb, const std::vector<int32_t>& b_zero_points,
                                                   QGemmIsa isa);

// Activations A [M, K] of uint8/int8 with a per-tensor zero point, copied into the padded layout
// the kernels read, with row sums.
// For the avx2 kernel the uint8 values are also widened to int16 (`words`), so that each k pair
// is one 32-bit broadcast load in the inner loop.
//
// Memory: the packers write into `storage`, a byte tensor of at least
// PackedQActivationsBytes(M, b) bytes. A caller that must count it (the runtime: the session's
// pool and memory limit) sets `storage` before packing, e.g. to KernelContext::Scratch; if it is
// unset or too small the packers allocate it on the heap (kernel tests). Packing again reuses it.
struct PackedQActivations {
  int64_t M = 0, K = 0, lda = 0;
  int32_t zero_point = 0;  // of the stored uint8 values (int8 inputs: zp + 128)
  std::span<uint8_t> bytes;     // [M, lda], in storage
  std::span<int16_t> words;     // avx2 only: bytes widened to int16 (else empty)
  std::span<int32_t> row_sums;  // [M]
  Tensor storage;
};
// Bytes of storage that packing M rows for the weights `b` uses (ISA and padded K come from b).
int64_t PackedQActivationsBytes(int64_t M, const PackedQWeights& b);
void PackQActivations(const void* a, bool a_is_signed, int64_t M, int64_t K, int64_t lda, int32_t zero_point,
                      const PackedQWeights& b, PackedQActivations* out);
// Same, for A stored transposed: a[k * lda + m] (convolution: im2col columns are output pixels).
void PackQActivationsTransposed(const void* a, bool a_is_signed, int64_t M, int64_t K, int64_t lda, int32_t zero_point,
                                const PackedQWeights& b, PackedQActivations* out);
// A 2-D convolution's activations read straight from one image's NCHW channels (no im2col
// matrix): row m = output pixel (m / OW, m % OW), K = C * KH * KW in (channel, kh, kw) order, taps
// in the padding read the zero point. The same packed result as im2col + PackQActivationsTransposed.
struct QConv2DShape {
  int64_t C = 0, H = 0, W = 0;        // input channels (of the group) and size
  int64_t KH = 1, KW = 1, OH = 0, OW = 0;
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1, pad_top = 0, pad_left = 0;
};
// Packs output pixels [first_pixel, first_pixel + pixels) (row r of the result = pixel
// first_pixel + r), so a convolution can pack and multiply a cache-sized block of rows at a time.
// For the avx2 kernel only `words` and `row_sums` are written (that kernel reads nothing else);
// when the weights need no row sums (b.needs_row_sums false) the row sums may be left as zeros.
void PackQActivationsConv2D(const void* x, bool x_is_signed, const QConv2DShape& s, int64_t first_pixel,
                            int64_t pixels, int32_t zero_point, const PackedQWeights& b, PackedQActivations* out);
// Float activations quantized straight into the packed layout (uint8, per tensor):
// q = saturate(round_half_even(x / scale) + zero_point), as QuantizeLinear / DynamicQuantizeLinear.
void PackQActivationsFromFloat(const float* x, int64_t M, int64_t K, int64_t ldx, float scale, int32_t zero_point,
                               const PackedQWeights& b, PackedQActivations* out);

// How the int32 accumulators leave the kernel.
struct QGemmOutput {
  // Exactly one of these is set.
  int32_t* acc = nullptr;  // MatMulInteger: the exact accumulators
  float* y = nullptr;      // y[m, n] = float(acc) * scale(m, n) + bias[n]
  void* q = nullptr;       // requantized 8-bit output (QLinearConv / QLinearMatMul), see below
  int64_t ldc = 0;
  // Write element (m, n) at n * ldc + m instead of m * ldc + n (convolution: rows are output
  // pixels, columns output channels, and the result is NCHW).
  bool transpose = false;
  // Float epilogue: scale(m, n) = a_scale[a_scale_per_row ? m : 0] * b_scale[b_scale_per_col ? n : 0],
  // one float32 product (as ONNX's Mul(a_scale, b_scale)), then float(acc) * scale, then + bias.
  const float* a_scale = nullptr;
  bool a_scale_per_row = false;
  const float* b_scale = nullptr;
  bool b_scale_per_col = false;
  const float* bias = nullptr;  // [N] or null
  bool accumulate = false;      // y[m, n] += (float(acc) * scale(m, n) + bias[n])  (RNN gates)
  // Float output, without accumulate: then y = min(max(y, clamp_lo), clamp_hi) (a fused Relu /
  // Clip, the Clip kernel's expression).
  bool clamp = false;
  float clamp_lo = 0, clamp_hi = 0;
  // Requantized output: q = clamp(Requantize(acc + bias_int32[n], multiplier[n], q_zero_point),
  // q_min, q_max) with quantize.h's Requantize (float32 product, round half to even, saturate).
  // [q_min, q_max] is the type's range, or narrower for a fused Relu (min = zero point) / Clip.
  bool q_signed = false;
  const int32_t* bias_int32 = nullptr;  // [N] or null
  const float* multiplier = nullptr;
  bool multiplier_per_col = false;
  int32_t q_zero_point = 0, q_min = 0, q_max = 255;
};

// Rows of A the weights' micro-kernel takes per call (avx2 6, avx512vnni 8, amx 32): callers that
// multiply A in blocks of rows keep blocks a multiple of it (a remainder runs a narrower kernel).
int64_t QGemmRowGranule(const PackedQWeights& b);

// C = A x B with the epilogue above. A must have been packed for B (same k_padded and ISA).
void QGemm(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, ThreadPool* pool);

}  // namespace quantkit::kernels
