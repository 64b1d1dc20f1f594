// AVX2 builds of DequantizeBytes / QuantizeToBytes (quantize_span.h): 16 values per step, the
// definitions' float operations in their order.
#include <immintrin.h>

#include "runtime/kernels/quantize_span.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::quantize_span {

namespace {
template <bool kSigned>
__attribute__((target("avx2"))) int64_t DequantizeSixteens(const uint8_t* b, int64_t n, int32_t zp, float scale,
                                                           float* out) {
  const x86::DequantizeConsts k = x86::MakeDequantizeConsts<kSigned>(zp, scale);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 lo, hi;
    x86::DequantizeSixteen<kSigned>(b + i, k, &lo, &hi);
    _mm256_storeu_ps(out + i, lo);
    _mm256_storeu_ps(out + i + 8, hi);
  }
  return i;
}
}  // namespace

__attribute__((target("avx2"))) int64_t DequantizeBytesAvx2(const void* q, bool is_signed, int64_t n, int32_t zp,
                                                            float scale, float* out) {
  const auto* b = static_cast<const uint8_t*>(q);
  return is_signed ? DequantizeSixteens<true>(b, n, zp, scale, out) : DequantizeSixteens<false>(b, n, zp, scale, out);
}

__attribute__((target("avx2"))) int64_t QuantizeToBytesAvx2(const float* x, int64_t n, float scale, int32_t zp,
                                                            bool is_signed, void* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256 lo = _mm256_set1_ps(static_cast<float>((is_signed ? -128 : 0) - zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>((is_signed ? 127 : 255) - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  auto* y = static_cast<uint8_t*>(out);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i q0 = x86::QuantizeEight(_mm256_loadu_ps(x + i), vs, lo, hi, vzp);
    const __m256i q1 = x86::QuantizeEight(_mm256_loadu_ps(x + i + 8), vs, lo, hi, vzp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), x86::LowBytesOfSixteen(q0, q1));
  }
  return i;
}

}  // namespace quantkit::kernels::quantize_span
