// Pass: upgrades the default-domain opset of a model (opset 7 or newer) to a target of at most 13,
// rewriting every op whose signature or semantics changed on the way. All other changes between
// opsets 7 and 13 are compatible (new types, negative axes, new attributes whose defaults keep the
// old behaviour), so those nodes stay as they are. Ops that cannot be converted exactly give an
// error naming the node. Subgraphs (If/Loop/Scan bodies) are upgraded too.
#include <fmt/format.h>

#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "passes/passes.h"
#include "quantkit/model_io.h"

namespace quantkit::passes {

namespace {

constexpr int64_t kOldestSource = 7;
constexpr int64_t kNewestTarget = 13;

void CollectNames(const Graph& g, std::unordered_set<std::string>& names,
                  std::unordered_map<std::string, ValueInfo>* infos) {
  auto note_info = [&](const ValueInfo& vi) {
    names.insert(vi.name);
    if (infos) (*infos)[vi.name] = vi;
  };
  for (const auto& vi : g.inputs) note_info(vi);
  for (const auto& vi : g.outputs) note_info(vi);
  for (const auto& vi : g.value_info) note_info(vi);
  for (const auto& kv : g.initializers) names.insert(kv.first);
  for (const auto& n : g.nodes) {
    names.insert(n.name);
    for (const auto& v : n.inputs) names.insert(v);
    for (const auto& v : n.outputs) names.insert(v);
    for (const auto& a : n.attributes) {
      if (a.g) CollectNames(*a.g, names, infos);
      for (const auto& sg : a.graphs) CollectNames(*sg, names, infos);
    }
  }
}

Node NewNode(const std::string& op, std::vector<std::string> inputs, std::vector<std::string> outputs, std::string name) {
  Node n;
  n.op_type = op;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.name = std::move(name);
  return n;
}

// The tensor behind a value if it is an initializer or a Constant node's output in g.
const Tensor* FindConstant(const Graph& g, const std::string& name) {
  if (name.empty()) return nullptr;
  if (const Tensor* t = g.FindInitializer(name)) return g.IsGraphInput(name) ? nullptr : t;
  for (const auto& n : g.nodes) {
    if (n.op_type != "Constant" || n.outputs.size() != 1 || n.outputs[0] != name) continue;
    const Attribute* a = n.FindAttr("value");
    return a && a->type == Attribute::Type::kTensor ? &a->t : nullptr;
  }
  return nullptr;
}

Tensor ScalarOfType(DType dtype, double v) {
  Tensor t(dtype, {});
  switch (dtype) {
    case DType::kFloat64: *t.data<double>() = v; break;
    case DType::kFloat32: *t.data<float>() = static_cast<float>(v); break;
    default: break;  // callers only ask for float32/float64 (checked)
  }
  return t;
}

class Upgrader {
 public:
  Upgrader(const Model& model, int64_t from, int64_t to) : from_(from), to_(to) {
    // Types and ranks come from ONNX's shape inference on a copy (the model keeps its value_info).
    Model probe = model;
    Status inferred = InferShapesOnnx(probe);
    (void)inferred;  // best effort: unknown types fall back below
    CollectNames(probe.graph, names_, &infos_);
    CollectNames(model.graph, names_, nullptr);
  }

  Status UpgradeGraph(Graph& g) {
    std::vector<Node> old = std::move(g.nodes);
    g.nodes.clear();
    for (auto& n : old) {
      for (auto& a : n.attributes) {
        if (a.g) QK_RETURN_IF_ERROR(UpgradeGraph(*a.g));
        for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(UpgradeGraph(*sg));
      }
      std::vector<Node> before, after;
      if (n.IsDefaultDomain()) {
        for (int64_t v = from_ + 1; v <= to_; ++v) {
          Status s = Apply(n, v, g, old, before, after);
          if (!s.ok()) return s.WithContext(fmt::format("upgrading {} to opset {}", n.Describe(), to_));
        }
      }
      for (auto& b : before) g.nodes.push_back(std::move(b));
      g.nodes.push_back(std::move(n));
      for (auto& a : after) g.nodes.push_back(std::move(a));
    }
    return Status::Ok();
  }

 private:
  std::string Fresh(const std::string& base) {
    std::string name = base;
    for (int k = 1; names_.count(name); ++k) name = fmt::format("{}_{}", base, k);
    names_.insert(name);
    return name;
  }

  std::string AddConstant(Graph& g, Tensor t, const std::string& hint) {
    const std::string name = Fresh(hint);
    g.AddInitializer(name, std::move(t));
    return name;
  }

  std::string Int64Input(Graph& g, const std::vector<int64_t>& v, const Node& n, const std::string& what) {
    return AddConstant(g, Tensor::FromVector<int64_t>(v, {static_cast<int64_t>(v.size())}), n.outputs[0] + "_" + what);
  }

  DType TypeOf(const Graph& g, const std::string& value) const {
    auto it = infos_.find(value);
    if (it != infos_.end() && it->second.dtype != DType::kUndefined) return it->second.dtype;
    if (const Tensor* t = g.FindInitializer(value)) return t->dtype();
    return DType::kUndefined;
  }
  int RankOf(const std::string& value) const {
    auto it = infos_.find(value);
    if (it == infos_.end() || !it->second.has_shape) return -1;
    return static_cast<int>(it->second.shape.size());
  }

  // Float type of a value for attribute-to-input constants (Clip bounds, Pad value).
  StatusOr<DType> FloatTypeOf(const Graph& g, const std::string& value) const {
    DType t = TypeOf(g, value);
    if (t == DType::kUndefined) return DType::kFloat32;  // the overwhelmingly common case
    if (t == DType::kFloat32 || t == DType::kFloat64) return t;
    return Unimplemented(fmt::format("input '{}' is {} (only float32/float64 are converted)", value, DTypeName(t)));
  }

  // Moves an ints attribute to input `index` (absent attribute: input left out).
  void IntsAttrToInput(Node& n, Graph& g, const std::string& attr, size_t index) {
    const Attribute* a = n.FindAttr(attr);
    if (!a) return;
    const std::string name = Int64Input(g, a->ints, n, attr);
    n.RemoveAttr(attr);
    if (n.inputs.size() <= index) n.inputs.resize(index + 1);
    n.inputs[index] = name;
  }

  Status Apply(Node& n, int64_t version, Graph& g, const std::vector<Node>& graph_nodes, std::vector<Node>& before,
               std::vector<Node>& after) {
    const std::string& op = n.op_type;
    switch (version) {
      case 9:
        if (op == "BatchNormalization") {
          if (n.AttrInt("spatial", 1) != 1) return Unimplemented("spatial=0 (per-element statistics) has no opset-9 form");
          n.RemoveAttr("spatial");
        } else if (op == "Scan") {
          return Unimplemented("Scan-8 (batched, with sequence_lens) changed semantics in opset 9");
        } else if (op == "Upsample" && n.FindAttr("scales")) {
          const auto scales = n.AttrFloats("scales");
          n.inputs.resize(1);
          n.inputs.push_back(AddConstant(g, Tensor::FromVector<float>(scales, {static_cast<int64_t>(scales.size())}),
                                         n.outputs[0] + "_scales"));
          n.RemoveAttr("scales");
        }
        break;
      case 10:
        if (op == "Slice") {
          if (!n.FindAttr("starts") || !n.FindAttr("ends")) return InvalidArgument("Slice needs starts and ends");
          IntsAttrToInput(n, g, "starts", 1);
          IntsAttrToInput(n, g, "ends", 2);
          IntsAttrToInput(n, g, "axes", 3);
        } else if (op == "TopK") {
          const Attribute* k = n.FindAttr("k");
          if (!k) return InvalidArgument("TopK needs attribute k");
          n.inputs.resize(1);
          n.inputs.push_back(Int64Input(g, {k->i}, n, "k"));
          n.RemoveAttr("k");
        } else if (op == "Upsample") {
          n.op_type = "Resize";  // Resize-10 is Upsample-9 under a new name (same inputs and modes)
          if (n.AttrString("mode", "nearest") == "bilinear") n.SetAttrString("mode", "linear");
        } else if (op == "Dropout") {
          if (n.outputs.size() > 1 && !n.outputs[1].empty() && MaskIsRead(n.outputs[1], g, graph_nodes)) {
            return Unimplemented("the mask output changed type (float to bool) in opset 10 and is read");
          }
        }
        break;
      case 11:
        if (op == "Clip") {
          QK_ASSIGN_OR_RETURN(DType t, FloatTypeOf(g, n.Input(0)));
          std::vector<std::string> inputs = {n.Input(0), "", ""};
          if (const Attribute* a = n.FindAttr("min")) inputs[1] = AddConstant(g, ScalarOfType(t, a->f), n.outputs[0] + "_min");
          if (const Attribute* a = n.FindAttr("max")) inputs[2] = AddConstant(g, ScalarOfType(t, a->f), n.outputs[0] + "_max");
          while (!inputs.empty() && inputs.back().empty()) inputs.pop_back();
          n.inputs = inputs;
          n.RemoveAttr("min");
          n.RemoveAttr("max");
        } else if (op == "Pad") {
          if (!n.FindAttr("pads")) return InvalidArgument("Pad needs attribute pads");
          IntsAttrToInput(n, g, "pads", 1);
          const float value = n.AttrFloat("value", 0.0f);
          if (n.FindAttr("value")) {
            if (value != 0.0f) {
              QK_ASSIGN_OR_RETURN(DType t, FloatTypeOf(g, n.Input(0)));
              n.inputs.resize(2);
              n.inputs.push_back(AddConstant(g, ScalarOfType(t, value), n.outputs[0] + "_value"));
            }
            n.RemoveAttr("value");
          }
        } else if (op == "Resize" && n.inputs.size() == 2) {
          QK_RETURN_IF_ERROR(ResizeTo11(n, g));
        } else if (op == "Scatter") {
          n.op_type = "ScatterElements";  // same semantics, new name
        }
        break;
      case 12:
        if (op == "Dropout" && n.FindAttr("ratio")) {
          const float ratio = n.AttrFloat("ratio", 0.5f);
          n.inputs.resize(1);
          n.inputs.push_back(AddConstant(g, Tensor::Scalar<float>(ratio), n.outputs[0] + "_ratio"));
          n.RemoveAttr("ratio");
        }
        break;
      case 13:
        if (op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") {
          IntsAttrToInput(n, g, "axes", 1);
        } else if (op == "Split") {
          IntsAttrToInput(n, g, "split", 1);
        } else if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") {
          SoftmaxTo13(n, before, after);
        }
        break;
      default:
        break;
    }
    return Status::Ok();
  }

  static bool MaskIsRead(const std::string& mask, const Graph& g, const std::vector<Node>& graph_nodes) {
    if (g.IsGraphOutput(mask)) return true;
    for (const auto& other : graph_nodes)
      for (const auto& v : NodeReads(other))
        if (v == mask) return true;
    return false;
  }

  // Resize-10 (X, scales; asymmetric coordinates, "simple" nearest rounding: floor when enlarging,
  // ceil when shrinking) -> Resize-11 (X, roi, scales) with explicit modes.
  Status ResizeTo11(Node& n, Graph& g) {
    n.SetAttrString("coordinate_transformation_mode", "asymmetric");
    if (n.AttrString("mode", "nearest") == "nearest") {
      const Tensor* scales = FindConstant(g, n.Input(1));
      if (!scales || scales->dtype() != DType::kFloat32) {
        return Unimplemented("nearest Resize/Upsample with scales computed at run time: the nearest rounding "
                             "(floor when enlarging, ceil when shrinking) depends on them");
      }
      bool up = false, down = false;
      for (float s : scales->values<float>()) up |= s > 1.0f, down |= s < 1.0f;
      if (up && down) return Unimplemented("nearest Resize/Upsample that enlarges some axes and shrinks others");
      n.SetAttrString("nearest_mode", down ? "ceil" : "floor");
    }
    const std::string roi = to_ >= 13 ? std::string()
                                      : AddConstant(g, Tensor(DType::kFloat32, {0}), n.outputs[0] + "_roi");
    n.inputs = {n.inputs[0], roi, n.inputs[1]};
    return Status::Ok();
  }

  // Before 13 the op flattened its input to 2-D at `axis` (default 1) and worked on the second
  // dimension; from 13 it works along `axis` (default -1). Same thing when axis is the last axis;
  // otherwise Flatten -> op(axis=-1) -> Reshape back to the input's shape.
  void SoftmaxTo13(Node& n, std::vector<Node>& before, std::vector<Node>& after) {
    const int64_t axis = n.AttrInt("axis", 1);
    const int rank = RankOf(n.Input(0));
    if (axis == -1 || (rank > 0 && (axis < 0 ? axis + rank : axis) == rank - 1)) {
      n.SetAttrInt("axis", axis);
      return;
    }
    const std::string x = n.Input(0), y = n.outputs[0];
    const std::string flat = Fresh(y + "_flat"), shape = Fresh(y + "_input_shape"), out2d = Fresh(y + "_2d");
    Node flatten = NewNode("Flatten", {x}, {flat}, Fresh(n.name + "_Flatten"));
    flatten.SetAttrInt("axis", axis);
    before.push_back(NewNode("Shape", {x}, {shape}, Fresh(n.name + "_Shape")));
    before.push_back(std::move(flatten));
    n.inputs[0] = flat;
    n.outputs[0] = out2d;
    n.SetAttrInt("axis", -1);
    after.push_back(NewNode("Reshape", {out2d, shape}, {y}, Fresh(n.name + "_Reshape")));
  }

  int64_t from_, to_;
  std::unordered_set<std::string> names_;
  std::unordered_map<std::string, ValueInfo> infos_;
};

}  // namespace

Status UpgradeOpset(Model& model, int64_t target_version) {
  const int64_t from = model.OpsetVersion("");
  if (target_version > kNewestTarget) {
    return Unimplemented(fmt::format("upgrading to opset {} is not supported (at most {})", target_version, kNewestTarget));
  }
  if (from >= target_version) return Status::Ok();
  if (from < kOldestSource) {
    return Unimplemented(fmt::format("{}: default-domain opset {} is older than {}, the oldest opset that can be upgraded",
                                     model.path.empty() ? "model" : model.path, from, kOldestSource));
  }
  Model work = model;
  Upgrader upgrader(work, from, target_version);
  QK_RETURN_IF_ERROR(upgrader.UpgradeGraph(work.graph));
  work.SetOpsetVersion("", target_version);
  // Opset 13 needs IR version 7 (ONNX's checker ties each opset to a minimum IR version).
  const int64_t min_ir = target_version >= 13 ? 7 : target_version >= 11 ? 6 : target_version >= 10 ? 5 : 4;
  if (work.ir_version < min_ir) work.ir_version = min_ir;
  model = std::move(work);
  return Status::Ok();
}

}  // namespace quantkit::passes
