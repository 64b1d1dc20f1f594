// The avx2 build of QBinarySpan (qbinary_internal.h): the same float32 operations, 8 wide.
#include "runtime/kernels/qbinary_internal.h"

namespace quantkit::kernels::qbinary {

__attribute__((target("avx2"))) void SpanAvx2(const QBinaryParams& p, const void* a, int64_t step_a, const void* b,
                                              int64_t step_b, int64_t n, void* y) {
  Dispatch(p, a, step_a, b, step_b, n, y);
}

}  // namespace quantkit::kernels::qbinary
