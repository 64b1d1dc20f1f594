#!/usr/bin/env bash
# Runs the libFuzzer targets of a QUANTKIT_FUZZ build for a while each and prints how many inputs
# each executed. A crash, leak, sanitizer report or timeout stops that target, keeps the input in
# BUILD/fuzz-artifacts/<target>/ and makes the script fail; add the input to
# fuzz/regressions/<target>/ once it is fixed (ctest replays that folder in every build).
#
#   fuzz/run_fuzzers.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]
#     TARGET: onnx_import npy npz calib_stats (default: all)
#   FUZZ_EXTRA_SEEDS=1  also seed the importer with every model of Debian's libonnx-testdata
#
# New interesting inputs accumulate in BUILD/fuzz-corpus/<target>/, so later runs continue
# where earlier ones stopped.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$1
SECONDS_PER_TARGET=$2
shift 2
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=(onnx_import npy npz calib_stats)

status=0
for t in "${TARGETS[@]}"; do
  bin=$BUILD/fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "run_fuzzers: $bin not built (configure with -DQUANTKIT_FUZZ=ON)" >&2; exit 2; }
  corpus=$BUILD/fuzz-corpus/$t
  artifacts=$BUILD/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  seeds=("$ROOT/fuzz/seeds/$t")
  [[ -d $ROOT/fuzz/regressions/$t ]] && seeds+=("$ROOT/fuzz/regressions/$t")
  if [[ $t == onnx_import && ${FUZZ_EXTRA_SEEDS:-0} == 1 ]]; then
    mkdir -p "$BUILD/fuzz-extra-seeds"
    for f in /usr/share/libonnx-testdata/data/*/*/model.onnx; do
      cp -n "$f" "$BUILD/fuzz-extra-seeds/$(basename "$(dirname "$f")").onnx"
    done
    seeds+=("$BUILD/fuzz-extra-seeds")
  fi
  dict=()
  [[ -f $ROOT/fuzz/dictionaries/$t.dict ]] && dict=(-dict="$ROOT/fuzz/dictionaries/$t.dict")
  log=$BUILD/fuzz-$t.log
  # -rss_limit_mb: an input that makes a parser allocate more than this is a finding too.
  "$bin" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz $t: ${execs:-?} executions in ${SECONDS_PER_TARGET}s, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l) files, exit $rc"
  if [[ $rc -ne 0 ]]; then
    status=1
    grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -20
    echo "  full log: $log"
  fi
done
exit $status
