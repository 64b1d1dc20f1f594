// The avx2 and avx512 builds of the float depthwise kernel (depthwise_f32_internal.h): the same
// fused multiply-adds as the portable build, 8 wide in ymm or 16 wide in zmm registers. The
// shared body writes acc + w * v on GCC vectors; these two functions allow its contraction into
// one FMA instruction (-ffp-contract=off elsewhere), which rounds once, as the portable build's
// std::fma does (the exact tests compare the builds bit for bit).
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/depthwise_f32_internal.h"

// GCC: contraction of the shared body's acc + w * v allowed in these two functions only.
#if defined(__clang__)
#define QK_CONTRACT_FMA
#else
#define QK_CONTRACT_FMA optimize("fp-contract=fast")
#endif

namespace quantkit::kernels::depthwise_f32 {

__attribute__((target("avx2,fma"), QK_CONTRACT_FMA)) void RunAvx2(const ConvGeometry& g, const float* x,
                                                                              const float* w, float bias,
                                                                              const Clamp& clamp, float* y,
                                                                              float* plane) {
  Run<VectorOps<v8f>>(g, x, w, bias, clamp, y, plane);
}

__attribute__((target("avx512f,fma"), QK_CONTRACT_FMA)) void RunAvx512(const ConvGeometry& g,
                                                                                   const float* x, const float* w,
                                                                                   float bias, const Clamp& clamp,
                                                                                   float* y, float* plane) {
  Run<VectorOps<v16f>>(g, x, w, bias, clamp, y, plane);
}

__attribute__((target("avx2,fma"), QK_CONTRACT_FMA)) void RunChannelsAvx2(
    const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias, int64_t channels,
    const Clamp& clamp, float* y, int64_t y_stride, float* scratch) {
  RunChannels<VectorOps<v8f>>(g, x, x_stride, w, bias, channels, clamp, y, y_stride, scratch);
}

namespace {

__attribute__((target("avx512f"), always_inline)) inline __mmask16 FirstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// r[i][j] -> r[j][i] for a 16 x 16 block of floats in registers: 2x2 pairs (unpack), 4x4 blocks
// within 128-bit lanes (shuffle), then the 128-bit lanes (two rounds of shuffle_f32x4). The
// zero-masked forms with every lane set avoid GCC 12's false maybe-uninitialized warning.
constexpr __mmask16 kAll = 0xFFFF;
__attribute__((target("avx512f"), always_inline)) inline void Transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_maskz_unpacklo_ps(kAll, r[i], r[i + 1]);
    t[i + 1] = _mm512_maskz_unpackhi_ps(kAll, r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {  // u[g + j]: rows g .. g+3 at column j of each 128-bit lane
    u[g + 0] = _mm512_maskz_shuffle_ps(kAll, t[g], t[g + 2], 0x44);
    u[g + 1] = _mm512_maskz_shuffle_ps(kAll, t[g], t[g + 2], 0xEE);
    u[g + 2] = _mm512_maskz_shuffle_ps(kAll, t[g + 1], t[g + 3], 0x44);
    u[g + 3] = _mm512_maskz_shuffle_ps(kAll, t[g + 1], t[g + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {  // column 4 * lane + j: lane `lane` of u[j], u[4 + j], u[8 + j], u[12 + j]
    const __m512 a = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0x88), b = _mm512_maskz_shuffle_f32x4(kAll, u[j], u[4 + j], 0xDD);
    const __m512 c = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0x88), d = _mm512_maskz_shuffle_f32x4(kAll, u[8 + j], u[12 + j], 0xDD);
    r[j] = _mm512_maskz_shuffle_f32x4(kAll, a, c, 0x88);
    r[8 + j] = _mm512_maskz_shuffle_f32x4(kAll, a, c, 0xDD);
    r[4 + j] = _mm512_maskz_shuffle_f32x4(kAll, b, d, 0x88);
    r[12 + j] = _mm512_maskz_shuffle_f32x4(kAll, b, d, 0xDD);
  }
}

// LaneMover's moves, 16 x 16 blocks transposed in registers (data movement only: the same
// values as the lane-by-lane loops). Masked loads never touch floats outside the input row.
struct TransposeMover16 {
  __attribute__((target("avx512f"), noinline)) static void Interleave(const float* src_row,
                                                                                 int64_t x_stride, int64_t channels,
                                                                                 int64_t c_lo, int64_t c_hi,
                                                                                 int64_t pw, float* d) {
    for (int64_t c0 = c_lo; c0 < c_hi; c0 += 16) {
      const int64_t n = std::min<int64_t>(16, c_hi - c0);
      const __mmask16 m = FirstLanes(n);
      __m512 r[16];
      for (int ch = 0; ch < 16; ++ch) {
        r[ch] = ch < channels ? _mm512_maskz_loadu_ps(m, src_row + ch * x_stride + c0 - pw) : _mm512_setzero_ps();
      }
      Transpose16(r);
      for (int64_t j = 0; j < n; ++j) _mm512_storeu_ps(d + (c0 + j) * 16, r[j]);
    }
  }
  __attribute__((target("avx512f"), noinline)) static void Deinterleave(const float* out, int64_t n,
                                                                                   int64_t channels, float* y,
                                                                                   int64_t y_stride) {
    for (int64_t i0 = 0; i0 < n; i0 += 16) {
      const int64_t k = std::min<int64_t>(16, n - i0);
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = j < k ? _mm512_loadu_ps(out + (i0 + j) * 16) : _mm512_setzero_ps();
      Transpose16(r);
      const __mmask16 m = FirstLanes(k);
      for (int64_t ch = 0; ch < channels; ++ch) _mm512_mask_storeu_ps(y + ch * y_stride + i0, m, r[ch]);
    }
  }
};

}  // namespace

__attribute__((target("avx512f,fma"), QK_CONTRACT_FMA)) void RunChannelsAvx512(
    const ConvGeometry& g, const float* x, int64_t x_stride, const float* w, const float* bias, int64_t channels,
    const Clamp& clamp, float* y, int64_t y_stride, float* scratch) {
  RunChannels<VectorOps<v16f>, TransposeMover16>(g, x, x_stride, w, bias, channels, clamp, y, y_stride, scratch);
}

}  // namespace quantkit::kernels::depthwise_f32
