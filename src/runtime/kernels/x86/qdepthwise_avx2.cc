// The avx2 build of the quantized depthwise kernel (qdepthwise_internal.h), with the row
// accumulation in intrinsics: taps in pairs, their int16 runs interleaved and multiplied with
// vpmaddwd by the (w[t], w[t + 1]) pair, which adds the two products in int32 exactly
// (|x - x_zp| <= 255 and |w| <= 255: each product fits, their sum fits); then vpaddd wraps like
// the portable version. So the integers are the same. Rows are computed in whole blocks of 16
// columns (the plane and the row buffer have room for the block past the output width).
#include <immintrin.h>

#include <cstring>
#include <type_traits>

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

namespace {

// x - x_zp as int16 for the 16 (8) bytes at src.
template <typename TX>
QK_AVX2_TARGET inline __m256i Widen16(const TX* src, __m256i zp) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  return _mm256_sub_epi16(std::is_signed_v<TX> ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b), zp);
}
template <typename TX>
QK_AVX2_TARGET inline __m128i Widen8(const TX* src, __m256i zp) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src));
  return _mm_sub_epi16(std::is_signed_v<TX> ? _mm_cvtepi8_epi16(b) : _mm_cvtepu8_epi16(b), _mm256_castsi256_si128(zp));
}

// dst[i] = src[i] - zp for i < n: 16 per step, the last step overlapping the one before (the same
// values again) instead of a scalar tail; rows of 8 to 15 as two overlapping 8s.
template <typename TX>
QK_AVX2_TARGET void WidenRow(const TX* src, int64_t n, __m256i zp, int32_t x_zp, int16_t* dst) {
  if (n >= 16) {
    for (int64_t i = 0; i < n; i += 16) {
      if (i + 16 > n) i = n - 16;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), Widen16(src + i, zp));
    }
  } else if (n >= 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), Widen8(src, zp));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 8), Widen8(src + n - 8, zp));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int16_t>(static_cast<int32_t>(src[i]) - x_zp);
  }
}

// Stride 2: the pairs (src[2j], src[2j + 1]) for j < pairs to even[j] and odd[j], minus zp. The
// bytes of kPairs pairs (16, or 8 in the low half of the vector) read as 16-bit words: the low
// byte of each is the even value, the high byte the odd one. Overlapping last steps as WidenRow.
template <typename TX, int kPairs>
QK_AVX2_TARGET inline void SplitPairs(const TX* src, __m256i zp, int16_t* even, int16_t* odd) {
  const __m256i w = kPairs == 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))
                                 : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
  __m256i e, o;
  if constexpr (std::is_signed_v<TX>) {
    e = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);
    o = _mm256_srai_epi16(w, 8);
  } else {
    e = _mm256_and_si256(w, _mm256_set1_epi16(0xFF));
    o = _mm256_srli_epi16(w, 8);
  }
  e = _mm256_sub_epi16(e, zp);
  o = _mm256_sub_epi16(o, zp);
  if constexpr (kPairs == 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(even), e);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(odd), o);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(even), _mm256_castsi256_si128(e));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(odd), _mm256_castsi256_si128(o));
  }
}

template <typename TX>
QK_AVX2_TARGET void SplitRow(const TX* src, int64_t pairs, __m256i zp, int32_t x_zp, int16_t* even, int16_t* odd) {
  if (pairs >= 16) {
    for (int64_t j = 0; j < pairs; j += 16) {
      if (j + 16 > pairs) j = pairs - 16;
      SplitPairs<TX, 16>(src + 2 * j, zp, even + j, odd + j);
    }
  } else if (pairs >= 8) {
    SplitPairs<TX, 8>(src, zp, even, odd);
    SplitPairs<TX, 8>(src + 2 * (pairs - 8), zp, even + pairs - 8, odd + pairs - 8);
  } else {
    for (int64_t j = 0; j < pairs; ++j) {
      even[j] = static_cast<int16_t>(static_cast<int32_t>(src[2 * j]) - x_zp);
      odd[j] = static_cast<int16_t>(static_cast<int32_t>(src[2 * j + 1]) - x_zp);
    }
  }
}

// FillPlane (qdepthwise_internal.h) with the rows of strides 1 and 2 vectorized, tails included:
// the compiler's loops left 12 of a 28-wide row (all of a 14-wide one) to scalar code, 30-40% of
// the kernel's time.
template <typename TX>
QK_AVX2_TARGET void FillPlaneAvx2(const QDepthwiseShape& s, const PlaneLayout& p, const TX* x, int32_t x_zp,
                                  int16_t* plane) {
  if (s.stride_w > 2) return FillPlane(s, p, x, x_zp, plane);
  const int64_t H = s.H, W = s.W, pad_left = s.pad_left, row_len = p.row_len, phase_len = p.phase_len;
  std::memset(plane, 0, static_cast<size_t>(p.rows * row_len) * sizeof(int16_t));
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(x_zp));
  if (s.stride_w == 1) {
    for (int64_t ih = 0; ih < H; ++ih) WidenRow(x + ih * W, W, zp, x_zp, plane + (ih + s.pad_top) * row_len + pad_left);
    return;
  }
  // Stride 2: padded column c = pad_left + iw goes to phase c % 2 at index c / 2. Pairs start at
  // the first iw of phase 0, s0; a lone phase-1 value before them (s0 = 1) and a lone phase-0
  // value after them (an odd count left) one at a time.
  const int64_t s0 = pad_left % 2, pairs = (W - s0) / 2, first = (pad_left + s0) / 2;
  for (int64_t ih = 0; ih < H; ++ih) {
    const TX* src = x + ih * W;
    int16_t* row = plane + (ih + s.pad_top) * row_len;
    int16_t* even = row + first;
    int16_t* odd = row + phase_len + first;
    if (s0 == 1) row[phase_len + pad_left / 2] = static_cast<int16_t>(static_cast<int32_t>(src[0]) - x_zp);
    SplitRow(src + s0, pairs, zp, x_zp, even, odd);
    if (s0 + 2 * pairs < W) even[pairs] = static_cast<int16_t>(static_cast<int32_t>(src[W - 1]) - x_zp);
  }
}

// One channel: the plane, then each output row's 16-column blocks: the tap pairs' products
// (AccumulateRowAvx2's operations, the weight pairs made once per channel), requantized in
// registers (by saturating packs for multipliers below 1: requantize_avx2.h) and stored as bytes
// when the output is requantized; else the sums to `acc` and FinishRow. kSaturating: the
// multiplier allows the saturating packs (decided once per channel: choosing per block cost 11%
// of a 14x14 channel).
template <typename TX, typename TY, bool kSaturating>
QK_AVX2_TARGET void RunChannelAs(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc) {
  const PlaneLayout p = Layout(s);
  FillPlaneAvx2(s, p, static_cast<const TX*>(c.x), c.x_zero_point, plane);
  const int64_t taps = s.KH * s.KW;
  int64_t tap_offset[kLanesMaxTaps];
  TapOffsets(s, p, tap_offset);
  const int64_t pairs = (taps + 1) / 2;
  __m256i wpair[kLanesMaxTaps / 2];
  int64_t offset_b[kLanesMaxTaps / 2];  // the pair's second tap; an odd last tap pairs with a zero weight
  for (int64_t q = 0; q < pairs; ++q) {
    const bool odd_last = 2 * q + 1 >= taps;
    const uint32_t w0 = static_cast<uint32_t>(c.w[2 * q]) & 0xFFFFu;
    const uint32_t w1 = odd_last ? 0u : static_cast<uint32_t>(c.w[2 * q + 1]);
    wpair[q] = _mm256_set1_epi32(static_cast<int32_t>(w0 | (w1 << 16)));
    offset_b[q] = odd_last ? tap_offset[2 * q] : tap_offset[2 * q + 1];
  }
  const bool bytes_out = !c.acc_out && !c.y_float;
  const __m256 m = _mm256_set1_ps(c.multiplier);
  const __m256 lo = _mm256_set1_ps(static_cast<float>(c.y_min - c.y_zero_point));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(c.y_max - c.y_zero_point));
  const __m256i y_zp = _mm256_set1_epi32(c.y_zero_point);
  const __m256i bias = _mm256_set1_epi32(c.bias);
  const x86::SaturatingBytes sat = x86::MakeSaturatingBytes(c.y_zero_point, c.y_min, c.y_max, c.y_signed);
  const int64_t OH = s.OH, OW = s.OW, row_step = s.stride_h * p.row_len;
  auto* y = static_cast<uint8_t*>(c.y);  // int8 keeps its bit pattern
  const int64_t out_size = OH * OW;
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int16_t* row = plane + oh * row_step;
    for (int64_t i0 = 0; i0 < OW; i0 += kRowBlock) {
      // unpack works within 128-bit lanes: sum_lo holds outputs 0-3 and 8-11, sum_hi 4-7 and 12-15.
      __m256i sum_lo = bias, sum_hi = bias;
      for (int64_t q = 0; q < pairs; ++q) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + tap_offset[2 * q] + i0));
        __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + offset_b[q] + i0));
        sum_lo = _mm256_add_epi32(sum_lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wpair[q]));
        sum_hi = _mm256_add_epi32(sum_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wpair[q]));
      }
      if (!bytes_out) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i0), _mm256_permute2x128_si256(sum_lo, sum_hi, 0x20));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + i0 + 8), _mm256_permute2x128_si256(sum_lo, sum_hi, 0x31));
        continue;
      }
      const __m128i out =
          kSaturating ? x86::SaturatedBytesOfSixteen<true>(x86::ScaleAndRound(sum_lo, m), x86::ScaleAndRound(sum_hi, m), sat)
                     : x86::LowBytesOfSixteen<true>(x86::RequantizeEight(sum_lo, m, lo, hi, y_zp),
                                                    x86::RequantizeEight(sum_hi, m, lo, hi, y_zp));
      uint8_t* dst = y + oh * OW + i0;
      // A partial block's extra bytes may land on this channel's later rows, which are written
      // after it (a call of memcpy per row was 5% of a 56x56 channel); past the channel's last
      // row they would reach another channel's output (maybe another thread's): copied exactly.
      if ((oh * OW + i0) + kRowBlock <= out_size) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), out);
      } else {
        alignas(16) uint8_t last[kRowBlock];
        _mm_store_si128(reinterpret_cast<__m128i*>(last), out);
        std::memcpy(dst, last, static_cast<size_t>(OW - i0));
      }
    }
    if (!bytes_out) FinishRow<TY, RequantizeRowAvx2>(c, oh, OW, acc);
  }
}

template <typename TX, typename TY>
QK_AVX2_TARGET void RunChannel(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc) {
  if (x86::SaturatingBytesOk(c.multiplier)) return RunChannelAs<TX, TY, true>(s, c, plane, acc);
  RunChannelAs<TX, TY, false>(s, c, plane, acc);
}

}  // namespace

QK_AVX2_TARGET void RunAvx2(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc) {
  if (s.KH * s.KW > kLanesMaxTaps) return Dispatch<AccumulateRowAvx2, RequantizeRowAvx2>(s, c, plane, acc);
  if (c.x_signed) {
    if (c.y_signed) return RunChannel<int8_t, int8_t>(s, c, plane, acc);
    return RunChannel<int8_t, uint8_t>(s, c, plane, acc);
  }
  if (c.y_signed) return RunChannel<uint8_t, int8_t>(s, c, plane, acc);
  RunChannel<uint8_t, uint8_t>(s, c, plane, acc);
}

namespace {

// The padded input of n <= 8 channels with the channels in the lanes: plane[(r * cols + col) * 8
// + j] = x_j - x_zp_j inside the input, 0 in the padding and in lanes j >= n. Eight columns at a
// time through an 8 x 8 int16 transpose; the row tails one value at a time.
template <typename TX>
QK_AVX2_TARGET void FillLanes(const QDepthwiseShape& s, const LanesLayout& l, const QDepthwiseChannel* c, int n,
                              int16_t* plane) {
  constexpr int L = kQDepthwiseLanes;
  std::memset(plane, 0, static_cast<size_t>(l.rows * l.cols * L) * sizeof(int16_t));
  const int64_t H = s.H, W = s.W, cols = l.cols;
  const TX* x[L];
  __m128i zp[L];
  for (int j = 0; j < L; ++j) {
    x[j] = static_cast<const TX*>(c[j < n ? j : 0].x);
    zp[j] = _mm_set1_epi16(static_cast<int16_t>(c[j < n ? j : 0].x_zero_point));
  }
  for (int64_t ih = 0; ih < H; ++ih) {
    int16_t* dst = plane + ((ih + s.pad_top) * cols + s.pad_left) * L;
    int64_t iw = 0;
    for (; iw + 8 <= W; iw += 8) {
      __m128i v[L];
      for (int j = 0; j < L; ++j) {
        if (j >= n) {
          v[j] = _mm_setzero_si128();
          continue;
        }
        const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[j] + ih * W + iw));
        const __m128i w16 = std::is_signed_v<TX> ? _mm_cvtepi8_epi16(b) : _mm_cvtepu8_epi16(b);
        v[j] = _mm_sub_epi16(w16, zp[j]);
      }
      // 8 x 8 int16 transpose: v[j] = channel j's 8 columns -> t[k] = column k's 8 channels.
      const __m128i a0 = _mm_unpacklo_epi16(v[0], v[1]), a1 = _mm_unpackhi_epi16(v[0], v[1]);
      const __m128i a2 = _mm_unpacklo_epi16(v[2], v[3]), a3 = _mm_unpackhi_epi16(v[2], v[3]);
      const __m128i a4 = _mm_unpacklo_epi16(v[4], v[5]), a5 = _mm_unpackhi_epi16(v[4], v[5]);
      const __m128i a6 = _mm_unpacklo_epi16(v[6], v[7]), a7 = _mm_unpackhi_epi16(v[6], v[7]);
      const __m128i b0 = _mm_unpacklo_epi32(a0, a2), b1 = _mm_unpackhi_epi32(a0, a2);
      const __m128i b2 = _mm_unpacklo_epi32(a1, a3), b3 = _mm_unpackhi_epi32(a1, a3);
      const __m128i b4 = _mm_unpacklo_epi32(a4, a6), b5 = _mm_unpackhi_epi32(a4, a6);
      const __m128i b6 = _mm_unpacklo_epi32(a5, a7), b7 = _mm_unpackhi_epi32(a5, a7);
      const __m128i t[L] = {_mm_unpacklo_epi64(b0, b4), _mm_unpackhi_epi64(b0, b4), _mm_unpacklo_epi64(b1, b5),
                            _mm_unpackhi_epi64(b1, b5), _mm_unpacklo_epi64(b2, b6), _mm_unpackhi_epi64(b2, b6),
                            _mm_unpacklo_epi64(b3, b7), _mm_unpackhi_epi64(b3, b7)};
      for (int k = 0; k < L; ++k) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (iw + k) * L), t[k]);
    }
    for (; iw < W; ++iw)
      for (int j = 0; j < n; ++j)
        dst[iw * L + j] = static_cast<int16_t>(static_cast<int32_t>(x[j][ih * W + iw]) - c[j].x_zero_point);
  }
}

}  // namespace

QK_AVX2_TARGET void RunLanesAvx2(const QDepthwiseShape& s, const QDepthwiseChannel* c, int n, int16_t* plane,
                                 int32_t* acc_lanes, int32_t* row) {
  const LanesLayout l = Lanes(s);
  if (c[0].x_signed) {
    FillLanes<int8_t>(s, l, c, n, plane);
  } else {
    FillLanes<uint8_t>(s, l, c, n, plane);
  }
  const int64_t taps = s.KH * s.KW;  // <= kLanesMaxTaps (QDepthwiseUseLanes)
  alignas(32) int32_t bias[kQDepthwiseLanes] = {};
  for (int j = 0; j < n; ++j) bias[j] = c[j].bias;
  int64_t tap_offset[kLanesMaxTaps];
  for (int64_t kh = 0; kh < s.KH; ++kh)
    for (int64_t kw = 0; kw < s.KW; ++kw)
      tap_offset[kh * s.KW + kw] = (kh * s.dilation_h * l.cols + kw * s.dilation_w) * kQDepthwiseLanes;
  // acc = bias + sum_t x * w per lane, taps in pairs: the two taps' 8 channels interleaved and
  // multiplied by (w[t], w[t + 1]) with vpmaddwd, which adds the two products in int32 exactly
  // (each fits, |x - x_zp| <= 255, |w| <= 255, and so does their sum); vpaddd wraps as the plane
  // kernels' uint32 sums do, so each lane is the same integer.
  // wpair[q][half][channel in half]: (w[2q], w[2q + 1]) of each channel, 0 in lanes j >= n.
  alignas(32) int32_t wpair[kLanesMaxTaps / 2 + 1][2][kQDepthwiseLanes / 2] = {};
  const int64_t pairs = (taps + 1) / 2;
  for (int j = 0; j < n; ++j)
    for (int64_t q = 0; q < pairs; ++q) {
      const uint32_t w0 = static_cast<uint32_t>(c[j].w[2 * q]) & 0xFFFFu;
      const uint32_t w1 = 2 * q + 1 < taps ? static_cast<uint32_t>(c[j].w[2 * q + 1]) : 0u;
      wpair[q][j / 4][j % 4] = static_cast<int32_t>(w0 | (w1 << 16));
    }
  int64_t pair_offset[kLanesMaxTaps + 2];
  // An odd last tap pairs with tap 0's column and a zero weight.
  for (int64_t t = 0; t < 2 * pairs; ++t) pair_offset[t] = t < taps ? tap_offset[t] : tap_offset[0];
  const __m128i bias_lo = _mm_load_si128(reinterpret_cast<const __m128i*>(bias));
  const __m128i bias_hi = _mm_load_si128(reinterpret_cast<const __m128i*>(bias + 4));
  const int64_t OH = s.OH, OW = s.OW, sh = s.stride_h, sw = s.stride_w, cols = l.cols;
  const __m256i vbias = _mm256_set_m128i(bias_hi, bias_lo);
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int16_t* at = plane + (oh * sh * cols + ow * sw) * kQDepthwiseLanes;
      __m256i acc = vbias;
      for (int64_t q = 0; q < pairs; ++q) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at + pair_offset[2 * q]));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at + pair_offset[2 * q + 1]));
        // Channels 0-3 in the low 128 bits, 4-7 in the high: each 32-bit lane (x_t, x_t+1).
        const __m256i x2 = _mm256_set_m128i(_mm_unpackhi_epi16(a, b), _mm_unpacklo_epi16(a, b));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x2, _mm256_load_si256(reinterpret_cast<const __m256i*>(wpair[q]))));
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc_lanes + (oh * OW + ow) * kQDepthwiseLanes), acc);
    }
  }
  if (!c[0].acc_out && !c[0].y_float) {
    // Requantized bytes: RequantizeEight on the lanes (one channel's multiplier, range and zero
    // point per lane: the same operations as the plane kernel's row requantize, so the same
    // bytes), then each channel's bytes to its output.
    alignas(32) float m[kQDepthwiseLanes] = {}, lo[kQDepthwiseLanes] = {}, hi[kQDepthwiseLanes] = {};
    alignas(32) int32_t zp[kQDepthwiseLanes] = {};
    for (int j = 0; j < n; ++j) {
      m[j] = c[j].multiplier;
      zp[j] = c[j].y_zero_point;
      lo[j] = static_cast<float>(c[j].y_min - c[j].y_zero_point);
      hi[j] = static_cast<float>(c[j].y_max - c[j].y_zero_point);
    }
    const __m256 vm = _mm256_load_ps(m), vlo = _mm256_load_ps(lo), vhi = _mm256_load_ps(hi);
    const __m256i vzp = _mm256_load_si256(reinterpret_cast<const __m256i*>(zp));
    const int64_t pixels = OH * OW;
    uint8_t* bytes = reinterpret_cast<uint8_t*>(acc_lanes);  // in place: pixel p's 8 bytes over its sums
    for (int64_t p = 0; p < pixels; ++p) {
      const __m256i q = x86::RequantizeEight(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc_lanes + p * kQDepthwiseLanes)), vm, vlo, vhi, vzp);
      const __m128i b = x86::LowBytesOfSixteen(q, q);  // bytes 0-7: the 8 lanes in order
      _mm_storel_epi64(reinterpret_cast<__m128i*>(bytes + p * kQDepthwiseLanes), b);
    }
    for (int j = 0; j < n; ++j) {
      uint8_t* y = static_cast<uint8_t*>(c[j].y);  // int8 keeps its bit pattern
      for (int64_t p = 0; p < pixels; ++p) y[p] = bytes[p * kQDepthwiseLanes + j];
    }
    return;
  }
  // The sums or floats: each channel's rows out of the lanes, then the plane kernel's epilogue.
  for (int j = 0; j < n; ++j) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const int32_t* src = acc_lanes + oh * OW * kQDepthwiseLanes + j;
      for (int64_t ow = 0; ow < OW; ++ow) row[ow] = src[ow * kQDepthwiseLanes];
      if (c[j].y_signed) {
        FinishRow<int8_t, RequantizeRowAvx2>(c[j], oh, OW, row);
      } else {
        FinishRow<uint8_t, RequantizeRowAvx2>(c[j], oh, OW, row);
      }
    }
  }
}

}  // namespace quantkit::kernels::qdepthwise
