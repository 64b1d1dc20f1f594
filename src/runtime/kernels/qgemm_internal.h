// Micro-kernel contract shared by qgemm.cc and the per-ISA files (kernels/ref, kernels/x86).
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels::qgemm {

constexpr int64_t kPanelCols = 16;  // columns per packed weight panel
constexpr int64_t kKStep = 4;       // K is padded to a multiple of this (zeros)

// Raw dot products of activation rows [m0, m0 + rows) with `panels` consecutive weight panels
// starting at `panel`: c[r * ldc + j] = sum_k a[m0 + r, k] * b'[k, j] (wrapping int32), for
// j < panels * 16. rows <= MicroKernel::max_rows, panels <= max_panels.
using MicroKernelFn = void (*)(const PackedQActivations& a, int64_t m0, int rows, const PackedQWeights& b,
                               int64_t panel, int panels, int32_t* c, int64_t ldc);

struct MicroKernel {
  MicroKernelFn fn = nullptr;
  int max_rows = 0;
  int max_panels = 0;
};

MicroKernel RefMicroKernel();
MicroKernel Avx2MicroKernel();
MicroKernel Avx512VnniMicroKernel();

}  // namespace quantkit::kernels::qgemm
