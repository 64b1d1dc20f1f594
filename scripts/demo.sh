#!/usr/bin/env bash
# The main job on the bundled default model (assets/fashion_mnist_cnn.onnx, trained on Debian's
# Fashion-MNIST): set up, inspect the model, run it on test images, check the predictions.
# Quantization (dynamic/static) joins this script when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL=assets/fashion_mnist_cnn.onnx
OUT=build/demo
mkdir -p "$OUT"
echo "== quantkit inspect $MODEL"
build/quantkit inspect "$MODEL"
/usr/bin/python3 scripts/fashion_mnist_samples.py --count 16 --out "$OUT/images.npy" --labels "$OUT/labels.npy"
echo "== quantkit run $MODEL on 16 Fashion-MNIST test images"
build/quantkit run "$MODEL" --input image="$OUT/images.npy" --output-dir "$OUT/fp32"
/usr/bin/python3 scripts/fashion_mnist_samples.py --check "$OUT/fp32/logits.npy" --labels "$OUT/labels.npy"
