"""Runs the bench for a list of models: data, variants (FP32, and INT8 when `quantkit quantize`
exists), both engines on every variant, task metrics, interleaved latency, PyTorch peers."""

import os
import subprocess

from . import engines
from .common import CACHE, REPO, BenchError, log, quantkit_binary, run_cmd
from .models import TORCH_DIR

# Quantized variants: name -> extra `quantkit quantize` arguments.
INT8_VARIANTS = {"dynamic": ["--mode", "dynamic"]}


def quantize_available():
    """True when this quantkit has the `quantize` command (another issue adds it)."""
    try:
        p = subprocess.run([quantkit_binary(), "quantize", "--help"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0


def setup():
    log("dependencies and build/quantkit (scripts/setup.sh --target quantkit)")
    run_cmd([os.path.join(REPO, "scripts", "setup.sh"), "--target", "quantkit"], timeout=7200, what="setup.sh")


def fetch_models():
    log("fetching models (scripts/fetch_models.sh)")
    run_cmd([os.path.join(REPO, "scripts", "fetch_models.sh")], what="fetch_models.sh")


def export_torch(names):
    log(f"exporting torch models {','.join(names)}")
    run_cmd(["/usr/bin/python3", os.path.join(REPO, "bench", "export_torch_models.py"), "--out", TORCH_DIR,
             "--models", ",".join(names)], timeout=3600, what="export_torch_models.py")


def make_variant(spec, variant):
    """Quantizes spec's model into CACHE/variants/<model>.<variant>.onnx (remade every run: the
    quantizer may have changed). Returns the path."""
    out = os.path.join(CACHE, "variants", f"{spec.name}.{variant}.onnx")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [quantkit_binary(), "quantize", spec.path, "-o", out] + INT8_VARIANTS[variant] + spec.quantize_args
    run_cmd(cmd, timeout=1800, what=f"quantkit quantize {spec.name} ({variant})")
    return out


def count_differences(a, b):
    """How many decisions differ between two engines (lists of equal length)."""
    if len(a) != len(b):
        return max(len(a), len(b))
    return sum(1 for x, y in zip(a, b) if x != y)


def bench_model(spec, quick, threads_list, rounds, min_time_ms, warmup_ms, with_int8, skip_timing):
    """Everything for one model; returns its result dict (errors are recorded, not raised)."""
    res = {"title": spec.title, "kind": spec.kind, "variants": {}, "latency": {}}
    es = spec.eval_set(quick)
    res["samples"] = len(es.names)
    res["timing_note"] = spec.timing_note(es)
    variants = {"fp32": spec.path}
    if with_int8:
        for v in INT8_VARIANTS:
            try:
                variants[v] = make_variant(spec, v)
            except BenchError as e:
                res["variants"][v] = {"error": str(e)}
                log(f"  {spec.name} {v}: {e}")
    run_root = os.path.join(CACHE, "runs", spec.name)
    ref_dir = os.path.join(run_root, "fp32", "ort")
    decisions = {}
    for variant, path in variants.items():
        vres = res["variants"].setdefault(variant, {"engines": {}})
        vres["file"] = os.path.relpath(path, REPO)
        vres["bytes"] = os.path.getsize(path)
        for engine in engines.ENGINES:  # ORT first: its FP32 outputs are every comparison's reference
            out_dir = os.path.join(run_root, variant, engine)
            try:
                secs = engines.run_samples(engine, path, es.dir, out_dir, es.fixed, es.carries)
                if not os.path.isdir(ref_dir):
                    raise BenchError("no ONNX Runtime FP32 reference outputs")
                ev = spec.evaluate(es, out_dir, ref_dir)
            except BenchError as e:
                vres["engines"][engine] = {"error": str(e)}
                log(f"  {spec.name} {variant} {engine}: {e}")
                continue
            decisions[(variant, engine)] = ev.pop("decisions")
            ev["seconds"] = secs
            vres["engines"][engine] = ev
            log(f"  {spec.name} {variant} {engine}: {ev['metric']} {ev['value']:.6g} ({secs:.1f} s)")
    # Decisions that differ: quantkit FP32 vs ONNX Runtime FP32, and every variant vs ORT FP32.
    ref = decisions.get(("fp32", "ort"))
    res["eval_size"] = f"{len(ref) if ref else len(es.names)} {spec.unit}"
    for (variant, engine), dec in decisions.items():
        if ref is not None and dec:
            res["variants"][variant]["engines"][engine]["differ_vs_ort_fp32"] = count_differences(dec, ref)
            res["variants"][variant]["engines"][engine]["decisions"] = len(ref)
    if not skip_timing:
        inputs = spec.timing_inputs(es)
        pairs = {"ort/fp32": ("ort", spec.path), "quantkit/fp32": ("quantkit", spec.path)}
        for v, path in variants.items():
            if v != "fp32":
                pairs[f"quantkit/{v}"] = ("quantkit", path)
        for th in threads_list:
            res["latency"][str(th)] = engines.time_interleaved(pairs, inputs, th, rounds, min_time_ms, warmup_ms)
            log(f"  {spec.name} latency t{th}: " + ", ".join(
                f"{k} {v.get('median_ms', float('nan')):.2f} ms" for k, v in res["latency"][str(th)].items()))
    return res, es

