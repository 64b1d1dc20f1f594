#!/usr/bin/env bash
# Outputs are safe: identical inputs and settings give byte-identical models and statistics
# (quantize dynamic and static, calibrate); no command writes over one of its inputs, however the
# path is spelled (./, .., symlink, hard link); a failing command leaves an existing output file
# untouched and no temporary files behind. Usage: output_safety_test.sh path/to/quantkit
set -u
QK=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

mkdir -p "$T/m" "$T/data" "$T/out"
cp "$ROOT/assets/fashion_mnist_cnn.onnx" "$T/m/cnn.onnx"
M=$T/m/cnn.onnx
$PY -c "
import numpy as np
rng = np.random.default_rng(7)
for i in range(3):
    np.save('$T/data/s%d.npy' % i, rng.random((1, 1, 28, 28), dtype=np.float32))
"
SHA_BEFORE=$(sha256sum "$M" | cut -d' ' -f1)

# --- determinism: run everything twice, compare bytes
twice() {  # twice NAME OUTPUT_A OUTPUT_B -- COMMAND with @OUT@ for the output
  local name=$1 a=$2 b=$3
  shift 4
  local o
  for o in "$a" "$b"; do
    if ! "${@//@OUT@/$o}" >"$T/stdout" 2>"$T/stderr"; then bad "$name: $(cat "$T/stderr")"; return; fi
  done
  if cmp -s "$a" "$b"; then ok; else bad "$name: two runs gave different bytes"; fi
}
twice "quantize dynamic" "$T/out/d1.onnx" "$T/out/d2.onnx" -- "$QK" quantize "$M" -o @OUT@ --mode dynamic --op-types Conv,Gemm
twice "calibrate" "$T/out/s1.json" "$T/out/s2.json" -- "$QK" calibrate "$M" --calib "$T/data" -o @OUT@ --method entropy
twice "quantize static --stats" "$T/out/st1.onnx" "$T/out/st2.onnx" -- "$QK" quantize "$M" -o @OUT@ --mode static --stats "$T/out/s1.json" --method entropy
twice "quantize static --calib" "$T/out/sc1.onnx" "$T/out/sc2.onnx" -- "$QK" quantize "$M" -o @OUT@ --mode static --calib "$T/data"
# Different thread counts must not change the statistics either.
"$QK" calibrate "$M" --calib "$T/data" -o "$T/out/s_t1.json" --method entropy --threads 1 >/dev/null 2>&1 &&
  "$QK" calibrate "$M" --calib "$T/data" -o "$T/out/s_t2.json" --method entropy --threads 2 >/dev/null 2>&1 &&
  cmp -s "$T/out/s_t1.json" "$T/out/s_t2.json" && ok || bad "calibrate: --threads 1 and 2 give different statistics"
ls "$T/out" | grep -qv -E '^(d1|d2|st1|st2|sc1|sc2)\.onnx$|^(s1|s2|s_t1|s_t2)\.json$' &&
  bad "stray files in the output directory: $(ls "$T/out")" || ok

# --- refusing to overwrite an input
ln -s "$M" "$T/m/link.onnx"
ln "$M" "$T/m/hard.onnx"
refused() {  # refused NAME -- COMMAND
  local name=$1
  shift 2
  "$@" >"$T/stdout" 2>"$T/stderr"
  local rc=$?
  if [[ $rc -eq 2 && $(wc -l <"$T/stderr") -eq 1 ]] && grep -q "refusing to overwrite" "$T/stderr"; then ok
  else bad "$name: exit $rc: $(head -c 300 "$T/stderr")"; fi
}
for spelling in "$M" "$T/m/./cnn.onnx" "$T/m/../m/cnn.onnx" "$T/m/link.onnx" "$T/m/hard.onnx"; do
  refused "quantize dynamic -o $spelling" -- "$QK" quantize "$M" -o "$spelling" --mode dynamic
  refused "quantize static -o $spelling" -- "$QK" quantize "$M" -o "$spelling" --mode static --stats "$T/out/s1.json"
  refused "calibrate -o $spelling" -- "$QK" calibrate "$M" --calib "$T/data" -o "$spelling"
done
pushd "$T/m" >/dev/null && refused "quantize -o relative" -- "$QK" quantize cnn.onnx -o ./cnn.onnx --mode dynamic
popd >/dev/null
refused "quantize static -o STATS" -- "$QK" quantize "$M" -o "$T/out/s1.json" --mode static --stats "$T/out/s1.json"
refused "calibrate --merge -o INPUT" -- "$QK" calibrate --merge "$T/out/s1.json" "$T/out/s2.json" -o "$T/out/s2.json"
[[ $(sha256sum "$M" | cut -d' ' -f1) == "$SHA_BEFORE" ]] && ok || bad "the input model changed"

# --- a failing command leaves an existing output as it was, and no temporary files
printf 'not a model' >"$T/m/broken.onnx"
cp "$T/out/d1.onnx" "$T/out/keep.onnx"
"$QK" quantize "$T/m/broken.onnx" -o "$T/out/keep.onnx" --mode dynamic >/dev/null 2>&1
cmp -s "$T/out/d1.onnx" "$T/out/keep.onnx" && ok || bad "failed quantize changed the existing output"
mkdir -p "$T/bad_data"
printf 'garbage' >"$T/bad_data/x.npy"
"$QK" quantize "$M" -o "$T/out/keep.onnx" --mode dynamic --op-types Gemm --check "$T/bad_data" >/dev/null 2>&1
[[ ! -e "$T/out/keep.onnx" ]] && ok || bad "a failed --check left its output behind"
cp "$T/out/s1.json" "$T/out/keep.json"
"$QK" calibrate "$M" --calib "$T/bad_data" -o "$T/out/keep.json" >/dev/null 2>&1
cmp -s "$T/out/s1.json" "$T/out/keep.json" && ok || bad "failed calibrate changed the existing output"
"$QK" quantize "$M" -o "$T/no/such/dir/q.onnx" --mode dynamic >/dev/null 2>"$T/stderr"
[[ $? -eq 2 ]] && ok || bad "-o into a missing directory: $(cat "$T/stderr")"
find "$T" -name '*.tmp*' | grep -q . && bad "temporary files left: $(find "$T" -name '*.tmp*')" || ok

echo "output_safety_test: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
