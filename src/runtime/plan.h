// Plan: a graph compiled for execution. Values become numbered slots; each step knows its kernel,
// its input/output slots and which slots die after it (liveness), so the executor frees buffers
// as early as possible and the pool reuses them.
//
// Planning steps:
//  1. Order nodes topologically (the graph passes already did; verified here).
//  2. Give every value a slot: constants (initializers), graph inputs, values captured from the
//     enclosing graph (for If/Loop bodies), node outputs.
//  3. For each slot, find the last step that reads it (reads inside subgraphs count for the node
//     holding the subgraph); graph outputs and constants never die.
//  4. Create each node's kernel through the registry (which validates attributes and may pre-pack
//     constant weights).
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/thread_pool.h"
#include "quantkit/ir.h"
#include "quantkit/session.h"
#include "runtime/kernel.h"

namespace quantkit::rt {

struct RunContext {
  Allocator* allocator = nullptr;
  ThreadPool* threads = nullptr;
  const ValueObserver* observer = nullptr;  // sees every node output of the top-level graph
  std::vector<NodeTiming>* profile = nullptr;  // per top-level node timings, if wanted
};

// The live values of one execution of one plan.
// Constants and values captured from the enclosing graph are not copied into `slots`: Find
// resolves them from the plan and the parent frame (copying a tensor allocates its shape, and
// Silero's If branch read ~100 constants per 0.2 ms run).
struct Frame {
  const Plan* plan = nullptr;
  std::vector<Value> slots;
  Frame* parent = nullptr;
  RunContext* run = nullptr;

  const Value* Find(int slot) const;  // null if the slot holds nothing (yet, or any more)
};

class Plan {
 public:
  // parent: the enclosing plan when building a subgraph (its slots supply outer-scope values).
  static StatusOr<std::unique_ptr<Plan>> Build(const Graph& graph, const Model& model, const Plan* parent);

  // Runs with the given graph inputs (in graph-input order; an empty Value for an input that
  // has an initializer default), and returns graph outputs in order.
  Status Run(RunContext& run, Frame* parent, std::vector<Value> inputs, std::vector<Value>* outputs) const;

  int SlotOf(const std::string& value) const;  // -1 if unknown
  // The initializer held by a slot, or null.
  const Value* ConstantAt(int slot) const {
    return constant_index_[slot] < 0 ? nullptr : &constant_values_[constant_index_[slot]];
  }
  // The enclosing graph's slot a captured slot reads, or -1.
  int CapturedFrom(int slot) const { return captured_from_[slot]; }
  const Graph& graph() const { return graph_; }
  const std::vector<std::string>& input_names() const { return input_names_; }

 private:
  struct Step {
    const Node* node = nullptr;
    std::unique_ptr<OpKernel> kernel;
    std::vector<int> in_slots;   // -1 for absent optional inputs
    std::vector<int> out_slots;  // -1 for unwanted outputs
    std::vector<int> release_after;
  };
  explicit Plan(const Graph& graph) : graph_(graph) {}

  const Graph& graph_;
  std::vector<Step> steps_;
  std::unordered_map<std::string, int> slot_of_;
  int num_slots_ = 0;
  std::vector<std::pair<int, Tensor>> constants_;
  std::vector<Value> constant_values_;  // constants_ as values, in order
  std::vector<int> constant_index_;     // per slot: index into constant_values_, or -1
  std::vector<int> captured_from_;      // per slot: the parent's slot, or -1
  std::vector<std::string> input_names_;
  std::vector<int> input_slots_;
  std::vector<const Tensor*> input_defaults_;  // initializer defaults for graph inputs (or null)
  std::vector<int> output_slots_;
  std::vector<std::pair<int, int>> captures_;  // (local slot, parent slot)
  std::vector<bool> wanted_;                   // per slot: read by a step or a graph output

  friend class KernelContext;
  friend struct KernelInit;
};

}  // namespace quantkit::rt
