// The one list of op families known to the runtime.
#include "runtime/ops/ops.h"

namespace quantkit::rt {

void RegisterAllOps(KernelRegistry& r) {
  RegisterElementwiseOps(r);
  RegisterReductionOps(r);
  RegisterTensorOps(r);
  RegisterNnOps(r);
  RegisterRnnOps(r);
  RegisterControlFlowOps(r);
  RegisterQuantOps(r);
  RegisterFusedQuantOps(r);
}

}  // namespace quantkit::rt
