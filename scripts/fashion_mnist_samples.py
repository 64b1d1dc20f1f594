#!/usr/bin/python3
"""Writes Fashion-MNIST test images (normalised as the bundled CNN expects) to a .npy file, and
optionally checks a logits .npy against the labels.

  fashion_mnist_samples.py --count N --out images.npy [--labels labels.npy]
  fashion_mnist_samples.py --check logits.npy --labels labels.npy
"""
import argparse
import gzip
import sys

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--split", choices=["test", "train"], default="test")
    ap.add_argument("--out")
    ap.add_argument("--labels")
    ap.add_argument("--check")
    a = ap.parse_args()
    if a.check:
        logits = np.load(a.check)
        labels = np.load(a.labels)
        pred = logits.argmax(axis=1)
        for i, (p, l) in enumerate(zip(pred, labels)):
            print(f"  image {i:3d}: predicted {CLASSES[p]:<12} label {CLASSES[l]:<12} {'ok' if p == l else 'WRONG'}")
        print(f"top-1: {100.0 * (pred == labels).mean():.1f}% of {len(labels)} test images")
        return 0
    prefix = "t10k" if a.split == "test" else "train"
    x = load_idx(f"{DATA}/{prefix}-images-idx3-ubyte.gz")[a.offset:a.offset + a.count].astype(np.float32) / 255.0
    y = load_idx(f"{DATA}/{prefix}-labels-idx1-ubyte.gz")[a.offset:a.offset + a.count].astype(np.int64)
    x = ((x - 0.286) / 0.353)[:, None, :, :].astype(np.float32)
    np.save(a.out, x)
    if a.labels:
        np.save(a.labels, y)
    return 0


if __name__ == "__main__":
    sys.exit(main())
