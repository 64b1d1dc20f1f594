// The avx2 build of QBinarySpan (qbinary_internal.h): the same float32 operations, 8 wide.
// Contiguous spans (and spans with one side broadcast) run an intrinsics loop of 16 elements per
// step: the bytes widened to int32, minus the zero point, converted, scaled, added or multiplied,
// divided by the output scale (vdivps: IEEE division, as the portable `/`), NaN to 0, clamped,
// rounded half to even (vcvtps2dq), plus the zero point: the portable Span's operations in its
// order, so the same bytes. The compiler's vectorization of Span (8-bit widening and narrowing
// through generic shuffles) ran about 3.5x slower. Other strides, and the last few elements,
// take Span itself.
#include <immintrin.h>

#include <type_traits>

#include "runtime/kernels/qbinary_internal.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::qbinary {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

struct Consts {
  __m256 a_scale, b_scale, y_scale, lo, hi;
  __m256i a_zp, b_zp, y_zp;
};

template <bool kMul>
QK_AVX2_TARGET inline __m256 Combine(__m256 x, __m256 z) {
  return kMul ? _mm256_mul_ps(x, z) : _mm256_add_ps(x, z);
}

// y[i] for i in [0, n - n % 16): a contiguous or broadcast (its dequantized value in a_one / b_one).
template <bool kMul, typename TA, typename TB, bool kBroadcastA, bool kBroadcastB>
QK_AVX2_TARGET int64_t Sixteens(const Consts& k, const TA* a, __m256 a_one, const TB* b, __m256 b_one, int64_t n,
                                uint8_t* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 x0 = a_one, x1 = a_one, z0 = b_one, z1 = b_one;
    if constexpr (!kBroadcastA) x86::DequantizeSixteen<std::is_signed_v<TA>>(a + i, k.a_zp, k.a_scale, &x0, &x1);
    if constexpr (!kBroadcastB) x86::DequantizeSixteen<std::is_signed_v<TB>>(b + i, k.b_zp, k.b_scale, &z0, &z1);
    const __m256i q0 = x86::QuantizeEight(Combine<kMul>(x0, z0), k.y_scale, k.lo, k.hi, k.y_zp);
    const __m256i q1 = x86::QuantizeEight(Combine<kMul>(x1, z1), k.y_scale, k.lo, k.hi, k.y_zp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), x86::LowBytesOfSixteen(q0, q1));
  }
  return i;
}

template <bool kMul, typename TA, typename TB, typename TY>
QK_AVX2_TARGET void SpanOf(const QBinaryParams& p, const TA* a, int64_t step_a, const TB* b, int64_t step_b, int64_t n,
                           TY* y) {
  const bool vector = (step_a == 1 || step_a == 0) && (step_b == 1 || step_b == 0) && !(step_a == 0 && step_b == 0);
  int64_t done = 0;
  if (vector && n >= 16) {
    Consts k;
    k.a_scale = _mm256_set1_ps(p.a_scale);
    k.b_scale = _mm256_set1_ps(p.b_scale);
    k.y_scale = _mm256_set1_ps(p.y_scale);
    k.a_zp = _mm256_set1_epi32(p.a_zero_point);
    k.b_zp = _mm256_set1_epi32(p.b_zero_point);
    k.y_zp = _mm256_set1_epi32(p.y_zero_point);
    // Span's bounds: the clamp folded into the quantizer's (integers: it commutes with rounding).
    const int32_t lo_q = std::max(p.y_min, static_cast<int32_t>(rt::quant::QMin<TY>()));
    const int32_t hi_q = std::min(p.y_max, static_cast<int32_t>(rt::quant::QMax<TY>()));
    k.lo = _mm256_set1_ps(static_cast<float>(lo_q - p.y_zero_point));
    k.hi = _mm256_set1_ps(static_cast<float>(hi_q - p.y_zero_point));
    auto* yb = reinterpret_cast<uint8_t*>(y);  // int8 keeps its bit pattern
    const __m256 none = _mm256_setzero_ps();
    if (step_a == 0) {
      const __m256 a_one =
          _mm256_set1_ps(static_cast<float>(static_cast<int32_t>(a[0]) - p.a_zero_point) * p.a_scale);
      done = Sixteens<kMul, TA, TB, true, false>(k, a, a_one, b, none, n, yb);
    } else if (step_b == 0) {
      const __m256 b_one =
          _mm256_set1_ps(static_cast<float>(static_cast<int32_t>(b[0]) - p.b_zero_point) * p.b_scale);
      done = Sixteens<kMul, TA, TB, false, true>(k, a, none, b, b_one, n, yb);
    } else {
      done = Sixteens<kMul, TA, TB, false, false>(k, a, none, b, none, n, yb);
    }
  }
  if (done < n) {
    Span<kMul>(p, a + done * step_a, step_a, b + done * step_b, step_b, n - done, y + done);
  }
}

// The portable Dispatch's type switches, ending in SpanOf.
template <bool kMul, typename TA, typename TB>
QK_AVX2_TARGET void OfY(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                        void* y) {
  const auto* ta = static_cast<const TA*>(a);
  const auto* tb = static_cast<const TB*>(b);
  if (p.y_signed) return SpanOf<kMul>(p, ta, step_a, tb, step_b, n, static_cast<int8_t*>(y));
  SpanOf<kMul>(p, ta, step_a, tb, step_b, n, static_cast<uint8_t*>(y));
}

template <bool kMul>
QK_AVX2_TARGET void OfTypes(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b,
                            int64_t n, void* y) {
  if (p.a_signed) {
    if (p.b_signed) return OfY<kMul, int8_t, int8_t>(p, a, step_a, b, step_b, n, y);
    return OfY<kMul, int8_t, uint8_t>(p, a, step_a, b, step_b, n, y);
  }
  if (p.b_signed) return OfY<kMul, uint8_t, int8_t>(p, a, step_a, b, step_b, n, y);
  OfY<kMul, uint8_t, uint8_t>(p, a, step_a, b, step_b, n, y);
}

}  // namespace

QK_AVX2_TARGET void SpanAvx2(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b,
                             int64_t n, void* y) {
  if (p.mul) return OfTypes<true>(p, a, step_a, b, step_b, n, y);
  OfTypes<false>(p, a, step_a, b, step_b, n, y);
}

}  // namespace quantkit::kernels::qbinary
