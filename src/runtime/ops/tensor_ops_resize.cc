// Tensor/layout op family, resizing part: Resize (opsets 10-19) and the deprecated Upsample (7-9).
//
// Each resized axis gets a table: for every output position, the input indices and weights of its
// taps (1 for nearest, 2 for linear, 4 for cubic, more for antialiased downsampling) and whether it
// falls outside the crop box (tf_crop_and_resize -> extrapolation_value). Nearest is then a gather
// (bytes, any dtype); linear/cubic run one separable pass per resized axis, last axis first, which
// is exactly the ONNX reference's nested 1-D interpolation.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/ops/tensor_ops_internal.h"

namespace quantkit::rt {
namespace {

enum class Mode { kNearest, kLinear, kCubic };
enum class Coord {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfHalfPixelForNN,
  kTfCropAndResize
};
enum class NearestMode { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };
enum class AspectPolicy { kStretch, kNotLarger, kNotSmaller };

struct ResizeAttrs {
  bool upsample = false;  // the Upsample op
  int64_t opset = 0;
  Mode mode = Mode::kNearest;
  Coord coord = Coord::kHalfPixel;
  NearestMode nearest = NearestMode::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation_value = 0;
  bool antialias = false;
  AspectPolicy policy = AspectPolicy::kStretch;
  std::vector<int64_t> axes;          // empty: all axes
  std::vector<float> attr_scales;     // Upsample-7
};

struct AxisPlan {
  int64_t in = 0, out = 0;
  double scale = 1;
  double out_f = 0;  // "output width" used by align_corners / tf_crop_and_resize: in * scale
  double roi_start = 0, roi_end = 1;
  bool identity = true;
  int ntaps = 1;
  std::vector<int64_t> idx;     // out * ntaps
  std::vector<double> w;        // out * ntaps
  std::vector<uint8_t> extrap;  // out (empty: none)
};

double Origin(const ResizeAttrs& a, const AxisPlan& p, double x) {
  const double s = p.scale;
  const double in = static_cast<double>(p.in);
  switch (a.coord) {
    case Coord::kHalfPixel: return (x + 0.5) / s - 0.5;
    case Coord::kHalfPixelSymmetric: {
      const double adjustment = static_cast<double>(p.out) / (s * in);
      const double center = in / 2;
      const double offset = center * (1 - adjustment);
      return offset + (x + 0.5) / s - 0.5;
    }
    case Coord::kPytorchHalfPixel: return p.out > 1 ? (x + 0.5) / s - 0.5 : 0.0;
    case Coord::kAlignCorners: return p.out_f == 1 ? 0.0 : x * (in - 1) / (p.out_f - 1);
    case Coord::kAsymmetric: return x / s;
    case Coord::kTfHalfPixelForNN: return (x + 0.5) / s;
    case Coord::kTfCropAndResize:
      if (p.out_f == 1) return (p.roi_end - p.roi_start) * (in - 1) / 2 + p.roi_start * (in - 1);
      return x * (p.roi_end - p.roi_start) * (in - 1) / (p.out_f - 1) + p.roi_start * (in - 1);
  }
  return x;
}

int64_t ClampIndex(double v, int64_t in) {
  if (!(v > 0)) return 0;  // also NaN
  if (v >= static_cast<double>(in - 1)) return in - 1;
  return static_cast<int64_t>(v);
}

int64_t NearestIndex(NearestMode m, double xo, bool downsample, int64_t in) {
  const double f = std::floor(xo);
  const double ratio = xo - f;
  double v;
  if (ratio == 0) {
    v = xo;
  } else {
    switch (m) {
      case NearestMode::kRoundPreferFloor: v = ratio <= 0.5 ? f : f + 1; break;
      case NearestMode::kRoundPreferCeil: v = ratio < 0.5 ? f : f + 1; break;
      case NearestMode::kFloor: v = f; break;
      case NearestMode::kCeil: v = f + 1; break;
      case NearestMode::kSimple: v = downsample ? std::ceil(xo) : std::trunc(xo); break;
      default: v = f;
    }
  }
  return ClampIndex(v, in);
}

double CubicKernel(double x, double a) {
  x = std::abs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// Taps of one output position: weights for input indices x_int + start + t, t in [0, n).
void Coefficients(const ResizeAttrs& a, double ratio, double scale, int64_t* start, std::vector<double>* c) {
  c->clear();
  const bool aa = a.antialias && scale < 1;
  const double s = aa ? scale : 1.0;
  if (a.mode == Mode::kLinear) {
    const int64_t st = static_cast<int64_t>(std::floor(-1 / s)) + 1;
    const int64_t n = 2 - 2 * st;
    double sum = 0;
    for (int64_t i = st; i < st + n; ++i) {
      const double v = std::clamp(1 - std::abs((static_cast<double>(i) - ratio) * s), 0.0, 1.0);
      c->push_back(v);
      sum += v;
    }
    if (aa && sum != 0)
      for (double& v : *c) v /= sum;
    *start = st;
  } else {
    const int64_t st = static_cast<int64_t>(std::floor(-2 / s)) + 1;
    const int64_t end = 2 - st;
    double sum = 0;
    for (int64_t i = st; i < end; ++i) {
      const double v = CubicKernel(s * (static_cast<double>(i) - ratio), a.cubic_a);
      c->push_back(v);
      sum += v;
    }
    if (aa && sum != 0)
      for (double& v : *c) v /= sum;
    *start = st;
  }
}

void BuildAxis(const ResizeAttrs& a, AxisPlan* p) {
  const int64_t out = p->out, in = p->in;
  const bool tf_crop = a.coord == Coord::kTfCropAndResize;
  std::vector<double> coeffs;
  if (a.mode == Mode::kNearest) {
    p->ntaps = 1;
  } else {
    int64_t st;
    Coefficients(a, 0.5, p->scale, &st, &coeffs);
    p->ntaps = static_cast<int>(coeffs.size());
  }
  const int nt = p->ntaps;
  p->idx.assign(out * nt, 0);
  p->w.assign(out * nt, 0.0);
  if (tf_crop) p->extrap.assign(out, 0);
  for (int64_t x = 0; x < out; ++x) {
    const double xo = Origin(a, *p, static_cast<double>(x));
    if (tf_crop && (xo < 0 || xo > static_cast<double>(in - 1))) {
      p->extrap[x] = 1;
      continue;
    }
    if (a.mode == Mode::kNearest) {
      p->idx[x] = NearestIndex(a.nearest, xo, p->scale < 1, in);
      p->w[x] = 1;
      continue;
    }
    double f = std::floor(xo);
    double ratio = xo - f;
    if (ratio == 0) {  // the reference prefers the pixel on the left: ratio in (0, 1]
      ratio = 1;
      f -= 1;
    }
    int64_t st;
    Coefficients(a, ratio, p->scale, &st, &coeffs);
    const double fl = std::clamp(f, -1e15, 1e15);
    const int64_t base = static_cast<int64_t>(fl) + st;
    if (a.exclude_outside) {
      double sum = 0;
      for (int t = 0; t < nt; ++t) {
        const int64_t j = base + t;
        if (j < 0 || j >= in) coeffs[t] = 0;
        sum += coeffs[t];
      }
      if (sum != 0)
        for (double& v : coeffs) v /= sum;
    }
    for (int t = 0; t < nt; ++t) {
      p->idx[x * nt + t] = std::clamp<int64_t>(base + t, 0, in - 1);
      p->w[x * nt + t] = coeffs[t];
    }
  }
  // Identity: same length, every output position takes exactly its own input position.
  bool id = in == out;
  for (int64_t x = 0; id && x < out; ++x) {
    if (!p->extrap.empty() && p->extrap[x]) {
      id = false;
      break;
    }
    double on_x = 0, off_x = 0;  // several taps may clamp onto x: compare the total weight
    for (int t = 0; t < nt; ++t) {
      if (p->idx[x * nt + t] == x) on_x += p->w[x * nt + t];
      else off_x += std::abs(p->w[x * nt + t]);
    }
    id = std::abs(on_x - 1) < 1e-12 && off_x < 1e-12;
  }
  p->identity = id;
}

// ---------------------------------------------------------------- nearest (byte gather)

template <typename E>
void GatherRowT(char* dst, const char* src, const int64_t* idx, const uint8_t* ex, const char* ev, int64_t n) {
  E* d = reinterpret_cast<E*>(dst);
  const E* s = reinterpret_cast<const E*>(src);
  if (ex) {
    E e;
    std::memcpy(&e, ev, sizeof(E));
    for (int64_t i = 0; i < n; ++i) d[i] = ex[i] ? e : s[idx[i]];
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = s[idx[i]];
  }
}

void NearestGather(const Tensor& x, Tensor* y, const std::vector<AxisPlan>& plans, const Tensor& ev,
                   ThreadPool* pool) {
  const size_t r = x.rank();
  const size_t es = DTypeSize(x.dtype());
  const char* src = static_cast<const char*>(x.raw_data());
  char* dst = static_cast<char*>(y->raw_data());
  if (r == 0) {
    std::memcpy(dst, src, es);
    return;
  }
  const Shape& out = y->shape();
  const std::vector<int64_t> in_strides = ContiguousStrides(x.shape());
  const AxisPlan& lp = plans[r - 1];
  const int64_t last = out[r - 1];
  const int64_t rows = y->numel() / last;
  const int64_t ees = static_cast<int64_t>(es);
  const char* evp = static_cast<const char*>(ev.raw_data());
  tensor_ops::MaybeParallelFor(pool, rows, last * ees, [&](int64_t b, int64_t e) {
    int64_t prev_off = -1;
    bool prev_ex = false;
    for (int64_t row = b; row < e; ++row) {
      char* drow = dst + row * last * ees;
      int64_t rem = row, off = 0;
      bool ex = false;
      for (size_t d = r - 1; d-- > 0;) {
        const int64_t i = rem % out[d];
        rem /= out[d];
        const AxisPlan& p = plans[d];
        if (!p.extrap.empty() && p.extrap[i]) ex = true;
        off += p.idx[i] * in_strides[d];
      }
      if (ex) {
        tensor_ops::FillBytes(drow, evp, last, es);
        prev_off = -1;
        continue;
      }
      if (row > b && off == prev_off && !prev_ex) {
        std::memcpy(drow, drow - last * ees, static_cast<size_t>(last * ees));
        continue;
      }
      prev_off = off;
      prev_ex = false;
      const char* srow = src + off * ees;
      if (lp.identity) {
        std::memcpy(drow, srow, static_cast<size_t>(last * ees));
        continue;
      }
      const uint8_t* exl = lp.extrap.empty() ? nullptr : lp.extrap.data();
      switch (es) {
        case 1: GatherRowT<uint8_t>(drow, srow, lp.idx.data(), exl, evp, last); break;
        case 2: GatherRowT<uint16_t>(drow, srow, lp.idx.data(), exl, evp, last); break;
        case 4: GatherRowT<uint32_t>(drow, srow, lp.idx.data(), exl, evp, last); break;
        case 8: GatherRowT<uint64_t>(drow, srow, lp.idx.data(), exl, evp, last); break;
        default:
          for (int64_t i = 0; i < last; ++i)
            std::memcpy(drow + i * ees, exl && exl[i] ? evp : srow + lp.idx[i] * ees, es);
      }
    }
  });
}

// ---------------------------------------------------------------- linear / cubic (separable)

template <typename T>
void ResizePass(const T* src, T* dst, int64_t outer, int64_t lin, int64_t inner, const AxisPlan& p, T ev,
                ThreadPool* pool) {
  const int64_t lout = p.out;
  const int nt = p.ntaps;
  const std::vector<T> w(p.w.begin(), p.w.end());
  const int64_t* idx = p.idx.data();
  const uint8_t* ex = p.extrap.empty() ? nullptr : p.extrap.data();
  if (inner == 1) {
    tensor_ops::MaybeParallelFor(pool, outer, lout * nt * 2, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* s = src + o * lin;
        T* d = dst + o * lout;
        if (nt == 2 && !ex) {
          for (int64_t x = 0; x < lout; ++x) d[x] = w[2 * x] * s[idx[2 * x]] + w[2 * x + 1] * s[idx[2 * x + 1]];
          continue;
        }
        for (int64_t x = 0; x < lout; ++x) {
          if (ex && ex[x]) {
            d[x] = ev;
            continue;
          }
          T acc = 0;
          for (int t = 0; t < nt; ++t) acc += w[x * nt + t] * s[idx[x * nt + t]];
          d[x] = acc;
        }
      }
    });
    return;
  }
  tensor_ops::MaybeParallelFor(pool, outer * lout, inner * nt, [&](int64_t b, int64_t e) {
    for (int64_t tix = b; tix < e; ++tix) {
      const int64_t o = tix / lout, x = tix % lout;
      T* d = dst + tix * inner;
      if (ex && ex[x]) {
        std::fill_n(d, inner, ev);
        continue;
      }
      const T* base = src + o * lin * inner;
      bool first = true;
      for (int t = 0; t < nt; ++t) {
        const T wt = w[x * nt + t];
        if (wt == T(0)) continue;
        const T* s = base + idx[x * nt + t] * inner;
        if (first) {
          for (int64_t i = 0; i < inner; ++i) d[i] = wt * s[i];
          first = false;
        } else {
          for (int64_t i = 0; i < inner; ++i) d[i] += wt * s[i];
        }
      }
      if (first) std::fill_n(d, inner, T(0));
    }
  });
}

// The common image case: only the last two axes are resized and nothing is extrapolated. Each
// output row blends a few horizontally interpolated input rows, kept in a small per-task cache
// (rows are needed in increasing order), so no full-size intermediate is written.
template <typename T>
void Interpolate2D(const T* src, T* dst, int64_t planes, const AxisPlan& ph, const AxisPlan& pw, ThreadPool* pool) {
  const int64_t ih = ph.in, iw = pw.in, oh = ph.out, ow = pw.out;
  const int nth = ph.ntaps, ntw = pw.ntaps;
  const std::vector<T> ww(pw.w.begin(), pw.w.end());
  const std::vector<T> wh(ph.w.begin(), ph.w.end());
  const int64_t* xi = pw.idx.data();
  constexpr int64_t kRows = 16;
  const int64_t row_blocks = (oh + kRows - 1) / kRows;
  tensor_ops::MaybeParallelFor(pool, planes * row_blocks, kRows * ow * (nth + ntw), [&](int64_t b, int64_t e) {
    std::vector<T> cache(static_cast<size_t>(nth) * ow);
    std::vector<int64_t> tags(nth, -1);
    int64_t cur_plane = -1;
    for (int64_t task = b; task < e; ++task) {
      const int64_t plane = task / row_blocks, y0 = (task % row_blocks) * kRows;
      const int64_t y1 = std::min(oh, y0 + kRows);
      if (plane != cur_plane) {
        std::fill(tags.begin(), tags.end(), -1);
        cur_plane = plane;
      }
      const T* sp = src + plane * ih * iw;
      T* dp = dst + plane * oh * ow;
      for (int64_t y = y0; y < y1; ++y) {
        const int64_t* yi = ph.idx.data() + y * nth;
        const T* wy = wh.data() + y * nth;
        T* drow = dp + y * ow;
        bool first = true;
        for (int t = 0; t < nth; ++t) {
          if (wy[t] == T(0)) continue;
          const int64_t row = yi[t];
          int slot = -1;
          for (int c = 0; c < nth; ++c)
            if (tags[c] == row) slot = c;
          if (slot < 0) {  // reuse a slot no tap of this output row needs
            for (int c = 0; c < nth && slot < 0; ++c) {
              bool needed = false;
              for (int u = 0; u < nth; ++u) needed = needed || (wy[u] != T(0) && yi[u] == tags[c]);
              if (!needed) slot = c;
            }
            T* h = cache.data() + slot * ow;
            const T* s = sp + row * iw;
            if (ntw == 2) {
              for (int64_t x = 0; x < ow; ++x) h[x] = ww[2 * x] * s[xi[2 * x]] + ww[2 * x + 1] * s[xi[2 * x + 1]];
            } else {
              for (int64_t x = 0; x < ow; ++x) {
                T acc = 0;
                for (int u = 0; u < ntw; ++u) acc += ww[x * ntw + u] * s[xi[x * ntw + u]];
                h[x] = acc;
              }
            }
            tags[slot] = row;
          }
          const T* h = cache.data() + slot * ow;
          const T wt = wy[t];
          if (first) {
            for (int64_t x = 0; x < ow; ++x) drow[x] = wt * h[x];
            first = false;
          } else {
            for (int64_t x = 0; x < ow; ++x) drow[x] += wt * h[x];
          }
        }
        if (first) std::fill_n(drow, ow, T(0));
      }
    }
  });
}

// Runs the passes over the resized axes (last first). `in` is T-typed with x's shape; the result
// (T-typed, output shape) is written to `final_dst`.
template <typename T>
Status InterpolateT(const T* in, const Shape& in_shape, T* final_dst, const std::vector<AxisPlan>& plans, T ev,
                    Allocator* alloc, ThreadPool* pool) {
  const size_t r = in_shape.size();
  std::vector<size_t> todo;
  for (size_t d = r; d-- > 0;)
    if (!plans[d].identity) todo.push_back(d);
  if (todo.empty()) {
    std::memcpy(final_dst, in, static_cast<size_t>(NumElements(in_shape)) * sizeof(T));
    return Status::Ok();
  }
  if (r >= 2 && todo.size() == 2 && todo[0] == r - 1 && todo[1] == r - 2 && plans[r - 1].extrap.empty() &&
      plans[r - 2].extrap.empty()) {
    const int64_t planes = NumElements(in_shape) / (in_shape[r - 1] * in_shape[r - 2]);
    Interpolate2D<T>(in, final_dst, planes, plans[r - 2], plans[r - 1], pool);
    return Status::Ok();
  }
  Shape cur = in_shape;
  const T* src = in;
  Tensor bufs[2];
  for (size_t k = 0; k < todo.size(); ++k) {
    const size_t d = todo[k];
    Shape next = cur;
    next[d] = plans[d].out;
    T* dst;
    if (k + 1 == todo.size()) {
      dst = final_dst;
    } else {
      QK_ASSIGN_OR_RETURN(bufs[k % 2], Tensor::CreateUninitialized(DTypeOf<T>::value, next, alloc,
                                                                  "Resize intermediate"));
      dst = bufs[k % 2].data<T>();
    }
    int64_t outer = 1, inner = 1;
    for (size_t j = 0; j < d; ++j) outer *= cur[j];
    for (size_t j = d + 1; j < r; ++j) inner *= cur[j];
    ResizePass<T>(src, dst, outer, cur[d], inner, plans[d], ev, pool);
    src = dst;
    cur = next;
  }
  return Status::Ok();
}

template <typename T>
T SaturateRound(float v) {
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    const double r = std::nearbyint(static_cast<double>(v));
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    const double hi = static_cast<double>(std::numeric_limits<T>::max());
    if (!(r >= lo)) return std::numeric_limits<T>::lowest();
    if (r >= hi) return std::numeric_limits<T>::max();
    return static_cast<T>(r);
  }
}

// ---------------------------------------------------------------- the kernel

class ResizeKernel final : public OpKernel {
 public:
  explicit ResizeKernel(ResizeAttrs a) : a_(std::move(a)) {}

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const int64_t r = static_cast<int64_t>(x->rank());
    // Which axes, and the roi/scales/sizes inputs by opset.
    std::vector<int64_t> axes;
    if (a_.axes.empty()) {
      for (int64_t i = 0; i < r; ++i) axes.push_back(i);
    } else {
      std::vector<bool> seen(r, false);
      for (int64_t ax : a_.axes) {
        QK_ASSIGN_OR_RETURN(const int64_t n, NormalizeAxis(ax, r));
        QK_CHECK_ARG(!seen[n], "axis {} appears twice in axes", ax);
        seen[n] = true;
        axes.push_back(n);
      }
    }
    const size_t na = axes.size();
    const Tensor* roi = nullptr;
    const Tensor* scales_t = nullptr;
    const Tensor* sizes_t = nullptr;
    std::vector<double> scales;
    if (a_.upsample && a_.opset < 9) {
      for (float s : a_.attr_scales) scales.push_back(s);
    } else if (a_.upsample || a_.opset < 11) {
      QK_ASSIGN_OR_RETURN(scales_t, ctx.RequiredInput(1));
    } else {
      roi = ctx.input(1);
      scales_t = ctx.input(2);
      sizes_t = ctx.input(3);
      if (roi && roi->numel() == 0) roi = nullptr;
      if (scales_t && scales_t->numel() == 0) scales_t = nullptr;
      if (sizes_t && sizes_t->numel() == 0) sizes_t = nullptr;
    }
    if (scales_t) {
      QK_CHECK_ARG(scales_t->dtype() == DType::kFloat32 || scales_t->dtype() == DType::kFloat64 ||
                       scales_t->dtype() == DType::kFloat16,
                   "scales must be a float tensor, got {}", DTypeName(scales_t->dtype()));
      for (int64_t i = 0; i < scales_t->numel(); ++i) scales.push_back(scales_t->GetAsDouble(i));
    }
    std::vector<int64_t> sizes;
    if (sizes_t) {
      QK_CHECK_ARG(sizes_t->dtype() == DType::kInt64, "sizes must be int64, got {}", DTypeName(sizes_t->dtype()));
      sizes = sizes_t->ToInt64Vector();
    }
    const bool have_scales = !scales.empty();
    if (a_.upsample || a_.opset < 11) {
      QK_CHECK_ARG(have_scales, "scales must not be empty");
    } else {
      QK_CHECK_ARG(have_scales != !sizes.empty(), "exactly one of scales and sizes must be given (got {})",
                   have_scales ? "both" : "neither");
    }
    std::vector<AxisPlan> plans(r);
    for (int64_t d = 0; d < r; ++d) {
      plans[d].in = plans[d].out = x->dim(d);
      plans[d].out_f = static_cast<double>(x->dim(d));
    }
    if (have_scales) {
      QK_CHECK_ARG(scales.size() == na, "scales has {} entries, expected {}", scales.size(), na);
      for (size_t i = 0; i < na; ++i) {
        QK_CHECK_ARG(scales[i] > 0 && std::isfinite(scales[i]), "scales must be positive, got {}", scales[i]);
        AxisPlan& p = plans[axes[i]];
        p.scale = scales[i];
        p.out_f = scales[i] * static_cast<double>(p.in);
        QK_CHECK_ARG(p.out_f < 9e15, "scale {} is too large", scales[i]);
        p.out = static_cast<int64_t>(std::floor(p.out_f));
      }
    } else {
      QK_CHECK_ARG(sizes.size() == na, "sizes has {} entries, expected {}", sizes.size(), na);
      for (size_t i = 0; i < na; ++i) {
        QK_CHECK_ARG(sizes[i] >= 0, "sizes must be non-negative, got {}", sizes[i]);
        QK_CHECK_ARG(sizes[i] == 0 || x->dim(axes[i]) > 0, "cannot resize axis {} of size 0 to {}", axes[i],
                     sizes[i]);
      }
      if (a_.policy == AspectPolicy::kStretch) {
        for (size_t i = 0; i < na; ++i) {
          AxisPlan& p = plans[axes[i]];
          p.out = sizes[i];
          p.out_f = static_cast<double>(sizes[i]);
          p.scale = p.in > 0 ? static_cast<double>(sizes[i]) / static_cast<double>(p.in) : 1.0;
        }
      } else {
        double s = a_.policy == AspectPolicy::kNotLarger ? std::numeric_limits<double>::infinity() : 0.0;
        for (size_t i = 0; i < na; ++i) {
          const double si = static_cast<double>(sizes[i]) / static_cast<double>(plans[axes[i]].in);
          s = a_.policy == AspectPolicy::kNotLarger ? std::min(s, si) : std::max(s, si);
        }
        for (size_t i = 0; i < na; ++i) {
          AxisPlan& p = plans[axes[i]];
          p.scale = s;
          p.out_f = s * static_cast<double>(p.in);
          p.out = static_cast<int64_t>(std::floor(p.out_f + 0.5));  // round half up, as the reference
        }
      }
      for (size_t i = 0; i < na; ++i) {
        QK_CHECK_ARG(plans[axes[i]].scale > 0, "sizes give a zero scale on axis {}", axes[i]);
      }
    }
    if (a_.coord == Coord::kTfCropAndResize) {
      if (roi) {
        QK_CHECK_ARG(roi->numel() == static_cast<int64_t>(2 * na), "roi has {} entries, expected {}", roi->numel(),
                     2 * na);
        for (size_t i = 0; i < na; ++i) {
          plans[axes[i]].roi_start = roi->GetAsDouble(static_cast<int64_t>(i));
          plans[axes[i]].roi_end = roi->GetAsDouble(static_cast<int64_t>(i + na));
        }
      }
    }
    Shape out(r);
    for (int64_t d = 0; d < r; ++d) {
      out[d] = plans[d].out;
      QK_CHECK_ARG(plans[d].in > 0 || plans[d].out == 0, "cannot resize axis {} of size 0", d);
    }
    QK_RETURN_IF_ERROR(CheckShape(out, x->dtype(), "Resize output"));
    const DType dt = x->dtype();
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, out));
    if (y->numel() == 0) return Status::Ok();
    for (int64_t d = 0; d < r; ++d) BuildAxis(a_, &plans[d]);  // tables are smaller than the output
    const Tensor ev = tensor_ops::ScalarOfType(dt, a_.extrapolation_value);
    if (a_.mode == Mode::kNearest) {
      NearestGather(*x, y, plans, ev, ctx.thread_pool());
      return Status::Ok();
    }
    Allocator* alloc = ctx.allocator();
    ThreadPool* pool = ctx.thread_pool();
    if (dt == DType::kFloat32) {
      return InterpolateT<float>(x->data<float>(), x->shape(), y->data<float>(), plans,
                                 static_cast<float>(a_.extrapolation_value), alloc, pool);
    }
    if (dt == DType::kFloat64) {
      return InterpolateT<double>(x->data<double>(), x->shape(), y->data<double>(), plans, a_.extrapolation_value,
                                  alloc, pool);
    }
    QK_CHECK_ARG(dt != DType::kBool, "{} Resize does not support bool input", a_.mode == Mode::kLinear ? "linear" : "cubic");
    // Other types: compute in float32, convert back.
    QK_ASSIGN_OR_RETURN(Tensor xf, Tensor::CreateUninitialized(DType::kFloat32, x->shape(), alloc, "Resize input"));
    QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, out, alloc, "Resize output"));
    float* xfp = xf.data<float>();
    for (int64_t i = 0; i < x->numel(); ++i) xfp[i] = static_cast<float>(x->GetAsDouble(i));
    QK_RETURN_IF_ERROR(InterpolateT<float>(xfp, x->shape(), yf.data<float>(), plans,
                                           static_cast<float>(a_.extrapolation_value), alloc, pool));
    const float* yfp = yf.data<float>();
    if (dt == DType::kFloat16 || dt == DType::kBFloat16) {
      uint16_t* o = y->data<uint16_t>();
      for (int64_t i = 0; i < y->numel(); ++i) o[i] = dt == DType::kFloat16 ? FloatToHalf(yfp[i]) : FloatToBFloat16(yfp[i]);
      return Status::Ok();
    }
    return DispatchNumeric(dt, [&](auto tag) -> Status {
      using T = decltype(tag);
      T* o = y->data<T>();
      for (int64_t i = 0; i < y->numel(); ++i) o[i] = SaturateRound<T>(yfp[i]);
      return Status::Ok();
    });
  }

 private:
  ResizeAttrs a_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeResizeLike(const KernelInit& init, bool upsample) {
  const Node& n = init.node;
  ResizeAttrs a;
  a.upsample = upsample;
  a.opset = init.opset;
  const std::string mode = n.AttrString("mode", "nearest");
  if (mode == "nearest") a.mode = Mode::kNearest;
  else if (mode == "linear" || mode == "bilinear") a.mode = Mode::kLinear;
  else if (mode == "cubic" && !upsample && init.opset >= 11) a.mode = Mode::kCubic;
  else return InvalidArgument(fmt::format("unsupported mode '{}'", mode));
  const bool legacy = upsample || init.opset < 11;
  if (legacy) {
    a.coord = Coord::kAsymmetric;
    a.nearest = NearestMode::kSimple;
    if (upsample && init.opset < 9) {
      QK_CHECK_ARG(n.FindAttr("scales"), "attribute 'scales' is required");
      a.attr_scales = n.AttrFloats("scales");
    }
  } else {
    const std::string c = n.AttrString("coordinate_transformation_mode", "half_pixel");
    if (c == "half_pixel") a.coord = Coord::kHalfPixel;
    else if (c == "half_pixel_symmetric") a.coord = Coord::kHalfPixelSymmetric;
    else if (c == "pytorch_half_pixel") a.coord = Coord::kPytorchHalfPixel;
    else if (c == "align_corners") a.coord = Coord::kAlignCorners;
    else if (c == "asymmetric") a.coord = Coord::kAsymmetric;
    else if (c == "tf_half_pixel_for_nn") a.coord = Coord::kTfHalfPixelForNN;
    else if (c == "tf_crop_and_resize") a.coord = Coord::kTfCropAndResize;
    else return InvalidArgument(fmt::format("unknown coordinate_transformation_mode '{}'", c));
    const std::string nm = n.AttrString("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor") a.nearest = NearestMode::kRoundPreferFloor;
    else if (nm == "round_prefer_ceil") a.nearest = NearestMode::kRoundPreferCeil;
    else if (nm == "floor") a.nearest = NearestMode::kFloor;
    else if (nm == "ceil") a.nearest = NearestMode::kCeil;
    else return InvalidArgument(fmt::format("unknown nearest_mode '{}'", nm));
    a.cubic_a = n.AttrFloat("cubic_coeff_a", -0.75f);
    a.exclude_outside = n.AttrInt("exclude_outside", 0) != 0;
    a.extrapolation_value = n.AttrFloat("extrapolation_value", 0.f);
    a.antialias = n.AttrInt("antialias", 0) != 0;
    const std::string pol = n.AttrString("keep_aspect_ratio_policy", "stretch");
    if (pol == "stretch") a.policy = AspectPolicy::kStretch;
    else if (pol == "not_larger") a.policy = AspectPolicy::kNotLarger;
    else if (pol == "not_smaller") a.policy = AspectPolicy::kNotSmaller;
    else return InvalidArgument(fmt::format("unknown keep_aspect_ratio_policy '{}'", pol));
    a.axes = n.AttrInts("axes");
  }
  return std::unique_ptr<OpKernel>(new ResizeKernel(std::move(a)));
}

}  // namespace

void RegisterTensorResizeOps(KernelRegistry& r) {
  r.Register("", "Resize", [](const KernelInit& init) { return MakeResizeLike(init, false); });
  r.Register("", "Upsample", [](const KernelInit& init) { return MakeResizeLike(init, true); });
}

}  // namespace quantkit::rt
