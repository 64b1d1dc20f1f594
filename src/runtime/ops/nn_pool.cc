// Pooling: MaxPool (dilations, ceil_mode, storage_order, Indices output), AveragePool
// (count_include_pad, ceil_mode, dilations), LpPool, GlobalAveragePool, GlobalMaxPool,
// GlobalLpPool. Windowed pools support 1 to 3 spatial dims (promoted to 3-D internally); global
// pools any rank. float16/bfloat16 compute in float32; MaxPool also takes int8/uint8.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "runtime/kernels/pool_f32.h"
#include "runtime/ops/nn_common.h"
#include "runtime/ops/op_util.h"

namespace quantkit::rt {
namespace {

enum class PoolKind { kMax, kAverage, kLp };

inline int64_t CeilDiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// Per spatial dim (promoted to 3), for every output coordinate: the range of kernel taps that
// land inside the input, and (for count_include_pad) the number of taps inside the padded input.
struct PoolDim {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1, pad_begin = 0;
  std::vector<int64_t> lo, hi, padded_count;
  void Prepare(int64_t pad_end) {
    lo.resize(out);
    hi.resize(out);
    padded_count.resize(out);
    for (int64_t o = 0; o < out; ++o) {
      const int64_t start = o * stride - pad_begin;
      lo[o] = std::clamp<int64_t>(CeilDiv(-start, dilation), 0, kernel);
      hi[o] = std::clamp<int64_t>(CeilDiv(in - start, dilation), lo[o], kernel);
      const int64_t plo = std::clamp<int64_t>(CeilDiv(-pad_begin - start, dilation), 0, kernel);
      const int64_t phi = std::clamp<int64_t>(CeilDiv(in + pad_end - start, dilation), plo, kernel);
      padded_count[o] = phi - plo;
    }
  }
};

// Spatial dim d of a resolved pooling geometry (Prepare still to be called).
PoolDim PoolDimOf(const kernels::ConvGeometry& g, size_t d) {
  PoolDim pd;
  pd.in = g.in[d];
  pd.out = g.out[d];
  pd.kernel = g.kernel[d];
  pd.stride = g.stride[d];
  pd.dilation = g.dilation[d];
  pd.pad_begin = g.pad_begin[d];
  return pd;
}

struct Pool3 {
  PoolDim d[3];
  int64_t InPlane() const { return d[0].in * d[1].in * d[2].in; }
  int64_t OutPlane() const { return d[0].out * d[1].out * d[2].out; }
};

template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
void MaxPoolPlane(const Pool3& g, const T* x, T* y, int64_t* ind, int64_t ind_base, bool col_major) {
  const PoolDim &D = g.d[0], &H = g.d[1], &W = g.d[2];
  for (int64_t od = 0; od < D.out; ++od) {
    for (int64_t oh = 0; oh < H.out; ++oh) {
      for (int64_t ow = 0; ow < W.out; ++ow) {
        T best = std::numeric_limits<T>::lowest();
        int64_t bd = -1, bh = 0, bw = 0;
        for (int64_t kd = D.lo[od]; kd < D.hi[od]; ++kd) {
          const int64_t id = od * D.stride - D.pad_begin + kd * D.dilation;
          for (int64_t kh = H.lo[oh]; kh < H.hi[oh]; ++kh) {
            const int64_t ih = oh * H.stride - H.pad_begin + kh * H.dilation;
            const T* row = x + (id * H.in + ih) * W.in;
            for (int64_t kw = W.lo[ow]; kw < W.hi[ow]; ++kw) {
              const int64_t iw = ow * W.stride - W.pad_begin + kw * W.dilation;
              const T v = row[iw];
              if (v > best || bd < 0) {
                best = v;
                bd = id;
                bh = ih;
                bw = iw;
              }
            }
          }
        }
        *y++ = best;
        if (ind) {
          const int64_t idx = bd < 0 ? 0
                              : col_major ? bd + D.in * (bh + H.in * bw)
                                          : (bd * H.in + bh) * W.in + bw;
          *ind++ = ind_base + idx;
        }
      }
    }
  }
}

// MaxPool of a plane without indices, depth kernel 1 and width dilation 1: for each output row,
// the element-wise max of the window's input rows (vectorizes), then the max over each window's
// columns of that row: about kh + kw instead of kh * kw compares per output. The same value as
// MaxPoolPlane, whose NaN rule is: the window's first tap wins if it is NaN, otherwise NaNs are
// skipped. So the row max skips NaNs (a NaN is replaced by any later row) and the window's first
// tap is checked on its own. Only the sign of a zero max may differ when -0 and +0 tie.
template <typename T>
void MaxPoolPlaneRows(const Pool3& g, const T* x, T* y, std::vector<T>& row_max, kernels::QGemmIsa isa) {
  const PoolDim &D = g.d[0], &H = g.d[1], &W = g.d[2];
  row_max.resize(static_cast<size_t>(W.in));
  const bool pairs = W.kernel == 2 && W.stride == 2 && W.pad_begin == 0 && W.dilation == 1 && 2 * W.out <= W.in;
  // 3-wide stride-2 windows (ResNet's stem pool): the outputs [fast_lo, fast_hi) whose window
  // lies inside the row take a vector loop (8-bit: no NaNs, so the order of the maxima is free;
  // float: kernels::MaxPool3Stride2RowFloat, the selections below). The same for every row.
  int64_t fast_lo = 0, fast_hi = 0;
  if ((sizeof(T) == 1 || std::is_same_v<T, float>) && W.kernel == 3 && W.stride == 2 && W.dilation == 1) {
    fast_lo = W.out;
    for (int64_t ow = 0; ow < W.out; ++ow) {
      if (W.lo[ow] == 0 && W.hi[ow] == 3) {
        fast_lo = std::min(fast_lo, ow);
        fast_hi = ow + 1;
      }
    }
  }
  for (int64_t od = 0; od < D.out; ++od) {
    const int64_t id = od * D.stride - D.pad_begin + D.lo[od] * D.dilation;  // the one depth tap
    for (int64_t oh = 0; oh < H.out; ++oh, y += W.out) {
      if (D.hi[od] <= D.lo[od] || H.hi[oh] <= H.lo[oh]) {  // window entirely in the padding
        std::fill(y, y + W.out, std::numeric_limits<T>::lowest());
        continue;
      }
      const int64_t ih0 = oh * H.stride - H.pad_begin + H.lo[oh] * H.dilation;
      const T* first = x + (id * H.in + ih0) * W.in;
      if (pairs && H.hi[oh] - H.lo[oh] == 2) {
        // The usual 2x2 window with both rows inside: the row max and the pair max below in one
        // loop, no row buffer (the same comparisons, so the same values).
        const T* second = x + (id * H.in + ih0 + H.dilation) * W.in;
        if constexpr (std::is_same_v<T, float>) {
          kernels::MaxPool2x2RowFloat(first, second, y, W.out, isa);
          continue;
        } else if constexpr (std::is_same_v<T, uint8_t>) {
          kernels::MaxPool2x2RowU8(first, second, y, W.out, isa);
          continue;
        } else if constexpr (std::is_same_v<T, int8_t>) {
          kernels::MaxPool2x2RowS8(first, second, y, W.out, isa);
          continue;
        }
        for (int64_t ow = 0; ow < W.out; ++ow) {
          const T a0 = first[2 * ow], a1 = first[2 * ow + 1], b0 = second[2 * ow], b1 = second[2 * ow + 1];
          const T m0 = (b0 > a0 || a0 != a0) ? b0 : a0, m1 = (b1 > a1 || a1 != a1) ? b1 : a1;
          const T best = m1 > m0 ? m1 : m0;
          y[ow] = a0 != a0 ? a0 : best;  // a NaN first tap wins (never for 8-bit types)
        }
        continue;
      }
      if constexpr (std::is_same_v<T, float> || sizeof(T) == 1) {
        if (fast_hi > fast_lo && H.hi[oh] - H.lo[oh] <= 3) {
          // 3-wide stride-2 windows over at most 3 rows: the row max taken per window column as
          // it is needed (kernels::MaxPool3Stride2RowFloat / U8 / S8), no row buffer.
          const T* rows[3];
          int64_t nrows = 0;
          for (int64_t kh = H.lo[oh]; kh < H.hi[oh]; ++kh) {
            rows[nrows++] = x + (id * H.in + oh * H.stride - H.pad_begin + kh * H.dilation) * W.in;
          }
          const int64_t col = 2 * fast_lo - W.pad_begin;  // inside the row: the window's first tap
          const T* at_col[3] = {rows[0] + col, nrows > 1 ? rows[1] + col : nullptr, nrows > 2 ? rows[2] + col : nullptr};
          if constexpr (std::is_same_v<T, float>) {
            kernels::MaxPool3Stride2RowFloat(at_col, nrows, y + fast_lo, fast_hi - fast_lo, isa);
          } else if constexpr (std::is_same_v<T, uint8_t>) {
            kernels::MaxPool3Stride2RowU8(at_col, nrows, y + fast_lo, fast_hi - fast_lo, isa);
          } else {
            kernels::MaxPool3Stride2RowS8(at_col, nrows, y + fast_lo, fast_hi - fast_lo, isa);
          }
          auto column_max = [&](int64_t c) { return kernels::MaxPoolColumnMax(rows, nrows, c); };
          for (int64_t ow = 0; ow < W.out; ++ow) {  // the edge windows, as the generic loop below
            if (ow == fast_lo) ow = fast_hi;
            if (ow >= W.out) break;
            const int64_t base = ow * W.stride - W.pad_begin;
            if (W.hi[ow] <= W.lo[ow]) {
              y[ow] = std::numeric_limits<T>::lowest();
              continue;
            }
            const T first_tap = rows[0][base + W.lo[ow]];
            T best = column_max(base + W.lo[ow]);
            for (int64_t kw = W.lo[ow] + 1; kw < W.hi[ow]; ++kw) {
              const T v = column_max(base + kw);
              best = v > best ? v : best;
            }
            y[ow] = first_tap != first_tap ? first_tap : best;
          }
          continue;
        }
      }
      std::copy(first, first + W.in, row_max.begin());
      for (int64_t kh = H.lo[oh] + 1; kh < H.hi[oh]; ++kh) {
        const T* r = x + (id * H.in + oh * H.stride - H.pad_begin + kh * H.dilation) * W.in;
        T* m = row_max.data();
        for (int64_t i = 0; i < W.in; ++i) m[i] = (r[i] > m[i] || m[i] != m[i]) ? r[i] : m[i];
      }
      if (pairs) {  // 2-wide, stride 2, no padding (the usual 2x2 pool): a loop that vectorizes
        const T* m = row_max.data();
        if constexpr (sizeof(T) == 1) {
          for (int64_t ow = 0; ow < W.out; ++ow) y[ow] = m[2 * ow + 1] > m[2 * ow] ? m[2 * ow + 1] : m[2 * ow];
        } else {  // the loop below without branches: a NaN first tap wins
          for (int64_t ow = 0; ow < W.out; ++ow) {
            const T first_tap = first[2 * ow];
            const T best = m[2 * ow + 1] > m[2 * ow] ? m[2 * ow + 1] : m[2 * ow];
            y[ow] = first_tap != first_tap ? first_tap : best;
          }
        }
        continue;
      }
      // Float windows here span more than 3 rows: all outputs by the loop below.
      const int64_t skip_lo = sizeof(T) == 1 ? fast_lo : 0, skip_hi = sizeof(T) == 1 ? fast_hi : 0;
      for (int64_t ow = skip_lo; ow < skip_hi; ++ow) {
        const T* m = row_max.data() + 2 * ow - W.pad_begin;  // inside the row: the window's first tap
        const T ab = m[0] > m[1] ? m[0] : m[1];
        y[ow] = ab > m[2] ? ab : m[2];
      }
      for (int64_t ow = 0; ow < W.out; ++ow) {
        if (ow == skip_lo && skip_hi > skip_lo) ow = skip_hi;
        if (ow >= W.out) break;
        const T* m = row_max.data() + ow * W.stride - W.pad_begin;
        if (W.hi[ow] <= W.lo[ow]) {
          y[ow] = std::numeric_limits<T>::lowest();
          continue;
        }
        const T first_tap = first[ow * W.stride - W.pad_begin + W.lo[ow]];
        if (first_tap != first_tap) {  // NaN (never for 8-bit types)
          y[ow] = first_tap;
          continue;
        }
        T best = m[W.lo[ow]];
        for (int64_t kw = W.lo[ow] + 1; kw < W.hi[ow]; ++kw) best = m[kw] > best ? m[kw] : best;
        y[ow] = best;
      }
    }
  }
}

template <typename T>
void AvgLpPoolPlane(const Pool3& g, PoolKind kind, bool count_include_pad, int64_t p, const T* x, T* y) {
  using Acc = AccOf<T>;
  const PoolDim &D = g.d[0], &H = g.d[1], &W = g.d[2];
  for (int64_t od = 0; od < D.out; ++od) {
    for (int64_t oh = 0; oh < H.out; ++oh) {
      for (int64_t ow = 0; ow < W.out; ++ow) {
        Acc sum = 0;
        for (int64_t kd = D.lo[od]; kd < D.hi[od]; ++kd) {
          const int64_t id = od * D.stride - D.pad_begin + kd * D.dilation;
          for (int64_t kh = H.lo[oh]; kh < H.hi[oh]; ++kh) {
            const int64_t ih = oh * H.stride - H.pad_begin + kh * H.dilation;
            const T* row = x + (id * H.in + ih) * W.in;
            const int64_t base = ow * W.stride - W.pad_begin, dil = W.dilation;
            if (kind == PoolKind::kAverage) {
              for (int64_t kw = W.lo[ow]; kw < W.hi[ow]; ++kw) sum += static_cast<Acc>(row[base + kw * dil]);
            } else if (p == 1) {
              for (int64_t kw = W.lo[ow]; kw < W.hi[ow]; ++kw) sum += std::abs(static_cast<Acc>(row[base + kw * dil]));
            } else if (p == 2) {
              for (int64_t kw = W.lo[ow]; kw < W.hi[ow]; ++kw) {
                const Acc v = static_cast<Acc>(row[base + kw * dil]);
                sum += v * v;
              }
            } else {
              for (int64_t kw = W.lo[ow]; kw < W.hi[ow]; ++kw) {
                sum += std::pow(std::abs(static_cast<Acc>(row[base + kw * dil])), static_cast<Acc>(p));
              }
            }
          }
        }
        Acc out;
        if (kind == PoolKind::kAverage) {
          const int64_t count = count_include_pad
                                    ? D.padded_count[od] * H.padded_count[oh] * W.padded_count[ow]
                                    : (D.hi[od] - D.lo[od]) * (H.hi[oh] - H.lo[oh]) * (W.hi[ow] - W.lo[ow]);
          out = count > 0 ? sum / static_cast<Acc>(count) : Acc(0);
        } else {
          out = p == 1 ? sum : p == 2 ? std::sqrt(sum) : std::pow(sum, Acc(1) / static_cast<Acc>(p));
        }
        *y++ = static_cast<T>(out);
      }
    }
  }
}

template <typename T>
void GlobalPoolPlane(PoolKind kind, int64_t p, const T* x, int64_t n, T* y) {
  using Acc = AccOf<T>;
  if (kind == PoolKind::kMax) {
    T best = n > 0 ? x[0] : T(0);
    for (int64_t i = 1; i < n; ++i) best = x[i] > best ? x[i] : best;
    *y = best;
    return;
  }
  Acc sum = 0;
  if (kind == PoolKind::kAverage) {
    // Eight running sums (one alone waits on each add's latency), combined pairwise.
    Acc part[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) part[j] += static_cast<Acc>(x[i + j]);
    sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; i < n; ++i) sum += static_cast<Acc>(x[i]);
    *y = static_cast<T>(n > 0 ? sum / static_cast<Acc>(n) : Acc(0));
  } else if (p == 2) {
    for (int64_t i = 0; i < n; ++i) sum += static_cast<Acc>(x[i]) * static_cast<Acc>(x[i]);
    *y = static_cast<T>(std::sqrt(sum));
  } else {
    for (int64_t i = 0; i < n; ++i) sum += std::pow(std::abs(static_cast<Acc>(x[i])), static_cast<Acc>(p));
    *y = static_cast<T>(p == 1 ? sum : std::pow(sum, Acc(1) / static_cast<Acc>(p)));
  }
}

// NCHW16c planes (passes::BlockConvChannels): 16 channels per pixel, each lane computed as the
// plain kernels above compute one channel, so the same values.
// MaxPool: MaxPoolPlane's rule per lane (kernels::MaxPoolBlockedRowFloat).
void MaxPoolBlockedPlane(const Pool3& g, const float* x, float* y, kernels::QGemmIsa isa) {
  constexpr int64_t B = 16;
  const PoolDim &H = g.d[1], &W = g.d[2];
  std::vector<const float*> rows(static_cast<size_t>(std::max<int64_t>(H.kernel, 1)));
  for (int64_t oh = 0; oh < H.out; ++oh, y += W.out * B) {
    int64_t nrows = 0;
    for (int64_t kh = H.lo[oh]; kh < H.hi[oh]; ++kh) {
      rows[nrows++] = x + (oh * H.stride - H.pad_begin + kh * H.dilation) * W.in * B;
    }
    kernels::MaxPoolBlockedRowFloat(rows.data(), nrows, W.lo.data(), W.hi.data(), W.stride, W.pad_begin, W.dilation, y,
                                    W.out, isa);
  }
}

// GlobalAveragePool: GlobalPoolPlane's order per lane (eight running sums combined pairwise, the
// tail, then the division); y holds the 16 channels' results.
void GlobalAverageBlockedPlane(const float* x, int64_t n, float* y) {
  constexpr int64_t B = 16;
  float part[8][B] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j)
      for (int64_t c = 0; c < B; ++c) part[j][c] += x[(i + j) * B + c];
  for (int64_t c = 0; c < B; ++c) {
    float sum = ((part[0][c] + part[1][c]) + (part[2][c] + part[3][c])) +
                ((part[4][c] + part[5][c]) + (part[6][c] + part[7][c]));
    for (int64_t t = i; t < n; ++t) sum += x[t * B + c];
    y[c] = n > 0 ? sum / static_cast<float>(n) : 0.f;
  }
}

class PoolKernel final : public OpKernel {
 public:
  PoolKernel(PoolKind kind, bool global, bool blocked) : kind_(kind), global_(global), blocked_(blocked) {}

  // blocked: the NCHW16c forms (com.quantkit::NchwcMaxPool, NchwcGlobalAveragePool), float32.
  static KernelFactory Factory(PoolKind kind, bool global, bool blocked = false) {
    return [kind, global, blocked](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
      auto k = std::make_unique<PoolKernel>(kind, global, blocked);
      const Node& node = init.node;
      if (!global) {
        QK_RETURN_IF_ERROR(ParseSpatialAttrs(node, true, &k->attrs_));
        QK_CHECK_ARG(!k->attrs_.kernel_shape.empty(), "attribute kernel_shape is required");
        const size_t nd = k->attrs_.kernel_shape.size();
        QK_CHECK_ARG(k->attrs_.strides.empty() || k->attrs_.strides.size() == nd,
                     "attribute strides has {} values, expected {}", k->attrs_.strides.size(), nd);
        QK_CHECK_ARG(k->attrs_.dilations.empty() || k->attrs_.dilations.size() == nd,
                     "attribute dilations has {} values, expected {}", k->attrs_.dilations.size(), nd);
        QK_CHECK_ARG(k->attrs_.pads.empty() || k->attrs_.pads.size() == 2 * nd,
                     "attribute pads has {} values, expected {}", k->attrs_.pads.size(), 2 * nd);
        if (nd > 3) {
          return Unimplemented(fmt::format("pooling over {} spatial dims (at most 3 are supported)", nd));
        }
        k->count_include_pad_ = node.AttrInt("count_include_pad", 0) != 0;
        k->storage_order_ = node.AttrInt("storage_order", 0);
        QK_CHECK_ARG(k->storage_order_ == 0 || k->storage_order_ == 1, "attribute storage_order must be 0 or 1, got {}",
                     k->storage_order_);
      }
      // NchwcGlobalAveragePool: the channels of the plain output (the last block's padding dropped).
      k->channels_ = node.AttrInt("channels", -1);
      if (kind == PoolKind::kLp) {
        // LpPool-1 had a float p; later opsets an int.
        const Attribute* pa = node.FindAttr("p");
        k->p_ = pa && pa->type == Attribute::Type::kFloat ? static_cast<int64_t>(pa->f) : node.AttrInt("p", 2);
        QK_CHECK_ARG(k->p_ >= 1, "attribute p must be >= 1, got {}", k->p_);
      }
      return std::unique_ptr<OpKernel>(std::move(k));
    };
  }

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    if (blocked_) return ComputeBlocked(ctx, *x);
    const DType dt = x->dtype();
    const bool int_ok = kind_ == PoolKind::kMax && (dt == DType::kInt8 || dt == DType::kUInt8);
    if (dt != DType::kFloat32 && dt != DType::kFloat64 && !IsHalf(dt) && !int_ok) {
      return Unimplemented(fmt::format("input X has unsupported dtype {}", DTypeName(dt)));
    }
    QK_CHECK_ARG(x->rank() >= (global_ ? 2u : 3u), "input X must have rank >= {} (N, C, spatial...), got shape {}",
                 global_ ? 2 : 3, ShapeToString(x->shape()));
    const int64_t planes = x->dim(0) * x->dim(1);
    const std::vector<int64_t> in(x->shape().begin() + 2, x->shape().end());
    const size_t nd = in.size();

    if (global_) {
      Shape yshape = {x->dim(0), x->dim(1)};
      yshape.resize(x->rank(), 1);
      const int64_t plane = NumElements(in);
      return Run(ctx, *x, yshape, [&](auto tag, const auto* xd, auto* yd, int64_t*) {
        using T = decltype(tag);
        ParallelPlanes(ctx, planes, plane, [&](int64_t i) { GlobalPoolPlane<T>(kind_, p_, xd + i * plane, plane, yd + i); });
      });
    }

    QK_CHECK_ARG(nd == attrs_.kernel_shape.size(), "input X has {} spatial dims but kernel_shape has {}", nd,
                 attrs_.kernel_shape.size());
    QK_ASSIGN_OR_RETURN(kernels::ConvGeometry g, ResolveGeometry(attrs_, in, attrs_.kernel_shape));
    Pool3 p3;
    for (size_t i = 0; i < nd; ++i) p3.d[3 - nd + i] = PoolDimOf(g, i);
    for (size_t i = 0; i < 3; ++i) {
      int64_t pad_end = 0;
      if (i + nd >= 3) {  // a real spatial dim (the leading ones are padding dims of size 1)
        const size_t d = i + nd - 3;
        const int64_t ek = (g.kernel[d] - 1) * g.dilation[d] + 1;
        if (attrs_.auto_pad == "SAME_UPPER" || attrs_.auto_pad == "SAME_LOWER") {
          pad_end = std::max<int64_t>(0, (g.out[d] - 1) * g.stride[d] + ek - g.in[d]) - g.pad_begin[d];
        } else if (attrs_.auto_pad == "NOTSET" && !attrs_.pads.empty()) {
          pad_end = attrs_.pads[d + nd];
        }
      }
      p3.d[i].Prepare(pad_end);
    }
    Shape yshape = {x->dim(0), x->dim(1)};
    yshape.insert(yshape.end(), g.out.begin(), g.out.end());
    const int64_t in_plane = p3.InPlane(), out_plane = p3.OutPlane();
    const bool want_indices = kind_ == PoolKind::kMax && ctx.num_outputs() > 1 && ctx.output_wanted(1);
    int64_t* ind = nullptr;
    if (want_indices) {
      QK_ASSIGN_OR_RETURN(Tensor * it, ctx.Output(1, DType::kInt64, yshape));
      ind = it->data<int64_t>();
    }
    const int64_t work = out_plane * std::max<int64_t>(1, NumElements(g.kernel));
    const bool rows_first = kind_ == PoolKind::kMax && !ind && p3.d[0].kernel == 1 && p3.d[2].dilation == 1;
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    return Run(ctx, *x, yshape, [&](auto tag, const auto* xd, auto* yd, int64_t*) {
      using T = decltype(tag);
      if constexpr (sizeof(T) == 1 || std::is_floating_point_v<T>) {
        if (rows_first) {
          ParallelPlanes(ctx, planes, work, [&](int64_t i) {
            thread_local std::vector<T> row_max;
            MaxPoolPlaneRows<T>(p3, xd + i * in_plane, yd + i * out_plane, row_max, isa);
          });
          return;
        }
      }
      ParallelPlanes(ctx, planes, work, [&](int64_t i) {
        if (kind_ == PoolKind::kMax) {
          MaxPoolPlane<T>(p3, xd + i * in_plane, yd + i * out_plane, ind ? ind + i * out_plane : nullptr,
                          i * in_plane, storage_order_ == 1);
        } else {
          AvgLpPoolPlane<T>(p3, kind_, count_include_pad_, p_, xd + i * in_plane, yd + i * out_plane);
        }
      });
    });
  }

 private:
  // x [N, C/16, H, W, 16] float32: MaxPool to the same layout, GlobalAveragePool to [N, C, 1, 1].
  Status ComputeBlocked(KernelContext& ctx, const Tensor& x) {
    constexpr int64_t B = 16;
    QK_CHECK_ARG(x.dtype() == DType::kFloat32 && x.rank() == 5 && x.dim(4) == B,
                 "input X must be a float32 NCHW16c tensor [N, C/16, H, W, 16], got {} {}", DTypeName(x.dtype()),
                 ShapeToString(x.shape()));
    const int64_t planes = x.dim(0) * x.dim(1), in_plane = x.dim(2) * x.dim(3) * B;
    const float* xd = x.data<float>();
    if (global_) {
      const int64_t C = channels_ >= 0 ? channels_ : x.dim(1) * B;
      QK_CHECK_ARG(C <= x.dim(1) * B && C > (x.dim(1) - 1) * B, "attribute channels {} does not fit the blocked input {}",
                   C, ShapeToString(x.shape()));
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, Shape{x.dim(0), C, 1, 1}));
      float* yd = y->data<float>();
      const int64_t Cb = x.dim(1);
      ParallelPlanes(ctx, planes, in_plane, [&](int64_t i) {
        float means[B];
        GlobalAverageBlockedPlane(xd + i * in_plane, in_plane / B, means);
        const int64_t n = i / Cb, c0 = i % Cb * B;
        std::copy(means, means + std::min(B, C - c0), yd + n * C + c0);
      });
      return Status::Ok();
    }
    QK_CHECK_ARG(attrs_.kernel_shape.size() == 2, "NchwcMaxPool needs a 2-D kernel_shape, got {} dims",
                 attrs_.kernel_shape.size());
    const std::vector<int64_t> in = {x.dim(2), x.dim(3)};
    QK_ASSIGN_OR_RETURN(kernels::ConvGeometry g, ResolveGeometry(attrs_, in, attrs_.kernel_shape));
    Pool3 p3;
    for (int d = 0; d < 2; ++d) {
      p3.d[1 + d] = PoolDimOf(g, d);
      p3.d[1 + d].Prepare(0);  // padded_count is for AveragePool only
    }
    p3.d[0].Prepare(0);
    const int64_t out_plane = g.out[0] * g.out[1] * B;
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, Shape{x.dim(0), x.dim(1), g.out[0], g.out[1], B}));
    float* yd = y->data<float>();
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    ParallelPlanes(ctx, planes, out_plane * g.kernel[0] * g.kernel[1],
                   [&](int64_t i) { MaxPoolBlockedPlane(p3, xd + i * in_plane, yd + i * out_plane, isa); });
    return Status::Ok();
  }

  template <typename F>
  static void ParallelPlanes(KernelContext& ctx, int64_t planes, int64_t work_per_plane, F&& fn) {
    ThreadPool* pool = ctx.thread_pool();
    auto body = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) fn(i);
    };
    if (pool && planes > 1 && planes * work_per_plane >= (int64_t{1} << 15)) {
      pool->ParallelFor(planes, std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(work_per_plane, 1)), body);
    } else {
      body(0, planes);
    }
  }

  // Allocates output 0 and calls fn(T{}, x_data, y_data, nullptr) in the compute type; half
  // types go through float32.
  template <typename F>
  Status Run(KernelContext& ctx, const Tensor& x, const Shape& yshape, F&& fn) {
    const DType dt = x.dtype();
    if (IsHalf(dt)) {
      Allocator* alloc = ctx.allocator();
      QK_ASSIGN_OR_RETURN(const Tensor xf, ToFloat32IfHalf(ctx, x, "float32 X"));
      QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, yshape, alloc, "pool float32 output"));
      fn(float{}, xf.data<float>(), yf.data<float>(), nullptr);
      return SetOutputFromFloat32(ctx, 0, yf, dt);
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, yshape));
    switch (dt) {
      case DType::kFloat32: fn(float{}, x.data<float>(), y->data<float>(), nullptr); break;
      case DType::kFloat64: fn(double{}, x.data<double>(), y->data<double>(), nullptr); break;
      case DType::kInt8: fn(int8_t{}, x.data<int8_t>(), y->data<int8_t>(), nullptr); break;
      case DType::kUInt8: fn(uint8_t{}, x.data<uint8_t>(), y->data<uint8_t>(), nullptr); break;
      default: return Unimplemented(fmt::format("dtype {} is not supported", DTypeName(dt)));
    }
    return Status::Ok();
  }

  PoolKind kind_;
  bool global_;
  bool blocked_;
  SpatialAttrs attrs_;
  bool count_include_pad_ = false;
  int64_t storage_order_ = 0;
  int64_t p_ = 2;
  int64_t channels_ = -1;
};

}  // namespace

void RegisterNnPoolOps(KernelRegistry& r) {
  r.Register("", "MaxPool", PoolKernel::Factory(PoolKind::kMax, false));
  r.Register("", "AveragePool", PoolKernel::Factory(PoolKind::kAverage, false));
  r.Register("", "LpPool", PoolKernel::Factory(PoolKind::kLp, false));
  r.Register("", "GlobalMaxPool", PoolKernel::Factory(PoolKind::kMax, true));
  r.Register("", "GlobalAveragePool", PoolKernel::Factory(PoolKind::kAverage, true));
  r.Register("", "GlobalLpPool", PoolKernel::Factory(PoolKind::kLp, true));
  r.Register(kQuantkitDomain, "NchwcMaxPool", PoolKernel::Factory(PoolKind::kMax, false, true));
  r.Register(kQuantkitDomain, "NchwcGlobalAveragePool", PoolKernel::Factory(PoolKind::kAverage, true, true));
}

}  // namespace quantkit::rt
