// Pass: topological sort of a graph's nodes (and its subgraphs).
#include <fmt/format.h>

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "passes/passes.h"

namespace quantkit::passes {

Status TopologicalSort(Graph& graph) {
  const size_t n = graph.nodes.size();
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < n; ++i)
    for (const auto& o : graph.nodes[i].outputs)
      if (!o.empty()) producer[o] = i;
  std::vector<std::vector<size_t>> users(n);
  std::vector<int> pending(n, 0);
  for (size_t i = 0; i < n; ++i) {
    std::unordered_set<size_t> deps;
    for (const auto& v : NodeReads(graph.nodes[i])) {
      auto it = producer.find(v);
      if (it != producer.end() && it->second != i) deps.insert(it->second);
      else if (it != producer.end() && it->second == i)
        return InvalidArgument(fmt::format("{} reads its own output '{}' (a cycle)", graph.nodes[i].Describe(), v));
    }
    pending[i] = static_cast<int>(deps.size());
    for (size_t d : deps) users[d].push_back(i);
  }
  // Stable: always take the lowest original index that is ready.
  std::priority_queue<size_t, std::vector<size_t>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<size_t> order;
  order.reserve(n);
  while (!ready.empty()) {
    size_t i = ready.top();
    ready.pop();
    order.push_back(i);
    for (size_t u : users[i])
      if (--pending[u] == 0) ready.push(u);
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i)
      if (pending[i] > 0)
        return InvalidArgument(fmt::format("the graph has a cycle through {}", graph.nodes[i].Describe()));
  }
  bool sorted = true;
  for (size_t i = 0; i < n; ++i) sorted &= order[i] == i;
  if (!sorted) {
    std::vector<Node> nodes;
    nodes.reserve(n);
    for (size_t i : order) nodes.push_back(std::move(graph.nodes[i]));
    graph.nodes = std::move(nodes);
  }
  for (auto& node : graph.nodes) {
    for (auto& a : node.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(TopologicalSort(*a.g));
      for (auto& g : a.graphs) QK_RETURN_IF_ERROR(TopologicalSort(*g));
    }
  }
  return Status::Ok();
}

}  // namespace quantkit::passes
