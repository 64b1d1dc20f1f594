#!/usr/bin/python3
"""Exports the standard architectures of the bench from PyTorch (Debian's python3-torch and
python3-torchvision) to ONNX, opset 13, with random weights from a fixed seed (for latency and
label-free agreement; their outputs carry no meaning):

  resnet18, resnet50, mobilenet_v2   input [1, 3, 224, 224] -> logits [1, 1000]
  encoder   BERT-base-sized nn.TransformerEncoder: 12 layers, hidden 768, 12 heads, FFN 3072,
            GELU, batch_first; input x [1, 128, 768] (embeddings) -> y [1, 128, 768]
  lstm      nn.LSTM(512 -> 512), input x [50, 1, 512] -> y [50, 1, 512], h, c [1, 1, 512]

Writes OUT/<name>.onnx and OUT/<name>.pt (the state dict, so the PyTorch peers run the very same
weights). A model already exported with the same settings is left alone.

  /usr/bin/python3 bench/export_torch_models.py [--out DIR] [--models resnet18,lstm] [--force]
"""

import argparse
import json
import os
import sys

OPSET = 13
EXPORT_VERSION = 2  # bump when a model definition changes
SPECS = {
    # name: (seed, input name, input shape, output names)
    "resnet18": (11, "input", [1, 3, 224, 224], ["logits"]),
    "resnet50": (12, "input", [1, 3, 224, 224], ["logits"]),
    "mobilenet_v2": (13, "input", [1, 3, 224, 224], ["logits"]),
    "encoder": (14, "x", [1, 128, 768], ["y"]),
    "lstm": (15, "x", [50, 1, 512], ["y", "h", "c"]),
}


def build(name):
    """The module for `name`, in eval mode, weights from the spec's seed."""
    import torch
    import torchvision
    torch.manual_seed(SPECS[name][0])
    if name == "resnet18":
        m = torchvision.models.resnet18(weights=None)
    elif name == "resnet50":
        m = torchvision.models.resnet50(weights=None)
    elif name == "mobilenet_v2":
        m = torchvision.models.mobilenet_v2(weights=None)
    elif name == "encoder":
        layer = torch.nn.TransformerEncoderLayer(d_model=768, nhead=12, dim_feedforward=3072, dropout=0.0,
                                                 activation="gelu", batch_first=True)
        m = torch.nn.TransformerEncoder(layer, num_layers=12, enable_nested_tensor=False)
        # The 12 layers are deep copies of one; give each its own weights (else the exporter keeps
        # one shared set and the model is not BERT-sized in memory).
        for lyr in m.layers:
            lyr.self_attn._reset_parameters()
            for lin in (lyr.self_attn.out_proj, lyr.linear1, lyr.linear2):
                lin.reset_parameters()
    elif name == "lstm":
        m = torch.nn.LSTM(input_size=512, hidden_size=512, num_layers=1)
    else:
        raise ValueError(f"unknown model '{name}'")
    return m.eval()


def load(name, out_dir):
    """The exported module with its saved weights (for the PyTorch peers)."""
    import torch
    m = build(name)
    m.load_state_dict(torch.load(os.path.join(out_dir, name + ".pt")))
    return m.eval()


def export(name, out_dir):
    import torch
    seed, input_name, shape, outputs = SPECS[name]
    m = build(name)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    path = os.path.join(out_dir, name + ".onnx")
    tmp = path + ".tmp"
    # Gradients stay enabled: PyTorch's fused inference fast path of TransformerEncoder (which has
    # no ONNX export) is only taken without them.
    torch.onnx.export(m, (x,), tmp, opset_version=OPSET, input_names=[input_name], output_names=outputs,
                      do_constant_folding=True)
    torch.save(m.state_dict(), os.path.join(out_dir, name + ".pt"))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out", "models", "torch"))
    ap.add_argument("--models", default=",".join(SPECS))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as e:
        print(f"export_torch_models: {e} (scripts/setup.sh installs python3-torch, python3-torchvision)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    for name in [n for n in a.models.split(",") if n]:
        if name not in SPECS:
            print(f"export_torch_models: unknown model '{name}' (known: {', '.join(SPECS)})", file=sys.stderr)
            return 2
        meta_path = os.path.join(a.out, name + ".json")
        meta = {"opset": OPSET, "export_version": EXPORT_VERSION, "spec": SPECS[name], "torch": torch.__version__}
        if not a.force and os.path.isfile(meta_path) and os.path.isfile(os.path.join(a.out, name + ".onnx")):
            with open(meta_path) as f:
                if json.load(f) == json.loads(json.dumps(meta)):
                    print(f"export_torch_models: {name} up to date")
                    continue
        print(f"export_torch_models: exporting {name}", flush=True)
        export(name, a.out)
        with open(meta_path, "w") as f:
            json.dump(meta, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
