#!/usr/bin/python3
"""Trains quantkit's labelled benchmark model: a small conv-bn-relu CNN on Debian's Fashion-MNIST
(dataset-fashion-mnist), exported to ONNX (opset 13, dynamic batch) at assets/fashion_mnist_cnn.onnx.

Run with Debian's interpreter (python3-torch 1.13): /usr/bin/python3 scripts/train_fashion_mnist.py
Deterministic given the seed; takes a few minutes on 2 cores.
"""
import argparse
import gzip
import os

import numpy as np
import torch
import torch.nn as nn

DATA = "/usr/share/datasets/fashion-mnist"


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    prefix = "train" if split == "train" else "t10k"
    x = load_idx(f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = load_idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    # Normalisation is part of the model's contract: input = (pixel/255 - 0.286) / 0.353.
    x = (x - 0.286) / 0.353
    return x[:, None, :, :], y


class FashionCnn(nn.Module):
    def __init__(self):
        super().__init__()
        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.features = nn.Sequential(
            block(1, 16), block(16, 32), nn.MaxPool2d(2),
            block(32, 32), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "assets", "fashion_mnist_cnn.onnx"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    xtr, ytr = load("train")
    xte, yte = load("test")
    model = FashionCnn()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.epochs * (len(xtr) // 128 + 1))
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(args.epochs):
        model.train()
        perm = np.random.permutation(len(xtr))
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            xb = torch.from_numpy(xtr[idx])
            yb = torch.from_numpy(ytr[idx])
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            pred = np.concatenate([model(torch.from_numpy(xte[i:i + 1000])).argmax(1).numpy() for i in range(0, len(xte), 1000)])
        print(f"epoch {epoch + 1}: test top-1 {100.0 * (pred == yte).mean():.2f}%", flush=True)
    model.eval()
    dummy = torch.from_numpy(xte[:1])
    torch.onnx.export(model, dummy, args.out, opset_version=13, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
