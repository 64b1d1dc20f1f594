// Pass: removes nodes whose outputs nobody uses, and initializers nobody reads.
#include <unordered_set>

#include "passes/passes.h"

namespace quantkit::passes {

namespace {

// Removes dead nodes of g; `outer_reads` are not needed here since a subgraph's outputs are
// its only externally visible values.
void Run(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) Run(*a.g);
      for (auto& sg : a.graphs) Run(*sg);
    }
  std::unordered_set<std::string> live;
  for (const auto& o : g.outputs) live.insert(o.name);
  std::vector<bool> keep(g.nodes.size(), false);
  for (size_t k = g.nodes.size(); k-- > 0;) {
    const Node& n = g.nodes[k];
    bool used = false;
    for (const auto& o : n.outputs) used |= !o.empty() && live.count(o);
    if (!used) continue;
    keep[k] = true;
    for (const auto& v : NodeReads(n)) live.insert(v);
  }
  std::vector<Node> nodes;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (keep[k]) nodes.push_back(std::move(g.nodes[k]));
  g.nodes = std::move(nodes);
  // Initializers: keep those read, and those that are graph inputs (overridable defaults).
  std::vector<std::string> drop;
  for (const auto& name : g.initializer_order)
    if (!live.count(name) && !g.IsGraphInput(name)) drop.push_back(name);
  for (const auto& name : drop) g.RemoveInitializer(name);
  // value_info of values that no longer exist is harmless but misleading: drop it.
  std::unordered_set<std::string> exists(live);
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) exists.insert(o);
  std::vector<ValueInfo> vis;
  for (auto& vi : g.value_info)
    if (exists.count(vi.name)) vis.push_back(std::move(vi));
  g.value_info = std::move(vis);
}

}  // namespace

Status EliminateDeadNodes(Model& model) {
  Run(model.graph);
  return Status::Ok();
}

}  // namespace quantkit::passes
