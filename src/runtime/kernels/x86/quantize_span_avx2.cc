// AVX2 builds of DequantizeBytes / QuantizeToBytes (quantize_span.h): 16 values per step, the
// definitions' float operations in their order.
#include <immintrin.h>

#include "runtime/kernels/quantize_span.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::quantize_span {

__attribute__((target("avx2"))) int64_t DequantizeBytesAvx2(const void* q, bool is_signed, int64_t n, int32_t zp,
                                                            float scale, float* out) {
  const auto* b = static_cast<const uint8_t*>(q);
  const __m256i vzp = _mm256_set1_epi32(zp);
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    const __m128i hi = _mm_unpackhi_epi64(v, v);
    const __m256i q0 = is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
    const __m256i q1 = is_signed ? _mm256_cvtepi8_epi32(hi) : _mm256_cvtepu8_epi32(hi);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q0, vzp)), vs));
    _mm256_storeu_ps(out + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q1, vzp)), vs));
  }
  return i;
}

__attribute__((target("avx2"))) int64_t QuantizeToBytesAvx2(const float* x, int64_t n, float scale, int32_t zp,
                                                            bool is_signed, void* out) {
  // QuantizeSpan: x / scale, NaN to 0, clamped to [q_min - zp, q_max - zp], rounded half to even
  // (vcvtps2dq), plus the zero point.
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>((is_signed ? -128 : 0) - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>((is_signed ? 127 : 255) - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  auto* y = static_cast<uint8_t*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i q[2];
    for (int h = 0; h < 2; ++h) {
      __m256 r = _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * h), vs);
      r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
      r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
      q[h] = _mm256_add_epi32(_mm256_cvtps_epi32(r), vzp);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), x86::LowBytesOfSixteen(q[0], q[1]));
  }
  return i;
}

}  // namespace quantkit::kernels::quantize_span
