"""Paths, subprocess helpers, .npy sample folders and the label-free comparison used by the bench."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("QK_BENCH_CACHE") or os.path.join(REPO, "bench", "out")  # git-ignored
MODELS_DIR = os.environ.get("MODELS_DIR") or os.path.join(REPO, "models")
ORT_RUN = os.path.join(REPO, "tools", "ort_run.js")


class BenchError(Exception):
    """A step of the bench failed; the message says which and why."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def quantkit_binary():
    path = os.environ.get("QUANTKIT") or os.path.join(REPO, "build", "quantkit")
    if not os.access(path, os.X_OK):
        raise BenchError(f"quantkit binary not found at {path} (build it, or set QUANTKIT=path)")
    return os.path.abspath(path)


def node_binary():
    node = shutil.which("node")
    if not node:
        raise BenchError("node not found (scripts/setup.sh installs it)")
    if not os.path.isfile(os.path.join(REPO, "node_modules", "onnxruntime-node", "package.json")):
        raise BenchError("onnxruntime-node is not installed (run scripts/setup.sh --no-build)")
    return node


def run_cmd(cmd, timeout=3600, what=None):
    """Runs a command; returns stdout. Raises BenchError with the last stderr line on failure."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what or os.path.basename(cmd[0])}: timed out after {timeout} s") from None
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        msg = lines[-1][:400] if lines else f"exit {p.returncode}"
        raise BenchError(f"{what or os.path.basename(cmd[0])}: exit {p.returncode}: {msg}")
    return p.stdout


def safe_name(name):
    """Same rule as quantkit's SafeFileName and ort_run.js: the file name of a tensor."""
    out = re.sub(r"[^A-Za-z0-9._-]", "_", name or "unnamed")
    return "_" if out in (".", "..") else out


def write_samples(root, samples):
    """Writes a sample directory: samples is a list of (name, {input: array}); names sort in order."""
    if os.path.isdir(root):
        shutil.rmtree(root)
    for name, feeds in samples:
        d = os.path.join(root, name)
        os.makedirs(d)
        for k, v in feeds.items():
            np.save(os.path.join(d, safe_name(k) + ".npy"), v)


def sample_names(root):
    return sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))


def load_outputs(out_dir, names, output):
    """Reads OUT/<sample>/<output>.npy for every sample name, in order."""
    return [np.load(os.path.join(out_dir, n, safe_name(output) + ".npy")) for n in names]


def save_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def load_json(path, default=None):
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


class Sqnr:
    """Signal-to-quantization-noise ratio of a candidate against a reference, accumulated over
    samples in double (as quantkit compare does): 10 log10(sum ref^2 / sum (ref - cand)^2)."""

    def __init__(self):
        self.signal = 0.0
        self.noise = 0.0

    def add(self, ref, cand):
        ref = np.asarray(ref, np.float64)
        cand = np.asarray(cand, np.float64)
        if ref.shape != cand.shape:
            raise BenchError(f"shape {list(cand.shape)} differs from the reference's {list(ref.shape)}")
        self.signal += float(np.sum(ref * ref))
        self.noise += float(np.sum((ref - cand) ** 2))

    def db(self):
        if self.noise == 0.0:
            return float("inf")
        if self.signal == 0.0:
            return float("-inf")
        return 10.0 * np.log10(self.signal / self.noise)


def sqnr_db(refs, cands):
    s = Sqnr()
    for r, c in zip(refs, cands):
        s.add(r, c)
    return s.db()
