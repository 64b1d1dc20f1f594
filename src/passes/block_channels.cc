// Pass (runtime only, run by Session after FuseConvActivation when the direct blocked conv is the
// fast path: kernels::ConvNchwcSupported): the layout choice. Float convs whose channel counts
// are multiples of 16 keep their activations in NCHW16c ([N, C/16, H, W, 16], 5-D tensors)
// between each other, so the blocked kernel reads its input in place and nothing is packed or
// reordered in between; tensors go back to NCHW only where another op reads them.
//
// - A Conv / FusedConv with constant float weights [M, C, KH, KW], group 1, M and C multiples of
//   16 and no fused MaxPool is eligible; it is blocked when it has a blocked neighbour (another
//   eligible conv reads its output, or its input comes from one, directly or through a MaxPool):
//   a lone conv would pay a reorder on both sides for nothing.
// - A blocked conv becomes FusedConv with attribute nchwc = 1: input 0, its residual (input 3)
//   and its output are blocked.
// - A MaxPool (no Indices output) reading a blocked tensor becomes com.quantkit::NchwcMaxPool; a
//   GlobalAveragePool com.quantkit::NchwcGlobalAveragePool, whose [N, C, 1, 1] output is plain.
// - com.quantkit::ToNchwc / FromNchwc nodes convert at the edges: one per tensor, shared by its
//   readers; a blocked tensor that is also a graph output or read by any other op keeps its name
//   for the plain copy.
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "passes/passes.h"
#include "runtime/kernel.h"

namespace quantkit::passes {
namespace {

constexpr int64_t kBlock = 16;

bool IsFloatConv(const Graph& g, const Node& n) {
  const bool conv = (n.IsDefaultDomain() && n.op_type == "Conv") ||
                    (n.domain == rt::kQuantkitDomain && n.op_type == "FusedConv");
  if (!conv || n.outputs.size() != 1 || !n.HasInput(0) || !n.HasInput(1)) return false;
  if (n.AttrInt("group", 1) != 1 || n.AttrInt("max_pool_2x2", 0) != 0 || n.AttrInt("nchwc", 0) != 0) return false;
  if (g.IsGraphInput(n.inputs[1])) return false;
  const Tensor* w = g.FindInitializer(n.inputs[1]);
  if (!w || w->dtype() != DType::kFloat32 || w->rank() != 4) return false;
  if (n.HasInput(2)) {
    const Tensor* b = g.FindInitializer(n.inputs[2]);
    if (!b || b->dtype() != DType::kFloat32 || g.IsGraphInput(n.inputs[2])) return false;
  }
  return w->dim(0) % kBlock == 0 && w->dim(1) % kBlock == 0 && w->dim(0) > 0 && w->dim(1) > 0;
}

bool IsPlainMaxPool(const Node& n) {
  return n.IsDefaultDomain() && n.op_type == "MaxPool" && n.inputs.size() == 1 &&
         (n.outputs.size() == 1 || (n.outputs.size() == 2 && n.outputs[1].empty())) &&
         n.AttrInt("storage_order", 0) == 0 && n.AttrInts("kernel_shape").size() == 2;
}

bool IsGlobalAveragePool(const Node& n) {
  return n.IsDefaultDomain() && n.op_type == "GlobalAveragePool" && n.inputs.size() == 1 && n.outputs.size() == 1;
}

}  // namespace

Status BlockConvChannels(Model& model) {
  Graph& g = model.graph;
  const int n = static_cast<int>(g.nodes.size());
  DefUse du(g);
  std::vector<bool> eligible(n, false);
  for (int i = 0; i < n; ++i) eligible[i] = IsFloatConv(g, g.nodes[i]);
  // The eligible convs feeding value v, directly or through one MaxPool.
  auto conv_source = [&](const std::string& v) {
    int p = du.Producer(v);
    if (p >= 0 && IsPlainMaxPool(g.nodes[p])) p = du.Producer(g.nodes[p].inputs[0]);
    return p >= 0 && eligible[p] ? p : -1;
  };
  std::vector<bool> blocked(n, false);
  for (int i = 0; i < n; ++i) {
    if (!eligible[i]) continue;
    const Node& c = g.nodes[i];
    for (size_t slot : {size_t{0}, size_t{3}}) {
      if (!c.HasInput(slot)) continue;
      const int src = conv_source(c.inputs[slot]);
      if (src >= 0) blocked[i] = blocked[src] = true;
    }
  }
  bool any = false;
  for (int i = 0; i < n; ++i) any = any || blocked[i];
  if (!any) return Status::Ok();

  std::unordered_map<std::string, std::string> blocked_name;  // plain name -> its blocked tensor
  std::unordered_map<std::string, std::string> to_blocked;    // plain tensor -> its ToNchwc copy
  std::unordered_set<std::string> needs_plain;                // blocked tensors read as plain
  std::vector<Node> added;
  auto block_input = [&](Node& node, size_t slot) {
    const std::string v = node.inputs[slot];
    if (auto it = blocked_name.find(v); it != blocked_name.end()) {
      node.inputs[slot] = it->second;
      return;
    }
    auto [it, inserted] = to_blocked.emplace(v, "");
    if (inserted) {
      it->second = g.UniqueName(v + "_nchwc16_in");
      Node r;
      r.name = g.UniqueName("ToNchwc_" + v);
      r.op_type = "ToNchwc";
      r.domain = rt::kQuantkitDomain;
      r.inputs = {v};
      r.outputs = {it->second};
      added.push_back(std::move(r));
    }
    node.inputs[slot] = it->second;
  };
  auto block_output = [&](Node& node) {
    const std::string v = node.outputs[0];
    const std::string b = g.UniqueName(v + "_nchwc16");
    blocked_name[v] = b;
    node.outputs[0] = b;
    if (g.IsGraphOutput(v)) needs_plain.insert(v);
  };
  // Nodes are in topological order: every blocked tensor is named before it is read.
  for (int i = 0; i < n; ++i) {
    Node& node = g.nodes[i];
    if (blocked[i]) {
      block_input(node, 0);
      if (node.HasInput(3)) block_input(node, 3);
      if (node.op_type == "Conv") {
        node.op_type = "FusedConv";
        node.domain = rt::kQuantkitDomain;
      }
      node.SetAttrInt("nchwc", 1);
      block_output(node);
      continue;
    }
    const bool reads_blocked = !node.inputs.empty() && blocked_name.count(node.inputs[0]) != 0;
    if (reads_blocked && IsPlainMaxPool(node)) {
      node.inputs[0] = blocked_name[node.inputs[0]];
      node.op_type = "NchwcMaxPool";
      node.domain = rt::kQuantkitDomain;
      node.outputs.resize(1);
      block_output(node);
      continue;
    }
    if (reads_blocked && IsGlobalAveragePool(node)) {
      node.inputs[0] = blocked_name[node.inputs[0]];
      node.op_type = "NchwcGlobalAveragePool";
      node.domain = rt::kQuantkitDomain;
      continue;
    }
    for (const std::string& v : node.inputs)
      if (blocked_name.count(v)) needs_plain.insert(v);
    // Subgraphs reading a blocked tensor from the outer scope see the plain copy by its name.
    for (const std::string& v : NodeReads(node))
      if (blocked_name.count(v)) needs_plain.insert(v);
  }
  for (const std::string& v : needs_plain) {
    Node r;
    r.name = g.UniqueName("FromNchwc_" + v);
    r.op_type = "FromNchwc";
    r.domain = rt::kQuantkitDomain;
    r.inputs = {blocked_name[v]};
    r.outputs = {v};
    added.push_back(std::move(r));
  }
  for (Node& r : added) g.nodes.push_back(std::move(r));
  return TopologicalSort(g);
}

}  // namespace quantkit::passes
