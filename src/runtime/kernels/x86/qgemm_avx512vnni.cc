// AVX-512 VNNI int8 micro-kernel: vpdpbusd multiplies 4 uint8 activations by 4 int8 weights and
// adds the 4 products to an int32 lane, without intermediate saturation: exact, like the reference.
// Tile: up to 8 rows x 2 panels (32 columns) = 16 zmm accumulators.
#include <immintrin.h>

#include <cstring>

#include "runtime/kernels/qgemm_internal.h"

namespace quantkit::kernels::qgemm {
namespace {

#define QK_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))

template <int R, int P>
QK_VNNI_TARGET void Tile(const uint8_t* a, int64_t lda, const int8_t* w, int64_t panel_elems, int64_t k_groups,
                         int32_t* c, int64_t ldc) {
  __m512i acc[R][P];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_si512();
  for (int64_t q = 0; q < k_groups; ++q) {
    __m512i wv[P];
    for (int p = 0; p < P; ++p) wv[p] = _mm512_loadu_si512(w + p * panel_elems + q * kKStep * kPanelCols);
    for (int r = 0; r < R; ++r) {
      int32_t quad;
      std::memcpy(&quad, a + r * lda + q * kKStep, sizeof(quad));
      const __m512i av = _mm512_set1_epi32(quad);
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < P; ++p) _mm512_storeu_si512(c + r * ldc + p * kPanelCols, acc[r][p]);
}

template <int P>
void Rows(const uint8_t* a, int64_t lda, int rows, const int8_t* w, int64_t panel_elems, int64_t k_groups, int32_t* c,
          int64_t ldc) {
  switch (rows) {
    case 1: return Tile<1, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 2: return Tile<2, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 3: return Tile<3, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 4: return Tile<4, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 5: return Tile<5, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 6: return Tile<6, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    case 7: return Tile<7, P>(a, lda, w, panel_elems, k_groups, c, ldc);
    default: return Tile<8, P>(a, lda, w, panel_elems, k_groups, c, ldc);
  }
}

void Kernel(const PackedQActivations& pa, int64_t m0, int rows, const PackedQWeights& b, int64_t panel, int panels,
            int32_t* c, int64_t ldc) {
  const int64_t lda = pa.lda;
  const uint8_t* a = pa.bytes.data() + m0 * lda;
  const int64_t panel_elems = b.k_padded * kPanelCols;
  const int8_t* w = b.bytes.data() + panel * panel_elems;
  const int64_t k_groups = b.k_padded / kKStep;
  if (panels == 2) return Rows<2>(a, lda, rows, w, panel_elems, k_groups, c, ldc);
  return Rows<1>(a, lda, rows, w, panel_elems, k_groups, c, ldc);
}

}  // namespace

MicroKernel Avx512VnniMicroKernel() { return {&Kernel, 8, 2}; }

}  // namespace quantkit::kernels::qgemm
