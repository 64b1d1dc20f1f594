// Tensor/layout op family, padding part: Pad (constant/reflect/edge/wrap, negative pads crop),
// DepthToSpace and SpaceToDepth (as 6-D transposes).
#include <algorithm>

#include "runtime/ops/tensor_ops_internal.h"

namespace quantkit::rt {
namespace {

using tensor_ops::ReadInts;

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

StatusOr<PadMode> ParsePadMode(const std::string& s) {
  if (s == "constant") return PadMode::kConstant;
  if (s == "reflect") return PadMode::kReflect;
  if (s == "edge") return PadMode::kEdge;
  if (s == "wrap") return PadMode::kWrap;
  return InvalidArgument(fmt::format("unknown pad mode '{}' (expected constant, reflect, edge or wrap)", s));
}

inline int64_t PosMod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

// Source index for each output position of one axis; -1 means "constant value".
StatusOr<std::vector<int64_t>> AxisMap(PadMode mode, int64_t in, int64_t pb, int64_t out, int64_t axis) {
  std::vector<int64_t> map(out);
  if (mode != PadMode::kConstant && in == 0 && out > 0) {
    return InvalidArgument(fmt::format("cannot pad axis {} of size 0 in a non-constant mode", axis));
  }
  for (int64_t i = 0; i < out; ++i) {
    const int64_t j = i - pb;
    switch (mode) {
      case PadMode::kConstant: map[i] = (j >= 0 && j < in) ? j : -1; break;
      case PadMode::kEdge: map[i] = std::clamp<int64_t>(j, 0, in - 1); break;
      case PadMode::kWrap: map[i] = PosMod(j, in); break;
      case PadMode::kReflect: {
        if (in == 1) {
          map[i] = 0;
          break;
        }
        const int64_t period = 2 * (in - 1);
        int64_t m = PosMod(j, period);
        if (m >= in) m = period - m;
        map[i] = m;
        break;
      }
    }
  }
  return map;
}

class PadKernel final : public OpKernel {
 public:
  PadKernel(int64_t opset, PadMode mode, std::vector<int64_t> attr_pads, float attr_value)
      : opset_(opset), mode_(mode), attr_pads_(std::move(attr_pads)), attr_value_(attr_value) {}

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    const int64_t r = static_cast<int64_t>(x->rank());
    const DType dt = x->dtype();
    const size_t es = DTypeSize(dt);
    std::vector<int64_t> pads;
    Tensor value;
    std::vector<int64_t> axes;
    if (opset_ >= 11) {
      QK_ASSIGN_OR_RETURN(const Tensor* p, ctx.RequiredInput(1));
      QK_ASSIGN_OR_RETURN(pads, ReadInts(*p, "pads"));
      const Tensor* cv = ctx.input(2);
      if (cv && cv->numel() > 0) {
        QK_CHECK_ARG(cv->dtype() == dt, "constant_value is {} but data is {}", DTypeName(cv->dtype()), DTypeName(dt));
        value = *cv;
      } else {
        value = tensor_ops::ScalarOfType(dt, 0.0);
      }
      if (const Tensor* a = ctx.input(3)) {
        QK_ASSIGN_OR_RETURN(axes, ReadInts(*a, "axes"));
      }
    } else {
      pads = attr_pads_;
      value = tensor_ops::ScalarOfType(dt, attr_value_);
    }
    if (axes.empty()) {
      axes.resize(r);
      for (int64_t i = 0; i < r; ++i) axes[i] = i;
    }
    const size_t na = axes.size();
    QK_CHECK_ARG(pads.size() == 2 * na, "pads has {} entries, expected {} (2 x {} axes)", pads.size(), 2 * na, na);
    std::vector<int64_t> pb(r, 0), pe(r, 0);
    std::vector<bool> seen(r, false);
    for (size_t i = 0; i < na; ++i) {
      QK_ASSIGN_OR_RETURN(const int64_t ax, NormalizeAxis(axes[i], r));
      QK_CHECK_ARG(!seen[ax], "axis {} appears twice in axes", axes[i]);
      seen[ax] = true;
      pb[ax] = pads[i];
      pe[ax] = pads[i + na];
      constexpr int64_t kMaxPad = int64_t{1} << 40;
      QK_CHECK_ARG(pb[ax] > -kMaxPad && pb[ax] < kMaxPad && pe[ax] > -kMaxPad && pe[ax] < kMaxPad, "pads {} and {} on axis {} are too large",
                   pb[ax], pe[ax], ax);
    }
    Shape out(r);
    std::vector<std::vector<int64_t>> maps(r);
    for (int64_t d = 0; d < r; ++d) {
      out[d] = x->dim(d) + pb[d] + pe[d];
      QK_CHECK_ARG(out[d] >= 0, "pads {} and {} on axis {} make its dimension {} negative", pb[d], pe[d], d,
                   x->dim(d));
      QK_ASSIGN_OR_RETURN(maps[d], AxisMap(mode_, x->dim(d), pb[d], out[d], d));
    }
    QK_RETURN_IF_ERROR(CheckShape(out, dt, "Pad output"));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, dt, out));
    if (y->numel() == 0) return Status::Ok();
    const char* src = static_cast<const char*>(x->raw_data());
    char* dst = static_cast<char*>(y->raw_data());
    const char* cval = static_cast<const char*>(value.raw_data());
    if (r == 0) {
      std::memcpy(dst, src, es);
      return Status::Ok();
    }
    const std::vector<int64_t> in_strides = ContiguousStrides(x->shape());
    const int64_t last = out[r - 1];
    const std::vector<int64_t>& lmap = maps[r - 1];
    // The run of the last axis copied verbatim: positions [lo, hi) map to lo - pb ... .
    int64_t lo = 0, hi = 0;
    {
      int64_t best = 0;
      for (int64_t i = 0; i < last;) {
        if (lmap[i] < 0) {
          ++i;
          continue;
        }
        int64_t j = i + 1;
        while (j < last && lmap[j] == lmap[j - 1] + 1) ++j;
        if (j - i > best) {
          best = j - i;
          lo = i;
          hi = j;
        }
        i = j;
      }
    }
    const int64_t rows = y->numel() / last;
    const int64_t ees = static_cast<int64_t>(es);
    tensor_ops::MaybeParallelFor(ctx.thread_pool(), rows, last * ees, [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        char* drow = dst + row * last * ees;
        int64_t rem = row, off = 0;
        bool constant = false;
        for (int64_t d = r - 1; d-- > 0;) {
          const int64_t i = rem % out[d];
          rem /= out[d];
          const int64_t s = maps[d][i];
          if (s < 0) {
            constant = true;
            break;
          }
          off += s * in_strides[d];
        }
        if (constant) {
          tensor_ops::FillBytes(drow, cval, last, es);
          continue;
        }
        const char* srow = src + off * ees;
        for (int64_t i = 0; i < lo; ++i) {
          std::memcpy(drow + i * ees, lmap[i] < 0 ? cval : srow + lmap[i] * ees, es);
        }
        if (hi > lo) std::memcpy(drow + lo * ees, srow + lmap[lo] * ees, static_cast<size_t>((hi - lo) * ees));
        for (int64_t i = hi; i < last; ++i) {
          std::memcpy(drow + i * ees, lmap[i] < 0 ? cval : srow + lmap[i] * ees, es);
        }
      }
    });
    return Status::Ok();
  }

 private:
  int64_t opset_;
  PadMode mode_;
  std::vector<int64_t> attr_pads_;
  float attr_value_;
};

StatusOr<std::unique_ptr<OpKernel>> MakePad(const KernelInit& init) {
  QK_ASSIGN_OR_RETURN(const PadMode mode, ParsePadMode(init.node.AttrString("mode", "constant")));
  std::vector<int64_t> pads;
  float value = 0;
  if (init.opset < 11) {
    QK_CHECK_ARG(init.node.FindAttr("pads") || init.node.FindAttr("paddings"), "attribute 'pads' is required");
    pads = init.node.FindAttr("pads") ? init.node.AttrInts("pads") : init.node.AttrInts("paddings");
    value = init.node.AttrFloat("value", 0.f);
  }
  return std::unique_ptr<OpKernel>(new PadKernel(init.opset, mode, std::move(pads), value));
}

// ---------------------------------------------------------------- DepthToSpace / SpaceToDepth

Status DepthToSpaceFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->rank() == 4, "input must be 4-D (NCHW), got {}", ShapeToString(x->shape()));
  const int64_t b = ctx.node().AttrInt("blocksize", 0);
  QK_CHECK_ARG(b > 0 && b <= (1 << 20), "blocksize must be positive, got {}", b);
  const std::string mode = ctx.node().AttrString("mode", "DCR");
  QK_CHECK_ARG(mode == "DCR" || mode == "CRD", "mode must be DCR or CRD, got '{}'", mode);
  const int64_t n = x->dim(0), c = x->dim(1), h = x->dim(2), w = x->dim(3);
  QK_CHECK_ARG(c % (b * b) == 0, "channels {} are not divisible by blocksize^2 = {}", c, b * b);
  const int64_t oc = c / (b * b);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), {n, oc, h * b, w * b}));
  Shape view;
  std::vector<int64_t> perm;
  if (mode == "DCR") {
    view = {n, b, b, oc, h, w};
    perm = {0, 3, 4, 1, 5, 2};
  } else {
    view = {n, oc, b, b, h, w};
    perm = {0, 1, 4, 2, 5, 3};
  }
  tensor_ops::TransposeBytes(y->raw_data(), x->raw_data(), view, perm, DTypeSize(x->dtype()), ctx.thread_pool());
  return Status::Ok();
}

Status SpaceToDepthFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  QK_CHECK_ARG(x->rank() == 4, "input must be 4-D (NCHW), got {}", ShapeToString(x->shape()));
  const int64_t b = ctx.node().AttrInt("blocksize", 0);
  QK_CHECK_ARG(b > 0 && b <= (1 << 20), "blocksize must be positive, got {}", b);
  const int64_t n = x->dim(0), c = x->dim(1), h = x->dim(2), w = x->dim(3);
  QK_CHECK_ARG(h % b == 0 && w % b == 0, "spatial dims {}x{} are not divisible by blocksize {}", h, w, b);
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, x->dtype(), {n, c * b * b, h / b, w / b}));
  tensor_ops::TransposeBytes(y->raw_data(), x->raw_data(), {n, c, h / b, b, w / b, b}, {0, 3, 5, 1, 2, 4},
                             DTypeSize(x->dtype()), ctx.thread_pool());
  return Status::Ok();
}

}  // namespace

void RegisterTensorPadOps(KernelRegistry& r) {
  r.Register("", "Pad", &MakePad);
  r.RegisterFunction("", "DepthToSpace", &DepthToSpaceFn);
  r.RegisterFunction("", "SpaceToDepth", &SpaceToDepthFn);
}

}  // namespace quantkit::rt
