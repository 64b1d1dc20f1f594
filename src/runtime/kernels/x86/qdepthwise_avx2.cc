// The avx2 build of the quantized depthwise kernel (qdepthwise_internal.h), with the row
// accumulation in intrinsics: taps in pairs, their int16 runs interleaved and multiplied with
// vpmaddwd by the (w[t], w[t + 1]) pair, which adds the two products in int32 exactly
// (|x - x_zp| <= 255 and |w| <= 255: each product fits, their sum fits); then vpaddd wraps like
// the portable version. So the integers are the same. Rows are computed in whole blocks of 16
// columns (the plane and the row buffer have room for the block past the output width).
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/qdepthwise_internal.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::qdepthwise {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

QK_AVX2_TARGET void AccumulateRowAvx2(const int16_t* const* src, const int32_t* w, int64_t taps, int64_t n,
                                      int32_t bias, int32_t* acc) {
  // Whole blocks of 16 columns, the last one past n too: the plane's rows and `acc` hold
  // PaddedOutputCols columns (Layout), and the extra columns are never read back.
  int64_t i0 = 0;
  for (; i0 < n; i0 += kRowBlock) {
    // unpack works within 128-bit lanes: lo holds outputs 0-3 and 8-11, hi 4-7 and 12-15.
    __m256i lo = _mm256_set1_epi32(bias), hi = lo;
    int64_t t = 0;
    for (; t + 2 <= taps; t += 2) {
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t] + i0));
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t + 1] + i0));
      const __m256i wpair = _mm256_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(w[t]) & 0xFFFFu) |
                                                                   (static_cast<uint32_t>(w[t + 1]) << 16)));
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wpair));
      hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wpair));
    }
    if (t < taps) {  // the odd last tap, paired with zeros
      const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t] + i0));
      const __m256i wpair = _mm256_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(w[t]) & 0xFFFFu));
      const __m256i zero = _mm256_setzero_si256();
      lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, zero), wpair));
      hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, zero), wpair));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i0), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i0 + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
  }
}

// RequantizeRowPortable 16 columns at a time (requantize_avx2.h: the same operations, so the same
// bytes). `acc` holds whole blocks of 16 (PaddedOutputCols); the last block's bytes past n are
// not stored (y's row is followed by the next row or another channel).
QK_AVX2_TARGET void RequantizeRowAvx2(int32_t* acc, int64_t n, float multiplier, float lo, float hi, int32_t zp,
                                      uint8_t* y) {
  const __m256 m = _mm256_set1_ps(multiplier), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256i vzp = _mm256_set1_epi32(zp);
  for (int64_t i = 0; i < n; i += kRowBlock) {
    const __m256i q0 = x86::RequantizeEight(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i)), m, vlo, vhi, vzp);
    const __m256i q1 =
        x86::RequantizeEight(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i + 8)), m, vlo, vhi, vzp);
    const __m128i bytes = x86::LowBytesOfSixteen(q0, q1);
    if (n - i >= kRowBlock) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), bytes);
    } else {
      alignas(16) uint8_t last[kRowBlock];
      _mm_store_si128(reinterpret_cast<__m128i*>(last), bytes);
      std::memcpy(y + i, last, static_cast<size_t>(n - i));
    }
  }
}

}  // namespace

QK_AVX2_TARGET void RunAvx2(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc) {
  Dispatch<AccumulateRowAvx2, RequantizeRowAvx2>(s, c, plane, acc);
}

}  // namespace quantkit::kernels::qdepthwise
