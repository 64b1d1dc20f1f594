// Blocked, packed SGEMM (see sgemm.h).
//
// Loop nest (per task, single-threaded):   for jc (NC cols of C) / for pc (KC of K): pack B panel
//   / for ic (MC rows of C): pack A block / for jr (NR) / for ir (MR): micro-kernel.
// Packed A: MR-row slivers, k-major (MR floats per k). Packed B: NR-col slivers, k-major.
// Edge slivers are zero-padded, so the micro-kernel always computes a full MR x NR tile; partial
// tiles go through a small buffer. Multi-threading splits C into a grid of independent tasks.
#include "runtime/kernels/ref/sgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/thread_pool.h"

namespace quantkit::kernels {
namespace {

constexpr int64_t kKC = 256;
constexpr int64_t kMC = 120;  // multiple of every MR used below (6, 4)
// A kKC x kNC panel of packed B (1 MB) stays in the L2 cache (2 MB) while every MR-row sliver of
// the A block (8 KB, in L1) streams it; up to 1024 columns A is packed once per K block, not once
// per panel (1024^3: about 4 points of the FMA peak over 512; 3072, 1.5 MB from L3: 1024^3 and
// 128x3072x768 ~7% slower).
constexpr int64_t kNC = 1024;  // multiple of every NR used below (16, 8), and of 64 (SgemvColumns)
// SgemmPacked's column block: its A is already packed (nothing to amortize over wide blocks),
// and a panel this narrow is packed from a small part of a convolution's input, still in cache
// (3072 columns: 1.35x slower on a 160x160 3x3 conv; 512-1024 all about the same).
constexpr int64_t kPackedNC = 768;

// What a micro-kernel does with its MR x NR sums `acc`, per row r and column j:
//   c = alpha * acc + beta * c_old   (beta == 0: c_old is not read; alpha * acc + bias[r] when bias)
// then, with a residual, c = c + residual[r * ldr + j] (a separate Add's one rounding), then, when
// clamp, c = min(max(c, lo), hi) (Clip's expression: NaN and -0 pass through).
struct TileEpilogue {
  float alpha = 1.f, beta = 0.f;
  const float* bias = nullptr;  // MR values (rows of this tile), only with beta == 0
  bool clamp = false;
  float lo = 0.f, hi = 0.f;
  const float* residual = nullptr;  // this tile's (0, 0) in the addend (row stride ldr), or null
  int64_t ldr = 0;
};

using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             const TileEpilogue& epi);
// The same tile with B row k read at b + taps[k] (SgemmPackedTaps).
using TapsMicroKernel = void (*)(int64_t kc, const float* a, const float* b, const int64_t* taps, float* c,
                                 int64_t ldc, const TileEpilogue& epi);

std::atomic<int> g_forced_isa{-1};  // SgemmForceIsa, or -1

inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Rows per A block for `rows` rows: at most kMC, split evenly (128 rows: 2 x 64, not 120 + 8, so
// no block streams the whole B panel for a few rows).
inline int64_t RowBlock(int64_t rows, int64_t mr) {
  const int64_t blocks = (rows + kMC - 1) / kMC;
  return RoundUp((rows + blocks - 1) / blocks, mr);
}

// Per-thread packing buffers, grown on demand and reused across calls.
class PackBuffer {
 public:
  ~PackBuffer() { std::free(p_); }
  float* Get(size_t floats) {
    if (floats > cap_) {
      std::free(p_);
      const size_t bytes = static_cast<size_t>(RoundUp(static_cast<int64_t>(floats * sizeof(float)), 64));
      p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap_ = p_ ? floats : 0;
    }
    return p_;
  }

 private:
  float* p_ = nullptr;
  size_t cap_ = 0;
};
thread_local PackBuffer tls_pack_a;
thread_local PackBuffer tls_pack_b;

// Eight full rows of a row-major A, kc deep, into one 8-row sliver (d[k * 8 + r] = rows[r][k]):
// 8 x 8 blocks transposed in registers (the AVX-512 kernel's A; the scalar loop was a tenth of a
// 128 x 768 x 768 product).
__attribute__((target("avx2"))) void PackA8Avx2(const float* const* rows, int64_t kc, float* d) {
  int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    // Eight rows far apart (a large A is read from L3): fetch each row's next lines ahead.
    if ((k & 15) == 0) {
      for (int i = 0; i < 8; ++i) _mm_prefetch(reinterpret_cast<const char*>(rows[i] + k + 64), _MM_HINT_T0);
    }
    __m256 r[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(rows[i] + k);
    __m256 t[8], u[8];
    for (int i = 0; i < 4; ++i) {  // t[2i] = rows 2i, 2i+1 interleaved (k 0,1 | 4,5), t[2i+1] (k 2,3 | 6,7)
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h) {  // u[4h + j]: rows 4h .. 4h+3 at k = j (low half) and j + 4 (high half)
      u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
      u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
      u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
      u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    float* dk = d + k * 8;
    for (int j = 0; j < 4; ++j) {
      _mm256_storeu_ps(dk + j * 8, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
      _mm256_storeu_ps(dk + (j + 4) * 8, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
    }
  }
  for (; k < kc; ++k)
    for (int i = 0; i < 8; ++i) d[k * 8 + i] = rows[i][k];
}

// Packs op(A)[i0 : i0+mc, k0 : k0+kc] into MR-row slivers: dst[sliver][k][r].
template <int MR>
void PackA(bool trans, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
           float* dst) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t m = std::min<int64_t>(MR, mc - ir);
    float* d = dst + ir * kc;
    if (trans) {  // op(A)(i, k) = A[k * lda + i]: each k is a contiguous run of rows
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = A + (k0 + k) * lda + i0 + ir;
        float* dk = d + k * MR;
        if (m == MR) {
          for (int r = 0; r < MR; ++r) dk[r] = s[r];
        } else {
          int64_t r = 0;
          for (; r < m; ++r) dk[r] = s[r];
          for (; r < MR; ++r) dk[r] = 0.f;
        }
      }
    } else {  // op(A)(i, k) = A[i * lda + k]
      const float* rows[MR];
      for (int r = 0; r < MR; ++r) rows[r] = A + (i0 + ir + std::min<int64_t>(r, m - 1)) * lda + k0;
      // 8-row slivers belong to the AVX-512 kernel, which is only chosen on CPUs with AVX2.
      if (MR == 8 && m == MR) {
        PackA8Avx2(rows, kc, d);
      } else if (m == MR) {
        for (int64_t k = 0; k < kc; ++k)
          for (int r = 0; r < MR; ++r) d[k * MR + r] = rows[r][k];
      } else {
        for (int64_t k = 0; k < kc; ++k)
          for (int r = 0; r < MR; ++r) d[k * MR + r] = r < m ? rows[r][k] : 0.f;
      }
    }
  }
}

// Packs op(B)[k0 : k0+kc, j0 : j0+nc] into NR-column slivers: dst[sliver][k][c].
template <int NR>
void PackB(bool trans, const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
           float* dst) {
  if (!trans) {  // row by row: each row of B is read once, in order (not kc rows per sliver)
    const int64_t full = nc / NR * NR;
    for (int64_t k = 0; k < kc; ++k) {
      const float* s = B + (k0 + k) * ldb + j0;
      for (int64_t jr = 0; jr < full; jr += NR) std::memcpy(dst + jr * kc + k * NR, s + jr, NR * sizeof(float));
      if (full < nc) {  // the last, partial sliver, zero-padded
        float* dk = dst + full * kc + k * NR;
        int64_t c = 0;
        for (; c < nc - full; ++c) dk[c] = s[full + c];
        for (; c < NR; ++c) dk[c] = 0.f;
      }
    }
    return;
  }
  for (int64_t jr = 0; jr < nc; jr += NR) {  // op(B)(k, j) = B[j * ldb + k]
    const int64_t n = std::min<int64_t>(NR, nc - jr);
    float* d = dst + jr * kc;
    for (int64_t c = 0; c < NR; ++c) {
      if (c < n) {
        const float* s = B + (j0 + jr + c) * ldb + k0;
        for (int64_t k = 0; k < kc; ++k) d[k * NR + c] = s[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) d[k * NR + c] = 0.f;
      }
    }
  }
}

// ---- Micro-kernels: c[MR x NR] = alpha * sum_k a[k][r] * b[k][c] + beta * c (beta 0: no read).

typedef float v4f __attribute__((vector_size(16)));

// The epilogue of one value (scalar form of the micro-kernels' vector epilogue; the same roundings).
inline float EpilogueValue(float acc, float old, int r, int64_t j, const TileEpilogue& epi) {
  float v = acc * epi.alpha;
  if (epi.beta != 0.f) {
    v += old * epi.beta;
  } else if (epi.bias) {
    v += epi.bias[r];
  }
  if (epi.residual) v += epi.residual[r * epi.ldr + j];
  if (epi.clamp) v = std::min(std::max(v, epi.lo), epi.hi);
  return v;
}

// Row k of the B sliver: packed (NR floats per k, consecutive) or read in place at
// b + taps[k] (SgemmPackedTaps: a row of a padded input plane; unaligned).
template <int NR, bool kTaps>
inline const float* SliverRow(const float* b, const int64_t* taps, int64_t k) {
  if constexpr (kTaps) {
    return b + taps[k];
  } else {
    return b + k * NR;
  }
}

template <int MR, int NR, bool kTaps>
void MicroKernelPortableBody(int64_t kc, const float* a, const float* b, const int64_t* taps, float* c, int64_t ldc,
                             const TileEpilogue& epi) {
  constexpr int NV = NR / 4;
  v4f acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = v4f{0.f, 0.f, 0.f, 0.f};
  for (int64_t k = 0; k < kc; ++k) {
    v4f bv[NV];
    std::memcpy(bv, SliverRow<NR, kTaps>(b, taps, k), sizeof(bv));
    for (int r = 0; r < MR; ++r) {
      const float ar = a[k * MR + r];
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      for (int l = 0; l < 4; ++l) {
        float& out = cr[v * 4 + l];
        out = EpilogueValue(acc[r][v][l], epi.beta != 0.f ? out : 0.f, r, v * 4 + l, epi);
      }
    }
  }
}

template <int MR, int NR>
void MicroKernelPortable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         const TileEpilogue& epi) {
  MicroKernelPortableBody<MR, NR, false>(kc, a, b, nullptr, c, ldc, epi);
}
template <int MR, int NR>
void MicroKernelPortableTaps(int64_t kc, const float* a, const float* b, const int64_t* taps, float* c, int64_t ldc,
                             const TileEpilogue& epi) {
  MicroKernelPortableBody<MR, NR, true>(kc, a, b, taps, c, ldc, epi);
}

// The AVX2 R x 16 tile (R = 6, or 4 for products whose row count is a multiple of 4, not 6).
// Packed B slivers are 64-byte aligned; rows read in place are not.
template <int R, bool kTaps>
__attribute__((target("avx2,fma"), always_inline)) inline void MicroKernelAvx2Body(
    int64_t kc, const float* a, const float* b, const int64_t* taps, float* c, int64_t ldc, const TileEpilogue& epi) {
  static_assert(R == 4 || R == 6, "4 or 6 rows");
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define QK_SGEMM_ROW(A, r)                                        \
  {                                                               \
    const __m256 av = _mm256_broadcast_ss((A) + r);               \
    c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                   \
    c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);                   \
  }
#define QK_SGEMM_STEP(A, B)                                                      \
  {                                                                              \
    const float* bk = (B);                                                       \
    const __m256 b0 = kTaps ? _mm256_loadu_ps(bk) : _mm256_load_ps(bk);          \
    const __m256 b1 = kTaps ? _mm256_loadu_ps(bk + 8) : _mm256_load_ps(bk + 8);  \
    QK_SGEMM_ROW(A, 0)                                                           \
    QK_SGEMM_ROW(A, 1)                                                           \
    QK_SGEMM_ROW(A, 2)                                                           \
    QK_SGEMM_ROW(A, 3)                                                           \
    if constexpr (R == 6) {                                                      \
      QK_SGEMM_ROW(A, 4)                                                         \
      QK_SGEMM_ROW(A, 5)                                                         \
    }                                                                            \
  }
  int64_t k = 0;
  if constexpr (kTaps) {
    for (; k + 4 <= kc; k += 4) {
      QK_SGEMM_STEP(a, b + taps[k]);
      QK_SGEMM_STEP(a + R, b + taps[k + 1]);
      QK_SGEMM_STEP(a + 2 * R, b + taps[k + 2]);
      QK_SGEMM_STEP(a + 3 * R, b + taps[k + 3]);
      a += 4 * R;
    }
    for (; k < kc; ++k) {
      QK_SGEMM_STEP(a, b + taps[k]);
      a += R;
    }
  } else {
    for (; k + 4 <= kc; k += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(b + 256), _MM_HINT_T0);
      QK_SGEMM_STEP(a, b);
      QK_SGEMM_STEP(a + R, b + 16);
      QK_SGEMM_STEP(a + 2 * R, b + 32);
      QK_SGEMM_STEP(a + 3 * R, b + 48);
      a += 4 * R;
      b += 64;
    }
    for (; k < kc; ++k) {
      QK_SGEMM_STEP(a, b);
      a += R;
      b += 16;
    }
  }
#undef QK_SGEMM_STEP
#undef QK_SGEMM_ROW
  __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(epi.alpha);
  const __m256 vb = _mm256_set1_ps(epi.beta);
  const __m256 lo = _mm256_set1_ps(epi.lo), hi = _mm256_set1_ps(epi.hi);
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (int h = 0; h < 2; ++h) {
      __m256 v;
      if (epi.beta != 0.f) {
        v = _mm256_fmadd_ps(acc[r][h], va, _mm256_mul_ps(_mm256_loadu_ps(cr + 8 * h), vb));
      } else if (epi.bias) {
        v = _mm256_fmadd_ps(acc[r][h], va, _mm256_set1_ps(epi.bias[r]));
      } else {
        v = _mm256_mul_ps(acc[r][h], va);
      }
      if (epi.residual) v = _mm256_add_ps(v, _mm256_loadu_ps(epi.residual + r * epi.ldr + 8 * h));
      // max(lo, v) / min(hi, v) return v when v is NaN, and v for -0 vs 0: Clip's std::max/min.
      if (epi.clamp) v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
      _mm256_storeu_ps(cr + 8 * h, v);
    }
  }
}

template <int R>
__attribute__((target("avx2,fma"))) void MicroKernelAvx2(int64_t kc, const float* a, const float* b, float* c,
                                                         int64_t ldc, const TileEpilogue& epi) {
  MicroKernelAvx2Body<R, false>(kc, a, b, nullptr, c, ldc, epi);
}
template <int R>
__attribute__((target("avx2,fma"))) void MicroKernelAvx2Taps(int64_t kc, const float* a, const float* b,
                                                             const int64_t* taps, float* c, int64_t ldc,
                                                             const TileEpilogue& epi) {
  MicroKernelAvx2Body<R, true>(kc, a, b, taps, c, ldc, epi);
}

// The AVX-512 R x 16*NV tile (R = 8, or 4 for products whose row count is a multiple of 4, not 8).
// NV = 2 covers two adjacent 16-column slivers: packed, the second starts 16 * kc floats after the
// first; read in place (kTaps), 16 floats after it. Every sum is the AVX2 kernel's: one FMA per
// term in k order from zero, then fma(acc, alpha, bias): the same bits on either ISA.
template <int R, int NV, bool kTaps>
__attribute__((target("avx512f"), always_inline)) inline void MicroKernelAvx512Body(
    int64_t kc, const float* a, const float* b, const int64_t* taps, float* c, int64_t ldc, const TileEpilogue& epi) {
  static_assert((R == 4 || R == 8) && (NV == 1 || NV == 2), "4 or 8 rows, 1 or 2 slivers");
  // Named accumulators (as the AVX2 kernel): GCC keeps them in registers; an array of __m512
  // passed around ends up shuffled through the stack.
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
  __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
  __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
  __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
  const int64_t second = kTaps ? 16 : 16 * kc;
  // The tile's C rows, read by the epilogue after this K block (a large C is long out of cache).
  for (int r = 0; r < R; ++r) {
    _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc), _MM_HINT_T0);
    if constexpr (NV == 2) _mm_prefetch(reinterpret_cast<const char*>(c + r * ldc + 16), _MM_HINT_T0);
  }
#define QK_SGEMM512_ROW(A, r)                                \
  {                                                          \
    const __m512 av = _mm512_set1_ps((A)[r]);                \
    c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);              \
    if constexpr (NV == 2) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1); \
  }
#define QK_SGEMM512_STEP(A, B)                                                                      \
  {                                                                                                 \
    const float* bk = (B);                                                                          \
    const __m512 b0 = kTaps ? _mm512_loadu_ps(bk) : _mm512_load_ps(bk);                             \
    const __m512 b1 = NV == 1 ? b0 : kTaps ? _mm512_loadu_ps(bk + second) : _mm512_load_ps(bk + second); \
    QK_SGEMM512_ROW(A, 0)                                                                           \
    QK_SGEMM512_ROW(A, 1)                                                                           \
    QK_SGEMM512_ROW(A, 2)                                                                           \
    QK_SGEMM512_ROW(A, 3)                                                                           \
    if constexpr (R == 8) {                                                                         \
      QK_SGEMM512_ROW(A, 4)                                                                         \
      QK_SGEMM512_ROW(A, 5)                                                                         \
      QK_SGEMM512_ROW(A, 6)                                                                         \
      QK_SGEMM512_ROW(A, 7)                                                                         \
    }                                                                                               \
  }
  int64_t k = 0;
  if constexpr (kTaps) {
    for (; k + 4 <= kc; k += 4) {
      QK_SGEMM512_STEP(a, b + taps[k]);
      QK_SGEMM512_STEP(a + R, b + taps[k + 1]);
      QK_SGEMM512_STEP(a + 2 * R, b + taps[k + 2]);
      QK_SGEMM512_STEP(a + 3 * R, b + taps[k + 3]);
      a += 4 * R;
    }
    for (; k < kc; ++k, a += R) QK_SGEMM512_STEP(a, b + taps[k]);
  } else {
    for (; k + 4 <= kc; k += 4) {
      _mm_prefetch(reinterpret_cast<const char*>(b + 256), _MM_HINT_T0);
      if constexpr (NV == 2) _mm_prefetch(reinterpret_cast<const char*>(b + second + 256), _MM_HINT_T0);
      QK_SGEMM512_STEP(a, b);
      QK_SGEMM512_STEP(a + R, b + 16);
      QK_SGEMM512_STEP(a + 2 * R, b + 32);
      QK_SGEMM512_STEP(a + 3 * R, b + 48);
      a += 4 * R;
      b += 64;
    }
    for (; k < kc; ++k, a += R, b += 16) QK_SGEMM512_STEP(a, b);
  }
#undef QK_SGEMM512_STEP
#undef QK_SGEMM512_ROW
  const __m512 acc[8][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                            {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  const __m512 va = _mm512_set1_ps(epi.alpha);
  const __m512 vb = _mm512_set1_ps(epi.beta);
  const __m512 lo = _mm512_set1_ps(epi.lo), hi = _mm512_set1_ps(epi.hi);
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      __m512 out;
      if (epi.beta != 0.f) {
        out = _mm512_fmadd_ps(acc[r][v], va, _mm512_mul_ps(_mm512_loadu_ps(cr + 16 * v), vb));
      } else if (epi.bias) {
        out = _mm512_fmadd_ps(acc[r][v], va, _mm512_set1_ps(epi.bias[r]));
      } else {
        out = _mm512_mul_ps(acc[r][v], va);
      }
      if (epi.residual) out = _mm512_add_ps(out, _mm512_loadu_ps(epi.residual + r * epi.ldr + 16 * v));
      // vmaxps/vminps as the AVX2 kernel (NaN, -0 pass); the zero-masked forms with every lane set
      // avoid GCC 12's false maybe-uninitialized warning on _mm512_max_ps's undefined source.
      if (epi.clamp) out = _mm512_maskz_min_ps(0xFFFF, hi, _mm512_maskz_max_ps(0xFFFF, lo, out));
      _mm512_storeu_ps(cr + 16 * v, out);
    }
  }
}

template <int R, int NV>
__attribute__((target("avx512f"))) void MicroKernelAvx512(int64_t kc, const float* a, const float* b, float* c,
                                                         int64_t ldc, const TileEpilogue& epi) {
  MicroKernelAvx512Body<R, NV, false>(kc, a, b, nullptr, c, ldc, epi);
}
template <int R, int NV>
__attribute__((target("avx512f"))) void MicroKernelAvx512Taps(int64_t kc, const float* a, const float* b,
                                                             const int64_t* taps, float* c, int64_t ldc,
                                                             const TileEpilogue& epi) {
  MicroKernelAvx512Body<R, NV, true>(kc, a, b, taps, c, ldc, epi);
}

// ---- Serial blocked driver for one sub-problem.

// C[0:mc, 0:nc] = the packed A block (mc rows, kc deep) times the packed B panel (kc x nc), with
// `epi` (its bias, if any, points at row 0 of the block). Partial tiles go through `tile`. WIDE
// (when given) computes MR x 2NR tiles from two adjacent slivers; a last odd sliver takes KERNEL.
// Rows outer: one A sliver stays in L1 while the B panel streams from L2 (B slivers of 32 KB
// did not stay in L1 with the A block streaming past them).
template <int MR, int NR, MicroKernel KERNEL, MicroKernel WIDE = nullptr>
void MacroKernel(int64_t mc, int64_t nc, int64_t kc, const float* ap, const float* bp, float* C, int64_t ldc,
                 const TileEpilogue& epi) {
  alignas(64) float tile[MR * 2 * NR];
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t m = std::min<int64_t>(MR, mc - ir);
    TileEpilogue e = epi;
    if (e.bias) e.bias += ir;
    for (int64_t jr = 0; jr < nc;) {
      bool wide = false;
      if constexpr (WIDE != nullptr) wide = jr + 2 * NR <= nc;
      const MicroKernel kernel = wide ? WIDE : KERNEL;
      const int64_t width = wide ? 2 * NR : NR;
      const int64_t n = std::min<int64_t>(width, nc - jr);
      float* c = C + ir * ldc + jr;
      if (epi.residual) e.residual = epi.residual + ir * epi.ldr + jr;
      if (m == MR && n == width) {
        kernel(kc, ap + ir * kc, bp + jr * kc, c, ldc, e);
      } else {
        kernel(kc, ap + ir * kc, bp + jr * kc, tile, width, TileEpilogue{});
        for (int64_t r = 0; r < m; ++r) {
          float* cr = c + r * ldc;
          const float* tr = tile + r * width;
          for (int64_t j = 0; j < n; ++j) {
            cr[j] = EpilogueValue(tr[j], e.beta != 0.f ? cr[j] : 0.f, static_cast<int>(r), j, e);
          }
        }
      }
      jr += width;
    }
  }
}

template <int MR, int NR, MicroKernel KERNEL, MicroKernel WIDE>
void GemmSerial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static_assert(kMC % MR == 0 && kNC % NR == 0, "block sizes must be multiples of the tile");
  float* bp = tls_pack_b.Get(static_cast<size_t>(std::min(kKC, K) * RoundUp(std::min(kNC, N), NR)));
  float* ap = tls_pack_a.Get(static_cast<size_t>(RoundUp(std::min(kMC, M), MR) * std::min(kKC, K)));
  const int64_t block_m = RowBlock(M, MR);
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      TileEpilogue epi;
      epi.alpha = alpha;
      epi.beta = pc == 0 ? beta : 1.f;
      PackB<NR>(tb, B, ldb, pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += block_m) {
        const int64_t mc = std::min(block_m, M - ic);
        PackA<MR>(ta, A, lda, ic, mc, pc, kc, ap);
        MacroKernel<MR, NR, KERNEL, WIDE>(mc, nc, kc, ap, bp, C + ic * ldc + jc, ldc, epi);
      }
    }
  }
}

// The epilogue of K block [pc, pc + kc) of a packed-A product: the first block stores (its bias
// is set per tile by the caller), later ones add to C; the last one clamps.
inline TileEpilogue BlockEpilogue(const SgemmEpilogue& epi, int64_t pc, int64_t kc, int64_t K) {
  TileEpilogue e;
  e.beta = pc == 0 ? 0.f : 1.f;
  e.clamp = epi.clamp && pc + kc == K;
  e.lo = epi.lo;
  e.hi = epi.hi;
  if (pc + kc == K) {
    e.residual = epi.residual;  // C's (0, 0): offset per block and tile like C
    e.ldr = epi.ldr;
  }
  return e;
}

// Rows [i0, i0+m) and columns [j0, j0+n) of C = packed A * B (B from `pack_b`), i0 a multiple of
// MR. Same blocking and summation order as GemmSerial; the first K block adds the bias, the last
// one clamps. `bp` holds one B panel.
template <int MR, int NR, MicroKernel KERNEL, MicroKernel WIDE>
void PackedSerial(const float* packed_a, int64_t padded_rows, int64_t K, int64_t i0, int64_t m, int64_t j0,
                  int64_t n, const SgemmPanelPacker& pack_b, float* C, int64_t ldc, const SgemmEpilogue& epi,
                  float* bp) {
  for (int64_t jc = j0; jc < j0 + n; jc += kPackedNC) {
    const int64_t nc = std::min(kPackedNC, j0 + n - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      pack_b(pc, kc, jc, nc, NR, bp);
      TileEpilogue e = BlockEpilogue(epi, pc, kc, K);
      // Block pc of the packed A: padded_rows x kc, MR-row slivers (PackA's layout).
      const float* block = packed_a + pc * padded_rows;
      for (int64_t ic = i0; ic < i0 + m; ic += RowBlock(m, MR)) {
        const int64_t mc = std::min(RowBlock(m, MR), i0 + m - ic);
        e.bias = pc == 0 && epi.bias ? epi.bias + ic : nullptr;
        TileEpilogue eb = e;
        if (eb.residual) eb.residual += ic * eb.ldr + jc;
        MacroKernel<MR, NR, KERNEL, WIDE>(mc, nc, kc, block + ic * kc, bp, C + ic * ldc + jc, ldc, eb);
      }
    }
  }
}

// Rows [i0, i0+m) and columns [j0, j0+n) of C = alpha * op(A) * B + beta * C with B packed once
// (SgemmPackedB's layout: per NC column block, per KC row block, NR-column slivers); j0 a
// multiple of NR. Same K blocking and epilogue as GemmSerial, so the same sums. `ap` holds one
// packed A block.
template <int MR, int NR, MicroKernel KERNEL, MicroKernel WIDE>
void PackedBSerial(bool ta, const float* A, int64_t lda, const float* packed_b, int64_t K, int64_t N, float alpha,
                   float beta, int64_t i0, int64_t m, int64_t j0, int64_t n, float* C, int64_t ldc, float* ap) {
  for (int64_t jb = j0 / kNC * kNC; jb < j0 + n; jb += kNC) {
    const int64_t block_cols = RoundUp(std::min(kNC, N - jb), NR);  // the packed block's width
    const int64_t cb = std::max(j0, jb), nc = std::min(j0 + n, jb + kNC) - cb;
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const float* panel = packed_b + jb * K + pc * block_cols + (cb - jb) * kc;
      TileEpilogue epi;
      epi.alpha = alpha;
      epi.beta = pc == 0 ? beta : 1.f;
      for (int64_t ic = i0; ic < i0 + m; ic += RowBlock(m, MR)) {
        const int64_t mc = std::min(RowBlock(m, MR), i0 + m - ic);
        PackA<MR>(ta, A, lda, ic, mc, pc, kc, ap);
        MacroKernel<MR, NR, KERNEL, WIDE>(mc, nc, kc, ap, panel, C + ic * ldc + cb, ldc, epi);
      }
    }
  }
}

// d[0, n) = s[0, n) for a run of at most 32 floats (one output row's part of a tile).
using CopyRunFn = void (*)(float* d, const float* s, int64_t n);
inline void CopyRunPortable(float* d, const float* s, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) std::memcpy(d + i, s + i, 8 * sizeof(float));
  for (; i < n; ++i) d[i] = s[i];
}
// Two masked zmm moves (the plain loop above was most of a small conv's copy-out).
__attribute__((target("avx512f"))) void CopyRunAvx512(float* d, const float* s, int64_t n) {
  const __mmask16 lo = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  _mm512_mask_storeu_ps(d, lo, _mm512_maskz_loadu_ps(lo, s));
  if (n > 16) {
    const __mmask16 hi = n >= 32 ? __mmask16(0xFFFF) : __mmask16((1u << (n - 16)) - 1);
    _mm512_mask_storeu_ps(d + 16, hi, _mm512_maskz_loadu_ps(hi, s + 16));
  }
}

// Rows [i0, i0+m) and columns [j0, j0+n) of SgemmPackedTaps: the blocking, sums and epilogue of
// PackedSerial, B read in place. Tiles land in `cbuf` (RoundUp(m, MR) rows of kPackedNC columns,
// padding rows and columns included: the partial sums between K blocks); after the last K block
// each tile's valid columns go straight to the output, by COPY. Rows outer, as MacroKernel (one
// A sliver in L1, the tap rows from L2; ResNet-18's 3x3 convs time the same either way).
// Where output column j is y's column j (row_len == out_w: a pointwise conv), whole tiles are
// stored straight into y instead, with the residual in their epilogue as PackedSerial's (no
// copy-out pass). Tiles through cbuf get the residual (in y's layout) and then the clamp in the
// copy: the epilogue's order and roundings.
template <int MR, int NR, TapsMicroKernel KERNEL, TapsMicroKernel WIDE, CopyRunFn COPY>
void TapsSerial(const float* packed_a, int64_t padded_rows, int64_t K, int64_t i0, int64_t m, int64_t j0, int64_t n,
                const float* base, const int64_t* taps, const SgemmPlaneOutput& out, const SgemmEpilogue& epi,
                float* cbuf) {
  constexpr int64_t ldb = kPackedNC;
  const bool in_place = out.row_len == out.out_w;
  for (int64_t jc = j0; jc < j0 + n; jc += kPackedNC) {
    const int64_t nc = std::min(kPackedNC, j0 + n - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const bool last = pc + kc == K;
      const TileEpilogue e_block = BlockEpilogue(epi, pc, kc, K);
      const float* block = packed_a + pc * padded_rows;
      for (int64_t ic = i0; ic < i0 + m; ic += RowBlock(m, MR)) {
        const int64_t mc = std::min(RowBlock(m, MR), i0 + m - ic);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          TileEpilogue e = e_block;
          e.bias = pc == 0 && epi.bias ? epi.bias + ic + ir : nullptr;
          float edge_bias[MR] = {};  // a partial tile's rows past the last have no bias to read
          if (e.bias && ir + MR > mc) {
            std::copy(e.bias, e.bias + (mc - ir), edge_bias);
            e.bias = edge_bias;
          }
          float* tile = cbuf + (ic - i0 + ir) * ldb;
          const int64_t rows = std::min<int64_t>(MR, mc - ir);
          for (int64_t jr = 0; jr < nc;) {
            bool wide = false;  // two slivers at once (as MacroKernel)
            if constexpr (WIDE != nullptr) wide = jr + 2 * NR <= nc;
            const TapsMicroKernel kernel = wide ? WIDE : KERNEL;
            const int64_t width = wide ? 2 * NR : NR;
            const int64_t j = jc + jr;
            if (in_place && rows == MR && jr + width <= nc) {
              TileEpilogue ey = e;
              if (ey.residual) ey.residual += (ic + ir) * ey.ldr + j;
              kernel(kc, block + (ic + ir) * kc, base + j, taps + pc, out.y + (ic + ir) * out.ldy + j, out.ldy, ey);
              jr += width;
              continue;
            }
            // Through cbuf; with a residual, the last block leaves the clamp to the copy (after the add).
            TileEpilogue et = e;
            et.residual = nullptr;
            if (epi.residual) et.clamp = false;
            kernel(kc, block + (ic + ir) * kc, base + j, taps + pc, tile + jr, ldb, et);
            // After the last K block the tile goes to the output at once, from L1: its columns
            // j (j / row_len, j % row_len) with j % row_len < out_w, as runs along output rows.
            for (int64_t jj = j; last && jj < std::min(j + width, jc + nc);) {
              const int64_t oy = jj / out.row_len, ox = jj % out.row_len;
              const int64_t len = std::min(out.row_len - ox, j + width - jj);
              if (ox < out.out_w) {
                const int64_t run = std::min(std::min(len, out.out_w - ox), jc + nc - jj);
                for (int64_t r = 0; r < rows; ++r) {
                  float* dst = out.y + (ic + ir + r) * out.ldy + oy * out.out_w + ox;
                  const float* src = tile + r * ldb + (jj - jc);
                  if (!epi.residual) {
                    COPY(dst, src, run);
                    continue;
                  }
                  const float* res = epi.residual + (ic + ir + r) * epi.ldr + oy * out.out_w + ox;
                  for (int64_t q = 0; q < run; ++q) {
                    const float v = src[q] + res[q];
                    dst[q] = epi.clamp ? std::min(std::max(v, epi.lo), epi.hi) : v;
                  }
                }
              }
              jj += len;
            }
            jr += width;
          }
        }
      }
    }
  }
}

using SerialFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
using PackedSerialFn = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                const SgemmPanelPacker&, float*, int64_t, const SgemmEpilogue&, float*);
using PackAFn = void (*)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
using PackedBSerialFn = void (*)(bool, const float*, int64_t, const float*, int64_t, int64_t, float, float, int64_t,
                                 int64_t, int64_t, int64_t, float*, int64_t, float*);
using PackBFn = void (*)(bool, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
using TapsSerialFn = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const float*,
                              const int64_t*, const SgemmPlaneOutput&, const SgemmEpilogue&, float*);

struct GemmImpl {
  int mr, nr;
  SerialFn serial;
  PackedSerialFn packed_serial;
  PackAFn pack_a;
  PackedBSerialFn packed_b_serial;
  PackBFn pack_b;
  TapsSerialFn taps_serial;
  const char* name;
};

template <int MR, int NR, MicroKernel KERNEL, TapsMicroKernel TAPS_KERNEL, MicroKernel WIDE = nullptr,
          TapsMicroKernel WIDE_TAPS = nullptr, CopyRunFn COPY = &CopyRunPortable>
constexpr GemmImpl MakeImpl(const char* name) {
  return {MR,         NR, &GemmSerial<MR, NR, KERNEL, WIDE>, &PackedSerial<MR, NR, KERNEL, WIDE>, &PackA<MR>,
          &PackedBSerial<MR, NR, KERNEL, WIDE>, &PackB<NR>, &TapsSerial<MR, NR, TAPS_KERNEL, WIDE_TAPS, COPY>, name};
}
// AVX-512: 8 x 32 tiles (16 accumulators) over pairs of the same 16-column slivers as AVX2, so
// packed B, in-place rows and their margins are shared; an odd last sliver takes 8 x 16.
constexpr GemmImpl kAvx512Impl =
    MakeImpl<8, 16, &MicroKernelAvx512<8, 1>, &MicroKernelAvx512Taps<8, 1>, &MicroKernelAvx512<8, 2>,
             &MicroKernelAvx512Taps<8, 2>, &CopyRunAvx512>("avx512f_8x32");
// For a packed A of 4 to 44 rows, a multiple of 4 but not of 8 (4, 12, 20, 28, 36, 44).
constexpr GemmImpl kAvx512Impl4Rows =
    MakeImpl<4, 16, &MicroKernelAvx512<4, 1>, &MicroKernelAvx512Taps<4, 1>, &MicroKernelAvx512<4, 2>,
             &MicroKernelAvx512Taps<4, 2>, &CopyRunAvx512>("avx512f_4x32");
constexpr GemmImpl kAvx2Impl = MakeImpl<6, 16, &MicroKernelAvx2<6>, &MicroKernelAvx2Taps<6>>("avx2_fma_6x16");
// For a packed A of 16 to 48 rows, a multiple of 4 but not of 6 (16, 20, 28, 32, 40, 44): 6-row
// tiles would compute 2 to 4 padding rows (12% more for 32).
constexpr GemmImpl kAvx2Impl4Rows = MakeImpl<4, 16, &MicroKernelAvx2<4>, &MicroKernelAvx2Taps<4>>("avx2_fma_4x16");
constexpr GemmImpl kPortableImpl =
    MakeImpl<4, 8, &MicroKernelPortable<4, 8>, &MicroKernelPortableTaps<4, 8>>("generic_4x8");

SgemmIsa SelectedIsa() {
  const int forced = g_forced_isa.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<SgemmIsa>(forced) : DefaultSgemmIsa();
}

const GemmImpl& ImplFor(SgemmIsa isa, bool four_rows = false) {
  switch (isa) {
    case SgemmIsa::kAvx512: return four_rows ? kAvx512Impl4Rows : kAvx512Impl;
    case SgemmIsa::kAvx2: return four_rows ? kAvx2Impl4Rows : kAvx2Impl;
    case SgemmIsa::kPortable: break;
  }
  return kPortableImpl;
}

const GemmImpl& SelectImpl() { return ImplFor(SelectedIsa()); }

// Splits an M x N product over at most `threads` independent tasks (each a multiple of MR rows
// and NR columns): the grid that minimises the largest task (in micro-tiles) plus a
// packing-overhead term, keeping enough work per task.
struct TaskGrid {
  int64_t rows_per = 0, cols_per = 0, tm = 1, tn = 1;
};
// a_pack / b_pack: the cost of packing one element of A / B, in multiply-adds (every task packs
// its own rows of A and columns of B).
TaskGrid ChooseGrid(const GemmImpl& impl, int64_t M, int64_t N, int64_t K, int threads, double a_pack = 0.5,
                    double b_pack = 0.5) {
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  TaskGrid grid{M, N, 1, 1};
  if (threads <= 1 || flops < 4e6) return grid;
  const int64_t mp = (M + impl.mr - 1) / impl.mr, np = (N + impl.nr - 1) / impl.nr;
  const int64_t max_tasks = std::max<int64_t>(1, std::min<int64_t>(threads, static_cast<int64_t>(flops / 2e6)));
  int64_t best_tm = 1, best_tn = 1;
  double best_cost = -1;
  for (int64_t tm = 1; tm <= max_tasks; ++tm) {
    const int64_t tn = max_tasks / tm;
    if (tm > mp || tn > np) continue;
    const double tile_m = static_cast<double>((mp + tm - 1) / tm) * impl.mr;
    const double tile_n = static_cast<double>((np + tn - 1) / tn) * impl.nr;
    const double cost = (tile_m * tile_n + a_pack * tile_m + b_pack * tile_n) * static_cast<double>(K);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best_tm = tm;
      best_tn = tn;
    }
  }
  grid.rows_per = (mp + best_tm - 1) / best_tm * impl.mr;
  grid.cols_per = (np + best_tn - 1) / best_tn * impl.nr;
  grid.tm = (M + grid.rows_per - 1) / grid.rows_per;
  grid.tn = (N + grid.cols_per - 1) / grid.cols_per;
  return grid;
}

// Runs task(t, i0, m, j0, n) for every task of the grid: rows [i0, i0+m), columns [j0, j0+n);
// on the pool when there is more than one.
template <typename Task>
void RunGrid(const TaskGrid& grid, int64_t M, int64_t N, ThreadPool* pool, const Task& task) {
  auto one = [&](int64_t t) {
    const int64_t i0 = (t / grid.tn) * grid.rows_per, j0 = (t % grid.tn) * grid.cols_per;
    task(t, i0, std::min(grid.rows_per, M - i0), j0, std::min(grid.cols_per, N - j0));
  };
  if (grid.tm * grid.tn == 1) {
    one(0);
    return;
  }
  pool->ParallelFor(grid.tm * grid.tn, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) one(t);
  });
}

// ---- Matrix-vector special cases (M == 1 or N == 1): no packing.

typedef float v8f __attribute__((vector_size(32)));

float Dot(const float* x, const float* y, int64_t n) {
  v8f acc0 = {}, acc1 = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v8f x0, x1, y0, y1;
    std::memcpy(&x0, x + i, 32);
    std::memcpy(&x1, x + i + 8, 32);
    std::memcpy(&y0, y + i, 32);
    std::memcpy(&y1, y + i + 8, 32);
    acc0 += x0 * y0;
    acc1 += x1 * y1;
  }
  acc0 += acc1;
  float s = 0.f;
  for (int l = 0; l < 8; ++l) s += acc0[l];
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

inline void StoreScaled(float* c, float v, float alpha, float beta) {
  *c = beta == 0.f ? alpha * v : alpha * v + beta * *c;
}

// y[i * incy] = alpha * dot(X[i*ldx : +K], v) + beta * y[i * incy], i in [0, rows).
void RowsDot(int64_t rows, int64_t K, float alpha, const float* X, int64_t ldx, const float* v,
             float beta, float* y, int64_t incy, ThreadPool* pool) {
  auto body = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) StoreScaled(y + i * incy, Dot(X + i * ldx, v, K), alpha, beta);
  };
  if (pool && rows * K >= (int64_t{1} << 16)) {
    pool->ParallelFor(rows, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(K, 1)), body);
  } else {
    body(0, rows);
  }
}

// Columns [j0, j0 + 64) of AxpyCols: the 64 sums stay in registers across all of K (one load of
// X per 8 columns and k; no accumulator traffic), each summed over k in order, one multiply and
// one add per term: the same values as the scalar loop. Built baseline and with avx2.
__attribute__((always_inline)) inline void AxpyBlock64Body(int64_t K, const float* X, int64_t ldx, const float* v,
                                                           float* out) {
  v8f acc[8] = {};
  for (int64_t k = 0; k < K; ++k) {
    const float vk = v[k];
    const float* xr = X + k * ldx;
    for (int i = 0; i < 8; ++i) {
      v8f x;
      std::memcpy(&x, xr + 8 * i, sizeof(x));
      acc[i] += vk * x;
    }
  }
  std::memcpy(out, acc, sizeof(acc));
}
void AxpyBlock64(int64_t K, const float* X, int64_t ldx, const float* v, float* out) {
  AxpyBlock64Body(K, X, ldx, v, out);
}
__attribute__((target("avx2"))) void AxpyBlock64Avx2(int64_t K, const float* X, int64_t ldx, const float* v,
                                                    float* out) {
  AxpyBlock64Body(K, X, ldx, v, out);
}

// y[j * incy] = alpha * sum_k v[k] * X[k*ldx + j] + beta * y[j * incy], j in [0, cols).
void AxpyCols(int64_t cols, int64_t K, float alpha, const float* X, int64_t ldx, const float* v,
              float beta, float* y, int64_t incy, ThreadPool* pool) {
  constexpr int64_t kChunk = 512;
  const bool avx2 = SelectedIsa() != SgemmIsa::kPortable;
  auto body = [&](int64_t cb, int64_t ce) {
    alignas(64) float acc[kChunk];
    for (int64_t j0 = cb * kChunk; j0 < std::min(cols, ce * kChunk); j0 += kChunk) {
      const int64_t w = std::min(kChunk, cols - j0);
      const int64_t blocked = w / 64 * 64;
      for (int64_t b = 0; b < blocked; b += 64) {
        (avx2 ? AxpyBlock64Avx2 : AxpyBlock64)(K, X + j0 + b, ldx, v, acc + b);
      }
      for (int64_t j = blocked; j < w; ++j) acc[j] = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float vk = v[k];
        const float* xr = X + k * ldx + j0;
        for (int64_t j = blocked; j < w; ++j) acc[j] += vk * xr[j];
      }
      for (int64_t j = 0; j < w; ++j) StoreScaled(y + (j0 + j) * incy, acc[j], alpha, beta);
    }
  };
  const int64_t chunks = (cols + kChunk - 1) / kChunk;
  if (pool && cols * K >= (int64_t{1} << 16) && chunks > 1) {
    pool->ParallelFor(chunks, 1, body);
  } else {
    body(0, chunks);
  }
}

// Handles M == 1 or N == 1 without packing.
void Gemv(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
          ThreadPool* pool) {
  std::vector<float> tmp;
  auto contiguous = [&](const float* p, int64_t inc) -> const float* {
    if (inc == 1) return p;
    tmp.resize(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) tmp[k] = p[k * inc];
    return tmp.data();
  };
  if (M == 1) {
    // a[k] = op(A)(0, k); y[j] = C[j].
    const float* a = contiguous(A, ta ? lda : 1);
    if (tb) {
      RowsDot(N, K, alpha, B, ldb, a, beta, C, 1, pool);  // op(B)(k, j) = B[j*ldb + k]
    } else {
      AxpyCols(N, K, alpha, B, ldb, a, beta, C, 1, pool);
    }
  } else {
    // N == 1: b[k] = op(B)(k, 0); y[i] = C[i * ldc].
    const float* b = contiguous(B, tb ? 1 : ldb);
    if (ta) {
      AxpyCols(M, K, alpha, A, lda, b, beta, C, ldc, pool);  // op(A)(i, k) = A[k*lda + i]
    } else {
      RowsDot(M, K, alpha, A, lda, b, beta, C, ldc, pool);
    }
  }
}

void ScaleC(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.f) {
      std::fill(c, c + N, 0.f);
    } else if (beta != 1.f) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
}

}  // namespace

const char* SgemmIsaName(SgemmIsa isa) {
  switch (isa) {
    case SgemmIsa::kPortable: return "portable";
    case SgemmIsa::kAvx2: return "avx2";
    case SgemmIsa::kAvx512: return "avx512";
  }
  return "?";
}

bool SgemmIsaSupported(SgemmIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case SgemmIsa::kPortable: return true;
    case SgemmIsa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    // The AVX-512 build also runs the AVX2 packers and matrix-vector loops.
    case SgemmIsa::kAvx512: return __builtin_cpu_supports("avx512f") && SgemmIsaSupported(SgemmIsa::kAvx2);
  }
  return false;
}

SgemmIsa DefaultSgemmIsa() {
  static const SgemmIsa isa = [] {
    // QUANTKIT_ISA (the int8 kernels' override) caps the float kernels too: ref -> portable,
    // avx2 -> avx2; avx512vnni, amx (or unset) -> the best this CPU has.
    const char* env = std::getenv("QUANTKIT_ISA");
    const std::string cap = env ? env : "";
    if (cap == "ref") return SgemmIsa::kPortable;
    if (cap != "avx2" && SgemmIsaSupported(SgemmIsa::kAvx512)) return SgemmIsa::kAvx512;
    if (SgemmIsaSupported(SgemmIsa::kAvx2)) return SgemmIsa::kAvx2;
    return SgemmIsa::kPortable;
  }();
  return isa;
}

void SgemmForceIsa(SgemmIsa isa) {
  g_forced_isa.store(SgemmIsaSupported(isa) ? static_cast<int>(isa) : -1);
}
void SgemmResetIsa() { g_forced_isa.store(-1); }

const char* SgemmKernelName() { return SelectImpl().name; }

void Sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
           ThreadPool* pool) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    ScaleC(M, N, beta, C, ldc);
    return;
  }
  if (M == 1 || N == 1) {
    Gemv(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pool);
    return;
  }
  const GemmImpl& impl = SelectImpl();
  const TaskGrid grid = ChooseGrid(impl, M, N, K, pool ? pool->num_threads() : 1);
  RunGrid(grid, M, N, pool, [&](int64_t, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    const float* a = trans_a ? A + i0 : A + i0 * lda;
    const float* bb = trans_b ? B + j0 * ldb : B + j0;
    impl.serial(trans_a, trans_b, m, n, K, alpha, a, lda, bb, ldb, beta, C + i0 * ldc + j0, ldc);
  });
}

SgemmPackedA::SgemmPackedA(const float* A, int64_t lda, int64_t M, int64_t K) : rows_(M), depth_(K) {
  isa_ = SelectedIsa();
  // (Not for short K: there the per-tile store dominates, and 4-row tiles are more tiles.)
  const int64_t mr = ImplFor(isa_).mr;
  four_rows_ = isa_ != SgemmIsa::kPortable && M % mr != 0 && M % 4 == 0 && M <= 48 && K >= 64;
  const GemmImpl& impl = ImplFor(isa_, four_rows_);
  padded_rows_ = RoundUp(std::max<int64_t>(M, 1), impl.mr);
  data_.assign(static_cast<size_t>(padded_rows_ * K), 0.f);
  for (int64_t pc = 0; pc < K; pc += kKC) {
    impl.pack_a(false, A, lda, 0, M, pc, std::min(kKC, K - pc), data_.data() + pc * padded_rows_);
  }
}

namespace {
const GemmImpl& PackedImpl(const SgemmPackedA& a) {
  return ImplFor(a.isa(), a.four_rows());
}

// A is packed already; each task packs B for its columns (a convolution's im2col: a load and a
// store per element, worth a few multiply-adds), so splitting rows repeats that work.
TaskGrid PackedGrid(const GemmImpl& impl, int64_t M, int64_t N, int64_t K, ThreadPool* pool) {
  return ChooseGrid(impl, M, N, K, pool ? pool->num_threads() : 1, 0.0, 4.0);
}

int64_t PanelFloats(const GemmImpl& impl, int64_t cols, int64_t K) {
  return std::min(kKC, K) * RoundUp(std::min(kPackedNC, cols), impl.nr);
}
}  // namespace

int64_t SgemmPackedWorkspace(const SgemmPackedA& a, int64_t N, ThreadPool* pool) {
  if (a.rows() <= 0 || N <= 0 || a.depth() <= 0) return 0;
  const GemmImpl& impl = PackedImpl(a);
  const TaskGrid grid = PackedGrid(impl, a.rows(), N, a.depth(), pool);
  return grid.tm * grid.tn * PanelFloats(impl, grid.cols_per, a.depth());
}

void SgemmPacked(const SgemmPackedA& a, int64_t N, const SgemmPanelPacker& pack_b, float* C, int64_t ldc,
                 const SgemmEpilogue& epi, ThreadPool* pool, float* workspace) {
  const int64_t M = a.rows(), K = a.depth();
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // no products: the bias (or zero), clamped
    for (int64_t i = 0; i < M; ++i) {
      TileEpilogue e;
      e.bias = epi.bias ? epi.bias + i : nullptr;
      e.clamp = epi.clamp;
      e.lo = epi.lo;
      e.hi = epi.hi;
      e.residual = epi.residual ? epi.residual + i * epi.ldr : nullptr;
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = EpilogueValue(0.f, 0.f, 0, j, e);
    }
    return;
  }
  const GemmImpl& impl = PackedImpl(a);
  const TaskGrid grid = PackedGrid(impl, M, N, K, pool);
  const int64_t panel = PanelFloats(impl, grid.cols_per, K);
  RunGrid(grid, M, N, pool, [&](int64_t t, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    impl.packed_serial(a.data(), a.padded_rows(), K, i0, m, j0, n, pack_b, C, ldc, epi, workspace + t * panel);
  });
}

namespace {
// No B packing at all: a row split and a column split cost the same.
TaskGrid TapsGrid(const GemmImpl& impl, int64_t M, int64_t N, int64_t K, ThreadPool* pool) {
  return ChooseGrid(impl, M, N, K, pool ? pool->num_threads() : 1, 0.0, 0.0);
}
}  // namespace

int64_t SgemmPackedTapsWorkspace(const SgemmPackedA& a, int64_t N, ThreadPool* pool) {
  if (a.rows() <= 0 || N <= 0 || a.depth() <= 0) return 0;
  const GemmImpl& impl = PackedImpl(a);
  const TaskGrid grid = TapsGrid(impl, a.rows(), N, a.depth(), pool);
  return grid.tm * grid.tn * RoundUp(grid.rows_per, impl.mr) * kPackedNC;
}

void SgemmPackedTaps(const SgemmPackedA& a, int64_t N, const float* base, const int64_t* taps,
                     const SgemmPlaneOutput& out, const SgemmEpilogue& epi, ThreadPool* pool, float* workspace) {
  const int64_t M = a.rows(), K = a.depth();
  if (M <= 0 || N <= 0 || K <= 0) return;  // the caller handles K == 0 (no taps)
  const GemmImpl& impl = PackedImpl(a);
  const TaskGrid grid = TapsGrid(impl, M, N, K, pool);
  const int64_t per_task = RoundUp(grid.rows_per, impl.mr) * kPackedNC;
  RunGrid(grid, M, N, pool, [&](int64_t t, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    impl.taps_serial(a.data(), a.padded_rows(), K, i0, m, j0, n, base, taps, out, epi, workspace + t * per_task);
  });
}

void SgemmPackedB::Free::operator()(float* p) const { std::free(p); }

SgemmPackedB::SgemmPackedB(bool trans, const float* B, int64_t ldb, int64_t K, int64_t N) : depth_(K), cols_(N) {
  const GemmImpl& impl = SelectImpl();
  isa_ = SelectedIsa();
  // Blocks of kNC columns (each a multiple of NR wide but the last, rounded up), kKC rows each.
  int64_t floats = 0;
  for (int64_t jb = 0; jb < N; jb += kNC) floats += K * RoundUp(std::min(kNC, N - jb), impl.nr);
  const size_t bytes = static_cast<size_t>(RoundUp(std::max<int64_t>(floats, 16) * 4, 64));
  data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
  if (!data_) throw std::bad_alloc();
  for (int64_t jb = 0; jb < N; jb += kNC) {
    const int64_t nc = std::min(kNC, N - jb), block_cols = RoundUp(nc, impl.nr);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      impl.pack_b(trans, B, ldb, pc, std::min(kKC, K - pc), jb, nc, data_.get() + jb * K + pc * block_cols);
    }
  }
}

void SgemmWithPackedB(bool trans_a, int64_t M, float alpha, const float* A, int64_t lda, const SgemmPackedB& b,
                      float beta, float* C, int64_t ldc, ThreadPool* pool) {
  const int64_t N = b.cols(), K = b.depth();
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {
    ScaleC(M, N, beta, C, ldc);
    return;
  }
  const GemmImpl& impl = ImplFor(b.isa());
  // B is packed already: only A's packing is repeated per task (a row split shares B's panels).
  const TaskGrid grid = ChooseGrid(impl, M, N, K, pool ? pool->num_threads() : 1, 0.5, 0.0);
  RunGrid(grid, M, N, pool, [&](int64_t, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    float* ap = tls_pack_a.Get(static_cast<size_t>(RoundUp(std::min(kMC, m), impl.mr) * std::min(kKC, K)));
    impl.packed_b_serial(trans_a, A, lda, b.data(), K, N, alpha, beta, i0, m, j0, n, C, ldc, ap);
  });
}

namespace {

// Columns [j, j + 64) of one packed column block (4 slivers of 16, block_cols wide, kc-row
// blocks): out[0:64] = sum_k x[k] * B[k, j:j+64], k over every row block.
__attribute__((target("avx2,fma"))) void SgemvGroup64Avx2(const float* x, const float* block, int64_t K,
                                                          int64_t block_cols, int64_t j, float* out) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t pc = 0; pc < K; pc += kKC) {
    const int64_t kc = std::min(kKC, K - pc);
    const float* s0 = block + pc * block_cols + j * kc;  // sliver j/16 of this row block
    const float* s1 = s0 + 16 * kc;
    const float* s2 = s1 + 16 * kc;
    const float* s3 = s2 + 16 * kc;
    for (int64_t k = 0; k < kc; ++k) {
      const __m256 v = _mm256_broadcast_ss(x + pc + k);
      acc[0] = _mm256_fmadd_ps(v, _mm256_load_ps(s0 + 16 * k), acc[0]);
      acc[1] = _mm256_fmadd_ps(v, _mm256_load_ps(s0 + 16 * k + 8), acc[1]);
      acc[2] = _mm256_fmadd_ps(v, _mm256_load_ps(s1 + 16 * k), acc[2]);
      acc[3] = _mm256_fmadd_ps(v, _mm256_load_ps(s1 + 16 * k + 8), acc[3]);
      acc[4] = _mm256_fmadd_ps(v, _mm256_load_ps(s2 + 16 * k), acc[4]);
      acc[5] = _mm256_fmadd_ps(v, _mm256_load_ps(s2 + 16 * k + 8), acc[5]);
      acc[6] = _mm256_fmadd_ps(v, _mm256_load_ps(s3 + 16 * k), acc[6]);
      acc[7] = _mm256_fmadd_ps(v, _mm256_load_ps(s3 + 16 * k + 8), acc[7]);
    }
  }
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

}  // namespace

void SgemvColumnsWithPackedB(const float* x, const SgemmPackedB& b, float beta, float* y, int64_t g0, int64_t g1) {
  const int64_t N = b.cols(), K = b.depth();
  const int64_t nr = ImplFor(b.isa()).nr;
  const bool avx2 = b.isa() != SgemmIsa::kPortable && nr == 16;
  alignas(64) float acc[64];
  for (int64_t g = g0; g < g1; ++g) {  // 64 columns inside one kNC block (kNC is a multiple of 64)
    const int64_t j0 = g * 64, jb = j0 / kNC * kNC, w = std::min<int64_t>(64, N - j0);
    const int64_t block_cols = RoundUp(std::min(kNC, N - jb), nr);
    const float* block = b.data() + jb * K;
    if (avx2 && j0 - jb + 64 <= block_cols) {
      SgemvGroup64Avx2(x, block, K, block_cols, j0 - jb, acc);
    } else {
      for (int64_t c = 0; c < w; ++c) {
        const int64_t j = j0 - jb + c;  // column within the block
        float sum = 0.f;
        for (int64_t pc = 0; pc < K; pc += kKC) {
          const int64_t kc = std::min(kKC, K - pc);
          const float* s = block + pc * block_cols + (j / nr) * nr * kc + j % nr;
          for (int64_t k = 0; k < kc; ++k) sum += x[pc + k] * s[k * nr];
        }
        acc[c] = sum;
      }
    }
    for (int64_t c = 0; c < w; ++c) y[j0 + c] = beta == 0.f ? acc[c] : acc[c] + beta * y[j0 + c];
  }
}

void SgemvWithPackedB(const float* x, const SgemmPackedB& b, float beta, float* y, ThreadPool* pool) {
  const int64_t N = b.cols(), K = b.depth();
  if (N <= 0) return;
  const int64_t groups = (N + 63) / 64;
  if (pool && pool->num_threads() > 1 && K * N >= (int64_t{1} << 16) && groups > 1) {
    // One fixed share of the columns per thread, not chunks claimed as threads free up: a
    // recurrent cell runs this every step, and each share of the weights then stays in the cache
    // of the core that read it the step before (an LSTM 512's R is 4 MB).
    const int64_t shares = std::min<int64_t>(pool->num_threads(), groups);
    pool->ParallelFor(shares, 1, [&](int64_t s0, int64_t s1) {
      SgemvColumnsWithPackedB(x, b, beta, y, s0 * groups / shares, s1 * groups / shares);
    });
  } else {
    SgemvColumnsWithPackedB(x, b, beta, y, 0, groups);
  }
}

void SgemmPackRows(const float* B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
  if (nr == 16) {
    PackB<16>(false, B, ldb, k0, kc, j0, nc, dst);
  } else {
    PackB<8>(false, B, ldb, k0, kc, j0, nc, dst);
  }
}

void SgemmNaive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const float a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        s += static_cast<double>(a) * b;
      }
      float& c = C[i * ldc + j];
      c = beta == 0.f ? static_cast<float>(alpha * s) : static_cast<float>(alpha * s + beta * c);
    }
  }
}

}  // namespace quantkit::kernels
