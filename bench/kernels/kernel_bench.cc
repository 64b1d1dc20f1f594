// Kernel micro-benchmarks, one thread (Google Benchmark; never timed tests):
//
//   peak/...   the machine's measured peak per instruction: unrolled loops of independent
//              accumulator chains (vfmadd231ps, vpmaddwd+vpaddd, vpdpbusd, ...), in inline asm so
//              that the compiler can neither fold nor reorder them. Run only where CPUID says the
//              instructions exist. peak/clock is a chain of dependent adds (1 cycle each): the
//              core clock, to turn GMAC/s into MAC/cycle.
//   gemm/...   quantkit's int8 GEMM (QGemm, per ISA) and fp32 GEMM (Sgemm), and oneDNN's matmul at
//              the same shapes, as the anchor.
//
// Every benchmark reports the counter "GMAC/s" (multiply-accumulates per second / 1e9; one FMA lane
// or one int8/int16 product is one MAC). Names are
//   peak/<probe>
//   gemm/<engine>/<dtype>/<isa>/<variant>/M:<M>/N:<N>/K:<K>
// and the label says the kernel that ran (Sgemm's micro-kernel, oneDNN's implementation).
// bench/qkbench/kernel_bench.py runs this with --benchmark_format=json and writes the report.
#include <benchmark/benchmark.h>
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/kernels/qgemm.h"
#include "runtime/kernels/ref/sgemm.h"

#ifdef QK_KBENCH_DNNL
#include <omp.h>

#include <dnnl.hpp>
#endif

namespace {

using quantkit::kernels::QGemmIsa;

// ----------------------------------------------------------------------------------- peak probes
//
// Each probe runs `n` loop iterations of 2 x (one instruction on each of its chains). Chains are
// independent accumulators (ymm0..ymm11 or zmm0..zmm11): 12 chains cover latency x throughput of
// every FMA / dot-product unit in use today (Zen 3: 4 cycles x 2 pipes = 8; Skylake-SP / Ice Lake:
// 4 x 2 = 8; vpdpbusd: 5 x 1..2). The operands never change, so the accumulators stay finite.
// .irp repeats the instruction once per chain register.

constexpr int64_t kProbeLoops = 1 << 14;

#define QK_CHAINS12 "0,1,2,3,4,5,6,7,8,9,10,11"
#define QK_XMM_CLOBBERS12 \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11"

// The probes of one instruction on 12 chains: two operands broadcast into reg12 / reg13 from
// memory with `bcast`, the chains zeroed with `zero`, then `n` loops of 2 x 12 `insn`.
// `isa` the target features, `T` the operands' C type, a_value / b_value their values; `reg`
// "ymm" or "zmm".
#define QK_SIMPLE_PROBE(name, isa, T, a_value, b_value, bcast, reg, zero, insn)                                        \
  __attribute__((target(isa))) void name(int64_t n) {                                                                  \
    const T va = (a_value), vb = (b_value);                                                                            \
    asm volatile(bcast " %[a], %%" reg "12\n\t" bcast " %[b], %%" reg "13\n\t"                                         \
                 ".irp r," QK_CHAINS12 "\n\t" zero " %%" reg "\\r, %%" reg "\\r, %%" reg "\\r\n\t.endr\n\t"            \
                 "1:\n\t"                                                                                              \
                 ".irp r," QK_CHAINS12 "\n\t" insn " %%" reg "13, %%" reg "12, %%" reg "\\r\n\t.endr\n\t"              \
                 ".irp r," QK_CHAINS12 "\n\t" insn " %%" reg "13, %%" reg "12, %%" reg "\\r\n\t.endr\n\t"              \
                 "dec %[n]\n\t"                                                                                        \
                 "jnz 1b\n\t"                                                                                          \
                 "vzeroupper\n\t"                                                                                      \
                 : [n] "+r"(n)                                                                                         \
                 : [a] "m"(va), [b] "m"(vb)                                                                            \
                 : QK_XMM_CLOBBERS12, "xmm12", "xmm13", "cc");                                                         \
  }

// vfmadd231ps ymm: 8 MAC per instruction, 24 per loop.
QK_SIMPLE_PROBE(ProbeFmaYmm, "avx2,fma", float, 1.0f, 0.5f, "vbroadcastss", "ymm", "vxorps", "vfmadd231ps")
// vfmadd231ps zmm: 16 MAC per instruction.
QK_SIMPLE_PROBE(ProbeFmaZmm, "avx512f", float, 1.0f, 0.5f, "vbroadcastss", "zmm", "vpxord", "vfmadd231ps")

// The exact AVX2 int8 path of qgemm_avx2.cc: vpmaddwd (16 int16 x int16 products summed in pairs
// into 8 int32) then vpaddd into the accumulator. 16 MAC per vpmaddwd+vpaddd pair. Every product
// goes to ymm14 (register renaming makes each one a new register).
__attribute__((target("avx2"))) void ProbeMaddwdYmm(int64_t n) {
  const int32_t a = 0x00030002, b = 0x00050007;  // int16 pairs
  asm volatile(
      "vpbroadcastd %[a], %%ymm12\n\t"
      "vpbroadcastd %[b], %%ymm13\n\t"
      ".irp r," QK_CHAINS12 "\n\tvpxor %%ymm\\r, %%ymm\\r, %%ymm\\r\n\t.endr\n\t"
      "1:\n\t"
      ".irp r," QK_CHAINS12 "\n\t"
      "vpmaddwd %%ymm13, %%ymm12, %%ymm14\n\t"
      "vpaddd %%ymm14, %%ymm\\r, %%ymm\\r\n\t"
      ".endr\n\t"
      ".irp r," QK_CHAINS12 "\n\t"
      "vpmaddwd %%ymm13, %%ymm12, %%ymm14\n\t"
      "vpaddd %%ymm14, %%ymm\\r, %%ymm\\r\n\t"
      ".endr\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b)
      : QK_XMM_CLOBBERS12, "xmm12", "xmm13", "xmm14", "cc");
}

// vpmaddwd alone (12 independent results, no accumulation): the multiplier's raw throughput, an
// upper bound no GEMM reaches (its sums need the vpaddd of the probe above). For reading the
// vpmaddwd+vpaddd peak, not a reference for any kernel.
__attribute__((target("avx2"))) void ProbeMaddwdOnlyYmm(int64_t n) {
  const int32_t a = 0x00030002, b = 0x00050007;
  asm volatile(
      "vpbroadcastd %[a], %%ymm12\n\t"
      "vpbroadcastd %[b], %%ymm13\n\t"
      "1:\n\t"
      ".irp r," QK_CHAINS12 "\n\tvpmaddwd %%ymm13, %%ymm12, %%ymm\\r\n\t.endr\n\t"
      ".irp r," QK_CHAINS12 "\n\tvpmaddwd %%ymm13, %%ymm12, %%ymm\\r\n\t.endr\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b)
      : QK_XMM_CLOBBERS12, "xmm12", "xmm13", "cc");
}

// The saturating non-VNNI u8 x s8 path of ONNX Runtime / oneDNN on AVX2: vpmaddubsw (32 u8 x s8
// products summed in pairs into saturating int16), vpmaddwd with ones (pairs into int32), vpaddd.
// 32 MAC per triple; 10 chains (ymm0..ymm9), operands ymm10..ymm12, temporaries ymm13..ymm14.
__attribute__((target("avx2"))) void ProbeMaddubswYmm(int64_t n) {
  const int32_t a = 0x03020104, b = 0x01fe02ff, ones = 0x00010001;
  asm volatile(
      "vpbroadcastd %[a], %%ymm10\n\t"
      "vpbroadcastd %[b], %%ymm11\n\t"
      "vpbroadcastd %[ones], %%ymm12\n\t"
      ".irp r,0,1,2,3,4,5,6,7,8,9\n\tvpxor %%ymm\\r, %%ymm\\r, %%ymm\\r\n\t.endr\n\t"
      "1:\n\t"
      ".irp r,0,1,2,3,4,5,6,7,8,9\n\t"
      "vpmaddubsw %%ymm11, %%ymm10, %%ymm13\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm14\n\t"
      "vpaddd %%ymm14, %%ymm\\r, %%ymm\\r\n\t"
      ".endr\n\t"
      ".irp r,0,1,2,3,4,5,6,7,8,9\n\t"
      "vpmaddubsw %%ymm11, %%ymm10, %%ymm13\n\t"
      "vpmaddwd %%ymm12, %%ymm13, %%ymm14\n\t"
      "vpaddd %%ymm14, %%ymm\\r, %%ymm\\r\n\t"
      ".endr\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b), [ones] "m"(ones)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "cc");
}

// vpdpbusd zmm (AVX-512 VNNI): 64 u8 x s8 products, 4 summed into each int32 lane, no saturation.
QK_SIMPLE_PROBE(ProbeVnniZmm, "avx512f,avx512vnni", int32_t, 0x03020104, 0x01fe02ff, "vpbroadcastd", "zmm", "vpxord",
                "vpdpbusd")
// vpdpbusd ymm, EVEX encoding (AVX512VL + AVX512 VNNI): 32 MAC per instruction.
QK_SIMPLE_PROBE(ProbeVnniYmmEvex, "avx512f,avx512vl,avx512vnni", int32_t, 0x03020104, 0x01fe02ff, "vpbroadcastd",
                "ymm", "vpxor", "%{evex%} vpdpbusd")
// vpdpbusd ymm, VEX encoding (AVX-VNNI: Alder Lake, Sapphire Rapids, Zen 5 ...): 32 MAC.
QK_SIMPLE_PROBE(ProbeVnniYmmVex, "avx2,avxvnni", int32_t, 0x03020104, 0x01fe02ff, "vpbroadcastd", "ymm", "vpxor",
                "%{vex%} vpdpbusd")

// tdpbusd (AMX-INT8): a 16 x 64 uint8 tile times a 64 x 16 int8 tile into 16 x 16 int32, 16384
// MAC per instruction. The amx kernel's own inner step: 2 x 2 accumulators, the two A and two B
// tiles reloaded from L1 (4 KiB) before the products that need them. (Reusing tiles held in
// registers measured slower on this VM: ~1.0 vs ~1.5 TMAC/s.) Tiles configured per call.
__attribute__((target("amx-tile,amx-int8"))) void ProbeAmxTiles(int64_t n) {
  alignas(64) static uint8_t operands[4096];
  struct alignas(64) {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
    uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
  } cfg;
  asm volatile("ldtilecfg %0" ::"m"(cfg));
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t i = 0; i < n; ++i) {
    _tile_loadd(4, operands, 64);
    _tile_loadd(6, operands + 1024, 64);
    _tile_dpbusd(0, 4, 6);
    _tile_loadd(7, operands + 2048, 64);
    _tile_dpbusd(1, 4, 7);
    _tile_loadd(5, operands + 3072, 64);
    _tile_dpbusd(2, 5, 6);
    _tile_dpbusd(3, 5, 7);
  }
  _tile_release();
}

// Core clock: 100 dependent 1-cycle integer adds per loop iteration.
void ProbeClock(int64_t n) {
  int64_t x = 0;
  asm volatile(
      "1:\n\t"
      ".rept 100\n\tadd $1, %[x]\n\t.endr\n\t"
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      : [n] "+r"(n), [x] "+r"(x)
      :
      : "cc");
  benchmark::DoNotOptimize(x);
}

struct Probe {
  const char* name;
  void (*fn)(int64_t);
  double macs_per_loop;  // MAC (or, for the clock, cycles) per loop iteration
  bool (*supported)();
  const char* what;
};

bool HasAvx2Fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool HasAvx2() { return __builtin_cpu_supports("avx2"); }
bool HasAvx512f() { return __builtin_cpu_supports("avx512f"); }
bool HasAvx512Vnni() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"); }
bool HasAvx512VlVnni() { return HasAvx512Vnni() && __builtin_cpu_supports("avx512vl"); }
// CPUID, OS support and Linux's permission (asked by quantkit's own ISA check).
bool HasAmx() { return quantkit::kernels::QGemmIsaSupported(quantkit::kernels::QGemmIsa::kAmx); }
// AVX-VNNI: CPUID.(EAX=7, ECX=1):EAX bit 4 (clang 14's __builtin_cpu_supports does not know it).
bool HasAvxVnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return __builtin_cpu_supports("avx2") && (eax & (1u << 4)) != 0;
}

const Probe kProbes[] = {
    {"fma_ymm", ProbeFmaYmm, 24 * 8, HasAvx2Fma, "vfmadd231ps ymm (AVX2+FMA), 8 MAC/instr"},
    {"fma_zmm", ProbeFmaZmm, 24 * 16, HasAvx512f, "vfmadd231ps zmm (AVX-512F), 16 MAC/instr"},
    {"vpmaddwd_ymm", ProbeMaddwdYmm, 24 * 16, HasAvx2,
     "vpmaddwd+vpaddd ymm (AVX2, exact int16 x int16: quantkit's avx2 int8 kernel), 16 MAC/pair"},
    {"vpmaddwd_only_ymm", ProbeMaddwdOnlyYmm, 24 * 16, HasAvx2,
     "vpmaddwd ymm alone, no accumulation (upper bound, not reachable by a GEMM), 16 MAC/instr"},
    {"vpmaddubsw_ymm", ProbeMaddubswYmm, 20 * 32, HasAvx2,
     "vpmaddubsw+vpmaddwd+vpaddd ymm (AVX2, saturating u8 x s8: ORT/oneDNN without VNNI), 32 MAC/triple"},
    {"vpdpbusd_zmm", ProbeVnniZmm, 24 * 64, HasAvx512Vnni, "vpdpbusd zmm (AVX-512 VNNI), 64 MAC/instr"},
    {"vpdpbusd_ymm_evex", ProbeVnniYmmEvex, 24 * 32, HasAvx512VlVnni,
     "vpdpbusd ymm (AVX-512VL VNNI), 32 MAC/instr"},
    {"vpdpbusd_ymm_vex", ProbeVnniYmmVex, 24 * 32, HasAvxVnni, "vpdpbusd ymm (AVX-VNNI), 32 MAC/instr"},
    {"tdpbusd_amx", ProbeAmxTiles, 4 * 16384, HasAmx,
     "tdpbusd 2x2 tiles, operands from L1 (AMX-INT8), 16384 MAC/instr"},
};

void BM_Peak(benchmark::State& state, const Probe* p) {
  if (!p->supported()) {
    state.SkipWithError((std::string(p->name) + ": not supported on this CPU").c_str());
    return;
  }
  for (auto _ : state) p->fn(kProbeLoops);
  const double total = static_cast<double>(state.iterations()) * kProbeLoops * p->macs_per_loop;
  state.counters["GMAC/s"] = benchmark::Counter(total * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(p->what);
}

void BM_Clock(benchmark::State& state) {
  for (auto _ : state) ProbeClock(kProbeLoops);
  const double cycles = static_cast<double>(state.iterations()) * kProbeLoops * 100;
  state.counters["GHz"] = benchmark::Counter(cycles * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel("100 dependent adds per loop (1 cycle each)");
}

// ------------------------------------------------------------------------------------- GEMMs

struct Shape {
  int64_t M, N, K;
  const char* what;
};

const Shape kShapes[] = {
    {1024, 1024, 1024, "square (the issue's target)"},
    {3136, 64, 576, "resnet conv 3x3, 64 ch, 56x56 (im2col)"},
    {128, 768, 768, "encoder projection, 128 tokens"},
    {128, 3072, 768, "encoder FFN up, 128 tokens"},
};

std::string ShapeName(const Shape& s) {
  return "M:" + std::to_string(s.M) + "/N:" + std::to_string(s.N) + "/K:" + std::to_string(s.K);
}

void SetMacs(benchmark::State& state, const Shape& s) {
  const double macs = static_cast<double>(s.M) * static_cast<double>(s.N) * static_cast<double>(s.K);
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * macs * 1e-9,
                                                benchmark::Counter::kIsRate);
}

template <typename T>
std::vector<T> RandomInts(size_t n, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

std::vector<float> RandomFloats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// quantkit int8: uint8 activations (zero point 7) x weights that are either int8 (per-column zero
// point 0) or uint8-symmetric (uint8, zero point 128: quantkit's default), int32 output.
// pack_in_loop: PackQActivations (copy + row sums, and the int16 widening for avx2) is timed with
// QGemm, as a dynamically quantized MatMul runs; otherwise only QGemm is timed.
void BM_QGemm(benchmark::State& state, Shape s, QGemmIsa isa, bool weights_signed, bool pack_in_loop) {
  namespace qk = quantkit::kernels;
  const auto a = RandomInts<uint8_t>(static_cast<size_t>(s.M * s.K), 0, 255, 1);
  std::shared_ptr<const qk::PackedQWeights> w;
  if (weights_signed) {
    const auto b = RandomInts<int8_t>(static_cast<size_t>(s.K * s.N), -128, 127, 2);
    w = qk::PackQWeights(b.data(), true, false, s.K, s.N, s.N, std::vector<int32_t>(s.N, 0), isa);
  } else {
    const auto b = RandomInts<uint8_t>(static_cast<size_t>(s.K * s.N), 0, 255, 2);
    w = qk::PackQWeights(b.data(), false, false, s.K, s.N, s.N, {128}, isa);
  }
  if (w->isa != isa) {
    state.SkipWithError("isa not supported on this CPU");
    return;
  }
  std::vector<int32_t> c(static_cast<size_t>(s.M * s.N));
  qk::QGemmOutput out;
  out.acc = c.data();
  out.ldc = s.N;
  qk::PackedQActivations pa;
  qk::PackQActivations(a.data(), false, s.M, s.K, s.K, 7, *w, &pa);  // allocates pa.storage once
  for (auto _ : state) {
    if (pack_in_loop) qk::PackQActivations(a.data(), false, s.M, s.K, s.K, 7, *w, &pa);
    qk::QGemm(pa, *w, out, nullptr);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetMacs(state, s);
  state.SetLabel(std::string("qgemm ") + qk::QGemmIsaName(isa));
}

void BM_Sgemm(benchmark::State& state, Shape s) {
  const auto a = RandomFloats(static_cast<size_t>(s.M * s.K), 1);
  const auto b = RandomFloats(static_cast<size_t>(s.K * s.N), 2);
  std::vector<float> c(static_cast<size_t>(s.M * s.N));
  for (auto _ : state) {
    quantkit::kernels::Sgemm(false, false, s.M, s.N, s.K, 1.0f, a.data(), s.K, b.data(), s.N, 0.0f, c.data(), s.N,
                             nullptr);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetMacs(state, s);
  state.SetLabel(std::string("sgemm ") + quantkit::kernels::SgemmKernelName());
}

#ifdef QK_KBENCH_DNNL
// oneDNN matmul: fp32, or u8 x s8 -> s32 (no zero points). Weights in the layout oneDNN prefers
// (format_tag::any, reordered once outside the timed loop, as quantkit's PackQWeights); the
// primitive is created outside the loop. Threads: omp_set_num_threads in main.
void BM_Dnnl(benchmark::State& state, Shape s, bool int8) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dt a_dt = int8 ? dt::u8 : dt::f32, b_dt = int8 ? dt::s8 : dt::f32, c_dt = int8 ? dt::s32 : dt::f32;
  const dnnl::memory::desc a_md({s.M, s.K}, a_dt, tag::ab), b_plain({s.K, s.N}, b_dt, tag::ab),
      b_any({s.K, s.N}, b_dt, tag::any), c_md({s.M, s.N}, c_dt, tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_any, c_md), eng);
  } catch (const dnnl::error& e) {
    state.SkipWithError((std::string("oneDNN matmul unavailable: ") + e.what()).c_str());
    return;
  }
  dnnl::memory a_mem(a_md, eng), b_src(b_plain, eng), b_mem(pd.weights_desc(), eng), c_mem(c_md, eng);
  if (int8) {
    const auto a = RandomInts<uint8_t>(static_cast<size_t>(s.M * s.K), 0, 255, 1);
    const auto b = RandomInts<int8_t>(static_cast<size_t>(s.K * s.N), -128, 127, 2);
    std::copy(a.begin(), a.end(), static_cast<uint8_t*>(a_mem.get_data_handle()));
    std::copy(b.begin(), b.end(), static_cast<int8_t*>(b_src.get_data_handle()));
  } else {
    const auto a = RandomFloats(static_cast<size_t>(s.M * s.K), 1);
    const auto b = RandomFloats(static_cast<size_t>(s.K * s.N), 2);
    std::copy(a.begin(), a.end(), static_cast<float*>(a_mem.get_data_handle()));
    std::copy(b.begin(), b.end(), static_cast<float*>(b_src.get_data_handle()));
  }
  dnnl::reorder(b_src, b_mem).execute(strm, b_src, b_mem);
  strm.wait();
  dnnl::matmul prim(pd);
  const std::unordered_map<int, dnnl::memory> args = {
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
  for (auto _ : state) {
    prim.execute(strm, args);
    strm.wait();
  }
  SetMacs(state, s);
  state.SetLabel(std::string("onednn ") + pd.impl_info_str() + " omp_threads=" + std::to_string(omp_get_max_threads()));
}

// Whether oneDNN's u8 x s8 -> s32 matmul is exact on this CPU: a = 255 (1 x 64) times b = 127
// (64 x 1) is 2072640; a kernel that adds pairs of products in saturating int16 (vpmaddubsw, the
// non-VNNI path) gives 32 * 32767 = 1048544. Counters: onednn_result, exact_result, exact (1/0).
void BM_DnnlInt8Exactness(benchmark::State& state) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  constexpr int64_t K = 64;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc a_md({1, K}, dt::u8, tag::ab), b_md({K, 1}, dt::s8, tag::ab), c_md({1, 1}, dt::s32, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);
  dnnl::memory a_mem(a_md, eng), b_mem(b_md, eng), c_mem(c_md, eng);
  std::fill_n(static_cast<uint8_t*>(a_mem.get_data_handle()), K, uint8_t{255});
  std::fill_n(static_cast<int8_t*>(b_mem.get_data_handle()), K, int8_t{127});
  const dnnl::matmul prim(pd);
  for (auto _ : state) {
    prim.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}});
    strm.wait();
  }
  const int32_t got = *static_cast<const int32_t*>(c_mem.get_data_handle());
  const int32_t exact = 255 * 127 * static_cast<int32_t>(K);
  state.counters["onednn_result"] = got;
  state.counters["exact_result"] = exact;
  state.counters["exact"] = got == exact ? 1 : 0;
  state.SetLabel(std::string("onednn ") + pd.impl_info_str() + (got == exact ? " exact" : " saturates (int16 pair sums)"));
}
#endif

void RegisterAll() {
  for (const Probe& p : kProbes)
    benchmark::RegisterBenchmark((std::string("peak/") + p.name).c_str(), BM_Peak, &p)->UseRealTime();
  benchmark::RegisterBenchmark("peak/clock", BM_Clock)->UseRealTime();

#ifdef QK_KBENCH_DNNL
  benchmark::RegisterBenchmark("check/onednn_int8_exact", BM_DnnlInt8Exactness)->Iterations(1)->Repetitions(1);
#endif

  namespace qk = quantkit::kernels;
  const QGemmIsa def = qk::DefaultQGemmIsa();
  for (const Shape& s : kShapes) {
    const std::string shape = ShapeName(s);
    // The default ISA: both weight types with activation packing timed, and the pure GEMM.
    const std::string d = std::string("gemm/quantkit/int8/") + qk::QGemmIsaName(def) + "/";
    benchmark::RegisterBenchmark((d + "u8w_packA/" + shape).c_str(), BM_QGemm, s, def, false, true)->UseRealTime();
    benchmark::RegisterBenchmark((d + "s8w_packA/" + shape).c_str(), BM_QGemm, s, def, true, true)->UseRealTime();
    benchmark::RegisterBenchmark((d + "u8w/" + shape).c_str(), BM_QGemm, s, def, false, false)->UseRealTime();
    // Every other supported ISA: the pure GEMM (the portable ref kernel only at the square shape:
    // it is slow and only there to show what the vector kernels buy).
    for (QGemmIsa isa : {QGemmIsa::kAmx, QGemmIsa::kAvx512Vnni, QGemmIsa::kAvx2, QGemmIsa::kRef}) {
      if (isa == def || !qk::QGemmIsaSupported(isa)) continue;
      if (isa == QGemmIsa::kRef && s.M != 1024) continue;
      benchmark::RegisterBenchmark(
          (std::string("gemm/quantkit/int8/") + qk::QGemmIsaName(isa) + "/u8w/" + shape).c_str(), BM_QGemm, s, isa,
          false, false)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(
        (std::string("gemm/quantkit/fp32/") + qk::SgemmKernelName() + "/sgemm/" + shape).c_str(), BM_Sgemm, s)
        ->UseRealTime();
#ifdef QK_KBENCH_DNNL
    benchmark::RegisterBenchmark(("gemm/onednn/fp32/auto/matmul/" + shape).c_str(), BM_Dnnl, s, false)->UseRealTime();
    benchmark::RegisterBenchmark(("gemm/onednn/int8/auto/matmul_u8s8s32/" + shape).c_str(), BM_Dnnl, s, true)
        ->UseRealTime();
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  __builtin_cpu_init();
#ifdef QK_KBENCH_DNNL
  // One thread for oneDNN's OpenMP runtime unless QK_KBENCH_DNNL_THREADS says otherwise (to check
  // that the setting takes effect: 2 threads must be faster).
  const char* dnnl_threads = std::getenv("QK_KBENCH_DNNL_THREADS");
  omp_set_num_threads(dnnl_threads ? std::atoi(dnnl_threads) : 1);
  benchmark::AddCustomContext("onednn_omp_threads", std::to_string(omp_get_max_threads()));
  const dnnl_version_t* v = dnnl_version();
  benchmark::AddCustomContext("onednn_version",
                              std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch));
#endif
  std::string isa_flags;  // __builtin_cpu_supports takes only literals
#define QK_FLAG(f) \
  if (__builtin_cpu_supports(f)) isa_flags += std::string(isa_flags.empty() ? "" : ",") + f;
  QK_FLAG("avx2") QK_FLAG("fma") QK_FLAG("avx512f") QK_FLAG("avx512bw") QK_FLAG("avx512vl") QK_FLAG("avx512vnni")
#undef QK_FLAG
  if (HasAvxVnni()) isa_flags += std::string(isa_flags.empty() ? "" : ",") + "avxvnni";
  if (HasAmx()) isa_flags += std::string(isa_flags.empty() ? "" : ",") + "amx_int8";
  benchmark::AddCustomContext("cpu_isa", isa_flags);
  benchmark::AddCustomContext("qgemm_isa", quantkit::kernels::QGemmIsaName(quantkit::kernels::DefaultQGemmIsa()));
  benchmark::AddCustomContext("sgemm_kernel", quantkit::kernels::SgemmKernelName());
  RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
