#!/usr/bin/env bash
# The main job on the bundled default model (assets/fashion_mnist_cnn.onnx, trained on Debian's
# Fashion-MNIST): set up, quantize it dynamically and statically (calibrating on Fashion-MNIST
# *training* images), and print FP32 vs INT8 top-1 (on test images), file size and latency.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL=assets/fashion_mnist_cnn.onnx
OUT=build/demo
QK=build/quantkit
rm -rf "$OUT" && mkdir -p "$OUT/calib" "$OUT/eval"
/usr/bin/python3 scripts/fashion_mnist_samples.py --split train --count 500 --out "$OUT/calib/image.npy" >/dev/null
/usr/bin/python3 scripts/fashion_mnist_samples.py --count 2000 --out "$OUT/eval/image.npy" --labels "$OUT/labels.npy" >/dev/null
/usr/bin/python3 -c "import numpy as np; np.save('$OUT/batch64.npy', np.load('$OUT/eval/image.npy')[:64])"

echo "== quantkit quantize --mode dynamic"
$QK quantize "$MODEL" -o "$OUT/dynamic.onnx" --mode dynamic
echo "== quantkit calibrate (500 training images, entropy) + quantize --mode static"
$QK calibrate "$MODEL" --calib "$OUT/calib" -o "$OUT/stats.json"
$QK quantize "$MODEL" -o "$OUT/static.onnx" --mode static --stats "$OUT/stats.json" --method entropy

echo "== FP32 vs INT8 on 2000 Fashion-MNIST test images (latency: batch of 64, 1 thread, median)"
printf '%-10s %8s %12s %14s\n' variant top-1 size latency
for v in fp32 dynamic static; do
  m="$OUT/$v.onnx"; [[ $v == fp32 ]] && m="$MODEL"
  $QK run "$m" --input image="$OUT/eval/image.npy" --output-dir "$OUT/$v" >/dev/null
  top1=$(/usr/bin/python3 scripts/fashion_mnist_samples.py --check "$OUT/$v/logits.npy" --labels "$OUT/labels.npy" | tail -1 | awk '{print $2}')
  ms=$($QK bench "$m" --input image="$OUT/batch64.npy" --threads 1 --json | /usr/bin/python3 -c 'import json,sys; print("%.1f ms" % json.load(sys.stdin)["median_ms"])')
  printf '%-10s %8s %9s KiB %14s\n' "$v" "$top1" "$(( $(stat -c %s "$m") / 1024 ))" "$ms"
done
