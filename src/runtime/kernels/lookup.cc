#include "runtime/kernels/lookup.h"

namespace quantkit::kernels {

void LookupBytesAvx2(const uint8_t* src, int64_t n, const uint8_t* table, uint8_t* dst);  // x86/lookup_avx2.cc

void LookupBytes(const uint8_t* src, int64_t n, const uint8_t* table, uint8_t* dst, QGemmIsa isa) {
  if (isa != QGemmIsa::kRef) return LookupBytesAvx2(src, n, table, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

}  // namespace quantkit::kernels
