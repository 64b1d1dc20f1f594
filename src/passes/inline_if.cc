// Pass: an If whose condition is a constant is replaced by the nodes of the taken branch.
// Branch initializers move to the parent graph; branch outputs are renamed to the If's outputs.
#include <fmt/format.h>

#include "passes/passes.h"

namespace quantkit::passes {

namespace {

void RenameInGraph(Graph& g, const std::string& from, const std::string& to) {
  for (auto& n : g.nodes) {
    for (auto& i : n.inputs)
      if (i == from) i = to;
    for (auto& o : n.outputs)
      if (o == from) o = to;
    for (auto& a : n.attributes) {
      if (a.g) RenameInGraph(*a.g, from, to);
      for (auto& sg : a.graphs) RenameInGraph(*sg, from, to);
    }
  }
  for (auto& o : g.outputs)
    if (o.name == from) o.name = to;
  for (auto& vi : g.value_info)
    if (vi.name == from) vi.name = to;
}

Status Run(Graph& g, bool* changed) {
  for (auto& n : g.nodes)
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(Run(*a.g, changed));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(Run(*sg, changed));
    }
  std::vector<Node> out;
  for (auto& n : g.nodes) {
    const Tensor* cond = nullptr;
    if (n.op_type == "If" && n.IsDefaultDomain() && n.HasInput(0) && !g.IsGraphInput(n.Input(0)))
      cond = g.FindInitializer(n.Input(0));
    if (!cond || cond->numel() != 1) {
      out.push_back(std::move(n));
      continue;
    }
    const Attribute* branch_attr = n.FindAttr(cond->GetAsDouble(0) != 0 ? "then_branch" : "else_branch");
    if (!branch_attr || !branch_attr->g) {
      return InvalidArgument(fmt::format("{} has no graph attribute for its taken branch", n.Describe()));
    }
    Graph branch = *branch_attr->g;
    if (branch.outputs.size() != n.outputs.size()) {
      return InvalidArgument(fmt::format("{}: branch '{}' has {} outputs, the node has {}", n.Describe(),
                                         branch.name, branch.outputs.size(), n.outputs.size()));
    }
    // Branch-local initializers: move to the parent under fresh names.
    for (const auto& name : branch.initializer_order) {
      std::string fresh = g.UniqueName(name);
      Tensor t = branch.initializers.at(name);
      RenameInGraph(branch, name, fresh);
      g.AddInitializer(fresh, std::move(t));
    }
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const std::string& bout = branch.outputs[i].name;
      const std::string& target = n.outputs[i];
      if (target.empty()) continue;
      bool produced_inside = false;
      for (const auto& bn : branch.nodes)
        for (const auto& o : bn.outputs) produced_inside |= o == bout;
      bool used_twice = false;
      for (size_t j = 0; j < i; ++j) used_twice |= branch.outputs[j].name == bout;
      if (produced_inside && !used_twice) {
        RenameInGraph(branch, bout, target);
      } else {
        Node id;
        id.op_type = "Identity";
        id.name = target + "_inlined_identity";
        id.inputs = {bout};
        id.outputs = {target};
        branch.nodes.push_back(std::move(id));
      }
    }
    for (auto& bn : branch.nodes) out.push_back(std::move(bn));
    for (auto& vi : branch.value_info) g.value_info.push_back(std::move(vi));
    *changed = true;
  }
  g.nodes = std::move(out);
  return Status::Ok();
}

}  // namespace

Status InlineConstantIf(Model& model) {
  bool changed = false;
  return Run(model.graph, &changed);
}

}  // namespace quantkit::passes
