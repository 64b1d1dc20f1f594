#!/usr/bin/env bash
# Installs everything quantkit needs on a fresh Debian 12 machine and builds it.
#
#   scripts/setup.sh [--no-build] [--build-dir DIR] [--sanitize] [--target T]
#
#   --no-build       only install the dependencies (apt packages, onnxruntime-node)
#   --build-dir DIR  build directory (default: build, or build-asan with --sanitize)
#   --sanitize       configure with -DQUANTKIT_SANITIZE=ON (ASan + UBSan)
#   --target T       ninja target to build (default: all)
#
# Idempotent: apt-get runs only when a package is missing (and `apt-get update`
# only then), npm only when onnxruntime-node is missing or at another version,
# and the build is incremental.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=1
BUILD_DIR=""
SANITIZE=OFF
TARGET=""

usage() { sed -n '2,13s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --build-dir) [[ $# -ge 2 ]] || { echo "setup.sh: --build-dir needs a value" >&2; exit 2; }
                 BUILD_DIR="$2"; shift ;;
    --build-dir=*) BUILD_DIR="${1#*=}" ;;
    --sanitize) SANITIZE=ON ;;
    --target) [[ $# -ge 2 ]] || { echo "setup.sh: --target needs a value" >&2; exit 2; }
              TARGET="$2"; shift ;;
    --target=*) TARGET="${1#*=}" ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$BUILD_DIR" ]]; then
  if [[ "$SANITIZE" == ON ]]; then BUILD_DIR=build-asan; else BUILD_DIR=build; fi
fi
[[ "$BUILD_DIR" = /* ]] || BUILD_DIR="$REPO/$BUILD_DIR"

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup.sh: must run as root (or with sudo available)" >&2; exit 1; fi
fi

# ---------------------------------------------------------------- apt packages
APT_PACKAGES=(
  build-essential cmake ninja-build g++ pkg-config
  libonnx-dev libprotobuf-dev protobuf-compiler
  libcli11-dev nlohmann-json3-dev libfmt-dev zlib1g-dev libpng-dev libjpeg-dev
  libgtest-dev libgmock-dev libbenchmark-dev libdnnl-dev
  libonnx-testdata python3-numpy python3-onnx dataset-fashion-mnist
  ca-certificates
  # bench/run: torch models and peers, rendered OCR text (incl. a CJK font), speech for the VAD,
  # real photos for BlazeFace/M-LSD (opencv-doc's example images)
  # (libopenblas0-pthread: Debian's PyTorch calls the system BLAS, the reference one without it)
  python3-torch python3-torchvision libopenblas0-pthread python3-pil espeak-ng sox
  fonts-droid-fallback fonts-dejavu-core opencv-doc
  # scripts/test.sh: the clang ASan+UBSan+libFuzzer and TSan stages
  clang libclang-rt-14-dev
  # bench/run: /usr/bin/time measures calibration's peak RSS (a child forked from Python would
  # inherit Python's high-water mark)
  time
)
# Node.js and npm may come from somewhere other than Debian's packages (the
# nodesource build bundles npm and conflicts with Debian's npm package): only
# ask apt for them when the commands are missing.
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii'; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: apt packages ok"
fi

# ------------------------------------------------------------ onnxruntime-node
# Pinned in package.json / package-lock.json at the repo root; used by
# tools/ort_run.js as the reference for the real-model tests.
ORT_VERSION="$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' "$REPO/package.json")"
ort_ok() {
  local pj="$REPO/node_modules/onnxruntime-node/package.json"
  [[ -f "$pj" ]] || return 1
  (cd "$REPO" && node -e '
    const v = require("onnxruntime-node/package.json").version;
    if (v !== process.argv[1]) process.exit(1);
    require("onnxruntime-node");' "$ORT_VERSION") >/dev/null 2>&1
}
if ort_ok; then
  echo "setup: onnxruntime-node $ORT_VERSION ok"
else
  echo "setup: installing onnxruntime-node $ORT_VERSION into $REPO/node_modules"
  # The package's postinstall would download optional GPU binaries from outside
  # the npm registry; the CPU build is bundled, so skip that step.
  export ONNXRUNTIME_NODE_INSTALL=skip
  log="$(mktemp)"
  if [[ -f "$REPO/package-lock.json" ]]; then npm_cmd=(npm ci); else npm_cmd=(npm install); fi
  if ! (cd "$REPO" && "${npm_cmd[@]}" --ignore-scripts --no-audit --no-fund >"$log" 2>&1); then
    cat "$log" >&2; rm -f "$log"; echo "setup: npm failed" >&2; exit 1
  fi
  rm -f "$log"
  ort_ok || { echo "setup: onnxruntime-node does not load after install" >&2; exit 1; }
fi

# ----------------------------------------------------------------------- build
if [[ "$BUILD" -eq 1 ]]; then
  log="$(mktemp)"
  if ! cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       -DQUANTKIT_SANITIZE="$SANITIZE" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "setup: cmake configure failed" >&2; exit 1
  fi
  echo "setup: building ${TARGET:-all} in $BUILD_DIR (sanitize=$SANITIZE)"
  if ! ninja -C "$BUILD_DIR" ${TARGET:+"$TARGET"} >"$log" 2>&1; then
    grep -E 'error|FAILED' "$log" | head -40 >&2 || true
    echo "setup: build failed (full log: $log)" >&2; exit 1
  fi
  rm -f "$log"
  if [[ -n "$TARGET" ]]; then
    echo "setup: done ($TARGET in $BUILD_DIR)"
  else
    [[ -x "$BUILD_DIR/quantkit" ]] || { echo "setup: $BUILD_DIR/quantkit was not built" >&2; exit 1; }
    echo "setup: done ($BUILD_DIR/quantkit)"
  fi
else
  echo "setup: done (dependencies only)"
fi
