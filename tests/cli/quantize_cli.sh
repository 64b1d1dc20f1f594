#!/usr/bin/env bash
# `quantkit quantize`: success on the bundled Fashion-MNIST CNN (its Gemm layers), settings in the
# output's metadata, --config with flags overriding it, --check; and every bad input exits 2 with
# one line on stderr and leaves no output file. Usage: quantize_cli.sh path/to/quantkit
set -u
QK=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CNN=$ROOT/assets/fashion_mnist_cnn.onnx
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# expect_error NAME SUBSTRING OUTPUT -- COMMAND...
expect_error() {
  local name=$1 want=$2 out=$3
  shift 4
  "$@" >"$T/stdout" 2>"$T/stderr"
  local rc=$? lines
  lines=$(wc -l <"$T/stderr")
  if [[ $rc -ne 2 || $lines -ne 1 ]] || ! grep -q -- "$want" "$T/stderr"; then
    bad "$name: exit $rc, $lines stderr lines: $(head -c 300 "$T/stderr")"
  elif [[ -e $out ]]; then
    bad "$name: output file $out left behind"
  else
    ok
  fi
}

# 1. Success: default settings quantize the two Gemm layers.
if "$QK" quantize "$CNN" -o "$T/q.onnx" >"$T/summary" 2>"$T/err"; then
  if grep -q "Gemm         2" "$T/summary" && grep -q "not selected (not in --op-types): 3 Conv" "$T/summary" &&
    grep -q "^size: " "$T/summary"; then ok; else bad "summary: $(cat "$T/summary")"; fi
else
  bad "quantize CNN: $(cat "$T/err")"
fi
[[ -f $T/q.onnx ]] && ok || bad "no output written"
SHA=$(sha256sum "$CNN" | cut -d' ' -f1)
$PY - "$T/q.onnx" "$SHA" <<'PYEOF' && ok || bad "metadata/structure of q.onnx"
import json, sys, onnx
m = onnx.load(sys.argv[1])
meta = {p.key: p.value for p in m.metadata_props}
s = json.loads(meta["quantkit.quantization"])
assert s["mode"] == "dynamic" and s["format"] == "integer-ops" and s["weight_type"] == "uint8-symmetric", s
assert s["op_types"] == ["MatMul", "Gemm", "LSTM", "GRU"] and s["per_channel"] is True, s
assert meta["quantkit.source_sha256"] == sys.argv[2], meta
assert meta["quantkit.version"], meta
ops = [n.op_type for n in m.graph.node]
assert ops.count("MatMulInteger") == 2 and "Gemm" not in ops and ops.count("Conv") == 3, ops
onnx.checker.check_model(m, full_check=True)
PYEOF

# 2. Samples for --check and the runs below: 4 test-like images.
$PY -c "
import numpy as np, os
rng = np.random.default_rng(0)
os.makedirs('$T/samples', exist_ok=True)
for i in range(4): np.save('$T/samples/s%d.npy' % i, rng.random((1, 1, 28, 28), dtype=np.float32))
"
if "$QK" quantize "$CNN" -o "$T/q2.onnx" --per-tensor --check "$T/samples" >"$T/summary2" 2>"$T/err"; then
  grep -q "check against the FP32 model" "$T/summary2" && grep -q "logits" "$T/summary2" && ok || bad "check output: $(cat "$T/summary2")"
else
  bad "quantize --check: $(cat "$T/err")"
fi

# 3. Config file, a flag overriding it; the metadata records the settings actually used.
printf '{"format": "qdq-weights", "per_channel": false, "op_types": ["Gemm", "Conv"]}' >"$T/cfg.json"
if "$QK" quantize "$CNN" -o "$T/q3.onnx" --config "$T/cfg.json" --per-channel >/dev/null 2>"$T/err"; then
  $PY - "$T/q3.onnx" <<'PYEOF' && ok || bad "config/override metadata"
import json, sys, onnx
m = onnx.load(sys.argv[1])
s = json.loads({p.key: p.value for p in m.metadata_props}["quantkit.quantization"])
assert s["format"] == "qdq-weights" and s["per_channel"] is True and s["op_types"] == ["Gemm", "Conv"], s
ops = [n.op_type for n in m.graph.node]
assert ops.count("DequantizeLinear") == 5 and ops.count("Conv") == 3 and ops.count("Gemm") == 2, ops
PYEOF
else
  bad "quantize --config: $(cat "$T/err")"
fi

# 4. The quantized model runs in quantkit and in ONNX Runtime (when Node and onnxruntime-node exist).
if "$QK" run "$T/q.onnx" --input image="$T/samples/s0.npy" --output-dir "$T/run_qk" >/dev/null 2>"$T/err"; then ok; else bad "run q.onnx: $(cat "$T/err")"; fi
if command -v node >/dev/null && [[ -d $ROOT/node_modules/onnxruntime-node ]]; then
  if node "$ROOT/tools/ort_run.js" "$T/q.onnx" --input image="$T/samples/s0.npy" --output-dir "$T/run_ort" >/dev/null 2>"$T/err"; then
    $PY -c "
import numpy as np
a = np.load('$T/run_qk/logits.npy'); b = np.load('$T/run_ort/logits.npy')
assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(a).max()), (a, b)
" && ok || bad "quantkit and ONNX Runtime disagree on q.onnx"
  else
    bad "ONNX Runtime cannot run q.onnx: $(tail -2 "$T/err")"
  fi
fi

# 5. Accuracy budget on 2000 Fashion-MNIST test images (Debian's dataset package): the quantized
#    model (Gemm and Conv quantized) stays within 0.5 points of the FP32 top-1 and agrees with it on
#    at least 99% of the images.
if [[ -d /usr/share/datasets/fashion-mnist ]]; then
  $PY "$ROOT/scripts/fashion_mnist_samples.py" --count 2000 --out "$T/fm.npy" --labels "$T/fm_labels.npy" >/dev/null &&
    "$QK" quantize "$CNN" -o "$T/qc.onnx" --op-types Gemm,Conv >/dev/null &&
    "$QK" run "$CNN" --input image="$T/fm.npy" --output-dir "$T/fm_fp32" >/dev/null &&
    "$QK" run "$T/qc.onnx" --input image="$T/fm.npy" --output-dir "$T/fm_q" >/dev/null &&
    $PY - "$T" <<'PYEOF' && ok || bad "accuracy budget"
import sys, numpy as np
t = sys.argv[1]
l = np.load(t + "/fm_labels.npy")
f, q = np.load(t + "/fm_fp32/logits.npy").argmax(1), np.load(t + "/fm_q/logits.npy").argmax(1)
acc_f, acc_q, agree = (f == l).mean(), (q == l).mean(), (f == q).mean()
print(f"fashion-mnist 2000 images: top-1 FP32 {100 * acc_f:.2f}%, quantized {100 * acc_q:.2f}%, agreement {100 * agree:.2f}%")
assert abs(acc_f - acc_q) <= 0.005 and agree >= 0.99
PYEOF
  # 5b. The same file and a static one (default settings: uint8-symmetric weights) in ONNX Runtime:
  #     every logit within one quantization step of quantkit's (a uint8 step of the logits' range;
  #     with int8 weights ONNX Runtime's u8 x s8 kernels saturate on CPUs without VNNI).
  if command -v node >/dev/null && [[ -d $ROOT/node_modules/onnxruntime-node ]]; then
    $PY "$ROOT/scripts/fashion_mnist_samples.py" --split train --count 200 --out "$T/calib.npy" >/dev/null &&
      mkdir -p "$T/calib" && mv "$T/calib.npy" "$T/calib/image.npy" &&
      "$QK" quantize "$CNN" -o "$T/qs.onnx" --mode static --calib "$T/calib" >/dev/null &&
      "$QK" run "$T/qs.onnx" --input image="$T/fm.npy" --output-dir "$T/fm_qs" >/dev/null &&
      node "$ROOT/tools/ort_run.js" "$T/qc.onnx" --input image="$T/fm.npy" --output-dir "$T/fm_q_ort" >/dev/null &&
      node "$ROOT/tools/ort_run.js" "$T/qs.onnx" --input image="$T/fm.npy" --output-dir "$T/fm_qs_ort" >/dev/null &&
      $PY - "$T" <<'PYEOF' && ok || bad "ONNX Runtime and quantkit differ by more than one step on the quantized Fashion CNN"
import sys, numpy as np
t = sys.argv[1]
for q in ("fm_q", "fm_qs"):
    a, b = np.load(f"{t}/{q}/logits.npy").astype(np.float64), np.load(f"{t}/{q}_ort/logits.npy").astype(np.float64)
    step = (b.max() - b.min()) / 255
    worst = np.abs(a - b).max() / step
    print(f"{q}: quantkit vs ONNX Runtime, largest difference {worst:.3f} steps, arg-max differs on {(a.argmax(1) != b.argmax(1)).sum()}")
    assert worst <= 1.0, worst
PYEOF
  fi
fi

# 6. Bad input: exit 2, one line, no output file.
RELU=/usr/share/libonnx-testdata/data/node/test_relu/model.onnx
expect_error nothing-to-quantize "nothing to quantize" "$T/e1.onnx" -- "$QK" quantize "$RELU" -o "$T/e1.onnx"
expect_error conv-only-not-selected "nothing to quantize" "$T/e2.onnx" -- "$QK" quantize "$CNN" -o "$T/e2.onnx" --op-types MatMul
expect_error bad-exclude "matches no node" "$T/e3.onnx" -- "$QK" quantize "$CNN" -o "$T/e3.onnx" --exclude no_such_node
expect_error bad-exclude-regex "regular expression" "$T/e4.onnx" -- "$QK" quantize "$CNN" -o "$T/e4.onnx" --exclude '(oops'
expect_error bad-op-type "Softmax" "$T/e5.onnx" -- "$QK" quantize "$CNN" -o "$T/e5.onnx" --op-types Gemm,Softmax
expect_error bad-format "unknown format" "$T/e6.onnx" -- "$QK" quantize "$CNN" -o "$T/e6.onnx" --format qlinear
expect_error bad-weight-type "unknown weight type" "$T/e7.onnx" -- "$QK" quantize "$CNN" -o "$T/e7.onnx" --weight-type int4
expect_error static-without-stats "needs exactly one of --stats" "$T/e8.onnx" -- "$QK" quantize "$CNN" -o "$T/e8.onnx" --mode static
expect_error row-uint8 "int8" "$T/e9.onnx" -- "$QK" quantize "$CNN" -o "$T/e9.onnx" --activation-granularity row --weight-type uint8
expect_error static-uint8-per-channel "per tensor" "$T/e14.onnx" -- "$QK" quantize "$CNN" -o "$T/e14.onnx" --mode static --calib "$T/samples" --weight-type uint8
printf '{"formatt": "qdq-weights"}' >"$T/badcfg.json"
expect_error bad-config-key "formatt" "$T/e10.onnx" -- "$QK" quantize "$CNN" -o "$T/e10.onnx" --config "$T/badcfg.json"
expect_error missing-config "cannot be opened" "$T/e11.onnx" -- "$QK" quantize "$CNN" -o "$T/e11.onnx" --config "$T/none.json"
expect_error missing-model "nope.onnx" "$T/e12.onnx" -- "$QK" quantize "$T/nope.onnx" -o "$T/e12.onnx"
expect_error bad-check-dir "--check" "$T/e13.onnx" -- "$QK" quantize "$CNN" -o "$T/e13.onnx" --check "$T/no_samples"
expect_error overwrite-input "is the input model" "$T/q.onnx.nope" -- "$QK" quantize "$T/q.onnx" -o "$T/q.onnx"
[[ -f $T/q.onnx ]] && ok || bad "the input model was removed"

echo "quantize_cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
