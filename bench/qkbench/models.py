"""The bench's models: where each file comes from, its evaluation and calibration data, how its
outputs are scored, and which input is timed.

A model's `evaluate(run_dir, ref_dir)` reads the outputs one engine wrote for the evaluation set
(run_dir/<sample>/<output>.npy) and returns
  {"metric": name, "value": number, "higher_is_better": bool, "extra": {...},
   "decisions": [...]}   # per line / frame / image: what two engines must agree on
ref_dir holds ONNX Runtime's FP32 outputs for label-free comparisons (SQNR, map IoU, |p - p_fp32|).
"""

import os

import numpy as np

from . import data, metrics
from .common import CACHE, MODELS_DIR, REPO, BenchError, Sqnr, load_outputs, sample_names

TORCH_DIR = os.path.join(CACHE, "models", "torch")


class EvalSet:
    """A sample directory plus what the engines need besides it, and the ground truth."""

    def __init__(self, root, fixed=None, carries=None, calib_root=None):
        self.root = root
        self.dir = data.samples_dir(root)
        self.truth = data.truth_of(root)
        self.fixed = fixed or {}      # {input: .npy path} for every sample (first value if carried)
        self.carries = carries or {}  # {output: input}
        self.calib_dir = data.samples_dir(calib_root) if calib_root else None
        self.names = sample_names(self.dir)


def _save_fixed(name, arrays):
    """Writes constant inputs (Silero's sr and zero state) once; returns {input: path}."""
    d = os.path.join(CACHE, "data", "fixed", name)
    os.makedirs(d, exist_ok=True)
    out = {}
    for k, v in arrays.items():
        p = os.path.join(d, k + ".npy")
        np.save(p, v)
        out[k] = p
    return out


def _sqnr_extra(run_dir, ref_dir, names, outputs):
    """SQNR (dB) of each output against ONNX Runtime's FP32 outputs, pooled over the samples."""
    extra = {}
    for out in outputs:
        s = Sqnr()
        for r, c in zip(load_outputs(ref_dir, names, out), load_outputs(run_dir, names, out)):
            s.add(r, c)
        extra[f"sqnr_db[{out}]"] = s.db()
    return extra


class ModelSpec:
    kind = "npm"  # npm | torch | asset
    outputs = []  # graph outputs to compare against FP32 (SQNR)
    inputs = []   # graph inputs fed from the sample folders
    quantize_args = []
    unit = "samples"  # what one evaluation unit is (lines, frames, images, ...)
    static = False             # has a static INT8 variant (calibrated on the calibration set)
    static_method = None       # range method of the "static" variant (None: quantkit's default, minmax)
    static_methods = []        # further range methods, each its own variant "static-<method>"; "int8": int8 weights
    static_args = []           # extra `quantize --mode static` flags of this model's recipe (every static variant)
    dynamic_int8 = False       # also a "dynamic-int8" variant (int8 instead of uint8-symmetric weights)
    dynamic_conv = False       # also a "dynamic-conv" variant: Conv dynamically quantized too (ConvInteger)
    static_then_dynamic = False  # static for the convolutional part, then dynamic for MatMul/Gemm
    calib_args = []            # extra `quantkit calibrate` arguments
    calib_memory_check = None  # (few, many): calibration peak RSS with few vs many items (entropy)

    def __init__(self, name, title, path):
        self.name, self.title, self.path = name, title, path

    def available(self):
        return os.path.isfile(self.path)

    def eval_set(self, quick):
        raise NotImplementedError

    def evaluate(self, es, run_dir, ref_dir):
        raise NotImplementedError

    def timing_inputs(self, es):
        """{input: .npy} for `quantkit bench` / `ort_run.js --repeat`: the first evaluation sample."""
        feeds = data.first_sample_inputs(es.dir, self.inputs)
        feeds.update(es.fixed)
        return feeds

    def timing_note(self, es):
        return ""


# ------------------------------------------------------------------------------------ PaddleOCR

class PaddleRec(ModelSpec):
    unit = "lines"
    static = True
    static_then_dynamic = True  # the attention blocks' MatMuls are best quantized per input
    # Percentile ranges for the convolutions: on the 512 lines CER 5.74% (percentile) against 6.34%
    # (minmax, quantkit's default), 6.53% (mse); FP32 5.62%. The "static-minmax" variant keeps
    # showing the default.
    static_method = "percentile"
    static_methods = ["minmax"]
    dynamic_int8 = True
    inputs = ["x"]
    outputs = ["softmax_11.tmp_0"]

    def eval_set(self, quick):
        n = 64 if quick else 512
        return EvalSet(data.make_ocr_rec(n, 16, seed=1001), calib_root=data.make_ocr_rec(64, 16, seed=2001))

    def evaluate(self, es, run_dir, ref_dir):
        keys = data.load_keys()
        texts = []
        for probs in load_outputs(run_dir, es.names, self.outputs[0]):
            texts += metrics.ctc_greedy_decode(probs, keys)
        truth = es.truth["texts"]
        # As PaddleOCR's RecMetric (ignore_space): spaces do not count (the model often adds them
        # at the ends of Latin lines; the ground truth has none).
        plain = [t.replace(" ", "") for t in texts]
        exact = sum(t == g for t, g in zip(plain, truth)) / len(truth)
        extra = {"line_accuracy": exact, "lines": len(truth)}
        extra.update(_sqnr_extra(run_dir, ref_dir, es.names, self.outputs))
        return {"metric": "CER", "value": metrics.cer(plain, truth), "higher_is_better": False,
                "decisions": texts, "decision_unit": "decoded lines", "extra": extra}

    def timing_note(self, es):
        return f"batch of {es.truth['batch']} lines, 48x320"


class PaddleDet(ModelSpec):
    unit = "pages"
    static = True
    # Percentile ranges: the DB head's min-max ranges are stretched by rare outliers (map IoU 0.956
    # with minmax, 0.974 with percentile; the "static-minmax" variant keeps showing the default).
    static_method = "percentile"
    static_methods = ["minmax"]
    inputs = ["x"]
    outputs = ["sigmoid_0.tmp_0"]

    def eval_set(self, quick):
        return EvalSet(data.make_ocr_det(3 if quick else 12, seed=1002), calib_root=data.make_ocr_det(4, seed=2002))

    def evaluate(self, es, run_dir, ref_dir):
        matched = n_pred = n_true = 0
        decisions, ious = [], []
        refs = load_outputs(ref_dir, es.names, self.outputs[0])
        for prob, ref, truth in zip(load_outputs(run_dir, es.names, self.outputs[0]), refs, es.truth["boxes"]):
            boxes = metrics.db_boxes(prob[0, 0])
            matched += metrics.match_boxes(boxes, truth)
            n_pred += len(boxes)
            n_true += len(truth)
            ious.append(metrics.mask_iou(prob[0, 0] > 0.3, ref[0, 0] > 0.3))
            decisions.append(tuple(tuple(round(v) for v in b) for b in sorted(boxes)))
        recall, precision = matched / max(1, n_true), matched / max(1, n_pred)
        extra = {"recall": recall, "precision": precision, "map_iou_vs_fp32": float(np.mean(ious)),
                 "boxes_true": n_true, "boxes_found": n_pred, "pages": len(es.names)}
        extra.update(_sqnr_extra(run_dir, ref_dir, es.names, self.outputs))
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        return {"metric": "box F1", "value": f1, "higher_is_better": True, "decisions": decisions,
                "decision_unit": "pages' box sets", "extra": extra}

    def timing_note(self, es):
        return "one 480x640 page"


class PaddleCls(ModelSpec):
    unit = "crops"
    static = True
    static_methods = ["int8"]
    inputs = ["x"]
    outputs = ["softmax_0.tmp_0"]

    def eval_set(self, quick):
        n = 64 if quick else 256
        return EvalSet(data.make_ocr_cls(n, 16, seed=1003), calib_root=data.make_ocr_cls(64, 16, seed=2003))

    def evaluate(self, es, run_dir, ref_dir):
        pred = metrics.top1(load_outputs(run_dir, es.names, self.outputs[0]))
        extra = {"crops": len(pred)}
        extra.update(_sqnr_extra(run_dir, ref_dir, es.names, self.outputs))
        return {"metric": "0/180 accuracy", "value": metrics.accuracy(pred, es.truth["labels"]),
                "higher_is_better": True, "decisions": [int(p) for p in pred], "decision_unit": "crops",
                "extra": extra}

    def timing_note(self, es):
        return f"batch of {es.truth['batch']} crops, 48x192"

# ----------------------------------------------------------------------------------------- VAD


class Silero(ModelSpec):
    unit = "frames"
    inputs = ["input"]
    outputs = ["output"]

    def __init__(self, name, title, path, legacy):
        super().__init__(name, title, path)
        self.legacy = legacy

    def state_inputs(self):
        """(fixed inputs, carries): sr = 16000 and a zero state for the first frame; the state
        outputs of frame i are the state inputs of frame i+1."""
        sr = np.array(16000, np.int64)
        if self.legacy:
            fixed = _save_fixed("silero_legacy", {"sr": sr, "h": np.zeros((2, 1, 64), np.float32),
                                                  "c": np.zeros((2, 1, 64), np.float32)})
            return fixed, {"hn": "h", "cn": "c"}
        fixed = _save_fixed("silero_v5", {"sr": sr, "state": np.zeros((2, 1, 128), np.float32)})
        return fixed, {"stateN": "state"}

    def eval_set(self, quick):
        fixed, carries = self.state_inputs()
        return EvalSet(data.make_vad(15 if quick else 60, seed=1004), fixed=fixed, carries=carries,
                       calib_root=data.make_vad(20, seed=2004))

    def evaluate(self, es, run_dir, ref_dir):
        p = np.array([float(np.asarray(o).reshape(-1)[0]) for o in load_outputs(run_dir, es.names, "output")])
        p_ref = np.array([float(np.asarray(o).reshape(-1)[0]) for o in load_outputs(ref_dir, es.names, "output")])
        labels = np.array(es.truth["labels"])
        decisions = (p > 0.5).astype(int)
        extra = {"frames": len(p), "seconds": len(p) * es.truth["frame"] / es.truth["sr"],
                 "mean_abs_p_vs_fp32": float(np.mean(np.abs(p - p_ref)))}
        extra.update(_sqnr_extra(run_dir, ref_dir, es.names, self.outputs))
        return {"metric": "frame accuracy", "value": metrics.accuracy(decisions, labels), "higher_is_better": True,
                "decisions": decisions.tolist(), "decision_unit": "frames", "extra": extra}

    def timing_note(self, es):
        return "one 32 ms frame"

# ------------------------------------------------------------------------------- Fashion-MNIST


class Fashion(ModelSpec):
    kind = "asset"
    unit = "images"
    static = True
    static_methods = ["moving-average", "percentile", "entropy", "mse", "int8"]
    dynamic_conv = True
    calib_memory_check = (10, 1000)
    inputs = ["image"]
    outputs = ["logits"]

    def eval_set(self, quick):
        return EvalSet(data.make_fashion("test", 2000 if quick else 10000, 500),
                       calib_root=data.make_fashion("train", 1000, 500))

    def evaluate(self, es, run_dir, ref_dir):
        pred = metrics.top1(load_outputs(run_dir, es.names, "logits"))
        extra = {"images": len(pred)}
        extra.update(_sqnr_extra(run_dir, ref_dir, es.names, self.outputs))
        return {"metric": "top-1", "value": metrics.accuracy(pred, es.truth["labels"]), "higher_is_better": True,
                "decisions": [int(v) for v in pred], "decision_unit": "images", "extra": extra}

    def timing_note(self, es):
        return f"batch of {es.truth['batch']}"

# ------------------------------------------------------------------------ label-free (vs FP32)


class LabelFree(ModelSpec):
    """Models without labels here (random-weight torch models, BlazeFace, M-LSD): the metric is the
    SQNR of the primary output against ONNX Runtime's FP32 output; decisions are model-specific."""

    def __init__(self, name, title, path, inputs, outputs, make_set, decide, decision_unit, note, kind="npm",
                 unit="images", static=True):
        super().__init__(name, title, path)
        self.inputs, self.outputs, self.kind, self.unit, self.static = inputs, outputs, kind, unit, static
        self._make_set, self._decide, self.decision_unit, self._note = make_set, decide, decision_unit, note

    def eval_set(self, quick):
        root, calib = self._make_set(quick)
        return EvalSet(root, calib_root=calib)

    def evaluate(self, es, run_dir, ref_dir):
        extra = _sqnr_extra(run_dir, ref_dir, es.names, self.outputs)
        extra["samples"] = len(es.names)
        decisions = []  # regression outputs (encoder, LSTM): SQNR only
        if self._decide:
            decisions = self._decide(run_dir, es.names)
            ref_decisions = self._decide(ref_dir, es.names)
            extra["decision_agreement_vs_fp32"] = float(np.mean([a == b for a, b in zip(decisions, ref_decisions)]))
        return {"metric": "SQNR dB", "value": extra[f"sqnr_db[{self.outputs[0]}]"], "higher_is_better": True,
                "decisions": decisions, "decision_unit": self.decision_unit, "extra": extra}

    def timing_note(self, es):
        return self._note


def _argmax_decisions(output):
    def decide(run_dir, names):
        return [int(np.asarray(o).reshape(-1).argmax()) for o in load_outputs(run_dir, names, output)]
    return decide


def _blazeface_decisions(run_dir, names):
    """Anchors whose face score passes MediaPipe's 0.75 (sigmoid(logit) > 0.75, i.e. logit > ln 3),
    per image."""
    out = []
    for a, b in zip(load_outputs(run_dir, names, "Identity:0"), load_outputs(run_dir, names, "Identity_1:0")):
        logits = np.concatenate([np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)])
        out.append(tuple(np.flatnonzero(logits > np.log(3.0)).tolist()))
    return out


def _mlsd_decisions(run_dir, names):
    """Line centres M-LSD keeps (its in-graph peak map 'scores' above 0.1), per image."""
    return [tuple(np.flatnonzero(np.asarray(s).reshape(-1) > 0.1).tolist()) for s in load_outputs(run_dir, names, "scores")]


def all_models():
    m = MODELS_DIR
    t = TORCH_DIR
    photos = data.make_photos
    specs = [
        PaddleRec("ppocr_rec", "PaddleOCR v4 rec", os.path.join(m, "ch_PP-OCRv4_rec_infer.onnx")),
        PaddleDet("ppocr_det", "PaddleOCR v4 det", os.path.join(m, "ch_PP-OCRv4_det_infer.onnx")),
        PaddleCls("ppocr_cls", "PaddleOCR cls", os.path.join(m, "ch_ppocr_mobile_v2.0_cls_infer.onnx")),
        Silero("silero_legacy", "Silero VAD legacy", os.path.join(m, "silero_vad_legacy.onnx"), legacy=True),
        Silero("silero_v5", "Silero VAD v5", os.path.join(m, "silero_vad_v5.onnx"), legacy=False),
        Fashion("fashion_cnn", "Fashion-MNIST CNN", os.path.join(REPO, "assets", "fashion_mnist_cnn.onnx")),
        LabelFree("blazeface_front", "BlazeFace front 128", os.path.join(m, "face_detection_front_128x128_barracuda.onnx"),
                  ["input:0"], ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"],
                  lambda q: (photos("blazeface", 128, "eval", 1 if q else 2, 1005, "input:0"),
                             photos("blazeface", 128, "calib", 1, 2005, "input:0")),
                  _blazeface_decisions, "images' face anchors > 0.75", "1x128x128x3"),
        LabelFree("blazeface_back", "BlazeFace back 256", os.path.join(m, "face_detection_back_256x256_barracuda.onnx"),
                  ["input:0"], ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0"],
                  lambda q: (photos("blazeface", 256, "eval", 1 if q else 2, 1006, "input:0"),
                             photos("blazeface", 256, "calib", 1, 2006, "input:0")),
                  _blazeface_decisions, "images' face anchors > 0.75", "1x256x256x3"),
        LabelFree("mlsd_large", "M-LSD large 320", os.path.join(m, "mlsd_320x320_large.onnx"),
                  ["input_image_with_alpha:0"], ["scores", "offsets"],
                  lambda q: (photos("mlsd", 320, "eval", 1 if q else 2, 1007, "input_image_with_alpha:0"),
                             photos("mlsd", 320, "calib", 1, 2007, "input_image_with_alpha:0")),
                  _mlsd_decisions, "images' line centres", "1x320x320x4"),
    ]
    # BlazeFace's depthwise outputs have channels up to 178x apart: cross-layer equalization
    # (opt-in) lifts its regressor outputs by 7-8 dB (docs/quantization-rules.md).
    for spec in specs:
        if spec.name.startswith("blazeface"):
            spec.static_args = ["--equalize"]
    for name, title in [("resnet18", "ResNet-18"), ("resnet50", "ResNet-50"), ("mobilenet_v2", "MobileNetV2")]:
        specs.append(LabelFree(
            name, title + " (random weights)", os.path.join(t, name + ".onnx"), ["input"], ["logits"],
            lambda q: (photos("imagenet", 224, "eval", 1, 1008, "input"),
                       photos("imagenet", 224, "calib", 1, 2008, "input")),
            _argmax_decisions("logits"), "images' arg-max class", "1x3x224x224", kind="torch"))
        if name != "resnet50":
            specs[-1].static_methods = ["int8"]
        specs[-1].dynamic_conv = True
    specs.append(LabelFree(
        "encoder", "Transformer encoder (BERT-base size)", os.path.join(t, "encoder.onnx"), ["x"], ["y"],
        lambda q: (data.make_tensor("encoder", [1, 128, 768], 2 if q else 4, 1009, "x"),
                   data.make_tensor("encoder_calib", [1, 128, 768], 4, 2009, "x")),
        None, "", "1x128x768, 12 layers", kind="torch", unit="inputs", static=False))
    specs[-1].dynamic_int8 = True
    specs.append(LabelFree(
        "lstm", "LSTM 512 (seq 50)", os.path.join(t, "lstm.onnx"), ["x"], ["y", "h", "c"],
        lambda q: (data.make_tensor("lstm", [50, 1, 512], 2 if q else 8, 1010, "x"),
                   data.make_tensor("lstm_calib", [50, 1, 512], 8, 2010, "x")),
        None, "", "50x1x512", kind="torch", unit="sequences", static=False))
    return specs


def select(names):
    specs = all_models()
    if not names:
        return specs
    by_name = {s.name: s for s in specs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BenchError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(by_name)})")
    return [by_name[n] for n in names]
