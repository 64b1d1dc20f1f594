#!/usr/bin/python3
"""--max-memory bounds what the runtime allocates, on every command that runs a model.

    memory_limit_test.py path/to/quantkit

A model that expands its 1x4 input to a 16 MiB tensor 'big' must fail under --max-memory 8M
(exit 2, one line naming 'big' and the limit) and succeed under 64M, for run, compare, bench,
calibrate, quantize --mode static --calib and quantize --check; --max-memory-mb is an alias.
Kernel scratch counts too: an LSTM whose output (512 KiB) fits under --max-memory 1M but whose
input projection for all steps (2 MiB of scratch) does not must fail naming the node and the
scratch, and succeed under 64M.
A model whose 3 GiB tensor is a constant expression must be refused under --max-memory 512M
without the process ever holding that much memory (peak RSS is measured).
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

QK = os.path.abspath(sys.argv[1])
failures = []
passed = 0


def model_file(path, nodes, initializers, out_shape, x_shape=(1, 4)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def run(args):
    """Runs quantkit; returns (exit code, stderr, peak RSS in KiB of that process)."""
    p = subprocess.Popen([QK] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, err, usage.ru_maxrss


def expect(name, args, rc_want, pattern=None, max_rss_kib=None):
    global passed
    rc, err, rss = run(args)
    lines = err.splitlines()
    if rc != rc_want:
        failures.append(f"{name}: exit {rc} (want {rc_want}): {err.strip()[:300]}")
    elif rc_want == 2 and (len(lines) != 1 or not re.search(pattern, lines[0])):
        failures.append(f"{name}: want one line matching /{pattern}/, got: {err.strip()[:300]}")
    elif max_rss_kib is not None and rss > max_rss_kib:
        failures.append(f"{name}: peak RSS {rss // 1024} MiB exceeds {max_rss_kib // 1024} MiB")
    else:
        passed += 1


with tempfile.TemporaryDirectory() as t:
    m = os.path.join(t, "expand.onnx")
    # x[1,4] -> Expand to [1024,1024,4] (16 MiB, 'big') -> MatMul W[4,3] -> ReduceSum -> y
    model_file(m, [helper.make_node("Expand", ["x", "shape"], ["big"], name="expand"),
                   helper.make_node("MatMul", ["big", "W"], ["mm"], name="mm"),
                   helper.make_node("ReduceSum", ["mm"], ["y"], keepdims=0, name="sum")],
               [numpy_helper.from_array(np.array([1024, 1024, 4], np.int64), "shape"),
                numpy_helper.from_array(np.ones((4, 3), np.float32), "W")], [])
    data = os.path.join(t, "data")
    os.makedirs(data)
    np.save(os.path.join(data, "x.npy"), np.ones((1, 4), np.float32))
    x = os.path.join(data, "x.npy")
    commands = {
        "run": ["run", m, "--input", f"x={x}", "-o", os.path.join(t, "out")],
        "compare": ["compare", m, m, "--data", data],
        "bench": ["bench", m, "--input", f"x={x}", "--warmup-ms", "0", "--min-time-ms", "0", "--repeat", "1"],
        "calibrate": ["calibrate", m, "--calib", data, "-o", os.path.join(t, "stats.json")],
        "quantize_static": ["quantize", m, "-o", os.path.join(t, "qs.onnx"), "--mode", "static", "--calib", data],
        "quantize_check": ["quantize", m, "-o", os.path.join(t, "qd.onnx"), "--mode", "dynamic", "--check", data],
    }
    limit_error = r"'big'.*memory limit"
    for name, args in commands.items():
        expect(f"{name} --max-memory 8M", args + ["--max-memory", "8M"], 2, limit_error)
        expect(f"{name} --max-memory-mb 8", args + ["--max-memory-mb", "8"], 2, limit_error)
        expect(f"{name} --max-memory 64M", args + ["--max-memory", "64M"], 0)
    for out in ("stats.json", "qs.onnx", "qd.onnx"):
        os.remove(os.path.join(t, out))  # written by the 64M runs only; the failures above wrote none
    leftovers = [f for f in os.listdir(t) if f not in ("expand.onnx", "data", "out")]
    if leftovers:
        failures.append(f"files left by failed runs: {leftovers}")
    # Kernel scratch: x [64, 8, 16] (64 steps, batch 8; a user input, not pool memory) -> LSTM with
    # hidden size 256 -> y [64, 1, 8, 256] (512 KiB); the input projection X * W^T of every step is
    # 64 * 8 x 4 * 256 floats (2 MiB) of scratch.
    lstm = os.path.join(t, "lstm.onnx")
    model_file(lstm, [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=256, name="lstm")],
               [numpy_helper.from_array(np.full((1, 1024, 16), 0.01, np.float32), "W"),
                numpy_helper.from_array(np.full((1, 1024, 256), 0.001, np.float32), "R")], [64, 1, 8, 256],
               x_shape=(64, 8, 16))
    lx = os.path.join(t, "lx.npy")
    np.save(lx, np.ones((64, 8, 16), np.float32))
    lstm_run = ["run", lstm, "--input", f"x={lx}", "-o", os.path.join(t, "out3")]
    expect("run: LSTM scratch over --max-memory 1M", lstm_run + ["--max-memory", "1M"], 2,
           r"LSTM node 'lstm': input projection scratch of 2097152 bytes would exceed the memory limit of 1048576 bytes")
    expect("run: LSTM under --max-memory 64M", lstm_run + ["--max-memory", "64M"], 0)

    for bad in ("512", "0M", "12X", "-5M", ""):
        expect(f"--max-memory '{bad}'", commands["run"] + ["--max-memory", bad], 2, r"max-memory")

    # A 3 GiB constant expression (ConstantOfShape of a constant shape): constant folding runs
    # kernels at session creation; the limit must hold there too.
    big = os.path.join(t, "constant_of_shape.onnx")
    model_file(big, [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
                     helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0, name="sum"),
                     helper.make_node("Add", ["x", "s"], ["y"], name="add")],
               [numpy_helper.from_array(np.array([1 << 28, 3], np.int64), "shape")], [1, 4])
    expect("constant folding under --max-memory 512M",
           ["run", big, "--input", f"x={x}", "-o", os.path.join(t, "out2"), "--max-memory", "512M"], 2,
           r"'big'.*(memory limit|limit)", max_rss_kib=1 << 20)

for f in failures:
    print("FAIL", f)
print(f"memory_limit_test: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
