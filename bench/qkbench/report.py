"""Writes docs/benchmarks.md from the results of one bench run."""

import math
import statistics
import os

from . import kernel_bench

DATA_NOTES = {
    "ppocr_rec": "rendered text lines (PIL; Droid Sans Fallback for CJK, DejaVu for Latin), characters from "
                 "ppocr_keys_v1.txt, 48x320; CER after CTC greedy decoding",
    "ppocr_det": "480x640 pages with 5-10 rendered lines at known boxes; F1 of boxes at IoU 0.5 (DB map > 0.3, "
                 "components, box score >= 0.6, unclip 1.5)",
    "ppocr_cls": "rendered lines rotated 0 or 180 degrees, 48x192; accuracy",
    "silero_legacy": "espeak-ng speech with pauses + sox pink noise (12 dB SNR), 16 kHz, 512-sample frames, "
                     "state carried; frame accuracy at p > 0.5",
    "silero_v5": "as silero_legacy",
    "fashion_cnn": "Fashion-MNIST test set (dataset-fashion-mnist); top-1",
    "blazeface_front": "opencv-doc photos, square crops, [-1, 1] NHWC; SQNR vs ORT FP32, decisions = anchors "
                       "with score > 0.75",
    "blazeface_back": "as blazeface_front, 256x256",
    "mlsd_large": "opencv-doc photos, 320x320 RGB 0..255 + alpha; SQNR of the centre score map vs ORT FP32, "
                  "decisions = line centres > 0.1",
    "resnet18": "opencv-doc photos, ImageNet normalisation, random weights; SQNR of logits vs ORT FP32",
    "resnet50": "as resnet18",
    "mobilenet_v2": "as resnet18",
    "encoder": "seeded normal embeddings [1, 128, 768], random weights; SQNR vs ORT FP32",
    "lstm": "seeded normal inputs [50, 1, 512], random weights; SQNR of y vs ORT FP32",
}


def _cell(text, limit=160):
    """Table-safe text: one line, no '|', at most `limit` characters."""
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fmt_metric(ev, reference=False):
    if not ev or "error" in ev:
        return "error"
    v = ev["value"]
    if ev["metric"] == "SQNR dB":
        if reference:
            return "(reference)"
        return "inf" if math.isinf(v) else f"{v:.1f} dB"
    return f"{100 * v:.2f}%"


def _fmt_ms(lat, key):
    if not lat or key not in lat:
        return "-"
    r = lat[key]
    if "error" in r:
        return "error"
    return f"{r['median_ms']:.2f}"


def _fmt_db(v):
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.1f}"


def _differ(ev):
    if not ev or "error" in ev or "differ_vs_ort_fp32" not in ev:
        return "-"
    return f"{ev['differ_vs_ort_fp32']} / {ev['decisions']}"


def _main_sqnr(ev):
    """SQNR of the first output listed for the model (its primary output)."""
    if not ev or "error" in ev:
        return None
    if ev.get("metric") == "SQNR dB":  # label-free models: the metric is the primary output's SQNR
        return ev["value"]
    keys = [k for k in ev["extra"] if k.startswith("sqnr_db[")]
    return ev["extra"][keys[0]] if keys else None


def _extra_text(name, ev):
    if not ev or "error" in ev:
        return _cell(ev.get("error", ""), 400) if ev else ""
    x = ev["extra"]
    parts = []
    if "recall" in x:
        parts.append(f"recall {x['recall']:.3f}, precision {x['precision']:.3f} ({x['boxes_found']} boxes found, "
                     f"{x['boxes_true']} true), map IoU vs FP32 {x['map_iou_vs_fp32']:.4f}")
    if "line_accuracy" in x:
        parts.append(f"{x['lines']} lines, exact-line accuracy {100 * x['line_accuracy']:.1f}%")
    if "mean_abs_p_vs_fp32" in x:
        parts.append(f"{x['seconds']:.0f} s ({x['frames']} frames), mean |p - p_fp32| {x['mean_abs_p_vs_fp32']:.2e}")
    if "decision_agreement_vs_fp32" in x:
        parts.append(f"decision agreement vs FP32 {100 * x['decision_agreement_vs_fp32']:.1f}%")
    sq = [f"{k[8:-1]} {_fmt_db(v)} dB" for k, v in x.items() if k.startswith("sqnr_db[")]
    if sq:
        parts.append("SQNR vs ORT FP32: " + ", ".join(sq))
    return "; ".join(parts)


def _fmt_agreement(ag):
    if not ag:
        return "-"
    if "error" in ag:
        return "error"
    worst = min(a["sqnr_db"] for a in ag.values())
    text = f"{_fmt_db(worst)} dB"
    steps = [a["steps"] for a in ag.values() if "steps" in a]
    if steps:
        text += f", {max(steps):.2f} steps"
    return text


def _is_demo_variant(v):
    """Variants that exist to show a non-default setting (int8 / 7-bit weights), not a default file."""
    return v.endswith("-int8") or v.endswith("-reduced")


def _engine_agreement_section(models):
    """quantkit vs ONNX Runtime on the same INT8 files: outputs in steps, quantized activations."""
    rows = []
    for name, r in models.items():
        for v, vr in r.get("variants", {}).items():
            ag, ta = vr.get("agreement"), vr.get("tensor_agreement")
            if v == "fp32" or not ag or "error" in ag:
                continue
            outs = "; ".join(f"{o} {_fmt_db(a['sqnr_db'])} dB, max {a['steps']:.2f} steps ({a['step_kind']}), "
                             f"{100 * a['over_one_step']:.3f}% > 1 step"
                             for o, a in ag.items() if "steps" in a and "step_kind" in a)
            if not ta:
                tens = "-"
            elif "error" in ta:
                tens = "error: " + _cell(ta["error"], 80)
            elif not ta.get("tensors"):
                tens = "none"
            else:
                tens = f"{ta['identical']} / {ta['within_one_step']} / {ta['tensors']}"
                if ta.get("first_over"):
                    tens += f"; first > 1 step: `{ta['first_over']['tensor']}` ({ta['first_over']['max_steps']})"
            rows.append(f"| {name} | {v} | {_cell(outs, 400)} | {_cell(tens, 200)} |")
    if not rows:
        return []
    return ["## quantkit vs ONNX Runtime on the same INT8 file", "",
            "Outputs: SQNR of quantkit's output against ONNX Runtime's, the largest difference in quantization steps "
            "(\"scale\": the output is dequantized int8 and this is its scale; \"range/255\": a float output, "
            "measured in uint8 steps of its range over the evaluation set) and the share of values more than one "
            "step apart. Quantized activations: every QuantizeLinear / DynamicQuantizeLinear output of the file, "
            f"made an output of a copy and run by both engines on the first samples: bit-identical / within one "
            "step / all, and the first one (graph order) more than one step apart. Where the engines differ, it "
            "starts with single-step differences (float ops such as LayerNorm or Softmax rounded differently, "
            "ONNX Runtime's fused QLinearAdd/QLinearMul approximating the QDQ arithmetic) that later layers "
            "amplify. Files with int8 weights (`-int8`) show ONNX Runtime's u8 x s8 saturation on CPUs without "
            "VNNI.", "",
            "| model | variant | outputs | quantized activations: identical / within 1 step / all |",
            "|---|---|---|---|"] + rows + [""]


def _calibration_section(models):
    L = []
    rows = [(n, r["calibration"]) for n, r in models.items() if r.get("calibration")]
    if not rows:
        return L
    L.append("Calibration (`quantkit calibrate` on each model's calibration set, never its evaluation set; "
             "statistics for every range method in one pass):")
    L.append("")
    L.append("| model | items | seconds | peak RSS MiB |")
    L.append("|---|---:|---:|---:|")
    for name, c in rows:
        if "calib_seconds" in c:
            L.append(f"| {name} | {c['calib_items']} files | {c['calib_seconds']:.1f} | {c['calib_peak_rss_mib']:.0f} |")
    L.append("")
    for name, c in rows:
        m = c.get("memory_check")
        if not m:
            continue
        if "error" in m:
            L.append(f"- {name} calibration memory check: error: {_cell(m['error'], 300)}")
            continue
        few, many = [k for k in m if k != "ratio"]
        L.append(f"- {name}, calibration memory with the entropy method: {few} items {m[few]['peak_rss_mib']:.1f} MiB, "
                 f"{many} items {m[many]['peak_rss_mib']:.1f} MiB peak RSS: **{m['ratio']:.2f}x** "
                 f"({m[few]['seconds']:.1f} s and {m[many]['seconds']:.1f} s).")
    L.append("")
    return L


def _peer_table_head(columns, kind, threads):
    """Header and separator of a PyTorch-peer table: the model columns, then per thread count the
    FP32 and INT8 latencies of PyTorch and quantkit."""
    head = "| model | " + " | ".join(columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    for th in threads:
        head += f" PyTorch FP32 {th}T ms | PyTorch {kind} {th}T ms | qk FP32 {th}T ms | qk {kind} {th}T ms |"
        sep += "---:|---:|---:|---:|"
    return [head, sep]


def _static_peers_section(peers, models, threads):
    L = ["## PyTorch peers (static INT8)", ""]
    if not peers:
        return L + ["Not measured in this run.", ""]
    L += _peer_table_head(["calibration items", "PyTorch static vs FP32 (dB)", "PyTorch static simulated in float (dB)",
                           "quantkit static vs FP32 (dB)", "PyTorch arg-max agreement"], "static", threads)
    for name, p in peers.items():
        if "error" in p:
            L.append(f"| {name} | error: {_cell(p['error'])} |" + " |" * (4 + 4 * len(threads)))
            continue
        row = (f"| {name} | {p.get('calib_samples', '-')} | {_fmt_db(p.get('torch_static_vs_fp32_db'))} | "
               f"{_fmt_db(p.get('torch_static_reference_vs_fp32_db'))} | {_fmt_db(p.get('quantkit_static_vs_fp32_db'))} | "
               f"{100 * p.get('torch_static_argmax_agreement', float('nan')):.0f}% |")
        lat_all = models.get(name, {}).get("latency", {})
        for th in threads:
            lat = lat_all.get(str(th), {})
            row += (f" {p.get(f'torch_fp32_ms_t{th}', float('nan')):.2f} | {p.get(f'torch_static_ms_t{th}', float('nan')):.2f} | "
                    f"{_fmt_ms(lat, 'quantkit/fp32')} | {_fmt_ms(lat, 'quantkit/static')} |")
        L.append(row)
    L.append("")
    notes = {p.get("note") for p in peers.values() if "error" not in p and p.get("note")}
    for n in sorted(notes):
        L.append(f"- {n}")
    L.append("- \"simulated in float\" is PyTorch's own quantized model run with float reference kernels "
             "(`convert_to_reference_fx`): its PTQ accuracy without the onednn kernels' 16-bit intermediate sums, "
             "which overflow on CPUs without VNNI. quantkit must beat the higher of the two.")
    L.append("")
    return L


def _ev(models, name, variant, engine="quantkit"):
    return models.get(name, {}).get("variants", {}).get(variant, {}).get("engines", {}).get(engine)


def _targets_section(results, models):
    """The accuracy targets of the dynamic and static issues, checked against this run's numbers."""
    rows = []

    def check(target, ok, shown):
        rows.append((target, "yes" if ok else ("no" if ok is not None else "not measured"), shown))

    def val(name, variant, key=None):
        ev = _ev(models, name, variant)
        if not ev or "error" in ev:
            return None
        return ev["value"] if key is None else ev["extra"].get(key)

    # dynamic
    a, b = val("ppocr_rec", "fp32"), val("ppocr_rec", "dynamic")
    check("dynamic: ppocr_rec CER within 0.3 points of FP32", None if a is None or b is None else b - a <= 0.003,
          "-" if a is None or b is None else f"{100 * a:.2f}% -> {100 * b:.2f}%")
    for m in ("silero_legacy", "silero_v5"):
        a, b, d = val(m, "fp32"), val(m, "dynamic"), val(m, "dynamic", "mean_abs_p_vs_fp32")
        ok = None if None in (a, b, d) else (a - b <= 0.005 and d < 0.02)
        check(f"dynamic: {m} frame accuracy within 0.5 points, mean abs(p - p_fp32) < 0.02", ok,
              "-" if ok is None else f"{100 * a:.2f}% -> {100 * b:.2f}%, {d:.1e}")
    for m, p in results.get("peers", {}).items():
        if "error" in p or p.get("quantkit_dynamic_vs_fp32_db") is None:
            check(f"dynamic: {m} SQNR >= PyTorch quantize_dynamic", None, "-")
            continue
        q, t = p["quantkit_dynamic_vs_fp32_db"], p["torch_dynamic_vs_fp32_db"]
        check(f"dynamic: {m} SQNR >= PyTorch quantize_dynamic", q >= t, f"{q:.1f} dB vs {t:.1f} dB")
    # static
    a = val("fashion_cnn", "fp32")
    variants = [v for v in models.get("fashion_cnn", {}).get("variants", {}) if v.startswith("static")]
    vals = {v: val("fashion_cnn", v) for v in variants}
    ok = None if a is None or not vals or None in vals.values() else all(a - x <= 0.003 for x in vals.values())
    check("static: fashion_cnn top-1 within 0.3 points of FP32, every range method", ok,
          "-" if ok is None else f"FP32 {100 * a:.2f}%; " + ", ".join(f"{v} {100 * x:.2f}%" for v, x in vals.items()))
    ev_f, ev_s = _ev(models, "ppocr_det", "fp32"), _ev(models, "ppocr_det", "static")
    if ev_f and ev_s and "error" not in ev_f and "error" not in ev_s:
        xf, xs = ev_f["extra"], ev_s["extra"]
        ok = xs["recall"] >= xf["recall"] and xs["precision"] >= xf["precision"] and xs["map_iou_vs_fp32"] >= 0.97
        check("static: ppocr_det box recall/precision equal to FP32, map IoU >= 0.97", ok,
              f"recall {xf['recall']:.3f} -> {xs['recall']:.3f}, precision {xf['precision']:.3f} -> "
              f"{xs['precision']:.3f}, IoU {xs['map_iou_vs_fp32']:.3f}")
    else:
        check("static: ppocr_det box recall/precision equal to FP32, map IoU >= 0.97", None, "-")
    a, b = val("ppocr_cls", "fp32"), val("ppocr_cls", "static")
    check("static: ppocr_cls accuracy within 1 point", None if None in (a, b) else a - b <= 0.01,
          "-" if None in (a, b) else f"{100 * a:.2f}% -> {100 * b:.2f}%")
    a, b = val("ppocr_rec", "fp32"), val("ppocr_rec", "static")
    check("static (Conv) + dynamic (MatMul): ppocr_rec CER within 0.5 points", None if None in (a, b) else b - a <= 0.005,
          "-" if None in (a, b) else f"{100 * a:.2f}% -> {100 * b:.2f}%")
    for m in ("blazeface_front", "blazeface_back", "mlsd_large"):
        ev = _ev(models, m, "static")
        if not ev or "error" in ev:
            check(f"static: {m} output SQNR >= 25 dB (every output)", None, "-")
            continue
        sq = {k[8:-1]: v for k, v in ev["extra"].items() if k.startswith("sqnr_db[")}
        check(f"static: {m} output SQNR >= 25 dB (every output)", min(sq.values()) >= 25,
              ", ".join(f"{k} {_fmt_db(v)}" for k, v in sq.items()))
    for m, p in results.get("static_peers", {}).items():
        if "error" in p or p.get("quantkit_static_vs_fp32_db") is None:
            check(f"static: {m} SQNR >= PyTorch static (onednn)", None, "-")
            continue
        q = p["quantkit_static_vs_fp32_db"]
        t = max(p["torch_static_vs_fp32_db"], p.get("torch_static_reference_vs_fp32_db", float("-inf")))
        check(f"static: {m} SQNR >= PyTorch static (onednn; the higher of kernels and float simulation)", q >= t,
              f"{q:.1f} dB vs {t:.1f} dB")
    for name, r in models.items():
        m = r.get("calibration", {}).get("memory_check")
        if m and "error" not in m:
            check(f"static: {name} calibration peak RSS, many items <= 1.2x few", m["ratio"] <= 1.2, f"{m['ratio']:.2f}x")
    worst = []
    for name, r in models.items():
        for v, vr in r.get("variants", {}).items():
            ag = vr.get("agreement")
            if v != "fp32" and not _is_demo_variant(v) and ag and "error" not in ag:
                steps = [a["steps"] for a in ag.values() if "steps" in a]
                if steps:
                    worst.append((max(steps), f"{name} {v}"))
    if worst:
        bad = [w for w in worst if w[0] > 1.0]
        check("INT8 files (default weights): ONNX Runtime's outputs within one quantization step of quantkit's", not bad,
              f"{len(worst) - len(bad)}/{len(worst)} files" + (f"; over: {', '.join(f'{n} ({s:.1f})' for s, n in bad)}" if bad else ""))
    if not rows:
        return []
    L = ["## Accuracy targets (issues 4 and 5), checked on this run", "", "| target | met | numbers |", "|---|---|---|"]
    L += [f"| {_cell(t)} | {ok} | {_cell(shown, 300)} |" for t, ok, shown in rows]
    L.append("")
    return L


def paired_ratio(lat, num_key, den_key):
    """num / den latency: the median over rounds of the ratio of the two round medians (pairs timed
    back to back within a round share the machine's state: this VM's speed swings by up to 1.5x
    for seconds at a time, which pooled medians of separate rounds pick up). Results without
    round data: the ratio of the pooled medians."""
    a, b = (lat or {}).get(num_key, {}), (lat or {}).get(den_key, {})
    if "error" in a or "error" in b:
        return None
    ra, rb = a.get("round_medians_ms") or [], b.get("round_medians_ms") or []
    if ra and len(ra) == len(rb) and all(x > 0 for x in rb):
        return statistics.median(x / y for x, y in zip(ra, rb))
    o, q = a.get("median_ms"), b.get("median_ms")
    return o / q if o and q else None


def _geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def _speed_section(models, threads):
    """Issue 6's ratios: quantkit against ONNX Runtime on the same file (FP32 and every INT8 file),
    and quantkit INT8 against quantkit FP32; > 1 means quantkit (or INT8) is faster."""
    L = ["## Speed: quantkit vs ONNX Runtime on the same file (issue 6)", ""]
    head = "| model | file |"
    sep = "|---|---|"
    for th in threads:
        head += f" ORT {th}T ms | qk {th}T ms | ORT / qk |"
        sep += "---:|---:|---:|"
    L += [head, sep]
    ratios = {}  # (kind, threads) -> [ORT / qk]
    rows_int8_over_fp32 = {}
    for name, r in models.items():
        if "error" in r or not r.get("latency"):
            continue
        for v in ["fp32"] + sorted(k[len("quantkit/"):] for k in r["latency"].get(str(threads[0]), {})
                                   if k.startswith("quantkit/") and k != "quantkit/fp32"):
            row = f"| {name} | {v} |"
            for th in threads:
                lat = r["latency"].get(str(th), {})
                ratio = paired_ratio(lat, f"ort/{v}", f"quantkit/{v}")
                if ratio:
                    ratios.setdefault(("fp32" if v == "fp32" else "int8", th), []).append((ratio, name, v))
                row += f" {_fmt_ms(lat, f'ort/{v}')} | {_fmt_ms(lat, f'quantkit/{v}')} | " + \
                       (f"{ratio:.2f}x |" if ratio else "- |")
                over_fp32 = paired_ratio(lat, "quantkit/fp32", f"quantkit/{v}") if v != "fp32" else None
                if over_fp32:
                    rows_int8_over_fp32[(name, v, th)] = over_fp32
            L.append(row)
    L.append("")
    L.append("\"ORT / qk\" is ONNX Runtime's latency over quantkit's on the same file and input: above 1.00x "
             "quantkit is faster. Both engines run interleaved in the same bench run (see the latency line at the "
             "top), the two back to back in each round; the ratio is the median over the rounds of the ratio of "
             "their medians in that round (the ms columns: medians of all runs). onnxruntime-node adds a few microseconds per call, which matters only for the Silero frames "
             "(about 0.2 ms).")
    L.append("")
    L.append("| target (issue 6) | threads | met | numbers |")
    L.append("|---|---:|---|---|")
    for th in threads:
        rs = ratios.get(("int8", th), [])
        if rs:
            slower = [f"{n} {v} {x:.2f}x" for x, n, v in sorted(rs) if x < 1.0]
            L.append(f"| quantkit INT8 no slower than ORT INT8 on the same file, every file | {th} | "
                     f"{'yes' if not slower else 'no'} | {len(rs) - len(slower)}/{len(rs)} files; slower: "
                     f"{_cell(', '.join(slower) or 'none', 400)} |")
            g = _geomean([x for x, _, _ in rs])
            L.append(f"| geometric mean INT8 speed-up over ORT >= 1.3x | {th} | {'yes' if g >= 1.3 else 'no'} | {g:.2f}x |")
        rs = ratios.get(("fp32", th), [])
        if rs:
            g = _geomean([x for x, _, _ in rs])
            slower = [f"{n} {x:.2f}x" for x, n, _ in sorted(rs) if x < 1.0]
            L.append(f"| quantkit FP32 no slower than ORT FP32 (geometric mean >= 1.0x) | {th} | "
                     f"{'yes' if g >= 1.0 else 'no'} | geomean {g:.2f}x; slower: {_cell(', '.join(slower) or 'none', 300)} |")
    for m in ("resnet50", "encoder"):
        v = "static" if (m, "static", 1) in rows_int8_over_fp32 else "dynamic"
        x = rows_int8_over_fp32.get((m, v, 1))
        L.append(f"| quantkit INT8 over quantkit FP32 >= 3x: {m} ({v}) | 1 | "
                 f"{'-' if x is None else ('yes' if x >= 3 else 'no')} | {'-' if x is None else f'{x:.2f}x'} |")
    L.append("")
    return L


def write(path, results):
    meta = results["meta"]
    models = results["models"]
    threads = meta["threads"]
    L = []
    L.append("# Benchmarks")
    L.append("")
    L.append("Produced by `bench/run` (do not edit by hand): quantkit's own runtime and ONNX Runtime "
             "(onnxruntime-node) on the same inputs, task metrics from generated data with ground truth, "
             "and FP32 latency. Models, data and the method are described in "
             "[the bench's README](../bench/README.md).")
    L.append("")
    L.append(f"- command: `{meta['command']}`")
    L.append(f"- date: {meta['date']}; machine: {meta['cpu']} ({', '.join(meta.get('isa', [])) or 'no AVX2'}), "
             f"{meta['cores']} cores, {meta['memory_gb']:.0f} GiB; {meta['os']}")
    L.append(f"- quantkit {meta['quantkit_version']} (git {meta['git']}), onnxruntime-node {meta['ort_version']}, "
             f"PyTorch {meta.get('torch_version', '-')}")
    L.append(f"- latency: median of all timed runs of {meta['rounds']} interleaved rounds per engine, every other round in reverse order "
             f"(each round one process: session, {meta['warmup_ms']} ms warm-up, >= {meta['min_time_ms']} ms of runs); "
             f"ratios paired per round (the median over rounds of the ratio of the two round medians, bench/README.md); "
             f"`quantkit bench` and `node tools/ort_run.js --repeat`; {'quick mode (small data sets)' if meta['quick'] else 'full data sets'}")
    if meta.get("note"):
        L.append(f"- note: {meta['note']}")
    L.append("")
    L.append("## FP32: task metric and latency, ONNX Runtime vs quantkit")
    L.append("")
    head = "| model | evaluation set | metric | ORT FP32 | quantkit FP32 | decisions differing | SQNR qk vs ORT (dB) |"
    sep = "|---|---:|---|---:|---:|---:|---:|"
    for th in threads:
        head += f" ORT {th}T ms | qk {th}T ms |"
        sep += "---:|---:|"
    L += [head, sep]
    for name, r in models.items():
        if "error" in r:
            L.append(f"| {name} | - | error: {_cell(r['error'])} |" + " |" * (4 + 2 * len(threads)))
            continue
        fp = r["variants"].get("fp32", {}).get("engines", {})
        ort, qk = fp.get("ort"), fp.get("quantkit")
        metric = (ort or qk or {}).get("metric", "-")
        row = (f"| {name} | {r['eval_size']} | {metric} | {_fmt_metric(ort, reference=True)} | {_fmt_metric(qk)} | {_differ(qk)} | "
               f"{_fmt_db(_main_sqnr(qk))} |")
        for th in threads:
            lat = r["latency"].get(str(th))
            row += f" {_fmt_ms(lat, 'ort/fp32')} | {_fmt_ms(lat, 'quantkit/fp32')} |"
        L.append(row)
    L.append("")
    L.append("\"decisions differing\" counts the units (decoded lines, frames, images, pages' box sets, ...) on "
             "which quantkit's FP32 result differs from ONNX Runtime's; the SQNR column is quantkit's primary "
             "output against ONNX Runtime's over the whole evaluation set. Timed input per model:")
    L.append("")
    for name, r in models.items():
        if "error" not in r:
            L.append(f"- {name}: {r['timing_note']}")
    L.append("")

    int8_names = sorted({v for r in models.values() if "variants" in r for v in r["variants"] if v != "fp32"})
    L.append("## INT8 variants (`quantkit quantize`)")
    L.append("")
    if not int8_names:
        L.append("Not measured in this run: " + meta.get("int8_note", "`quantkit quantize` is not available."))
    else:
        head = ("| model | variant | metric | quantkit | ORT on the same model | decisions differing vs FP32 | "
                "SQNR vs ORT FP32 (dB) | qk vs ORT, same file | size |")
        sep = "|---|---|---|---:|---:|---:|---:|---:|---:|"
        for th in threads:
            head += f" qk {th}T ms | vs qk FP32 |"
            sep += "---:|---:|"
        L += [head, sep]
        for name, r in models.items():
            for v in int8_names:
                vr = r.get("variants", {}).get(v)
                if vr is None:
                    continue
                if "error" in vr:
                    L.append(f"| {name} | {v} | not made: {_cell(vr['error'])} |" + " |" * (6 + 2 * len(threads)))
                    continue
                qk, ort = vr["engines"].get("quantkit"), vr["engines"].get("ort")
                fp_bytes = r["variants"]["fp32"].get("bytes", 0)
                size = f"{vr['bytes'] / max(1, fp_bytes):.2f}x" if fp_bytes else "-"
                row = (f"| {name} | {v} | {(qk or ort or {}).get('metric', '-')} | {_fmt_metric(qk)} | "
                       f"{_fmt_metric(ort) if ort and 'error' not in ort else 'error'} | {_differ(qk)} | "
                       f"{_fmt_db(_main_sqnr(qk))} | {_fmt_agreement(vr.get('agreement'))} | {size} |")
                for th in threads:
                    lat = r["latency"].get(str(th), {})
                    x = paired_ratio(lat, "quantkit/fp32", f"quantkit/{v}")
                    speed = f"{x:.2f}x" if x else "-"
                    row += f" {_fmt_ms(lat, f'quantkit/{v}')} | {speed} |"
                L.append(row)
        L.append("")
        if not any("vnni" in f for f in meta.get("isa", [])):
            L.append("\"ORT on the same model\" runs quantkit's INT8 file in ONNX Runtime. This CPU has no VNNI: "
                     "there ONNX Runtime's u8 x s8 kernels add pairs of products in saturating 16-bit (vpmaddubsw), "
                     "so files with int8 weights (the `-int8` variants) lose accuracy in ONNX Runtime only; "
                     "quantkit's default uint8-symmetric weights (the same arithmetic) run in its exact u8 x u8 "
                     "kernels (see bench/README.md).")
            L.append("")
        L.append("\"qk vs ORT, same file\": quantkit's and ONNX Runtime's outputs of the same INT8 file, the lowest "
                 "SQNR over the model's outputs and the largest difference in quantization steps (see the engine "
                 "agreement section below).")
        L.append("")
        L += _engine_agreement_section(models)
        L += _calibration_section(models)
        errors = [(name, v, e, r["variants"][v]["engines"][e]["error"]) for name, r in models.items()
                  for v in int8_names if v in r.get("variants", {}) for e in r["variants"][v].get("engines", {})
                  if "error" in r["variants"][v]["engines"][e]]
        if errors:
            L.append("Errors:")
            L.append("")
            for name, v, e, msg in errors:
                L.append(f"- {name} {v} on {e}: {_cell(msg, 400)}")
            L.append("")

    peers = results.get("peers", {})
    L.append("## PyTorch peers (dynamic INT8)")
    L.append("")
    if not peers:
        L.append("Not measured in this run.")
    else:
        L += _peer_table_head(["PyTorch FP32 vs ORT FP32 (dB)", "PyTorch dynamic vs FP32 (dB)",
                               "quantkit dynamic vs FP32 (dB)"], "dynamic", threads)
        for name, p in peers.items():
            if "error" in p:
                L.append(f"| {name} | error: {_cell(p['error'])} |" + " |" * (2 + 4 * len(threads)))
                continue
            row = (f"| {name} | {_fmt_db(p['torch_fp32_vs_ort_fp32_db'])} | {_fmt_db(p['torch_dynamic_vs_fp32_db'])} | "
                   f"{_fmt_db(p.get('quantkit_dynamic_vs_fp32_db'))} |")
            lat_all = models.get(name, {}).get("latency", {})
            for th in threads:
                lat = lat_all.get(str(th), {})
                row += (f" {p[f'torch_fp32_ms_t{th}']:.2f} | {p[f'torch_dynamic_ms_t{th}']:.2f} | "
                        f"{_fmt_ms(lat, 'quantkit/fp32')} | {_fmt_ms(lat, 'quantkit/dynamic')} |")
            L.append(row)
        L.append("")
        for name, p in peers.items():
            if "error" not in p:
                L.append(f"- {name}: PyTorch {p['torch']}, quantized engine {p['engine']}, {p['note']}; "
                         f"{p['samples']} evaluation samples.")
        L.append("")

    L += _static_peers_section(results.get("static_peers", {}), models, threads)
    L += _targets_section(results, models)
    L += _speed_section(models, threads)
    kern = results.get("kernels")
    if kern:
        if "error" in kern:
            L += ["## Kernels: GEMM throughput against the measured peak (one thread)", "",
                  f"Not measured: {_cell(kern['error'], 400)}", ""]
        else:
            L += kernel_bench.kernel_report(kern)
            L.append("")
    L.append("## Details")
    L.append("")
    for name, r in models.items():
        if "error" in r:
            continue
        L.append(f"- **{name}** ({r['title']}; {DATA_NOTES.get(name, '')})")
        for v, vr in r["variants"].items():
            for e, ev in vr.get("engines", {}).items():
                t = _extra_text(name, ev)
                if t:
                    L.append(f"  - {v} on {e}: {t}")
    L.append("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(L))
    os.replace(tmp, path)
