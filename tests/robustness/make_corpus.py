#!/usr/bin/python3
"""Generates the robustness corpus: malformed models, data files and statistics files.

    make_corpus.py OUT_DIR        writes OUT_DIR/<case>/... and OUT_DIR/manifest.json

Every case is built from one small valid model (x[1,4] -> MatMul(W[4,3]) -> Relu -> y[1,3]) by
breaking exactly one thing, so the expected error is known. manifest.json lists, per case:
  name, kind ("model" | "npy" | "pb" | "npz" | "stats"), file (relative to OUT_DIR),
  expect (a regex the one-line error must match: it names the problem),
  inspect_ok (model cases whose file is readable and only fails when run: inspect must exit 0),
  commands (optional: only these commands apply).
The statistics cases are derived at test time from a real `quantkit calibrate` output
(corpus_test.py), since their layout belongs to quantkit; this script only writes the raw ones.
"""
import json
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR = 7


# ---------------------------------------------------------------- the valid base model

def base_graph(weight=None):
    w = weight if weight is not None else numpy_helper.from_array(
        np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["y"], name="relu")]
    return helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w])


def make_model(graph, opset=OPSET, ir=IR):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="corpus")
    m.ir_version = ir
    return m


def base_model():
    return make_model(base_graph())


def weight_proto(dims, raw=None, float_data=None, dtype=TensorProto.FLOAT):
    t = TensorProto()
    t.name = "W"
    t.data_type = dtype
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    if float_data is not None:
        t.float_data.extend(float_data)
    return t


def with_weight(t):
    return make_model(base_graph(t))


def nested_if(depth):
    """A model whose Relu sits inside `depth` nested If bodies (condition is an input)."""
    inner = helper.make_graph([helper.make_node("Relu", ["x"], ["o0"])], "body0", [],
                              [helper.make_tensor_value_info("o0", TensorProto.FLOAT, [1, 4])])
    # The else branch is a leaf: sharing `inner` in both branches would double the size per level.
    leaf = inner
    for level in range(1, depth + 1):
        out = f"o{level}"
        node = helper.make_node("If", ["c"], [out], then_branch=inner, else_branch=leaf)
        inner = helper.make_graph([node], f"body{level}", [],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4])])
    g = helper.make_graph(list(inner.node), "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info(f"o{depth}", TensorProto.FLOAT, [1, 4])])
    return make_model(g)


def external_weight(location, offset=None, length=None):
    t = weight_proto([4, 3])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        if value is not None:
            e = t.external_data.add()
            e.key, e.value = key, str(value)
    return with_weight(t)


# ---------------------------------------------------------------- cases

class Corpus:
    def __init__(self, out):
        self.out = out
        self.cases = []

    def add(self, name, kind, data, expect, filename=None, inspect_ok=False, commands=None):
        d = os.path.join(self.out, name)
        os.makedirs(d, exist_ok=True)
        filename = filename or {"model": "model.onnx", "npy": "x.npy", "pb": "x.pb", "npz": "sample.npz",
                                "stats": "stats.json"}[kind]
        path = os.path.join(d, filename)
        if isinstance(data, onnx.ModelProto):
            data = data.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        case = {"name": name, "kind": kind, "file": os.path.join(name, filename), "expect": expect,
                "inspect_ok": inspect_ok}
        if commands:
            case["commands"] = commands
        self.cases.append(case)
        return d


def model_cases(c):
    good = base_model().SerializeToString()
    c.add("model_empty", "model", b"", r"not a valid ONNX model")
    c.add("model_garbage", "model", b"\x08\x07\x12\xff\xff\xff\xff\x0fgarbage" * 8, r"not a valid ONNX model")
    # Cut inside the initializer's raw_data (the last bytes of a length-delimited field).
    raw_at = good.find(np.arange(12, dtype=np.float32).reshape(4, 3).tobytes()[:8])
    truncated = good[:raw_at + 20] if raw_at > 0 else good[:len(good) // 2]
    c.add("model_truncated", "model", truncated, r"not a valid ONNX model")

    c.add("raw_data_too_short", "model", with_weight(weight_proto([4, 3], raw=b"\0" * 8)),
          r"tensor 'W'.*raw_data has 8 bytes")
    c.add("float_data_count", "model", with_weight(weight_proto([4, 3], float_data=[1.0] * 5)),
          r"tensor 'W'.*float_data has 5 values")
    c.add("negative_dim", "model", with_weight(weight_proto([-4, 3], raw=b"")), r"tensor 'W'.*-4")
    c.add("absurd_dims", "model", with_weight(weight_proto([1000000, 1000000], raw=b"")),
          r"tensor 'W'.*(too large|limit)")
    # 8 GiB declared (under the 16 GiB initializer limit) with 16 bytes present: must be refused
    # for the size mismatch before any allocation (the test runs under an address-space limit).
    c.add("big_dims_small_data", "model", with_weight(weight_proto([1 << 30, 2], raw=b"\0" * 16)),
          r"tensor 'W'.*raw_data has 16 bytes")
    c.add("dims_overflow", "model", with_weight(weight_proto([1 << 62, 1 << 62], raw=b"")),
          r"tensor 'W'.*(too large|limit)")
    c.add("zero_dim_weight", "model", with_weight(weight_proto([0, 3], raw=b"")), r"mm|MatMul", inspect_ok=True)
    c.add("bad_dtype", "model", with_weight(weight_proto([4, 3], raw=b"\0" * 48, dtype=999)),
          r"tensor 'W'.*(element type|not supported)")
    c.add("string_dtype", "model", with_weight(weight_proto([4, 3], dtype=TensorProto.STRING)),
          r"tensor 'W'.*not supported")

    g = base_graph()
    g.initializer.append(g.initializer[0])
    c.add("duplicate_initializer", "model", make_model(g), r"'W' is defined twice")

    g = base_graph()
    del g.node[:]
    g.node.extend([helper.make_node("Add", ["x", "t2"], ["t1"], name="add"),
                   helper.make_node("Relu", ["t1"], ["t2"], name="loop_relu"),
                   helper.make_node("MatMul", ["t2", "W"], ["h"], name="mm"),
                   helper.make_node("Relu", ["h"], ["y"], name="relu")])
    c.add("graph_cycle", "model", make_model(g), r"cycle")

    g = base_graph()
    g.node[0].input[1] = "W_missing"
    c.add("dangling_input", "model", make_model(g), r"W_missing")

    g = base_graph()
    g.node.insert(1, helper.make_node("Relu", ["x"], ["h"], name="second_h"))
    c.add("duplicate_value", "model", make_model(g), r"'h'.*(more than once|twice)")

    g = base_graph()
    g.output[0].name = "never_computed"
    c.add("undefined_output", "model", make_model(g), r"never_computed")

    g = base_graph()
    g.node[1].op_type = "FrobnicateRelu"
    # quantize --mode dynamic does not run the model: ops it does not touch pass through, so it
    # is not expected to fail on ops only another runtime knows (docs/security.md).
    not_run = ["inspect", "run", "run_data", "compare", "quantize_static", "calibrate", "bench"]
    c.add("unknown_op", "model", make_model(g), r"FrobnicateRelu", inspect_ok=True, commands=not_run)

    g = base_graph()
    g.node[1].domain = "com.evil"
    m = make_model(g)
    m.opset_import.append(helper.make_opsetid("com.evil", 1))
    c.add("unknown_domain", "model", m, r"com\.evil", inspect_ok=True, commands=not_run)

    g = base_graph()
    g.node[1].op_type = ""
    c.add("empty_op_type", "model", make_model(g), r"no op_type")

    c.add("opset_too_new", "model", make_model(base_graph(), opset=99), r"opset 99")
    c.add("ir_too_new", "model", make_model(base_graph(), ir=99), r"IR version 99")
    m = base_model()
    m.ClearField("graph")
    c.add("no_graph", "model", m, r"no graph")

    # Subgraph nesting: 70 levels exceed quantkit's limit (64); 120 levels exceed protobuf's
    # recursion limit, which the parser reports.
    c.add("subgraph_too_deep", "model", nested_if(70), r"nested deeper than 64")
    c.add("subgraph_recursion_limit", "model", nested_if(120), r"not a valid ONNX model.*(deep|nest)")

    # A graph input with absurd static dims: bench would generate it, run gets a mismatching file.
    g = base_graph()
    g.input[0].type.tensor_type.shape.dim[0].dim_value = 1000000
    g.input[0].type.tensor_type.shape.dim[1].dim_value = 1000000
    g.node[0].op_type = "Relu"
    del g.node[0].input[1:]
    del g.initializer[:]
    g.output[0].type.tensor_type.shape.Clear()
    c.add("huge_input_dims", "model", make_model(g), r"'x'.*(too large|limit|shape)|does not fit input 'x'", inspect_ok=True,
          commands=["bench", "run", "compare", "calibrate", "quantize_static"])

    # A tensor computed at run time (Expand of the input to a shape constant) of 4e11 bytes:
    # refused by the memory limit naming the value, not allocated.
    g = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["big"], name="expand"),
         helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0, name="sum")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array([100000, 250000, 4], dtype=np.int64), "shape")])
    c.add("runtime_huge_tensor", "model", make_model(g), r"'big'.*(memory limit|too large|limit)",
          inspect_ok=True, commands=["run", "run_data", "compare", "bench", "calibrate", "quantize_static"])

    # External data: paths must stay inside the model's directory; offsets within the file.
    weights = np.arange(12, dtype=np.float32).tobytes()
    d = c.add("ext_dotdot", "model", external_weight("../outside.bin"), r"tensor 'W'.*leaves the model's directory")
    with open(os.path.join(c.out, "outside.bin"), "wb") as f:
        f.write(weights)
    c.add("ext_absolute", "model", external_weight("/etc/hostname"), r"tensor 'W'.*absolute path")
    d = c.add("ext_symlink_out", "model", external_weight("w.bin"), r"tensor 'W'.*outside the model's directory")
    os.symlink(os.path.join(c.out, "outside.bin"), os.path.join(d, "w.bin"))
    c.add("ext_missing", "model", external_weight("nope.bin"), r"tensor 'W'.*(not found|cannot open)")
    d = c.add("ext_offset_past_end", "model", external_weight("w.bin", offset=1000),
              r"tensor 'W'.*past its end")
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(weights)
    d = c.add("ext_offset_overflow", "model", external_weight("w.bin", offset=(1 << 64) - 8),
              r"tensor 'W'.*(past its end|bad external data)")
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(weights)
    d = c.add("ext_length_mismatch", "model", external_weight("w.bin", length=8), r"tensor 'W'.*length 8")
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(weights)
    d = c.add("ext_bad_offset", "model", external_weight("w.bin", offset="12abc"),
              r"tensor 'W'.*bad external data offset")
    with open(os.path.join(d, "w.bin"), "wb") as f:
        f.write(weights)
    d = c.add("ext_is_directory", "model", external_weight("subdir"), r"tensor 'W'.*(not a regular file|cannot)")
    os.makedirs(os.path.join(d, "subdir"), exist_ok=True)


def npy_bytes(header, data=b"", version=1):
    h = header.encode()
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H", len(h)) + h + data


def data_cases(c):
    ok16 = np.zeros((1, 4), np.float32).tobytes()
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }"
    c.add("npy_bad_magic", "npy", b"\x93NUMPX" + npy_bytes(hdr, ok16)[6:], r"x\.npy.*bad magic")
    c.add("npy_empty", "npy", b"", r"x\.npy.*(bad magic|not a \.npy)")
    c.add("npy_header_past_end", "npy", b"\x93NUMPY\x01\x00\xff\xff{'descr'", r"x\.npy.*truncated")
    c.add("npy_malformed_header", "npy", npy_bytes("{bad header}", ok16), r"x\.npy.*malformed")
    c.add("npy_bad_version", "npy", npy_bytes(hdr, ok16, version=9), r"x\.npy.*version 9")
    c.add("npy_unsupported_dtype", "npy", npy_bytes(hdr.replace("<f4", "<c8"), ok16 * 2), r"x\.npy.*'<c8'")
    c.add("npy_fortran_order", "npy", npy_bytes(hdr.replace("False", "True"), ok16), r"x\.npy.*Fortran")
    c.add("npy_data_short", "npy", npy_bytes(hdr, ok16[:10]), r"x\.npy.*10 bytes")
    c.add("npy_data_long", "npy", npy_bytes(hdr, ok16 + b"\0" * 4), r"x\.npy.*20 bytes")
    c.add("npy_negative_dim", "npy", npy_bytes(hdr.replace("(1, 4)", "(-1, 4)"), ok16), r"x\.npy.*dimension '-1'")
    c.add("npy_huge_shape", "npy", npy_bytes(hdr.replace("(1, 4)", "(1000000, 1000000, 1000000)"), ok16),
          r"x\.npy.*(too large|limit)")
    c.add("npy_big_shape_no_data", "npy", npy_bytes(hdr.replace("(1, 4)", "(1073741824, 2)"), ok16),
          r"x\.npy.*16 bytes")
    buf = __import__("io").BytesIO()
    np.save(buf, np.zeros((1, 4), np.int32))
    c.add("npy_wrong_dtype", "npy", buf.getvalue(), r"'x'.*float32")
    buf = __import__("io").BytesIO()
    np.save(buf, np.zeros((1, 5), np.float32))  # (2, 4) would be a batch of two for calibration
    c.add("npy_wrong_shape", "npy", buf.getvalue(), r"'x'.*shape|shape \[1,5\] does not fit input 'x'")
    for name, value in (("npy_nan", np.nan), ("npy_inf", np.inf)):
        buf = __import__("io").BytesIO()
        a = np.zeros((1, 4), np.float32)
        a[0, 2] = value
        np.save(buf, a)
        # run/bench compute with any float (NaN is a value); data sets for statistics and
        # comparisons must be finite.
        c.add(name, "npy", buf.getvalue(), r"'x'.*(NaN|Inf)",
              commands=["run_data", "compare", "calibrate", "quantize_static", "quantize_check"])

    c.add("pb_garbage", "pb", b"\xff\xff\xff\xff\x0f\x00garbage", r"x\.pb", commands=["run", "bench"])

    def npz(members, compress=zipfile.ZIP_DEFLATED):
        buf = __import__("io").BytesIO()
        with zipfile.ZipFile(buf, "w", compress) as z:
            for key, data in members.items():
                z.writestr(key + ".npy", data)
        return bytearray(buf.getvalue())

    good_npy = npy_bytes(hdr, ok16)
    npz_cmds = ["run_data", "compare", "calibrate", "quantize_static", "quantize_check"]
    c.add("npz_not_zip", "npz", b"PK\x03\x04 this is not a zip file" * 3, r"sample\.npz.*not a valid \.npz",
          commands=npz_cmds)
    data = npz({"x": good_npy}, zipfile.ZIP_STORED)
    data[data.find(b"\x93NUMPY") + 80] ^= 0xFF
    c.add("npz_crc_mismatch", "npz", bytes(data), r"sample\.npz.*CRC", commands=npz_cmds)
    data = npz({"x": good_npy})
    c.add("npz_truncated", "npz", bytes(data[: len(data) // 2]), r"sample\.npz", commands=npz_cmds)
    data = npz({"other": good_npy})
    c.add("npz_missing_key", "npz", bytes(data), r"sample\.npz.*('x'|'other' is not an input)", commands=npz_cmds)
    # A deflated member whose directory entry claims 3 GiB uncompressed: must fail on the
    # mismatch, not allocate 3 GiB first (address-space limit in the test).
    data = npz({"x": good_npy})
    cd = data.find(b"PK\x01\x02")
    data[cd + 24:cd + 28] = struct.pack("<I", 3 << 30)
    c.add("npz_size_lie", "npz", bytes(data), r"sample\.npz.*claims 3221225472 bytes", commands=npz_cmds)
    # Deflate data that is not deflate.
    data = npz({"x": good_npy})
    start = data.find(b"x.npy") + 5
    data[start:start + 8] = b"\xff" * 8
    c.add("npz_bad_deflate", "npz", bytes(data), r"sample\.npz.*(corrupt|CRC)", commands=npz_cmds)


def write_good(out):
    os.makedirs(os.path.join(out, "good", "data"), exist_ok=True)
    with open(os.path.join(out, "good", "model.onnx"), "wb") as f:
        f.write(base_model().SerializeToString())
    np.save(os.path.join(out, "good", "data", "x.npy"), np.array([[0.5, -1.0, 2.0, 0.25]], np.float32))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_good(out)
    c = Corpus(out)
    model_cases(c)
    data_cases(c)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(c.cases, f, indent=1)
    print(f"{len(c.cases)} cases in {out}")


if __name__ == "__main__":
    main()
