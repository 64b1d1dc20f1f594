"""Kernel micro-benchmarks: GEMM throughput against the machine's measured peak, one thread.

Builds and runs bench/kernels/kernel_bench (Google Benchmark, C++): peak probes (unrolled
vfmadd231ps / vpmaddwd+vpaddd / vpmaddubsw / vpdpbusd loops, each only where CPUID has the
instructions), quantkit's int8 GEMM (QGemm) and fp32 GEMM (Sgemm), and oneDNN's matmul as the anchor.
Every number is GMAC/s (multiply-accumulates per second / 1e9), the best of the repetitions.

    /usr/bin/python3 bench/qkbench/kernel_bench.py build-kbench     # markdown on stdout

Only the standard library: importable without the model bench's dependencies.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = "kernel_bench"

# The targets ("Fast kernels and the speed bench"), at M = N = K = 1024, one thread.
INT8_TARGET = 0.90  # of the measured VNNI (vpdpbusd) peak
FP32_TARGET = 0.85  # of the measured FMA peak
TARGET_SHAPE = (1024, 1024, 1024)

SHAPE_NOTES = {
    (1024, 1024, 1024): "square",
    (3136, 64, 576): "resnet 3x3 conv, 56x56x64",
    (128, 768, 768): "encoder projection",
    (128, 3072, 768): "encoder FFN",
}

PEAK_LABELS = {
    "fma_ymm": "vfmadd231ps ymm (AVX2+FMA)",
    "fma_zmm": "vfmadd231ps zmm (AVX-512F)",
    "vpmaddwd_ymm": "vpmaddwd + vpaddd ymm (exact int16 products: quantkit's avx2 int8 kernel)",
    "vpmaddwd_only_ymm": "vpmaddwd ymm alone, no accumulation (upper bound only)",
    "vpmaddubsw_ymm": "vpmaddubsw + vpmaddwd + vpaddd ymm (saturating u8 x s8: oneDNN/ORT without VNNI)",
    "vpdpbusd_zmm": "vpdpbusd zmm (AVX-512 VNNI)",
    "vpdpbusd_ymm_evex": "vpdpbusd ymm (AVX-512VL VNNI)",
    "vpdpbusd_ymm_vex": "vpdpbusd ymm (AVX-VNNI)",
}


class KernelBenchError(Exception):
    """Building or running the kernel bench failed; the message says which and why."""


def _run(cmd, timeout, what, env=None):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise KernelBenchError(f"{what}: timed out after {timeout} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        raise KernelBenchError(f"{what}: exit {p.returncode}: {lines[-1][:400] if lines else ''}")
    return p.stdout


def binary_path(build_dir):
    return os.path.join(build_dir, "bench", "kernels", TARGET)


def build(build_dir, jobs=1):
    """Configures build_dir with QUANTKIT_BUILD_BENCH=ON if it is not, then builds the target.
    Returns the commands run."""
    build_dir = os.path.abspath(build_dir)
    cache = os.path.join(build_dir, "CMakeCache.txt")
    cmds = []
    cached = open(cache).read() if os.path.isfile(cache) else None
    if cached is None:
        cmds.append(["cmake", "-S", REPO, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                     "-DQUANTKIT_BUILD_TESTS=OFF", "-DQUANTKIT_BUILD_BENCH=ON"])
    elif "QUANTKIT_BUILD_BENCH:BOOL=ON" not in cached:
        cmds.append(["cmake", "-S", REPO, "-B", build_dir, "-DQUANTKIT_BUILD_BENCH=ON"])
    cmds.append(["cmake", "--build", build_dir, "--target", TARGET, "-j", str(jobs)])
    for cmd in cmds:
        _run(cmd, 3600, " ".join(cmd[:2]) + " (kernel bench build)")
    return cmds


def _base(name):
    for suffix in ("/real_time",):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def _collect(raw):
    """Google Benchmark JSON -> {base name: {"values": [GMAC/s per repetition], "label", "error", "counters"}}."""
    runs = {}
    for b in raw.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        name = _base(b.get("run_name") or b["name"])
        if name.startswith("check/"):
            name = name.split("/iterations:")[0]
        r = runs.setdefault(name, {"values": [], "label": b.get("label", ""), "error": None, "counters": {}})
        if b.get("error_occurred"):
            r["error"] = b.get("error_message", "error")
            continue
        r["label"] = b.get("label", r["label"])
        for key in ("GMAC/s", "GHz"):
            if key in b:
                r["values"].append(float(b[key]))
        for key in ("onednn_result", "exact_result", "exact"):
            if key in b:
                r["counters"][key] = b[key]
    return runs


VARIANT_ORDER = ["u8w_packA", "s8w_packA", "u8w", "sgemm", "matmul", "matmul_u8s8s32"]


def _gemm_order(g, default_isa):
    """Registration order (the JSON of a randomly interleaved run is shuffled): shape, then quantkit
    int8 on the default ISA, other ISAs, fp32, then oneDNN."""
    shape = (g["M"], g["N"], g["K"])
    shapes = list(SHAPE_NOTES)
    return (shapes.index(shape) if shape in shapes else len(shapes), shape, g["engine"] != "quantkit",
            g["dtype"] != "int8", g["isa"] != default_isa, g["isa"],
            VARIANT_ORDER.index(g["variant"]) if g["variant"] in VARIANT_ORDER else len(VARIANT_ORDER))


def _int8_peak_for(engine, isa, peaks):
    """The measured peak of the instruction an int8 kernel uses."""
    if engine == "quantkit":
        return {"avx2": "vpmaddwd_ymm", "avx512vnni": "vpdpbusd_zmm", "amx": "tdpbusd_amx"}.get(isa)
    if "amx" in (isa or "") and "tdpbusd_amx" in peaks:
        return "tdpbusd_amx"
    # oneDNN picks its best: zmm VNNI, else AVX-VNNI, else the saturating vpmaddubsw path.
    for p in ("vpdpbusd_zmm", "vpdpbusd_ymm_vex", "vpmaddubsw_ymm"):
        if p in peaks:
            return p
    return None


def _fp32_peak_for(engine, kernel, peaks):
    if engine == "quantkit":
        if kernel.startswith("avx512f"):
            return "fma_zmm"
        return "fma_ymm" if kernel.startswith("avx2_fma") else None  # generic_*: portable, no vector peak
    return "fma_zmm" if "fma_zmm" in peaks else "fma_ymm"


def run_kernel_bench(build_dir: str, min_time_s: float = 0.5, repetitions: int = 2, build_jobs: int = 1,
                     benchmark_filter: str = None) -> dict:
    """Builds (if needed) and runs the kernel bench; returns peaks, GEMM results and machine info.

    Each benchmark runs `repetitions` times for at least min_time_s seconds (randomly interleaved,
    so other load on the machine spreads over all of them); GMAC/s is the best repetition, the
    median is kept too. About 60 s with the defaults on a 2-core AVX2 machine.
    """
    build_dir = os.path.abspath(build_dir)
    t0 = time.time()
    build_cmds = build(build_dir, build_jobs)
    exe = binary_path(build_dir)
    if not os.access(exe, os.X_OK):
        raise KernelBenchError(f"{exe} was not built")
    cmd = [exe, "--benchmark_format=json", f"--benchmark_min_time={min_time_s:g}",
           f"--benchmark_repetitions={repetitions}", "--benchmark_enable_random_interleaving=true"]
    if benchmark_filter:
        cmd.append(f"--benchmark_filter={benchmark_filter}")
    env = dict(os.environ, OMP_NUM_THREADS="1")  # oneDNN's OpenMP; the binary also sets it
    env.pop("QK_KBENCH_DNNL_THREADS", None)
    load_before = os.getloadavg()
    t_run = time.time()
    raw = json.loads(_run(cmd, 1800, "kernel_bench", env=env))
    run_s = time.time() - t_run
    runs = _collect(raw)
    ctx = raw.get("context", {})

    peaks, peak_detail, skipped = {}, {}, {}
    clock = runs.get("peak/clock", {}).get("values") or []
    ghz = max(clock) if clock else None
    for name, r in runs.items():
        if not name.startswith("peak/") or name == "peak/clock":
            continue
        probe = name[len("peak/"):]
        if r["error"] or not r["values"]:
            skipped[probe] = r["error"] or "no result"
            continue
        best = max(r["values"])
        peaks[probe] = best
        peak_detail[probe] = {"gmacs": best, "gmacs_median": _median(r["values"]), "what": r["label"],
                              "mac_per_cycle": best / ghz if ghz else None}

    gemms = []
    for name, r in runs.items():
        if not name.startswith("gemm/"):
            continue
        # gemm/<engine>/<dtype>/<isa>/<variant>/M:<M>/N:<N>/K:<K>
        parts = name.split("/")
        engine, dtype, isa, variant = parts[1:5]
        dims = {p.split(":")[0]: int(p.split(":")[1]) for p in parts[5:8]}
        g = {"name": name, "engine": engine, "dtype": dtype, "isa": isa, "variant": variant,
             "M": dims["M"], "N": dims["N"], "K": dims["K"], "label": r["label"]}
        if r["error"] or not r["values"]:
            g.update(gmacs=None, error=r["error"] or "no result")
            gemms.append(g)
            continue
        if engine == "onednn":
            g["isa"] = r["label"].split(" ")[1] if " " in r["label"] else isa  # oneDNN's implementation name
        g["gmacs"] = max(r["values"])
        g["gmacs_median"] = _median(r["values"])
        peak = _int8_peak_for(engine, isa, peaks) if dtype == "int8" else _fp32_peak_for(engine, isa, peaks)
        g["peak"] = peak if peak in peaks else None
        g["peak_gmacs"] = peaks.get(peak)
        g["fraction_of_peak"] = g["gmacs"] / peaks[peak] if peak in peaks else None
        gemms.append(g)

    gemms.sort(key=lambda g: _gemm_order(g, ctx.get("qgemm_isa")))
    order = list(PEAK_LABELS)
    rank = lambda name: (order.index(name) if name in order else len(order), name)  # noqa: E731
    peak_detail = {k: peak_detail[k] for k in sorted(peak_detail, key=rank)}
    skipped = {k: skipped[k] for k in sorted(skipped, key=rank)}
    build_type = None
    with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith("CMAKE_BUILD_TYPE:"):
                build_type = line.split("=", 1)[1].strip()
    check = runs.get("check/onednn_int8_exact", {}).get("counters", {})
    cpu_isa = [f for f in ctx.get("cpu_isa", "").split(",") if f]
    return {
        "command": cmd,
        "command_str": " ".join(cmd),
        "build_commands": [" ".join(c) for c in build_cmds],
        "build_type": build_type,
        "min_time_s": min_time_s,
        "repetitions": repetitions,
        "run_seconds": round(run_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "machine": {
            "cpu_model": _cpu_model(),
            "num_cpus": ctx.get("num_cpus"),
            "cpu_isa": cpu_isa,
            "has_vnni": "avx512vnni" in cpu_isa or "avxvnni" in cpu_isa,
            "clock_ghz": ghz,
            "qgemm_isa": ctx.get("qgemm_isa"),
            "sgemm_kernel": ctx.get("sgemm_kernel"),
            "onednn_version": ctx.get("onednn_version"),
            "onednn_omp_threads": ctx.get("onednn_omp_threads"),
            "load_avg_before": [round(x, 2) for x in load_before],
            "load_avg_after": [round(x, 2) for x in os.getloadavg()],
            "benchmark_library_build": ctx.get("library_build_type"),
            "platform": platform.platform(),
        },
        "peaks": peaks,
        "peak_detail": peak_detail,
        "skipped_peaks": skipped,
        "gemms": gemms,
        "onednn_int8_exact": (None if not check else {
            "exact": bool(check.get("exact")), "result": int(check.get("onednn_result", 0)),
            "expected": int(check.get("exact_result", 0))}),
    }


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pct(x):
    return "–" if x is None else f"{100 * x:.0f}%"


def _num(x, digits=1):
    return "–" if x is None else f"{x:.{digits}f}"


VARIANT_TEXT = {
    "u8w_packA": "uint8-symmetric weights, activation packing timed",
    "s8w_packA": "int8 weights, activation packing timed",
    "u8w": "uint8-symmetric weights, GEMM only (A packed outside)",
    "sgemm": "Sgemm",
}


def _find(gemms, **kw):
    for g in gemms:
        if all(g.get(k) == v for k, v in kw.items()):
            return g
    return None


def kernel_report(d: dict) -> list:
    """Markdown lines: the kernel section of the bench report."""
    m = d["machine"]
    gemms = d["gemms"]
    out = ["## Kernels: GEMM throughput against the measured peak (one thread)", ""]
    clock = f", clock {m['clock_ghz']:.2f} GHz (measured)" if m.get("clock_ghz") else ""
    out.append(f"{m['cpu_model']}, {m.get('num_cpus')} CPUs, ISA {'+'.join(m['cpu_isa']) or '?'}{clock}; "
               f"quantkit int8 kernel `{m.get('qgemm_isa')}`, fp32 kernel `{m.get('sgemm_kernel')}`; "
               f"oneDNN {m.get('onednn_version') or 'not built'} (OpenMP threads: {m.get('onednn_omp_threads') or '?'}). "
               f"GMAC/s = multiply-accumulates per second / 1e9, best of {d['repetitions']} repetitions (median in brackets) of "
               f">= {d['min_time_s']:g} s each (randomly interleaved; load average {m['load_avg_before'][0]:.2f} "
               f"before, {m['load_avg_after'][0]:.2f} after: other load on the machine lowers the numbers).")
    out.append("")

    # Peaks.
    out += ["Peak probes: unrolled loops of 12 independent accumulator chains, one thread.", "",
            "| probe | instructions | GMAC/s | MAC/cycle |", "|---|---|---:|---:|"]
    for name, p in d["peak_detail"].items():
        out.append(f"| `{name}` | {PEAK_LABELS.get(name, p['what'])} | {p['gmacs']:.1f} ({p['gmacs_median']:.1f}) "
                   f"| {_num(p['mac_per_cycle'])} |")
    for name, why in d["skipped_peaks"].items():
        out.append(f"| `{name}` | {PEAK_LABELS.get(name, '')} | skipped: {why.split(': ', 1)[-1]} | |")
    out.append("")

    # GEMMs: quantkit rows, oneDNN at the same shape and dtype alongside.
    out += ["| kernel | M x N x K | GMAC/s | % of peak (peak) | oneDNN GMAC/s, % of its peak | quantkit / oneDNN |",
            "|---|---|---:|---:|---:|---:|"]
    shapes = []
    for g in gemms:
        if (g["M"], g["N"], g["K"]) not in shapes:
            shapes.append((g["M"], g["N"], g["K"]))
    for shape in shapes:
        M, N, K = shape
        note = SHAPE_NOTES.get(shape)
        shape_txt = f"{M}x{N}x{K}" + (f" ({note})" if note else "")
        for g in gemms:
            if g["engine"] != "quantkit" or (g["M"], g["N"], g["K"]) != shape:
                continue
            kernel = (f"quantkit int8 `{g['isa']}`, {VARIANT_TEXT.get(g['variant'], g['variant'])}" if g["dtype"] == "int8"
                      else f"quantkit fp32 `{g['isa']}`")
            if g.get("gmacs") is None:
                out.append(f"| {kernel} | {shape_txt} | {g.get('error')} | | | |")
                continue
            frac = _pct(g["fraction_of_peak"]) + (f" (`{g['peak']}`)" if g.get("peak") else "")
            if g["fraction_of_peak"] is not None and g["fraction_of_peak"] > 1.0:
                frac += " above the measured peak: check"
            ref = _find(gemms, engine="onednn", dtype=g["dtype"], M=M, N=N, K=K)
            if ref and ref.get("gmacs"):
                ref_txt = f"{ref['gmacs']:.1f} ({ref['gmacs_median']:.1f}), {_pct(ref['fraction_of_peak'])} of `{ref['peak']}`"
                ratio = f"{g['gmacs'] / ref['gmacs']:.2f}"
            else:
                ref_txt, ratio = "–", "–"
            out.append(f"| {kernel} | {shape_txt} | {g['gmacs']:.1f} ({g['gmacs_median']:.1f}) | {frac} | {ref_txt} | {ratio} |")
    out.append("")

    # The targets.
    out += _target_lines(d)
    ex = d.get("onednn_int8_exact")
    if ex is not None and not ex["exact"]:
        out.append(f"- oneDNN's u8 x s8 matmul is not exact on this CPU: 255 (1x64) times 127 (64x1) gives "
                   f"{ex['result']} instead of {ex['expected']} (int16 pair sums saturate, `vpmaddubsw`). Its "
                   "int8 GMAC/s are for that faster, saturating path (32 MAC per vpmaddubsw+vpmaddwd instead of 16 per "
                   "vpmaddwd), so the int8 quantkit/oneDNN ratio compares an exact kernel with an inexact one; its "
                   "% of peak is against the `vpmaddubsw_ymm` probe.")
    elif ex is not None:
        out.append(f"- oneDNN's u8 x s8 matmul is exact on this CPU (255 x 127 x 64 = {ex['result']}).")
    out.append("- oneDNN runs with weights in its preferred layout (reordered once, like quantkit's packed weights), "
               "no zero points, int32 output; quantkit's int8 rows include the zero-point corrections and the int32 "
               "output; `GEMM only` rows pack the activations outside the timed loop.")
    out.append("- The peak probes run in registers only and repeat within a few percent; the GEMMs also depend on the "
               "caches and memory shared with the other cores, so on a busy machine they vary much more between runs "
               "(compare best and median).")
    if d.get("build_type") != "Release":
        out.append(f"- The bench was built as `{d.get('build_type')}`, not Release: these numbers are not the kernels' speed.")
    out.append("")
    out.append(f"Command: `{d['command_str']}` ({d['run_seconds']:.0f} s"
               + (f"; built with `{d['build_commands'][-1]}`" if d.get("build_commands") else "") + ").")
    out.append("")
    return out


def _target_lines(d):
    m, peaks, gemms = d["machine"], d["peaks"], d["gemms"]
    M, N, K = TARGET_SHAPE
    lines = []
    # int8: >= 90% of the VNNI peak.
    vnni_peak = peaks.get("vpdpbusd_zmm")
    pure = _find(gemms, engine="quantkit", dtype="int8", variant="u8w", isa=m.get("qgemm_isa"), M=M, N=N, K=K)
    packed = _find(gemms, engine="quantkit", dtype="int8", variant="u8w_packA", isa=m.get("qgemm_isa"), M=M, N=N, K=K)

    def frac_txt(g, peak):
        return _pct(g["gmacs"] / peak) if g and g.get("gmacs") and peak else "–"

    if vnni_peak and m.get("qgemm_isa") in ("avx512vnni", "amx") and pure and pure.get("gmacs"):
        f_pure = pure["gmacs"] / vnni_peak
        verdict = "met" if f_pure >= INT8_TARGET else "not met"
        amx_peak = peaks.get("tdpbusd_amx")
        amx_txt = (f" The kernel is `amx` (tile multiplies, beyond any vpdpbusd peak): it runs at "
                   f"{frac_txt(pure, amx_peak)} of the `tdpbusd_amx` probe." if m.get("qgemm_isa") == "amx" and amx_peak
                   else "")
        lines.append(f"- Issue target int8 >= {INT8_TARGET:.0%} of the measured VNNI peak at {M}x{N}x{K}: **{verdict}** "
                     f"({frac_txt(pure, vnni_peak)} of `vpdpbusd_zmm` for the GEMM alone, "
                     f"{frac_txt(packed, vnni_peak)} with activation packing).{amx_txt}")
    elif not m.get("has_vnni") and not vnni_peak:
        avx2_peak = peaks.get("vpmaddwd_ymm")
        lines.append(f"- Issue target int8 >= {INT8_TARGET:.0%} of the VNNI peak: **cannot be checked on this machine** "
                     "(the CPU has no VNNI, so there is no vpdpbusd peak to measure). Instead, against the AVX2 "
                     f"`vpmaddwd_ymm` (vpmaddwd+vpaddd) peak that quantkit's `{m.get('qgemm_isa')}` kernel is bound by: "
                     f"{frac_txt(pure, avx2_peak)} for the GEMM alone, {frac_txt(packed, avx2_peak)} with activation "
                     f"packing at {M}x{N}x{K} (not the issue's measure).")
    else:
        lines.append(f"- Issue target int8 >= {INT8_TARGET:.0%} of the VNNI peak: not checked (VNNI peak "
                     f"{'measured' if vnni_peak else 'not measured'}, quantkit chose `{m.get('qgemm_isa')}`"
                     f"{', only AVX-VNNI (ymm) is available' if 'avxvnni' in m.get('cpu_isa', []) else ''}).")
    # fp32: >= 85% of the FMA peak (of the vector width the kernel uses).
    sg = _find(gemms, engine="quantkit", dtype="fp32", M=M, N=N, K=K)
    if sg and sg.get("fraction_of_peak") is not None:
        verdict = "met" if sg["fraction_of_peak"] >= FP32_TARGET else "not met"
        zmm = peaks.get("fma_zmm")
        extra = (f"; {_pct(sg['gmacs'] / zmm)} of the `fma_zmm` peak this CPU also has"
                 if zmm and sg.get("peak") != "fma_zmm" else "")
        lines.append(f"- Issue target fp32 >= {FP32_TARGET:.0%} of the FMA peak at {M}x{N}x{K}: **{verdict}** "
                     f"({_pct(sg['fraction_of_peak'])} of `{sg['peak']}` for `{sg['isa']}`{extra}).")
    else:
        lines.append(f"- Issue target fp32 >= {FP32_TARGET:.0%} of the FMA peak: not checked (no vector Sgemm kernel or "
                     "no FMA peak on this CPU).")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir", help="CMake build directory (configured with -DQUANTKIT_BUILD_BENCH=ON if needed)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per benchmark and repetition (default 0.5)")
    ap.add_argument("--repetitions", type=int, default=2, help="repetitions per benchmark, best is reported (default 2)")
    ap.add_argument("--jobs", type=int, default=1, help="build parallelism (default 1)")
    ap.add_argument("--filter", default=None, help="--benchmark_filter regex (default: everything)")
    ap.add_argument("--json", default=None, help="also write the result dict to this file")
    args = ap.parse_args(argv)
    build_dir = args.build_dir if os.path.isabs(args.build_dir) else os.path.join(REPO, args.build_dir)
    try:
        d = run_kernel_bench(build_dir, args.min_time, args.repetitions, args.jobs, args.filter)
    except KernelBenchError as e:
        print(f"kernel_bench: {e}", file=sys.stderr)
        return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(d, f, indent=1)
    print("\n".join(kernel_report(d)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
