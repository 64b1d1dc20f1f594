// Shared pieces of the quantizers' graph rewrites (see rewrite_util.h).
#include "quant/rewrite_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace quantkit::quant {

namespace {
void CollectNames(const Graph& g, std::unordered_set<std::string>& names) {
  for (const auto& vi : g.inputs) names.insert(vi.name);
  for (const auto& vi : g.outputs) names.insert(vi.name);
  for (const auto& vi : g.value_info) names.insert(vi.name);
  for (const auto& kv : g.initializers) names.insert(kv.first);
  for (const auto& n : g.nodes) {
    names.insert(n.name);
    for (const auto& v : n.inputs) names.insert(v);
    for (const auto& v : n.outputs) names.insert(v);
    for (const auto& a : n.attributes) {
      if (a.g) CollectNames(*a.g, names);
      for (const auto& sg : a.graphs) CollectNames(*sg, names);
    }
  }
}
}  // namespace

NameRegistry::NameRegistry(const Model& model) { CollectNames(model.graph, used_); }

std::string NameRegistry::Make(const std::string& base) {
  std::string name = base;
  for (int k = 1; used_.count(name); ++k) name = fmt::format("{}_{}", base, k);
  used_.insert(name);
  return name;
}

StatusOr<ExcludeList> ExcludeList::Create(const std::vector<std::string>& patterns, const Model& model) {
  ExcludeList list;
  std::set<std::string> names;
  ForEachNode(model.graph, [&](const Node& n) {
    if (!n.name.empty()) names.insert(n.name);
  });
  for (const auto& p : patterns) {
    Entry e{p, std::nullopt};
    if (!names.count(p)) {
      try {
        e.regex = std::regex(p, std::regex::ECMAScript);
      } catch (const std::regex_error& err) {
        return InvalidArgument(
            fmt::format("exclude '{}' is no node name and not a valid regular expression ({})", p, err.what()));
      }
      const bool any = std::any_of(names.begin(), names.end(), [&](const std::string& n) { return std::regex_match(n, *e.regex); });
      if (!any) return InvalidArgument(fmt::format("exclude '{}' matches no node name in the model", p));
    }
    list.entries_.push_back(std::move(e));
  }
  return list;
}

const std::string* ExcludeList::Match(const std::string& node_name) const {
  if (node_name.empty()) return nullptr;
  for (const auto& e : entries_) {
    if (e.pattern == node_name || (e.regex && std::regex_match(node_name, *e.regex))) return &e.pattern;
  }
  return nullptr;
}

Node NewNode(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs, std::string name) {
  Node n;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.name = std::move(name);
  return n;
}

}  // namespace quantkit::quant
