#!/usr/bin/env bash
# Bad input to every CLI command: exit code 2, exactly one line on stderr naming the problem,
# no output files written. Usage: cli_errors.sh path/to/quantkit
set -u
QK=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
pass=0

# expect_error NAME SUBSTRING -- COMMAND...
expect_error() {
  local name=$1 want=$2
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$T/err")
  if [[ $rc -ne 2 || $lines -ne 1 ]] || ! grep -q -- "$want" "$T/err"; then
    echo "FAIL $name: exit $rc, $lines stderr lines: $(head -c 300 "$T/err")"
    fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
}

printf 'not a model' >"$T/garbage.onnx"
head -c 100 /usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding/model.onnx >"$T/trunc.onnx"
GOOD=/usr/share/libonnx-testdata/data/node/test_relu/model.onnx
printf '\x93NUMPY\x01\x00\x10\x00{bad header}   \n' >"$T/bad.npy"
/usr/bin/python3 -c "import numpy as np; np.save('$T/wrong_dtype.npy', np.zeros((3,4,5), np.int32)); np.save('$T/wrong_shape.npy', np.zeros((2,2), np.float32))"

expect_error inspect-missing "nope.onnx" -- "$QK" inspect "$T/nope.onnx"
expect_error inspect-garbage "garbage.onnx" -- "$QK" inspect "$T/garbage.onnx"
expect_error inspect-truncated "trunc.onnx" -- "$QK" inspect "$T/trunc.onnx"
expect_error run-no-args "required" -- "$QK" run
expect_error run-bad-input-arg "NAME=FILE" -- "$QK" run "$GOOD" --input x -o "$T/o1"
expect_error run-missing-npy "missing.npy" -- "$QK" run "$GOOD" --input x="$T/missing.npy" -o "$T/o2"
expect_error run-bad-npy "bad.npy" -- "$QK" run "$GOOD" --input x="$T/bad.npy" -o "$T/o3"
expect_error run-wrong-dtype "float32" -- "$QK" run "$GOOD" --input x="$T/wrong_dtype.npy" -o "$T/o4"
expect_error run-wrong-shape "shape" -- "$QK" run "$GOOD" --input x="$T/wrong_shape.npy" -o "$T/o5"
expect_error run-unknown-input "no input 'nosuch'" -- "$QK" run "$GOOD" --input nosuch="$T/wrong_shape.npy" -o "$T/o6"
expect_error run-missing-input "not given" -- "$QK" run "$GOOD" -o "$T/o7"
expect_error compare-missing-data "does not exist" -- "$QK" compare "$GOOD" "$GOOD" --data "$T/none"
expect_error unknown-command "" -- "$QK" frobnicate
for d in o1 o2 o3 o4 o5 o6 o7; do
  if [[ -e "$T/$d" ]] && [[ -n "$(ls -A "$T/$d")" ]]; then echo "FAIL output written to $d"; fail=$((fail + 1)); fi
done
echo "cli_errors: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
