"""PyTorch 1.13 (Debian) post-training STATIC INT8 quantization as the peer of quantkit's static
variant on the torch-exported CNNs: FX graph mode (prepare_fx / convert_fx, the default "onednn"
qconfig mapping: per-channel symmetric INT8 weights, histogram-observed UINT8 activations, Conv+BN+ReLU
fused) applied to the very weights exported to ONNX, calibrated on the same calibration samples
quantkit calibrates on. Reports, against torch FP32, the output SQNR of torch static INT8 run on
the onednn kernels and of the same quantized model simulated in float (convert_to_reference_fx:
quantize/dequantize around FP32 ops), arg-max agreement, and latency of FP32 and INT8 at the bench's
thread counts. quantkit's static INT8 (against ORT FP32) should match or beat both SQNRs.

The two SQNRs differ on CPUs without VNNI (AVX2 only): onednn's u8 x s8 kernels then sum pairs of
products in int16, which saturates with the full 8-bit activation range the onednn qconfig uses
(reduce_range=False); the reference model is free of that and shows the quality of the scheme itself.

One deviation from the defaults: the activation observers' minimum scale (eps, float32 epsilon
~1.2e-7 by default) is lowered to 1e-20. With random weights mobilenet_v2's activations shrink to
~1e-8 and its logits to ~1e-9, so the default floor rounds them all to zero (0 dB, no arg-max
agreement); ResNets never get near either floor, so their result is the same with both."""

import copy
import os
import sys

import numpy as np

from .common import BenchError, Sqnr, load_outputs, log, sample_names
from .torch_peers import _import_torch, _median_ms

STATIC_PEER_MODELS = ("resnet18", "mobilenet_v2", "resnet50")
_INPUT, _OUTPUT = "input", "logits"
_ACT_EPS = 1e-20  # far below any scale these models reach; products of two scales stay normal floats


def _load_inputs(root, names):
    return [np.load(os.path.join(root, n, _INPUT + ".npy")) for n in names]


def _qconfig_mapping(torch):
    """The default onednn QConfigMapping with the activation observers' eps floor lowered."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import HistogramObserver
    mapping = get_default_qconfig_mapping("onednn")

    def low_eps(qc):
        act = getattr(qc, "activation", None)
        if getattr(getattr(act, "p", None), "func", None) is HistogramObserver:
            return QConfig(activation=act.with_args(eps=_ACT_EPS), weight=qc.weight)
        return qc
    mapping.set_global(low_eps(mapping.global_qconfig))
    for key, qc in list(mapping.object_type_qconfigs.items()):
        mapping.set_object_type(key, low_eps(qc))
    return mapping


def _modules(name, torch_dir, calib_xs):
    """(FP32 module, static INT8 module calibrated on calib_xs, its float-simulated reference)."""
    torch = _import_torch()
    if "onednn" not in torch.backends.quantized.supported_engines:
        raise BenchError(f"torch {torch.__version__} has no onednn quantized engine "
                         f"(supported: {', '.join(torch.backends.quantized.supported_engines)})")
    from torch.ao.quantization.quantize_fx import convert_fx, convert_to_reference_fx, prepare_fx
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import export_torch_models  # bench/export_torch_models.py: same definitions and weights
    fp32 = export_torch_models.load(name, torch_dir)
    torch.backends.quantized.engine = "onednn"
    example = (torch.zeros(1, 3, 224, 224),)
    try:
        # prepare_fx copies the module (fusing Conv+BN), so fp32 stays as loaded
        prepared = prepare_fx(fp32, _qconfig_mapping(torch), example)
        with torch.no_grad():
            for x in calib_xs:
                prepared(torch.from_numpy(x))
        reference = convert_to_reference_fx(copy.deepcopy(prepared)).eval()
        int8 = convert_fx(prepared).eval()
    except Exception as e:  # FX tracing or conversion of this architecture failed
        raise BenchError(f"torch static quantization of {name} failed: {type(e).__name__}: {e}") from e
    return fp32, int8, reference


def run_static_peer(name, torch_dir, eval_set, ort_fp32_dir, qk_static_dir, threads_list, min_time_s):
    """Returns the static peer row for one model (SQNRs in dB against FP32, latencies in ms)."""
    torch = _import_torch()
    if not eval_set.calib_dir or not os.path.isdir(eval_set.calib_dir):
        raise BenchError(f"static peer {name}: no calibration samples ({eval_set.calib_dir})")
    calib_names = sample_names(eval_set.calib_dir)
    if not calib_names:
        raise BenchError(f"static peer {name}: calibration folder {eval_set.calib_dir} is empty")
    torch.set_num_threads(max(threads_list))
    fp32, int8, reference = _modules(name, torch_dir, _load_inputs(eval_set.calib_dir, calib_names))
    xs = _load_inputs(eval_set.dir, eval_set.names)
    ort_ref = load_outputs(ort_fp32_dir, eval_set.names, _OUTPUT)
    s_fp32_vs_ort, s_int8, s_ref, s_qk = Sqnr(), Sqnr(), Sqnr(), Sqnr()
    agree = 0
    with torch.no_grad():
        for x, ref in zip(xs, ort_ref):
            t = torch.from_numpy(x)
            y = fp32(t).numpy()
            yq = int8(t).numpy()
            s_fp32_vs_ort.add(ref, y)
            s_int8.add(y, yq)
            s_ref.add(y, reference(t).numpy())
            agree += int(np.array_equal(y.argmax(axis=-1), yq.argmax(axis=-1)))
    row = {"model": name, "note": f"FX graph mode PTQ, default onednn qconfig mapping, activation eps {_ACT_EPS:g}",
           "torch": torch.__version__, "engine": torch.backends.quantized.engine,
           "samples": len(xs), "calib_samples": len(calib_names),
           "torch_fp32_vs_ort_fp32_db": s_fp32_vs_ort.db(), "torch_static_vs_fp32_db": s_int8.db(),
           "torch_static_reference_vs_fp32_db": s_ref.db(),
           "torch_static_argmax_agreement": agree / len(xs)}
    if qk_static_dir and os.path.isdir(qk_static_dir):
        for ref, cand in zip(ort_ref, load_outputs(qk_static_dir, eval_set.names, _OUTPUT)):
            s_qk.add(ref, cand)
        row["quantkit_static_vs_fp32_db"] = s_qk.db()
    x0 = torch.from_numpy(xs[0])
    for th in threads_list:
        row[f"torch_fp32_ms_t{th}"] = _median_ms(fp32, x0, th, min_time_s)
        row[f"torch_static_ms_t{th}"] = _median_ms(int8, x0, th, min_time_s)
    log(f"static peer {name}: {row}")
    return row
