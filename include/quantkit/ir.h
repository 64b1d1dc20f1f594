// quantkit's graph IR: Model -> Graph -> Nodes, values named by strings (as in ONNX), attributes,
// and a def-use index built on demand. Passes edit graphs in place; src/onnx converts to/from ONNX.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "quantkit/tensor.h"

namespace quantkit {

struct Graph;

// Owning pointer with value semantics: copying a Node copies its subgraphs, so a copied Model
// never shares (and never lets a pass mutate) another model's If/Loop bodies.
template <typename T>
class DeepPtr {
 public:
  DeepPtr() = default;
  explicit DeepPtr(std::unique_ptr<T> p) : p_(std::move(p)) {}
  DeepPtr(const DeepPtr& o) : p_(o.p_ ? std::make_unique<T>(*o.p_) : nullptr) {}
  DeepPtr(DeepPtr&&) noexcept = default;
  DeepPtr& operator=(const DeepPtr& o) {
    if (this != &o) p_ = o.p_ ? std::make_unique<T>(*o.p_) : nullptr;
    return *this;
  }
  DeepPtr& operator=(DeepPtr&&) noexcept = default;
  T* get() const { return p_.get(); }
  T* operator->() const { return p_.get(); }
  T& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  std::unique_ptr<T> p_;
};

struct Dim {
  int64_t value = -1;   // >= 0 when known
  std::string param;    // symbolic name ("batch") when value is unknown
  bool known() const { return value >= 0; }
};

// Declared type of a graph input/output/intermediate.
struct ValueInfo {
  std::string name;
  enum class Kind { kTensor, kSequence, kOther } kind = Kind::kTensor;
  DType dtype = DType::kUndefined;  // element type (of the tensors in a sequence)
  bool has_shape = false;
  std::vector<Dim> shape;
  std::string doc_string;
  bool FullyKnownShape() const;
  Shape KnownShape() const;  // only valid if FullyKnownShape()
};

struct Attribute {
  enum class Type { kUndefined, kFloat, kInt, kString, kTensor, kGraph, kFloats, kInts, kStrings, kTensors, kGraphs, kSparseTensor, kTypeProto };
  std::string name;
  Type type = Type::kUndefined;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  DeepPtr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<DeepPtr<Graph>> graphs;
  std::string ref_attr_name;  // for attributes inside functions (unsupported, kept for errors)
  std::string doc_string;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" and "ai.onnx" are the default domain
  std::vector<std::string> inputs;   // "" = optional input not given
  std::vector<std::string> outputs;  // "" = optional output not wanted
  std::vector<Attribute> attributes;
  std::string doc_string;

  const Attribute* FindAttr(const std::string& attr_name) const;
  Attribute* FindAttr(const std::string& attr_name);
  int64_t AttrInt(const std::string& attr_name, int64_t def) const;
  float AttrFloat(const std::string& attr_name, float def) const;
  std::string AttrString(const std::string& attr_name, const std::string& def) const;
  std::vector<int64_t> AttrInts(const std::string& attr_name) const;  // empty if absent
  std::vector<float> AttrFloats(const std::string& attr_name) const;
  void SetAttrInt(const std::string& attr_name, int64_t v);
  void SetAttrInts(const std::string& attr_name, std::vector<int64_t> v);
  void SetAttrFloat(const std::string& attr_name, float v);
  void SetAttrString(const std::string& attr_name, std::string v);
  void RemoveAttr(const std::string& attr_name);
  bool IsDefaultDomain() const { return domain.empty() || domain == "ai.onnx"; }
  // "Conv 'conv1'" or "Conv (node #3)" for messages.
  std::string Describe() const;
  // Input i if present and non-empty, else "".
  const std::string& Input(size_t i) const;
  bool HasInput(size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

struct Graph {
  std::string name;
  std::string doc_string;
  std::vector<Node> nodes;
  std::vector<ValueInfo> inputs;
  std::vector<ValueInfo> outputs;
  std::vector<ValueInfo> value_info;       // known intermediate types (shape inference results)
  std::vector<std::string> initializer_order;  // names of initializers, in file order
  std::unordered_map<std::string, Tensor> initializers;

  bool IsInitializer(const std::string& value) const { return initializers.count(value) != 0; }
  const Tensor* FindInitializer(const std::string& value) const;
  void AddInitializer(const std::string& value, Tensor t);  // replaces if present
  void RemoveInitializer(const std::string& value);
  bool IsGraphInput(const std::string& value) const;
  bool IsGraphOutput(const std::string& value) const;
  const ValueInfo* FindValueInfo(const std::string& value) const;  // inputs, outputs, value_info
  ValueInfo* FindValueInfo(const std::string& value);
  // A name not used by any value, node or initializer of this graph (prefix + counter).
  std::string UniqueName(const std::string& prefix) const;
  // Outer-scope values a graph reads (used by subgraphs of If/Loop/Scan).
  std::vector<std::string> OuterScopeValues() const;
};

struct OpsetId {
  std::string domain;
  int64_t version = 0;
};

struct Model {
  int64_t ir_version = 8;
  std::vector<OpsetId> opsets;
  std::string producer_name;
  std::string producer_version;
  std::string domain;
  int64_t model_version = 0;
  std::string doc_string;
  std::vector<std::pair<std::string, std::string>> metadata_props;
  Graph graph;
  std::string path;  // where it was loaded from (for messages and external data), may be empty
  int local_function_count = 0;  // model-local functions are not supported; kept for the error

  // Opset version of a domain ("" = default), 0 if not imported.
  int64_t OpsetVersion(const std::string& domain_name) const;
  void SetOpsetVersion(const std::string& domain_name, int64_t version);
};

// Def-use index of one graph (not its subgraphs), rebuilt by passes after edits.
class DefUse {
 public:
  explicit DefUse(const Graph& graph);
  // Index of the node producing a value, -1 for graph inputs/initializers/outer values.
  int Producer(const std::string& value) const;
  // Indices of nodes reading a value, including reads inside their subgraphs.
  const std::vector<int>& Consumers(const std::string& value) const;
  bool IsUsed(const std::string& value) const;  // consumed or a graph output

 private:
  const Graph& graph_;
  std::unordered_map<std::string, int> producer_;
  std::unordered_map<std::string, std::vector<int>> consumers_;
};

// Names of all values a node reads: its inputs plus outer-scope values read by its subgraphs.
std::vector<std::string> NodeReads(const Node& node);

// Structural checks: every input defined before use (in graph order or by graph input/initializer
// or outer scope), no value defined twice. Names the offending node/value.
Status VerifyGraph(const Graph& graph, const std::vector<std::string>& outer_scope = {});

}  // namespace quantkit
