// Micro-kernel contract shared by qgemm.cc and the per-ISA files (kernels/ref, kernels/x86).
#pragma once

#include <cstdint>

#include "runtime/kernels/qgemm.h"

namespace quantkit::kernels::qgemm {

constexpr int64_t kPanelCols = 16;  // columns per packed weight panel
constexpr int64_t kKStep = 4;       // K is padded to a multiple of this (zeros)

// Raw dot products of activation rows [m0, m0 + rows) with `panels` consecutive weight panels
// starting at `panel`, over k in [k0, k0 + kc): c[r * ldc + j] (+)= sum_k a[m0 + r, k] * b'[k, j]
// (wrapping int32), for j < panels * 16; added to c's values when `accumulate`, else written.
// rows <= MicroKernel::max_rows, panels <= max_panels; k0 and kc are multiples of kKStep.
using MicroKernelFn = void (*)(const PackedQActivations& a, int64_t m0, int rows, const PackedQWeights& b,
                               int64_t panel, int panels, int64_t k0, int64_t kc, bool accumulate, int32_t* c,
                               int64_t ldc);

struct MicroKernel {
  MicroKernelFn fn = nullptr;
  int max_rows = 0;
  int max_panels = 0;
  // K per call (a multiple of kKStep; the driver blocks K by it and accumulates), and the driver's
  // loop order within a block: rows outer (a call's activation rows reused from L1 by every panel
  // group) or panels outer (a call's weight panels reused by every row tile).
  int64_t k_block = 512;
  bool rows_outer = false;
  // Called by the driver on each thread before its first and after its last kernel call of a
  // GEMM, if set (amx: load / release the tile configuration).
  void (*enter)() = nullptr;
  void (*leave)() = nullptr;
};

// Conv packing for the avx2 kernel, one output pixel whose window lies inside the image: its taps
// are `segments` runs of `run` (1..8) contiguous input bytes, run i starting at
// corner + seg_offsets[i]. Writes the runs back to back as int16 words (value ^ flip) into dst and
// returns their sum. Each run is one 8-byte load and one 8-word store: the caller guarantees
// that 8 bytes from each start lie inside the input and that dst has room for 8 words at each
// run's place (run i writes dst[i * run, i * run + 8); the next run overwrites the excess). With
// `sum` false it returns 0 (the weights need no row sums).
uint32_t FillConvRunsAvx2(const uint8_t* corner, const int64_t* seg_offsets, int64_t segments, int run, uint8_t flip,
                          bool sum, int16_t* dst);

// The bytes layout's packing (VNNI) for 3-byte runs, `groups` groups of three runs: each group's
// 9 bytes (value ^ flip) written with one 16-byte store (7 bytes of excess past the group, as
// FillConvRunsAvx2's). Returns the sum of the values written (0 when `sum` is false). avx2 build.
uint32_t FillConvRuns3Bytes(const uint8_t* corner, const int64_t* seg_offsets, int64_t groups, uint8_t flip, bool sum,
                            uint8_t* dst);

// The epilogue's avx2 build (qgemm_epilogue.h), in x86/qgemm_avx2.cc, and its AVX-512 build (for
// the avx512vnni and amx kernels) in x86/qgemm_avx512vnni.cc.
void EpilogueAvx2(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, int64_t m0, int rows,
                  int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr);
void EpilogueAvx512(const PackedQActivations& a, const PackedQWeights& b, const QGemmOutput& out, int64_t m0,
                    int rows, int64_t n0, int64_t cols, const int32_t* raw, int64_t ldr);

MicroKernel RefMicroKernel();
MicroKernel Avx2MicroKernel();
MicroKernel Avx512VnniMicroKernel();
MicroKernel AmxMicroKernel();

}  // namespace quantkit::kernels::qgemm
