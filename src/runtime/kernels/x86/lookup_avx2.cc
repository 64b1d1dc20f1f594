// 256-entry byte lookup, 32 bytes at a time: the table as 16 rows of 16 entries (each row in both
// 128-bit lanes); vpshufb looks up every byte's low nibble in each row and vpblendvb keeps the row
// its high nibble selects.
#include <immintrin.h>

#include <cstdint>

namespace quantkit::kernels {

__attribute__((target("avx2"))) void LookupBytesAvx2(const uint8_t* src, int64_t n, const uint8_t* table,
                                                     uint8_t* dst) {
  __m256i rows[16];
  for (int h = 0; h < 16; ++h) {
    rows[h] = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16 * h)));
  }
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i lo = _mm256_and_si256(x, nibble);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble);
    __m256i y = _mm256_shuffle_epi8(rows[0], lo);
    for (int h = 1; h < 16; ++h) {
      const __m256i select = _mm256_cmpeq_epi8(hi, _mm256_set1_epi8(static_cast<char>(h)));
      y = _mm256_blendv_epi8(y, _mm256_shuffle_epi8(rows[h], lo), select);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), y);
  }
  for (; i < n; ++i) dst[i] = table[src[i]];
}

}  // namespace quantkit::kernels
