"""Runs the bench for a list of models: data, variants (FP32, and INT8 when `quantkit quantize`
exists), both engines on every variant, task metrics, interleaved latency, PyTorch peers.

INT8 variants of a model (`int8_variants`):
  dynamic          `quantkit quantize --mode dynamic` (every model)
  static           `quantkit calibrate` on the model's calibration set (never its evaluation set),
                   then `quantkit quantize --mode static --stats` with the default range method
                   (or the model's `static_method`);
                   for models with `static_then_dynamic` (PaddleOCR rec) the static pass covers the
                   convolutional part and a dynamic pass then quantizes the MatMuls.
  static-<method>  the same statistics with another range method (models listing `static_methods`);
  static-int8, dynamic-int8
                   the default settings with int8 weights (`--weight-type int8`) instead of the
                   default uint8-symmetric ones: the same arithmetic in quantkit, but ONNX Runtime's
                   u8 x s8 kernels saturate on CPUs without VNNI (models listing "int8" in
                   `static_methods`, or with `dynamic_int8`);
  static-reduced   7-bit weights (`--weight-range reduced`), if a model lists "reduced".
  dynamic-conv     `--mode dynamic --op-types Conv,MatMul,Gemm` (models with `dynamic_conv`: the
                   conv nets, whose default dynamic file leaves every convolution FP32).

Every INT8 file also runs in ONNX Runtime: `engine_agreement` compares the two engines' outputs, and
`quantized_tensor_agreement` every quantized activation of the file (on a few samples), to show
where the engines start to differ.
"""

import os
import subprocess

import numpy as np

from . import engines
from .common import CACHE, REPO, BenchError, Sqnr, load_outputs, log, quantkit_binary, run_cmd, sample_names
from .models import TORCH_DIR

# Static op types when a dynamic pass follows for MatMul/Gemm (keep in step with quantkit's
# StaticQuantizeOptions::op_types).
STATIC_CONV_OP_TYPES = ("Conv,ConvTranspose,Add,Mul,Concat,MaxPool,Reshape,Flatten,Transpose,Squeeze,Unsqueeze,Slice,Resize,"
                        "AveragePool,GlobalAveragePool")


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


def int8_variants(spec):
    """The INT8 variant names of a model, in report order."""
    names = ["dynamic"]
    if spec.dynamic_int8:
        names.append("dynamic-int8")
    if spec.dynamic_conv:
        names.append("dynamic-conv")
    if spec.static:
        names.append("static")
        names += [f"static-{m}" for m in spec.static_methods]
    return names


def calibrate(spec, es, extra_args=(), out=None, samples=None):
    """`quantkit calibrate` on the model's calibration set; returns (stats path, seconds, peak RSS MiB)."""
    if not es.calib_dir:
        raise BenchError(f"{spec.name} has no calibration set")
    out = out or os.path.join(CACHE, "stats", f"{spec.name}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    cmd = [quantkit_binary(), "calibrate", spec.path, "--calib", es.calib_dir, "-o", out] + list(extra_args)
    if samples:
        cmd += ["--calib-samples", str(samples)]
    secs, rss = _run_measured(cmd, 7200, f"quantkit calibrate {spec.name}")
    return out, secs, rss


def _run_measured(cmd, timeout, what):
    """Runs cmd and returns (seconds, its peak RSS in MiB). The RSS comes from GNU time, which forks
    the command from its own small process: a child forked straight from this Python process would
    report Python's memory high-water mark (Linux keeps it across exec)."""
    import tempfile
    import time
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        t0 = time.monotonic()
        run_cmd(["/usr/bin/time", "-o", rss_file.name, "-f", "%M"] + list(cmd), timeout=timeout, what=what)
        secs = time.monotonic() - t0
        lines = [ln for ln in open(rss_file.name).read().split() if ln.strip()]
    try:
        return secs, int(lines[-1]) / 1024.0
    except (IndexError, ValueError):
        raise BenchError(f"{what}: /usr/bin/time reported no peak RSS") from None


def calibration_memory(spec, es):
    """Peak RSS of `quantkit calibrate --method entropy` with few and with many items: streaming
    observers keep it flat."""
    few, many = spec.calib_memory_check
    out = {}
    for n in (few, many):
        path = os.path.join(CACHE, "stats", f"{spec.name}.rss{n}.json")
        _, secs, rss = calibrate(spec, es, list(spec.calib_args) + ["--method", "entropy"], out=path, samples=n)
        out[str(n)] = {"seconds": secs, "peak_rss_mib": rss}
        log(f"  {spec.name}: calibrate {n} items (entropy): {secs:.1f} s, peak RSS {rss:.1f} MiB")
    out["ratio"] = out[str(many)]["peak_rss_mib"] / out[str(few)]["peak_rss_mib"]
    return out


def make_variant(spec, variant, es, notes):
    """Quantizes spec's model into CACHE/variants/<model>.<variant>.onnx (remade every run: the
    quantizer may have changed). Static variants calibrate first (once per model and run; the
    statistics are kept in `notes`). Returns the path."""
    out = os.path.join(CACHE, "variants", f"{spec.name}.{variant}.onnx")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    qk = quantkit_binary()
    what = f"quantkit quantize {spec.name} ({variant})"
    suffix = variant.split("-", 1)[1] if "-" in variant else None
    weight_args = {"int8": ["--weight-type", "int8"], "reduced": ["--weight-range", "reduced"]}.get(suffix, [])
    if variant.startswith("dynamic"):
        op_args = ["--op-types", "Conv,MatMul,Gemm"] if suffix == "conv" else []
        run_cmd([qk, "quantize", spec.path, "-o", out, "--mode", "dynamic"] + spec.quantize_args + weight_args + op_args,
                timeout=1800, what=what)
        return out
    if "stats" not in notes:
        stats, secs, rss = calibrate(spec, es, spec.calib_args)
        notes.update({"stats": stats, "calib_seconds": secs, "calib_peak_rss_mib": rss,
                      "calib_items": len(sample_names(es.calib_dir))})
        log(f"  {spec.name}: calibrated in {secs:.1f} s, peak RSS {rss:.0f} MiB")
    cmd = [qk, "quantize", spec.path, "-o", out, "--mode", "static", "--stats", notes["stats"]] + weight_args + \
        spec.static_args
    if suffix and not weight_args:
        cmd += ["--method", suffix]
    elif spec.static_method:
        cmd += ["--method", spec.static_method]
    if not spec.static_then_dynamic:
        run_cmd(cmd, timeout=1800, what=what)
        return out
    tmp = out + ".static.onnx"
    run_cmd(cmd[:4] + [tmp] + cmd[5:] + ["--op-types", STATIC_CONV_OP_TYPES], timeout=1800, what=what)
    run_cmd([qk, "quantize", tmp, "-o", out, "--mode", "dynamic", "--op-types", "MatMul,Gemm"] + spec.quantize_args +
            weight_args, timeout=1800, what=what + " dynamic pass")
    os.remove(tmp)
    return out


def output_steps(model_path):
    """{graph output: quantization step} for outputs written by a DequantizeLinear with a constant
    scalar scale (the output's "one quantization step"); other outputs are float and absent."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model_path, load_external_data=False)
    inits = {i.name: i for i in m.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    steps = {}
    for out in m.graph.output:
        n = producers.get(out.name)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in inits:
            scale = numpy_helper.to_array(inits[n.input[1]])
            if scale.size == 1:
                steps[out.name] = float(scale.reshape(-1)[0])
    return steps


def engine_agreement(spec, es, model_path, qk_dir, ort_dir):
    """quantkit vs ONNX Runtime on the same INT8 file, per output: SQNR, max |difference|, and that
    difference in quantization steps: of the output's scale for outputs that are dequantized int8
    ("scale"), else of a uint8 step of the output's range over the evaluation set, (max - min) / 255
    ("range/255"); with the fraction of values more than one step apart."""
    steps = output_steps(model_path)
    res = {}
    for out in spec.outputs:
        s = Sqnr()
        ort_outs, qk_outs = load_outputs(ort_dir, es.names, out), load_outputs(qk_dir, es.names, out)
        lo, hi = np.inf, -np.inf
        for a in ort_outs:
            if np.size(a):
                a = np.asarray(a, np.float64)
                lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
        step, kind = (steps[out], "scale") if out in steps else ((hi - lo) / 255 if hi > lo else 0.0, "range/255")
        max_abs, over, total = 0.0, 0, 0
        for a, b in zip(ort_outs, qk_outs):
            s.add(a, b)
            if np.size(a):
                d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                max_abs = max(max_abs, float(d.max()))
                over += int(np.sum(d > step * (1 + 1e-6)))
                total += d.size
        r = {"sqnr_db": s.db(), "max_abs": max_abs, "step_kind": kind,
             "steps": max_abs / step if step > 0 else (0.0 if max_abs == 0 else float("inf")),
             "over_one_step": over / total if total else 0.0}
        res[out] = r
    return res


QUANTIZED_TENSOR_SAMPLES = 2


def quantized_tensor_agreement(spec, es, model_path, work_dir):
    """Every quantized activation of an INT8 file (the outputs of its QuantizeLinear and
    DynamicQuantizeLinear nodes, main graph), made graph outputs of a copy of the file and computed
    by both engines on the first QUANTIZED_TENSOR_SAMPLES samples: how many are bit-identical, how
    many differ by at most one step, and the first one (in graph order) that differs more. The copy
    runs with quantkit's fusions across those tensors disabled by their being outputs, so this is a
    diagnostic of where the engines diverge, not the file's own run."""
    import onnx
    m = onnx.load(model_path)
    inits = {i.name: i for i in m.graph.initializer}
    existing = {o.name for o in m.graph.output}
    names, taps = [], []  # tensor names; the short graph outputs (Identity) that expose them
    for n in list(m.graph.node):
        if n.op_type == "QuantizeLinear":
            zp = inits.get(n.input[2]) if len(n.input) > 2 else None
            dt = zp.data_type if zp is not None else onnx.TensorProto.UINT8
        elif n.op_type == "DynamicQuantizeLinear":
            dt = onnx.TensorProto.UINT8
        else:
            continue
        if n.output[0] not in existing:
            tap = f"quantized_tap_{len(taps)}"  # tensor names can be too long for file names
            names.append(n.output[0])
            taps.append(tap)
            m.graph.node.append(onnx.helper.make_node("Identity", [n.output[0]], [tap]))
            m.graph.output.append(onnx.helper.make_tensor_value_info(tap, dt, None))
    if not names:
        return {"tensors": 0}
    os.makedirs(work_dir, exist_ok=True)
    path = os.path.join(work_dir, "tensors.onnx")
    onnx.save(m, path)
    data = os.path.join(work_dir, "data")
    if os.path.isdir(data):
        import shutil
        shutil.rmtree(data)
    os.makedirs(data)
    few = es.names[:QUANTIZED_TENSOR_SAMPLES]
    for n in few:
        os.symlink(os.path.join(es.dir, n), os.path.join(data, n))
    outs = {}
    for engine in engines.ENGINES:
        outs[engine] = os.path.join(work_dir, engine)
        engines.run_samples(engine, path, data, outs[engine], es.fixed, es.carries)
    identical = within_one = 0
    first_over = None
    for name, tap in zip(names, taps):
        worst = 0
        for a, b in zip(load_outputs(outs["ort"], few, tap), load_outputs(outs["quantkit"], few, tap)):
            if np.size(a):
                worst = max(worst, int(np.max(np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64)))))
        identical += worst == 0
        within_one += worst <= 1
        if worst > 1 and first_over is None:
            first_over = {"tensor": name, "max_steps": worst}
    os.remove(path)
    return {"tensors": len(names), "identical": identical, "within_one_step": within_one, "first_over": first_over,
            "samples": len(few)}


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
        notes = {}
        for v in int8_variants(spec):
            try:
                variants[v] = make_variant(spec, v, es, notes)
            except BenchError as e:
                res["variants"][v] = {"error": str(e)}
                log(f"  {spec.name} {v}: {e}")
        notes.pop("stats", None)
        if spec.calib_memory_check:
            try:
                notes["memory_check"] = calibration_memory(spec, es)
            except BenchError as e:
                notes["memory_check"] = {"error": str(e)}
        if notes:
            res["calibration"] = notes
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
        if variant != "fp32" and all(e in vres["engines"] and "error" not in vres["engines"][e] for e in engines.ENGINES):
            try:
                vres["agreement"] = engine_agreement(spec, es, path, os.path.join(run_root, variant, "quantkit"),
                                                     os.path.join(run_root, variant, "ort"))
            except BenchError as e:
                vres["agreement"] = {"error": str(e)}
            try:
                vres["tensor_agreement"] = quantized_tensor_agreement(spec, es, path,
                                                                      os.path.join(run_root, variant, "tensors"))
            except BenchError as e:
                vres["tensor_agreement"] = {"error": str(e)}
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
            # The other static methods differ in scales only, not in speed; dynamic-conv runs int8 convs.
            if v in ("dynamic", "dynamic-conv", "static"):
                pairs[f"quantkit/{v}"] = ("quantkit", path)
                pairs[f"ort/{v}"] = ("ort", path)  # the same INT8 file in ONNX Runtime (issue 6's ratio)
        for th in threads_list:
            res["latency"][str(th)] = engines.time_interleaved(pairs, inputs, th, rounds, min_time_ms, warmup_ms)
            log(f"  {spec.name} latency t{th}: " + ", ".join(
                f"{k} {v.get('median_ms', float('nan')):.2f} ms" for k, v in res["latency"][str(th)].items()))
    return res, es

