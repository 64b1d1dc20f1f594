#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs dependencies, builds Release, fetches the
# real models, runs unit + conformance + real-model + robustness tests; then one clang build with
# ASan+UBSan and libFuzzer instrumentation runs the unit tests, the fuzz regressions and each
# fuzzer for FUZZ_SECONDS (default 10); then a ThreadSanitizer build runs the concurrency test.
# Each stage prints its wall time (docs/security.md). CI_TSAN=0 skips the TSan stage (about 5 min
# of a 2-core machine: it rebuilds the library instrumented).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
CI_TSAN=${CI_TSAN:-1}
T_START=$SECONDS
stage_start=$SECONDS
stage_done() { echo "== $1: $((SECONDS - stage_start)) s"; stage_start=$SECONDS; }

scripts/setup.sh
scripts/fetch_models.sh
stage_done "setup (dependencies, Release build, models)"

echo "== Release: unit, conformance, real-model, CLI and robustness tests"
ctest --test-dir build --output-on-failure -j "$JOBS"
stage_done "Release tests"

echo "== clang ASan+UBSan (+ fuzzer instrumentation): unit tests, fuzz regressions, fuzzers"
FUZZ_TARGETS=(fuzz_onnx_import fuzz_npy fuzz_npz fuzz_calib_stats)
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release \
  -DQUANTKIT_SANITIZE=ON -DQUANTKIT_FUZZ=ON >/dev/null
ninja -C build-fuzz -j "$JOBS" unit_tests "${FUZZ_TARGETS[@]}" >build-fuzz/build.log 2>&1 ||
  { grep -E 'error|FAILED' build-fuzz/build.log | head -40; exit 1; }
stage_done "ASan build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-fuzz --output-on-failure -j "$JOBS" -L unit
stage_done "ASan unit tests + fuzz regressions"
fuzz/run_fuzzers.sh build-fuzz "$FUZZ_SECONDS"
stage_done "fuzzers (${FUZZ_SECONDS} s each)"

if [[ $CI_TSAN == 1 ]]; then
echo "== ThreadSanitizer: one session run from 4 threads"
cmake -S . -B build-tsan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Release -DQUANTKIT_TSAN=ON >/dev/null
ninja -C build-tsan -j "$JOBS" session_threads_test >build-tsan/build.log 2>&1 ||
  { grep -E 'error|FAILED' build-tsan/build.log | head -40; exit 1; }
ctest --test-dir build-tsan --output-on-failure -L tsan
stage_done "TSan build + test"
fi
echo "== all tests passed in $((SECONDS - T_START)) s"
