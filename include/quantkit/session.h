// Session: runs a Model on the CPU. Created once (plans execution, prepares kernels), run many times.
// Run() may be called from several threads at once.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quantkit/ir.h"
#include "quantkit/status.h"
#include "quantkit/tensor.h"

namespace quantkit {

// A runtime value: a tensor, or a sequence of tensors (SequenceInsert & co.).
struct Value {
  enum class Kind { kNone, kTensor, kSequence };
  Kind kind = Kind::kNone;
  Tensor tensor;
  std::vector<Tensor> sequence;

  static Value FromTensor(Tensor t) {
    Value v;
    v.kind = Kind::kTensor;
    v.tensor = std::move(t);
    return v;
  }
  static Value FromSequence(std::vector<Tensor> s) {
    Value v;
    v.kind = Kind::kSequence;
    v.sequence = std::move(s);
    return v;
  }
  bool is_tensor() const { return kind == Kind::kTensor; }
  bool is_sequence() const { return kind == Kind::kSequence; }
};

// Called after each node of the main graph with each of its outputs (calibration, shape probing,
// debugging). Runs on the thread that called Run.
using ValueObserver = std::function<void(const Node& node, size_t output_index, const Value& value)>;

// Time spent in one node of the main graph (subgraph nodes count towards their If/Loop).
struct NodeTiming {
  const Node* node = nullptr;  // the node as executed (after the session's passes)
  double seconds = 0;
};

struct RunOptions {
  ValueObserver observer;
  std::vector<NodeTiming>* profile = nullptr;  // if set, one entry per executed node is appended
};

struct SessionOptions {
  int threads = 0;                // 0 = all cores
  uint64_t max_memory_bytes = 0;  // 0 = default (half of physical memory)
  bool optimize = true;           // run the inference graph passes (fold constants, BN, ...) first
  bool verbose = false;           // log planning decisions to stderr
  // With optimize: let passes::BlockConvChannels keep float convs' activations in NCHW16c (on
  // AVX-512). Off for runs that observe intermediate tensors by name (those tensors would be
  // renamed and blocked); QUANTKIT_LAYOUT=nchw in the environment turns it off too.
  bool blocked_layout = true;
  // The most work the blocked layout may add by padding channel counts to blocks of 16 (padded
  // over real multiply-adds of a component of convs; passes::BlockLayoutOptions). 0: by ISA,
  // unlimited with AVX-512, 1.25 on AVX2 (two vectors per block: the NCHW kernels win beyond).
  double max_padded_work = 0;
};

class Session {
 public:
  static StatusOr<std::unique_ptr<Session>> Create(Model model, const SessionOptions& options = {});
  ~Session();

  // Inputs by name; every graph input without an initializer must be given. Outputs come back in
  // graph-output order.
  Status Run(const std::vector<std::pair<std::string, Tensor>>& inputs, std::vector<Tensor>* outputs) const;
  Status RunValues(const std::vector<std::pair<std::string, Value>>& inputs, std::vector<Value>* outputs,
                   const RunOptions& run_options = {}) const;

  const std::vector<ValueInfo>& inputs() const;   // graph inputs that must be fed
  const std::vector<ValueInfo>& outputs() const;
  const Model& model() const;  // the model as executed (after passes)
  uint64_t peak_pool_bytes() const;

  struct Impl;

 private:
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Ops quantkit can execute: "Conv", "com.microsoft::FusedConv", ... (sorted).
std::vector<std::string> SupportedOps();
bool IsOpSupported(const std::string& domain, const std::string& op_type);

}  // namespace quantkit
