// The AVX-512 build of QBinarySpan (qbinary_internal.h): the same float32 operations, 16 wide
// (the divide by the output scale, which the exact QDQ arithmetic needs, is the loop's bound).
#include "runtime/kernels/qbinary_internal.h"

namespace quantkit::kernels::qbinary {

// GCC vectorizes 256 bits wide unless told otherwise; clang has no such target option.
#if defined(__clang__)
#define QK_AVX512_SPAN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define QK_AVX512_SPAN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")))
#endif

QK_AVX512_SPAN_TARGET void SpanAvx512(
    const QBinaryParams& p, const void* a, int64_t step_a, const void* b, int64_t step_b, int64_t n, void* y) {
  Dispatch(p, a, step_a, b, step_b, n, y);
}

}  // namespace quantkit::kernels::qbinary
