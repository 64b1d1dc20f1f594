// Helpers shared by the elementwise and reduction/normalisation op families: compile-time type
// sets and dispatch, bulk float16/bfloat16 conversion, a parallel-range wrapper and the
// numpy-broadcast iteration plan (collapsed dims, contiguous inner runs).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/thread_pool.h"
#include "quantkit/float16.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"
#include "runtime/kernel.h"
#include "runtime/ops/op_util.h"

namespace quantkit::rt::ew {

// ---------------------------------------------------------------------------------------------
// Type sets (bit i = DType code i).
constexpr uint32_t Bit(DType t) { return 1u << static_cast<int>(t); }
constexpr uint32_t kHalfTypes = Bit(DType::kFloat16) | Bit(DType::kBFloat16);
constexpr uint32_t kFloatTypes = Bit(DType::kFloat32) | Bit(DType::kFloat64) | kHalfTypes;
constexpr uint32_t kSignedInts = Bit(DType::kInt8) | Bit(DType::kInt16) | Bit(DType::kInt32) | Bit(DType::kInt64);
constexpr uint32_t kUnsignedInts =
    Bit(DType::kUInt8) | Bit(DType::kUInt16) | Bit(DType::kUInt32) | Bit(DType::kUInt64);
constexpr uint32_t kIntTypes = kSignedInts | kUnsignedInts;
constexpr uint32_t kNumericTypes = kFloatTypes | kIntTypes;
constexpr uint32_t kBoolType = Bit(DType::kBool);

inline bool IsHalf(DType t) { return t == DType::kFloat16 || t == DType::kBFloat16; }
inline bool InSet(uint32_t set, DType t) {
  const int c = static_cast<int>(t);
  return c >= 0 && c < 32 && (set & (1u << c)) != 0;
}

// Calls f(T{}) for the C++ type of dtype, instantiating only types in kSet. Half types are never
// dispatched (callers convert them to float32 first).
template <uint32_t kSet, typename F>
Status Dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: if constexpr ((kSet & Bit(DType::kFloat32)) != 0) return f(float{}); break;
    case DType::kFloat64: if constexpr ((kSet & Bit(DType::kFloat64)) != 0) return f(double{}); break;
    case DType::kInt8: if constexpr ((kSet & Bit(DType::kInt8)) != 0) return f(int8_t{}); break;
    case DType::kUInt8: if constexpr ((kSet & Bit(DType::kUInt8)) != 0) return f(uint8_t{}); break;
    case DType::kInt16: if constexpr ((kSet & Bit(DType::kInt16)) != 0) return f(int16_t{}); break;
    case DType::kUInt16: if constexpr ((kSet & Bit(DType::kUInt16)) != 0) return f(uint16_t{}); break;
    case DType::kInt32: if constexpr ((kSet & Bit(DType::kInt32)) != 0) return f(int32_t{}); break;
    case DType::kUInt32: if constexpr ((kSet & Bit(DType::kUInt32)) != 0) return f(uint32_t{}); break;
    case DType::kInt64: if constexpr ((kSet & Bit(DType::kInt64)) != 0) return f(int64_t{}); break;
    case DType::kUInt64: if constexpr ((kSet & Bit(DType::kUInt64)) != 0) return f(uint64_t{}); break;
    case DType::kBool: if constexpr ((kSet & Bit(DType::kBool)) != 0) return f(bool{}); break;
    default: break;
  }
  return Unimplemented(fmt::format("element type {} is not supported", DTypeName(dtype)));
}

// Float -> integer without UB: NaN -> 0, out-of-range values saturate to the int64 range and are
// then wrapped to the destination width (matches numpy/x86 for in-range values).
template <typename D, typename S>
inline D FloatToInt(S s) {
  if (std::isnan(s)) return D{0};
  if constexpr (std::is_same_v<D, uint64_t>) {
    if (s >= static_cast<S>(18446744073709551616.0)) return std::numeric_limits<uint64_t>::max();
    if (s >= static_cast<S>(9223372036854775808.0)) return static_cast<uint64_t>(s);
  }
  if (s >= static_cast<S>(9223372036854775807.0)) return static_cast<D>(std::numeric_limits<int64_t>::max());
  if (s <= static_cast<S>(-9223372036854775808.0)) return static_cast<D>(std::numeric_limits<int64_t>::min());
  return static_cast<D>(static_cast<int64_t>(s));
}

// ---------------------------------------------------------------------------------------------
// Fast float32 math on 4-wide GCC vectors (explicit SIMD: GCC does not if-convert the clamps of
// scalar loops under the default -ftrapping-math, so scalar versions would not vectorise).
// Accuracy vs libm (dense sweeps in the unit tests): exp ~1 ulp (results below ~2e-38 flush to
// 0), tanh ~2 ulp, erf <= 4e-7 absolute. NaN propagates, overflow gives inf.
namespace simd {

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));  // bit arithmetic that wraps

inline v4f Splat(float v) { return v4f{v, v, v, v}; }
inline v4f Load(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void Store(float* p, v4f v) { std::memcpy(p, &v, sizeof v); }
// NaN in `a` yields `b` (used for clamping; callers restore NaN at the end).
inline v4f Min(v4f a, v4f b) { return a < b ? a : b; }
inline v4f Max(v4f a, v4f b) { return a > b ? a : b; }
inline v4f Abs(v4f x) { return (v4f)((v4i)x & 0x7fffffff); }
inline v4f CopySign(v4f mag, v4f sgn) {
  return (v4f)(((v4i)mag & 0x7fffffff) | ((v4i)sgn & static_cast<int32_t>(0x80000000u)));
}
inline v4f KeepNaN(v4f x, v4f res) { return x == x ? res : x; }

// exp: x = n ln2 + r (Cephes constants), degree-6 polynomial for e^r, 2^n from exponent bits.
// Generic over the vector width (V float lanes, VI / VU their int32 / uint32 views): each lane
// sees the same operations, so the same bits at every width. Vectors by reference, as ErfV.
template <typename V, typename VI, typename VU>
__attribute__((always_inline)) inline void ExpV(const V& x, V& out) {
  const V zero = {};
  const V lo = zero + -87.3365478515625f, hi = zero + 89.0f;
  const V xm = x > lo ? x : lo;  // Max(x, lo)
  const V xc = xm < hi ? xm : hi;  // Min(., hi)
  // Round x*log2(e) to nearest with the 1.5*2^23 trick; the integer is in t's low mantissa bits.
  const V t = xc * 1.44269504088896341f + 12582912.0f;
  const V n = t - 12582912.0f;
  const VI ni = (VI)((VU)t - 0x4B400000u);
  V r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V y = zero + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  // 2^n as 2^(n-1) * 2 so that n = 128 overflows to inf instead of wrapping.
  const V scale = (V)((VU)(ni + 126) << 23);
  const V res = y * scale * 2.0f;
  out = x == x ? res : x;  // KeepNaN
}
inline v4f Exp(v4f x) {
  v4f y;
  ExpV<v4f, v4i, v4u>(x, y);
  return y;
}

// tanh: odd Taylor series up to x^17 for |x| < 0.55, 1 - 2/(e^{2|x|} + 1) above.
inline v4f Tanh(v4f x) {
  const v4f ax = Abs(x);
  const v4f x2 = x * x;
  v4f p = Splat(0.000590027440945586f);
  p = p * x2 - 0.0014558343870513183f;
  p = p * x2 + 0.003592128036572481f;
  p = p * x2 - 0.008863235529902197f;
  p = p * x2 + 0.021869488536155203f;
  p = p * x2 - 0.05396825396825397f;
  p = p * x2 + 0.13333333333333333f;
  p = p * x2 - 0.3333333333333333f;
  p = p * x2 + 1.0f;
  const v4f small = p * x;
  const v4f e = Exp(Min(ax * 2.0f, Splat(88.0f)));
  const v4f big = CopySign(1.0f - 2.0f / (e + 1.0f), x);
  return KeepNaN(x, ax < 0.55f ? small : big);
}

// 16 and 8 floats: the AVX-512 and AVX2 builds of the vector math (the same operations per lane
// as v4f's).
typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

// erf: rational approximation x P(x^2) / Q(x^2) on [-4, 4] (Eigen's coefficients). Generic over
// the vector width V (v4f, v8f, v16f): each lane sees the same operations, so the same bits. Vectors
// by reference: a 64-byte vector passed by value outside AVX-512 code would change the ABI.
template <typename V>
__attribute__((always_inline)) inline void ErfV(const V& x, V& out) {
  const V zero = {};
  const V lo = zero - 4.0f, hi = zero + 4.0f;
  const V xc = x > lo ? x : lo;     // Max(x, -4), as Max above
  const V xcc = xc < hi ? xc : hi;  // Min(., 4), as Min above
  const V x2 = xcc * xcc;
  V p = zero + -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  p = p * xcc;
  V q = zero + -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  out = x == x ? p / q : x;  // KeepNaN
}
inline v4f Erf(v4f x) {
  v4f y;
  ErfV(x, y);
  return y;
}

inline v4f Sigmoid(v4f x) { return 1.0f / (1.0f + Exp(-x)); }

// y[i] = f(x[i]) over float arrays (x == y allowed), 4 at a time; the tail is zero-padded.
template <typename F>
inline void Map(const float* x, float* y, int64_t n, const F& f) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) Store(y + i, f(Load(x + i)));
  if (i < n) {
    float buf[4] = {0, 0, 0, 0};
    std::memcpy(buf, x + i, (n - i) * sizeof(float));
    Store(buf, f(Load(buf)));
    std::memcpy(y + i, buf, (n - i) * sizeof(float));
  }
}

}  // namespace simd

inline float FastExp(float x) { return simd::Exp(simd::Splat(x))[0]; }
inline float FastTanh(float x) { return simd::Tanh(simd::Splat(x))[0]; }
inline float FastErf(float x) { return simd::Erf(simd::Splat(x))[0]; }

// Type-generic scalar front ends: float uses the fast versions, double uses libm.
template <typename T>
inline T ExpT(T x) {
  if constexpr (std::is_same_v<T, float>) return FastExp(x);
  else return std::exp(x);
}
template <typename T>
inline T TanhT(T x) {
  if constexpr (std::is_same_v<T, float>) return FastTanh(x);
  else return std::tanh(x);
}
template <typename T>
inline T ErfT(T x) {
  if constexpr (std::is_same_v<T, float>) return FastErf(x);
  else return std::erf(x);
}
// Array exp (x == y allowed). Float: 8 at a time where the ISA chosen for the process has AVX2
// (ExpArrayAvx2, elementwise_unary.cc), else 4; the same bits.
int64_t ExpArrayAvx2(const float* x, float* y, int64_t n);  // returns how many it did
template <typename T>
inline void ExpArray(const T* x, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t done = ExpArrayAvx2(x, y, n);
    simd::Map(x + done, y + done, n - done, [](simd::v4f v) { return simd::Exp(v); });
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// Half conversions (bit-exact with HalfToFloat / FloatToHalf / FloatToBFloat16, 4 at a time;
// after F. Giesen's branch-free conversions).
namespace simd {
// Lanes hold float16 bit patterns (low 16 bits); returns float32 bit patterns.
inline v4i HalfToFloatBits(v4i hi) {
  const v4u h = (v4u)hi;
  const v4u shifted_exp = v4u{} + (0x7c00u << 13);
  v4u o = (h & 0x7fffu) << 13;
  const v4u exp = o & shifted_exp;
  o += (127u - 15u) << 23;
  o += (v4u)(exp == shifted_exp) & ((128u - 16u) << 23);  // inf / NaN
  const v4f denorm = (v4f)(o + (1u << 23)) - Splat(6.103515625e-05f);  // subnormal: renormalise (2^-14)
  o = exp == 0u ? (v4u)denorm : o;
  return (v4i)(o | ((h & 0x8000u) << 16));
}
// Float32 bit patterns to float16 bit patterns (round to nearest even; NaN -> 0x7e00 | sign).
inline v4i FloatToHalfBits(v4i fi) {
  const v4u f = (v4u)fi;
  const v4u sign = f & 0x80000000u;
  const v4u u = f ^ sign;
  const v4u big = u > 0x7f800000u ? v4u{} + 0x7e00u : v4u{} + 0x7c00u;
  const v4u small = (v4u)((v4f)u + Splat(0.5f)) - 0x3f000000u;  // magic 2^-1 aligns the subnormal mantissa
  const v4u normal = (u - (112u << 23) + 0xfffu + ((u >> 13) & 1u)) >> 13;
  const v4u r = u >= (143u << 23) ? big : (u < (113u << 23) ? small : normal);
  return (v4i)(r | (sign >> 16));
}
inline v4i FloatToBFloat16Bits(v4i f) {
  const v4u uf = (v4u)f;
  const v4i rounded = (v4i)((uf + (0x7fffu + ((uf >> 16) & 1u))) >> 16);
  const v4i nan = (v4i)((uf >> 16) | 0x40u);
  return (f & 0x7fffffff) > 0x7f800000 ? nan : rounded;
}
}  // namespace simd

inline void HalfToFloatN(const uint16_t* src, float* dst, int64_t n, DType t) {
  int64_t i = 0;
  if (t == DType::kFloat16) {
    for (; i + 4 <= n; i += 4) {
      const simd::v4i h = {src[i], src[i + 1], src[i + 2], src[i + 3]};
      const simd::v4i o = simd::HalfToFloatBits(h);
      std::memcpy(dst + i, &o, sizeof o);
    }
    for (; i < n; ++i) dst[i] = HalfToFloat(src[i]);
  } else {
    for (; i < n; ++i) dst[i] = BFloat16ToFloat(src[i]);
  }
}
inline void FloatToHalfN(const float* src, uint16_t* dst, int64_t n, DType t) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    simd::v4i f;
    std::memcpy(&f, src + i, sizeof f);
    const simd::v4i h = t == DType::kFloat16 ? simd::FloatToHalfBits(f) : simd::FloatToBFloat16Bits(f);
    for (int j = 0; j < 4; ++j) dst[i + j] = static_cast<uint16_t>(h[j]);
  }
  for (; i < n; ++i) dst[i] = t == DType::kFloat16 ? FloatToHalf(src[i]) : FloatToBFloat16(src[i]);
}

// Runs fn(begin, end) over [0, n): in parallel when n is large enough.
template <typename Fn>
void ParallelRange(ThreadPool* tp, int64_t n, int64_t grain, const Fn& fn) {
  if (n <= 0) return;
  if (tp == nullptr || tp->num_threads() <= 1 || n <= grain) {
    fn(int64_t{0}, n);
    return;
  }
  tp->ParallelFor(n, grain, [&](int64_t b, int64_t e) { fn(b, e); });
}

// Float32 copy of a float16/bfloat16 tensor (others returned as is).
inline StatusOr<Tensor> ToFloat(const Tensor& t, Allocator* alloc, ThreadPool* tp) {
  if (!IsHalf(t.dtype())) return t;
  QK_ASSIGN_OR_RETURN(Tensor out, Tensor::CreateUninitialized(DType::kFloat32, t.shape(), alloc, "float32 copy"));
  const uint16_t* src = t.data<uint16_t>();
  float* dst = out.data<float>();
  const DType dt = t.dtype();
  ParallelRange(tp, t.numel(), 1 << 16, [&](int64_t b, int64_t e) { HalfToFloatN(src + b, dst + b, e - b, dt); });
  return out;
}
// Writes a float32 buffer into a float16/bfloat16 destination.
inline void StoreHalf(const float* src, uint16_t* dst, int64_t n, DType t, ThreadPool* tp) {
  ParallelRange(tp, n, 1 << 16, [&](int64_t b, int64_t e) { FloatToHalfN(src + b, dst + b, e - b, t); });
}

// ---------------------------------------------------------------------------------------------
// Broadcast iteration. The output shape is collapsed: dims of size 1 are dropped and adjacent dims
// are merged when every input is contiguous (or broadcast) across them. The innermost collapsed
// dim then has, for every input, step 0 (broadcast) or 1 (contiguous).
template <size_t K>
struct BcastPlan {
  Shape out_shape;
  int64_t numel = 0;
  std::vector<int64_t> dims;                    // collapsed output dims (at least one)
  std::vector<std::array<int64_t, K>> strides;  // per collapsed dim, per input
};

template <size_t K>
StatusOr<BcastPlan<K>> MakeBcastPlan(const std::array<const Shape*, K>& shapes) {
  BcastPlan<K> p;
  Shape out = *shapes[0];
  for (size_t k = 1; k < K; ++k) {
    QK_ASSIGN_OR_RETURN(out, BroadcastShapes(out, *shapes[k]));
  }
  for (int64_t d : out) {
    if (d < 0) return InvalidArgument(fmt::format("negative dimension in shape {}", ShapeToString(out)));
  }
  const size_t r = out.size();
  std::array<std::vector<int64_t>, K> st;
  for (size_t k = 0; k < K; ++k) st[k] = BroadcastStrides(*shapes[k], r);
  for (size_t d = 0; d < r; ++d) {
    if (out[d] == 1) continue;
    std::array<int64_t, K> s{};
    for (size_t k = 0; k < K; ++k) s[k] = st[k][d];
    if (!p.dims.empty()) {
      bool merge = true;
      for (size_t k = 0; k < K; ++k) merge = merge && p.strides.back()[k] == s[k] * out[d];
      if (merge) {
        p.dims.back() *= out[d];
        p.strides.back() = s;
        continue;
      }
    }
    p.dims.push_back(out[d]);
    p.strides.push_back(s);
  }
  if (p.dims.empty()) {
    p.dims.push_back(1);
    p.strides.push_back({});
  }
  p.numel = NumElements(out);
  p.out_shape = std::move(out);
  return p;
}

// Calls fn(out_offset, in_offsets, len, in_steps) for each contiguous inner run of output
// elements [begin, end). in_steps[k] is 0 (broadcast) or 1.
template <size_t K, typename Fn>
void WalkRuns(const BcastPlan<K>& p, int64_t begin, int64_t end, const Fn& fn) {
  const size_t nd = p.dims.size();
  const int64_t inner = p.dims[nd - 1];
  const std::array<int64_t, K> step = p.strides[nd - 1];
  int64_t small_idx[8];
  std::vector<int64_t> big_idx;
  int64_t* idx = small_idx;
  if (nd > 8) {
    big_idx.resize(nd);
    idx = big_idx.data();
  }
  std::array<int64_t, K> off{};
  int64_t rem = begin;
  for (size_t d = nd; d-- > 0;) {
    idx[d] = rem % p.dims[d];
    rem /= p.dims[d];
    for (size_t k = 0; k < K; ++k) off[k] += idx[d] * p.strides[d][k];
  }
  int64_t cur = begin;
  while (cur < end) {
    const int64_t len = std::min(inner - idx[nd - 1], end - cur);
    fn(cur, off, len, step);
    cur += len;
    if (cur >= end) break;
    // The run reached the end of the inner dim: move to the start of the next one.
    for (size_t k = 0; k < K; ++k) off[k] -= idx[nd - 1] * step[k];
    idx[nd - 1] = 0;
    for (size_t d = nd - 1; d-- > 0;) {
      ++idx[d];
      for (size_t k = 0; k < K; ++k) off[k] += p.strides[d][k];
      if (idx[d] < p.dims[d]) break;
      for (size_t k = 0; k < K; ++k) off[k] -= idx[d] * p.strides[d][k];
      idx[d] = 0;
    }
  }
}

template <size_t K, typename Fn>
void ForEachRun(const BcastPlan<K>& p, ThreadPool* tp, int64_t grain, const Fn& fn) {
  ParallelRange(tp, p.numel, grain, [&](int64_t b, int64_t e) { WalkRuns(p, b, e, fn); });
}


// ---------------------------------------------------------------------------------------------
// Shared by the elementwise .cc files.
constexpr int64_t kCheapGrain = 1 << 15;  // elements per parallel chunk, cheap ops
constexpr int64_t kHeavyGrain = 1 << 12;  // transcendental ops

// ---------------------------------------------------------------------------------------------
// Integer arithmetic that wraps instead of overflowing (no UB on int32/int64 overflow).
template <typename T>
using Wide = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <typename T>
constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

template <typename T>
inline T WrapAdd(T a, T b) {
  if constexpr (kIsInt<T>) {
    return static_cast<T>(static_cast<Wide<T>>(a) + static_cast<Wide<T>>(b));
  } else {
    return a + b;
  }
}
template <typename T>
inline T WrapSub(T a, T b) {
  if constexpr (kIsInt<T>) {
    return static_cast<T>(static_cast<Wide<T>>(a) - static_cast<Wide<T>>(b));
  } else {
    return a - b;
  }
}
template <typename T>
inline T WrapMul(T a, T b) {
  if constexpr (kIsInt<T>) {
    return static_cast<T>(static_cast<Wide<T>>(a) * static_cast<Wide<T>>(b));
  } else {
    return a * b;
  }
}
template <typename T>
inline T WrapNeg(T a) {
  if constexpr (kIsInt<T>) {
    return static_cast<T>(Wide<T>{0} - static_cast<Wide<T>>(a));
  } else {
    return -a;
  }
}

// Any numeric -> any numeric (no halves), following ONNX Cast semantics.

// ---------------------------------------------------------------------------------------------
// Binary engine.
template <typename TA, typename TB, typename TO, typename F>
inline void BinaryRun(const TA* a, const TB* b, TO* o, int64_t n, int64_t sa, int64_t sb, const F& f) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa) {
    const TB bv = *b;
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sb) {
    const TA av = *a;
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    const TO v = f(*a, *b);
    std::fill(o, o + n, v);
  }
}

template <typename TA, typename TB, typename TO, typename F>
void BinaryBroadcast(const BcastPlan<2>& p, const TA* a, const TB* b, TO* o, ThreadPool* tp, int64_t grain,
                     const F& f) {
  ForEachRun(p, tp, grain, [&](int64_t oo, const std::array<int64_t, 2>& io, int64_t n, const std::array<int64_t, 2>& st) {
    BinaryRun(a + io[0], b + io[1], o + oo, n, st[0], st[1], f);
  });
}

// Ops: kTypes = the supported element types; kBoolOut = output is bool; kCheckDivisor = integer
// division (input #1 must not contain 0). Optional Init(const KernelInit&) reads attributes.

// Builds an op functor, calling its optional Init(const KernelInit&) (attribute validation).
template <typename Op>
StatusOr<Op> MakeOp(const KernelInit& init) {
  Op op;
  if constexpr (requires { op.Init(init); }) {
    QK_RETURN_IF_ERROR(op.Init(init));
  }
  (void)init;
  return op;
}

// Registration of the op groups living in elementwise_unary.cc / elementwise_cast.cc.
void RegisterElementwiseUnaryOps(KernelRegistry& r);  // math functions, activations, Clip
void RegisterElementwiseCastOps(KernelRegistry& r);   // Cast, CastLike, Where

}  // namespace quantkit::rt::ew
