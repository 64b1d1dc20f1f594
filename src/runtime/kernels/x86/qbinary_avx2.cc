// The avx2 build of QBinarySpan (qbinary_internal.h): the same float32 operations, 8 wide.
// Contiguous spans (and spans with one side broadcast) run an intrinsics loop of 16 elements per
// step: each byte minus its zero point as an exact float (x86::DequantizeSixteen), scaled, added
// or multiplied, divided by the output scale (vdivps: IEEE division, as the portable `/`), NaN to
// 0, clamped, rounded half to even (vcvtps2dq), plus the zero point: the portable Span's
// operations in its order, so the same bytes. Its fast form (FastSixteens) replaces the division
// and the clamp where PlanQBinary proved it gives the same bytes. The compiler's vectorization of
// Span (8-bit widening and narrowing through generic shuffles) ran about 3.5x slower. Other
// strides, and the last few elements, take Span itself.
#include <immintrin.h>

#include <type_traits>

#include "runtime/kernels/qbinary_internal.h"
#include "runtime/kernels/x86/requantize_avx2.h"

namespace quantkit::kernels::qbinary {
namespace {

#define QK_AVX2_TARGET __attribute__((target("avx2")))

struct Consts {
  x86::DequantizeConsts a, b;
  __m256 y_scale, lo, hi;
  __m256i y_zp;
  __m256 y_reciprocal;  // the fast form (QBinaryParams::fast_form)
  x86::SaturatingBytes saturating;
};

template <bool kMul>
QK_AVX2_TARGET inline __m256 Combine(__m256 x, __m256 z) {
  return kMul ? _mm256_mul_ps(x, z) : _mm256_add_ps(x, z);
}

// The combined operands of outputs i .. i + 15: a and b contiguous or broadcast (their dequantized
// value in a_one / b_one).
template <bool kMul, typename TA, typename TB, bool kBroadcastA, bool kBroadcastB>
__attribute__((target("avx2"), always_inline)) inline void CombineSixteen(const Consts& k, const TA* a, __m256 a_one,
                                                                          const TB* b, __m256 b_one, int64_t i,
                                                                          __m256* f0, __m256* f1) {
  __m256 x0 = a_one, x1 = a_one, z0 = b_one, z1 = b_one;
  if constexpr (!kBroadcastA) x86::DequantizeSixteen<std::is_signed_v<TA>>(a + i, k.a, &x0, &x1);
  if constexpr (!kBroadcastB) x86::DequantizeSixteen<std::is_signed_v<TB>>(b + i, k.b, &z0, &z1);
  *f0 = Combine<kMul>(x0, z0);
  *f1 = Combine<kMul>(x1, z1);
}

// y[i] for i in [0, n - n % 16): the division and the float clamp (x86::QuantizeEight).
template <bool kMul, typename TA, typename TB, bool kBroadcastA, bool kBroadcastB>
QK_AVX2_TARGET int64_t Sixteens(const Consts& k, const TA* a, __m256 a_one, const TB* b, __m256 b_one, int64_t n,
                                uint8_t* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 f0, f1;
    CombineSixteen<kMul, TA, TB, kBroadcastA, kBroadcastB>(k, a, a_one, b, b_one, i, &f0, &f1);
    const __m256i q0 = x86::QuantizeEight(f0, k.y_scale, k.lo, k.hi, k.y_zp);
    const __m256i q1 = x86::QuantizeEight(f1, k.y_scale, k.lo, k.hi, k.y_zp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), x86::LowBytesOfSixteen(q0, q1));
  }
  return i;
}

// f / y_scale from y_scale's reciprocal r with one correction step in FMAs: q = f * r,
// q' = q + (f - q * y_scale) * r (Markstein's: the correctly rounded quotient, as vdivps gives).
__attribute__((target("avx2,fma"), always_inline)) inline __m256 Quotient(__m256 f, const Consts& k) {
  const __m256 q = _mm256_mul_ps(f, k.y_reciprocal);
  return _mm256_fmadd_ps(_mm256_fnmadd_ps(q, k.y_scale, f), k.y_reciprocal, q);
}

// Sixteens' fast form (QBinaryParams::fast_form): Quotient in place of vdivps (4 cycles per 8
// lanes on Zen 3), rounded, then saturated in integers (x86::SaturatedBytesOfSixteen) in place of
// the float clamp. Taken only where PlanQBinary found the reference's bytes for every pair of codes.
template <bool kMul, typename TA, typename TB, bool kBroadcastA, bool kBroadcastB>
__attribute__((target("avx2,fma"))) int64_t FastSixteens(const Consts& k, const TA* a, __m256 a_one, const TB* b,
                                                         __m256 b_one, int64_t n, uint8_t* y) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 f0, f1;
    CombineSixteen<kMul, TA, TB, kBroadcastA, kBroadcastB>(k, a, a_one, b, b_one, i, &f0, &f1);
    const __m256i r0 = _mm256_cvtps_epi32(Quotient(f0, k)), r1 = _mm256_cvtps_epi32(Quotient(f1, k));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), x86::SaturatedBytesOfSixteen<false>(r0, r1, k.saturating));
  }
  return i;
}

template <bool kMul, typename TA, typename TB, bool kBroadcastA, bool kBroadcastB>
QK_AVX2_TARGET int64_t SixteensOf(bool fast, const Consts& k, const TA* a, __m256 a_one, const TB* b, __m256 b_one,
                                  int64_t n, uint8_t* y) {
  if (fast) return FastSixteens<kMul, TA, TB, kBroadcastA, kBroadcastB>(k, a, a_one, b, b_one, n, y);
  return Sixteens<kMul, TA, TB, kBroadcastA, kBroadcastB>(k, a, a_one, b, b_one, n, y);
}

template <bool kMul, typename TA, typename TB, typename TY>
QK_AVX2_TARGET void SpanOf(const QBinaryParams& p, const TA* a, int64_t step_a, const TB* b, int64_t step_b, int64_t n,
                           TY* y) {
  const bool vector = (step_a == 1 || step_a == 0) && (step_b == 1 || step_b == 0) && !(step_a == 0 && step_b == 0);
  int64_t done = 0;
  if (vector && n >= 16) {
    Consts k;
    k.a = x86::MakeDequantizeConsts<std::is_signed_v<TA>>(p.a_zero_point, p.a_scale);
    k.b = x86::MakeDequantizeConsts<std::is_signed_v<TB>>(p.b_zero_point, p.b_scale);
    k.y_scale = _mm256_set1_ps(p.y_scale);
    k.y_zp = _mm256_set1_epi32(p.y_zero_point);
    // Span's bounds: the clamp folded into the quantizer's (integers: it commutes with rounding).
    const int32_t lo_q = std::max(p.y_min, static_cast<int32_t>(rt::quant::QMin<TY>()));
    const int32_t hi_q = std::min(p.y_max, static_cast<int32_t>(rt::quant::QMax<TY>()));
    k.lo = _mm256_set1_ps(static_cast<float>(lo_q - p.y_zero_point));
    k.hi = _mm256_set1_ps(static_cast<float>(hi_q - p.y_zero_point));
    k.y_reciprocal = _mm256_set1_ps(p.y_reciprocal);
    k.saturating = x86::MakeSaturatingBytes(p.y_zero_point, lo_q, hi_q, std::is_signed_v<TY>);
    auto* yb = reinterpret_cast<uint8_t*>(y);  // int8 keeps its bit pattern
    const __m256 none = _mm256_setzero_ps();
    if (step_a == 0) {
      const __m256 a_one =
          _mm256_set1_ps(static_cast<float>(static_cast<int32_t>(a[0]) - p.a_zero_point) * p.a_scale);
      done = SixteensOf<kMul, TA, TB, true, false>(p.fast_form, k, a, a_one, b, none, n, yb);
    } else if (step_b == 0) {
      const __m256 b_one =
          _mm256_set1_ps(static_cast<float>(static_cast<int32_t>(b[0]) - p.b_zero_point) * p.b_scale);
      done = SixteensOf<kMul, TA, TB, false, true>(p.fast_form, k, a, none, b, b_one, n, yb);
    } else {
      done = SixteensOf<kMul, TA, TB, false, false>(p.fast_form, k, a, none, b, none, n, yb);
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
