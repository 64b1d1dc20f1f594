// Pass: constant folding. A node whose inputs are all constants is run once, with the runtime's
// own kernels (so folding and execution can never disagree), and its outputs become initializers.
// Inside subgraphs (If/Loop bodies), initializers of the enclosing graphs count as constants too
// (exported models often keep a branch's weights in the main graph), unless a local value shadows
// them.
#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "core/thread_pool.h"
#include "passes/passes.h"
#include "runtime/buffer_pool.h"
#include "runtime/plan.h"

namespace quantkit::passes {

namespace {

// Constants visible to a graph: its own initializers, then those of the enclosing graphs.
using Scope = std::unordered_map<std::string, const Tensor*>;

const Tensor* FindConstant(const Graph& g, const Scope& outer, const std::unordered_set<std::string>& local,
                           const std::string& name) {
  if (g.IsGraphInput(name)) return nullptr;
  if (const Tensor* t = g.FindInitializer(name)) return t;
  if (local.count(name)) return nullptr;
  auto it = outer.find(name);
  return it == outer.end() ? nullptr : it->second;
}

bool IsFoldable(const Graph& g, const Node& n, const Scope& outer, const std::unordered_set<std::string>& local,
                bool keep_dequantize) {
  if (keep_dequantize && n.op_type == "DequantizeLinear") return false;
  static const std::unordered_set<std::string> kNondeterministic = {
      "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"};
  if (!n.IsDefaultDomain() || kNondeterministic.count(n.op_type)) return false;
  for (const auto& a : n.attributes)
    if (a.g || !a.graphs.empty()) return false;
  bool any_input = false;
  for (const auto& in : n.inputs) {
    if (in.empty()) continue;
    if (!FindConstant(g, outer, local, in)) return false;
    any_input = true;
  }
  if (!any_input) return false;
  return IsOpSupported(n.domain, n.op_type);
}

Status Run(Graph& g, const Model& model, uint64_t max_output_bytes, bool keep_dequantize, ThreadPool& pool,
           const Scope& outer) {
  std::unordered_set<std::string> local;  // values defined in this graph (they shadow outer names)
  for (const auto& in : g.inputs) local.insert(in.name);
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) local.insert(o);
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (auto& n : g.nodes) {
    if (!IsFoldable(g, n, outer, local, keep_dequantize)) {
      kept.push_back(std::move(n));
      continue;
    }
    Graph tmp;
    tmp.name = "fold";
    for (const auto& in : n.inputs)
      if (!in.empty() && !tmp.IsInitializer(in)) tmp.AddInitializer(in, *FindConstant(g, outer, local, in));
    tmp.nodes.push_back(n);
    for (const auto& o : n.outputs)
      if (!o.empty()) {
        ValueInfo vi;
        vi.name = o;
        tmp.outputs.push_back(vi);
      }
    std::vector<Value> outs;
    Status s;
    {
      auto plan = rt::Plan::Build(tmp, model, nullptr);
      s = plan.status();
      if (s.ok()) {
        // Results above max_output_bytes are not kept: refuse them at allocation, so a huge constant
        // expression is left for the session's pool (and its memory limit) instead of computed here.
        rt::CappedAllocator capped(max_output_bytes);
        rt::RunContext run{&capped, &pool};
        s = (*plan)->Run(run, nullptr, {}, &outs);
      }
    }
    bool fits = s.ok();
    for (const auto& v : outs) fits &= v.is_tensor() && v.tensor.nbytes() <= max_output_bytes;
    if (!fits) {
      // Not an error: the node may fail only on these particular constants at run time too, or the
      // result is too big to store; it is left for execution, where errors get full context.
      kept.push_back(std::move(n));
      continue;
    }
    size_t k = 0;
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      // A folded value is owned by the model from now on: copy it out of the pool-free buffer.
      g.AddInitializer(o, outs[k++].tensor);
    }
  }
  g.nodes = std::move(kept);
  // Subgraphs last, so they see this graph's freshly folded constants.
  Scope inner = outer;
  for (const auto& name : local) inner.erase(name);
  for (const auto& [name, t] : g.initializers)
    if (!g.IsGraphInput(name)) inner[name] = &t;
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(Run(*a.g, model, max_output_bytes, keep_dequantize, pool, inner));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(Run(*sg, model, max_output_bytes, keep_dequantize, pool, inner));
    }
  return Status::Ok();
}

}  // namespace

Status FoldConstants(Model& model, uint64_t max_output_bytes, bool keep_dequantize) {
  ThreadPool pool(1);
  return Run(model.graph, model, max_output_bytes, keep_dequantize, pool, {});
}

}  // namespace quantkit::passes
