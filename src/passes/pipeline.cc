// The inference pass pipeline used by Session.
#include "passes/passes.h"

namespace quantkit::passes {

Status OptimizeForInference(Model& model) {
  QK_RETURN_IF_ERROR(ConstantNodesToInitializers(model));
  QK_RETURN_IF_ERROR(TopologicalSort(model.graph));
  // Before constant folding, which would turn int8 weights behind DequantizeLinear back into float.
  QK_RETURN_IF_ERROR(FuseQuantizedOps(model));
  // Folding can make an If condition constant and inlining can expose more constants: iterate.
  for (int round = 0; round < 4; ++round) {
    const size_t before = model.graph.nodes.size();
    QK_RETURN_IF_ERROR(InlineConstantIf(model));
    QK_RETURN_IF_ERROR(EliminateIdentities(model));
    QK_RETURN_IF_ERROR(FoldConstants(model));
    if (model.graph.nodes.size() == before) break;
  }
  QK_RETURN_IF_ERROR(FoldBatchNorm(model));
  QK_RETURN_IF_ERROR(EliminateDeadNodes(model));
  return TopologicalSort(model.graph);
}

}  // namespace quantkit::passes
