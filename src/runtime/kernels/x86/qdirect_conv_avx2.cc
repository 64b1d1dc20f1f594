// AVX2 build of kernels::QDirectConv: strips of 16 pixels. Each strip's inputs become a panel
// of channel pairs, (x[2q, p], x[2q + 1, p]) as int16 for p = 0..15 (two vectors per pair: the
// 16-byte rows interleaved with punpcklbw/punpckhbw, then widened); tiles of up to 6 output
// channels broadcast their (w[m, 2q], w[m, 2q + 1]) pair and multiply it with vpmaddwd, which
// adds the two products in int32 exactly (|w - w_zp| <= 255, 0 <= x <= 255), 12 accumulators per
// tile; vpaddd wraps as the definition's uint32 sums do. Then acc - x_zp * sum(w) + bias,
// requantized by RequantizeEight (the GEMM epilogue's operations), or when every multiplier is
// below 1 by the saturating packs of SaturatedBytesOfSixteen: the same bytes.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/kernels/qdirect_conv.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::qdirect {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

constexpr int64_t kStrip = 16;

struct Requant {
  __m256 lo, hi;
  __m256i zp;
  x86::SaturatingBytes bytes;  // when every row's multiplier allows it (x86::SaturatingBytesOk)
  bool saturating;
  const int32_t* correction;  // per output channel m: bias - x_zp * sum(w), wrapping (uint32)
  const float* multiplier;
  uint8_t* y;
  int64_t ld_y;
  // Float output (QDirectConvArgs::y_float): y_float[m][ld_y] = float(acc + correction) * scale[m]
  // (+ bias[m]) (clamped).
  float* y_float;
  const float* y_scale;
  const float* y_bias;
  bool y_clamp;
  __m256 clamp_lo, clamp_hi;
};

// 16 bytes where bytes [j, 16) are all ones: kRamp + 16 - j.
alignas(32) constexpr int8_t kRamp[32] = {0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
                                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};

// Input k's bytes for the strip of pixels [p, p + n) (n <= 16; the rest zeros), as stored.
// Pointwise: one run of the plane. 2-D (taps): a strip may span output rows (oy, ox) onwards;
// each row's run starts at its own place in the padded plane: a full strip is the first row's
// 16 bytes with each later row's run blended in from where it lies (the loads stay inside the
// plane: a strip that reaches a next output row reads into the next padded rows, which exist);
// a partial strip (an image's last) is copied run by run.
QK_AVX2_TARGET inline __m128i InputRow(const QDirectConvArgs& a, const uint8_t* x, int64_t k, int64_t p, int64_t n,
                                       int64_t oy, int64_t ox) {
  if (!a.taps) {
    const uint8_t* src = x + k * a.ld + p;
    if (n == kStrip) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    alignas(16) uint8_t tail[kStrip] = {};
    std::memcpy(tail, src, static_cast<size_t>(n));
    return _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
  }
  const uint8_t* base = x + a.taps[k];
  const int64_t out_w = a.out_w, in_w = a.in_w;
  if (n == kStrip) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + oy * in_w + ox));
    for (int64_t j = out_w - ox, r = oy + 1; j < kStrip; j += out_w, ++r) {
      const __m128i later = _mm_loadu_si128(reinterpret_cast<const __m128i*>(base + r * in_w - j));
      v = _mm_blendv_epi8(v, later, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kRamp + kStrip - j)));
    }
    return v;
  }
  alignas(16) uint8_t tail[kStrip] = {};
  for (int64_t j = 0, r = oy, c = ox; j < n; j += out_w - c, ++r, c = 0) {
    std::memcpy(tail + j, base + r * in_w + c, static_cast<size_t>(std::min(n - j, out_w - c)));
  }
  return _mm_load_si128(reinterpret_cast<const __m128i*>(tail));
}

// The panel of pixels [p, p + n) (n <= 16; the rest zeros), inputs as uint8 (int8 + 128).
QK_AVX2_TARGET void FillPanel(const QDirectConvArgs& a, int64_t p, int64_t n, int16_t* panel) {
  const QDirectConvWeights& w = *a.w;
  const auto* x = static_cast<const uint8_t*>(a.x);
  const __m128i flip = _mm_set1_epi8(a.x_signed ? static_cast<char>(0x80) : 0);
  const int64_t oy = a.taps ? p / a.out_w : 0, ox = a.taps ? p % a.out_w : 0;
  for (int64_t q = 0; q < w.k_pairs; ++q) {
    const __m128i r0 = _mm_xor_si128(InputRow(a, x, 2 * q, p, n, oy, ox), flip);
    // Past K: pairs with a zero weight.
    const __m128i r1 = 2 * q + 1 < w.K ? _mm_xor_si128(InputRow(a, x, 2 * q + 1, p, n, oy, ox), flip) : _mm_setzero_si128();
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + q * 32), _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(r0, r1)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + q * 32 + 16), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(r0, r1)));
  }
}

// StoreRows with float outputs: the GEMM path's float epilogue operations (convert, multiply by
// the channel's scale, add its bias, clamp as Clip: max(lo, v) then min(hi, v)).
__attribute__((target("avx2"))) void StoreRowsFloat(const Requant& rq, int64_t m0, int rows,
                                                    const int32_t (*acc)[kStrip], int64_t p, int64_t n) {
  const int32_t* correction = rq.correction;
  float* const y = rq.y_float + p;
  const int64_t ld_y = rq.ld_y;
  for (int r = 0; r < rows; ++r) {
    const int64_t m = m0 + r;
    const __m256i c = _mm256_set1_epi32(correction[m]);
    const __m256 scale = _mm256_set1_ps(rq.y_scale[m]);
    __m256 v[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i sum = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(acc[r] + 8 * h)), c);
      v[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), scale);
      if (rq.y_bias) v[h] = _mm256_add_ps(v[h], _mm256_set1_ps(rq.y_bias[m]));
      if (rq.y_clamp) v[h] = _mm256_min_ps(rq.clamp_hi, _mm256_max_ps(rq.clamp_lo, v[h]));
    }
    float* dst = y + m * ld_y;
    if (n == kStrip) {
      _mm256_storeu_ps(dst, v[0]);
      _mm256_storeu_ps(dst + 8, v[1]);
    } else {
      alignas(32) float tail[kStrip];
      _mm256_store_ps(tail, v[0]);
      _mm256_store_ps(tail + 8, v[1]);
      std::memcpy(dst, tail, static_cast<size_t>(n) * sizeof(float));
    }
  }
}

// The tile's epilogue for rows m0 .. m0 + rows (their sums in acc[r][16]): acc - x_zp * sum(w) +
// bias, requantized, n bytes stored at pixel p. A function of its own, called once per tile with
// the sums in memory: inlined into the tile (or called per row with the sums in registers), GCC
// 12 kept the tile loop's accumulators on the stack, or paid a call per row (13% of MobileNetV2
// static in the calls).
__attribute__((target("avx2"), noinline)) void StoreRows(const Requant& rq, int64_t m0, int rows,
                                                         const int32_t (*acc)[kStrip], int64_t p, int64_t n) {
  if (rq.y_float) return StoreRowsFloat(rq, m0, rows, acc, p, n);
  // Locals: the byte stores could alias rq's fields for the compiler (reloaded every row).
  const int32_t* correction = rq.correction;
  const float* multiplier = rq.multiplier;
  uint8_t* const y = rq.y + p;
  const int64_t ld_y = rq.ld_y;
  const bool saturating = rq.saturating;
  for (int r = 0; r < rows; ++r) {
    const int64_t m = m0 + r;
    const __m256i c = _mm256_set1_epi32(correction[m]);
    const __m256 mult = _mm256_set1_ps(multiplier[m]);
    const __m256i v0 = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(acc[r])), c);
    const __m256i v1 = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(acc[r] + 8)), c);
    __m128i bytes;
    if (saturating) {
      bytes = x86::SaturatedBytesOfSixteen<false>(x86::ScaleAndRound(v0, mult), x86::ScaleAndRound(v1, mult), rq.bytes);
    } else {
      bytes = x86::LowBytesOfSixteen(x86::RequantizeEight(v0, mult, rq.lo, rq.hi, rq.zp),
                                     x86::RequantizeEight(v1, mult, rq.lo, rq.hi, rq.zp));
    }
    uint8_t* dst = y + m * ld_y;
    if (n == kStrip) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), bytes);
    } else {
      alignas(16) uint8_t tail[kStrip];
      _mm_store_si128(reinterpret_cast<__m128i*>(tail), bytes);
      std::memcpy(dst, tail, static_cast<size_t>(n));
    }
  }
}

// R output channels from m0 over the panel; n pixels of the strip at p are stored. The 12
// accumulators are named variables (as in qgemm_avx2.cc's tile: an array of them was kept on the
// stack, a store per accumulator per step); not inlined into the strip loop either.
template <int R>
__attribute__((target("avx2"), noinline)) void Tile(const QDirectConvArgs& a, const Requant& rq, const int16_t* panel, int64_t m0, int64_t p,
                         int64_t n) {
  const int64_t k_pairs = a.w->k_pairs, lw = 2 * k_pairs;
  const int16_t* w0 = a.w->w.data() + m0 * lw;
  const int16_t* w1 = w0 + (R > 1 ? lw : 0);
  const int16_t* w2 = w0 + (R > 2 ? 2 * lw : 0);
  const int16_t* w3 = w0 + (R > 3 ? 3 * lw : 0);
  const int16_t* w4 = w0 + (R > 4 ? 4 * lw : 0);
  const int16_t* w5 = w0 + (R > 5 ? 5 * lw : 0);
  const __m256i zero = _mm256_setzero_si256();
  __m256i c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
  __m256i c30 = zero, c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
  for (int64_t q = 0; q < k_pairs; ++q, panel += 32) {
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + 16));
#define QK_QPW_ROW(r) \
  if constexpr (R > r) x86::AddPairProducts(c##r##0, c##r##1, x0, x1, w##r + 2 * q);
    QK_QPW_ROW(0)
    QK_QPW_ROW(1)
    QK_QPW_ROW(2)
    QK_QPW_ROW(3)
    QK_QPW_ROW(4)
    QK_QPW_ROW(5)
#undef QK_QPW_ROW
  }
  alignas(32) int32_t acc[6][kStrip];
  const __m256i rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < R; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[r]), rows[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[r] + 8), rows[r][1]);
  }
  StoreRows(rq, m0, R, acc, p, n);
}

}  // namespace

QK_AVX2_TARGET void RunAvx2(const QDirectConvArgs& a, int64_t p0, int64_t p1, int16_t* panel) {
  float lo, hi;
  QDirectConvBounds(a, &lo, &hi);
  Requant rq;
  rq.lo = _mm256_set1_ps(lo);
  rq.hi = _mm256_set1_ps(hi);
  rq.zp = _mm256_set1_epi32(a.y_zero_point);
  rq.bytes = x86::MakeSaturatingBytes(a.y_zero_point, static_cast<int32_t>(lo) + a.y_zero_point,
                                      static_cast<int32_t>(hi) + a.y_zero_point, a.y_signed);
  // The rows' corrections once per call (they were recomputed per row of every 16-pixel strip).
  const int64_t M = a.m_end < 0 ? a.w->M : a.m_end;
  const uint32_t x_zp = static_cast<uint32_t>(a.x_zero_point + (a.x_signed ? 128 : 0));
  thread_local std::vector<int32_t> correction;
  correction.resize(static_cast<size_t>(M));
  rq.saturating = true;
  for (int64_t m = a.m_begin; m < M; ++m) {
    correction[static_cast<size_t>(m)] = static_cast<int32_t>((a.bias ? static_cast<uint32_t>(a.bias[m]) : 0u) -
                                                              x_zp * static_cast<uint32_t>(a.w->sums[static_cast<size_t>(m)]));
    rq.saturating = rq.saturating && !a.y_float && x86::SaturatingBytesOk(a.multiplier[m]);
  }
  rq.correction = correction.data();
  rq.multiplier = a.multiplier;
  rq.y = static_cast<uint8_t*>(a.y);
  rq.ld_y = a.taps ? a.ld_y : a.ld;
  rq.y_float = a.y_float;
  rq.y_scale = a.y_scale;
  rq.y_bias = a.y_bias;
  rq.y_clamp = a.y_clamp;
  rq.clamp_lo = _mm256_set1_ps(a.y_clamp_lo);
  rq.clamp_hi = _mm256_set1_ps(a.y_clamp_hi);
  for (int64_t p = p0; p < p1;) {
    // A strip may span output rows of a 2-D conv (InputRow): no partial strips at row ends.
    const int64_t n = std::min(kStrip, p1 - p);
    FillPanel(a, p, n, panel);
    int64_t m = a.m_begin;
    for (; m + 6 <= M; m += 6) Tile<6>(a, rq, panel, m, p, n);
    switch (M - m) {
      case 5: Tile<5>(a, rq, panel, m, p, n); break;
      case 4: Tile<4>(a, rq, panel, m, p, n); break;
      case 3: Tile<3>(a, rq, panel, m, p, n); break;
      case 2: Tile<2>(a, rq, panel, m, p, n); break;
      case 1: Tile<1>(a, rq, panel, m, p, n); break;
      default: break;
    }
    p += n;
  }
}

}  // namespace quantkit::kernels::qdirect
