#include "runtime/kernels/qbinary.h"

#include <cstring>
#include <vector>

#include "runtime/kernels/qbinary_internal.h"

namespace quantkit::kernels {

void QBinarySpan(const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n,
                 void* y, QGemmIsa isa) {
  if (QGemmIsaHasAvx512(isa)) return qbinary::SpanAvx512(p, a, step_a, b, step_b, n, y);
  if (isa == QGemmIsa::kAvx2) return qbinary::SpanAvx2(p, a, step_a, b, step_b, n, y);
  qbinary::Dispatch(p, a, step_a, b, step_b, n, y);
}

void PlanQBinary(QBinaryParams* p, QGemmIsa isa) {
  p->fast_form = false;
  if (!QGemmIsaIsAvx2Fma(isa) || !(p->y_scale != 0)) return;  // only the avx2 + fma build has a fast form
  constexpr int64_t kPairs = 256 * 256;
  std::vector<uint8_t> a(kPairs), b(kPairs), reference(kPairs), fast(kPairs);
  for (int64_t i = 0; i < kPairs; ++i) a[i] = static_cast<uint8_t>(i >> 8), b[i] = static_cast<uint8_t>(i);
  qbinary::Dispatch(*p, a.data(), 1, b.data(), 1, kPairs, reference.data());
  QBinaryParams candidate = *p;
  candidate.fast_form = true;
  candidate.y_reciprocal = 1.0f / p->y_scale;
  qbinary::SpanAvx2(candidate, a.data(), 1, b.data(), 1, kPairs, fast.data());
  if (std::memcmp(reference.data(), fast.data(), kPairs) == 0) *p = candidate;
}

}  // namespace quantkit::kernels
