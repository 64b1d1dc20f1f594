#!/usr/bin/python3
"""Fast subset of the model bench (bench/qkbench), for the test suite:

  - Fashion-MNIST CNN on 200 test images (2 batches): quantkit's and ONNX Runtime's top-1 decisions
    agree (at most one image differs) and top-1 >= 0.88;
  - Silero VAD v5 on 5 s of espeak-ng speech + sox noise, frame by frame with the state carried
    (`quantkit run --data --carry`, `ort_run.js --data --carry`): frame decisions agree (at most one
    frame differs), probabilities agree to 1e-4, frame accuracy above a floor, and the carry really
    feeds the state (running without it gives different probabilities);
  - `quantkit bench`: timing JSON from generated inputs, and exit 2 with one line when a dynamic
    dim has no --shape.

  bench_fast.py --quantkit build/quantkit

Exit 0 pass, 1 fail, 77 skip (Silero not fetched: scripts/fetch_models.sh).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SKIP = 77

FASHION_TOP1_FLOOR = 0.88
VAD_ACCURACY_FLOOR = 0.80


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantkit", default=os.path.join(REPO, "build", "quantkit"))
    a = ap.parse_args()
    models_dir = os.environ.get("MODELS_DIR") or os.path.join(REPO, "models")
    silero = os.path.join(models_dir, "silero_vad_v5.onnx")
    if not os.path.isfile(silero):
        print(f"SKIP: {silero} not fetched (scripts/fetch_models.sh)")
        return SKIP

    work = tempfile.mkdtemp(prefix="qk_bench_fast_")
    os.environ["QK_BENCH_CACHE"] = work  # data and outputs go to a temp dir, not bench/out
    os.environ["QUANTKIT"] = os.path.abspath(a.quantkit)
    sys.path.insert(0, os.path.join(REPO, "bench"))
    from qkbench import data, engines  # noqa: E402
    from qkbench.common import BenchError, load_outputs  # noqa: E402
    from qkbench.models import EvalSet, select  # noqa: E402

    failures, passes = [], []

    def check(name, ok, detail):
        (passes if ok else failures).append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    try:
        # -------------------------------------------------------------- Fashion-MNIST, 200 images
        fashion = select(["fashion_cnn"])[0]
        es = EvalSet(data.make_fashion("test", 200, 100))
        out = {e: os.path.join(work, "fashion", e) for e in engines.ENGINES}
        for e in engines.ENGINES:
            engines.run_samples(e, fashion.path, es.dir, out[e])
        ev = {e: fashion.evaluate(es, out[e], out["ort"]) for e in engines.ENGINES}
        differ = sum(x != y for x, y in zip(ev["quantkit"]["decisions"], ev["ort"]["decisions"]))
        check("fashion decisions", differ <= 1 and len(ev["quantkit"]["decisions"]) == 200,
              f"{differ} of {len(ev['ort']['decisions'])} predictions differ between quantkit and ONNX Runtime")
        check("fashion top-1", ev["quantkit"]["value"] >= FASHION_TOP1_FLOOR and
              abs(ev["quantkit"]["value"] - ev["ort"]["value"]) <= 1 / 200 + 1e-12,
              f"quantkit {ev['quantkit']['value']:.3f}, ORT {ev['ort']['value']:.3f} (floor {FASHION_TOP1_FLOOR})")

        # ----------------------------------------------- paired latency ratios (bench/qkbench/report)
        from qkbench.report import paired_ratio  # noqa: E402
        lat = {"a": {"median_ms": 10.0, "round_medians_ms": [10.0, 20.0, 10.0, 10.0]},
               "b": {"median_ms": 4.0, "round_medians_ms": [5.0, 5.0, 10.0, 5.0]}}
        pooled = {k: {"median_ms": v["median_ms"]} for k, v in lat.items()}
        got = (paired_ratio(lat, "a", "b"), paired_ratio(pooled, "a", "b"), paired_ratio({"a": {"error": "x"}}, "a", "b"))
        check("paired ratio", got == (2.0, 2.5, None),
              f"median of per-round ratios 2, 4, 1, 2 -> {got[0]}; pooled medians 10 / 4 -> {got[1]}; error -> {got[2]}")
        lat = engines.time_interleaved({"quantkit/fp32": ("quantkit", fashion.path), "ort/fp32": ("ort", fashion.path)},
                                       fashion.timing_inputs(es), 1, 2, 100, 50)
        rounds = [len(lat[k].get("round_medians_ms", [])) for k in ("quantkit/fp32", "ort/fp32")]
        ratio = paired_ratio(lat, "ort/fp32", "quantkit/fp32")
        check("interleaved timing rounds", rounds == [2, 2] and ratio is not None and 0.1 < ratio < 10,
              f"round medians per engine {rounds}, ORT / qk {ratio}")

        # ------------------------------------------------ Silero v5, 5 s, state carried frame by frame
        vad = select(["silero_v5"])[0]
        fixed, carries = vad.state_inputs()
        es = EvalSet(data.make_vad(5, seed=3004), fixed=fixed, carries=carries)
        out = {e: os.path.join(work, "vad", e) for e in engines.ENGINES}
        for e in engines.ENGINES:
            engines.run_samples(e, vad.path, es.dir, out[e], es.fixed, es.carries)
        ev = {e: vad.evaluate(es, out[e], out["ort"]) for e in engines.ENGINES}
        differ = sum(x != y for x, y in zip(ev["quantkit"]["decisions"], ev["ort"]["decisions"]))
        n = len(ev["ort"]["decisions"])
        check("vad frame decisions", differ <= 1 and n == len(es.names),
              f"{differ} of {n} frame decisions differ between quantkit and ONNX Runtime")
        dp = ev["quantkit"]["extra"]["mean_abs_p_vs_fp32"]
        check("vad probabilities", dp < 1e-4, f"mean |p_quantkit - p_ort| = {dp:.2e}")
        check("vad frame accuracy", ev["quantkit"]["value"] >= VAD_ACCURACY_FLOOR,
              f"quantkit {ev['quantkit']['value']:.3f}, ORT {ev['ort']['value']:.3f} (floor {VAD_ACCURACY_FLOOR})")
        no_carry = os.path.join(work, "vad", "no_carry")
        engines.run_samples("quantkit", vad.path, es.dir, no_carry, es.fixed, None)
        p_carry = [float(x.reshape(-1)[0]) for x in load_outputs(out["quantkit"], es.names, "output")]
        p_fresh = [float(x.reshape(-1)[0]) for x in load_outputs(no_carry, es.names, "output")]
        diff = max(abs(x - y) for x, y in zip(p_carry, p_fresh))
        check("vad carry feeds the state", diff > 0.05 and p_carry[0] == p_fresh[0],
              f"first frame equal, max |p_carried - p_zero_state| = {diff:.3f}")
    except BenchError as e:
        check("bench run", False, str(e))

    # ---------------------------------------------------------------------------- quantkit bench
    model = os.path.join(REPO, "assets", "fashion_mnist_cnn.onnx")
    p = subprocess.run([a.quantkit, "bench", model, "--shape", "image=4x1x28x28", "--repeat", "5",
                        "--min-time-ms", "0", "--warmup-ms", "0", "--threads", "1", "--json"],
                       capture_output=True, text=True)
    try:
        j = json.loads(p.stdout)
        ok = (p.returncode == 0 and j["runs"] >= 5 and len(j["samples_ms"]) == j["runs"] and
              0 < j["min_ms"] <= j["median_ms"] <= j["p90_ms"] and j["inputs"][0]["shape"] == [4, 1, 28, 28])
        detail = f"{j['runs']} runs, median {j['median_ms']:.3f} ms"
    except (ValueError, KeyError, IndexError):
        ok, detail = False, f"exit {p.returncode}, stdout {p.stdout[:200]!r}, stderr {p.stderr[:200]!r}"
    check("quantkit bench --json", ok, detail)
    p = subprocess.run([a.quantkit, "bench", model], capture_output=True, text=True)
    err = p.stderr.strip().splitlines()
    check("quantkit bench dynamic dims need --shape", p.returncode == 2 and len(err) == 1 and "--shape image=" in err[0],
          f"exit {p.returncode}: {p.stderr.strip()[:200]}")

    # ort_run.js timing, as bench/run reads it
    np_file = os.path.join(work, "images.npy")
    import numpy as np
    np.save(np_file, np.zeros((4, 1, 28, 28), np.float32))
    p = subprocess.run(["node", os.path.join(REPO, "tools", "ort_run.js"), model, "--input", f"image={np_file}",
                        "--repeat", "3", "--min-time-ms", "0", "--warmup-ms", "0", "--threads", "1", "--json"],
                       capture_output=True, text=True)
    try:
        t = json.loads(p.stdout)["timing"]
        ok = p.returncode == 0 and len(t["samples_ms"]) == t["repeat"] >= 3 and t["warmup"] >= 1
        detail = f"{t['repeat']} runs, median {t['median_ms']:.3f} ms"
    except (ValueError, KeyError):
        ok, detail = False, f"exit {p.returncode}, stdout {p.stdout[:200]!r}, stderr {p.stderr[:200]!r}"
    check("ort_run.js --repeat timing", ok, detail)

    print(f"{len(passes)} passed, {len(failures)} failed")
    if not failures:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"files kept in {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
