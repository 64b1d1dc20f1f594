// Conv and ConvTranspose (any number of spatial dims, groups, strides, dilations, pads, auto_pad).
// Conv: im2col (skipped for pointwise convs) + GEMM per group, bias pre-filled into the output;
// depthwise 1-D/2-D convs use a direct kernel. ConvTranspose: GEMM into columns + col2im.
// float16/bfloat16 compute in float32.
#include <algorithm>
#include <array>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>

#include "runtime/kernels/conv_nchwc.h"
#include "runtime/kernels/depthwise_f32.h"
#include "runtime/kernels/pool_f32.h"
#include "runtime/kernels/ref/conv_kernels.h"
#include "runtime/kernels/ref/sgemm.h"
#include "runtime/kernels/transpose_f32.h"
#include "runtime/kernels/winograd_f32.h"
#include "runtime/ops/elementwise_util.h"
#include "runtime/ops/nn_common.h"
#include "runtime/ops/op_util.h"

namespace quantkit::rt {
namespace {

using kernels::ConvGeometry;

// Elements of the im2col / col2im scratch buffer per chunk of output positions.
constexpr int64_t kColBudget = int64_t{1} << 21;
// Below this many flops per (batch, group) GEMM, parallelise over (batch, group) instead.
constexpr double kSmallGroupFlops = 8e6;

Status CheckConvDType(const Tensor* t, DType expected, const char* what) {
  if (!t) return Status::Ok();
  QK_CHECK_ARG(t->dtype() == expected, "input {} has dtype {} but X has dtype {}", what, DTypeName(t->dtype()),
               DTypeName(expected));
  return Status::Ok();
}

Status CheckFloatInput(const Tensor& x) {
  const DType d = x.dtype();
  if (d != DType::kFloat32 && d != DType::kFloat64 && !IsHalf(d)) {
    return Unimplemented(fmt::format("input X has dtype {}; only float32, float64, float16 and bfloat16 are supported",
                                     DTypeName(d)));
  }
  return Status::Ok();
}

std::vector<int64_t> SpatialDims(const Shape& s) { return {s.begin() + 2, s.end()}; }

// Checks attribute lengths against the weight's spatial rank, and the bias, early.
Status CheckAttrRank(const SpatialAttrs& a, size_t nd) {
  QK_CHECK_ARG(a.kernel_shape.empty() || a.kernel_shape.size() == nd,
               "attribute kernel_shape has {} values but the weight has {} spatial dims", a.kernel_shape.size(), nd);
  QK_CHECK_ARG(a.strides.empty() || a.strides.size() == nd, "attribute strides has {} values, expected {}",
               a.strides.size(), nd);
  QK_CHECK_ARG(a.dilations.empty() || a.dilations.size() == nd, "attribute dilations has {} values, expected {}",
               a.dilations.size(), nd);
  QK_CHECK_ARG(a.pads.empty() || a.pads.size() == 2 * nd, "attribute pads has {} values, expected {}",
               a.pads.size(), 2 * nd);
  return Status::Ok();
}

// Runs fn(b, e, scratch) over chunks [b, e) of [0, n) (on the pool when there is one, chunks of at
// least min_chunk), each chunk with `scratch_elems` of T from the run's pool (null when 0), so it
// counts against the memory limit; a refusal in a worker is returned as the error (the other
// chunks finish).
template <typename T, typename F>
Status ParallelWithScratch(KernelContext& ctx, int64_t n, int64_t min_chunk, int64_t scratch_elems,
                           const char* scratch_name, F&& fn) {
  std::mutex mu;
  Status failed;
  auto body = [&](int64_t b, int64_t e) {
    Tensor scratch;
    if (scratch_elems > 0) {
      auto s = ctx.Scratch(DTypeOf<T>::value, scratch_elems, scratch_name);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (failed.ok()) failed = s.status();
        return;
      }
      scratch = std::move(s).value();
    }
    fn(b, e, scratch_elems > 0 ? scratch.data<T>() : nullptr);
  };
  if (ThreadPool* pool = ctx.thread_pool()) {
    pool->ParallelFor(n, min_chunk, body);
  } else {
    body(0, n);
  }
  return failed;
}

// Runs fn(n, g, pool_for_inner, scratch) for every (batch, group): either sequentially with the
// pool used inside, or in parallel over (batch, group) with single-threaded inner work. The
// scratch (`scratch_elems` of T per running thread) comes from the run's pool, so it counts against
// the memory limit; a refusal in a worker is returned as the error (the other workers finish).
template <typename T, typename F>
Status ForEachBatchGroup(KernelContext& ctx, int64_t N, int64_t group, double flops_per_task,
                         int64_t scratch_elems, const char* scratch_name, F&& fn) {
  ThreadPool* pool = ctx.thread_pool();
  const int64_t tasks = N * group;
  const int threads = pool ? pool->num_threads() : 1;
  if (tasks > 1 && threads > 1 && flops_per_task < kSmallGroupFlops) {
    return ParallelWithScratch<T>(ctx, tasks, 1, scratch_elems, scratch_name, [&](int64_t b, int64_t e, T* col) {
      for (int64_t t = b; t < e; ++t) fn(t / group, t % group, static_cast<ThreadPool*>(nullptr), col);
    });
  }
  Tensor scratch;
  if (scratch_elems > 0) {
    QK_ASSIGN_OR_RETURN(scratch, ctx.Scratch(DTypeOf<T>::value, scratch_elems, scratch_name));
  }
  for (int64_t t = 0; t < tasks; ++t) fn(t / group, t % group, pool, scratch_elems > 0 ? scratch.data<T>() : nullptr);
  return Status::Ok();
}

// Fills rows [0, rows) of length `len` (stride ld) with bias[r] (or zero).
template <typename T>
void FillRows(T* y, int64_t rows, int64_t len, int64_t ld, const T* bias) {
  for (int64_t r = 0; r < rows; ++r) std::fill(y + r * ld, y + r * ld + len, bias ? bias[r] : T(0));
}

// ------------------------------------------------------------------------------------ Conv

// A fused Clip (com.quantkit::FusedConv: Conv -> Relu / Clip): y = min(max(y, lo), hi), the exact
// expression of the Clip kernel (Relu is Clip(0, +inf): NaN stays NaN, -0 stays -0), applied to
// each block of the output while it is still in cache.
struct ConvActivation {
  bool on = false;
  float lo = 0, hi = 0;
};

template <typename T>
void ClampRows(const ConvActivation& act, T* y, int64_t rows, int64_t len, int64_t ld) {
  if (!act.on) return;
  const T lo = static_cast<T>(act.lo), hi = static_cast<T>(act.hi);
  for (int64_t r = 0; r < rows; ++r) {
    T* row = y + r * ld;
    for (int64_t i = 0; i < len; ++i) row[i] = std::min(std::max(row[i], lo), hi);
  }
}

// A 1-D geometry as the 2-D one with a height of 1 (2-D unchanged).
ConvGeometry As2D(const ConvGeometry& g) {
  if (g.nd != 1) return g;
  ConvGeometry g2 = g;
  g2.nd = 2;
  g2.in = {1, g.in[0]};
  g2.out = {1, g.out[0]};
  g2.kernel = {1, g.kernel[0]};
  g2.stride = {1, g.stride[0]};
  g2.dilation = {1, g.dilation[0]};
  g2.pad_begin = {0, g.pad_begin[0]};
  return g2;
}

// A depthwise conv (one input and one output channel per group) runs the direct kernel.
bool IsDepthwise(int64_t C, int64_t M, int64_t group) { return group == C && M == C; }

// Float weights [M, C/group, k...] packed per group for kernels::SgemmPacked (rows: the group's
// output channels; depth: its input channels x kernel taps).
using PackedConvWeights = std::vector<kernels::SgemmPackedA>;
PackedConvWeights PackConvWeights(const float* w, int64_t M, int64_t group, int64_t kdim) {
  PackedConvWeights packed;
  const int64_t Mg = M / group;
  packed.reserve(static_cast<size_t>(group));
  for (int64_t gi = 0; gi < group; ++gi) packed.emplace_back(w + gi * Mg * kdim, kdim, Mg, kdim);
  return packed;
}

// The GEMM epilogue of a group whose output channels start at `first`: their bias, the fused Clip.
kernels::SgemmEpilogue GroupEpilogue(const float* bias, int64_t first, const ConvActivation& act) {
  kernels::SgemmEpilogue epi;
  epi.bias = bias ? bias + first : nullptr;
  epi.clamp = act.on;
  epi.lo = act.lo;
  epi.hi = act.hi;
  return epi;
}

// Reading B in place (stride 1 only) computes row_len - out_w dropped columns per output row;
// packing the im2col panel costs about a copy per (tap, column), worth a few multiply-adds. So
// in place when the Mg rows' wasted products cost less than that copy.
constexpr int64_t kTapsWasteLimit = 6;
bool UseTapsGemm(const ConvGeometry& g2, int64_t Mg) {
  if (g2.stride[0] != 1 || g2.stride[1] != 1) return false;
  const int64_t out_w = g2.out[1], dropped = (g2.kernel[1] - 1) * g2.dilation[1];
  return Mg * dropped <= kTapsWasteLimit * out_w;
}

// A pointwise conv with few output channels reads its input planes in place as B's rows
// (SgemmPackedTaps) instead of packing them: packing costs a pass over K x pixels for only M rows
// of products, while the taps path stores its tiles straight into the output. Only when the
// pixels are a multiple of 16: the taps GEMM reads up to 15 floats past the last row (past the
// tensor). And only on one thread: at two, MobileNetV2's 28x28 ones took 0.13 ms instead of 0.077
// (each task reads B's rows several times, from the other core's cache when it wrote them;
// standalone they scaled). Both paths give the same bits.
bool UsePointwiseTaps(int64_t Mg, int64_t kdim, int64_t out_size) {
  return Mg <= 32 && Mg < kdim && out_size % 16 == 0 && out_size >= 64;
}

// Small output maps (a 7x7 ResNet stage: 49 columns computed as 64, with the taps' padding
// columns 61) waste a quarter of the GEMM in its column tiles, and each weight is used only once per
// column. Transposed, C^T [pixels, M] = im2col^T [pixels, K] * W^T [K, M]: rows are the pixels
// (8-row tiles: 49 as 56), columns the output channels (full 32-wide tiles), weights packed once as B.
// Down to one pixel for a few images (Silero's last 1-D convs: 1 to 4 positions were 16-column
// tiles, and the model 0.14 -> 0.11 ms); a large batch of tiny maps keeps the packed path, whose
// images run in parallel (here each image is its own small GEMM).
constexpr int64_t kSmallMapPixels = 64;
bool UseTransposedConv(int64_t out_size, int64_t Mg, int64_t group, int64_t N) {
  return group == 1 && out_size <= kSmallMapPixels && Mg >= 32 && (out_size >= 8 || (out_size >= 1 && N <= 4));
}

// The direct conv in channel blocks of 16 (kernels/conv_nchwc.h): float 2-D convs with both
// channel counts multiples of 16, on AVX-512 or AVX2 + FMA. No im2col or panel packing: the input is read in
// place, 24 accumulators per 4 output blocks x 6 pixels.
// Here, between NCHW tensors (a conv that passes::BlockConvChannels left plain), only for small
// output maps of a kernel wider than 1x1, where the reorders cost less than the GEMM path's
// padded tiles (7x7: 2.16 -> 1.61 ms for 512 channels 3x3; 14x14: 1.77 -> 1.56 ms for 256); 1x1
// convs on 56x56 maps were 10-30% slower with the reorders.
constexpr int64_t kNchwcPlainMaxPixels = 256;
bool UseNchwcConv(const ConvGeometry& g, int64_t C, int64_t M, int64_t group) {
  return g.nd == 2 && group == 1 && C % kernels::kNchwcBlock == 0 && M % kernels::kNchwcBlock == 0 &&
         !g.IsPointwise() && g.OutSize() <= kNchwcPlainMaxPixels &&
         kernels::ConvNchwcSupported(kernels::DefaultQGemmIsa());
}

// NCHW in and out: each image's input goes to channel blocks, the direct kernel writes the
// output in blocks, and the blocks go back to NCHW (kernels::TransposeFloat, 16 x 16 blocks).
Status ConvNchwcFloat(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M, const float* x,
                      const float* bias, float* y, const ConvActivation& act, const kernels::NchwcWeights& w) {
  constexpr int64_t B = kernels::kNchwcBlock;
  const int64_t in_size = g.InSize(), out_size = g.OutSize(), OH = g.out[0];
  QK_ASSIGN_OR_RETURN(Tensor scratch, ctx.Scratch(DType::kFloat32, C * in_size + M * out_size, "NCHW16c conv"));
  float* xb = scratch.data<float>();
  float* yb = xb + C * in_size;
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  ThreadPool* pool = ctx.thread_pool();
  auto run = [&](int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (pool && n > 1) {
      pool->ParallelFor(n, grain, fn);
    } else {
      fn(0, n);
    }
  };
  const float lo_hi[2] = {act.lo, act.hi};
  kernels::NchwcConvArgs a;
  a.g = &g;
  a.C = C;
  a.M = M;
  a.x = xb;
  a.w = w.data();
  a.w_layout = w.layout();
  a.bias = bias;
  a.y = yb;
  a.clamp_lo_hi = act.on ? lo_hi : nullptr;
  const int64_t groups = kernels::NchwcGroups(M);
  for (int64_t n = 0; n < N; ++n) {
    run(C / B, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t cb = c0; cb < c1; ++cb) {
        kernels::BlockToNchwc(x + (n * C + cb * B) * in_size, in_size, xb + cb * in_size * B, isa);
      }
    });
    run(groups * OH, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1;) {  // rows of one group at a time
        const int64_t group = t / OH, oy0 = t % OH, oy1 = std::min(OH, oy0 + (t1 - t));
        kernels::ConvNchwcRows(a, group, oy0, oy1, isa);
        t += oy1 - oy0;
      }
    });
    run(M / B, 1, [&](int64_t m0, int64_t m1) {
      for (int64_t mb = m0; mb < m1; ++mb) {
        kernels::BlockFromNchwc(yb + mb * out_size * B, out_size, y + (n * M + mb * B) * out_size, isa);
      }
    });
  }
  return Status::Ok();
}

// Winograd F(2x2, 3x3) (kernels/winograd_f32.h): 16 GEMMs of [M, C] x [C, tiles] instead of
// one of [M, 9C] x [9C, pixels], 2.25x fewer multiply-adds, for float 3x3 stride-1 convs with
// enough 2x2 tiles to amortise the transformed weights (16 M C floats, 1.8x the originals, read
// once per GEMM column) and the transforms: 64 in all, and 36 per image (a 7x7 map would compute
// 64 outputs for 49). Not the direct convolution's bits: its own fixed order
// (docs/arithmetic.md), the same on every ISA and thread count.
constexpr int64_t kWinogradMinTiles = 64;       // a 16x16 output map, or several images
constexpr int64_t kWinogradMinImageTiles = 36;  // an 11x11 output map
constexpr int64_t kWinogradMinChannels = 32;
bool UseWinograd(const ConvGeometry& g, int64_t N, int64_t C, int64_t M, int64_t group) {
  if (g.nd != 2 || group != 1 || C < kWinogradMinChannels || M < kWinogradMinChannels) return false;
  for (int d = 0; d < 2; ++d) {
    if (g.kernel[d] != 3 || g.stride[d] != 1 || g.dilation[d] != 1) return false;
  }
  const int64_t tiles = (g.out[0] + 1) / 2 * ((g.out[1] + 1) / 2);
  return tiles >= kWinogradMinImageTiles && N * tiles >= kWinogradMinTiles;
}

// The 16 transformed weight matrices U[p] = (G w G^T)[p], [M, C] each, packed.
using WinogradWeights = std::vector<kernels::SgemmPackedA>;
WinogradWeights MakeWinogradWeights(const float* w, int64_t M, int64_t C) {
  std::vector<float> u(static_cast<size_t>(kernels::kWinogradPositions * M * C));
  kernels::WinogradF23TransformWeights(w, M, C, u.data());
  WinogradWeights packed;
  packed.reserve(kernels::kWinogradPositions);
  for (int p = 0; p < kernels::kWinogradPositions; ++p) packed.emplace_back(u.data() + p * M * C, C, M, C);
  return packed;
}

// Blocks of tile rows, each transformed, multiplied and transformed back by one thread with its
// tiles' V and GEMM results in its L2 cache (whole maps went to memory and back: 3.2 MB each for a
// 64-channel 56x56 conv, slower than the direct conv).
constexpr int64_t kWinogradBlockBytes = int64_t{1} << 20;
Status ConvWinogradFloat(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M, const float* x,
                         const float* bias, float* y, const ConvActivation& act, const WinogradWeights& u) {
  kernels::WinogradF23Shape s;
  s.in_h = g.in[0];
  s.in_w = g.in[1];
  s.out_h = g.out[0];
  s.out_w = g.out[1];
  s.pad_top = g.pad_begin[0];
  s.pad_left = g.pad_begin[1];
  const int64_t P = kernels::kWinogradPositions, tiles_h = s.TilesH(), tiles_w = s.TilesW();
  ThreadPool* pool = ctx.thread_pool();
  const int threads = pool ? pool->num_threads() : 1;
  // A block is either a few rows of tiles of one large map, or several small maps side by side
  // (Fashion-MNIST's 14x14 at batch 500): within the cache budget, at least 2 blocks per thread
  // to balance, and rows preferably a multiple of 16 tiles (the GEMM's column slivers).
  const int64_t row_bytes = P * (C + M) * tiles_w * static_cast<int64_t>(sizeof(float));
  int64_t rows = std::clamp<int64_t>(kWinogradBlockBytes / row_bytes, 1, tiles_h), images = 1;
  if (rows == tiles_h) {
    images = std::clamp<int64_t>(kWinogradBlockBytes / (row_bytes * tiles_h), 1, N);
    if (threads > 1) images = std::min(images, std::max<int64_t>(1, (N + 2 * threads - 1) / (2 * threads)));
  }
  if (images == 1 && threads > 1 && N < 2 * threads) {
    rows = std::min(rows, std::max<int64_t>(1, (tiles_h * N + 2 * threads - 1) / (2 * threads)));
  }
  for (int64_t r = rows; r > rows / 2 && rows < tiles_h; --r) {
    if (r * tiles_w % 16 == 0) {
      rows = r;
      break;
    }
  }
  const int64_t row_blocks = (tiles_h + rows - 1) / rows, image_blocks = (N + images - 1) / images;
  const int64_t tb = images * rows * tiles_w;  // tiles in the largest block
  const int64_t workspace = kernels::SgemmPackedWorkspace(u[0], tb, nullptr);
  const int64_t rowbuf = kernels::WinogradF23RowBufferFloats(s);
  const int64_t per_task = P * (C + M) * tb + workspace + rowbuf + 16;
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  const kernels::SgemmEpilogue plain;
  const int64_t in_size = C * s.in_h * s.in_w, out_size = M * s.out_h * s.out_w;
  auto block = [&](int64_t task, float* scratch) {
    const int64_t n0 = task / row_blocks * images, n1 = std::min(N, n0 + images);
    const int64_t ty0 = task % row_blocks * rows, ty1 = std::min(tiles_h, ty0 + rows);
    const int64_t per_image = (ty1 - ty0) * tiles_w, T = (n1 - n0) * per_image;
    float* v = scratch;             // [16][C][T]
    float* mm = v + P * C * T;      // [16][M][T]
    float* row_buf = mm + P * M * T;
    float* panel = row_buf + rowbuf;  // the GEMM's B panel, 64-byte aligned
    panel = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(panel) + 63) & ~uintptr_t{63});
    for (int64_t n = n0; n < n1; ++n) {
      kernels::WinogradF23TransformInput(s, x + n * in_size, C, ty0, ty1, T, (n - n0) * per_image, v, row_buf, isa);
    }
    for (int64_t p = 0; p < P; ++p) {
      const float* vp = v + p * C * T;
      const kernels::SgemmPanelPacker pack = [vp, T](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr,
                                                     float* dst) {
        kernels::SgemmPackRows(vp, T, k0, kc, j0, nc, nr, dst);
      };
      kernels::SgemmPacked(u[static_cast<size_t>(p)], T, pack, mm + p * M * T, T, plain, nullptr, panel);
    }
    for (int64_t n = n0; n < n1; ++n) {
      kernels::WinogradF23TransformOutput(s, mm, M, ty0, ty1, T, (n - n0) * per_image, bias, act.on, act.lo, act.hi,
                                          y + n * out_size, row_buf, isa);
    }
  };
  const int64_t tasks = image_blocks * row_blocks;
  if (!pool || tasks == 1) {
    QK_ASSIGN_OR_RETURN(Tensor scratch, ctx.Scratch(DType::kFloat32, per_task, "Winograd tiles"));
    for (int64_t t = 0; t < tasks; ++t) block(t, scratch.data<float>());
    return Status::Ok();
  }
  std::mutex mu;
  Status failed;
  pool->ParallelFor(tasks, 1, [&](int64_t b, int64_t e) {
    auto scratch = ctx.Scratch(DType::kFloat32, per_task, "Winograd tiles");
    if (!scratch.ok()) {
      std::lock_guard<std::mutex> lock(mu);
      if (failed.ok()) failed = scratch.status();
      return;
    }
    for (int64_t t = b; t < e; ++t) block(t, scratch.value().data<float>());
  });
  return failed;
}

// The same sums as ConvPackedFloat (same K blocks, one FMA per term in k order, the bias as the
// first block's addend, the Clip last), so the same bits: C is prefilled with the bias (beta 1;
// beta 0 without one), then transposed into NCHW and clamped.
Status ConvTransposedFloat(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M,
                           const float* x, const float* bias, float* y, const ConvActivation& act,
                           const kernels::SgemmPackedB& wt) {
  const int64_t ksize = g.KernelSize(), in_size = g.InSize(), out_size = g.OutSize(), kdim = C * ksize;
  const bool pointwise = g.IsPointwise();
  // Not pointwise: the im2col matrix from phase planes (kernels::FillPhasePlane: padding and
  // stride phases laid out, so each tap row of an output row is one contiguous copy).
  const ConvGeometry g2 = As2D(g);
  const kernels::ConvPanelPlanes planes = kernels::ConvPanelPlanesFor(g2);
  // Each input channel gets its own phase plane, so the im2col rows are filled in parallel.
  const int64_t col_floats = pointwise ? 0 : kdim * out_size + C * planes.plane_floats;
  QK_ASSIGN_OR_RETURN(Tensor scratch, ctx.Scratch(DType::kFloat32, out_size * M + col_floats, "transposed conv"));
  float* ct = scratch.data<float>();  // C^T [out_size, M]
  float* col = ct + out_size * M;     // im2col [kdim, out_size]
  float* plane0 = col + kdim * out_size;  // the channels' phase planes
  const int64_t kw = g2.kernel[1], oh = g2.out[0], ow = g2.out[1];
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  ThreadPool* pool = ctx.thread_pool();
  // Splits [0, n) over the pool when the work (floats touched) is worth a parallel region.
  auto maybe_parallel = [&](int64_t n, int64_t work, const std::function<void(int64_t, int64_t)>& fn) {
    if (pool && n > 1 && work >= (int64_t{1} << 15)) {
      pool->ParallelFor(n, 1, fn);
    } else {
      fn(0, n);
    }
  };
  for (int64_t n = 0; n < N; ++n) {
    const float* xn = x + n * C * in_size;
    const float* a = xn;  // op(A) = A^T with A [kdim, out_size]: the input itself when pointwise
    if (!pointwise) {
      maybe_parallel(C, kdim * out_size, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) {
          float* plane = plane0 + c * planes.plane_floats;
          kernels::FillPhasePlane(g2, planes.rows, planes.phase_len, xn + c * in_size, plane);
          for (int64_t t = 0; t < ksize; ++t) {
            const float* src = plane + kernels::PhasePlaneTapOffset(g2, planes, t / kw, t % kw);
            float* dst = col + (c * ksize + t) * out_size;
            for (int64_t oy = 0; oy < oh; ++oy) {
              std::copy(src + oy * g2.stride[0] * planes.row_len, src + oy * g2.stride[0] * planes.row_len + ow,
                        dst + oy * ow);
            }
          }
        }
      });
      a = col;
    }
    if (bias) {
      for (int64_t p = 0; p < out_size; ++p) std::copy(bias, bias + M, ct + p * M);
    }
    kernels::SgemmWithPackedB(/*trans_a=*/true, out_size, 1.f, a, out_size, wt, bias ? 1.f : 0.f, ct, M, pool);
    // Back to NCHW with the Clip (kernels::TransposeFloat), blocks of 16 channels per task.
    float* yn = y + n * M * out_size;
    const float lo_hi[2] = {act.lo, act.hi};
    maybe_parallel((M + 15) / 16, M * out_size, [&](int64_t b0, int64_t b1) {
      const int64_t m0 = b0 * 16, m1 = std::min(M, b1 * 16);
      kernels::TransposeFloat(ct + m0, out_size, m1 - m0, M, yn + m0 * out_size, out_size, act.on ? lo_hi : nullptr,
                              isa);
    });
  }
  return Status::Ok();
}

// Float 1-D / 2-D convolution as packed GEMMs per (image, group): weights packed once (or now,
// when not constant), im2col values written straight into the GEMM's panels, bias and the fused
// activation applied in the micro-kernel's store.
Status ConvPackedFloat(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M, int64_t group,
                       const float* x, const float* w, const float* bias, float* y, const ConvActivation& act_in,
                       const PackedConvWeights* prepacked, const float* residual, bool* residual_added) {
  // With a residual, the packed path and the pointwise taps path add it (and then clamp) in their
  // epilogue; the stride-1 taps path computes the conv alone and leaves the Add and Clip to the caller.
  const ConvActivation none;
  const ConvActivation& act = residual ? none : act_in;
  const ConvGeometry g2 = As2D(g);
  const int64_t Cg = C / group, Mg = M / group;
  const int64_t kdim = Cg * g.KernelSize(), in_size = g.InSize(), out_size = g.OutSize();
  PackedConvWeights local;
  if (!prepacked) {
    local = PackConvWeights(w, M, group, kdim);
    prepacked = &local;
  }
  // A non-pointwise conv first copies its input into phase planes (kernels::FillPhasePlane: zero
  // padding, column phases per stride): the panel packer then reads every tap of a run of output
  // columns as consecutive floats. Each (image, group) task fills its own channels' planes in its
  // scratch just before its GEMM, so they are read back from cache (a batch's planes filled up
  // front went to memory and back: 54 MB per Fashion-MNIST conv at batch 500).
  const bool pointwise = g.IsPointwise();
  const kernels::ConvPanelPlanes planes = kernels::ConvPanelPlanesFor(g2);
  const int64_t plane_scratch = pointwise ? 0 : Cg * planes.plane_floats + kernels::kConvPanelMargin;
  // The task's planes in `scratch` (filled over `tp`'s threads when the task has the pool).
  auto fill_planes = [&](int64_t n, int64_t gi, ThreadPool* tp, float* scratch) {
    const float* xg = x + (n * C + gi * Cg) * in_size;
    auto fill = [&](int64_t b, int64_t e) {
      for (int64_t c = b; c < e; ++c) {
        kernels::FillPhasePlane(g2, planes.rows, planes.phase_len, xg + c * in_size, scratch + c * planes.plane_floats);
      }
    };
    // Split over the pool only when the planes are big enough to pay for waking it: Silero VAD's
    // small 1-D convs (a few thousand floats) were slower at two threads than at one.
    if (tp && Cg > 1 && Cg * planes.plane_floats >= (int64_t{1} << 15)) {
      tp->ParallelFor(Cg, 1, fill);
    } else {
      fill(0, Cg);
    }
    std::fill(scratch + Cg * planes.plane_floats, scratch + plane_scratch, 0.f);
  };
  const double flops = 2.0 * static_cast<double>(Mg) * static_cast<double>(kdim) * static_cast<double>(out_size);
  if (!pointwise && UseTapsGemm(g2, Mg)) {
    // Stride 1: the GEMM reads each tap row straight from the planes (kernels::SgemmPackedTaps).
    const int64_t ksize = g2.KernelSize(), kw = g2.kernel[1];
    std::vector<int64_t> taps(static_cast<size_t>(kdim));
    for (int64_t k = 0; k < kdim; ++k) {
      const int64_t t = k % ksize;
      taps[k] = k / ksize * planes.plane_floats + t / kw * g2.dilation[0] * planes.row_len + t % kw * g2.dilation[1];
    }
    const int64_t cols = (g2.out[0] - 1) * planes.row_len + g2.out[1];
    // The tile rows' workspace is sized for the pool: a task running single-threaded inside the
    // batch's ParallelFor uses the one-thread size, which is never larger.
    const int64_t workspace = kernels::SgemmPackedTapsWorkspace((*prepacked)[0], cols, ctx.thread_pool());
    return ForEachBatchGroup<float>(
        ctx, N, group, flops, plane_scratch + workspace, "conv planes and tile rows",
        [&](int64_t n, int64_t gi, ThreadPool* tp, float* scratch) {
          fill_planes(n, gi, tp, scratch);
          kernels::SgemmPlaneOutput out;
          out.y = y + (n * M + gi * Mg) * out_size;
          out.ldy = out_size;
          out.row_len = planes.row_len;
          out.out_w = g2.out[1];
          kernels::SgemmPackedTaps((*prepacked)[gi], cols, scratch, taps.data(), out, GroupEpilogue(bias, gi * Mg, act),
                                   tp, scratch + plane_scratch);
        });
  }
  const bool one_thread = !ctx.thread_pool() || ctx.thread_pool()->num_threads() == 1;
  if (pointwise && one_thread && UsePointwiseTaps(Mg, kdim, out_size)) {
    // The input's channel planes are B's rows as they are: no panel packing (kernels::SgemmPackedTaps,
    // whose whole tiles go straight to y with the residual in their epilogue).
    std::vector<int64_t> taps(static_cast<size_t>(kdim));
    for (int64_t k = 0; k < kdim; ++k) taps[k] = k * in_size;
    const int64_t workspace = kernels::SgemmPackedTapsWorkspace((*prepacked)[0], out_size, ctx.thread_pool());
    if (residual) *residual_added = true;
    return ForEachBatchGroup<float>(
        ctx, N, group, flops, workspace, "conv tile rows", [&](int64_t n, int64_t gi, ThreadPool* tp, float* scratch) {
          kernels::SgemmPlaneOutput out;
          out.y = y + (n * M + gi * Mg) * out_size;
          out.ldy = out.row_len = out.out_w = out_size;
          kernels::SgemmEpilogue epi = GroupEpilogue(bias, gi * Mg, act_in);
          if (residual) {
            epi.residual = residual + (n * M + gi * Mg) * out_size;
            epi.ldr = out_size;
          }
          kernels::SgemmPackedTaps((*prepacked)[gi], out_size, x + (n * C + gi * Cg) * in_size, taps.data(), out, epi,
                                   tp, scratch);
        });
  }
  const int64_t workspace = kernels::SgemmPackedWorkspace((*prepacked)[0], out_size, ctx.thread_pool());
  if (residual) *residual_added = true;
  // The panel workspace must be 64-byte aligned: the planes before it are rounded up to 16 floats.
  const int64_t planes_rounded = (plane_scratch + 15) / 16 * 16;
  return ForEachBatchGroup<float>(
      ctx, N, group, flops, planes_rounded + workspace + 16, "conv planes and panel",
      [&](int64_t n, int64_t gi, ThreadPool* tp, float* scratch) {
        kernels::SgemmEpilogue epi = GroupEpilogue(bias, gi * Mg, act_in);
        if (residual) {
          epi.residual = residual + (n * M + gi * Mg) * out_size;
          epi.ldr = out_size;
        }
        kernels::SgemmPanelPacker pack;
        if (pointwise) {
          const float* xg = x + (n * C + gi * Cg) * in_size;
          pack = [xg, in_size](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
            kernels::SgemmPackRows(xg, in_size, k0, kc, j0, nc, nr, dst);
          };
        } else {
          fill_planes(n, gi, tp, scratch);
          const float* pg = scratch;
          pack = [&g2, &planes, pg](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr, float* dst) {
            kernels::Im2ColPanel2D(g2, planes, pg, k0, kc, j0, nc, nr, dst);
          };
        }
        float* panel = scratch + planes_rounded;
        panel = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(panel) + 63) & ~uintptr_t{63});
        kernels::SgemmPacked((*prepacked)[gi], out_size, pack, y + (n * M + gi * Mg) * out_size, out_size, epi, tp,
                             panel);
      });
}

// Float depthwise on small maps: blocks of kernels::DepthwiseFloatChannelLanes channels of one
// image per task (one channel per vector lane; the same bits as the per-channel kernel).
Status DepthwiseChannelsFloat(KernelContext& ctx, const ConvGeometry& g2, int64_t N, int64_t C, const float* x,
                              const float* w, const float* bias, float* y, const ConvActivation& act) {
  const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
  const int lanes = kernels::DepthwiseFloatChannelLanes(isa);
  const int64_t in_size = g2.in[0] * g2.in[1], out_size = g2.out[0] * g2.out[1];
  const int64_t ksize = g2.kernel[0] * g2.kernel[1];
  const int64_t blocks_per_image = (C + lanes - 1) / lanes;
  const float lo_hi[2] = {act.lo, act.hi};
  const int64_t per = std::max<int64_t>(1, out_size * ksize * lanes);
  return ParallelWithScratch<float>(
      ctx, N * blocks_per_image, std::max<int64_t>(1, (int64_t{1} << 15) / per),
      kernels::DepthwiseFloatChannelScratchElems(g2, lanes), "depthwise channels",
      [&](int64_t b, int64_t e, float* scratch) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t n = t / blocks_per_image, c0 = (t % blocks_per_image) * lanes;
          const int64_t first = n * C + c0;
          kernels::DepthwiseConv2DFloatChannels(g2, x + first * in_size, in_size, w + c0 * ksize,
                                                bias ? bias + c0 : nullptr, std::min<int64_t>(lanes, C - c0),
                                                y + first * out_size, out_size, scratch, isa,
                                                act.on ? lo_hi : nullptr);
        }
      });
}

template <typename T>
Status ConvCompute(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M, int64_t group,
                   const T* x, const T* w, const T* bias, T* y, const ConvActivation& act_in,
                   const PackedConvWeights* prepacked = nullptr, const kernels::SgemmPackedB* transposed = nullptr,
                   const WinogradWeights* winograd = nullptr, const float* residual = nullptr,
                   bool* residual_added = nullptr, const kernels::NchwcWeights* nchwc = nullptr) {
  // residual (float, y's shape): y = clamp(conv + residual). The packed GEMM path adds it in its
  // epilogue and sets *residual_added; every other path computes the conv without the Clip and
  // leaves the Add and Clip to the caller (*residual_added stays false).
  const ConvActivation none;
  const ConvActivation& act = residual ? none : act_in;
  const int64_t Cg = C / group, Mg = M / group;
  const int64_t ksize = g.KernelSize(), in_size = g.InSize(), out_size = g.OutSize();
  const int64_t kdim = Cg * ksize;
  if (N == 0 || M == 0 || out_size == 0) return Status::Ok();
  if (kdim == 0) {  // no input channels: the output is the bias
    for (int64_t n = 0; n < N; ++n) {
      FillRows(y + n * M * out_size, M, out_size, out_size, bias);
      ClampRows(act, y + n * M * out_size, M, out_size, out_size);
    }
    return Status::Ok();
  }

  if (IsDepthwise(C, M, group) && (g.nd == 1 || g.nd == 2)) {  // depthwise: direct kernel
    const ConvGeometry g2 = As2D(g);
    if constexpr (std::is_same_v<T, float>) {
      if (kernels::DepthwiseFloatUseChannels(g2, kernels::DefaultQGemmIsa())) {
        return DepthwiseChannelsFloat(ctx, g2, N, C, x, w, bias, y, act);
      }
    }
    // float: kernels/depthwise_f32 (a zero-padded, stride-phase plane per worker, from the run's
    // pool); double: the reference loop.
    const int64_t plane_elems = std::is_same_v<T, float> ? kernels::DepthwiseFloatPlaneElems(g2) : 0;
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    const int64_t per = std::max<int64_t>(1, out_size * ksize);
    return ParallelWithScratch<float>(
        ctx, N * C, std::max<int64_t>(1, (int64_t{1} << 15) / per), plane_elems, "depthwise plane",
        [&](int64_t b, int64_t e, float* plane) {
          for (int64_t t = b; t < e; ++t) {
            const int64_t c = t % C;
            if constexpr (std::is_same_v<T, float>) {  // the fused Clip in the kernel's store
              const float lo_hi[2] = {act.lo, act.hi};
              kernels::DepthwiseConv2DFloat(g2, x + t * in_size, w + c * ksize, bias ? bias[c] : 0.f,
                                            y + t * out_size, plane, isa, act.on ? lo_hi : nullptr);
            } else {
              kernels::DepthwiseConv2DChannel<T>(g2, x + t * in_size, w + c * ksize, bias ? bias[c] : T(0),
                                                 y + t * out_size);
              ClampRows(act, y + t * out_size, 1, out_size, out_size);
            }
          }
        });
  }

  if constexpr (std::is_same_v<T, float>) {
    if (nchwc && UseNchwcConv(g, C, M, group)) return ConvNchwcFloat(ctx, g, N, C, M, x, bias, y, act, *nchwc);
    if (winograd && UseWinograd(g, N, C, M, group)) {
      return ConvWinogradFloat(ctx, g, N, C, M, x, bias, y, act, *winograd);
    }
    if (transposed && g.nd <= 2 && UseTransposedConv(out_size, Mg, group, N) && transposed->depth() == kdim &&
        transposed->cols() == M) {
      return ConvTransposedFloat(ctx, g, N, C, M, x, bias, y, act, *transposed);
    }
    if (g.nd <= 2) {
      return ConvPackedFloat(ctx, g, N, C, M, group, x, w, bias, y, act_in, prepacked, residual, residual_added);
    }
  }

  const bool pointwise = g.IsPointwise();
  const T beta = bias ? T(1) : T(0);
  const int64_t chunk = pointwise ? out_size : std::min(out_size, std::max<int64_t>(64, kColBudget / kdim));
  const double flops = 2.0 * static_cast<double>(Mg) * static_cast<double>(kdim) * static_cast<double>(out_size);
  return ForEachBatchGroup<T>(
      ctx, N, group, flops, pointwise ? 0 : chunk * kdim, "im2col",
      [&](int64_t n, int64_t gi, ThreadPool* tp, T* col) {
        const T* xg = x + (n * C + gi * Cg) * in_size;
        const T* wg = w + gi * Mg * kdim;
        T* yg = y + (n * M + gi * Mg) * out_size;
        if (bias) FillRows(yg, Mg, out_size, out_size, bias + gi * Mg);
        if (pointwise) {
          GemmT<T>(false, false, Mg, out_size, Cg, T(1), wg, kdim, xg, in_size, beta, yg, out_size, tp);
          ClampRows(act, yg, Mg, out_size, out_size);
          return;
        }
        for (int64_t p0 = 0; p0 < out_size; p0 += chunk) {
          const int64_t p1 = std::min(out_size, p0 + chunk), len = p1 - p0;
          auto im2col = [&](int64_t cb, int64_t ce) {
            for (int64_t c = cb; c < ce; ++c) {
              kernels::Im2ColChannel<T>(g, xg + c * in_size, p0, p1, col + c * ksize * len, len);
            }
          };
          if (tp && Cg > 1 && kdim * len >= (int64_t{1} << 15)) {
            tp->ParallelFor(Cg, 1, im2col);
          } else {
            im2col(0, Cg);
          }
          GemmT<T>(false, false, Mg, len, kdim, T(1), wg, kdim, col, len, beta, yg + p0, out_size, tp);
          ClampRows(act, yg + p0, Mg, len, out_size);
        }
      });
}

class ConvKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    auto k = std::make_unique<ConvKernel>();
    QK_RETURN_IF_ERROR(ParseSpatialAttrs(init.node, false, &k->attrs_));
    k->group_ = init.node.AttrInt("group", 1);
    if (init.node.domain == kQuantkitDomain) {  // FusedConv (passes::FuseConvActivation)
      k->act_.on = init.node.FindAttr("activation_min") || init.node.FindAttr("activation_max");
      k->act_.lo = init.node.AttrFloat("activation_min", -std::numeric_limits<float>::infinity());
      k->act_.hi = init.node.AttrFloat("activation_max", std::numeric_limits<float>::infinity());
      k->max_pool_2x2_ = init.node.AttrInt("max_pool_2x2", 0) != 0;
      // passes::BlockConvChannels: 1 = NCHW16c input and output, 2 = NCHW input, NCHW16c output
      k->nchwc_ = init.node.AttrInt("nchwc", 0) != 0;
      k->nchwc_plain_input_ = init.node.AttrInt("nchwc", 0) == 2;
      k->nchwc_half_last_out_ = HalfPaddedLastBlock(init, /*out=*/true);
      k->nchwc_half_last_in_ = HalfPaddedLastBlock(init, /*out=*/false);
    }
    QK_CHECK_ARG(k->group_ >= 1, "attribute group must be >= 1, got {}", k->group_);
    if (const Tensor* w = init.ConstantInput(1)) {
      QK_CHECK_ARG(w->rank() >= 3, "weight W must have rank >= 3, got shape {}", ShapeToString(w->shape()));
      QK_CHECK_ARG(w->dim(0) % k->group_ == 0, "weight W has {} output channels, not divisible by group {}",
                   w->dim(0), k->group_);
      QK_RETURN_IF_ERROR(CheckAttrRank(k->attrs_, w->rank() - 2));
      if (!k->attrs_.kernel_shape.empty()) {
        QK_CHECK_ARG(k->attrs_.kernel_shape == SpatialDims(w->shape()),
                     "attribute kernel_shape {} does not match weight W shape {}",
                     ShapeToString(k->attrs_.kernel_shape), ShapeToString(w->shape()));
      }
      if (const Tensor* b = init.ConstantInput(2)) {
        QK_CHECK_ARG(b->rank() == 1 && b->dim(0) == w->dim(0), "bias B has shape {}, expected [{}]",
                     ShapeToString(b->shape()), w->dim(0));
      }
      // Constant float32 weights of a 1-D/2-D conv that runs as a GEMM: packed once, here.
      const int64_t M = w->dim(0), C = w->dim(1) * k->group_;
      if (!k->nchwc_ && w->dtype() == DType::kFloat32 && w->rank() <= 4 && !IsDepthwise(C, M, k->group_) && M > 0 &&
          w->numel() > 0) {
        k->packed_ = std::make_unique<PackedConvWeights>(
            PackConvWeights(w->data<float>(), M, k->group_, w->numel() / M));
      }
    }
    return std::unique_ptr<OpKernel>(std::move(k));
  }

  // Whether channels 8-15 of the last output (out) or input block are padding that the blocked
  // kernel may skip: the pass's real count (nchwc_out_channels / nchwc_in_channels) leaves 8 or
  // fewer real channels in the last block of 16, and the constant weights (and bias) of the
  // padding are zero, so every skipped product is an exact 0 (otherwise nothing is skipped).
  static bool HalfPaddedLastBlock(const KernelInit& init, bool out) {
    constexpr int64_t B = kernels::kNchwcBlock;
    const int64_t real = init.node.AttrInt(out ? "nchwc_out_channels" : "nchwc_in_channels", 0);
    const Tensor* w = init.ConstantInput(1);
    if (real <= 0 || real % B == 0 || real % B > 8 || !w || w->dtype() != DType::kFloat32 || w->rank() != 4) return false;
    const int64_t M = w->dim(0), C = w->dim(1), taps = w->dim(2) * w->dim(3);
    if (real >= (out ? M : C) || (out ? M : C) - real >= B) return false;
    const float* wd = w->data<float>();
    for (int64_t m = out ? real : 0; m < M; ++m)
      for (int64_t c = out ? 0 : real; c < C; ++c)
        for (int64_t t = 0; t < taps; ++t)
          if (wd[(m * C + c) * taps + t] != 0.f) return false;
    if (out && init.node.HasInput(2)) {
      const Tensor* b = init.ConstantInput(2);  // a bias fed at run time is not known to be zero
      if (!b || b->dtype() != DType::kFloat32 || b->numel() != M) return false;
      for (int64_t m = real; m < M; ++m)
        if (b->data<float>()[m] != 0.f) return false;
    }
    return true;
  }

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* w, ctx.RequiredInput(1));
    const Tensor* b = ctx.input(2);
    if (nchwc_) return ComputeBlocked(ctx, *x, *w, b);
    QK_RETURN_IF_ERROR(CheckFloatInput(*x));
    QK_RETURN_IF_ERROR(CheckConvDType(w, x->dtype(), "W"));
    QK_RETURN_IF_ERROR(CheckConvDType(b, x->dtype(), "B"));
    QK_CHECK_ARG(x->rank() >= 3, "input X must have rank >= 3 (N, C, spatial...), got shape {}",
                 ShapeToString(x->shape()));
    QK_CHECK_ARG(w->rank() == x->rank(), "weight W shape {} has a different rank than X shape {}",
                 ShapeToString(w->shape()), ShapeToString(x->shape()));
    const int64_t N = x->dim(0), C = x->dim(1), M = w->dim(0);
    QK_CHECK_ARG(w->dim(1) * group_ == C, "X has {} channels but W shape {} with group {} expects {}", C,
                 ShapeToString(w->shape()), group_, w->dim(1) * group_);
    QK_CHECK_ARG(M % group_ == 0, "weight W has {} output channels, not divisible by group {}", M, group_);
    if (b) {
      QK_CHECK_ARG(b->rank() == 1 && b->dim(0) == M, "bias B has shape {}, expected [{}]", ShapeToString(b->shape()),
                   M);
    }
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveGeometry(attrs_, SpatialDims(x->shape()), SpatialDims(w->shape())));
    Shape yshape = {N, M};
    yshape.insert(yshape.end(), g.out.begin(), g.out.end());
    QK_CHECK_ARG(!ctx.input(3) || x->dtype() == DType::kFloat32, "the fused residual Add needs float32, X has {}",
                 DTypeName(x->dtype()));
    if (max_pool_2x2_) {
      QK_CHECK_ARG(x->dtype() == DType::kFloat32 && g.nd == 2 && g.out[0] >= 2 && g.out[1] >= 2,
                   "the fused 2x2 MaxPool needs a float32 2-D conv output of at least 2x2, got {} {}",
                   DTypeName(x->dtype()), ShapeToString(yshape));
      return ComputeWithMaxPool(ctx, g, N, C, M, *x, *w, b);
    }

    if (x->dtype() == DType::kFloat64) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat64, yshape));
      return ConvCompute<double>(ctx, g, N, C, M, group_, x->data<double>(), w->data<double>(),
                                 b ? b->data<double>() : nullptr, y->data<double>(), act_);
    }
    if (x->dtype() == DType::kFloat32) {
      if (const Tensor* r = ctx.input(3)) return ComputeWithResidual(ctx, g, N, C, M, *x, *w, b, *r, yshape);
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, yshape));
      const kernels::SgemmPackedB* transposed = TransposedWeights(g, M, *w);
      return ConvCompute<float>(ctx, g, N, C, M, group_, x->data<float>(), w->data<float>(),
                                b ? b->data<float>() : nullptr, y->data<float>(), act_, packed_.get(), transposed,
                                WinogradFor(g, N, C, M, *w), nullptr, nullptr, NchwcFor(g, C, M, *w));
    }
    Allocator* alloc = ctx.allocator();
    QK_ASSIGN_OR_RETURN(const Tensor xf, ToFloat32IfHalf(ctx, *x, "float32 X"));
    QK_ASSIGN_OR_RETURN(const Tensor wf, ToFloat32IfHalf(ctx, *w, "float32 W"));
    Tensor bf;
    if (b) {
      QK_ASSIGN_OR_RETURN(bf, ToFloat32IfHalf(ctx, *b, "float32 B"));
    }
    QK_ASSIGN_OR_RETURN(Tensor yf, Tensor::CreateUninitialized(DType::kFloat32, yshape, alloc, "Conv float32 output"));
    QK_RETURN_IF_ERROR(ConvCompute<float>(ctx, g, N, C, M, group_, xf.data<float>(), wf.data<float>(),
                                          b ? bf.data<float>() : nullptr, yf.data<float>(), act_));
    return SetOutputFromFloat32(ctx, 0, yf, x->dtype());
  }

  // FusedConv max_pool_2x2 (passes::FuseConvActivation): each image's conv output goes to a
  // scratch map still in cache and is pooled from there (kernels::MaxPool2x2RowFloat, as the
  // MaxPool kernel's 2x2 row path: the same bits).
  Status ComputeWithMaxPool(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M,
                            const Tensor& x, const Tensor& w, const Tensor* b) {
    const int64_t in_size = g.InSize(), out_size = g.OutSize(), conv_w = g.out[1];
    const int64_t pooled_h = g.out[0] / 2, pooled_w = conv_w / 2, pooled = pooled_h * pooled_w;
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, Shape{N, M, pooled_h, pooled_w}));
    const kernels::SgemmPackedB* transposed = TransposedWeights(g, M, w);
    const WinogradWeights* winograd = WinogradFor(g, N, C, M, w);
    const kernels::NchwcWeights* nchwc = NchwcFor(g, C, M, w);
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    const float* bias = b ? b->data<float>() : nullptr;
    float* yd = y->data<float>();
    // Pools planes [p0, p1) of `conv` (planes of out_size floats) into the planes of `dst`.
    auto pool_planes = [&](const float* conv, float* dst, int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        for (int64_t r = 0; r < pooled_h; ++r) {
          const float* top = conv + p * out_size + 2 * r * conv_w;
          kernels::MaxPool2x2RowFloat(top, top + conv_w, dst + p * pooled + r * pooled_w, pooled_w, isa);
        }
      }
    };
    auto conv = [&](int64_t n0, int64_t images, float* out) {
      return ConvCompute<float>(ctx, g, images, C, M, group_, x.data<float>() + n0 * C * in_size, w.data<float>(), bias,
                                out, act_, packed_.get(), transposed, winograd, nullptr, nullptr, nchwc);
    };
    ThreadPool* pool = ctx.thread_pool();
    const int threads = pool ? pool->num_threads() : 1;
    if (threads > 1 && N < 2 * threads) {  // few images: the conv uses the threads inside, then pool planes
      QK_ASSIGN_OR_RETURN(Tensor scratch, ctx.Scratch(DType::kFloat32, N * M * out_size, "conv output before MaxPool"));
      QK_RETURN_IF_ERROR(conv(0, N, scratch.data<float>()));
      pool->ParallelFor(N * M, 1, [&](int64_t p0, int64_t p1) { pool_planes(scratch.data<float>(), yd, p0, p1); });
      return Status::Ok();
    }
    // Images in parallel, one at a time per worker (the conv inside runs on that worker).
    std::mutex mu;
    Status failed;
    auto images = [&](int64_t n0, int64_t n1) {
      Status st;
      auto scratch = ctx.Scratch(DType::kFloat32, M * out_size, "conv output before MaxPool");
      if (!scratch.ok()) st = scratch.status();
      for (int64_t n = n0; n < n1 && st.ok(); ++n) {
        st = conv(n, 1, scratch.value().data<float>());
        if (st.ok()) pool_planes(scratch.value().data<float>(), yd + n * M * pooled, 0, M);
      }
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (failed.ok()) failed = st;
      }
    };
    if (pool) {
      pool->ParallelFor(N, 1, images);
    } else {
      images(0, N);
    }
    return failed;
  }

  // FusedConv with input 3, r (passes::FuseConvActivation: Conv -> Add(., r) [-> Relu / Clip]):
  // z = clamp(conv(x) + r), the Add's one rounding, then the Clip's expression (the same bits as
  // the separate ops). r of the conv's shape is added in place over the output; other shapes
  // broadcast as Add does (the output takes the broadcast shape).
  Status ComputeWithResidual(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M,
                             const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& r, const Shape& yshape) {
    QK_CHECK_ARG(r.dtype() == DType::kFloat32, "input R (the residual addend) has dtype {}, expected float32",
                 DTypeName(r.dtype()));
    const ConvActivation none;
    const float* bias = b ? b->data<float>() : nullptr;
    const kernels::SgemmPackedB* transposed = TransposedWeights(g, M, w);
    const WinogradWeights* winograd = WinogradFor(g, N, C, M, w);
    const float lo = act_.on ? act_.lo : -std::numeric_limits<float>::infinity();
    const float hi = act_.on ? act_.hi : std::numeric_limits<float>::infinity();
    const float* rd = r.data<float>();
    if (r.shape() == yshape) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, yshape));
      float* yd = y->data<float>();
      bool added = false;  // the packed GEMM path adds r (and clamps) in its epilogue
      QK_RETURN_IF_ERROR(ConvCompute<float>(ctx, g, N, C, M, group_, x.data<float>(), w.data<float>(), bias, yd, act_,
                                            packed_.get(), transposed, winograd, rd, &added, NchwcFor(g, C, M, w)));
      if (added) return Status::Ok();
      auto body = [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) yd[i] = std::min(std::max(yd[i] + rd[i], lo), hi);
      };
      const int64_t n = y->numel();
      if (ThreadPool* pool = ctx.thread_pool(); pool && n >= (int64_t{1} << 16)) {
        pool->ParallelFor(n, int64_t{1} << 14, body);
      } else {
        body(0, n);
      }
      return Status::Ok();
    }
    // An addend that broadcasts: the conv output first, then Add's broadcast runs (ew::BcastPlan).
    QK_ASSIGN_OR_RETURN(const ew::BcastPlan<2> plan, ew::MakeBcastPlan<2>({&yshape, &r.shape()}));
    QK_ASSIGN_OR_RETURN(Tensor conv, ctx.Scratch(DType::kFloat32, NumElements(yshape), "conv output before the Add"));
    QK_RETURN_IF_ERROR(ConvCompute<float>(ctx, g, N, C, M, group_, x.data<float>(), w.data<float>(), bias,
                                          conv.data<float>(), none, packed_.get(), transposed, winograd, nullptr,
                                          nullptr, NchwcFor(g, C, M, w)));
    QK_ASSIGN_OR_RETURN(Tensor * z, ctx.Output(0, DType::kFloat32, plan.out_shape));
    const float* cd = conv.data<float>();
    float* zd = z->data<float>();
    ew::ForEachRun(plan, ctx.thread_pool(), ew::kCheapGrain,
                   [&](int64_t out, const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& step) {
                     for (int64_t i = 0; i < len; ++i) {
                       zd[out + i] = std::min(std::max(cd[off[0] + i * step[0]] + rd[off[1] + i * step[1]], lo), hi);
                     }
                   });
    return Status::Ok();
  }

  // The Winograd-transformed weights, made on the first run whose geometry takes that path (runs
  // may be concurrent, hence once), or null.
  const WinogradWeights* WinogradFor(const ConvGeometry& g, int64_t N, int64_t C, int64_t M, const Tensor& w) {
    if (!packed_ || !UseWinograd(g, N, C, M, group_)) return nullptr;
    std::call_once(winograd_once_, [&] {
      winograd_ = std::make_unique<WinogradWeights>(MakeWinogradWeights(w.data<float>(), M, C));
    });
    return winograd_.get();
  }

  // FusedConv nchwc = 1 (passes::BlockConvChannels): x [N, C/16, H, W, 16] float32, constant
  // float32 weights [M, C, KH, KW], the residual (input 3) and y [N, M/16, OH, OW, 16].
  Status ComputeBlocked(KernelContext& ctx, const Tensor& x, const Tensor& w, const Tensor* b) {
    constexpr int64_t B = kernels::kNchwcBlock;
    if (nchwc_plain_input_) {
      QK_CHECK_ARG(x.dtype() == DType::kFloat32 && x.rank() == 4, "input X must be a float32 [N, C, H, W], got {} {}",
                   DTypeName(x.dtype()), ShapeToString(x.shape()));
    } else {
      QK_CHECK_ARG(x.dtype() == DType::kFloat32 && x.rank() == 5 && x.dim(4) == B,
                   "input X must be a float32 NCHW16c tensor [N, C/16, H, W, 16], got {} {}", DTypeName(x.dtype()),
                   ShapeToString(x.shape()));
    }
    const int64_t x_channels = nchwc_plain_input_ ? x.dim(1) : x.dim(1) * B;
    if (group_ != 1 && !nchwc_plain_input_) return ComputeBlockedDepthwise(ctx, x, w, b, x_channels);
    QK_CHECK_ARG(w.dtype() == DType::kFloat32 && w.rank() == 4 && group_ == 1 && w.dim(1) == x_channels &&
                     w.dim(0) % B == 0,
                 "weight W {} {} does not fit the blocked input {} (group {})", DTypeName(w.dtype()),
                 ShapeToString(w.shape()), ShapeToString(x.shape()), group_);
    QK_CHECK_ARG(!b || (b->dtype() == DType::kFloat32 && b->rank() == 1 && b->dim(0) == w.dim(0)),
                 "bias B has shape {}, expected [{}]", b ? ShapeToString(b->shape()) : "", w.dim(0));
    const int64_t N = x.dim(0), C = w.dim(1), M = w.dim(0);
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveGeometry(attrs_, {x.dim(2), x.dim(3)}, {w.dim(2), w.dim(3)}));
    const Shape yshape = {N, M / B, g.out[0], g.out[1], B};
    const Tensor* r = ctx.input(3);
    QK_CHECK_ARG(!r || (r->dtype() == DType::kFloat32 && r->shape() == yshape),
                 "the residual R must be a float32 NCHW16c tensor of the output's shape {}, got {}",
                 ShapeToString(yshape), r ? ShapeToString(r->shape()) : "");
    if (max_pool_2x2_) {
      QK_CHECK_ARG(g.out[0] >= 2 && g.out[1] >= 2, "the fused 2x2 MaxPool needs a conv output of at least 2x2, got {}",
                   ShapeToString(yshape));
      return ComputeBlockedPooled(ctx, x, w, b, r, g);
    }
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, yshape));
    if (N == 0 || g.OutSize() == 0) return Status::Ok();
    BlockedWeights(w);
    const int64_t out_size = g.OutSize() * M, OH = g.out[0];
    const float lo_hi[2] = {act_.lo, act_.hi};
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    ForEachRowRun(ctx, N, kernels::NchwcGroups(M), OH, [&](int64_t n, int64_t group, int64_t oy0, int64_t oy1) {
      kernels::NchwcConvArgs a = BlockedArgs(g, C, M, x, b, r, n, lo_hi);
      a.y = y->data<float>() + n * out_size;
      kernels::ConvNchwcRows(a, group, oy0, oy1, isa);
    });
    return Status::Ok();
  }

  // fn(n, unit, oy0, oy1) over the output rows [0, OH) of `units` units (output-block groups or
  // channel blocks) of N images: one task per row, runs of consecutive rows of one image and unit
  // per call, in parallel when there is more than one row.
  template <typename F>
  static void ForEachRowRun(KernelContext& ctx, int64_t N, int64_t units, int64_t OH, F&& fn) {
    const int64_t per_image = units * OH;
    auto rows = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1;) {
        const int64_t oy0 = t % OH, oy1 = std::min(OH, oy0 + (t1 - t));
        fn(t / per_image, t % per_image / OH, oy0, oy1);
        t += oy1 - oy0;
      }
    };
    ThreadPool* pool = ctx.thread_pool();
    const int64_t tasks = N * per_image;
    if (pool && tasks > 1) {
      pool->ParallelFor(tasks, 1, rows);
    } else {
      rows(0, tasks);
    }
  }

  // ComputeBlocked of a depthwise conv (group = C = M, no residual, no fused pool): tasks of
  // output rows of one channel block (kernels::NchwcDepthwiseRows).
  Status ComputeBlockedDepthwise(KernelContext& ctx, const Tensor& x, const Tensor& w, const Tensor* b, int64_t C) {
    constexpr int64_t B = kernels::kNchwcBlock;
    QK_CHECK_ARG(w.dtype() == DType::kFloat32 && w.rank() == 4 && group_ == C && w.dim(0) == C && w.dim(1) == 1,
                 "depthwise weight W {} {} does not fit the blocked input {} (group {})", DTypeName(w.dtype()),
                 ShapeToString(w.shape()), ShapeToString(x.shape()), group_);
    QK_CHECK_ARG(!b || (b->dtype() == DType::kFloat32 && b->rank() == 1 && b->dim(0) == C),
                 "bias B has shape {}, expected [{}]", b ? ShapeToString(b->shape()) : "", C);
    QK_CHECK_ARG(!ctx.input(3) && !max_pool_2x2_, "a blocked depthwise conv takes no residual and no fused pool");
    const int64_t N = x.dim(0);
    QK_ASSIGN_OR_RETURN(ConvGeometry g, ResolveGeometry(attrs_, {x.dim(2), x.dim(3)}, {w.dim(2), w.dim(3)}));
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, {N, C / B, g.out[0], g.out[1], B}));
    if (N == 0 || g.OutSize() == 0) return Status::Ok();
    const float* packed = BlockedWeights(w).data();
    const float lo_hi[2] = {act_.lo, act_.hi};
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    ForEachRowRun(ctx, N, C / B, g.out[0], [&](int64_t n, int64_t block, int64_t oy0, int64_t oy1) {
      kernels::NchwcDepthwiseArgs a;
      a.g = &g;
      a.x = x.data<float>() + n * C * g.InSize();
      a.w = packed;
      a.bias = b ? b->data<float>() : nullptr;
      a.y = y->data<float>() + n * C * g.OutSize();
      a.clamp_lo_hi = act_.on ? lo_hi : nullptr;
      a.half_block = nchwc_half_last_out_ ? C / B - 1 : -1;
      kernels::NchwcDepthwiseRows(a, block, oy0, oy1, isa);
    });
    return Status::Ok();
  }

  // The blocked kernel's arguments for image n (all but y): x [N, C/16, H, W, 16] (or [N, C, H,
  // W]), the weights, bias, residual (the conv output's layout), and the fused Clip from lo_hi.
  kernels::NchwcConvArgs BlockedArgs(const ConvGeometry& g, int64_t C, int64_t M, const Tensor& x, const Tensor* b,
                                     const Tensor* r, int64_t n, const float* lo_hi) const {
    kernels::NchwcConvArgs a;
    a.g = &g;
    a.C = C;
    a.M = M;
    a.plain_input = nchwc_plain_input_;
    a.x = x.data<float>() + n * a.C * g.InSize();
    a.w = nchwc_weights_->data();
    a.w_layout = nchwc_weights_->layout();
    a.bias = b ? b->data<float>() : nullptr;
    a.residual = r ? r->data<float>() + n * a.M * g.OutSize() : nullptr;
    a.clamp_lo_hi = act_.on ? lo_hi : nullptr;
    a.half_last_out = nchwc_half_last_out_;
    a.half_last_in = nchwc_half_last_in_;
    return a;
  }

  // ComputeBlocked with max_pool_2x2: each task computes the two conv rows of one pooled row of
  // one output-block group into a scratch (in cache) and pools them
  // (kernels::MaxPoolBlockedRowFloat: the MaxPool op's selections, the same values as the conv
  // and a separate NchwcMaxPool). y [N, M/16, OH/2, OW/2, 16].
  Status ComputeBlockedPooled(KernelContext& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* r,
                              const ConvGeometry& g) {
    constexpr int64_t B = kernels::kNchwcBlock;
    const int64_t N = x.dim(0), C = w.dim(1), M = w.dim(0), OH = g.out[0], OW = g.out[1];
    const int64_t PH = OH / 2, PW = OW / 2;
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, Shape{N, M / B, PH, PW, B}));
    if (N == 0) return Status::Ok();
    BlockedWeights(w);
    const int64_t pooled_size = PH * PW * M;
    const float lo_hi[2] = {act_.lo, act_.hi};
    constexpr int64_t kGroup = kernels::kNchwcOutputBlocksPerGroup;
    const int64_t groups = kernels::NchwcGroups(M), per_image = groups * PH;
    const std::vector<int64_t> k_lo(static_cast<size_t>(PW), 0), k_hi(static_cast<size_t>(PW), 2);
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    const int64_t scratch_block = 2 * OW * B;  // two conv rows of one output block
    return ParallelWithScratch<float>(
        ctx, N * per_image, 1, M / B * scratch_block, "blocked conv rows before MaxPool",
        [&](int64_t t0, int64_t t1, float* rows) {
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t n = t / per_image, group = t % per_image / PH, py = t % PH;
            kernels::NchwcConvArgs a = BlockedArgs(g, C, M, x, b, r, n, lo_hi);
            a.y = rows;
            a.y_row0 = 2 * py;
            a.y_block_stride = scratch_block;
            kernels::ConvNchwcRows(a, group, 2 * py, 2 * py + 2, isa);
            const int64_t ob1 = std::min(M / B, (group + 1) * kGroup);
            for (int64_t ob = group * kGroup; ob < ob1; ++ob) {
              const float* pair[2] = {rows + ob * scratch_block, rows + ob * scratch_block + OW * B};
              kernels::MaxPoolBlockedRowFloat(pair, 2, k_lo.data(), k_hi.data(), 2, 0, 1,
                                              y->data<float>() + n * pooled_size + (ob * PH + py) * PW * B, PW, isa);
            }
          }
        });
  }

  // The NCHW16c weights, made on the first run that takes the direct blocked conv, or null.
  const kernels::NchwcWeights* NchwcFor(const ConvGeometry& g, int64_t C, int64_t M, const Tensor& w) {
    if (!packed_ || !UseNchwcConv(g, C, M, group_)) return nullptr;
    return &BlockedWeights(w);
  }

  // The weights [M, C, KH, KW] in the blocked kernel's layout (input blocks of 16 channels, or of
  // one for an NCHW input), packed on the first run that needs them (runs may be concurrent).
  const kernels::NchwcWeights& BlockedWeights(const Tensor& w) {
    std::call_once(nchwc_once_, [&] {
      if (group_ != 1) {  // depthwise
        nchwc_weights_ = std::make_unique<kernels::NchwcWeights>(kernels::NchwcWeights::Depthwise{}, w.data<float>(),
                                                                 w.dim(0), w.dim(2), w.dim(3));
        return;
      }
      nchwc_weights_ = std::make_unique<kernels::NchwcWeights>(w.data<float>(), w.dim(0), w.dim(1), w.dim(2), w.dim(3),
                                                               nchwc_plain_input_ ? 1 : kernels::kNchwcBlock);
    });
    return *nchwc_weights_;
  }

  // W^T packed on the first run with a small map (shapes are known only then; runs may be
  // concurrent, hence once), or null when the transposed conv does not apply.
  const kernels::SgemmPackedB* TransposedWeights(const ConvGeometry& g, int64_t M, const Tensor& w) {
    if (!packed_ || g.nd > 2 || !UseTransposedConv(g.OutSize(), M / group_, group_, 1)) return nullptr;
    std::call_once(transposed_once_, [&] {
      transposed_ = std::make_unique<kernels::SgemmPackedB>(true, w.data<float>(), w.numel() / M, w.numel() / M, M);
    });
    return transposed_.get();
  }

 private:
  SpatialAttrs attrs_;
  int64_t group_ = 1;
  ConvActivation act_;
  bool max_pool_2x2_ = false;
  std::unique_ptr<PackedConvWeights> packed_;  // constant float32 weights, packed at creation
  std::once_flag transposed_once_;
  std::unique_ptr<kernels::SgemmPackedB> transposed_;  // W^T for small maps (ConvTransposedFloat)
  std::once_flag winograd_once_;
  std::unique_ptr<WinogradWeights> winograd_;  // for 3x3 stride-1 maps (ConvWinogradFloat)
  std::once_flag nchwc_once_;
  std::unique_ptr<kernels::NchwcWeights> nchwc_weights_;  // channel-blocked direct conv (both layouts)
  bool nchwc_ = false;              // NCHW16c output (ComputeBlocked), and input unless:
  bool nchwc_plain_input_ = false;  // the input is NCHW (a network's first conv)
  // Channels 8-15 of the last output / input block are padding (kernels::NchwcConvArgs).
  bool nchwc_half_last_out_ = false, nchwc_half_last_in_ = false;
};

// ------------------------------------------------------------- NCHW <-> NCHW16c (layout edges)

// com.quantkit::ToNchwc: float32 [N, C, H, W] -> [N, ceil(C/16), H, W, 16], the last block's
// missing channels 0; com.quantkit::FromNchwc the inverse, to attribute `channels` (default all
// of the blocks') (passes::BlockConvChannels). 16 x 16 blocks through registers
// (kernels::TransposeFloat), one per channel block and image in parallel; a partial last block
// element by element.
class NchwcReorderKernel final : public OpKernel {
 public:
  NchwcReorderKernel(bool to_blocked, int64_t channels) : to_blocked_(to_blocked), channels_(channels) {}

  Status Compute(KernelContext& ctx) override {
    constexpr int64_t B = kernels::kNchwcBlock;
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_CHECK_ARG(x->dtype() == DType::kFloat32, "input X must be float32, got {}", DTypeName(x->dtype()));
    if (to_blocked_) {
      QK_CHECK_ARG(x->rank() == 4, "input X must be [N, C, H, W], got {}", ShapeToString(x->shape()));
    } else {
      QK_CHECK_ARG(x->rank() == 5 && x->dim(4) == B, "input X must be NCHW16c [N, C/16, H, W, 16], got {}",
                   ShapeToString(x->shape()));
    }
    const int64_t N = x->dim(0), H = x->dim(2), W = x->dim(3);
    const int64_t C = to_blocked_ ? x->dim(1) : channels_ >= 0 ? channels_ : x->dim(1) * B;
    const int64_t Cb = to_blocked_ ? (C + B - 1) / B : x->dim(1);
    QK_CHECK_ARG(to_blocked_ || (C <= Cb * B && C > (Cb - 1) * B),
                 "attribute channels {} does not fit the blocked input {}", C, ShapeToString(x->shape()));
    const Shape yshape = to_blocked_ ? Shape{N, Cb, H, W, B} : Shape{N, C, H, W};
    QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, yshape));
    const int64_t plane = H * W;
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    const kernels::QGemmIsa isa = kernels::DefaultQGemmIsa();
    auto blocks = [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) {  // block cb of image n
        const int64_t n = i / Cb, c0 = i % Cb * B, valid = std::min(B, C - c0);
        const int64_t blocked_at = i * plane * B, plain_at = (n * C + c0) * plane;
        if (to_blocked_) {
          const float* src = xd + plain_at;
          float* dst = yd + blocked_at;
          if (valid == B) {
            kernels::BlockToNchwc(src, plane, dst, isa);
            continue;
          }
          for (int64_t p = 0; p < plane; ++p)
            for (int64_t c = 0; c < B; ++c) dst[p * B + c] = c < valid ? src[c * plane + p] : 0.f;
        } else {
          const float* src = xd + blocked_at;
          float* dst = yd + plain_at;
          if (valid == B) {
            kernels::BlockFromNchwc(src, plane, dst, isa);
            continue;
          }
          for (int64_t c = 0; c < valid; ++c)
            for (int64_t p = 0; p < plane; ++p) dst[c * plane + p] = src[p * B + c];
        }
      }
    };
    ThreadPool* pool = ctx.thread_pool();
    if (pool && N * Cb > 1 && N * Cb * plane * B >= (int64_t{1} << 15)) {
      pool->ParallelFor(N * Cb, 1, blocks);
    } else {
      blocks(0, N * Cb);
    }
    return Status::Ok();
  }

 private:
  bool to_blocked_;
  int64_t channels_;
};

// --------------------------------------------------------------------------- ConvTranspose

// g is the forward geometry: g.in = Y's spatial dims, g.out = X's spatial dims.
template <typename T>
Status ConvTransposeCompute(KernelContext& ctx, const ConvGeometry& g, int64_t N, int64_t C, int64_t M,
                            int64_t group, const T* x, const T* w, const T* bias, T* y) {
  const int64_t Cg = C / group, Mg = M / group;
  const int64_t ksize = g.KernelSize(), xsize = g.OutSize(), ysize = g.InSize();
  const int64_t rows = Mg * ksize;
  if (N == 0 || M == 0 || ysize == 0) return Status::Ok();
  const bool pointwise = g.IsPointwise();
  const int64_t chunk = pointwise ? xsize : std::min(xsize, std::max<int64_t>(64, kColBudget / std::max<int64_t>(rows, 1)));
  const double flops = 2.0 * static_cast<double>(rows) * static_cast<double>(Cg) * static_cast<double>(xsize);
  return ForEachBatchGroup<T>(
      ctx, N, group, flops, pointwise || xsize == 0 ? 0 : chunk * rows, "col2im",
      [&](int64_t n, int64_t gi, ThreadPool* tp, T* col) {
        const T* xg = x + (n * C + gi * Cg) * xsize;
        const T* wg = w + gi * Cg * rows;  // [Cg, Mg * ksize]
        T* yg = y + (n * M + gi * Mg) * ysize;
        FillRows(yg, Mg, ysize, ysize, bias ? bias + gi * Mg : nullptr);
        if (xsize == 0 || Cg == 0) return;
        if (pointwise) {
          GemmT<T>(true, false, Mg, xsize, Cg, T(1), wg, rows, xg, xsize, T(1), yg, ysize, tp);
          return;
        }
        for (int64_t p0 = 0; p0 < xsize; p0 += chunk) {
          const int64_t p1 = std::min(xsize, p0 + chunk), len = p1 - p0;
          GemmT<T>(true, false, rows, len, Cg, T(1), wg, rows, xg + p0, xsize, T(0), col, len, tp);
          auto col2im = [&](int64_t mb, int64_t me) {
            for (int64_t m = mb; m < me; ++m) {
              kernels::Col2ImChannelAdd<T>(g, col + m * ksize * len, len, p0, p1, yg + m * ysize);
            }
          };
          if (tp && Mg > 1 && rows * len >= (int64_t{1} << 15)) {
            tp->ParallelFor(Mg, 1, col2im);
          } else {
            col2im(0, Mg);
          }
        }
      });
}

class ConvTransposeKernel final : public OpKernel {
 public:
  static StatusOr<std::unique_ptr<OpKernel>> Create(const KernelInit& init) {
    auto k = std::make_unique<ConvTransposeKernel>();
    QK_RETURN_IF_ERROR(ParseSpatialAttrs(init.node, false, &k->attrs_));
    k->group_ = init.node.AttrInt("group", 1);
    QK_CHECK_ARG(k->group_ >= 1, "attribute group must be >= 1, got {}", k->group_);
    k->output_padding_ = init.node.AttrInts("output_padding");
    k->output_shape_ = init.node.AttrInts("output_shape");
    for (int64_t p : k->output_padding_) QK_CHECK_ARG(p >= 0, "attribute output_padding has a negative value {}", p);
    for (int64_t s : k->output_shape_) QK_CHECK_ARG(s >= 0, "attribute output_shape has a negative value {}", s);
    if (const Tensor* w = init.ConstantInput(1)) {
      QK_CHECK_ARG(w->rank() >= 3, "weight W must have rank >= 3, got shape {}", ShapeToString(w->shape()));
      QK_RETURN_IF_ERROR(k->CheckRank(w->rank() - 2));
      if (const Tensor* b = init.ConstantInput(2)) {
        QK_CHECK_ARG(b->rank() == 1 && b->dim(0) == w->dim(1) * k->group_, "bias B has shape {}, expected [{}]",
                     ShapeToString(b->shape()), w->dim(1) * k->group_);
      }
    }
    return std::unique_ptr<OpKernel>(std::move(k));
  }

  Status CheckRank(size_t nd) const {
    QK_RETURN_IF_ERROR(CheckAttrRank(attrs_, nd));
    QK_CHECK_ARG(output_padding_.empty() || output_padding_.size() == nd,
                 "attribute output_padding has {} values, expected {}", output_padding_.size(), nd);
    QK_CHECK_ARG(output_shape_.empty() || output_shape_.size() == nd || output_shape_.size() == nd + 2,
                 "attribute output_shape has {} values, expected {}", output_shape_.size(), nd);
    return Status::Ok();
  }

  StatusOr<ConvGeometry> Geometry(const std::vector<int64_t>& xin, const std::vector<int64_t>& kernel) const {
    const size_t nd = xin.size();
    QK_RETURN_IF_ERROR(CheckRank(nd));
    if (!attrs_.kernel_shape.empty()) {
      QK_CHECK_ARG(attrs_.kernel_shape == kernel, "attribute kernel_shape {} does not match the weight's kernel {}",
                   ShapeToString(attrs_.kernel_shape), ShapeToString(kernel));
    }
    ConvGeometry g;
    g.nd = static_cast<int>(nd);
    g.out = xin;
    g.kernel = kernel;
    g.stride = attrs_.strides.empty() ? std::vector<int64_t>(nd, 1) : attrs_.strides;
    g.dilation = attrs_.dilations.empty() ? std::vector<int64_t>(nd, 1) : attrs_.dilations;
    g.in.assign(nd, 0);
    g.pad_begin.assign(nd, 0);
    const bool same = attrs_.auto_pad == "SAME_UPPER" || attrs_.auto_pad == "SAME_LOWER";
    for (size_t d = 0; d < nd; ++d) {
      QK_CHECK_ARG(kernel[d] >= 1, "kernel dim {} is {}", d, kernel[d]);
      const int64_t op = output_padding_.empty() ? 0 : output_padding_[d];
      QK_CHECK_ARG(op < g.stride[d] || op < g.dilation[d],
                   "output_padding {} of spatial dim {} must be smaller than the stride or dilation", op, d);
      const int64_t natural = g.stride[d] * (xin[d] - 1) + op + (kernel[d] - 1) * g.dilation[d] + 1;
      if (!output_shape_.empty() || same) {
        const int64_t out = !output_shape_.empty() ? output_shape_[output_shape_.size() - nd + d] : xin[d] * g.stride[d];
        const int64_t total = std::max<int64_t>(0, natural - out);
        g.in[d] = out;
        g.pad_begin[d] = attrs_.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      } else {
        const bool valid = attrs_.auto_pad == "VALID";
        const int64_t pb = valid || attrs_.pads.empty() ? 0 : attrs_.pads[d];
        const int64_t pe = valid || attrs_.pads.empty() ? 0 : attrs_.pads[d + nd];
        g.in[d] = natural - pb - pe;
        g.pad_begin[d] = pb;
        QK_CHECK_ARG(g.in[d] >= 0, "spatial dim {}: pads {}+{} exceed the output size {}", d, pb, pe, natural);
      }
    }
    return g;
  }

  Status Compute(KernelContext& ctx) override {
    QK_ASSIGN_OR_RETURN(const Tensor* x, ctx.RequiredInput(0));
    QK_ASSIGN_OR_RETURN(const Tensor* w, ctx.RequiredInput(1));
    const Tensor* b = ctx.input(2);
    QK_RETURN_IF_ERROR(CheckFloatInput(*x));
    QK_RETURN_IF_ERROR(CheckConvDType(w, x->dtype(), "W"));
    QK_RETURN_IF_ERROR(CheckConvDType(b, x->dtype(), "B"));
    QK_CHECK_ARG(x->rank() >= 3, "input X must have rank >= 3 (N, C, spatial...), got shape {}",
                 ShapeToString(x->shape()));
    QK_CHECK_ARG(w->rank() == x->rank(), "weight W shape {} has a different rank than X shape {}",
                 ShapeToString(w->shape()), ShapeToString(x->shape()));
    const int64_t N = x->dim(0), C = x->dim(1);
    QK_CHECK_ARG(w->dim(0) == C, "X has {} channels but weight W shape {} expects {}", C, ShapeToString(w->shape()),
                 w->dim(0));
    QK_CHECK_ARG(C % group_ == 0, "X has {} channels, not divisible by group {}", C, group_);
    const int64_t M = w->dim(1) * group_;
    if (b) {
      QK_CHECK_ARG(b->rank() == 1 && b->dim(0) == M, "bias B has shape {}, expected [{}]", ShapeToString(b->shape()),
                   M);
    }
    QK_ASSIGN_OR_RETURN(ConvGeometry g, Geometry(SpatialDims(x->shape()), SpatialDims(w->shape())));
    Shape yshape = {N, M};
    yshape.insert(yshape.end(), g.in.begin(), g.in.end());
    QK_RETURN_IF_ERROR(CheckShape(yshape, x->dtype(), "ConvTranspose output"));

    if (x->dtype() == DType::kFloat64) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat64, yshape));
      return ConvTransposeCompute<double>(ctx, g, N, C, M, group_, x->data<double>(), w->data<double>(),
                                          b ? b->data<double>() : nullptr, y->data<double>());
    }
    if (x->dtype() == DType::kFloat32) {
      QK_ASSIGN_OR_RETURN(Tensor * y, ctx.Output(0, DType::kFloat32, yshape));
      return ConvTransposeCompute<float>(ctx, g, N, C, M, group_, x->data<float>(), w->data<float>(),
                                         b ? b->data<float>() : nullptr, y->data<float>());
    }
    Allocator* alloc = ctx.allocator();
    QK_ASSIGN_OR_RETURN(const Tensor xf, ToFloat32IfHalf(ctx, *x, "float32 X"));
    QK_ASSIGN_OR_RETURN(const Tensor wf, ToFloat32IfHalf(ctx, *w, "float32 W"));
    Tensor bf;
    if (b) {
      QK_ASSIGN_OR_RETURN(bf, ToFloat32IfHalf(ctx, *b, "float32 B"));
    }
    QK_ASSIGN_OR_RETURN(Tensor yf,
                        Tensor::CreateUninitialized(DType::kFloat32, yshape, alloc, "ConvTranspose float32 output"));
    QK_RETURN_IF_ERROR(ConvTransposeCompute<float>(ctx, g, N, C, M, group_, xf.data<float>(), wf.data<float>(),
                                                   b ? bf.data<float>() : nullptr, yf.data<float>()));
    return SetOutputFromFloat32(ctx, 0, yf, x->dtype());
  }

 private:
  SpatialAttrs attrs_;
  int64_t group_ = 1;
  std::vector<int64_t> output_padding_, output_shape_;
};

}  // namespace

void RegisterNnConvOps(KernelRegistry& r) {
  r.Register("", "Conv", &ConvKernel::Create);
  r.Register(kQuantkitDomain, "FusedConv", &ConvKernel::Create);
  r.Register(kQuantkitDomain, "ToNchwc", [](const KernelInit&) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(std::make_unique<NchwcReorderKernel>(true, -1));
  });
  r.Register(kQuantkitDomain, "FromNchwc", [](const KernelInit& init) -> StatusOr<std::unique_ptr<OpKernel>> {
    return std::unique_ptr<OpKernel>(std::make_unique<NchwcReorderKernel>(false, init.node.AttrInt("channels", -1)));
  });
  r.Register("", "ConvTranspose", &ConvTransposeKernel::Create);
}

}  // namespace quantkit::rt
