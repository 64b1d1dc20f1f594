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
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/thread_pool.h"

namespace quantkit::kernels {
namespace {

constexpr int64_t kKC = 256;
constexpr int64_t kMC = 120;   // multiple of every MR used below (6, 4)
constexpr int64_t kNC = 3072;  // multiple of every NR used below (16, 8)

using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             float alpha, float beta);

std::atomic<bool> g_force_portable{false};

inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

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
      if (m == MR) {
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
  for (int64_t jr = 0; jr < nc; jr += NR) {
    const int64_t n = std::min<int64_t>(NR, nc - jr);
    float* d = dst + jr * kc;
    if (!trans) {  // op(B)(k, j) = B[k * ldb + j]: each k is a contiguous run of columns
      for (int64_t k = 0; k < kc; ++k) {
        const float* s = B + (k0 + k) * ldb + j0 + jr;
        float* dk = d + k * NR;
        if (n == NR) {
          std::memcpy(dk, s, NR * sizeof(float));
        } else {
          int64_t c = 0;
          for (; c < n; ++c) dk[c] = s[c];
          for (; c < NR; ++c) dk[c] = 0.f;
        }
      }
    } else {  // op(B)(k, j) = B[j * ldb + k]
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
}

// ---- Micro-kernels: c[MR x NR] = alpha * sum_k a[k][r] * b[k][c] + beta * c (beta 0: no read).

typedef float v4f __attribute__((vector_size(16)));

template <int MR, int NR>
void MicroKernelPortable(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                         float alpha, float beta) {
  constexpr int NV = NR / 4;
  v4f acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = v4f{0.f, 0.f, 0.f, 0.f};
  for (int64_t k = 0; k < kc; ++k) {
    v4f bv[NV];
    std::memcpy(bv, b + k * NR, sizeof(bv));
    for (int r = 0; r < MR; ++r) {
      const float ar = a[k * MR + r];
      for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* cr = c + r * ldc;
    for (int v = 0; v < NV; ++v) {
      v4f out = acc[r][v] * alpha;
      if (beta != 0.f) {
        v4f old;
        std::memcpy(&old, cr + v * 4, sizeof(old));
        out += old * beta;
      }
      std::memcpy(cr + v * 4, &out, sizeof(out));
    }
  }
}

__attribute__((target("avx2,fma"))) void MicroKernelAvx2_6x16(int64_t kc, const float* a,
                                                              const float* b, float* c, int64_t ldc,
                                                              float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define QK_SGEMM_STEP(A, B)                                       \
  {                                                               \
    const __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8); \
    __m256 av = _mm256_broadcast_ss(A + 0);                       \
    c00 = _mm256_fmadd_ps(av, b0, c00);                           \
    c01 = _mm256_fmadd_ps(av, b1, c01);                           \
    av = _mm256_broadcast_ss(A + 1);                              \
    c10 = _mm256_fmadd_ps(av, b0, c10);                           \
    c11 = _mm256_fmadd_ps(av, b1, c11);                           \
    av = _mm256_broadcast_ss(A + 2);                              \
    c20 = _mm256_fmadd_ps(av, b0, c20);                           \
    c21 = _mm256_fmadd_ps(av, b1, c21);                           \
    av = _mm256_broadcast_ss(A + 3);                              \
    c30 = _mm256_fmadd_ps(av, b0, c30);                           \
    c31 = _mm256_fmadd_ps(av, b1, c31);                           \
    av = _mm256_broadcast_ss(A + 4);                              \
    c40 = _mm256_fmadd_ps(av, b0, c40);                           \
    c41 = _mm256_fmadd_ps(av, b1, c41);                           \
    av = _mm256_broadcast_ss(A + 5);                              \
    c50 = _mm256_fmadd_ps(av, b0, c50);                           \
    c51 = _mm256_fmadd_ps(av, b1, c51);                           \
  }
  int64_t k = 0;
  for (; k + 4 <= kc; k += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(b + 256), _MM_HINT_T0);
    QK_SGEMM_STEP(a, b);
    QK_SGEMM_STEP(a + 6, b + 16);
    QK_SGEMM_STEP(a + 12, b + 32);
    QK_SGEMM_STEP(a + 18, b + 48);
    a += 24;
    b += 64;
  }
  for (; k < kc; ++k) {
    QK_SGEMM_STEP(a, b);
    a += 6;
    b += 16;
  }
#undef QK_SGEMM_STEP
  const __m256 va = _mm256_set1_ps(alpha);
  __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (beta == 0.f) {
    for (int r = 0; r < 6; ++r) {
      _mm256_storeu_ps(c + r * ldc, _mm256_mul_ps(acc[r][0], va));
      _mm256_storeu_ps(c + r * ldc + 8, _mm256_mul_ps(acc[r][1], va));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
    for (int r = 0; r < 6; ++r) {
      float* cr = c + r * ldc;
      _mm256_storeu_ps(cr, _mm256_fmadd_ps(acc[r][0], va, _mm256_mul_ps(_mm256_loadu_ps(cr), vb)));
      _mm256_storeu_ps(cr + 8,
                       _mm256_fmadd_ps(acc[r][1], va, _mm256_mul_ps(_mm256_loadu_ps(cr + 8), vb)));
    }
  }
}

// ---- Serial blocked driver for one sub-problem.

template <int MR, int NR, MicroKernel KERNEL>
void GemmSerial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static_assert(kMC % MR == 0 && kNC % NR == 0, "block sizes must be multiples of the tile");
  float* bp = tls_pack_b.Get(static_cast<size_t>(std::min(kKC, K) * RoundUp(std::min(kNC, N), NR)));
  float* ap = tls_pack_a.Get(static_cast<size_t>(RoundUp(std::min(kMC, M), MR) * std::min(kKC, K)));
  alignas(64) float tile[MR * NR];
  for (int64_t jc = 0; jc < N; jc += kNC) {
    const int64_t nc = std::min(kNC, N - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.f;
      PackB<NR>(tb, B, ldb, pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += kMC) {
        const int64_t mc = std::min(kMC, M - ic);
        PackA<MR>(ta, A, lda, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t n = std::min<int64_t>(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t m = std::min<int64_t>(MR, mc - ir);
            float* c = C + (ic + ir) * ldc + jc + jr;
            if (m == MR && n == NR) {
              KERNEL(kc, ap + ir * kc, bp + jr * kc, c, ldc, alpha, beta_k);
            } else {
              KERNEL(kc, ap + ir * kc, bp + jr * kc, tile, NR, 1.f, 0.f);
              for (int64_t r = 0; r < m; ++r) {
                float* cr = c + r * ldc;
                const float* tr = tile + r * NR;
                if (beta_k == 0.f) {
                  for (int64_t j = 0; j < n; ++j) cr[j] = alpha * tr[j];
                } else {
                  for (int64_t j = 0; j < n; ++j) cr[j] = alpha * tr[j] + beta_k * cr[j];
                }
              }
            }
          }
        }
      }
    }
  }
}

using SerialFn = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);

struct GemmImpl {
  int mr, nr;
  SerialFn serial;
  const char* name;
};

bool HasAvx2Fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}

GemmImpl SelectImpl() {
  if (HasAvx2Fma() && !g_force_portable.load(std::memory_order_relaxed)) {
    return {6, 16, &GemmSerial<6, 16, &MicroKernelAvx2_6x16>, "avx2_fma_6x16"};
  }
  return {4, 8, &GemmSerial<4, 8, &MicroKernelPortable<4, 8>>, "generic_4x8"};
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

// y[j * incy] = alpha * sum_k v[k] * X[k*ldx + j] + beta * y[j * incy], j in [0, cols).
void AxpyCols(int64_t cols, int64_t K, float alpha, const float* X, int64_t ldx, const float* v,
              float beta, float* y, int64_t incy, ThreadPool* pool) {
  constexpr int64_t kChunk = 512;
  auto body = [&](int64_t cb, int64_t ce) {
    alignas(64) float acc[kChunk];
    for (int64_t j0 = cb * kChunk; j0 < std::min(cols, ce * kChunk); j0 += kChunk) {
      const int64_t w = std::min(kChunk, cols - j0);
      for (int64_t j = 0; j < w; ++j) acc[j] = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float vk = v[k];
        const float* xr = X + k * ldx + j0;
        for (int64_t j = 0; j < w; ++j) acc[j] += vk * xr[j];
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

void SgemmForcePortable(bool force) { g_force_portable.store(force); }

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
  const GemmImpl impl = SelectImpl();
  const int threads = pool ? pool->num_threads() : 1;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  if (threads <= 1 || flops < 4e6) {
    impl.serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Grid of tm x tn independent tasks; pick the split that minimises the largest task (in
  // micro-tiles) plus a packing-overhead term, using at most `threads` tasks (enough work each).
  const int64_t mp = (M + impl.mr - 1) / impl.mr, np = (N + impl.nr - 1) / impl.nr;
  const int64_t max_tasks = std::max<int64_t>(1, std::min<int64_t>(threads, static_cast<int64_t>(flops / 2e6)));
  int64_t best_tm = 1, best_tn = 1;
  double best_cost = -1;
  for (int64_t tm = 1; tm <= max_tasks; ++tm) {
    const int64_t tn = max_tasks / tm;
    if (tm > mp || tn > np) continue;
    const double tile_m = static_cast<double>((mp + tm - 1) / tm) * impl.mr;
    const double tile_n = static_cast<double>((np + tn - 1) / tn) * impl.nr;
    const double cost = tile_m * tile_n * static_cast<double>(K) + 0.5 * (tile_m + tile_n) * static_cast<double>(K);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best_tm = tm;
      best_tn = tn;
    }
  }
  const int64_t rows_per = (mp + best_tm - 1) / best_tm * impl.mr;
  const int64_t cols_per = (np + best_tn - 1) / best_tn * impl.nr;
  const int64_t tm = (M + rows_per - 1) / rows_per, tn = (N + cols_per - 1) / cols_per;
  pool->ParallelFor(tm * tn, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t i0 = (t / tn) * rows_per, j0 = (t % tn) * cols_per;
      const int64_t m = std::min(rows_per, M - i0), n = std::min(cols_per, N - j0);
      const float* a = trans_a ? A + i0 : A + i0 * lda;
      const float* bb = trans_b ? B + j0 * ldb : B + j0;
      impl.serial(trans_a, trans_b, m, n, K, alpha, a, lda, bb, ldb, beta, C + i0 * ldc + j0, ldc);
    }
  });
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
