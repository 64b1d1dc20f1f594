"""PyTorch 1.13 (Debian) as a peer for the torch-exported LSTM and encoder: its FP32 output and its
dynamic INT8 output (torch.ao.quantization.quantize_dynamic, engine onednn) on the very inputs and
weights the ONNX engines get, SQNR against FP32, and latency at the bench's thread counts."""

import os
import sys
import time

import numpy as np

from .common import BenchError, Sqnr, load_outputs, log

PEER_MODELS = ("lstm", "encoder")


def _import_torch():
    try:
        import torch
    except ImportError:
        raise BenchError("python3-torch is not installed (scripts/setup.sh installs it)") from None
    return torch


def _modules(name, torch_dir):
    """(FP32 module, dynamic INT8 module, forward(module, x) -> primary output)."""
    torch = _import_torch()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import export_torch_models  # bench/export_torch_models.py: same definitions and weights
    fp32 = export_torch_models.load(name, torch_dir)
    torch.backends.quantized.engine = "onednn"
    to_quantize = export_torch_models.load(name, torch_dir)  # quantize_dynamic changes it in place
    if name == "lstm":
        to_quantize = torch.nn.Sequential(to_quantize)  # it swaps children, never the module given
    int8 = torch.ao.quantization.quantize_dynamic(to_quantize, {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
    if name == "lstm":
        def forward(m, x):
            return m(x)[0]
        return fp32, int8, forward, "quantized: LSTM"
    # PyTorch 1.13's fused encoder fast path cannot take dynamically quantized Linear layers (it
    # reads .weight, a method there); an all-zero attention mask (no effect on the result) keeps
    # the quantized model on the regular path. The FP32 model runs PyTorch's default (fast) path.
    mask = torch.zeros(128, 128)

    def forward(m, x):
        return m(x, mask=mask) if m is int8 else m(x)
    return fp32, int8, forward, "quantized: Linear (the attention projections stay FP32 in PyTorch)"


def _median_ms(fn, x, threads, min_time_s):
    torch = _import_torch()
    torch.set_num_threads(threads)
    with torch.no_grad():
        fn(x)  # warm-up
        times = []
        t_end = time.monotonic() + min_time_s
        while len(times) < 3 or time.monotonic() < t_end:
            t0 = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def run_peer(name, torch_dir, eval_set, ort_fp32_dir, qk_dynamic_dir, threads_list, min_time_s):
    """Returns the peer row for one model (SQNRs in dB against FP32, latencies in ms)."""
    torch = _import_torch()
    fp32, int8, forward, note = _modules(name, torch_dir)
    xs = [np.load(os.path.join(eval_set.dir, n, "x.npy")) for n in eval_set.names]
    out = "y"
    ort_ref = load_outputs(ort_fp32_dir, eval_set.names, out)
    s_fp32_vs_ort, s_int8, s_qk = Sqnr(), Sqnr(), Sqnr()
    torch.set_num_threads(max(threads_list))
    with torch.no_grad():
        for x, ref in zip(xs, ort_ref):
            t = torch.from_numpy(x)
            y = forward(fp32, t).numpy()
            yq = forward(int8, t).numpy()
            s_fp32_vs_ort.add(ref, y)
            s_int8.add(y, yq)
    row = {"model": name, "note": note, "torch": torch.__version__, "engine": torch.backends.quantized.engine,
           "samples": len(xs), "torch_fp32_vs_ort_fp32_db": s_fp32_vs_ort.db(), "torch_dynamic_vs_fp32_db": s_int8.db()}
    if qk_dynamic_dir and os.path.isdir(qk_dynamic_dir):
        for ref, cand in zip(ort_ref, load_outputs(qk_dynamic_dir, eval_set.names, out)):
            s_qk.add(ref, cand)
        row["quantkit_dynamic_vs_fp32_db"] = s_qk.db()
    x0 = torch.from_numpy(xs[0])
    for th in threads_list:
        row[f"torch_fp32_ms_t{th}"] = _median_ms(lambda x: forward(fp32, x), x0, th, min_time_s)
        row[f"torch_dynamic_ms_t{th}"] = _median_ms(lambda x: forward(int8, x), x0, th, min_time_s)
    log(f"peer {name}: {row}")
    return row
