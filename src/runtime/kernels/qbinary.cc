#include "runtime/kernels/qbinary.h"

#include "runtime/kernels/qbinary_internal.h"

namespace quantkit::kernels {

void QBinarySpan(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                 void* y, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return qbinary::SpanAvx512(p, a, step_a, b, step_b, n, y);
  if (isa == QGemmIsa::kAvx2) return qbinary::SpanAvx2(p, a, step_a, b, step_b, n, y);
  qbinary::Dispatch(p, a, step_a, b, step_b, n, y);
}

}  // namespace quantkit::kernels
