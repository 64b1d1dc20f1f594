#!/usr/bin/env bash
# `quantkit calibrate` end to end on the bundled Fashion-MNIST CNN: .npy batches, .npz files
# (stored and deflated), image folders with a config file, merging shards (same statistics as one
# run), and bad input (exit 2, one line naming the file and input, no output file).
# Usage: calibrate_cli.sh path/to/quantkit
set -u
QK=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=$ROOT/assets/fashion_mnist_cnn.onnx
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
pass=0

ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# expect_ok NAME -- COMMAND...
expect_ok() {
  local name=$1
  shift 2
  if "$@" >"$T/out" 2>"$T/err"; then ok; else bad "$name: exit $?: $(head -c 400 "$T/err")"; fi
}

# expect_error NAME SUBSTRING OUTPUT -- COMMAND...: exit 2, one stderr line containing SUBSTRING,
# OUTPUT not created.
expect_error() {
  local name=$1 want=$2 output=$3
  shift 4
  rm -f "$output"
  "$@" >"$T/out" 2>"$T/err"
  local rc=$? lines
  lines=$(wc -l <"$T/err")
  if [[ $rc -ne 2 || $lines -ne 1 ]] || ! grep -q -- "$want" "$T/err"; then
    bad "$name: exit $rc, $lines stderr lines: $(head -c 400 "$T/err")"
  elif [[ -e "$output" ]]; then
    bad "$name: wrote $output"
  else
    ok
  fi
}

# ---- data: 64 Fashion-MNIST training images as one batch file, as two halves, as .npz files
$PY "$ROOT/scripts/fashion_mnist_samples.py" --split train --count 64 --out "$T/batch.npy" || exit 1
mkdir -p "$T/all" "$T/a" "$T/b" "$T/npz" "$T/img" "$T/empty" "$T/bad_dtype" "$T/bad_shape" "$T/bad_nan" "$T/bad_key"
cp "$T/batch.npy" "$T/all/image.npy"
$PY - "$T" <<'EOF' || exit 1
import sys, numpy as np
from PIL import Image
t = sys.argv[1]
x = np.load(f"{t}/batch.npy")
np.save(f"{t}/a/image.npy", x[:32])
np.save(f"{t}/b/image.npy", x[32:])
for i in range(4):  # two stored, two deflated; the second of each pair holds a batch of 3
    save = np.savez if i < 2 else np.savez_compressed
    save(f"{t}/npz/s{i}.npz", image=x[i:i + 1 + 2 * (i % 2)])
# Images: 28x28 gray PNG and JPEG, raw pixels (the bundled CNN's normalisation in the config)
raw = np.clip(np.round((x[:6, 0] * 0.353 + 0.286) * 255), 0, 255).astype(np.uint8)
for i in range(6):
    Image.fromarray(raw[i], "L").save(f"{t}/img/im{i}." + ("png" if i % 2 else "jpg"))
np.save(f"{t}/bad_dtype/x.npy", np.zeros((1, 1, 28, 28), np.int32))
np.save(f"{t}/bad_shape/x.npy", np.zeros((1, 1, 28, 27), np.float32))
y = x[:2].copy(); y[1, 0, 3, 4] = np.nan
np.save(f"{t}/bad_nan/x.npy", y)
np.savez(f"{t}/bad_key/s.npz", pixels=x[:1])
import os
os.makedirs(f"{t}/bad_jpeg")
Image.fromarray(raw[0], "L").save(f"{t}/bad_jpeg/a.png")
Image.fromarray(raw[1], "L").save(f"{t}/bad_jpeg/b.jpg")
data = open(f"{t}/bad_jpeg/b.jpg", "rb").read()
open(f"{t}/bad_jpeg/b.jpg", "wb").write(data[:len(data) // 2])
EOF
echo '{"calibration": {"scale": 0.00392156862745098, "mean": [0.286], "std": [0.353], "method": "percentile", "percentile": 99.9}}' >"$T/config.json"

# ---- successful runs
expect_ok calibrate-batch -- "$QK" calibrate "$MODEL" --calib "$T/all" --method entropy -o "$T/full.json"
expect_ok calibrate-half-a -- "$QK" calibrate "$MODEL" --calib "$T/a" --method entropy -o "$T/a.json"
expect_ok calibrate-half-b -- "$QK" calibrate "$MODEL" --calib "$T/b" --method entropy -o "$T/b.json"
expect_ok merge -- "$QK" calibrate --merge "$T/a.json" "$T/b.json" -o "$T/merged.json"
expect_ok calibrate-npz -- "$QK" calibrate "$MODEL" --calib "$T/npz" -o "$T/npz.json"
expect_ok calibrate-images -- "$QK" calibrate "$MODEL" --calib "$T/img" --config "$T/config.json" -o "$T/img.json"
grep -q "6 images" "$T/out" || bad "calibrate-images: no description of the image folder: $(cat "$T/out")"
expect_ok calibrate-samples -- "$QK" calibrate "$MODEL" --calib "$T/all" --calib-samples 10 --batch-size 4 -o "$T/ten.json"

$PY - "$T" "$MODEL" <<'EOF' && ok || bad "statistics contents"
import hashlib, json, sys
t, model = sys.argv[1], sys.argv[2]
load = lambda n: json.load(open(f"{t}/{n}.json"))
full, merged, npz, img, ten = load("full"), load("merged"), load("npz"), load("img"), load("ten")
sha = hashlib.sha256(open(model, "rb").read()).hexdigest()
assert full["model"]["sha256"] == sha, "sha256"
assert full["items"] == 64 and full["runs"] == 64, (full["items"], full["runs"])
assert {"image", "logits"} <= set(full["tensors"]), sorted(full["tensors"])
# Merged halves: the same statistics and the same entropy ranges/scales as one run.
assert merged["items"] == 64
for name, t_full in full["tensors"].items():
    t_m = merged["tensors"][name]
    for key in ("shape", "runs", "elements", "min", "max", "histogram", "range"):
        assert t_full[key] == t_m[key], (name, key)
    ch_full, ch_m = t_full["channels"], t_m["channels"]
    assert (ch_full is None) == (ch_m is None), name
    if ch_full is not None:
        for key in ("axis", "min", "max", "count"):
            assert ch_full[key] == ch_m[key], (name, "channels", key)
        # Channel sums (bias correction's means) add in another order when merged.
        for a, b in zip(ch_full["sum"], ch_m["sum"]):
            assert abs(a - b) <= 1e-12 * max(1.0, abs(a)), (name, "channels sum", a, b)
    for key in ("min", "max"):
        a, b = t_full["moving_average"][key], t_m["moving_average"][key]
        assert abs(a - b) <= 1e-12 * max(1.0, abs(a)), (name, key, a, b)
r = full["tensors"]["/features/features.0/features.0.2/Relu_output_0"]["range"]
assert r["method"] == "entropy" and r["min"] == 0 and 0 < r["max"] <= full["tensors"]["/features/features.0/features.0.2/Relu_output_0"]["max"], r
# .npz: 1 + 3 + 1 + 3 items.
assert npz["items"] == 8 and npz["tensors"]["image"]["elements"] == 8 * 784, npz["items"]
# Images decoded and normalised like the .npy data (rounding to 8 bits and JPEG aside).
im = img["tensors"]["image"]
assert img["items"] == 6 and img["settings"]["method"] == "percentile", img["settings"]
assert abs(im["min"] - (-0.286 / 0.353)) < 0.01 and 1.5 < im["max"] < 2.1, (im["min"], im["max"])
assert ten["items"] == 10 and ten["runs"] == 3, (ten["items"], ten["runs"])
EOF

# ---- the statistics drive static quantization, with bias correction from the channel means by default
expect_ok quantize-bias-corrected -- "$QK" quantize "$MODEL" --mode static --stats "$T/full.json" --equalize -o "$T/bc.onnx"
grep -q "note: bias correction: [1-9][0-9]* Conv/Gemm" "$T/out" || bad "quantize: no bias correction note: $(cat "$T/out")"
expect_ok quantize-no-bias-correction -- \
  "$QK" quantize "$MODEL" --mode static --stats "$T/full.json" --no-bias-correction --equalize -o "$T/nobc.onnx"
grep -q "bias correction" "$T/out" && bad "quantize --no-bias-correction still corrects: $(cat "$T/out")"
# compare --per-tensor undoes the equalization's channel scales (metadata) before comparing
expect_ok compare-equalized -- "$QK" compare "$MODEL" "$T/bc.onnx" --data "$T/all" --per-tensor --json
cp "$T/out" "$T/compare.json"
expect_ok quantize-default -- "$QK" quantize "$MODEL" --mode static --stats "$T/full.json" -o "$T/default.onnx"
grep -q "equalization" "$T/out" && bad "equalization is opt-in, but the default run equalized: $(cat "$T/out")"
$PY - "$T" <<'EOF' && ok || bad "bias correction in the written models"
import json, sys, onnx
from onnx import numpy_helper
t = sys.argv[1]
def biases(name):
    m = onnx.load(f"{t}/{name}.onnx")
    meta = {p.key: p.value for p in m.metadata_props}
    settings = json.loads(meta["quantkit.static"])
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return settings, {k: v for k, v in init.items() if v.dtype.name == "int32"}
on, b_on = biases("bc")
off, b_off = biases("nobc")
assert on["bias_correction"] is True and off["bias_correction"] is False, (on, off)
assert on["equalization"] is True, on
assert b_on.keys() == b_off.keys() and b_on, sorted(b_on)
assert any((b_on[k] != b_off[k]).any() for k in b_on), "bias correction changed no bias"
meta = {p.key: p.value for p in onnx.load(f"{t}/bc.onnx").metadata_props}
scales = json.loads(meta["quantkit.equalization"])["scales"]
relu0 = "/features/features.0/features.0.2/Relu_output_0"
assert relu0 in scales and max(scales[relu0]) / min(scales[relu0]) > 1.5, scales.get(relu0)
per_tensor = {e["tensor"]: e["sqnr_db"] for e in json.load(open(f"{t}/compare.json"))["tensors"]}
assert per_tensor[relu0] > 30, per_tensor[relu0]  # without undoing the scales: 2.5 dB
EOF

# ---- bad input: exit 2, one line naming the file and input, no output
O=$T/never.json
expect_error empty-folder "holds no samples" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/empty" -o "$O"
expect_error missing-folder "does not exist" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/nope" -o "$O"
expect_error wrong-dtype "x.npy: input 'image' must be float32" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/bad_dtype" -o "$O"
expect_error wrong-shape "x.npy: shape \[1,1,28,27\] does not fit input 'image'" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/bad_shape" -o "$O"
expect_error nan "x.npy: input 'image' contains NaN" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/bad_nan" -o "$O"
expect_error npz-wrong-name "s.npz: array 'pixels' is not an input of the model (inputs: image)" "$O" -- \
  "$QK" calibrate "$MODEL" --calib "$T/bad_key" -o "$O"
expect_error no-calib "--calib" "$O" -- "$QK" calibrate "$MODEL" -o "$O"
expect_error bad-method "unknown calibration method 'kl'" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/all" --method kl -o "$O"
expect_error bad-percentile "percentile 101" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/all" --percentile 101 -o "$O"
expect_error bad-bins "power of two" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/all" --histogram-bins 1000 -o "$O"
expect_error missing-model "nope.onnx" "$O" -- "$QK" calibrate "$T/nope.onnx" --calib "$T/all" -o "$O"
echo '{"calibration": {"colour": "RGB"}}' >"$T/bad_config.json"
expect_error bad-config "unknown key 'colour'" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/img" --config "$T/bad_config.json" -o "$O"
expect_error truncated-jpeg "b.jpg: cannot decode JPEG" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/bad_jpeg" -o "$O"
expect_error image-size "image size 5x5 does not fit input 'image'" "$O" -- "$QK" calibrate "$MODEL" --calib "$T/img" --image-size 5x5 -o "$O"
head -c 300 "$T/a.json" >"$T/truncated.json"
expect_error corrupt-stats "truncated.json: not valid JSON" "$O" -- "$QK" calibrate --merge "$T/a.json" "$T/truncated.json" -o "$O"
# Statistics of another model (ONNX's Relu test model, input x [3,4,5]).
RELU=/usr/share/libonnx-testdata/data/node/test_relu/model.onnx
mkdir -p "$T/relu"
$PY -c "import numpy as np; np.save('$T/relu/x.npy', np.ones((3,4,5), np.float32))"
expect_ok calibrate-relu -- "$QK" calibrate "$RELU" --calib "$T/relu" -o "$T/relu.json"
expect_error merge-other-model "relu.json: statistics of a different model" "$O" -- \
  "$QK" calibrate --merge "$T/a.json" "$T/relu.json" -o "$O"
"$QK" calibrate "$MODEL" --calib "$T/b" --momentum 0.5 -o "$T/b_momentum.json" >/dev/null 2>&1
expect_error merge-other-settings "different settings" "$O" -- "$QK" calibrate --merge "$T/a.json" "$T/b_momentum.json" -o "$O"
expect_error merge-one-file "at least two" "$O" -- "$QK" calibrate --merge "$T/a.json" -o "$O"

echo "calibrate_cli: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
