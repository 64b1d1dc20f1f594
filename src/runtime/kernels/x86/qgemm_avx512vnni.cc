// AVX-512 VNNI int8 micro-kernel: vpdpbusd multiplies 4 uint8 activations by 4 int8 weights and
// adds the 4 products to an int32 lane, without intermediate saturation: exact, like the reference.
// Tile: up to 8 rows x 2 panels (32 columns) = 16 zmm accumulators.
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/qgemm_epilogue.h"
#include "runtime/kernels/qgemm_internal.h"

namespace quantkit::kernels::qgemm {
namespace {

#define QK_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// One group of 4 uint8 activations of a row, broadcast to all 16 lanes (one 32-bit load).
QK_VNNI_TARGET inline __m512i BroadcastQuad(const uint8_t* row, int64_t q) {
  int32_t quad;
  std::memcpy(&quad, row + q * kKStep, sizeof(quad));
  return _mm512_set1_epi32(quad);
}

// Named accumulators, not an array: with an array GCC 12 copied all 16 between registers every
// step and spilled two (the same problem measured in the avx2 kernel).
template <int R, int P>
QK_VNNI_TARGET void Tile(const uint8_t* a, int64_t lda, const int8_t* w, int64_t panel_elems, int64_t k_groups,
                         bool accumulate, int32_t* c, int64_t ldc) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero, c30 = zero, c31 = zero;
  __m512i c40 = zero, c41 = zero, c50 = zero, c51 = zero, c60 = zero, c61 = zero, c70 = zero, c71 = zero;
  if (accumulate) {
#define QK_LOAD(r)                                                             \
  if constexpr (R > r) {                                                       \
    c##r##0 = _mm512_loadu_si512(c + r * ldc);                                 \
    if constexpr (P > 1) c##r##1 = _mm512_loadu_si512(c + r * ldc + kPanelCols); \
  }
    QK_LOAD(0)
    QK_LOAD(1)
    QK_LOAD(2)
    QK_LOAD(3)
    QK_LOAD(4)
    QK_LOAD(5)
    QK_LOAD(6)
    QK_LOAD(7)
#undef QK_LOAD
  }
  const uint8_t* a0 = a;
  const uint8_t* a1 = a + (R > 1 ? lda : 0);
  const uint8_t* a2 = a + (R > 2 ? 2 * lda : 0);
  const uint8_t* a3 = a + (R > 3 ? 3 * lda : 0);
  const uint8_t* a4 = a + (R > 4 ? 4 * lda : 0);
  const uint8_t* a5 = a + (R > 5 ? 5 * lda : 0);
  const uint8_t* a6 = a + (R > 6 ? 6 * lda : 0);
  const uint8_t* a7 = a + (R > 7 ? 7 * lda : 0);
  for (int64_t q = 0; q < k_groups; ++q) {
    const int8_t* wq = w + q * kKStep * kPanelCols;
    const __m512i w0 = _mm512_loadu_si512(wq);
    const __m512i w1 = P > 1 ? _mm512_loadu_si512(wq + panel_elems) : zero;
#define QK_ROW(r)                                             \
  if constexpr (R > r) {                                      \
    const __m512i av = BroadcastQuad(a##r, q);                \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, w0);           \
    if constexpr (P > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, w1); \
  }
    QK_ROW(0)
    QK_ROW(1)
    QK_ROW(2)
    QK_ROW(3)
    QK_ROW(4)
    QK_ROW(5)
    QK_ROW(6)
    QK_ROW(7)
#undef QK_ROW
  }
  const __m512i rows[8][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                              {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) _mm512_storeu_si512(c + r * ldc + p * kPanelCols, rows[r][p]);
}

template <int P>
void Rows(const uint8_t* a, int64_t lda, int rows, const int8_t* w, int64_t panel_elems, int64_t k_groups,
          bool accumulate, int32_t* c, int64_t ldc) {
  switch (rows) {
    case 1: return Tile<1, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 2: return Tile<2, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 3: return Tile<3, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 4: return Tile<4, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 5: return Tile<5, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 6: return Tile<6, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    case 7: return Tile<7, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
    default: return Tile<8, P>(a, lda, w, panel_elems, k_groups, accumulate, c, ldc);
  }
}

void Kernel(const PackedQActivations& pa, int64_t m0, int rows, const PackedQWeights& b, int64_t panel, int panels,
            int64_t k0, int64_t kc, bool accumulate, int32_t* c, int64_t ldc) {
  const int64_t lda = pa.lda;
  const uint8_t* a = pa.bytes.data() + m0 * lda + k0;
  const int64_t panel_elems = b.k_padded * kPanelCols;
  // Panel layout: groups of 4 k of 16 columns, so k0 (a multiple of 4) starts at k0 * 16 bytes.
  const int8_t* w = b.bytes.data() + panel * panel_elems + k0 * kPanelCols;
  const int64_t k_groups = kc / kKStep;
  if (panels == 2) return Rows<2>(a, lda, rows, w, panel_elems, k_groups, accumulate, c, ldc);
  return Rows<1>(a, lda, rows, w, panel_elems, k_groups, accumulate, c, ldc);
}

// RequantizeRowPortable 16 columns per zmm, the same float operations in the same order as the
// avx2 build (RequantizeEight there: int32 to float, one multiply, NaN to 0, clamp, vcvtps2dq
// under the default round-half-even mode, add the zero point), so the same bytes; the low byte of
// each result stored by vpmovdb, the last columns under a mask.
QK_VNNI_TARGET inline __m128i RequantizeSixteen(__m512i v, __m512 m, __m512 vlo, __m512 vhi, __m512i vzp) {
  // The zero-masked forms with every lane set: GCC 12 warns (falsely) about the plain forms'
  // undefined pass-through source.
  constexpr __mmask16 all = 0xFFFF;
  __m512 r = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(all, v), m);
  r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r);  // NaN -> 0
  r = _mm512_maskz_min_ps(all, _mm512_maskz_max_ps(all, r, vlo), vhi);
  // vpmovdb to a register, then a plain store: its masked memory form is several times slower.
  return _mm512_maskz_cvtepi32_epi8(all, _mm512_add_epi32(_mm512_maskz_cvtps_epi32(all, r), vzp));
}

QK_VNNI_TARGET void RequantizeRowAvx512(const int32_t* acc, int64_t cols, const int32_t* bias, const float* mult,
                                        int64_t mult_step, float lo, float hi, int32_t zp, uint8_t* qrow) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  const __m512i vzp = _mm512_set1_epi32(zp);
  const __m512 mult_one = _mm512_set1_ps(mult[0]);
  int64_t j = 0;
  for (; j + 16 <= cols; j += 16) {
    __m512i v = _mm512_loadu_si512(acc + j);
    if (bias) v = _mm512_add_epi32(v, _mm512_loadu_si512(bias + j));
    const __m512 m = mult_step ? _mm512_loadu_ps(mult + j) : mult_one;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qrow + j), RequantizeSixteen(v, m, vlo, vhi, vzp));
  }
  if (j < cols) {  // the last columns under a mask
    const __mmask16 live = static_cast<__mmask16>((1u << (cols - j)) - 1);
    __m512i v = _mm512_maskz_loadu_epi32(live, acc + j);
    if (bias) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(live, bias + j));
    const __m512 m = mult_step ? _mm512_maskz_loadu_ps(live, mult + j) : mult_one;
    _mm_mask_storeu_epi8(qrow + j, live, RequantizeSixteen(v, m, vlo, vhi, vzp));
  }
}

}  // namespace

// The epilogue built for AVX-512 (qgemm_epilogue.h: the zero-point corrections vectorised 16 wide,
// the requantization above); the same integer and float operations as the other builds.
QK_VNNI_TARGET void EpilogueAvx512(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out,
                                   int64_t m0, int rows, int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr) {
  Epilogue<&RequantizeRowAvx512>(a, b, out, m0, rows, n0, cols, raw, ldr);
}

MicroKernel Avx512VnniMicroKernel() { return {&Kernel, 8, 2}; }

}  // namespace quantkit::kernels::qgemm
