// Reference int8 micro-kernel: plain loops over the packed layout. The definition every other
// micro-kernel is compared against (exact integer equality).
#include "runtime/kernels/qgemm_internal.h"

namespace quantkit::kernels::qgemm {
namespace {

void RefKernel(const PackedQActivations& pa, int64_t m0, int rows, const PackedQWeights& b, int64_t panel,
               int panels, int64_t k0, int64_t kc, bool accumulate, int32_t* c, int64_t ldc) {
  const int64_t lda = pa.lda;
  const uint8_t* a = pa.bytes.data() + m0 * lda;
  const int64_t panel_elems = b.k_padded * kPanelCols;
  for (int r = 0; r < rows; ++r) {
    for (int p = 0; p < panels; ++p) {
      const int8_t* w = b.bytes.data() + (panel + p) * panel_elems;
      for (int64_t j = 0; j < kPanelCols; ++j) {
        int32_t& out = c[r * ldc + p * kPanelCols + j];
        uint32_t sum = accumulate ? static_cast<uint32_t>(out) : 0u;  // wraps modulo 2^32, like the SIMD kernels
        for (int64_t k = k0; k < k0 + kc; ++k) {
          sum += static_cast<uint32_t>(static_cast<int32_t>(a[r * lda + k]) *
                                       static_cast<int32_t>(w[(k / kKStep) * kKStep * kPanelCols + j * kKStep + k % kKStep]));
        }
        out = static_cast<int32_t>(sum);
      }
    }
  }
}

}  // namespace

MicroKernel RefMicroKernel() { return {&RefKernel, 4, 1}; }

}  // namespace quantkit::kernels::qgemm
