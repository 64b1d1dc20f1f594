// Pass: removes Identity, inference-mode Dropout and no-op Cast nodes by renaming their consumers'
// inputs to the node's input. When the removed node's output is a graph output, the producer's
// output is renamed instead (if the input is itself a graph input/initializer, the node stays).
#include <unordered_map>

#include "passes/passes.h"

namespace quantkit::passes {

namespace {

DType KnownType(const Graph& g, const std::string& v) {
  if (const Tensor* t = g.FindInitializer(v)) return t->dtype();
  if (const ValueInfo* vi = g.FindValueInfo(v)) return vi->dtype;
  return DType::kUndefined;
}

bool IsNoOp(const Graph& g, const Node& n) {
  if (!n.IsDefaultDomain() || n.inputs.empty() || n.Input(0).empty() || n.outputs.empty()) return false;
  if (n.op_type == "Identity") return true;
  if (n.op_type == "Dropout") {
    // Inference: mask output must be unused; training_mode input absent (or constant false, ignored).
    return (n.outputs.size() < 2 || n.outputs[1].empty()) && n.inputs.size() <= 2;
  }
  if (n.op_type == "Cast") {
    const DType from = KnownType(g, n.Input(0));
    return from != DType::kUndefined && static_cast<int64_t>(from) == n.AttrInt("to", -1);
  }
  return false;
}

void RenameReads(Node& n, const std::string& from, const std::string& to);

void RenameReadsInGraph(Graph& g, const std::string& from, const std::string& to) {
  // Stop if the subgraph defines its own value of that name (shadowing).
  if (g.IsGraphInput(from) || g.IsInitializer(from)) return;
  for (auto& n : g.nodes) RenameReads(n, from, to);
  for (auto& o : g.outputs)
    if (o.name == from) o.name = to;  // subgraph output reading an outer value by name
}

void RenameReads(Node& n, const std::string& from, const std::string& to) {
  for (auto& i : n.inputs)
    if (i == from) i = to;
  for (auto& a : n.attributes) {
    if (a.g) RenameReadsInGraph(*a.g, from, to);
    for (auto& sg : a.graphs) RenameReadsInGraph(*sg, from, to);
  }
}

void Run(Graph& g) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) Run(*a.g);
      for (auto& sg : a.graphs) Run(*sg);
    }
  std::vector<bool> removed(g.nodes.size(), false);
  for (size_t k = 0; k < g.nodes.size(); ++k) {
    Node& n = g.nodes[k];
    if (!IsNoOp(g, n)) continue;
    const std::string in = n.Input(0);
    const std::string out = n.outputs[0];
    if (g.IsGraphOutput(out)) {
      // Rename the producer's output to the graph output's name, if the input has a producer
      // that is not also feeding a graph output under its own name.
      if (g.IsGraphInput(in) || g.IsInitializer(in) || g.IsGraphOutput(in)) continue;
      int producer = -1;
      for (size_t p = 0; p < k; ++p)
        for (auto& o : g.nodes[p].outputs)
          if (o == in) producer = static_cast<int>(p);
      if (producer < 0) continue;  // outer-scope value
      for (auto& o : g.nodes[producer].outputs)
        if (o == in) o = out;
      for (size_t c = 0; c < g.nodes.size(); ++c)
        if (c != k) RenameReads(g.nodes[c], in, out);
      for (auto& vi : g.value_info)
        if (vi.name == in) vi.name = out;
      removed[k] = true;
      continue;
    }
    for (size_t c = 0; c < g.nodes.size(); ++c)
      if (c != k) RenameReads(g.nodes[c], out, in);
    removed[k] = true;
  }
  std::vector<Node> nodes;
  for (size_t k = 0; k < g.nodes.size(); ++k)
    if (!removed[k]) nodes.push_back(std::move(g.nodes[k]));
  g.nodes = std::move(nodes);
}

}  // namespace

Status EliminateIdentities(Model& model) {
  Run(model.graph);
  return Status::Ok();
}

}  // namespace quantkit::passes
