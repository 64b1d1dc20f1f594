// Control flow and sequence ops: If, Loop, Scan (opset 8 and 9+), SequenceMap, SequenceEmpty,
// SequenceConstruct, SequenceInsert, SequenceAt, SequenceErase, SequenceLength,
// ConcatFromSequence, SplitToSequence, and the Optional ops for present values (Optional,
// OptionalHasElement, OptionalGetElement: an optional is represented by its element; an empty
// optional is an absent value).
//
// Subgraph plans are built once in the factory (KernelInit::BuildSubgraph); at run time they are
// executed with KernelContext::RunSubgraph, which gives them read access to the enclosing frame.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "runtime/ops/op_util.h"
#include "runtime/ops/ops.h"
#include "runtime/plan.h"

namespace quantkit::rt {
namespace {

using PlanPtr = std::unique_ptr<Plan>;

const char* KindName(const Value* v) {
  if (!v) return "absent";
  switch (v->kind) {
    case Value::Kind::kTensor: return "a tensor";
    case Value::Kind::kSequence: return "a sequence";
    default: return "empty";
  }
}

StatusOr<const Graph*> GraphAttr(const Node& node, const char* name) {
  const Attribute* a = node.FindAttr(name);
  if (!a || a->type != Attribute::Type::kGraph || !a->g) {
    return InvalidArgument(fmt::format("graph attribute '{}' is missing", name));
  }
  return a->g.get();
}

StatusOr<bool> ReadCondition(const Tensor& t, const char* what) {
  QK_CHECK_ARG(t.numel() == 1, "{} must have exactly one element, got shape {}", what, ShapeToString(t.shape()));
  QK_CHECK_ARG(t.dtype() == DType::kBool || IsIntegerDType(t.dtype()) || IsFloatDType(t.dtype()),
               "{} must be bool, got {}", what, DTypeName(t.dtype()));
  return t.GetAsDouble(0) != 0.0;
}

// Byte-level helpers over dense tensors of any element type.
size_t ElemSize(const Tensor& t) { return DTypeSize(t.dtype()); }

// Concatenates tensors (same dtype, same shape except along `axis`) along `axis`.
StatusOr<Tensor> ConcatTensors(const std::vector<Tensor>& parts, int64_t axis, Allocator* alloc, const char* what) {
  QK_CHECK_ARG(!parts.empty(), "{}: nothing to concatenate", what);
  const Tensor& first = parts[0];
  const size_t rank = first.rank();
  QK_CHECK_ARG(axis >= 0 && static_cast<size_t>(axis) < rank, "{}: axis {} out of range for rank {}", what, axis, rank);
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    QK_CHECK_ARG(p.dtype() == first.dtype(), "{}: element {} has type {}, element 0 has {}", what, i,
                 DTypeName(p.dtype()), DTypeName(first.dtype()));
    QK_CHECK_ARG(p.rank() == rank, "{}: element {} has shape {}, element 0 has {}", what, i, ShapeToString(p.shape()),
                 ShapeToString(first.shape()));
    for (size_t d = 0; d < rank; ++d) {
      QK_CHECK_ARG(static_cast<int64_t>(d) == axis || p.dim(d) == first.dim(d),
                   "{}: element {} has shape {}, element 0 has {} (they may differ only along axis {})", what, i,
                   ShapeToString(p.shape()), ShapeToString(first.shape()), axis);
    }
    out_shape[axis] += p.dim(axis);
  }
  QK_ASSIGN_OR_RETURN(Tensor out, Tensor::CreateUninitialized(first.dtype(), out_shape, alloc, what));
  const size_t es = ElemSize(first);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= out_shape[d];
  for (size_t d = axis + 1; d < rank; ++d) inner *= out_shape[d];
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < outer; ++o) {
    for (const Tensor& p : parts) {
      const size_t chunk = static_cast<size_t>(p.dim(axis) * inner) * es;
      if (chunk == 0) continue;
      std::memcpy(dst, static_cast<const char*>(p.raw_data()) + o * chunk, chunk);
      dst += chunk;
    }
  }
  return out;
}

// Stacks same-shaped tensors along a new axis.
StatusOr<Tensor> StackTensors(const std::vector<Tensor>& parts, int64_t axis, Allocator* alloc, const char* what) {
  QK_CHECK_ARG(!parts.empty(), "{}: nothing to stack", what);
  std::vector<Tensor> expanded;
  expanded.reserve(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    QK_CHECK_ARG(parts[i].shape() == parts[0].shape(), "{}: element {} has shape {}, element 0 has {}", what, i,
                 ShapeToString(parts[i].shape()), ShapeToString(parts[0].shape()));
    Shape s = parts[i].shape();
    s.insert(s.begin() + axis, 1);
    expanded.push_back(parts[i].Reshaped(s));
  }
  return ConcatTensors(expanded, axis, alloc, what);
}

// Slice `index` of `t` along `axis`, with the axis removed.
StatusOr<Tensor> TakeSlice(const Tensor& t, int64_t axis, int64_t index, Allocator* alloc) {
  Shape s = t.shape();
  s.erase(s.begin() + axis);
  if (axis == 0) {
    // Contiguous: copy (the shared buffer cannot be offset through the public API).
    QK_ASSIGN_OR_RETURN(Tensor out, Tensor::CreateUninitialized(t.dtype(), s, alloc, "scan slice"));
    std::memcpy(out.raw_data(), static_cast<const char*>(t.raw_data()) + index * out.nbytes(), out.nbytes());
    return out;
  }
  QK_ASSIGN_OR_RETURN(Tensor out, Tensor::CreateUninitialized(t.dtype(), s, alloc, "scan slice"));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= t.dim(d);
  for (size_t d = axis + 1; d < t.rank(); ++d) inner *= t.dim(d);
  const size_t es = ElemSize(t);
  const size_t chunk = static_cast<size_t>(inner) * es;
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(dst + o * chunk, src + (o * t.dim(axis) + index) * chunk, chunk);
  }
  return out;
}

// Tensor of shape [0, declared dims...] for a scan output that got no iterations.
Tensor EmptyScanOutput(const ValueInfo& vi, int64_t axis_hint) {
  Shape s;
  if (vi.has_shape) {
    for (const auto& d : vi.shape) s.push_back(d.known() ? d.value : 0);
  }
  const int64_t axis = std::clamp<int64_t>(axis_hint, 0, static_cast<int64_t>(s.size()));
  s.insert(s.begin() + axis, 0);
  const DType dt = vi.dtype == DType::kUndefined || vi.dtype == DType::kString ? DType::kFloat32 : vi.dtype;
  return Tensor(dt, s);
}

// ---------------------------------------------------------------------------------------------
// If

class IfKernel final : public OpKernel {
 public:
  IfKernel(PlanPtr then_plan, PlanPtr else_plan) : then_(std::move(then_plan)), else_(std::move(else_plan)) {}
  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* c, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(bool cond, ReadCondition(*c, "condition (input #0)"));
    const Plan& plan = cond ? *then_ : *else_;
    const char* branch = cond ? "then_branch" : "else_branch";
    std::vector<Value> outs;
    Status s = ctx.RunSubgraph(plan, {}, &outs);
    if (!s.ok()) return s.WithContext(branch);
    QK_CHECK_ARG(outs.size() == ctx.num_outputs(), "{} produced {} outputs, but If has {}", branch, outs.size(),
                 ctx.num_outputs());
    for (size_t i = 0; i < outs.size(); ++i) ctx.SetOutputValue(i, std::move(outs[i]));
    return Status::Ok();
  }

 private:
  PlanPtr then_, else_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeIf(const KernelInit& init) {
  const Node& n = init.node;
  QK_CHECK_ARG(n.HasInput(0), "If needs its condition input");
  PlanPtr plans[2];
  const char* names[2] = {"then_branch", "else_branch"};
  for (int b = 0; b < 2; ++b) {
    QK_ASSIGN_OR_RETURN(const Graph* g, GraphAttr(n, names[b]));
    QK_CHECK_ARG(g->outputs.size() == n.outputs.size(), "{} has {} outputs, but If has {}", names[b],
                 g->outputs.size(), n.outputs.size());
    QK_CHECK_ARG(g->inputs.empty(), "{} must not have inputs (it has {})", names[b], g->inputs.size());
    auto plan = init.BuildSubgraph(*g);
    if (!plan.ok()) return plan.status().WithContext(names[b]);
    plans[b] = std::move(plan).value();
  }
  return std::unique_ptr<OpKernel>(new IfKernel(std::move(plans[0]), std::move(plans[1])));
}

// ---------------------------------------------------------------------------------------------
// Loop

class LoopKernel final : public OpKernel {
 public:
  LoopKernel(PlanPtr body, const Graph* graph, size_t num_carried, size_t num_scan)
      : body_(std::move(body)), graph_(graph), n_(num_carried), k_(num_scan) {}

  Status Compute(KernelContext& ctx) override {
    int64_t max_trip = std::numeric_limits<int64_t>::max();
    if (const Tensor* m = ctx.input(0)) {
      QK_CHECK_ARG(m->numel() == 1 && IsIntegerDType(m->dtype()), "trip count M must be an int64 scalar, got {} {}",
                   DTypeName(m->dtype()), ShapeToString(m->shape()));
      max_trip = m->GetAsInt64(0);
    }
    bool cond = true;
    if (const Tensor* c = ctx.input(1)) {
      QK_ASSIGN_OR_RETURN(cond, ReadCondition(*c, "loop condition (input #1)"));
    }
    std::vector<Value> carried(n_);
    for (size_t i = 0; i < n_; ++i) {
      const Value* v = ctx.input_value(2 + i);
      if (!v) return InvalidArgument(fmt::format("loop-carried input #{} is missing", 2 + i));
      carried[i] = *v;
    }
    std::vector<std::vector<Tensor>> scans(k_);
    std::vector<Value> outs;
    for (int64_t it = 0; it < max_trip && cond; ++it) {
      std::vector<Value> ins;
      ins.reserve(2 + n_);
      ins.push_back(Value::FromTensor(Tensor::Scalar<int64_t>(it)));
      ins.push_back(Value::FromTensor(Tensor::Scalar<bool>(cond)));
      for (auto& v : carried) ins.push_back(v);
      Status s = ctx.RunSubgraph(*body_, std::move(ins), &outs);
      if (!s.ok()) return s.WithContext(fmt::format("loop body (iteration {})", it));
      QK_CHECK_ARG(outs.size() == 1 + n_ + k_, "loop body produced {} outputs, expected {}", outs.size(),
                   1 + n_ + k_);
      QK_CHECK_ARG(outs[0].is_tensor(), "loop body condition output is {}, not a tensor", KindName(&outs[0]));
      QK_ASSIGN_OR_RETURN(cond, ReadCondition(outs[0].tensor, "loop body condition output"));
      for (size_t i = 0; i < n_; ++i) carried[i] = std::move(outs[1 + i]);
      for (size_t j = 0; j < k_; ++j) {
        Value& v = outs[1 + n_ + j];
        if (!v.is_tensor()) {
          return Unimplemented(fmt::format("loop scan output #{} is {}; only tensors can be scan outputs", j,
                                           KindName(&v)));
        }
        if (!scans[j].empty()) {
          const Tensor& f = scans[j].front();
          QK_CHECK_ARG(f.shape() == v.tensor.shape() && f.dtype() == v.tensor.dtype(),
                       "loop scan output #{} changed from {} {} to {} {} at iteration {}", j, DTypeName(f.dtype()),
                       ShapeToString(f.shape()), DTypeName(v.tensor.dtype()), ShapeToString(v.tensor.shape()), it);
        }
        scans[j].push_back(std::move(v.tensor));
      }
    }
    for (size_t i = 0; i < n_; ++i) ctx.SetOutputValue(i, std::move(carried[i]));
    for (size_t j = 0; j < k_; ++j) {
      if (!ctx.output_wanted(n_ + j)) continue;
      if (scans[j].empty()) {
        ctx.SetOutput(n_ + j, EmptyScanOutput(graph_->outputs[1 + n_ + j], 0));
        continue;
      }
      QK_ASSIGN_OR_RETURN(Tensor t, StackTensors(scans[j], 0, ctx.allocator(), "loop scan output"));
      ctx.SetOutput(n_ + j, std::move(t));
    }
    return Status::Ok();
  }

 private:
  PlanPtr body_;
  const Graph* graph_;
  size_t n_, k_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeLoop(const KernelInit& init) {
  const Node& n = init.node;
  QK_ASSIGN_OR_RETURN(const Graph* g, GraphAttr(n, "body"));
  QK_CHECK_ARG(n.inputs.size() >= 2, "Loop needs inputs (M, cond, v_initial...), got {}", n.inputs.size());
  const size_t N = n.inputs.size() - 2;
  QK_CHECK_ARG(n.outputs.size() >= N, "Loop has {} loop-carried inputs but only {} outputs", N, n.outputs.size());
  const size_t K = n.outputs.size() - N;
  QK_CHECK_ARG(g->inputs.size() == 2 + N, "loop body has {} inputs, expected {} (iteration, condition, {} carried)",
               g->inputs.size(), 2 + N, N);
  QK_CHECK_ARG(g->outputs.size() == 1 + N + K,
               "loop body has {} outputs, expected {} (condition, {} carried, {} scan outputs)", g->outputs.size(),
               1 + N + K, N, K);
  auto plan = init.BuildSubgraph(*g);
  if (!plan.ok()) return plan.status().WithContext("loop body");
  return std::unique_ptr<OpKernel>(new LoopKernel(std::move(plan).value(), g, N, K));
}

// ---------------------------------------------------------------------------------------------
// Scan

class ScanKernel final : public OpKernel {
 public:
  struct Config {
    bool v8 = false;  // opset 8: leading sequence_lens input and batch axis 0 everywhere
    size_t num_state = 0, num_scan_in = 0, num_scan_out = 0;
    std::vector<int64_t> in_axes, in_dirs, out_axes, out_dirs;
  };
  ScanKernel(PlanPtr body, const Graph* graph, Config c) : body_(std::move(body)), graph_(graph), c_(std::move(c)) {}

  Status Compute(KernelContext& ctx) override {
    const size_t first = c_.v8 ? 1 : 0;
    if (c_.v8) {
      int64_t batch = -1;
      for (size_t i = 0; i < c_.num_state + c_.num_scan_in; ++i) {
        QK_ASSIGN_OR_RETURN(const Tensor* t, ctx.RequiredInput(first + i));
        QK_CHECK_ARG(t->rank() >= 1, "Scan-8 input #{} needs a batch axis", first + i);
        if (batch < 0) batch = t->dim(0);
        QK_CHECK_ARG(t->dim(0) == batch, "Scan-8 input #{} has batch size {}, expected {}", first + i, t->dim(0),
                     batch);
      }
      QK_CHECK_ARG(batch >= 0, "Scan needs at least one input");
      std::vector<std::vector<Tensor>> states(c_.num_state), scan_out(c_.num_scan_out);
      for (int64_t b = 0; b < batch; ++b) {
        std::vector<Tensor> st(c_.num_state), si(c_.num_scan_in);
        for (size_t i = 0; i < c_.num_state; ++i) {
          QK_ASSIGN_OR_RETURN(st[i], TakeSlice(*ctx.input(first + i), 0, b, ctx.allocator()));
        }
        for (size_t j = 0; j < c_.num_scan_in; ++j) {
          QK_ASSIGN_OR_RETURN(si[j], TakeSlice(*ctx.input(first + c_.num_state + j), 0, b, ctx.allocator()));
        }
        if (const Tensor* lens = ctx.input(0)) {
          QK_CHECK_ARG(lens->numel() == batch, "sequence_lens has {} entries, batch is {}", lens->numel(), batch);
          for (size_t j = 0; j < c_.num_scan_in; ++j) {
            QK_CHECK_ARG(si[j].rank() >= 1 && lens->GetAsInt64(b) == si[j].dim(0),
                         "Scan-8 sequence_lens[{}] = {} differs from the sequence length: variable lengths are not "
                         "supported",
                         b, lens->GetAsInt64(b));
          }
        }
        std::vector<Tensor> outs;
        QK_RETURN_IF_ERROR(RunScan(ctx, st, si, &outs));
        for (size_t i = 0; i < c_.num_state; ++i) states[i].push_back(std::move(outs[i]));
        for (size_t k = 0; k < c_.num_scan_out; ++k) scan_out[k].push_back(std::move(outs[c_.num_state + k]));
      }
      for (size_t i = 0; i < c_.num_state; ++i) {
        QK_ASSIGN_OR_RETURN(Tensor t, StackTensors(states[i], 0, ctx.allocator(), "Scan state output"));
        ctx.SetOutput(i, std::move(t));
      }
      for (size_t k = 0; k < c_.num_scan_out; ++k) {
        QK_ASSIGN_OR_RETURN(Tensor t, StackTensors(scan_out[k], 0, ctx.allocator(), "Scan output"));
        ctx.SetOutput(c_.num_state + k, std::move(t));
      }
      return Status::Ok();
    }
    std::vector<Tensor> st(c_.num_state), si(c_.num_scan_in);
    for (size_t i = 0; i < c_.num_state; ++i) {
      QK_ASSIGN_OR_RETURN(const Tensor* t, ctx.RequiredInput(i));
      st[i] = *t;
    }
    for (size_t j = 0; j < c_.num_scan_in; ++j) {
      QK_ASSIGN_OR_RETURN(const Tensor* t, ctx.RequiredInput(c_.num_state + j));
      si[j] = *t;
    }
    std::vector<Tensor> outs;
    QK_RETURN_IF_ERROR(RunScan(ctx, st, si, &outs));
    for (size_t i = 0; i < outs.size(); ++i) ctx.SetOutput(i, std::move(outs[i]));
    return Status::Ok();
  }

 private:
  // One scan over the sequence axis: outputs = final states then stacked scan outputs.
  Status RunScan(KernelContext& ctx, std::vector<Tensor> states, const std::vector<Tensor>& scan_in,
                 std::vector<Tensor>* result) {
    int64_t seq = -1;
    std::vector<int64_t> axes(c_.num_scan_in);
    for (size_t j = 0; j < c_.num_scan_in; ++j) {
      const int64_t a = c_.in_axes.empty() ? 0 : c_.in_axes[j];
      QK_ASSIGN_OR_RETURN(axes[j], NormalizeAxis(a, static_cast<int64_t>(scan_in[j].rank())));
      const int64_t len = scan_in[j].dim(axes[j]);
      if (seq < 0) seq = len;
      QK_CHECK_ARG(len == seq, "scan input #{} has sequence length {}, expected {}", j, len, seq);
    }
    if (seq < 0) seq = 0;
    std::vector<std::vector<Tensor>> scans(c_.num_scan_out);
    std::vector<Value> outs;
    for (int64_t t = 0; t < seq; ++t) {
      std::vector<Value> ins;
      for (auto& s : states) ins.push_back(Value::FromTensor(s));
      for (size_t j = 0; j < c_.num_scan_in; ++j) {
        const bool rev = !c_.in_dirs.empty() && c_.in_dirs[j] != 0;
        QK_ASSIGN_OR_RETURN(Tensor sl, TakeSlice(scan_in[j], axes[j], rev ? seq - 1 - t : t, ctx.allocator()));
        ins.push_back(Value::FromTensor(std::move(sl)));
      }
      Status s = ctx.RunSubgraph(*body_, std::move(ins), &outs);
      if (!s.ok()) return s.WithContext(fmt::format("scan body (iteration {})", t));
      QK_CHECK_ARG(outs.size() == c_.num_state + c_.num_scan_out, "scan body produced {} outputs, expected {}",
                   outs.size(), c_.num_state + c_.num_scan_out);
      for (size_t i = 0; i < outs.size(); ++i) {
        QK_CHECK_ARG(outs[i].is_tensor(), "scan body output #{} is {}, not a tensor", i, KindName(&outs[i]));
      }
      for (size_t i = 0; i < c_.num_state; ++i) states[i] = std::move(outs[i].tensor);
      for (size_t k = 0; k < c_.num_scan_out; ++k) scans[k].push_back(std::move(outs[c_.num_state + k].tensor));
    }
    result->clear();
    for (auto& s : states) result->push_back(std::move(s));
    for (size_t k = 0; k < c_.num_scan_out; ++k) {
      const int64_t a = c_.out_axes.empty() ? 0 : c_.out_axes[k];
      const bool rev = !c_.out_dirs.empty() && c_.out_dirs[k] != 0;
      if (scans[k].empty()) {
        result->push_back(EmptyScanOutput(graph_->outputs[c_.num_state + k], a < 0 ? 0 : a));
        continue;
      }
      QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(a, static_cast<int64_t>(scans[k][0].rank()) + 1));
      if (rev) std::reverse(scans[k].begin(), scans[k].end());
      QK_ASSIGN_OR_RETURN(Tensor t, StackTensors(scans[k], axis, ctx.allocator(), "scan output"));
      result->push_back(std::move(t));
    }
    return Status::Ok();
  }

  PlanPtr body_;
  const Graph* graph_;
  Config c_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeScan(const KernelInit& init) {
  const Node& n = init.node;
  QK_ASSIGN_OR_RETURN(const Graph* g, GraphAttr(n, "body"));
  ScanKernel::Config c;
  c.v8 = init.opset > 0 && init.opset < 9;
  const int64_t m = n.AttrInt("num_scan_inputs", -1);
  const size_t first = c.v8 ? 1 : 0;
  QK_CHECK_ARG(m >= 0 && n.inputs.size() >= first + static_cast<size_t>(m),
               "num_scan_inputs ({}) must be given and at most the number of inputs ({})", m, n.inputs.size());
  c.num_scan_in = static_cast<size_t>(m);
  c.num_state = n.inputs.size() - first - c.num_scan_in;
  QK_CHECK_ARG(n.outputs.size() >= c.num_state, "Scan has {} state variables but {} outputs", c.num_state,
               n.outputs.size());
  c.num_scan_out = n.outputs.size() - c.num_state;
  QK_CHECK_ARG(g->inputs.size() == c.num_state + c.num_scan_in, "scan body has {} inputs, expected {}",
               g->inputs.size(), c.num_state + c.num_scan_in);
  QK_CHECK_ARG(g->outputs.size() == c.num_state + c.num_scan_out, "scan body has {} outputs, expected {}",
               g->outputs.size(), c.num_state + c.num_scan_out);
  if (c.v8) {
    c.in_dirs = n.AttrInts("directions");
  } else {
    c.in_axes = n.AttrInts("scan_input_axes");
    c.in_dirs = n.AttrInts("scan_input_directions");
    c.out_axes = n.AttrInts("scan_output_axes");
    c.out_dirs = n.AttrInts("scan_output_directions");
  }
  QK_CHECK_ARG(c.in_axes.empty() || c.in_axes.size() == c.num_scan_in, "scan_input_axes has {} entries, expected {}",
               c.in_axes.size(), c.num_scan_in);
  QK_CHECK_ARG(c.in_dirs.empty() || c.in_dirs.size() == c.num_scan_in, "scan input directions has {} entries, expected {}",
               c.in_dirs.size(), c.num_scan_in);
  QK_CHECK_ARG(c.out_axes.empty() || c.out_axes.size() == c.num_scan_out,
               "scan_output_axes has {} entries, expected {}", c.out_axes.size(), c.num_scan_out);
  QK_CHECK_ARG(c.out_dirs.empty() || c.out_dirs.size() == c.num_scan_out,
               "scan_output_directions has {} entries, expected {}", c.out_dirs.size(), c.num_scan_out);
  auto plan = init.BuildSubgraph(*g);
  if (!plan.ok()) return plan.status().WithContext("scan body");
  return std::unique_ptr<OpKernel>(new ScanKernel(std::move(plan).value(), g, std::move(c)));
}

// ---------------------------------------------------------------------------------------------
// SequenceMap

class SequenceMapKernel final : public OpKernel {
 public:
  SequenceMapKernel(PlanPtr body, size_t num_out) : body_(std::move(body)), num_out_(num_out) {}
  Status Compute(KernelContext& ctx) override {
    const Value* first = ctx.input_value(0);
    QK_CHECK_ARG(first && first->is_sequence(), "input_sequence (input #0) is {}, expected a sequence",
                 KindName(first));
    const size_t len = first->sequence.size();
    std::vector<const Value*> ins(ctx.num_inputs());
    for (size_t i = 0; i < ctx.num_inputs(); ++i) {
      ins[i] = ctx.input_value(i);
      QK_CHECK_ARG(ins[i], "input #{} is missing", i);
      if (ins[i]->is_sequence()) {
        QK_CHECK_ARG(ins[i]->sequence.size() == len, "sequence input #{} has {} elements, input #0 has {}", i,
                     ins[i]->sequence.size(), len);
      }
    }
    std::vector<std::vector<Tensor>> results(num_out_);
    std::vector<Value> outs;
    for (size_t e = 0; e < len; ++e) {
      std::vector<Value> body_in;
      for (const Value* v : ins) {
        body_in.push_back(v->is_sequence() ? Value::FromTensor(v->sequence[e]) : *v);
      }
      Status s = ctx.RunSubgraph(*body_, std::move(body_in), &outs);
      if (!s.ok()) return s.WithContext(fmt::format("SequenceMap body (element {})", e));
      QK_CHECK_ARG(outs.size() == num_out_, "SequenceMap body produced {} outputs, expected {}", outs.size(),
                   num_out_);
      for (size_t k = 0; k < num_out_; ++k) {
        QK_CHECK_ARG(outs[k].is_tensor(), "SequenceMap body output #{} is {}, expected a tensor", k,
                     KindName(&outs[k]));
        results[k].push_back(std::move(outs[k].tensor));
      }
    }
    for (size_t k = 0; k < num_out_; ++k) ctx.SetOutputValue(k, Value::FromSequence(std::move(results[k])));
    return Status::Ok();
  }

 private:
  PlanPtr body_;
  size_t num_out_;
};

StatusOr<std::unique_ptr<OpKernel>> MakeSequenceMap(const KernelInit& init) {
  const Node& n = init.node;
  QK_ASSIGN_OR_RETURN(const Graph* g, GraphAttr(n, "body"));
  QK_CHECK_ARG(g->inputs.size() == n.inputs.size(), "SequenceMap body has {} inputs, node has {}", g->inputs.size(),
               n.inputs.size());
  QK_CHECK_ARG(g->outputs.size() == n.outputs.size(), "SequenceMap body has {} outputs, node has {}",
               g->outputs.size(), n.outputs.size());
  auto plan = init.BuildSubgraph(*g);
  if (!plan.ok()) return plan.status().WithContext("SequenceMap body");
  return std::unique_ptr<OpKernel>(new SequenceMapKernel(std::move(plan).value(), n.outputs.size()));
}

// ---------------------------------------------------------------------------------------------
// Sequence ops

StatusOr<const std::vector<Tensor>*> SequenceInput(KernelContext& ctx, size_t i) {
  const Value* v = ctx.input_value(i);
  if (!v || !v->is_sequence()) {
    return InvalidArgument(fmt::format("input #{} is {}, expected a sequence", i, KindName(v)));
  }
  return &v->sequence;
}

// Reads a position scalar and normalizes it into [0, n) (or [0, n] when allow_end).
StatusOr<int64_t> ReadPosition(const Tensor& t, int64_t n, bool allow_end) {
  QK_CHECK_ARG(t.numel() == 1 && (t.dtype() == DType::kInt32 || t.dtype() == DType::kInt64),
               "position must be an int32/int64 scalar, got {} {}", DTypeName(t.dtype()), ShapeToString(t.shape()));
  const int64_t p = t.GetAsInt64(0);
  const int64_t hi = allow_end ? n : n - 1;
  QK_CHECK_ARG(p >= -n && p <= hi, "position {} is out of range [{}, {}] for a sequence of {} tensors", p, -n, hi, n);
  return p < 0 ? p + n : p;
}

Status SequenceEmptyFn(KernelContext& ctx) {
  const int64_t dt = ctx.node().AttrInt("dtype", static_cast<int64_t>(DType::kFloat32));
  QK_CHECK_ARG(IsSupportedDType(static_cast<int32_t>(dt)), "dtype {} is not supported", dt);
  ctx.SetOutputValue(0, Value::FromSequence({}));
  return Status::Ok();
}

Status SequenceConstructFn(KernelContext& ctx) {
  std::vector<Tensor> seq;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    QK_ASSIGN_OR_RETURN(const Tensor* t, ctx.RequiredInput(i));
    QK_CHECK_ARG(seq.empty() || t->dtype() == seq[0].dtype(), "input #{} has type {}, input #0 has {}", i,
                 DTypeName(t->dtype()), DTypeName(seq[0].dtype()));
    seq.push_back(*t);
  }
  ctx.SetOutputValue(0, Value::FromSequence(std::move(seq)));
  return Status::Ok();
}

Status SequenceInsertFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const std::vector<Tensor>* in, SequenceInput(ctx, 0));
  QK_ASSIGN_OR_RETURN(const Tensor* t, ctx.RequiredInput(1));
  if (!in->empty()) {
    QK_CHECK_ARG(t->dtype() == (*in)[0].dtype(), "tensor type {} differs from the sequence's element type {}",
                 DTypeName(t->dtype()), DTypeName((*in)[0].dtype()));
  }
  const int64_t n = static_cast<int64_t>(in->size());
  int64_t pos = n;
  if (const Tensor* p = ctx.input(2)) {
    QK_ASSIGN_OR_RETURN(pos, ReadPosition(*p, n, true));
  }
  std::vector<Tensor> out = *in;
  out.insert(out.begin() + pos, *t);
  ctx.SetOutputValue(0, Value::FromSequence(std::move(out)));
  return Status::Ok();
}

Status SequenceAtFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const std::vector<Tensor>* in, SequenceInput(ctx, 0));
  QK_ASSIGN_OR_RETURN(const Tensor* p, ctx.RequiredInput(1));
  QK_ASSIGN_OR_RETURN(int64_t pos, ReadPosition(*p, static_cast<int64_t>(in->size()), false));
  ctx.SetOutput(0, (*in)[pos]);
  return Status::Ok();
}

Status SequenceEraseFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const std::vector<Tensor>* in, SequenceInput(ctx, 0));
  const int64_t n = static_cast<int64_t>(in->size());
  QK_CHECK_ARG(n > 0, "cannot erase from an empty sequence");
  int64_t pos = n - 1;
  if (const Tensor* p = ctx.input(1)) {
    QK_ASSIGN_OR_RETURN(pos, ReadPosition(*p, n, false));
  }
  std::vector<Tensor> out = *in;
  out.erase(out.begin() + pos);
  ctx.SetOutputValue(0, Value::FromSequence(std::move(out)));
  return Status::Ok();
}

Status SequenceLengthFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const std::vector<Tensor>* in, SequenceInput(ctx, 0));
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kInt64, {}));
  y->data<int64_t>()[0] = static_cast<int64_t>(in->size());
  return Status::Ok();
}

Status ConcatFromSequenceFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const std::vector<Tensor>* in, SequenceInput(ctx, 0));
  QK_CHECK_ARG(!in->empty(), "cannot concatenate an empty sequence");
  const Attribute* axis_attr = ctx.node().FindAttr("axis");
  QK_CHECK_ARG(axis_attr, "attribute 'axis' is required");
  const int64_t new_axis = ctx.node().AttrInt("new_axis", 0);
  QK_CHECK_ARG(new_axis == 0 || new_axis == 1, "new_axis must be 0 or 1, got {}", new_axis);
  const int64_t rank = static_cast<int64_t>((*in)[0].rank()) + (new_axis ? 1 : 0);
  QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(axis_attr->i, rank));
  StatusOr<Tensor> out = new_axis ? StackTensors(*in, axis, ctx.allocator(), "ConcatFromSequence")
                                  : ConcatTensors(*in, axis, ctx.allocator(), "ConcatFromSequence");
  if (!out.ok()) return out.status();
  ctx.SetOutput(0, std::move(out).value());
  return Status::Ok();
}

Status SplitToSequenceFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
  const Tensor* split = ctx.input(1);
  QK_CHECK_ARG(x->rank() >= 1, "input must have rank >= 1");
  QK_ASSIGN_OR_RETURN(int64_t axis, NormalizeAxis(ctx.node().AttrInt("axis", 0), static_cast<int64_t>(x->rank())));
  const int64_t keepdims = ctx.node().AttrInt("keepdims", 1);
  const int64_t len = x->dim(axis);
  std::vector<int64_t> sizes;
  bool squeeze = false;
  if (!split) {
    sizes.assign(static_cast<size_t>(len), 1);
    squeeze = keepdims == 0;
  } else {
    QK_CHECK_ARG(split->dtype() == DType::kInt32 || split->dtype() == DType::kInt64, "split must be int32/int64, got {}",
                 DTypeName(split->dtype()));
    if (split->rank() == 0) {
      const int64_t chunk = split->GetAsInt64(0);
      QK_CHECK_ARG(chunk > 0, "split size must be positive, got {}", chunk);
      for (int64_t p = 0; p < len; p += chunk) sizes.push_back(std::min(chunk, len - p));
    } else {
      QK_CHECK_ARG(split->rank() == 1, "split must be a scalar or 1-D, got shape {}", ShapeToString(split->shape()));
      sizes = split->ToInt64Vector();
      int64_t total = 0;
      for (int64_t s : sizes) {
        QK_CHECK_ARG(s >= 0, "split sizes must be non-negative, got {}", s);
        total += s;
      }
      QK_CHECK_ARG(total == len, "split sizes sum to {}, but dimension {} is {}", total, axis, len);
    }
  }
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x->dim(d);
  for (size_t d = axis + 1; d < x->rank(); ++d) inner *= x->dim(d);
  const size_t es = ElemSize(*x);
  std::vector<Tensor> seq;
  int64_t start = 0;
  for (int64_t s : sizes) {
    Shape shape = x->shape();
    shape[axis] = s;
    QK_ASSIGN_OR_RETURN(Tensor part, Tensor::CreateUninitialized(x->dtype(), shape, ctx.allocator(), "split part"));
    const size_t chunk = static_cast<size_t>(s * inner) * es;
    for (int64_t o = 0; o < outer && chunk > 0; ++o) {
      std::memcpy(static_cast<char*>(part.raw_data()) + o * chunk,
                  static_cast<const char*>(x->raw_data()) + (o * len + start) * inner * es, chunk);
    }
    if (squeeze) {
      shape.erase(shape.begin() + axis);
      part = part.Reshaped(shape);
    }
    seq.push_back(std::move(part));
    start += s;
  }
  ctx.SetOutputValue(0, Value::FromSequence(std::move(seq)));
  return Status::Ok();
}

// Optional values: an optional holding a value is represented by the value itself.
Status OptionalFn(KernelContext& ctx) {
  const Value* v = ctx.input_value(0);
  if (!v) return Unimplemented("empty optionals (Optional without an input) are not supported");
  ctx.SetOutputValue(0, *v);
  return Status::Ok();
}

Status OptionalHasElementFn(KernelContext& ctx) {
  QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kBool, {}));
  y->data<bool>()[0] = ctx.input_value(0) != nullptr;
  return Status::Ok();
}

Status OptionalGetElementFn(KernelContext& ctx) {
  const Value* v = ctx.input_value(0);
  if (!v) return InvalidArgument("OptionalGetElement on an empty optional");
  ctx.SetOutputValue(0, *v);
  return Status::Ok();
}

}  // namespace

void RegisterControlFlowOps(KernelRegistry& r) {
  r.Register("", "If", &MakeIf);
  r.Register("", "Loop", &MakeLoop);
  r.Register("", "Scan", &MakeScan);
  r.Register("", "SequenceMap", &MakeSequenceMap);
  r.RegisterFunction("", "SequenceEmpty", &SequenceEmptyFn);
  r.RegisterFunction("", "SequenceConstruct", &SequenceConstructFn);
  r.RegisterFunction("", "SequenceInsert", &SequenceInsertFn);
  r.RegisterFunction("", "SequenceAt", &SequenceAtFn);
  r.RegisterFunction("", "SequenceErase", &SequenceEraseFn);
  r.RegisterFunction("", "SequenceLength", &SequenceLengthFn);
  r.RegisterFunction("", "ConcatFromSequence", &ConcatFromSequenceFn);
  r.RegisterFunction("", "SplitToSequence", &SplitToSequenceFn);
  r.RegisterFunction("", "Optional", &OptionalFn);
  r.RegisterFunction("", "OptionalHasElement", &OptionalHasElementFn);
  r.RegisterFunction("", "OptionalGetElement", &OptionalGetElementFn);
}

}  // namespace quantkit::rt
