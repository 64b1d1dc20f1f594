// Pass: Constant nodes become initializers (so weights exported as Constant are treated as weights).
#include <fmt/format.h>

#include "passes/passes.h"

namespace quantkit::passes {

namespace {

StatusOr<Tensor> ConstantValue(const Node& n) {
  for (const auto& a : n.attributes) {
    using T = Attribute::Type;
    if (a.name == "value" && a.type == T::kTensor) return a.t;
    if (a.name == "value_float" && a.type == T::kFloat) return Tensor::Scalar<float>(a.f);
    if (a.name == "value_int" && a.type == T::kInt) return Tensor::Scalar<int64_t>(a.i);
    if (a.name == "value_floats" && a.type == T::kFloats)
      return Tensor::FromVector<float>(a.floats, {static_cast<int64_t>(a.floats.size())});
    if (a.name == "value_ints" && a.type == T::kInts)
      return Tensor::FromVector<int64_t>(a.ints, {static_cast<int64_t>(a.ints.size())});
  }
  return Unimplemented(fmt::format("{}: only tensor, float(s) and int(s) constants are supported", n.Describe()));
}

Status Run(Graph& g) {
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (auto& n : g.nodes) {
    for (auto& a : n.attributes) {
      if (a.g) QK_RETURN_IF_ERROR(Run(*a.g));
      for (auto& sg : a.graphs) QK_RETURN_IF_ERROR(Run(*sg));
    }
    if (n.op_type == "Constant" && n.IsDefaultDomain() && n.outputs.size() == 1 && !n.outputs[0].empty() &&
        !g.IsGraphOutput(n.outputs[0])) {
      QK_ASSIGN_OR_RETURN(Tensor t, ConstantValue(n));
      g.AddInitializer(n.outputs[0], std::move(t));
      continue;
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  return Status::Ok();
}

}  // namespace

Status ConstantNodesToInitializers(Model& model) { return Run(model.graph); }

}  // namespace quantkit::passes
