// The avx2 and avx512 builds of the float depthwise kernel (depthwise_f32_internal.h): the same
// fused multiply-adds as the portable build, 8 wide in ymm or 16 wide in zmm registers. The
// shared body writes acc + w * v on GCC vectors; these two functions allow its contraction into
// one FMA instruction (-ffp-contract=off elsewhere), which rounds once, as the portable build's
// std::fma does (the exact tests compare the builds bit for bit).
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/depthwise_f32_internal.h"
#include "runtime/kernels/x86/transpose16_avx512.h"

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

// LaneMover's moves, 16 x 16 blocks transposed in registers (data movement only: the same
// values as the lane-by-lane loops). Masked loads never touch floats outside the input row.
struct TransposeMover16 {
  __attribute__((target("avx512f"), noinline)) static void Interleave(const float* src_row,
                                                                                 int64_t x_stride, int64_t channels,
                                                                                 int64_t c_lo, int64_t c_hi,
                                                                                 int64_t pw, float* d) {
    for (int64_t c0 = c_lo; c0 < c_hi; c0 += 16) {
      const int64_t n = std::min<int64_t>(16, c_hi - c0);
      const __mmask16 m = x86::FirstLanes16(n);
      __m512 r[16];
      for (int ch = 0; ch < 16; ++ch) {
        r[ch] = ch < channels ? _mm512_maskz_loadu_ps(m, src_row + ch * x_stride + c0 - pw) : _mm512_setzero_ps();
      }
      x86::Transpose16(r);
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
      x86::Transpose16(r);
      const __mmask16 m = x86::FirstLanes16(k);
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
