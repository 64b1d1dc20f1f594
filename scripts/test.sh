#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs dependencies, builds Release, fetches the
# real models, runs unit + conformance + real-model tests, then the unit tests under ASan+UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

scripts/setup.sh
scripts/fetch_models.sh

echo "== Release: unit, conformance and real-model tests"
ctest --test-dir build --output-on-failure -j "$JOBS"

echo "== ASan+UBSan: unit tests"
scripts/setup.sh --sanitize --build-dir build-asan --target unit_tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS" -L unit
