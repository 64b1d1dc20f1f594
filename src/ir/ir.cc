// Graph IR helpers: attribute access, lookups, def-use, structural verification.
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <set>
#include <unordered_set>

#include "quantkit/ir.h"

namespace quantkit {

bool ValueInfo::FullyKnownShape() const {
  if (!has_shape) return false;
  return std::all_of(shape.begin(), shape.end(), [](const Dim& d) { return d.known(); });
}

Shape ValueInfo::KnownShape() const {
  Shape s;
  for (const Dim& d : shape) s.push_back(d.value);
  return s;
}

const Attribute* Node::FindAttr(const std::string& attr_name) const {
  for (const auto& a : attributes)
    if (a.name == attr_name) return &a;
  return nullptr;
}
Attribute* Node::FindAttr(const std::string& attr_name) {
  for (auto& a : attributes)
    if (a.name == attr_name) return &a;
  return nullptr;
}
int64_t Node::AttrInt(const std::string& n, int64_t def) const {
  const Attribute* a = FindAttr(n);
  return a && a->type == Attribute::Type::kInt ? a->i : def;
}
float Node::AttrFloat(const std::string& n, float def) const {
  const Attribute* a = FindAttr(n);
  if (a && a->type == Attribute::Type::kFloat) return a->f;
  if (a && a->type == Attribute::Type::kInt) return static_cast<float>(a->i);
  return def;
}
std::string Node::AttrString(const std::string& n, const std::string& def) const {
  const Attribute* a = FindAttr(n);
  return a && a->type == Attribute::Type::kString ? a->s : def;
}
std::vector<int64_t> Node::AttrInts(const std::string& n) const {
  const Attribute* a = FindAttr(n);
  return a && a->type == Attribute::Type::kInts ? a->ints : std::vector<int64_t>{};
}
std::vector<float> Node::AttrFloats(const std::string& n) const {
  const Attribute* a = FindAttr(n);
  return a && a->type == Attribute::Type::kFloats ? a->floats : std::vector<float>{};
}
namespace {
Attribute& GetOrAdd(Node& node, const std::string& n) {
  if (Attribute* a = node.FindAttr(n)) {
    *a = Attribute{};
    a->name = n;
    return *a;
  }
  node.attributes.push_back(Attribute{});
  node.attributes.back().name = n;
  return node.attributes.back();
}
}  // namespace
void Node::SetAttrInt(const std::string& n, int64_t v) {
  Attribute& a = GetOrAdd(*this, n);
  a.type = Attribute::Type::kInt;
  a.i = v;
}
void Node::SetAttrInts(const std::string& n, std::vector<int64_t> v) {
  Attribute& a = GetOrAdd(*this, n);
  a.type = Attribute::Type::kInts;
  a.ints = std::move(v);
}
void Node::SetAttrFloat(const std::string& n, float v) {
  Attribute& a = GetOrAdd(*this, n);
  a.type = Attribute::Type::kFloat;
  a.f = v;
}
void Node::SetAttrString(const std::string& n, std::string v) {
  Attribute& a = GetOrAdd(*this, n);
  a.type = Attribute::Type::kString;
  a.s = std::move(v);
}
void Node::RemoveAttr(const std::string& n) {
  attributes.erase(std::remove_if(attributes.begin(), attributes.end(),
                                  [&](const Attribute& a) { return a.name == n; }),
                   attributes.end());
}
std::string Node::Describe() const {
  std::string op = domain.empty() || domain == "ai.onnx" ? op_type : domain + "::" + op_type;
  if (!name.empty()) return fmt::format("{} node '{}'", op, name);
  if (!outputs.empty()) return fmt::format("{} node (output '{}')", op, outputs[0]);
  return op + " node";
}
const std::string& Node::Input(size_t i) const {
  static const std::string kEmpty;
  return i < inputs.size() ? inputs[i] : kEmpty;
}

const Tensor* Graph::FindInitializer(const std::string& v) const {
  auto it = initializers.find(v);
  return it == initializers.end() ? nullptr : &it->second;
}
void Graph::AddInitializer(const std::string& v, Tensor t) {
  if (!initializers.count(v)) initializer_order.push_back(v);
  initializers[v] = std::move(t);
}
void Graph::RemoveInitializer(const std::string& v) {
  if (initializers.erase(v)) {
    initializer_order.erase(std::remove(initializer_order.begin(), initializer_order.end(), v),
                            initializer_order.end());
  }
}
bool Graph::IsGraphInput(const std::string& v) const {
  return std::any_of(inputs.begin(), inputs.end(), [&](const ValueInfo& i) { return i.name == v; });
}
bool Graph::IsGraphOutput(const std::string& v) const {
  return std::any_of(outputs.begin(), outputs.end(), [&](const ValueInfo& i) { return i.name == v; });
}
const ValueInfo* Graph::FindValueInfo(const std::string& v) const {
  return const_cast<Graph*>(this)->FindValueInfo(v);
}
ValueInfo* Graph::FindValueInfo(const std::string& v) {
  for (auto* list : {&inputs, &outputs, &value_info})
    for (auto& vi : *list)
      if (vi.name == v) return &vi;
  return nullptr;
}
std::string Graph::UniqueName(const std::string& prefix) const {
  std::unordered_set<std::string> used;
  for (const auto& n : nodes) {
    used.insert(n.name);
    for (const auto& o : n.outputs) used.insert(o);
    for (const auto& i : n.inputs) used.insert(i);
  }
  for (const auto& i : inputs) used.insert(i.name);
  for (const auto& o : outputs) used.insert(o.name);
  for (const auto& kv : initializers) used.insert(kv.first);
  if (!used.count(prefix)) return prefix;
  for (int k = 1;; ++k) {
    std::string candidate = fmt::format("{}_{}", prefix, k);
    if (!used.count(candidate)) return candidate;
  }
}

std::vector<std::string> Graph::OuterScopeValues() const {
  std::unordered_set<std::string> defined;
  for (const auto& i : inputs) defined.insert(i.name);
  for (const auto& kv : initializers) defined.insert(kv.first);
  for (const auto& n : nodes)
    for (const auto& o : n.outputs) defined.insert(o);
  std::vector<std::string> outer;
  std::unordered_set<std::string> seen;
  auto note = [&](const std::string& v) {
    if (!v.empty() && !defined.count(v) && seen.insert(v).second) outer.push_back(v);
  };
  for (const auto& n : nodes)
    for (const auto& v : NodeReads(n)) note(v);
  for (const auto& o : outputs) note(o.name);
  return outer;
}

std::vector<std::string> NodeReads(const Node& node) {
  std::vector<std::string> reads;
  for (const auto& i : node.inputs)
    if (!i.empty()) reads.push_back(i);
  for (const auto& a : node.attributes) {
    if (a.g) {
      for (auto& v : a.g->OuterScopeValues()) reads.push_back(v);
    }
    for (const auto& g : a.graphs)
      for (auto& v : g->OuterScopeValues()) reads.push_back(v);
  }
  return reads;
}

DefUse::DefUse(const Graph& graph) : graph_(graph) {
  for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
    const Node& n = graph.nodes[i];
    for (const auto& o : n.outputs)
      if (!o.empty()) producer_[o] = i;
    std::unordered_set<std::string> once;
    for (const auto& v : NodeReads(n))
      if (once.insert(v).second) consumers_[v].push_back(i);
  }
}
int DefUse::Producer(const std::string& v) const {
  auto it = producer_.find(v);
  return it == producer_.end() ? -1 : it->second;
}
const std::vector<int>& DefUse::Consumers(const std::string& v) const {
  static const std::vector<int> kNone;
  auto it = consumers_.find(v);
  return it == consumers_.end() ? kNone : it->second;
}
bool DefUse::IsUsed(const std::string& v) const {
  return !Consumers(v).empty() || graph_.IsGraphOutput(v);
}

Status VerifyGraph(const Graph& graph, const std::vector<std::string>& outer_scope) {
  std::unordered_set<std::string> defined(outer_scope.begin(), outer_scope.end());
  for (const auto& i : graph.inputs) {
    if (i.name.empty()) return InvalidArgument("graph input with an empty name");
    defined.insert(i.name);
  }
  for (const auto& kv : graph.initializers) defined.insert(kv.first);
  std::unordered_set<std::string> produced;
  for (const auto& n : graph.nodes) {
    for (const auto& in : n.inputs) {
      if (!in.empty() && !defined.count(in)) {
        return InvalidArgument(fmt::format("{} reads '{}', which is not defined before it", n.Describe(), in));
      }
    }
    for (const auto& a : n.attributes) {
      std::vector<const Graph*> subs;
      for (const auto& g : a.graphs) subs.push_back(g.get());
      if (a.g) subs.push_back(a.g.get());
      for (const Graph* g : subs) {
        std::vector<std::string> scope(defined.begin(), defined.end());
        Status s = VerifyGraph(*g, scope);
        if (!s.ok()) return s.WithContext(fmt::format("in subgraph '{}' of {}", a.name, n.Describe()));
      }
    }
    for (const auto& o : n.outputs) {
      if (o.empty()) continue;
      if (!produced.insert(o).second || graph.IsInitializer(o) || graph.IsGraphInput(o)) {
        return InvalidArgument(fmt::format("value '{}' is defined more than once (again by {})", o, n.Describe()));
      }
      defined.insert(o);
    }
  }
  for (const auto& o : graph.outputs) {
    if (!defined.count(o.name)) return InvalidArgument(fmt::format("graph output '{}' is never computed", o.name));
  }
  return Status::Ok();
}

int64_t Model::OpsetVersion(const std::string& d) const {
  for (const auto& o : opsets)
    if (o.domain == d || (d.empty() && o.domain == "ai.onnx") || (d == "ai.onnx" && o.domain.empty()))
      return o.version;
  return 0;
}
void Model::SetOpsetVersion(const std::string& d, int64_t v) {
  for (auto& o : opsets)
    if (o.domain == d) {
      o.version = v;
      return;
    }
  opsets.push_back({d, v});
}

}  // namespace quantkit
