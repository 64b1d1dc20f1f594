// The body of QBinarySpan (qbinary.h), always inlined into the portable build (qbinary.cc) and
// the avx2 and AVX-512 builds (x86/qbinary_avx2.cc, x86/qbinary_avx512.cc).
#pragma once

#include <algorithm>

#include "runtime/kernels/qbinary.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels::qbinary {

template <bool kMul, typename TA, typename TB, typename TY>
__attribute__((always_inline)) inline void Span(const QBinaryParams& p, const TA* a, int64_t step_a, const TB* b,
                                                int64_t step_b, int64_t n, TY* y) {
  const float as = p.a_scale, bs = p.b_scale, ys = p.y_scale;
  const int32_t az = p.a_zero_point, bz = p.b_zero_point, yz = p.y_zero_point;
  // The clamp to [y_min, y_max] folded into the quantizer's bounds (integers: clamping commutes
  // with rounding), as quantize.h's bulk spans do.
  const int32_t lo_q = std::max(p.y_min, static_cast<int32_t>(rt::quant::QMin<TY>()));
  const int32_t hi_q = std::min(p.y_max, static_cast<int32_t>(rt::quant::QMax<TY>()));
  const float lo = static_cast<float>(lo_q - yz), hi = static_cast<float>(hi_q - yz);
  auto one = [&](int32_t qa, int32_t qb) {
    const float x = static_cast<float>(qa - az) * as;
    const float z = static_cast<float>(qb - bz) * bs;
    const float f = kMul ? x * z : x + z;
    return static_cast<TY>(rt::quant::detail::ClampRoundAddZero<int32_t>(f / ys, lo, hi, yz));
  };
  if (step_a == 1 && step_b == 1) {  // the loops the compiler vectorizes
    for (int64_t i = 0; i < n; ++i) y[i] = one(a[i], b[i]);
  } else if (step_a == 1 && step_b == 0) {
    const int32_t qb = b[0];
    for (int64_t i = 0; i < n; ++i) y[i] = one(a[i], qb);
  } else if (step_a == 0 && step_b == 1) {
    const int32_t qa = a[0];
    for (int64_t i = 0; i < n; ++i) y[i] = one(qa, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = one(a[i * step_a], b[i * step_b]);
  }
}

// No lambdas here: a lambda is a function of its own, compiled for the baseline ISA even inside
// the avx2 build, and Span would be inlined into it (SSE2 code in the avx2 path).
template <bool kMul, typename TA, typename TB>
__attribute__((always_inline)) inline void DispatchY(const QBinaryParams& p, const void* a, int64_t step_a,
                                                     const void* b, int64_t step_b, int64_t n, void* y) {
  if (p.y_signed) {
    Span<kMul>(p, static_cast<const TA*>(a), step_a, static_cast<const TB*>(b), step_b, n, static_cast<int8_t*>(y));
  } else {
    Span<kMul>(p, static_cast<const TA*>(a), step_a, static_cast<const TB*>(b), step_b, n, static_cast<uint8_t*>(y));
  }
}

template <bool kMul>
__attribute__((always_inline)) inline void DispatchTypes(const QBinaryParams& p, const void* a, int64_t step_a,
                                                         const void* b, int64_t step_b, int64_t n, void* y) {
  if (p.a_signed) {
    if (p.b_signed) return DispatchY<kMul, int8_t, int8_t>(p, a, step_a, b, step_b, n, y);
    return DispatchY<kMul, int8_t, uint8_t>(p, a, step_a, b, step_b, n, y);
  }
  if (p.b_signed) return DispatchY<kMul, uint8_t, int8_t>(p, a, step_a, b, step_b, n, y);
  DispatchY<kMul, uint8_t, uint8_t>(p, a, step_a, b, step_b, n, y);
}

__attribute__((always_inline)) inline void Dispatch(const QBinaryParams& p, const void* a, int64_t step_a,
                                                    const void* b, int64_t step_b, int64_t n, void* y) {
  if (p.mul) {
    DispatchTypes<true>(p, a, step_a, b, step_b, n, y);
  } else {
    DispatchTypes<false>(p, a, step_a, b, step_b, n, y);
  }
}

void SpanAvx2(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n, void* y);
void SpanAvx512(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                void* y);

}  // namespace quantkit::kernels::qbinary
