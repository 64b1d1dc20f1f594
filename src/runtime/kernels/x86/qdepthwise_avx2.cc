// The avx2 build of the quantized depthwise kernel (qdepthwise_internal.h): the same integer
// code, vectorized 8 lanes wide.
#include "runtime/kernels/qdepthwise_internal.h"

namespace quantkit::kernels::qdepthwise {

__attribute__((target("avx2"))) void RunAvx2(const QDepthwiseShape& s, const QDepthwiseChannel& c, int16_t* plane,
                                             int32_t* acc) {
  Dispatch(s, c, plane, acc);
}

}  // namespace quantkit::kernels::qdepthwise
