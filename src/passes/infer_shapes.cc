// Pass: shape inference. First ONNX's own (with data propagation), then, where it gives up and the
// graph inputs have fully known shapes, quantkit's: one execution on zero-filled inputs with a
// value observer records the dtype and shape of every intermediate value. Only values ONNX left
// unknown are filled in.
#include <fmt/format.h>

#include "passes/passes.h"
#include "quantkit/model_io.h"
#include "quantkit/session.h"

namespace quantkit::passes {

namespace {

bool Known(const ValueInfo* vi) { return vi && vi->dtype != DType::kUndefined && vi->FullyKnownShape(); }

}  // namespace

Status InferShapes(Model& model) {
  QK_RETURN_IF_ERROR(TopologicalSort(model.graph));
  Status onnx_status = InferShapesOnnx(model);  // best effort: a failing ONNX inference is not fatal
  (void)onnx_status;

  Graph& g = model.graph;
  std::vector<std::string> unknown;
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs)
      if (!o.empty() && !Known(g.FindValueInfo(o))) unknown.push_back(o);
  if (unknown.empty()) return Status::Ok();

  std::vector<std::pair<std::string, Tensor>> feeds;
  for (const auto& in : g.inputs) {
    if (g.IsInitializer(in.name)) continue;
    if (!Known(&in) || in.kind != ValueInfo::Kind::kTensor) return Status::Ok();  // dynamic: nothing more to do
    auto t = Tensor::Create(in.dtype, in.KnownShape(), nullptr, "input '" + in.name + "'");
    if (!t.ok()) return Status::Ok();
    feeds.emplace_back(in.name, std::move(t).value());
  }
  SessionOptions opts;
  opts.optimize = false;
  opts.threads = 1;
  auto session = Session::Create(model, opts);
  if (!session.ok()) return Status::Ok();  // e.g. unsupported ops: keep ONNX's result
  std::unordered_map<std::string, std::pair<DType, Shape>> seen;
  RunOptions ro;
  ro.observer = [&](const Node& n, size_t i, const Value& v) {
    if (v.is_tensor()) seen[n.outputs[i]] = {v.tensor.dtype(), v.tensor.shape()};
  };
  std::vector<Value> outs;
  std::vector<std::pair<std::string, Value>> values;
  for (auto& [name, t] : feeds) values.emplace_back(name, Value::FromTensor(t));
  if (!(*session)->RunValues(values, &outs, ro).ok()) return Status::Ok();
  for (const auto& name : unknown) {
    auto it = seen.find(name);
    if (it == seen.end()) continue;
    ValueInfo* vi = g.FindValueInfo(name);
    if (!vi) {
      g.value_info.push_back(ValueInfo{});
      vi = &g.value_info.back();
      vi->name = name;
    }
    vi->dtype = it->second.first;
    vi->has_shape = true;
    vi->shape.clear();
    for (int64_t d : it->second.second) vi->shape.push_back(Dim{d, ""});
  }
  return Status::Ok();
}

}  // namespace quantkit::passes
