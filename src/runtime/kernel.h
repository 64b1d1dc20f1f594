// The contract between the runtime and an operator implementation.
// An op is a factory (called once per node at session creation: read attributes, validate,
// pre-pack constant weights) that returns an OpKernel whose Compute() runs on every inference.
#pragma once

#include <fmt/format.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "quantkit/ir.h"
#include "quantkit/session.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit::rt {

// Domain of the fused ops the runtime's own passes create (never read from model files).
inline constexpr const char* kQuantkitDomain = "com.quantkit";

class Plan;
struct Frame;

// What a kernel factory sees.
struct KernelInit {
  const Node& node;
  const Model& model;
  int64_t opset = 0;                          // opset of the node's domain in this model
  std::vector<const Tensor*> constant_inputs;  // per input: the initializer if constant, else null
  const Plan* plan = nullptr;                  // the plan being built (parent of subgraph plans)

  const Tensor* ConstantInput(size_t i) const {
    return i < constant_inputs.size() ? constant_inputs[i] : nullptr;
  }
  // Builds an executable plan for a subgraph attribute (If/Loop bodies); it may read values of
  // the enclosing graphs.
  StatusOr<std::unique_ptr<Plan>> BuildSubgraph(const Graph& graph) const;
};

// What Compute() sees.
class KernelContext {
 public:
  KernelContext(const Node& node, Frame& frame, const std::vector<int>& in_slots,
                const std::vector<int>& out_slots);

  const Node& node() const { return node_; }
  size_t num_inputs() const { return in_slots_.size(); }
  size_t num_outputs() const { return out_slots_.size(); }
  // Input i as a tensor; nullptr if the optional input is absent (or is a sequence).
  const Tensor* input(size_t i) const;
  // Input i as a runtime value; nullptr if absent.
  const Value* input_value(size_t i) const;
  // Required input: an error naming the node if absent.
  StatusOr<const Tensor*> RequiredInput(size_t i) const;
  // True if output i exists and is consumed or is a graph output.
  bool output_wanted(size_t i) const;
  // Allocates output i (uninitialised) from the run's pool. Errors (e.g. memory limit) name the value.
  StatusOr<Tensor*> Output(size_t i, DType dtype, const Shape& shape);
  // Output i as already produced by this Compute (Output or SetOutput), or null.
  Tensor* produced_output(size_t i);
  // Sets output i to an existing tensor (shares its buffer; used by Reshape, Identity, ...).
  void SetOutput(size_t i, Tensor t);
  void SetOutputValue(size_t i, Value v);
  // Scratch memory for this Compute (im2col columns, packed activations, accumulators...):
  // `elements` uninitialised values of `dtype` as a 1-D tensor from the run's pool, so that it
  // counts against the session's memory limit like every tensor; it goes back to the pool when the
  // tensor is dropped. Over the limit, the error says what the scratch is for and its size
  // ("im2col scratch of N bytes would exceed the memory limit of L bytes (U bytes in use)"); the
  // executor prefixes the node, like every kernel error. Thread-safe: ParallelFor workers may call
  // it (and must hand a failure back as a Status, never throw).
  StatusOr<Tensor> Scratch(DType dtype, int64_t elements, const char* what) const;
  Allocator* allocator() const;
  ThreadPool* thread_pool() const;
  Frame& frame() { return frame_; }
  // Runs a subgraph plan with the given inputs (in its graph-input order), returns its outputs.
  Status RunSubgraph(const Plan& plan, std::vector<Value> inputs, std::vector<Value>* outputs);
  // "Conv node 'conv1'" for error messages.
  std::string where() const { return node_.Describe(); }

 private:
  const Node& node_;
  Frame& frame_;
  const std::vector<int>& in_slots_;
  const std::vector<int>& out_slots_;
  std::deque<Tensor> scratch_;
};

class OpKernel {
 public:
  virtual ~OpKernel() = default;
  virtual Status Compute(KernelContext& ctx) = 0;
};

using KernelFactory = std::function<StatusOr<std::unique_ptr<OpKernel>>(const KernelInit&)>;

// A kernel that is just a function (attributes read from ctx.node() each run). For simple ops.
class FunctionKernel final : public OpKernel {
 public:
  using Fn = Status (*)(KernelContext&);
  explicit FunctionKernel(Fn fn) : fn_(fn) {}
  Status Compute(KernelContext& ctx) override { return fn_(ctx); }

 private:
  Fn fn_;
};

class KernelRegistry {
 public:
  // domain "" is the default ONNX domain.
  void Register(const std::string& domain, const std::string& op_type, KernelFactory factory);
  void RegisterFunction(const std::string& domain, const std::string& op_type, FunctionKernel::Fn fn);
  // Convenience: a kernel class constructible from KernelInit that never fails to construct.
  template <typename K>
  void RegisterClass(const std::string& domain, const std::string& op_type) {
    Register(domain, op_type, [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
      return std::unique_ptr<OpKernel>(new K(init));
    });
  }
  const KernelFactory* Find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> OpNames() const;  // "Conv", "com.microsoft::QLinearAdd", ...

  static const KernelRegistry& Global();

 private:
  std::map<std::pair<std::string, std::string>, KernelFactory> factories_;
};

// Each op family registers itself here; the list lives in ops/registry.cc.
void RegisterAllOps(KernelRegistry& registry);

}  // namespace quantkit::rt
