// AVX-512 build of FillPhasePlane (ref/conv_kernels.h): the same plane, written once per float
// (each row segment as leading zeros, the copied or stride-2-gathered input, trailing zeros)
// instead of a memset of the whole plane followed by the copies; tails with masked stores, and
// masked loads that never read past an input row.
#include <immintrin.h>

#include <algorithm>

#include "runtime/kernels/ref/conv_kernels.h"

namespace quantkit::kernels::phase_plane {
namespace {

__attribute__((target("avx512f"), always_inline)) inline __mmask16 FirstLanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
}

__attribute__((target("avx512f"), always_inline)) inline void Zero(float* d, int64_t len) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= len; i += 16) _mm512_storeu_ps(d + i, zero);
  if (i < len) _mm512_mask_storeu_ps(d + i, FirstLanes(len - i), zero);
}

__attribute__((target("avx512f"), always_inline)) inline void Copy(float* d, const float* s, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
  if (i < n) {
    const __mmask16 m = FirstLanes(n - i);
    _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
  }
}

// d[i] = s[2 * i] for i < n: reads s[0 .. 2n - 1) only, or whole vectors below `end` (the end
// of the channel's plane): plain loads where they stay inside it.
__attribute__((target("avx512f"), always_inline)) inline void GatherEven(float* d, const float* s, int64_t n,
                                                                        const float* end) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t i = 0; i < n; i += 16) {
    __m512 lo, hi;
    if (s + 2 * i + 32 <= end) {
      lo = _mm512_loadu_ps(s + 2 * i);
      hi = _mm512_loadu_ps(s + 2 * i + 16);
    } else {
      const int64_t src_left = 2 * (n - i) - 1;  // source floats still needed
      lo = _mm512_maskz_loadu_ps(FirstLanes(src_left), s + 2 * i);
      hi = _mm512_maskz_loadu_ps(src_left > 16 ? FirstLanes(src_left - 16) : __mmask16(0), s + 2 * i + 16);
    }
    _mm512_mask_storeu_ps(d + i, FirstLanes(n - i), _mm512_permutex2var_ps(lo, even, hi));
  }
}

}  // namespace

__attribute__((target("avx512f"))) void FillAvx512(const ConvGeometry& g, int64_t rows, int64_t phase_len,
                                                   const float* x, float* dst) {
  const int64_t ih = g.in[0], iw = g.in[1], sw = g.stride[1], ph = g.pad_begin[0];
  const int64_t row_len = sw * phase_len;
  const float* x_end = x + ih * iw;
  const int64_t r_begin = std::clamp<int64_t>(ph, 0, rows), r_end = std::clamp(ih + ph, r_begin, rows);
  // The phases' column ranges are the same for every row: computed once (per row and phase, their
  // divisions were most of the fill's time on small maps).
  constexpr int64_t kMaxPhases = 8;
  PhaseColumns phase[kMaxPhases];
  for (int64_t p = 0; p < std::min(sw, kMaxPhases); ++p) phase[p] = ColumnsOfPhase(g, p, phase_len);
  Zero(dst, r_begin * row_len);
  for (int64_t r = r_begin; r < r_end; ++r) {
    const float* src_row = x + (r - ph) * iw;
    for (int64_t p = 0; p < sw; ++p) {
      float* d = dst + r * row_len + p * phase_len;
      const PhaseColumns ps = p < kMaxPhases ? phase[p] : ColumnsOfPhase(g, p, phase_len);
      const int64_t i_lo = ps.i_lo, i_hi = ps.i_hi, n = i_hi - i_lo;
      Zero(d, i_lo);
      const float* src = src_row + i_lo * sw - ps.first;
      if (sw == 1) {
        Copy(d + i_lo, src, n);
      } else if (sw == 2) {
        GatherEven(d + i_lo, src, n, x_end);
      } else {
        for (int64_t i = 0; i < n; ++i) d[i_lo + i] = src[i * sw];
      }
      Zero(d + i_hi, phase_len - i_hi);
    }
  }
  Zero(dst + r_end * row_len, (rows - r_end) * row_len);
}

}  // namespace quantkit::kernels::phase_plane
