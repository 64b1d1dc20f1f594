// The normative integer arithmetic of quantkit's quantized ops. Every quant op (QuantizeLinear,
// DequantizeLinear, DynamicQuantizeLinear, MatMulInteger, ConvInteger, QLinearMatMul,
// QLinearConv) goes through these primitives, so there is exactly one definition of rounding,
// saturation and requantization in the runtime.
//
// Conventions (they match the ONNX specification and its numpy reference implementation):
//  * Rounding is round-half-to-even ("banker's rounding"): RoundHalfToEven(2.5f) == 2,
//    RoundHalfToEven(-2.5f) == -2, RoundHalfToEven(3.5f) == 4. It is std::nearbyint in the
//    default floating-point rounding mode (FE_TONEAREST); quantkit never changes the mode.
//  * Saturation clamps to the destination type's range: [0, 255] for uint8, [-128, 127] for
//    int8, [INT32_MIN, INT32_MAX] for int32. A NaN input (ONNX leaves it undefined) quantizes
//    to the zero point, i.e. to the quantized value of 0.
//  * QuantizeLinear:   q = saturate(round_half_even(x / scale) + zero_point)
//                      (x / scale is a float32 division, as in the reference).
//  * DequantizeLinear: x = float(q - zero_point) * scale   (q - zero_point computed exactly in
//                      int64, then one float32 multiplication).
//  * Integer products: acc = sum_k (a[k] - a_zero_point) * (b[k] - b_zero_point), computed
//    exactly in 32-bit integers (wrapping modulo 2^32 if a pathological K overflows, never UB).
//  * Requantize (QLinearMatMul, QLinearConv; QLinearConv adds its int32 bias to acc first):
//        multiplier = (a_scale * b_scale) / y_scale                 (float32, left to right)
//        y = saturate(round_half_even(float32(acc) * multiplier) + y_zero_point)
//    Everything is float32: the scales are float32 tensors and the ONNX reference computes the
//    multiplier in float32; the accumulator is converted to float32 and multiplied in float32,
//    as onnxruntime's MLAS requantization does. (The numpy reference promotes that last product
//    to float64; the two can differ only when |acc| > 2^24 or when the float32 product lands
//    within one float32 rounding step of a .5 tie.) The product is rounded half to even, then
//    the zero point is added in integer arithmetic and the result saturated.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace quantkit::rt::quant {

// Rounds to the nearest integer, ties to even (default FE_TONEAREST mode): 2.5 -> 2, -2.5 -> -2.
inline float RoundHalfToEven(float x) { return std::nearbyint(x); }

// Range of a quantized type.
template <typename T>
constexpr int64_t QMin() { return static_cast<int64_t>(std::numeric_limits<T>::min()); }
template <typename T>
constexpr int64_t QMax() { return static_cast<int64_t>(std::numeric_limits<T>::max()); }

// Clamps an exact integer to T's range.
template <typename T>
inline T SaturateInt(int64_t v) {
  if (v < QMin<T>()) return std::numeric_limits<T>::min();
  if (v > QMax<T>()) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

// Converts an integer-valued float (already rounded) to int64, clamped to +-2^40 so that adding a
// zero point and saturating stays exact. NaN -> 0.
inline int64_t RoundedToInt64(float r) {
  if (std::isnan(r)) return 0;
  constexpr float kLimit = 1099511627776.0f;  // 2^40, far outside every quantized range
  if (r > kLimit) return int64_t{1} << 40;
  if (r < -kLimit) return -(int64_t{1} << 40);
  return static_cast<int64_t>(r);
}

// q = saturate(round_half_even(x / scale) + zero_point).
template <typename T>
inline T QuantizeValue(float x, float scale, int32_t zero_point) {
  const float r = RoundHalfToEven(x / scale);
  if (std::isnan(r)) return SaturateInt<T>(zero_point);  // NaN input (or 0/0): the zero point
  return SaturateInt<T>(RoundedToInt64(r) + zero_point);
}

// x = float(q - zero_point) * scale.
inline float DequantizeValue(int64_t q, int64_t zero_point, float scale) {
  return static_cast<float>(q - zero_point) * scale;
}

// multiplier = (a_scale * b_scale) / y_scale in float32.
inline float RequantizeMultiplier(float a_scale, float b_scale, float y_scale) {
  return a_scale * b_scale / y_scale;
}

// y = saturate(round_half_even(float(acc) * multiplier) + zero_point).
template <typename T>
inline T Requantize(int32_t acc, float multiplier, int32_t zero_point) {
  const float r = RoundHalfToEven(static_cast<float>(acc) * multiplier);
  return SaturateInt<T>(RoundedToInt64(r) + zero_point);
}

// Bulk versions of QuantizeValue / Requantize for the op loops: bit-identical results (the unit
// tests check them against the scalar definitions), written so the compiler vectorizes them.
// They clamp first (to [qmin - zp, qmax - zp], integers, so clamping commutes with rounding) and
// then round half to even with the exact 1.5 * 2^23 trick: for |r| <= 2^22, (r + 1.5*2^23) lies in
// [2^23, 2^24) where the float spacing is 1, so the addition itself rounds to an integer with the
// default ties-to-even mode, and 1.5*2^23 is even, so ties keep the parity of round_half_even(r).
namespace detail {
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
template <typename T>
inline T ClampRoundAddZero(float r, float lo, float hi, int32_t zero_point) {
  r = r != r ? 0.0f : r;  // NaN -> 0 (then the zero point), as in the scalar definitions
  r = r < lo ? lo : r;
  r = r > hi ? hi : r;
  const float rounded = (r + kRoundMagic) - kRoundMagic;
  return static_cast<T>(static_cast<int32_t>(rounded) + zero_point);
}
}  // namespace detail

template <typename T>
inline void QuantizeSpan(const float* x, int64_t n, float scale, int32_t zero_point, T* y) {
  static_assert(sizeof(T) <= 2, "bulk quantization is for 8/16-bit types");
  const float lo = static_cast<float>(QMin<T>() - zero_point), hi = static_cast<float>(QMax<T>() - zero_point);
  for (int64_t i = 0; i < n; ++i) y[i] = detail::ClampRoundAddZero<T>(x[i] / scale, lo, hi, zero_point);
}

template <typename T>
inline void RequantizeSpan(const int32_t* acc, int64_t n, float multiplier, int32_t zero_point, T* y) {
  static_assert(sizeof(T) <= 2, "bulk requantization is for 8/16-bit types");
  const float lo = static_cast<float>(QMin<T>() - zero_point), hi = static_cast<float>(QMax<T>() - zero_point);
  for (int64_t i = 0; i < n; ++i) {
    y[i] = detail::ClampRoundAddZero<T>(static_cast<float>(acc[i]) * multiplier, lo, hi, zero_point);
  }
}

// DynamicQuantizeLinear parameters (uint8), exactly as ONNX specifies:
//   min' = min(0, min(x)), max' = max(0, max(x))        (the range always contains 0)
//   scale = (max' - min') / 255                          (float32)
//   zero_point = saturate(round_half_even(0 - min' / scale))   to [0, 255]
// If the range is empty (all inputs 0), scale = 0 and zero_point = 0 (every value quantizes to 0
// and dequantizes back to exactly 0). Non-finite inputs are ignored for the range.
struct DynamicParams {
  float scale = 0;
  uint8_t zero_point = 0;
};
DynamicParams ComputeDynamicParams(const float* x, int64_t n);

// Zero-point-corrected operand: value - zero_point, exact in int16 for 8-bit types.
using QOperand = int16_t;

// Integer GEMM: C[m, n] = sum_k A[m, k] * B[k, n], with A (M x K, row stride lda) and B
// (K x N, row stride ldb) already zero-point corrected; C is M x N with row stride ldc.
// Accumulates exactly in 32 bits (wrapping modulo 2^32 on overflow, never undefined behaviour).
// Cache-friendly: row of C kept hot, B streamed row by row (k-outer / n-inner loop order), blocked
// over N so the C row block stays in L1.
void IntegerGemm(int64_t M, int64_t N, int64_t K, const QOperand* A, int64_t lda, const QOperand* B,
                 int64_t ldb, int32_t* C, int64_t ldc);

}  // namespace quantkit::rt::quant
