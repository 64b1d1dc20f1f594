// Reference integer arithmetic for the quantized ops (see quantize.h for the exact formulas).
#include "runtime/kernels/ref/quantize.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <limits>

namespace quantkit::rt::quant {

DynamicParams ComputeDynamicParams(const float* x, int64_t n) {
  float lo = 0, hi = 0;  // the range always includes 0
  int64_t i = 0;
#if defined(__SSE2__)
  // 8 at a time; a non-finite value counts as 0, which the range holds anyway (so skipping it and
  // counting it as 0 give the same range). min/max have one answer in any order.
  {
    const __m128 inf = _mm_set1_ps(std::numeric_limits<float>::infinity());
    const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
    __m128 lo0 = _mm_setzero_ps(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
    auto finite_or_zero = [&](__m128 v) { return _mm_and_ps(v, _mm_cmplt_ps(_mm_and_ps(v, abs_mask), inf)); };
    for (; i + 8 <= n; i += 8) {
      const __m128 a = finite_or_zero(_mm_loadu_ps(x + i)), b = finite_or_zero(_mm_loadu_ps(x + i + 4));
      lo0 = _mm_min_ps(lo0, a);
      lo1 = _mm_min_ps(lo1, b);
      hi0 = _mm_max_ps(hi0, a);
      hi1 = _mm_max_ps(hi1, b);
    }
    alignas(16) float l[4], h[4];
    _mm_store_ps(l, _mm_min_ps(lo0, lo1));
    _mm_store_ps(h, _mm_max_ps(hi0, hi1));
    for (int j = 0; j < 4; ++j) {
      lo = std::min(lo, l[j]);
      hi = std::max(hi, h[j]);
    }
  }
#endif
  for (; i < n; ++i) {
    const float v = x[i];
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  DynamicParams p;
  p.scale = (hi - lo) / 255.0f;
  if (p.scale == 0) return p;  // all zeros: scale 0, zero point 0
  const float zp = RoundHalfToEven(0.0f - lo / p.scale);
  p.zero_point = SaturateInt<uint8_t>(RoundedToInt64(zp));
  return p;
}

void IntegerGemm(int64_t M, int64_t N, int64_t K, const QOperand* A, int64_t lda, const QOperand* B,
                 int64_t ldb, int32_t* C, int64_t ldc) {
  constexpr int64_t kBlockN = 512;   // C row block: 2 KiB of accumulators, stays in L1
  constexpr int64_t kBlockK = 256;   // B panel rows per pass: 256 x 512 x 2 B = 256 KiB (L2)
  for (int64_t m = 0; m < M; ++m) std::memset(C + m * ldc, 0, sizeof(int32_t) * static_cast<size_t>(N));
  // uint32 accumulation: products of 8-bit differences fit in int32; the sum wraps (defined).
  for (int64_t n0 = 0; n0 < N; n0 += kBlockN) {
    const int64_t nb = std::min(kBlockN, N - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
      const int64_t kb = std::min(kBlockK, K - k0);
      for (int64_t m = 0; m < M; ++m) {
        uint32_t* c = reinterpret_cast<uint32_t*>(C + m * ldc + n0);
        const QOperand* a = A + m * lda + k0;
        int64_t k = 0;
        for (; k + 1 < kb; k += 2) {  // two rows of B per pass halves the C traffic
          const int32_t a0 = a[k], a1 = a[k + 1];
          if (a0 == 0 && a1 == 0) continue;
          const QOperand* b0 = B + (k0 + k) * ldb + n0;
          const QOperand* b1 = b0 + ldb;
          for (int64_t j = 0; j < nb; ++j) {
            c[j] += static_cast<uint32_t>(a0 * static_cast<int32_t>(b0[j]) + a1 * static_cast<int32_t>(b1[j]));
          }
        }
        for (; k < kb; ++k) {
          const int32_t a0 = a[k];
          if (a0 == 0) continue;
          const QOperand* b0 = B + (k0 + k) * ldb + n0;
          for (int64_t j = 0; j < nb; ++j) c[j] += static_cast<uint32_t>(a0 * static_cast<int32_t>(b0[j]));
        }
      }
    }
  }
}

}  // namespace quantkit::rt::quant
