// AMX int8 micro-kernel: tdpbusd multiplies a 16-row x 64-k uint8 tile by a 64-k x 16-column
// int8 tile and adds the exact int32 dot products to a 16 x 16 int32 tile, like vpdpbusd at 16
// times the width. The packed layouts are the VNNI kernel's, unchanged: an activation row is k
// contiguous bytes (a 16-row A tile is 16 rows of 64 bytes, stride lda) and a weight panel is
// groups of 4 k x 16 columns (64 bytes each), so 16 consecutive groups are one B tile (1 KiB,
// stride 64). Integer sums are exact, so the results are the reference's bit for bit.
//
// Tiles: 2 x 2 accumulators (32 rows x 32 columns) fed by 2 A and 2 B tiles. Rows past the last
// full 16, and k past the last full 64 (K is padded to 4, not 64), go to the VNNI kernel on the
// same layout, which adds into the same accumulators.
#include <immintrin.h>

#include <cstdint>

#include "runtime/kernels/qgemm_internal.h"

namespace quantkit::kernels::qgemm {
namespace {

#define QK_AMX_TARGET __attribute__((target("amx-tile,amx-int8,avx512f")))

constexpr int kTileRows = 16;
constexpr int64_t kTileK = 64;  // bytes of k per tile row

// Palette 1, all eight tiles 16 rows x 64 bytes. The configuration is per thread, and anything
// else in the process using AMX (oneDNN, another library) may release or change it, so it is
// loaded every time a GEMM starts on a thread (MicroKernel::enter) and released at the end.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

QK_AMX_TARGET void ConfigureTiles() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = kTileRows;
  }
  // Not _tile_loadconfig: GCC 12's declares only the first 8 bytes as read, so the stores of the
  // rest of the configuration could be dropped.
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}

// Back to the initial state: the tiles' contents need not be saved on context switches.
QK_AMX_TARGET void ReleaseTiles() { _tile_release(); }

// RT row tiles (1 or 2) x PT panels (1 or 2) over k in [0, kc) (a multiple of 64) of `a` (row
// stride lda bytes) and `w` (one panel; the next at + panel_elems). Tile numbers are immediates:
// C (row tile i, panel j) = tmm(2i + j), A = tmm4/5, B = tmm6/7.
template <int RT, int PT>
QK_AMX_TARGET void Tiles(const uint8_t* a, int64_t lda, const int8_t* w, int64_t panel_elems, int64_t kc,
                         bool accumulate, int32_t* c, int64_t ldc) {
  const int64_t c_stride = ldc * static_cast<int64_t>(sizeof(int32_t));
  int32_t* c1 = c + kTileRows * ldc;
  if (accumulate) {
    _tile_loadd(0, c, c_stride);
    if constexpr (PT > 1) _tile_loadd(1, c + kPanelCols, c_stride);
    if constexpr (RT > 1) _tile_loadd(2, c1, c_stride);
    if constexpr (RT > 1 && PT > 1) _tile_loadd(3, c1 + kPanelCols, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (PT > 1) _tile_zero(1);
    if constexpr (RT > 1) _tile_zero(2);
    if constexpr (RT > 1 && PT > 1) _tile_zero(3);
  }
  const uint8_t* a1 = a + kTileRows * lda;
  for (int64_t k = 0; k < kc; k += kTileK) {
    const int8_t* wk = w + k * kPanelCols;  // 16 groups of 4 k, 64 bytes each
    // Loads interleaved with the products that need them (measured: ~2x the rate of four loads
    // then four products).
    _tile_loadd(4, a + k, lda);
    _tile_loadd(6, wk, 64);
    _tile_dpbusd(0, 4, 6);
    if constexpr (PT > 1) {
      _tile_loadd(7, wk + panel_elems, 64);
      _tile_dpbusd(1, 4, 7);
    }
    if constexpr (RT > 1) {
      _tile_loadd(5, a1 + k, lda);
      _tile_dpbusd(2, 5, 6);
      if constexpr (PT > 1) _tile_dpbusd(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  if constexpr (PT > 1) _tile_stored(1, c + kPanelCols, c_stride);
  if constexpr (RT > 1) _tile_stored(2, c1, c_stride);
  if constexpr (RT > 1 && PT > 1) _tile_stored(3, c1 + kPanelCols, c_stride);
}

// The VNNI kernel over rows [r0, r1) of this call, 8 at a time (its tile height).
void VnniRows(const MicroKernel& vnni, const PackedQActivations& pa, int64_t m0, int r0, int r1,
              const PackedQWeights& b, int64_t panel, int panels, int64_t k0, int64_t kc, bool accumulate,
              int32_t* c, int64_t ldc) {
  for (int r = r0; r < r1; r += vnni.max_rows) {
    const int rows = r1 - r < vnni.max_rows ? r1 - r : vnni.max_rows;
    vnni.fn(pa, m0 + r, rows, b, panel, panels, k0, kc, accumulate, c + r * ldc, ldc);
  }
}

void Kernel(const PackedQActivations& pa, int64_t m0, int rows, const PackedQWeights& b, int64_t panel, int panels,
            int64_t k0, int64_t kc, bool accumulate, int32_t* c, int64_t ldc) {
  static const MicroKernel vnni = Avx512VnniMicroKernel();
  const int tile_rows = rows / kTileRows * kTileRows;
  const int64_t tile_kc = kc / kTileK * kTileK;
  if (tile_rows == 0 || tile_kc == 0) {
    VnniRows(vnni, pa, m0, 0, rows, b, panel, panels, k0, kc, accumulate, c, ldc);
    return;
  }
  const int64_t lda = pa.lda;
  const uint8_t* a = pa.bytes.data() + m0 * lda + k0;
  const int64_t panel_elems = b.k_padded * kPanelCols;
  const int8_t* w = b.bytes.data() + panel * panel_elems + k0 * kPanelCols;
  if (tile_rows > kTileRows) {
    if (panels > 1) {
      Tiles<2, 2>(a, lda, w, panel_elems, tile_kc, accumulate, c, ldc);
    } else {
      Tiles<2, 1>(a, lda, w, panel_elems, tile_kc, accumulate, c, ldc);
    }
  } else if (panels > 1) {
    Tiles<1, 2>(a, lda, w, panel_elems, tile_kc, accumulate, c, ldc);
  } else {
    Tiles<1, 1>(a, lda, w, panel_elems, tile_kc, accumulate, c, ldc);
  }
  if (tile_kc < kc)  // the last k groups (fewer than 64 k) of the tiled rows
    VnniRows(vnni, pa, m0, 0, tile_rows, b, panel, panels, k0 + tile_kc, kc - tile_kc, true, c, ldc);
  VnniRows(vnni, pa, m0, tile_rows, rows, b, panel, panels, k0, kc, accumulate, c, ldc);  // the last rows
}

}  // namespace

// 1024 k: the accumulators stay in tiles for up to 16 steps, and a call's 32 activation rows
// (32 KiB) stay in L1 while the unit's panel groups stream past (weights from L2: with 2 x 2 tiles
// each product needs one tile load, as much as L2 delivers, so only one operand may come from it).
MicroKernel AmxMicroKernel() { return {&Kernel, 2 * kTileRows, 2, 1024, true, &ConfigureTiles, &ReleaseTiles}; }

}  // namespace quantkit::kernels::qgemm
