// 8-bit table lookup, dst[i] = table[src[i]] (256 entries): QLinearLookup, the fused form of
// DequantizeLinear -> elementwise float ops -> QuantizeLinear (Relu, Sigmoid, HardSwish, ...).
// A table lookup has one answer, so every build gives the same bytes.
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels {

// isa kRef: a byte at a time; kAvx2 and above: 32 bytes at a time with vpshufb over the table's
// 16 rows of 16 entries.
void LookupBytes(const uint8_t* src, int64_t n, const uint8_t* table, uint8_t* dst, QGemmIsa isa);

}  // namespace quantkit::kernels
