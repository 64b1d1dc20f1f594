#!/usr/bin/python3
"""Runs every CLI command over every case of the robustness corpus (make_corpus.py).

    corpus_test.py path/to/quantkit [--keep DIR] [--filter SUBSTRING] [-v]

Each (case, command) must: exit with code 2, print exactly one stderr line
"quantkit: error: ..." matching the case's `expect` regex (the message names the problem),
finish within the timeout, and leave its output location empty. Model cases marked
inspect_ok must be inspectable (exit 0). Commands run under an address-space limit
(RLIMIT_AS, 8 GiB) so a blind allocation of a declared size shows up as a failure.
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_corpus  # noqa: E402

TIMEOUT_S = 30
ADDRESS_SPACE_LIMIT = 8 << 30
FAST_BENCH = ["--warmup-ms", "0", "--min-time-ms", "0", "--repeat", "1"]

# Which commands apply to a kind of case, and how each is invoked. {M}: model, {NPY}: input file,
# {DATA}: sample directory, {S}: statistics file, {OUT}: an empty directory for outputs.
COMMANDS = {
    "inspect": ["inspect", "{M}"],
    "run": ["run", "{M}", "--input", "x={NPY}", "-o", "{OUT}/run"],
    "run_data": ["run", "{M}", "--data", "{DATA}", "-o", "{OUT}/run"],
    "compare": ["compare", "{M}", "{M}", "--data", "{DATA}"],
    "quantize_dynamic": ["quantize", "{M}", "-o", "{OUT}/q.onnx", "--mode", "dynamic"],
    "quantize_check": ["quantize", "{M}", "-o", "{OUT}/q.onnx", "--mode", "dynamic", "--check", "{DATA}"],
    "quantize_static": ["quantize", "{M}", "-o", "{OUT}/q.onnx", "--mode", "static", "--calib", "{DATA}"],
    "calibrate": ["calibrate", "{M}", "--calib", "{DATA}", "-o", "{OUT}/stats.json"],
    "bench": ["bench", "{M}", "--input", "x={NPY}"] + FAST_BENCH,
    "quantize_stats": ["quantize", "{M}", "-o", "{OUT}/q.onnx", "--mode", "static", "--stats", "{S}"],
    "calibrate_merge": ["calibrate", "--merge", "{S}", "{S}", "-o", "{OUT}/merged.json"],
}
DEFAULT_COMMANDS = {
    "model": ["inspect", "run", "run_data", "compare", "quantize_dynamic", "quantize_static", "calibrate", "bench"],
    "npy": ["run", "run_data", "compare", "quantize_check", "quantize_static", "calibrate", "bench"],
    "pb": ["run", "bench"],
    "npz": ["run_data", "compare", "calibrate", "quantize_static", "quantize_check"],
    "stats": ["quantize_stats", "calibrate_merge"],
}


def limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def run(qk, args):
    try:
        p = subprocess.run([qk] + args, capture_output=True, timeout=TIMEOUT_S, preexec_fn=limit_address_space)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return "timeout", "", ""


def stats_cases(corpus_dir, good_stats):
    """Malformed statistics files derived from a real one: (name, text, expect, commands)."""
    text = open(good_stats).read()
    j = json.loads(text)
    tensor = sorted(j["tensors"])[0]

    def mutated(fn):
        k = json.loads(text)
        fn(k)
        return json.dumps(k)

    def set_tensor(key, value):
        return lambda k: k["tensors"][tensor].__setitem__(key, value)

    def set_hist(key, value):
        return lambda k: k["tensors"][tensor]["histogram"].__setitem__(key, value)

    return [
        ("stats_not_json", "this is { not json", r"stats\.json.*(JSON|json|parse)", None),
        ("stats_empty", "", r"stats\.json", None),
        ("stats_truncated", text[: len(text) // 2], r"stats\.json.*(JSON|json|parse)", None),
        ("stats_wrong_format", mutated(lambda k: k.__setitem__("format", "something-else")), r"stats\.json.*format", None),
        ("stats_wrong_version", mutated(lambda k: k.__setitem__("version", 99)), r"stats\.json.*version", None),
        ("stats_tensor_not_object", mutated(lambda k: k["tensors"].__setitem__(tensor, 5)),
         rf"stats\.json.*'{tensor}'", None),
        ("stats_negative_runs", mutated(set_tensor("runs", -1)), r"stats\.json.*'runs'", None),
        ("stats_min_out_of_range", mutated(set_tensor("min", 1e300)), r"stats\.json.*'min'", None),
        ("stats_histogram_bins_huge", mutated(set_hist("bins", 1 << 40)), r"stats\.json.*(bins|histogram)", None),
        ("stats_histogram_offset_past_bins", mutated(set_hist("offset", 1 << 62)),
         r"stats\.json.*(offset|histogram|counts)", None),
        ("stats_deep_nesting", "[" * 100000 + "]" * 100000, r"stats\.json", None),
        ("stats_other_model", mutated(lambda k: k["model"].__setitem__("sha256", "0" * 64)),
         r"different model", ["quantize_stats"]),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("quantkit")
    ap.add_argument("--keep", help="write the corpus here and keep it")
    ap.add_argument("--filter", default="")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    qk = os.path.abspath(args.quantkit)
    tmp = args.keep or tempfile.mkdtemp(prefix="qk_corpus_")
    if args.keep and os.path.exists(tmp):
        shutil.rmtree(tmp)
    try:
        return run_all(qk, tmp, args)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def run_all(qk, tmp, args):
    corpus_dir = os.path.join(tmp, "corpus")
    os.makedirs(corpus_dir)
    subprocess.run([sys.executable, os.path.join(HERE, "make_corpus.py"), corpus_dir], check=True,
                   stdout=subprocess.DEVNULL)
    cases = json.load(open(os.path.join(corpus_dir, "manifest.json")))
    good_model = os.path.join(corpus_dir, "good", "model.onnx")
    good_data = os.path.join(corpus_dir, "good", "data")
    good_npy = os.path.join(good_data, "x.npy")

    failures = []
    # The good model must pass every command, or the corpus tests nothing.
    good_stats = os.path.join(tmp, "good_stats.json")
    rc, _, err = run(qk, ["calibrate", good_model, "--calib", good_data, "-o", good_stats])
    if rc != 0:
        failures.append(f"good model: calibrate failed: {err.strip()}")
        print("\n".join(failures))
        return 1
    for cmd in DEFAULT_COMMANDS["model"] + ["quantize_check", "quantize_stats", "calibrate_merge"]:
        out = tempfile.mkdtemp(dir=tmp)
        argv = [a.format(M=good_model, NPY=good_npy, DATA=good_data, S=good_stats, OUT=out) for a in COMMANDS[cmd]]
        rc, _, err = run(qk, argv)
        if rc != 0:
            failures.append(f"good model: {cmd} failed ({rc}): {err.strip()[:300]}")

    for name, text, expect, commands in stats_cases(corpus_dir, good_stats):
        d = os.path.join(corpus_dir, name)
        os.makedirs(d)
        with open(os.path.join(d, "stats.json"), "w") as f:
            f.write(text)
        case = {"name": name, "kind": "stats", "file": os.path.join(name, "stats.json"), "expect": expect,
                "inspect_ok": False}
        if commands:
            case["commands"] = commands
        cases.append(case)

    checked = 0
    for case in cases:
        if args.filter not in case["name"]:
            continue
        kind = case["kind"]
        path = os.path.join(corpus_dir, case["file"])
        files = {"M": good_model, "NPY": good_npy, "DATA": good_data, "S": good_stats}
        if kind == "model":
            files["M"] = path
        elif kind in ("npy", "pb"):
            files["NPY"] = path
            files["DATA"] = os.path.dirname(path)
        elif kind == "npz":
            files["DATA"] = os.path.dirname(path)
        elif kind == "stats":
            files["S"] = path
        for cmd in case.get("commands", DEFAULT_COMMANDS[kind]):
            out = tempfile.mkdtemp(dir=tmp)
            argv = [a.format(OUT=out, **files) for a in COMMANDS[cmd]]
            rc, stdout, err = run(qk, argv)
            checked += 1
            where = f"{case['name']} / {cmd}"
            if args.v:
                print(f"{where}: {rc}: {err.strip()}")
            if cmd == "inspect" and case["inspect_ok"]:
                if rc != 0:
                    failures.append(f"{where}: inspect should succeed, exit {rc}: {err.strip()[:300]}")
                continue
            lines = err.splitlines()
            if rc != 2:
                failures.append(f"{where}: exit {rc} (want 2): {err.strip()[:400]}")
            elif len(lines) != 1 or not lines[0].startswith("quantkit: error: "):
                failures.append(f"{where}: want one 'quantkit: error:' line, got {len(lines)}: {err[:400]}")
            elif not re.search(case["expect"], lines[0]):
                failures.append(f"{where}: message does not match /{case['expect']}/: {lines[0][:400]}")
            left = [os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs]
            if left:
                failures.append(f"{where}: output left behind: {left}")
    for f in failures:
        print("FAIL", f)
    print(f"corpus_test: {len(cases)} cases, {checked} command runs, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
