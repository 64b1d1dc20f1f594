// (being written) op family: see ops.h.
#include "runtime/ops/ops.h"

namespace quantkit::rt {

void RegisterQuantOps(KernelRegistry& r) { (void)r; }

}  // namespace quantkit::rt
