// The int8 GEMM's epilogue (raw dot products -> exact int32 with the zero-point corrections ->
// int32 / rescaled float / requantized 8-bit output) and the byte transposes it and the packers
// use. Always inlined: qgemm.cc builds it portable, x86/qgemm_avx2.cc with avx2; the operations
// are the same, so are the results.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "runtime/kernels/qgemm_internal.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels::qgemm {

#if defined(__SSE2__)
// Transposes a 16x16 byte tile in registers: four rounds of interleaving row i with row i + 8.
__attribute__((always_inline)) inline void Transpose16x16(__m128i x[16]) {
  __m128i t[16];
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm_unpacklo_epi8(x[i], x[i + 8]);
      t[2 * i + 1] = _mm_unpackhi_epi8(x[i], x[i + 8]);
    }
    for (int i = 0; i < 16; ++i) x[i] = t[i];
  }
}
#endif

// dst[j * dst_stride + r] = src[r * src_stride + j] for a rows x cols byte block: 16x16 tiles
// with SSE2, the edges one byte at a time.
__attribute__((always_inline)) inline void TransposeBytes(const uint8_t* src, int64_t src_stride, int rows, int64_t cols, uint8_t* dst, int64_t dst_stride) {
  int r0 = 0;
#if defined(__SSE2__)
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t j0 = 0;
    for (; j0 + 16 <= cols; j0 += 16) {
      // One running pointer each way (per-row pointers for all 16 rows ran out of registers).
      const uint8_t* s = src + r0 * src_stride + j0;
      __m128i x[16];
      for (int i = 0; i < 16; ++i, s += src_stride) x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s));
      Transpose16x16(x);
      uint8_t* d = dst + j0 * dst_stride + r0;
      for (int i = 0; i < 16; ++i, d += dst_stride) _mm_storeu_si128(reinterpret_cast<__m128i*>(d), x[i]);
    }
    for (; j0 < cols; ++j0)
      for (int r = r0; r < r0 + 16; ++r) dst[j0 * dst_stride + r] = src[r * src_stride + j0];
  }
#endif
  for (int64_t j = 0; j < cols; ++j)
    for (int r = r0; r < rows; ++r) dst[j * dst_stride + r] = src[r * src_stride + j];
}

// Turns raw dot products of rows [m0, m0 + rows) x columns [n0, n0 + cols) into the result.
// Called once per block of up to kRowBlock rows, so a transposed (NCHW) output is written as runs
// of consecutive rows per column rather than one scattered element at a time.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kMaxEpilogueCols = kPanelCols * 4;

// One row of the requantized output: q[j] = clamp(Requantize(acc[j] + bias[j], mult[j * mult_step],
// zp)) as quantize.h's bulk spans compute it (clamp to the integer bounds minus zp, round half to
// even, add zp: the same integers), stored as bytes (int8 keeps its bit pattern). The definition;
// x86/qgemm_avx2.cc has an intrinsics version giving the same bytes.
__attribute__((always_inline)) inline void RequantizeRowPortable(const int32_t* acc, int64_t cols, const int32_t* bias,
                                                                 const float* mult, int64_t mult_step, float lo, float hi,
                                                                 int32_t zp, uint8_t* qrow) {
  for (int64_t j = 0; j < cols; ++j) {
    const uint32_t bj = bias ? static_cast<uint32_t>(bias[j]) : 0u;  // wrapping, never UB
    const int32_t biased = static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + bj);
    qrow[j] = static_cast<uint8_t>(
        rt::quant::detail::ClampRoundAddZero<int32_t>(static_cast<float>(biased) * mult[j * mult_step], lo, hi, zp));
  }
}

using RequantizeRowFn = void (*)(const int32_t* acc, int64_t cols, const int32_t* bias, const float* mult,
                                 int64_t mult_step, float lo, float hi, int32_t zp, uint8_t* qrow);

template <RequantizeRowFn kRequantizeRow>
__attribute__((always_inline)) inline void Epilogue(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, int64_t m0, int rows,
              int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr) {
  // All integer terms in uint32: the result is defined modulo 2^32 (never signed overflow).
  const uint32_t a_zp = static_cast<uint32_t>(a.zero_point);
  const uint32_t k_azp = static_cast<uint32_t>(b.K) * a_zp;
  const int64_t ldc = out.ldc;
  const bool transpose = out.transpose;
  // Output element (row r of the block, column j of the block).
  auto at = [&](int r, int64_t j) { return transpose ? (n0 + j) * ldc + m0 + r : (m0 + r) * ldc + n0 + j; };
  const int32_t* col_sums = b.col_sums.data() + n0;
  const int32_t* col_offset = b.col_offset.data() + n0;
  // Requantized output: the block's 8-bit results, then written out (column runs when transposed).
  alignas(64) uint8_t q_block[kRowBlock * kMaxEpilogueCols];
  const int32_t zp = out.q_zero_point;
  const int32_t q_lo = std::max(out.q_min, out.q_signed ? -128 : 0), q_hi = std::min(out.q_max, out.q_signed ? 127 : 255);
  const float lo = static_cast<float>(q_lo - zp), hi = static_cast<float>(q_hi - zp);
  const bool fold_corrections = out.q && !b.needs_row_sums;
  if (fold_corrections) {
    // Symmetric weights (no row term): acc + bias = raw + (bias - a_zp * col_sums), the same
    // integers modulo 2^32, with the correction made once per column for the whole block.
    uint32_t correction[kMaxEpilogueCols];
    for (int64_t j = 0; j < cols; ++j) {
      const uint32_t bias = out.bias_int32 ? static_cast<uint32_t>(out.bias_int32[n0 + j]) : 0u;
      correction[j] = bias - a_zp * static_cast<uint32_t>(col_sums[j]);
    }
    const float* mult = out.multiplier + (out.multiplier_per_col ? n0 : 0);
    const int64_t mult_step = out.multiplier_per_col ? 1 : 0;
    for (int r = 0; r < rows; ++r) {
      kRequantizeRow(raw + r * ldr, cols, reinterpret_cast<const int32_t*>(correction), mult, mult_step, lo, hi, zp,
                     q_block + r * kMaxEpilogueCols);
    }
  }
  for (int r = 0; r < rows && !fold_corrections; ++r) {  // the general form, row by row
    const int64_t m = m0 + r;
    const uint32_t row_term = static_cast<uint32_t>(a.row_sums[m]) - k_azp;
    const int32_t* src = raw + r * ldr;
    int32_t acc[kMaxEpilogueCols];
    for (int64_t j = 0; j < cols; ++j) {
      acc[j] = static_cast<int32_t>(static_cast<uint32_t>(src[j]) - a_zp * static_cast<uint32_t>(col_sums[j]) +
                                    static_cast<uint32_t>(col_offset[j]) * row_term);
    }
    if (out.acc) {
      int32_t* dst = out.acc;
      for (int64_t j = 0; j < cols; ++j) dst[at(r, j)] = acc[j];
    } else if (out.y) {
      float* dst = out.y;
      const float sa = out.a_scale[out.a_scale_per_row ? m : 0];
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t n = n0 + j;
        const float scale = sa * out.b_scale[out.b_scale_per_col ? n : 0];
        float y = static_cast<float>(acc[j]) * scale;
        if (out.bias) y = y + out.bias[n];
        if (out.clamp) y = std::min(std::max(y, out.clamp_lo), out.clamp_hi);
        float& d = dst[at(r, j)];
        d = out.accumulate ? d + y : y;
      }
    } else {
      // q = clamp(Requantize(acc + bias, multiplier, zp), q_min, q_max): RequantizeRowPortable.
      const float* mult = out.multiplier + (out.multiplier_per_col ? n0 : 0);
      const int64_t mult_step = out.multiplier_per_col ? 1 : 0;
      const int32_t* bias = out.bias_int32 ? out.bias_int32 + n0 : nullptr;
      kRequantizeRow(acc, cols, bias, mult, mult_step, lo, hi, zp, q_block + r * kMaxEpilogueCols);
    }
  }
  if (out.q) {
    auto* dst = static_cast<uint8_t*>(out.q);
    if (transpose) {
      TransposeBytes(q_block, kMaxEpilogueCols, rows, cols, dst + n0 * ldc + m0, ldc);
    } else {
      for (int r = 0; r < rows; ++r) std::memcpy(dst + (m0 + r) * ldc + n0, q_block + r * kMaxEpilogueCols, cols);
    }
  }
}


}  // namespace quantkit::kernels::qgemm
