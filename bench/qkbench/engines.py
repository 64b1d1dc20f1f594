"""The two engines side by side: quantkit (`quantkit run --data`, `quantkit bench`) and ONNX Runtime
(`node tools/ort_run.js --data`, `--repeat`). Both read the same sample folders and write
OUT/<sample>/<output>.npy, so every metric reads both engines' outputs the same way."""

import json
import os
import shutil
import time

import numpy as np

from .common import ORT_RUN, BenchError, node_binary, quantkit_binary, run_cmd

ENGINES = ("ort", "quantkit")


def _input_args(fixed):
    args = []
    for name, path in (fixed or {}).items():
        args += ["--input", f"{name}={path}"]
    return args


def _carry_args(carries):
    args = []
    for out, inp in (carries or {}).items():
        args += ["--carry", f"{out}={inp}"]
    return args


def run_samples(engine, model, data_dir, out_dir, fixed=None, carries=None, threads=0, timeout=3600):
    """Runs every sample of data_dir in order with one session. fixed: {input: .npy path} used for
    every sample (the first value of carried inputs); carries: {output: input}. Returns seconds."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    thread_args = ["--threads", str(threads)] if threads else []
    if engine == "quantkit":
        cmd = [quantkit_binary(), "run", model, "--data", data_dir, "--output-dir", out_dir]
    elif engine == "ort":
        cmd = [node_binary(), ORT_RUN, model, "--data", data_dir, "--output-dir", out_dir]
    else:
        raise BenchError(f"unknown engine '{engine}'")
    cmd += _input_args(fixed) + _carry_args(carries) + thread_args
    t0 = time.monotonic()
    run_cmd(cmd, timeout=timeout, what=f"{engine} on {os.path.basename(model)}")
    return time.monotonic() - t0


def time_once(engine, model, inputs, threads, min_time_ms, warmup_ms, timeout=1200):
    """One timing process: a session, warm-up, then runs until min_time_ms (and >= 3 runs).
    Returns the list of per-run latencies in ms."""
    if engine == "quantkit":
        cmd = [quantkit_binary(), "bench", model, "--json", "--threads", str(threads), "--repeat", "3",
               "--min-time-ms", str(min_time_ms), "--warmup-ms", str(warmup_ms)] + _input_args(inputs)
        out = run_cmd(cmd, timeout=timeout, what=f"quantkit bench {os.path.basename(model)}")
        return json.loads(out.strip().splitlines()[-1])["samples_ms"]
    cmd = [node_binary(), ORT_RUN, model, "--json", "--threads", str(threads), "--repeat", "3",
           "--min-time-ms", str(int(min_time_ms)), "--warmup-ms", str(int(warmup_ms))] + _input_args(inputs)
    out = run_cmd(cmd, timeout=timeout, what=f"ort_run --repeat {os.path.basename(model)}")
    return json.loads(out.strip().splitlines()[-1])["timing"]["samples_ms"]


def time_interleaved(models, inputs, threads, rounds, min_time_ms, warmup_ms):
    """Latency of several (engine, model) pairs, interleaved: round 1 runs each pair once, then round
    2 in the reverse order, and so on, so background load and drift over the rounds hit all of them
    alike (in a fixed order, the pair timed last in each round got the machine as the load after
    the previous ones left it). models: {key: (engine, model path)}.
    Returns {key: {"median_ms", "p90_ms", "min_ms", "runs", "round_medians_ms"} or {"error"}}: the
    first four over the pooled runs, the last one per round (report.paired_ratio pairs them)."""
    samples = {k: [] for k in models}
    round_medians = {k: [] for k in models}
    errors = {}
    for r in range(rounds):
        order = list(models.items())
        for key, (engine, model) in (order if r % 2 == 0 else order[::-1]):
            if key in errors:
                continue
            try:
                ms = time_once(engine, model, inputs, threads, min_time_ms, warmup_ms)
                samples[key] += ms
                round_medians[key].append(float(np.median(ms)))
            except BenchError as e:
                errors[key] = str(e)
    result = {}
    for key, ms in samples.items():
        if key in errors:
            result[key] = {"error": errors[key]}
            continue
        s = np.sort(np.asarray(ms))
        result[key] = {"median_ms": float(np.median(s)), "p90_ms": float(s[min(len(s) - 1, int(np.ceil(0.9 * len(s))) - 1)]),
                       "min_ms": float(s[0]), "runs": int(len(s)), "round_medians_ms": round_medians[key]}
    return result
