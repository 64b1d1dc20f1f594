// AVX2 int8 micro-kernel. Weights are pre-widened to int16 at packing time and multiplied with
// vpmaddwd (int16 x int16, pairs summed into int32: exact). vpmaddubsw is deliberately not used:
// its int16 pair sums saturate (255 * 127 * 2 > 32767), which would make results ISA-dependent.
// Tile: up to 6 rows x 1 panel (16 columns = 2 ymm) = 12 ymm accumulators.
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/qgemm_epilogue.h"
#include "runtime/kernels/qgemm_internal.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::qgemm {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

// The 12 accumulators are named variables, not an array: with an array GCC 12 kept most of them
// on the stack (a load and a store per accumulator per step, half the kernel's time).
template <int R>
QK_AVX2_TARGET void Tile(const int16_t* a, int64_t lda, const int16_t* w, int64_t k_pairs, bool accumulate,
                         int32_t* c, int64_t ldc) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
  __m256i c30 = zero, c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
  if (accumulate) {
#define QK_LOAD(r)                                                                      \
  if constexpr (R > r) {                                                                \
    c##r##0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + r * ldc));        \
    c##r##1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + r * ldc + 8));    \
  }
    QK_LOAD(0)
    QK_LOAD(1)
    QK_LOAD(2)
    QK_LOAD(3)
    QK_LOAD(4)
    QK_LOAD(5)
#undef QK_LOAD
  }
  const int16_t* a0 = a;
  const int16_t* a1 = a + (R > 1 ? lda : 0);
  const int16_t* a2 = a + (R > 2 ? 2 * lda : 0);
  const int16_t* a3 = a + (R > 3 ? 3 * lda : 0);
  const int16_t* a4 = a + (R > 4 ? 4 * lda : 0);
  const int16_t* a5 = a + (R > 5 ? 5 * lda : 0);
  for (int64_t q = 0; q < k_pairs; ++q, w += 2 * kPanelCols) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kPanelCols));
#define QK_ROW(r) \
  if constexpr (R > r) x86::AddPairProducts(c##r##0, c##r##1, w0, w1, a##r + 2 * q);
    QK_ROW(0)
    QK_ROW(1)
    QK_ROW(2)
    QK_ROW(3)
    QK_ROW(4)
    QK_ROW(5)
#undef QK_ROW
  }
  const __m256i rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), rows[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), rows[r][1]);
  }
}

void Kernel(const PackedQActivations& pa, int64_t m0, int rows, const PackedQWeights& b, int64_t panel,
            int /*panels*/, int64_t k0, int64_t kc, bool accumulate, int32_t* c, int64_t ldc) {
  const int64_t lda = pa.lda;
  const int16_t* a = pa.words.data() + m0 * lda + k0;
  // Panel layout: k pairs of 16 columns x 2 values, so k0 (even) starts at k0 * 16 words.
  const int16_t* w = b.words.data() + panel * b.k_padded * kPanelCols + k0 * kPanelCols;
  const int64_t k_pairs = kc / 2;
  switch (rows) {
    case 1: return Tile<1>(a, lda, w, k_pairs, accumulate, c, ldc);
    case 2: return Tile<2>(a, lda, w, k_pairs, accumulate, c, ldc);
    case 3: return Tile<3>(a, lda, w, k_pairs, accumulate, c, ldc);
    case 4: return Tile<4>(a, lda, w, k_pairs, accumulate, c, ldc);
    case 5: return Tile<5>(a, lda, w, k_pairs, accumulate, c, ldc);
    default: return Tile<6>(a, lda, w, k_pairs, accumulate, c, ldc);
  }
}

// RequantizeRowPortable, 16 columns per step in ymm registers (requantize_avx2.h: the same
// operations, so the same bytes).
using x86::LowBytesOfSixteen;
using x86::RequantizeEight;

QK_AVX2_TARGET void RequantizeRowAvx2(const int32_t* acc, int64_t cols, const int32_t* bias, const float* mult,
                                      int64_t mult_step, float lo, float hi, int32_t zp, uint8_t* qrow) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256i vzp = _mm256_set1_epi32(zp);
  const __m256 mult_one = _mm256_set1_ps(mult[0]);
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j));
    __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j + 8));
    if (bias) {
      v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + j)));
      v1 = _mm256_add_epi32(v1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + j + 8)));
    }
    const __m256 m0 = mult_step ? _mm256_loadu_ps(mult + j) : mult_one;
    const __m256 m1 = mult_step ? _mm256_loadu_ps(mult + j + 8) : mult_one;
    const __m256i q0 = RequantizeEight(v0, m0, vlo, vhi, vzp), q1 = RequantizeEight(v1, m1, vlo, vhi, vzp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qrow + j), LowBytesOfSixteen(q0, q1));
  }
  if (j + 8 <= cols) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j));
    if (bias) v = _mm256_add_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + j)));
    const __m256i q = RequantizeEight(v, mult_step ? _mm256_loadu_ps(mult + j) : mult_one, vlo, vhi, vzp);
    const __m128i words = _mm_and_si128(_mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)),
                                        _mm_set1_epi16(0xFF));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(qrow + j), _mm_packus_epi16(words, words));
    j += 8;
  }
  if (j < cols) {
    RequantizeRowPortable(acc + j, cols - j, bias ? bias + j : nullptr, mult + j * mult_step, mult_step, lo, hi, zp,
                          qrow + j);
  }
}

}  // namespace

MicroKernel Avx2MicroKernel() { return {&Kernel, 6, 1}; }

QK_AVX2_TARGET void EpilogueAvx2(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out,
                                  int64_t m0, int rows, int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr) {
  Epilogue<&RequantizeRowAvx2>(a, b, out, m0, rows, n0, cols, raw, ldr);
}

QK_AVX2_TARGET uint32_t FillConvRunsAvx2(const uint8_t* corner, const int64_t* seg_offsets, int64_t segments, int run,
                                         uint8_t flip, bool sum, int16_t* dst) {
  const __m128i flip_bytes = _mm_set1_epi8(static_cast<char>(flip));
  if (!sum) {
    for (int64_t i = 0; i < segments; ++i, dst += run) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(corner + seg_offsets[i]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_cvtepu8_epi16(_mm_xor_si128(bytes, flip_bytes)));
    }
    return 0;
  }
  // 1 in the first `run` int16 lanes: madd with it sums the run's words in pairs, as int32.
  const __m128i ones = _mm_cmpgt_epi16(_mm_set1_epi16(static_cast<int16_t>(run)),
                                       _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
  const __m128i lane_mask = _mm_and_si128(ones, _mm_set1_epi16(1));
  __m128i sums = _mm_setzero_si128();
  for (int64_t i = 0; i < segments; ++i, dst += run) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(corner + seg_offsets[i]));
    const __m128i words = _mm_cvtepu8_epi16(_mm_xor_si128(bytes, flip_bytes));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), words);
    sums = _mm_add_epi32(sums, _mm_madd_epi16(words, lane_mask));
  }
  sums = _mm_add_epi32(sums, _mm_shuffle_epi32(sums, 0x4E));
  sums = _mm_add_epi32(sums, _mm_shuffle_epi32(sums, 0xB1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(sums));
}

// Runs of 3 bytes (3-wide kernels) in threes: the three 8-byte loads gathered into 9 consecutive
// bytes of one register (two pshufb) and written with one 16-byte store, instead of three 8-byte
// stores (the packer was store-bound). The 7 bytes past the 9 land where FillConvRunsBytes' excess
// does: overwritten by the next group, the row's padding (zeroed after) or the storage's slack.
QK_AVX2_TARGET uint32_t FillConvRuns3Bytes(const uint8_t* corner, const int64_t* seg_offsets, int64_t groups,
                                           uint8_t flip, bool sum, uint8_t* dst) {
  const __m128i flip_bytes = _mm_set1_epi8(static_cast<char>(flip));
  const __m128i first_two = _mm_setr_epi8(0, 1, 2, 8, 9, 10, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m128i third = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 0, 1, 2, -1, -1, -1, -1, -1, -1, -1);
  const __m128i nine = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0);
  __m128i sums = _mm_setzero_si128();
  for (int64_t g = 0; g < groups; ++g, dst += 9, seg_offsets += 3) {
    const __m128i r0 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(corner + seg_offsets[0]));
    const __m128i r1 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(corner + seg_offsets[1]));
    const __m128i r2 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(corner + seg_offsets[2]));
    const __m128i v = _mm_xor_si128(
        _mm_or_si128(_mm_shuffle_epi8(_mm_unpacklo_epi64(r0, r1), first_two), _mm_shuffle_epi8(r2, third)), flip_bytes);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
    if (sum) sums = _mm_add_epi64(sums, _mm_sad_epu8(_mm_and_si128(v, nine), _mm_setzero_si128()));
  }
  return static_cast<uint32_t>(_mm_cvtsi128_si64(sums) + _mm_extract_epi64(sums, 1));
}

}  // namespace quantkit::kernels::qgemm
