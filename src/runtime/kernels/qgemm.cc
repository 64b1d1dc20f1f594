// Integer GEMM driver: ISA choice, packing, blocking, threading and the epilogue. The per-ISA
// micro-kernels only compute raw byte dot products; everything that defines the result (zero-point
// corrections, rescale, bias) happens here, once, in portable code.
#include "runtime/kernels/qgemm.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <type_traits>

#include "core/thread_pool.h"
#include "runtime/kernels/qgemm_epilogue.h"
#include "runtime/kernels/qgemm_internal.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels {

using qgemm::kKStep;
using qgemm::kPanelCols;

const char* QGemmIsaName(QGemmIsa isa) {
  switch (isa) {
    case QGemmIsa::kRef: return "ref";
    case QGemmIsa::kAvx2: return "avx2";
    case QGemmIsa::kAvx512Vnni: return "avx512vnni";
    case QGemmIsa::kAmx: return "amx";
  }
  return "?";
}

namespace {

// AMX needs the CPU's AMX-TILE and AMX-INT8 (CPUID leaf 7), the OS saving tile state (XCR0 bits
// 17-18), and Linux's per-process permission to use the tile data (arch_prctl
// ARCH_REQ_XCOMP_PERM; refused e.g. when a thread's signal stack is too small for the larger
// signal frame). Asked once.
bool AmxUsable() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool usable = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool tile = (edx >> 24) & 1, int8 = (edx >> 25) & 1;
    if (!tile || !int8) return false;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return false;  // OSXSAVE
    uint32_t xcr0_lo = 0, xcr0_hi = 0;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

}  // namespace

bool QGemmIsaSupported(QGemmIsa isa) {
  __builtin_cpu_init();
  switch (isa) {
    case QGemmIsa::kRef: return true;
    case QGemmIsa::kAvx2: return __builtin_cpu_supports("avx2");
    case QGemmIsa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case QGemmIsa::kAmx: return QGemmIsaSupported(QGemmIsa::kAvx512Vnni) && AmxUsable();  // tails run VNNI
  }
  return false;
}

namespace {

struct IsaChoice {
  QGemmIsa isa = QGemmIsa::kRef;
  std::string log;
};

const IsaChoice& Choice() {
  static const IsaChoice choice = [] {
    IsaChoice c;
    const QGemmIsa order[] = {QGemmIsa::kAmx, QGemmIsa::kAvx512Vnni, QGemmIsa::kAvx2, QGemmIsa::kRef};
    const char* env = std::getenv("QUANTKIT_ISA");
    const std::string forced = env ? env : "";
    bool chosen = false;
    for (QGemmIsa isa : order) {
      std::string why;
      if (chosen) {
        why = "not needed (a better kernel was chosen)";
      } else if (!QGemmIsaSupported(isa)) {
        why = "rejected: this CPU lacks the instructions";
      } else if (!forced.empty() && forced != QGemmIsaName(isa)) {
        why = fmt::format("skipped: QUANTKIT_ISA={}", forced);
      } else {
        why = forced.empty() ? "chosen (best supported)" : "chosen (QUANTKIT_ISA)";
        c.isa = isa;
        chosen = true;
      }
      c.log += fmt::format("int8 gemm {:<10} {}\n", QGemmIsaName(isa), why);
    }
    if (!chosen) {
      c.log += fmt::format("int8 gemm ref        chosen (fallback: QUANTKIT_ISA={} is unknown or unsupported here)\n",
                           forced);
    }
    return c;
  }();
  return choice;
}

qgemm::MicroKernel KernelFor(QGemmIsa isa) {
  switch (isa) {
    case QGemmIsa::kAmx: return qgemm::AmxMicroKernel();
    case QGemmIsa::kAvx512Vnni: return qgemm::Avx512VnniMicroKernel();
    case QGemmIsa::kAvx2: return qgemm::Avx2MicroKernel();
    case QGemmIsa::kRef: break;
  }
  return qgemm::RefMicroKernel();
}

int64_t RoundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

QGemmIsa DefaultQGemmIsa() { return Choice().isa; }
std::string DescribeQGemmIsaChoice() { return Choice().log; }

std::shared_ptr<const PackedQWeights> PackQWeights(const void* b, bool b_is_signed, bool trans_b, int64_t K,
                                                   int64_t N, int64_t ldb, const std::vector<int32_t>& b_zero_points,
                                                   QGemmIsa isa) {
  auto p = std::make_shared<PackedQWeights>();
  p->isa = QGemmIsaSupported(isa) ? isa : QGemmIsa::kRef;
  p->K = K;
  p->N = N;
  p->k_padded = RoundUp(std::max<int64_t>(K, 1), kKStep);
  // amx: K padded to whole 64-k tiles (zeros) when that costs at most half again, so no k tail is
  // left to the VNNI kernel (ResNet's first conv: K 147 -> 192, not 128 by tiles + 20 by VNNI).
  if (p->isa == QGemmIsa::kAmx && RoundUp(K, 64) * 2 <= p->k_padded * 3) p->k_padded = RoundUp(K, 64);
  p->n_panels = (N + kPanelCols - 1) / kPanelCols;
  const int32_t shift = b_is_signed ? 0 : 128;
  auto stored = [&](int64_t k, int64_t n) -> int32_t {  // b' = b - shift, in [-128, 127]
    const int64_t idx = trans_b ? n * ldb + k : k * ldb + n;
    return b_is_signed ? static_cast<const int8_t*>(b)[idx] : static_cast<int32_t>(static_cast<const uint8_t*>(b)[idx]) - shift;
  };
  p->col_sums.assign(static_cast<size_t>(N), 0);
  p->col_offset.assign(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    uint32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += static_cast<uint32_t>(stored(k, n));
    p->col_sums[n] = static_cast<int32_t>(sum);
    const int32_t zp = b_zero_points.size() == 1 ? b_zero_points[0] : b_zero_points[n];
    p->col_offset[n] = shift - zp;
  }
  p->needs_row_sums = std::any_of(p->col_offset.begin(), p->col_offset.end(), [](int32_t o) { return o != 0; });
  const int64_t panel_elems = p->k_padded * kPanelCols;
  if (p->isa == QGemmIsa::kAvx2) {
    // Panel layout: for each k pair, 16 columns x 2 int16 ([b'(2p, j), b'(2p+1, j)]).
    p->words.assign(static_cast<size_t>(p->n_panels * panel_elems), 0);
    for (int64_t panel = 0; panel < p->n_panels; ++panel) {
      int16_t* dst = p->words.data() + panel * panel_elems;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < kPanelCols && panel * kPanelCols + j < N; ++j)
          dst[(k / 2) * 2 * kPanelCols + j * 2 + (k % 2)] = static_cast<int16_t>(stored(k, panel * kPanelCols + j));
    }
  } else {
    // Panel layout: for each group of 4 k, 16 columns x 4 bytes ([b'(4q..4q+3, j)]).
    p->bytes.assign(static_cast<size_t>(p->n_panels * panel_elems), 0);
    for (int64_t panel = 0; panel < p->n_panels; ++panel) {
      int8_t* dst = p->bytes.data() + panel * panel_elems;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < kPanelCols && panel * kPanelCols + j < N; ++j)
          dst[(k / 4) * 4 * kPanelCols + j * 4 + (k % 4)] = static_cast<int8_t>(stored(k, panel * kPanelCols + j));
    }
  }
  return p;
}

namespace {

// Storage layout: bytes [M * kp], then (avx2) words [M * kp] int16, then row sums [M] int32, each
// part starting on a 64-byte boundary.
int64_t Align64(int64_t n) { return (n + 63) / 64 * 64; }

}  // namespace

// Elements past the last row (bytes, and the avx2 layout's words) that packers may write
// (FillConvRunsBytes' / FillConvRunsAvx2's 8-element stores); the rows themselves are written in
// order, so a store spilling into the next row is overwritten there.
constexpr int64_t kWordsSlack = 8;

int64_t PackedQActivationsBytes(int64_t M, const PackedQWeights& b) {
  const int64_t elems = M * b.k_padded;
  return Align64(elems + kWordsSlack) + (b.isa == QGemmIsa::kAvx2 ? Align64(elems * 2 + kWordsSlack * 2) : 0) + M * 4;
}

namespace {

// Sizes, and the spans into the storage (allocated on the heap if nobody reserved enough).
void PrepareStorage(int64_t M, int64_t K, int32_t zero_point, const PackedQWeights& b, PackedQActivations* out) {
  const int64_t kp = b.k_padded;
  out->M = M;
  out->K = K;
  out->lda = kp;
  out->zero_point = zero_point;
  const bool widen = b.isa == QGemmIsa::kAvx2;
  const int64_t need = PackedQActivationsBytes(M, b);
  if (static_cast<int64_t>(out->storage.nbytes()) < need) {  // nobody reserved (enough): the heap
    auto t = Tensor::CreateUninitialized(DType::kUInt8, {need}, DefaultAllocator(), "packed activations");
    if (!t.ok()) throw std::bad_alloc();  // as the std::vector this replaces
    out->storage = std::move(t).value();
  }
  auto* base = static_cast<uint8_t*>(out->storage.raw_data());
  out->bytes = {base, static_cast<size_t>(M * kp)};
  int64_t offset = Align64(M * kp + kWordsSlack);
  if (widen) {
    out->words = {reinterpret_cast<int16_t*>(base + offset), static_cast<size_t>(M * kp)};
    offset += Align64(M * kp * 2 + kWordsSlack * 2);
  } else {
    out->words = {};
  }
  out->row_sums = {reinterpret_cast<int32_t*>(base + offset), static_cast<size_t>(M)};
}

// Shared tail of the packers: zero padding, row sums and the avx2 int16 copy. `fill_row` writes
// the K uint8 values of row m.
template <typename FillRow>
void PackRows(int64_t M, int64_t K, int32_t zero_point, const PackedQWeights& b, PackedQActivations* out,
              FillRow&& fill_row) {
  PrepareStorage(M, K, zero_point, b, out);
  const int64_t kp = b.k_padded;
  const bool widen = b.isa == QGemmIsa::kAvx2;
  for (int64_t m = 0; m < M; ++m) {
    uint8_t* dst = out->bytes.data() + m * kp;
    fill_row(m, dst);
    std::memset(dst + K, 0, static_cast<size_t>(kp - K));
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += dst[k];
    out->row_sums[m] = sum;
    if (widen) {
      int16_t* w = out->words.data() + m * kp;
      for (int64_t k = 0; k < kp; ++k) w[k] = dst[k];
    }
  }
}

}  // namespace

void PackQActivations(const void* a, bool a_is_signed, int64_t M, int64_t K, int64_t lda, int32_t zero_point,
                      const PackedQWeights& b, PackedQActivations* out) {
  PackRows(M, K, a_is_signed ? zero_point + 128 : zero_point, b, out, [&](int64_t m, uint8_t* dst) {
    const uint8_t* src = static_cast<const uint8_t*>(a) + m * lda;
    if (a_is_signed) {
      for (int64_t k = 0; k < K; ++k) dst[k] = static_cast<uint8_t>(src[k] ^ 0x80);  // int8 + 128
    } else {
      std::memcpy(dst, src, static_cast<size_t>(K));
    }
  });
}

// Tiles of 16 rows x 16 k: 16 loads of 16 consecutive rows of one k (contiguous in A^T), a
// register transpose, then each row's 16 values stored (widened to int16 for avx2) and summed
// (psadbw). Edges one value at a time. For avx2 only `words` and `row_sums` are written.
void PackQActivationsTransposed(const void* a, bool a_is_signed, int64_t M, int64_t K, int64_t lda, int32_t zero_point,
                                const PackedQWeights& b, PackedQActivations* out) {
  const uint8_t flip = a_is_signed ? 0x80 : 0;  // int8 + 128
  PrepareStorage(M, K, a_is_signed ? zero_point + 128 : zero_point, b, out);
  const int64_t kp = b.k_padded;
  const bool words = b.isa == QGemmIsa::kAvx2;
  const auto* src = static_cast<const uint8_t*>(a);
  uint8_t* bytes = out->bytes.data();
  int16_t* wds = out->words.data();
  int32_t* sums = out->row_sums.data();
  auto put = [&](int64_t m, int64_t k, uint8_t v) {
    if (words) {
      wds[m * kp + k] = v;
    } else {
      bytes[m * kp + k] = v;
    }
  };
  int64_t m0 = 0;
#if defined(__SSE2__)
  const __m128i flip16 = _mm_set1_epi8(static_cast<char>(flip)), zero = _mm_setzero_si128();
  for (; m0 + 16 <= M; m0 += 16) {
    uint32_t tile_sums[16] = {};
    int64_t k0 = 0;
    for (; k0 + 16 <= K; k0 += 16) {
      __m128i x[16];
      for (int i = 0; i < 16; ++i) {
        x[i] = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k0 + i) * lda + m0)), flip16);
      }
      qgemm::Transpose16x16(x);  // x[j] = row m0 + j, k0 .. k0 + 15
      for (int j = 0; j < 16; ++j) {
        const int64_t at = (m0 + j) * kp + k0;
        if (words) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(wds + at), _mm_unpacklo_epi8(x[j], zero));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(wds + at + 8), _mm_unpackhi_epi8(x[j], zero));
        } else {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(bytes + at), x[j]);
        }
        const __m128i sad = _mm_sad_epu8(x[j], zero);  // two 64-bit partial sums
        tile_sums[j] += static_cast<uint32_t>(_mm_cvtsi128_si32(sad) + _mm_cvtsi128_si32(_mm_srli_si128(sad, 8)));
      }
    }
    if (k0 < K) {
      // The last K - k0 (< 16) values the same way, the missing k rows zeros: each row then stores
      // kp - k0 (<= 16) values, its tail and the padding zeros (K with 8 left over, e.g. 24 or 72
      // channels, went one value at a time: BlazeFace's 24-channel int8 convs spent as long here
      // as in the GEMM).
      __m128i x[16];
      for (int i = 0; i < 16; ++i) {
        x[i] = k0 + i < K
                   ? _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (k0 + i) * lda + m0)), flip16)
                   : zero;
      }
      qgemm::Transpose16x16(x);
      const int64_t n = kp - k0;
      for (int j = 0; j < 16; ++j) {
        const int64_t at = (m0 + j) * kp + k0;
        if (words) {
          alignas(16) int16_t w[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(w), _mm_unpacklo_epi8(x[j], zero));
          _mm_store_si128(reinterpret_cast<__m128i*>(w + 8), _mm_unpackhi_epi8(x[j], zero));
          std::memcpy(wds + at, w, static_cast<size_t>(n) * sizeof(int16_t));
        } else {
          alignas(16) uint8_t v[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(v), x[j]);
          std::memcpy(bytes + at, v, static_cast<size_t>(n));
        }
        const __m128i sad = _mm_sad_epu8(x[j], zero);
        tile_sums[j] += static_cast<uint32_t>(_mm_cvtsi128_si32(sad) + _mm_cvtsi128_si32(_mm_srli_si128(sad, 8)));
      }
    }  // else K is a multiple of 16, and so of kKStep: no padding
    for (int j = 0; j < 16; ++j) sums[m0 + j] = static_cast<int32_t>(tile_sums[j]);
  }
#endif
  for (int64_t m = m0; m < M; ++m) {
    uint32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      const uint8_t v = static_cast<uint8_t>(src[k * lda + m] ^ flip);
      put(m, k, v);
      sum += v;
    }
    sums[m] = static_cast<int32_t>(sum);
    for (int64_t k = K; k < kp; ++k) put(m, k, 0);
  }
}

namespace {

// The bytes form of qgemm::FillConvRunsAvx2: each run of `run` (<= 8) taps is one 8-byte load
// and store (the next run's store overwrites the excess; the last one's lands in the row's
// padding, the next row or the storage's slack), summed with psadbw on the run's bytes only.
uint32_t FillConvRunsBytes(const uint8_t* corner, const int64_t* seg_offsets, int64_t segments, int run, uint8_t flip,
                           bool sum, uint8_t* dst) {
  const uint64_t flip8 = uint64_t{flip} * 0x0101010101010101ull;
  const uint64_t keep = run >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * run)) - 1;
  uint64_t total = 0;
#if defined(__SSE2__)
  __m128i sums = _mm_setzero_si128();
#endif
  for (int64_t i = 0; i < segments; ++i, dst += run) {
    uint64_t v;
    std::memcpy(&v, corner + seg_offsets[i], 8);
    v ^= flip8;
    std::memcpy(dst, &v, 8);
    if (sum) {
#if defined(__SSE2__)
      sums = _mm_add_epi64(sums, _mm_sad_epu8(_mm_cvtsi64_si128(static_cast<int64_t>(v & keep)), _mm_setzero_si128()));
#else
      for (uint64_t w = v & keep; w; w >>= 8) total += w & 0xFF;
#endif
    }
  }
#if defined(__SSE2__)
  total = static_cast<uint64_t>(_mm_cvtsi128_si64(sums));
#endif
  return static_cast<uint32_t>(total);
}

// The rows of PackQActivationsConv2D in the element type the kernel reads (uint8 bytes, or the
// avx2 kernel's int16 words), with the row sums taken from the values as they are written: the
// sums never re-read the rows (re-reading many small fresh stores with vector loads stalls).
//
// A pixel whose window lies inside the image (most of them) reads its K taps at fixed offsets
// from the window's corner (`tap_offsets`, the same for every such pixel): one tight gather loop,
// or, with contiguous kernel rows (dilation_w 1, KW <= 8), one 8-byte load per (channel, kh) run
// (FillConvRunsAvx2 for the avx2 words; FillConvRunsBytes for the bytes, three 3-byte runs per
// store with qgemm::FillConvRuns3Bytes). Pixels whose window reaches into the padding take the
// per-row loop below.
template <typename E>
void FillConvRows(const uint8_t* x, const QConv2DShape& s, int64_t first_pixel, int64_t pixels, uint8_t flip,
                  uint8_t pad, int64_t kp, bool need_sums, E* rows, int32_t* row_sums) {
  const int64_t K = s.C * s.KH * s.KW;
  thread_local std::vector<int64_t> tap_offsets;
  tap_offsets.resize(static_cast<size_t>(K));
  for (int64_t c = 0, k = 0; c < s.C; ++c)
    for (int64_t kh = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw) tap_offsets[k++] = (c * s.H + kh * s.dilation_h) * s.W + kw * s.dilation_w;
  const int64_t* off = tap_offsets.data();
  // Runs: every KW-th tap offset starts one (tap_offsets is (c, kh, kw) ordered).
  constexpr bool kWords = std::is_same_v<E, int16_t>;
  const bool use_runs = s.dilation_w == 1 && s.KW <= 8;
  const bool three_runs = !kWords && QGemmIsaSupported(QGemmIsa::kAvx2);
  const int64_t segments = s.C * s.KH, input_bytes = s.C * s.H * s.W;
  thread_local std::vector<int64_t> run_offsets;
  if (use_runs) {
    run_offsets.resize(static_cast<size_t>(segments));
    for (int64_t i = 0; i < segments; ++i) run_offsets[i] = off[i * s.KW];
  }
  for (int64_t r = 0; r < pixels; ++r) {
    const int64_t m = first_pixel + r;
    const int64_t oh = m / s.OW, ow = m % s.OW;
    const int64_t ih0 = oh * s.stride_h - s.pad_top, iw0 = ow * s.stride_w - s.pad_left;
    E* dst = rows + r * kp;
    if (ih0 >= 0 && iw0 >= 0 && ih0 + (s.KH - 1) * s.dilation_h < s.H && iw0 + (s.KW - 1) * s.dilation_w < s.W) {
      const uint8_t* corner = x + ih0 * s.W + iw0;
      uint32_t sum = 0;
      int64_t k = 0;
      if constexpr (kWords) {
        if (use_runs) {
          // Every run may use the 8-word store (what passes a row's kp words lands in the next row,
          // written after, or in the storage's slack); the last few may not load 8 bytes.
          int64_t fast = segments;
          const int64_t corner_offset = ih0 * s.W + iw0;
          while (fast > 0 && corner_offset + run_offsets[fast - 1] + 8 > input_bytes) --fast;
          sum = qgemm::FillConvRunsAvx2(corner, run_offsets.data(), fast, static_cast<int>(s.KW), flip, need_sums, dst);
          k = fast * s.KW;
        }
      } else if (use_runs) {
        int64_t fast = segments;  // as above, for the bytes (8-byte loads and stores)
        const int64_t corner_offset = ih0 * s.W + iw0;
        while (fast > 0 && corner_offset + run_offsets[fast - 1] + 8 > input_bytes) --fast;
        int64_t grouped = 0;  // 3-wide kernels on a CPU with avx2: three runs per 16-byte store
        if (s.KW == 3 && three_runs) {
          grouped = fast / 3 * 3;
          sum = qgemm::FillConvRuns3Bytes(corner, run_offsets.data(), grouped / 3, flip, need_sums, dst);
        }
        sum += FillConvRunsBytes(corner, run_offsets.data() + grouped, fast - grouped, static_cast<int>(s.KW), flip,
                                 need_sums, dst + grouped * 3);
        k = fast * s.KW;
      }
      for (; k < K; ++k) {
        const uint8_t v = static_cast<uint8_t>(corner[off[k]] ^ flip);
        dst[k] = v;
        sum += v;
      }
      for (k = K; k < kp; ++k) dst[k] = 0;
      row_sums[r] = need_sums ? static_cast<int32_t>(sum) : 0;
      continue;
    }
    // The taps inside the input: kh in [kh_lo, kh_hi), kw in [kw_lo, kw_hi).
    int64_t kh_lo = 0, kh_hi = s.KH, kw_lo = 0, kw_hi = s.KW;
    while (kh_lo < s.KH && ih0 + kh_lo * s.dilation_h < 0) ++kh_lo;
    while (kh_hi > kh_lo && ih0 + (kh_hi - 1) * s.dilation_h >= s.H) --kh_hi;
    while (kw_lo < s.KW && iw0 + kw_lo * s.dilation_w < 0) ++kw_lo;
    while (kw_hi > kw_lo && iw0 + (kw_hi - 1) * s.dilation_w >= s.W) --kw_hi;
    const int64_t padded_taps = s.C * (s.KH * s.KW - (kh_hi - kh_lo) * (kw_hi - kw_lo));
    uint32_t sum = static_cast<uint32_t>(padded_taps) * pad;
    for (int64_t c = 0; c < s.C; ++c) {
      const uint8_t* xc = x + c * s.H * s.W;
      for (int64_t kh = 0; kh < s.KH; ++kh, dst += s.KW) {
        if (kh < kh_lo || kh >= kh_hi) {
          for (int64_t kw = 0; kw < s.KW; ++kw) dst[kw] = pad;
          continue;
        }
        const uint8_t* row = xc + (ih0 + kh * s.dilation_h) * s.W;
        for (int64_t kw = 0; kw < kw_lo; ++kw) dst[kw] = pad;
        for (int64_t kw = kw_lo; kw < kw_hi; ++kw) {
          const uint8_t v = static_cast<uint8_t>(row[iw0 + kw * s.dilation_w] ^ flip);
          dst[kw] = v;
          sum += v;
        }
        for (int64_t kw = kw_hi; kw < s.KW; ++kw) dst[kw] = pad;
      }
    }
    for (int64_t k = K; k < kp; ++k) rows[r * kp + k] = 0;
    row_sums[r] = static_cast<int32_t>(sum);
  }
}

}  // namespace

void PackQActivationsConv2D(const void* x, bool x_is_signed, const QConv2DShape& s, int64_t first_pixel,
                            int64_t pixels, int32_t zero_point, const PackedQWeights& b, PackedQActivations* out) {
  const uint8_t flip = x_is_signed ? 0x80 : 0;  // int8 + 128
  const int32_t stored_zp = x_is_signed ? zero_point + 128 : zero_point;
  const auto* xb = static_cast<const uint8_t*>(x);
  PrepareStorage(pixels, s.C * s.KH * s.KW, stored_zp, b, out);
  const auto pad = static_cast<uint8_t>(stored_zp);
  if (b.isa == QGemmIsa::kAvx2) {  // the avx2 kernel reads only the int16 words
    FillConvRows(xb, s, first_pixel, pixels, flip, pad, b.k_padded, b.needs_row_sums, out->words.data(),
                 out->row_sums.data());
  } else {
    FillConvRows(xb, s, first_pixel, pixels, flip, pad, b.k_padded, b.needs_row_sums, out->bytes.data(),
                 out->row_sums.data());
  }
}

void PackQActivationsFromFloat(const float* x, int64_t M, int64_t K, int64_t ldx, float scale, int32_t zero_point,
                               const PackedQWeights& b, PackedQActivations* out) {
  PackRows(M, K, zero_point, b, out, [&](int64_t m, uint8_t* dst) {
    if (scale == 0) {
      std::memset(dst, static_cast<int>(zero_point), static_cast<size_t>(K));  // all-zero input (scale 0)
    } else {
      rt::quant::QuantizeSpan<uint8_t>(x + m * ldx, K, scale, zero_point, dst);
    }
  });
}

namespace {


// Once per 64-row block (qgemm_epilogue.h): the portable build here, the avx2 build in
// x86/qgemm_avx2.cc; the same integer and float operations, so the same results.
void RequantizeRowRef(const int32_t* acc, int64_t cols, const int32_t* bias, const float* mult, int64_t mult_step,
                      float lo, float hi, int32_t zp, uint8_t* qrow) {
  qgemm::RequantizeRowPortable(acc, cols, bias, mult, mult_step, lo, hi, zp, qrow);
}

void EpilogueRef(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, int64_t m0, int rows,
                 int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr) {
  qgemm::Epilogue<&RequantizeRowRef>(a, b, out, m0, rows, n0, cols, raw, ldr);
}

}  // namespace

int64_t QGemmRowGranule(const PackedQWeights& b) { return KernelFor(b.isa).max_rows; }

void QGemm(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, ThreadPool* pool) {
  const qgemm::MicroKernel kernel = KernelFor(b.isa);
  const auto epilogue = QGemmIsaHasAvx512(b.isa)   ? &qgemm::EpilogueAvx512
                        : b.isa == QGemmIsa::kAvx2 ? &qgemm::EpilogueAvx2
                                                   : &EpilogueRef;
  const int64_t M = a.M, N = b.N;
  if (M == 0 || N == 0) return;
  // Work unit: a block of panels (columns) x a block of rows. Columns outermost keep a weight
  // block hot in cache while the rows stream by. A unit is up to 64 columns (several kernel
  // calls), so the epilogue's per-row work and the transposed store run over 64 columns at once.
  const int64_t panels_per_block = qgemm::kMaxEpilogueCols / kPanelCols;
  const int64_t col_blocks = (b.n_panels + panels_per_block - 1) / panels_per_block;
  const int64_t rows_per_block = qgemm::kRowBlock;
  const int64_t row_blocks = (M + rows_per_block - 1) / rows_per_block;
  const int64_t units = col_blocks * row_blocks;
  auto run = [&](int64_t begin, int64_t end) {
    constexpr int64_t ldr = qgemm::kMaxEpilogueCols;
    std::vector<int32_t> raw(static_cast<size_t>(qgemm::kRowBlock * ldr));
    if (kernel.enter) kernel.enter();
    for (int64_t u = begin; u < end; ++u) {
      const int64_t cb = u / row_blocks, rb = u % row_blocks;
      const int64_t first_panel = cb * panels_per_block;
      const int64_t block_panels = std::min(panels_per_block, b.n_panels - first_panel);
      const int64_t n0 = first_panel * kPanelCols;
      const int64_t cols = std::min<int64_t>(block_panels * kPanelCols, N - n0);
      const int64_t m_begin = rb * rows_per_block, m_end = std::min(M, m_begin + rows_per_block);
      // K in blocks of the kernel's k_block (raw sums accumulate across blocks), so the data one
      // block's calls reuse stays in L1: with weights reused most (panels outer) one kernel call's
      // panels while the row block's tiles pass over them; with activations reused most (the
      // amx kernel: rows outer) one call's rows while every panel group of the unit passes.
      for (int64_t k0 = 0; k0 < b.k_padded; k0 += kernel.k_block) {
        const int64_t kc = std::min(kernel.k_block, b.k_padded - k0);
        auto call = [&](int64_t p, int64_t m0) {
          const int panels = static_cast<int>(std::min<int64_t>(kernel.max_panels, block_panels - p));
          const int rows = static_cast<int>(std::min<int64_t>(kernel.max_rows, m_end - m0));
          kernel.fn(a, m0, rows, b, first_panel + p, panels, k0, kc, k0 > 0,
                    raw.data() + (m0 - m_begin) * ldr + p * kPanelCols, ldr);
        };
        if (kernel.rows_outer) {
          for (int64_t m0 = m_begin; m0 < m_end; m0 += kernel.max_rows)
            for (int64_t p = 0; p < block_panels; p += kernel.max_panels) call(p, m0);
        } else {
          for (int64_t p = 0; p < block_panels; p += kernel.max_panels)
            for (int64_t m0 = m_begin; m0 < m_end; m0 += kernel.max_rows) call(p, m0);
        }
      }
      epilogue(a, b, out, m_begin, static_cast<int>(m_end - m_begin), n0, cols, raw.data(), ldr);
    }
    if (kernel.leave) kernel.leave();
  };
  const double macs = static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(b.k_padded);
  if (pool && pool->num_threads() > 1 && macs > 1 << 18 && units > 1) {
    pool->ParallelFor(units, 1, run);
  } else {
    run(0, units);
  }
}

}  // namespace quantkit::kernels
