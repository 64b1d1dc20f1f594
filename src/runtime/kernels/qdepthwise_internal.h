// The body of the quantized depthwise kernel, included by the portable build (qdepthwise.cc) and
// the avx2 build (x86/qdepthwise_avx2.cc): always inlined, so each build vectorizes it for its ISA.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "runtime/kernels/qdepthwise.h"
#include "runtime/kernels/ref/quantize.h"

namespace quantkit::kernels::qdepthwise {

// Plane geometry: padded rows and, per stride phase, padded columns (column c of the padded row
// lives in phase c % stride_w at index c / stride_w). The columns reach the output width rounded
// up to kRowBlock, so the avx2 build computes whole 16-column blocks (extra columns are dropped).
constexpr int64_t kRowBlock = 16;

inline int64_t PaddedOutputCols(const QDepthwiseShape& s) { return (s.OW + kRowBlock - 1) / kRowBlock * kRowBlock; }

struct PlaneLayout {
  int64_t rows = 0, phase_len = 0, row_len = 0;  // row_len = stride_w * phase_len
};

inline PlaneLayout Layout(const QDepthwiseShape& s) {
  PlaneLayout p;
  p.rows = std::max(s.pad_top + s.H, (s.OH - 1) * s.stride_h + (s.KH - 1) * s.dilation_h + 1);
  const int64_t cols =
      std::max(s.pad_left + s.W, (PaddedOutputCols(s) - 1) * s.stride_w + (s.KW - 1) * s.dilation_w + 1);
  p.phase_len = (cols + s.stride_w - 1) / s.stride_w;
  p.row_len = p.phase_len * s.stride_w;
  return p;
}

// Offsets of each tap's run (taps in (kh, kw) order) from the start of the plane row of output
// row 0. Column kw * dilation_w lies in phase (its % stride_w) at index (its / stride_w): stepped
// without a division per tap (this runs once per channel, thousands of times per inference).
inline void TapOffsets(const QDepthwiseShape& s, const PlaneLayout& p, int64_t* tap_offset) {
  const int64_t step_q = s.dilation_w / s.stride_w, step_r = s.dilation_w % s.stride_w;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    int64_t q = 0, r = 0;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      tap_offset[kh * s.KW + kw] = kh * s.dilation_h * p.row_len + r * p.phase_len + q;
      q += step_q;
      r += step_r;
      if (r >= s.stride_w) {
        r -= s.stride_w;
        ++q;
      }
    }
  }
}

template <typename TX>
__attribute__((always_inline)) inline void FillPlane(const QDepthwiseShape& s, const PlaneLayout& p,
                                                     const TX* __restrict x, int32_t x_zp, int16_t* __restrict plane) {
  // Locals: the stores could alias `s` and `p` for the compiler.
  const int64_t H = s.H, W = s.W, pad_top = s.pad_top, pad_left = s.pad_left, row_len = p.row_len;
  std::memset(plane, 0, static_cast<size_t>(p.rows * p.row_len) * sizeof(int16_t));
  const int64_t sw = s.stride_w;
  // Phase by phase: padded column c = pad_left + iw goes to phase c % sw, index c / sw. The
  // divisions once per phase, not per row.
  for (int64_t phase = 0; phase < sw; ++phase) {
    const int64_t c_end = pad_left + W;
    const int64_t c = pad_left + ((phase - pad_left % sw) % sw + sw) % sw;  // first column of this phase
    if (c >= c_end) continue;
    const int64_t dst_offset = phase * p.phase_len + c / sw, src_offset = c - pad_left;
    const int64_t count = (c_end - c + sw - 1) / sw;
    for (int64_t ih = 0; ih < H; ++ih) {
      int16_t* dst = plane + (ih + pad_top) * row_len + dst_offset;
      const TX* src = x + ih * W + src_offset;
      if (sw == 1) {
        for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<int16_t>(static_cast<int32_t>(src[i]) - x_zp);
      } else if (sw == 2) {  // a constant stride: the compiler vectorizes the gather
        for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<int16_t>(static_cast<int32_t>(src[2 * i]) - x_zp);
      } else {
        for (int64_t i = 0; i < count; ++i) dst[i] = static_cast<int16_t>(static_cast<int32_t>(src[i * sw]) - x_zp);
      }
    }
  }
}

// One output row's accumulators: acc[ow] = bias + sum_t src[t][ow] * w[t] (wrapping int32),
// src[t] = the plane run of tap t for this row. The portable version; x86/qdepthwise_avx2.cc has
// an intrinsics one (pairs of taps with vpmaddwd) that gives the same integers.
__attribute__((always_inline)) inline void AccumulateRowPortable(const int16_t* const* src, const int32_t* w,
                                                                 int64_t taps, int64_t n, int32_t bias, int32_t* acc) {
  for (int64_t i = 0; i < n; ++i) acc[i] = bias;
  for (int64_t t = 0; t < taps; ++t) {
    const int16_t* st = src[t];
    const uint32_t wv = static_cast<uint32_t>(w[t]);
    // In uint32: never signed overflow.
    for (int64_t i = 0; i < n; ++i) {
      acc[i] = static_cast<int32_t>(static_cast<uint32_t>(acc[i]) + static_cast<uint32_t>(static_cast<int32_t>(st[i])) * wv);
    }
  }
}

using AccumulateRowFn = void (*)(const int16_t* const* src, const int32_t* w, int64_t taps, int64_t n, int32_t bias,
                                 int32_t* acc);

// One output row requantized and stored: y[i] = ClampRoundAddZero(float(acc[i]) * multiplier, lo,
// hi, zp) as a byte (int8 keeps its bit pattern). `acc` may be overwritten. The portable version
// (two loops the compiler vectorizes; one did not); x86/qdepthwise_avx2.cc has an intrinsics one
// giving the same bytes.
__attribute__((always_inline)) inline void RequantizeRowPortable(int32_t* __restrict acc, int64_t n, float multiplier,
                                                                 float lo, float hi, int32_t zp,
                                                                 uint8_t* __restrict y) {
  for (int64_t i = 0; i < n; ++i)
    acc[i] = rt::quant::detail::ClampRoundAddZero<int32_t>(static_cast<float>(acc[i]) * multiplier, lo, hi, zp);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(acc[i]);
}

using RequantizeRowFn = void (*)(int32_t* acc, int64_t n, float multiplier, float lo, float hi, int32_t zp, uint8_t* y);

// Output row oh of channel c from its accumulators row_acc[0, OW) (whole 16-column blocks for the
// avx2 requantize): the sums, the floats, or the requantized bytes. Shared by the plane kernel
// (Run) and the channel-lane kernel (RunLanes), so both give the same outputs.
template <typename TY, RequantizeRowFn kRequantize>
__attribute__((always_inline)) inline void FinishRow(const QDepthwiseChannel& c, int64_t oh, int64_t OW,
                                                     int32_t* __restrict row_acc) {
  if (c.acc_out) {
    std::memcpy(c.acc_out + oh * OW, row_acc, static_cast<size_t>(OW) * sizeof(int32_t));
  } else if (c.y_float) {
    // Locals: the float stores could alias `c` for the compiler.
    float* __restrict out = c.y_float + oh * OW;
    const float y_scale = c.y_scale, clamp_lo = c.y_clamp_lo, clamp_hi = c.y_clamp_hi;
    for (int64_t i = 0; i < OW; ++i) out[i] = static_cast<float>(row_acc[i]) * y_scale;
    if (c.y_bias) {
      const float b = *c.y_bias;
      for (int64_t i = 0; i < OW; ++i) out[i] = out[i] + b;
    }
    if (c.y_clamp) {
      for (int64_t i = 0; i < OW; ++i) out[i] = std::min(std::max(out[i], clamp_lo), clamp_hi);
    }
  } else {
    const int32_t y_zp = c.y_zero_point;
    const float lo = static_cast<float>(c.y_min - y_zp), hi = static_cast<float>(c.y_max - y_zp);
    kRequantize(row_acc, OW, c.multiplier, lo, hi, y_zp, reinterpret_cast<uint8_t*>(static_cast<TY*>(c.y) + oh * OW));
  }
}

template <typename TX, typename TY, AccumulateRowFn kAccumulate, RequantizeRowFn kRequantize>
__attribute__((always_inline)) inline void Run(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane,
                                               int32_t* acc) {
  const PlaneLayout p = Layout(s);
  FillPlane(s, p, static_cast<const TX*>(c.x), c.x_zero_point, plane);
  // Locals, not reads of `c` in the loops: the output stores could alias it for the compiler.
  const int32_t bias = c.bias;
  const int32_t* w = c.w;
  int32_t* __restrict row_acc = acc;
  const int64_t taps = s.KH * s.KW;
  // Offsets of each tap's run from the start of the plane row of output row 0.
  constexpr int64_t kMaxStackTaps = 64;
  int64_t tap_offset_stack[kMaxStackTaps];
  const int16_t* tap_src_stack[kMaxStackTaps];
  std::vector<int64_t> tap_offset_heap;
  std::vector<const int16_t*> tap_src_heap;
  if (taps > kMaxStackTaps) {
    tap_offset_heap.resize(static_cast<size_t>(taps));
    tap_src_heap.resize(static_cast<size_t>(taps));
  }
  int64_t* tap_offset = taps > kMaxStackTaps ? tap_offset_heap.data() : tap_offset_stack;
  const int16_t** tap_src = taps > kMaxStackTaps ? tap_src_heap.data() : tap_src_stack;
  TapOffsets(s, p, tap_offset);
  // Locals again: with y's byte stores possibly aliasing `s`, the loops would reload its fields.
  const int64_t OH = s.OH, OW = s.OW, row_step = s.stride_h * p.row_len;
  for (int64_t oh = 0; oh < OH; ++oh) {
    const int16_t* row = plane + oh * row_step;
    for (int64_t t = 0; t < taps; ++t) tap_src[t] = row + tap_offset[t];
    kAccumulate(tap_src, w, taps, OW, bias, row_acc);
    FinishRow<TY, kRequantize>(c, oh, OW, row_acc);
  }
}

template <AccumulateRowFn kAccumulate, RequantizeRowFn kRequantize>
__attribute__((always_inline)) inline void Dispatch(const QDepthwiseShape& s, const QDepthwiseChannel& c,
                                                    int16_t* plane, int32_t* acc) {
  if (c.x_signed) {
    if (c.y_signed) return Run<int8_t, int8_t, kAccumulate, kRequantize>(s, c, plane, acc);
    return Run<int8_t, uint8_t, kAccumulate, kRequantize>(s, c, plane, acc);
  }
  if (c.y_signed) return Run<uint8_t, int8_t, kAccumulate, kRequantize>(s, c, plane, acc);
  return Run<uint8_t, uint8_t, kAccumulate, kRequantize>(s, c, plane, acc);
}

void RunAvx2(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane, int32_t* acc);

// The channel-lane kernel (qdepthwise.h, QDepthwiseConv2DLanes), for kernels of up to
// kLanesMaxTaps taps (its tap tables live on the stack).
constexpr int64_t kLanesMaxTaps = 64;
struct LanesLayout {
  int64_t rows = 0, cols = 0;  // the padded input: every tap of every output inside
};
inline LanesLayout Lanes(const QDepthwiseShape& s) {
  LanesLayout l;
  l.rows = std::max(s.pad_top + s.H, (s.OH - 1) * s.stride_h + (s.KH - 1) * s.dilation_h + 1);
  l.cols = std::max(s.pad_left + s.W, (s.OW - 1) * s.stride_w + (s.KW - 1) * s.dilation_w + 1);
  return l;
}
void RunLanesAvx2(const QDepthwiseShape& s, const QDepthwiseChannel* c, int n, int16_t* plane, int32_t* acc_lanes,
                  int32_t* row);

}  // namespace quantkit::kernels::qdepthwise
