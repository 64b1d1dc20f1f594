// Plan building (slots, liveness, kernel creation) and the executor loop.
#include "runtime/plan.h"

#include <chrono>

#include <fmt/format.h>

#include <cstdint>
#include <unordered_set>

#include "runtime/buffer_pool.h"

namespace quantkit::rt {

namespace {
const std::string& KernelDomain(const Node& n) {
  static const std::string kDefault;
  return n.IsDefaultDomain() ? kDefault : n.domain;
}
}  // namespace

StatusOr<std::unique_ptr<Plan>> KernelInit::BuildSubgraph(const Graph& graph) const {
  return Plan::Build(graph, model, plan);
}

int Plan::SlotOf(const std::string& value) const {
  auto it = slot_of_.find(value);
  return it == slot_of_.end() ? -1 : it->second;
}

StatusOr<std::unique_ptr<Plan>> Plan::Build(const Graph& graph, const Model& model, const Plan* parent) {
  std::unique_ptr<Plan> plan(new Plan(graph));
  Plan& p = *plan;
  auto new_slot = [&](const std::string& name) {
    int s = p.num_slots_++;
    p.slot_of_[name] = s;
    return s;
  };
  // Graph inputs first (an input with an initializer is an overridable default).
  for (const auto& in : graph.inputs) {
    p.input_names_.push_back(in.name);
    p.input_slots_.push_back(new_slot(in.name));
    p.input_defaults_.push_back(graph.FindInitializer(in.name));
  }
  for (const auto& name : graph.initializer_order) {
    if (p.slot_of_.count(name)) continue;
    p.constants_.emplace_back(new_slot(name), graph.initializers.at(name));
  }
  if (parent) {
    for (const auto& outer : graph.OuterScopeValues()) {
      const int ps = parent->SlotOf(outer);
      if (ps < 0) {
        return InvalidArgument(fmt::format("subgraph '{}' reads '{}', which no enclosing graph defines",
                                           graph.name, outer));
      }
      p.captures_.emplace_back(new_slot(outer), ps);
    }
  }
  // Node outputs; check topological order on the way.
  p.steps_.resize(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    Step& st = p.steps_[i];
    st.node = &n;
    for (const auto& in : n.inputs) {
      if (in.empty()) {
        st.in_slots.push_back(-1);
        continue;
      }
      const int s = p.SlotOf(in);
      if (s < 0) {
        return InvalidArgument(fmt::format("{} reads '{}', which is not computed before it", n.Describe(), in));
      }
      st.in_slots.push_back(s);
    }
    for (const auto& out : n.outputs) {
      if (out.empty()) {
        st.out_slots.push_back(-1);
        continue;
      }
      if (p.slot_of_.count(out)) {
        return InvalidArgument(fmt::format("value '{}' is defined twice (again by {})", out, n.Describe()));
      }
      st.out_slots.push_back(new_slot(out));
    }
  }
  // Liveness: last reader of each slot.
  std::vector<int> last_use(p.num_slots_, -1);
  p.wanted_.assign(p.num_slots_, false);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& v : NodeReads(graph.nodes[i])) {
      const int s = p.SlotOf(v);
      if (s < 0) {
        return InvalidArgument(fmt::format("{} reads '{}' (in a subgraph), which is not defined",
                                           graph.nodes[i].Describe(), v));
      }
      last_use[s] = static_cast<int>(i);
      p.wanted_[s] = true;
    }
  }
  std::unordered_set<int> keep;
  for (const auto& out : graph.outputs) {
    const int s = p.SlotOf(out.name);
    if (s < 0) return InvalidArgument(fmt::format("graph output '{}' is never computed", out.name));
    p.output_slots_.push_back(s);
    keep.insert(s);
    p.wanted_[s] = true;
  }
  p.constant_index_.assign(p.num_slots_, -1);
  p.captured_from_.assign(p.num_slots_, -1);
  for (const auto& c : p.constants_) {
    keep.insert(c.first);
    p.constant_index_[c.first] = static_cast<int>(p.constant_values_.size());
    p.constant_values_.push_back(Value::FromTensor(c.second));
  }
  for (const auto& [local, outer] : p.captures_) p.captured_from_[local] = outer;
  for (const auto& c : p.captures_) keep.insert(c.first);  // owned by the parent frame
  for (size_t i = 0; i < p.steps_.size(); ++i) {
    for (int s : p.steps_[i].out_slots) {  // outputs nobody reads die right away
      if (s >= 0 && last_use[s] < 0 && !keep.count(s)) p.steps_[i].release_after.push_back(s);
    }
  }
  for (int s = 0; s < p.num_slots_; ++s) {
    if (last_use[s] >= 0 && !keep.count(s)) p.steps_[last_use[s]].release_after.push_back(s);
  }
  // Kernels.
  const KernelRegistry& registry = KernelRegistry::Global();
  for (auto& st : p.steps_) {
    const Node& n = *st.node;
    const KernelFactory* factory = registry.Find(KernelDomain(n), n.op_type);
    if (!factory) {
      return Unimplemented(fmt::format("{}: operator '{}'{} is not supported by quantkit's runtime",
                                       n.Describe(), n.op_type,
                                       n.IsDefaultDomain() ? "" : " of domain '" + n.domain + "'"));
    }
    KernelInit init{n, model, model.OpsetVersion(KernelDomain(n)), {}, &p};
    for (const auto& in : n.inputs) {
      const Tensor* c = nullptr;
      if (!in.empty() && !graph.IsGraphInput(in)) c = graph.FindInitializer(in);
      init.constant_inputs.push_back(c);
    }
    auto kernel = (*factory)(init);
    if (!kernel.ok()) return kernel.status().WithContext(n.Describe());
    st.kernel = std::move(kernel).value();
  }
  return plan;
}

Status Plan::Run(RunContext& run, Frame* parent, std::vector<Value> inputs, std::vector<Value>* outputs) const {
  Frame frame;
  frame.plan = this;
  frame.parent = parent;
  frame.run = &run;
  frame.slots.resize(num_slots_);
  if (inputs.size() > input_slots_.size()) {
    return InvalidArgument(fmt::format("graph '{}' takes {} inputs, got {}", graph_.name, input_slots_.size(),
                                       inputs.size()));
  }
  for (size_t i = 0; i < input_slots_.size(); ++i) {
    if (i < inputs.size() && inputs[i].kind != Value::Kind::kNone) {
      frame.slots[input_slots_[i]] = std::move(inputs[i]);
    } else if (input_defaults_[i]) {
      frame.slots[input_slots_[i]] = Value::FromTensor(*input_defaults_[i]);
    } else if (wanted_[input_slots_[i]]) {
      return InvalidArgument(fmt::format("graph input '{}' was not given", input_names_[i]));
    }
  }
  if (!captures_.empty() && !parent) return Internal("subgraph run without its enclosing frame");

  const bool profile = run.profile && !parent;
  for (const Step& st : steps_) {
    KernelContext ctx(*st.node, frame, st.in_slots, st.out_slots);
    const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    Status s = st.kernel->Compute(ctx);
    if (!s.ok()) return s.WithContext(st.node->Describe());
    if (profile) {
      run.profile->push_back({st.node, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    }
    for (size_t o = 0; o < st.out_slots.size(); ++o) {
      const int slot = st.out_slots[o];
      if (slot >= 0 && wanted_[slot] && frame.slots[slot].kind == Value::Kind::kNone) {
        return Internal(fmt::format("{} did not produce its output '{}'", st.node->Describe(),
                                    st.node->outputs[o]));
      }
    }
    if (run.observer && *run.observer && !parent) {
      for (size_t o = 0; o < st.out_slots.size(); ++o) {
        const int slot = st.out_slots[o];
        if (slot >= 0 && frame.slots[slot].kind != Value::Kind::kNone) (*run.observer)(*st.node, o, frame.slots[slot]);
      }
    }
    for (int slot : st.release_after) frame.slots[slot] = Value{};
  }
  outputs->clear();
  for (int s : output_slots_) {
    const Value* v = frame.Find(s);
    outputs->push_back(v ? *v : Value{});
  }
  return Status::Ok();
}

const Value* Frame::Find(int slot) const {
  const Value& v = slots[slot];
  if (v.kind != Value::Kind::kNone) return &v;
  if (const Value* c = plan->ConstantAt(slot)) return c;
  const int outer = plan->CapturedFrom(slot);
  return outer >= 0 && parent ? parent->Find(outer) : nullptr;
}

KernelContext::KernelContext(const Node& node, Frame& frame, const std::vector<int>& in_slots,
                             const std::vector<int>& out_slots)
    : node_(node), frame_(frame), in_slots_(in_slots), out_slots_(out_slots) {}

const Value* KernelContext::input_value(size_t i) const {
  if (i >= in_slots_.size() || in_slots_[i] < 0) return nullptr;
  return frame_.Find(in_slots_[i]);
}

const Tensor* KernelContext::input(size_t i) const {
  const Value* v = input_value(i);
  return v && v->is_tensor() ? &v->tensor : nullptr;
}

StatusOr<const Tensor*> KernelContext::RequiredInput(size_t i) const {
  const Tensor* t = input(i);
  if (!t) return InvalidArgument(fmt::format("required input #{} is missing", i));
  return t;
}

bool KernelContext::output_wanted(size_t i) const {
  return i < out_slots_.size() && out_slots_[i] >= 0 && frame_.plan->wanted_[out_slots_[i]];
}

StatusOr<Tensor*> KernelContext::Output(size_t i, DType dtype, const Shape& shape) {
  if (i >= out_slots_.size() || out_slots_[i] < 0) {
    // Unwanted optional output: a throwaway tensor that lives as long as this context.
    QK_ASSIGN_OR_RETURN(Tensor scratch, Tensor::CreateUninitialized(dtype, shape, allocator(), "unused output"));
    scratch_.push_back(std::move(scratch));
    return &scratch_.back();
  }
  Value& v = frame_.slots[out_slots_[i]];
  // The name only for the message: building it for every output was an allocation per output.
  auto t = Tensor::CreateUninitialized(dtype, shape, allocator(), "output");
  if (!t.ok()) t = Tensor::CreateUninitialized(dtype, shape, allocator(), "output '" + node_.outputs[i] + "'");
  if (!t.ok()) return t.status();
  v = Value::FromTensor(std::move(t).value());
  return &v.tensor;
}

Tensor* KernelContext::produced_output(size_t i) {
  if (i >= out_slots_.size() || out_slots_[i] < 0) return nullptr;
  Value& v = frame_.slots[out_slots_[i]];
  return v.is_tensor() ? &v.tensor : nullptr;
}

void KernelContext::SetOutput(size_t i, Tensor t) { SetOutputValue(i, Value::FromTensor(std::move(t))); }

void KernelContext::SetOutputValue(size_t i, Value v) {
  if (i >= out_slots_.size() || out_slots_[i] < 0) return;
  frame_.slots[out_slots_[i]] = std::move(v);
}

StatusOr<Tensor> KernelContext::Scratch(DType dtype, int64_t elements, const char* what) const {
  const uint64_t elem = DTypeSize(dtype);
  if (elem == 0 || elements < 0) {
    return Internal(fmt::format("{} scratch: bad request of {} {} elements", what, elements, DTypeName(dtype)));
  }
  auto t = Tensor::CreateUninitialized(dtype, {elements}, allocator(), fmt::format("{} scratch", what));
  if (t.ok() || t.status().code() != StatusCode::kResourceExhausted) return t;
  const uint64_t n = static_cast<uint64_t>(elements);
  const bool overflow = n > UINT64_MAX / elem;
  const std::string bytes = overflow ? fmt::format("{} x {}", n, elem) : std::to_string(n * elem);
  if (const auto* pool = dynamic_cast<const BufferPool*>(allocator())) {
    const uint64_t live = pool->live_bytes(), max = pool->max_bytes();
    if (max && (overflow || n * elem > max || live + (n * elem + 63) / 64 * 64 > max)) {  // pool rounds to 64
      return ResourceExhausted(fmt::format(
          "{} scratch of {} bytes would exceed the memory limit of {} bytes ({} bytes in use)", what, bytes, max, live));
    }
    return ResourceExhausted(fmt::format("{} scratch: cannot allocate {} bytes (out of memory)", what, bytes));
  }
  return ResourceExhausted(fmt::format("{} scratch of {} bytes: cannot allocate (memory limit)", what, bytes));
}

Allocator* KernelContext::allocator() const { return frame_.run->allocator; }
ThreadPool* KernelContext::thread_pool() const { return frame_.run->threads; }

Status KernelContext::RunSubgraph(const Plan& plan, std::vector<Value> inputs, std::vector<Value>* outputs) {
  return plan.Run(*frame_.run, &frame_, std::move(inputs), outputs);
}

void KernelRegistry::Register(const std::string& domain, const std::string& op_type, KernelFactory factory) {
  factories_[{domain, op_type}] = std::move(factory);
}

void KernelRegistry::RegisterFunction(const std::string& domain, const std::string& op_type,
                                      FunctionKernel::Fn fn) {
  Register(domain, op_type, [fn](const KernelInit&) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(new FunctionKernel(fn));
  });
}

const KernelFactory* KernelRegistry::Find(const std::string& domain, const std::string& op_type) const {
  auto it = factories_.find({domain == "ai.onnx" ? std::string() : domain, op_type});
  return it == factories_.end() ? nullptr : &it->second;
}

std::vector<std::string> KernelRegistry::OpNames() const {
  std::vector<std::string> names;
  for (const auto& kv : factories_)
    names.push_back(kv.first.first.empty() ? kv.first.second : kv.first.first + "::" + kv.first.second);
  return names;
}

const KernelRegistry& KernelRegistry::Global() {
  static const KernelRegistry registry = [] {
    KernelRegistry r;
    RegisterAllOps(r);
    return r;
  }();
  return registry;
}

}  // namespace quantkit::rt
