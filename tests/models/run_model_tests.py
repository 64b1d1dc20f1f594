#!/usr/bin/python3
"""Real-model tests: quantkit's runtime against ONNX Runtime on the same inputs.

For each model fetched by scripts/fetch_models.sh (PaddleOCR v4 det/rec, the
PaddleOCR direction classifier, Silero VAD legacy and v5) this generates
deterministic inputs (fixed seed), runs `quantkit run` and
`node tools/ort_run.js` on the same .npy files and compares every output:

    max_rel = max|q - o| / max(max|o|, tiny)   must be <= --tol (1e-4)

Silero models are run for several consecutive audio frames, the state outputs
of one frame (ONNX Runtime's, so both engines see the same inputs) fed back as
the state inputs of the next.

Needs only the system Python with numpy (/usr/bin/python3), node, and
onnxruntime-node in <repo>/node_modules (scripts/setup.sh installs it).

Exit codes: 0 all outputs match, 1 a mismatch or a failed run, 2 bad usage or
missing tools, 77 models not fetched (ctest SKIP_RETURN_CODE).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

SKIP = 77
TINY = 1e-30

# ----------------------------------------------------------------------------
# Deterministic inputs.


def synthetic_page(rng, h, w, lines=None):
    """A text-like grey image normalised to [-1, 1] (PaddleOCR's (x/255-0.5)/0.5):
    light paper with a soft gradient, dark blocky 'glyph' strokes on text lines,
    a little noise. Shape [1, 3, h, w] float32."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.85 + 0.08 * (xx / w) - 0.05 * (yy / h)  # paper, in [0,1]
    line_h = max(8, h // 6) if lines is None else max(8, h // (2 * lines))
    y = line_h // 2
    while y + line_h <= h:
        x = int(rng.integers(2, max(3, w // 16)))
        while x < w - 4:
            gw = int(rng.integers(line_h // 3, line_h))  # glyph width
            if rng.random() < 0.15:  # a space
                x += gw
                continue
            gx1 = min(w, x + gw)
            # a few strokes per glyph: horizontal, vertical, diagonal-ish
            for _ in range(int(rng.integers(2, 5))):
                kind = rng.integers(0, 3)
                t = max(1, line_h // 8)
                if kind == 0:
                    yy0 = y + int(rng.integers(0, line_h - t))
                    img[yy0:yy0 + t, x:gx1] = 0.1
                elif kind == 1:
                    xx0 = x + int(rng.integers(0, max(1, gx1 - x - t)))
                    img[y:y + line_h, xx0:xx0 + t] = 0.1
                else:
                    for k in range(line_h):
                        cx = x + (k * (gx1 - x)) // line_h
                        img[y + k, cx:cx + t] = 0.12
            x = gx1 + int(rng.integers(1, max(2, line_h // 4)))
        y += 2 * line_h
    img = img + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    # colour tint per channel, then normalise to [-1, 1]
    chans = [np.clip(img * s, 0.0, 1.0) for s in (1.0, 0.97, 0.94)]
    x = np.stack(chans)[None].astype(np.float32)
    return ((x - 0.5) / 0.5).astype(np.float32)


def audio(rng, n_frames, frame=512, sr=16000):
    """Speech-like audio: a few harmonics with vibrato under a syllable envelope,
    plus noise; amplitude around 0.3. Returns n_frames arrays of shape [1, frame]."""
    n = n_frames * frame
    t = np.arange(n, dtype=np.float64) / sr
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    env = 0.5 * (1 - np.cos(2 * np.pi * 4.0 * t)) * 0.35
    x = env * voice / 2.0 + rng.normal(0.0, 0.01, n)
    x = x.astype(np.float32)
    return [x[i * frame:(i + 1) * frame][None, :] for i in range(n_frames)]


def sr16k():
    return np.array(16000, dtype=np.int64)  # 0-d scalar, as the models declare


# ----------------------------------------------------------------------------
# The cases. Each case is one model with one or more steps; a step is a dict of
# input name -> array, or a function(previous reference outputs) -> dict.


def paddle_case(name, model, shape, seed):
    def steps(rng):
        lines = 1 if shape[2] <= 64 else None  # rec/cls crops hold one text line
        return [{"x": np.concatenate([synthetic_page(rng, shape[2], shape[3], lines) for _ in range(shape[0])])}]
    return {"name": name, "model": model, "seed": seed, "steps": steps}


def silero_legacy_case(frames, seed):
    def steps(rng):
        chunks = audio(rng, frames)
        out = [{"input": chunks[0], "sr": sr16k(),
                "h": np.zeros((2, 1, 64), np.float32), "c": np.zeros((2, 1, 64), np.float32)}]
        for i in range(1, frames):
            out.append(lambda prev, i=i: {"input": chunks[i], "sr": sr16k(),
                                          "h": prev["hn"], "c": prev["cn"]})
        return out
    return {"name": "silero_legacy", "model": "silero_vad_legacy.onnx", "seed": seed, "steps": steps}


def silero_v5_case(frames, seed):
    def steps(rng):
        chunks = audio(rng, frames)
        out = [{"input": chunks[0], "state": np.zeros((2, 1, 128), np.float32), "sr": sr16k()}]
        for i in range(1, frames):
            out.append(lambda prev, i=i: {"input": chunks[i], "state": prev["stateN"], "sr": sr16k()})
        return out
    return {"name": "silero_v5", "model": "silero_vad_v5.onnx", "seed": seed, "steps": steps}


def all_cases(frames):
    return [
        paddle_case("ppocr_det", "ch_PP-OCRv4_det_infer.onnx", (1, 3, 320, 320), 1),
        paddle_case("ppocr_rec", "ch_PP-OCRv4_rec_infer.onnx", (1, 3, 48, 320), 2),
        paddle_case("ppocr_rec_b2", "ch_PP-OCRv4_rec_infer.onnx", (2, 3, 48, 160), 3),
        paddle_case("ppocr_cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", (1, 3, 48, 192), 4),
        silero_legacy_case(frames, 5),
        silero_v5_case(frames, 6),
    ]


MODEL_FILES = ["ch_PP-OCRv4_det_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
               "ch_ppocr_mobile_v2.0_cls_infer.onnx", "silero_vad_legacy.onnx", "silero_vad_v5.onnx"]

# ----------------------------------------------------------------------------


def safe_name(name):
    out = re.sub(r"[^A-Za-z0-9._-]", "_", name or "unnamed")
    return "_" if out in (".", "..") else out


def run(cmd, timeout):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout} s", time.monotonic() - t0
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def compare(q, o, tol):
    """Returns (ok, max_abs, max_rel, note)."""
    if q.shape != o.shape:
        return False, float("nan"), float("nan"), f"shape {list(q.shape)} != reference {list(o.shape)}"
    if q.dtype != o.dtype:
        return False, float("nan"), float("nan"), f"dtype {q.dtype} != reference {o.dtype}"
    if q.size == 0:
        return True, 0.0, 0.0, ""
    if o.dtype.kind in "biu":
        d = np.abs(q.astype(np.float64) - o.astype(np.float64))
        m = float(d.max())
        return m == 0.0, m, m / max(float(np.abs(o.astype(np.float64)).max()), TINY), ("" if m == 0 else "integer mismatch")
    qf, of = q.astype(np.float64), o.astype(np.float64)
    qn, on = np.isnan(qf), np.isnan(of)
    if (qn != on).any():
        return False, float("nan"), float("nan"), f"NaN pattern differs ({int(qn.sum())} vs {int(on.sum())} NaNs)"
    qi, oi = np.isinf(qf), np.isinf(of)
    if (qi != oi).any() or (qf[qi] != of[oi]).any():
        return False, float("inf"), float("inf"), "Inf pattern differs"
    fin = ~(qn | qi)
    if not fin.any():
        return True, 0.0, 0.0, ""
    d = np.abs(qf[fin] - of[fin])
    max_abs = float(d.max())
    max_rel = max_abs / max(float(np.abs(of[fin]).max()), TINY)
    return max_rel <= tol, max_abs, max_rel, ""


def main():
    repo_default = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quantkit", help="quantkit binary (default: <repo>/build/quantkit)")
    ap.add_argument("--repo", default=repo_default, help="repository root (for tools/ort_run.js and models/)")
    ap.add_argument("--models-dir", help="models directory (default: $MODELS_DIR or <repo>/models)")
    ap.add_argument("--node", default=shutil.which("node") or "node", help="node executable")
    ap.add_argument("--threads", type=int, default=0, help="threads for both runtimes (0: their default)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative error allowed (default 1e-4)")
    ap.add_argument("--frames", type=int, default=3, help="consecutive frames for the Silero models (>= 2)")
    ap.add_argument("--filter", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--work-dir", help="keep inputs/outputs here (default: a temp dir, removed on success)")
    ap.add_argument("--timeout", type=int, default=600, help="per-run timeout in seconds")
    ap.add_argument("--report", help="also write the results as JSON to this file")
    args = ap.parse_args()

    repo = os.path.abspath(args.repo)
    models_dir = os.path.abspath(args.models_dir or os.environ.get("MODELS_DIR") or os.path.join(repo, "models"))
    quantkit = os.path.abspath(args.quantkit or os.path.join(repo, "build", "quantkit"))
    ort_run = os.path.join(repo, "tools", "ort_run.js")
    if args.frames < 2:
        ap.error("--frames must be >= 2")

    present = [f for f in MODEL_FILES if os.path.isfile(os.path.join(models_dir, f))]
    if not present:
        print(f"SKIP: models not fetched into {models_dir} (run scripts/fetch_models.sh)")
        return SKIP
    if len(present) != len(MODEL_FILES):
        missing = sorted(set(MODEL_FILES) - set(present))
        print(f"ERROR: models partly fetched, missing {', '.join(missing)} (run scripts/fetch_models.sh)")
        return 2
    if not os.access(quantkit, os.X_OK):
        print(f"ERROR: quantkit binary not found at {quantkit}")
        return 2
    if not os.path.isfile(os.path.join(repo, "node_modules", "onnxruntime-node", "package.json")):
        print(f"ERROR: onnxruntime-node not installed in {repo}/node_modules (run scripts/setup.sh --no-build)")
        return 2
    if not shutil.which(args.node) and not os.access(args.node, os.X_OK):
        print(f"ERROR: node not found ({args.node})")
        return 2

    filters = [f for f in args.filter.split(",") if f]
    cases = [c for c in all_cases(args.frames) if not filters or any(f in c["name"] for f in filters)]
    if not cases:
        print(f"ERROR: no case matches --filter {args.filter}")
        return 2

    work = os.path.abspath(args.work_dir) if args.work_dir else tempfile.mkdtemp(prefix="quantkit_models_")
    os.makedirs(work, exist_ok=True)
    thread_args = ["--threads", str(args.threads)] if args.threads > 0 else []

    rows = []  # (case, output, shape, max_abs, max_rel, status, note)
    timings = []
    failed = False
    for case in cases:
        model = os.path.join(models_dir, case["model"])
        rng = np.random.default_rng(case["seed"])
        prev_ref = None
        for si, step in enumerate(case["steps"](rng)):
            label = case["name"] if si == 0 and case["name"].startswith("ppocr") else f"{case['name']}[{si}]"
            feeds = step(prev_ref) if callable(step) else step
            d = os.path.join(work, f"{case['name']}_{si}")
            in_dir, q_dir, o_dir = (os.path.join(d, s) for s in ("in", "quantkit", "ort"))
            for p in (in_dir, q_dir, o_dir):
                os.makedirs(p, exist_ok=True)
            in_args = []
            for name, arr in feeds.items():
                f = os.path.join(in_dir, safe_name(name) + ".npy")
                np.save(f, arr)
                in_args += ["--input", f"{name}={f}"]

            rc_o, out_o, err_o, t_o = run([args.node, ort_run, model, *in_args, "--output-dir", o_dir,
                                           *thread_args, "--json"], args.timeout)
            if rc_o != 0:
                rows.append((label, "*", "", None, None, "ERROR", "ort_run: " + last_line(err_o or out_o)))
                failed = True
                break
            ref_info = json.loads(out_o.strip().splitlines()[-1])["outputs"]
            rc_q, out_q, err_q, t_q = run([quantkit, "run", model, *in_args, "--output-dir", q_dir, *thread_args],
                                          args.timeout)
            timings.append((label, t_q, t_o))
            prev_ref = {}
            for info in ref_info:
                o = np.load(info["file"])
                prev_ref[info["name"]] = o
                shape = "x".join(map(str, o.shape)) or "scalar"
                if rc_q != 0:
                    rows.append((label, info["name"], shape, None, None, "FAIL",
                                 f"quantkit exit {rc_q}: " + last_line(err_q or out_q)))
                    failed = True
                    continue
                qf = os.path.join(q_dir, safe_name(info["name"]) + ".npy")
                if not os.path.isfile(qf):
                    rows.append((label, info["name"], shape, None, None, "FAIL", "quantkit wrote no such output"))
                    failed = True
                    continue
                ok, max_abs, max_rel, note = compare(np.load(qf), o, args.tol)
                rows.append((label, info["name"], shape, max_abs, max_rel, "ok" if ok else "FAIL", note))
                failed |= not ok

    # ---- table
    w_case = max([len(r[0]) for r in rows] + [4])
    w_out = max([len(r[1]) for r in rows] + [6])
    w_shape = max([len(r[2]) for r in rows] + [5])
    print(f"{'case':<{w_case}}  {'output':<{w_out}}  {'shape':<{w_shape}}  {'max_abs':>10}  {'max_rel':>10}  status")
    for label, out, shape, max_abs, max_rel, status, note in rows:
        fa = f"{max_abs:10.3e}" if max_abs is not None else f"{'-':>10}"
        fr = f"{max_rel:10.3e}" if max_rel is not None else f"{'-':>10}"
        print(f"{label:<{w_case}}  {out:<{w_out}}  {shape:<{w_shape}}  {fa}  {fr}  {status}"
              + (f"  {note}" if note else ""))
    if timings:
        print("wall time per run (process incl. load), quantkit / onnxruntime: "
              + ", ".join(f"{lbl} {tq:.2f}s/{to:.2f}s" for lbl, tq, to in timings))

    if args.report:
        with open(args.report, "w") as f:
            json.dump({"tol": args.tol, "results": [
                {"case": r[0], "output": r[1], "shape": r[2], "max_abs": r[3], "max_rel": r[4],
                 "status": r[5], "note": r[6]} for r in rows],
                "timings": [{"case": t[0], "quantkit_s": t[1], "ort_s": t[2]} for t in timings]}, f, indent=1)

    n_fail = sum(1 for r in rows if r[5] != "ok")
    if failed:
        print(f"FAILED: {n_fail} of {len(rows)} outputs (tol {args.tol:g}); files kept in {work}")
        return 1
    print(f"PASSED: {len(rows)} outputs within max_rel {args.tol:g}")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
