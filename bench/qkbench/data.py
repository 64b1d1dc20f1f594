"""Data with ground truth, generated from Debian packages and reproducible by seed.

Every generator writes a sample directory (sub-folders <sample>/<input>.npy, in run order) plus
truth.json, into CACHE/data/<name>/. Calibration and evaluation sets use different seeds (and, for
photos and Fashion-MNIST, different files). A set is regenerated only when its parameters change.

  ocr_rec   text lines rendered with PIL (Droid Sans Fallback for CJK, DejaVu for Latin), characters
            from ppocr_keys_v1.txt, 48 px high, padded to 320, (x/255-0.5)/0.5 in BGR as PaddleOCR
  ocr_det   pages with text lines at known boxes, DB preprocessing (ImageNet mean/std, BGR)
  ocr_cls   rec-style crops rotated by 0 or 180 degrees, 48x192 (the classifier's input)
  vad       espeak-ng sentences with pauses, pink noise from sox, 16 kHz, 512-sample frames
  fashion   Fashion-MNIST (dataset-fashion-mnist) normalised as the bundled CNN expects
  photos    opencv-doc's example photos, square crops (BlazeFace, M-LSD, ImageNet CNNs)
  tensor    seeded normal noise of a given shape (encoder, LSTM)
"""

import gzip
import math
import os
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from .common import CACHE, MODELS_DIR, BenchError, load_json, log, safe_name, save_json, write_samples

GENERATOR_VERSION = 3  # bump when a generator changes its output

FONT_CJK = "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"
FONTS_LATIN = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
]
PHOTO_DIR = "/usr/share/doc/opencv-doc/examples/data"
# Evaluation and calibration photos are different files.
PHOTOS_EVAL = ["messi5.jpg", "HappyFish.jpg", "baboon.jpg", "fruits.jpg", "building.jpg", "home.jpg",
               "board.jpg", "butterfly.jpg", "starry_night.jpg", "squirrel_cls.jpg", "aero1.jpg", "sudoku.png"]
PHOTOS_CALIB = ["apple.jpg", "orange.jpg", "lena.jpg", "stuff.jpg", "leuvenA.jpg", "box_in_scene.png",
                "graf1.png", "smarties.png", "pic1.png", "left01.jpg"]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# ---------------------------------------------------------------------------------------- cache


def cached(name, params, make):
    """Returns CACHE/data/<name>, calling make(dir) -> truth to (re)build it when params differ."""
    root = os.path.join(CACHE, "data", name)
    meta = dict(params, generator_version=GENERATOR_VERSION)
    if load_json(os.path.join(root, "params.json")) == meta and os.path.isfile(os.path.join(root, "truth.json")):
        return root
    log(f"making data set {name} {params}")
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    truth = make(root)
    save_json(os.path.join(root, "truth.json"), truth)
    save_json(os.path.join(root, "params.json"), meta)
    return root


def samples_dir(root):
    return os.path.join(root, "samples")


def truth_of(root):
    return load_json(os.path.join(root, "truth.json"))

# ----------------------------------------------------------------------------------------- text


def load_keys():
    path = os.path.join(MODELS_DIR, "ppocr_keys_v1.txt")
    if not os.path.isfile(path):
        raise BenchError(f"{path} missing (run scripts/fetch_models.sh)")
    with open(path, encoding="utf-8") as f:
        keys = f.read().split("\n")
    if keys and keys[-1] == "":
        keys.pop()
    return keys


def _need_pil():
    try:
        from PIL import Image, ImageDraw, ImageFont  # noqa: F401
    except ImportError:
        raise BenchError("python3-pil is not installed (scripts/setup.sh installs it)") from None
    for f in [FONT_CJK] + FONTS_LATIN:
        if not os.path.isfile(f):
            raise BenchError(f"font {f} missing (scripts/setup.sh installs fonts-droid-fallback, fonts-dejavu-core)")


class TextSource:
    """Random strings over the recogniser's dictionary: Chinese phrases (with digits), Latin words
    with digits and punctuation, dates and amounts. Only characters in ppocr_keys_v1.txt."""

    SYLLABLES = ["ka", "ter", "mon", "lo", "ri", "san", "de", "vi", "na", "bel", "cor", "pu", "sta", "gen",
                 "tor", "mi", "la", "fen", "ro", "qui", "ex", "al", "pha", "zo", "ben", "dru", "win", "har"]

    def __init__(self, keys):
        kset = set(keys)
        self.cjk = [k for k in keys if len(k) == 1 and 0x4E00 <= ord(k) <= 0x9FFF]
        self.digits = [c for c in "0123456789" if c in kset]
        self.punct = [c for c in ".:-/%()" if c in kset]
        self.kset = kset

    def chinese(self, rng):
        n = int(rng.integers(3, 10))
        s = "".join(rng.choice(self.cjk, n))
        if rng.random() < 0.3:
            k = int(rng.integers(0, len(s) + 1))
            s = s[:k] + "".join(rng.choice(self.digits, int(rng.integers(1, 5)))) + s[k:]
        return s

    def latin(self, rng):
        word = "".join(rng.choice(self.SYLLABLES, int(rng.integers(2, 5))))
        if rng.random() < 0.5:
            word = word.capitalize()
        if rng.random() < 0.3:
            word = word.upper()
        r = rng.random()
        if r < 0.4:
            word += rng.choice(["-", "/", ":", "."]) + "".join(rng.choice(self.digits, int(rng.integers(1, 5))))
        elif r < 0.6:
            word = "".join(rng.choice(self.digits, int(rng.integers(1, 4)))) + word
        return word[:14]

    def number(self, rng):
        kind = rng.integers(0, 3)
        if kind == 0:
            return f"{rng.integers(1990, 2030)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        if kind == 1:
            return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}"
        return f"{rng.integers(1, 9999)}.{rng.integers(0, 100):02d}%"

    def line(self, rng):
        """(text, Latin font path). CJK characters are always drawn with Droid Sans Fallback (which
        has no Latin glyphs), everything else with the Latin font."""
        r = rng.random()
        text = self.chinese(rng) if r < 0.5 else self.latin(rng) if r < 0.85 else self.number(rng)
        assert all(c in self.kset for c in text), text
        return text, FONTS_LATIN[int(rng.integers(0, len(FONTS_LATIN)))]


_FONT_CACHE = {}


def _font(path, size):
    from PIL import ImageFont
    key = (path, size)
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(path, size)
    return _FONT_CACHE[key]


def _runs(text):
    """Splits text into runs of CJK / other characters: [(is_cjk, run)]."""
    runs = []
    for c in text:
        cjk = 0x4E00 <= ord(c) <= 0x9FFF
        if runs and runs[-1][0] == cjk:
            runs[-1] = (cjk, runs[-1][1] + c)
        else:
            runs.append((cjk, c))
    return runs


def render_line(rng, text, latin_font, size=40):
    """A cropped RGB text-line image (uint8 HxWx3): dark text on a light, slightly noisy background.
    CJK runs use Droid Sans Fallback, the rest `latin_font`, on one baseline."""
    from PIL import Image, ImageDraw
    pieces, x = [], 0.0
    for cjk, run in _runs(text):
        font = _font(FONT_CJK if cjk else latin_font, size)
        pieces.append((x, run, font, font.getbbox(run, anchor="ls")))
        x += font.getlength(run)
    left = min(x0 + b[0] for x0, _, _, b in pieces)
    right = max(x0 + b[2] for x0, _, _, b in pieces)
    top = min(b[1] for _, _, _, b in pieces)
    bottom = max(b[3] for _, _, _, b in pieces)
    pad_x, pad_y = int(rng.integers(3, 12)), int(rng.integers(3, 10))
    w, h = int(math.ceil(right - left)) + 2 * pad_x, bottom - top + 2 * pad_y
    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 70, 3))
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    for x0, run, font, _ in pieces:
        draw.text((pad_x - left + x0, pad_y - top), run, font=font, fill=fg, anchor="ls")
    a = np.asarray(img, np.float32) + rng.normal(0, 4.0, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def paddle_normalise(rgb_u8):
    """PaddleOCR's rec/cls normalisation on its BGR input: (x/255 - 0.5)/0.5, CHW float32."""
    bgr = rgb_u8[:, :, ::-1].astype(np.float32)
    return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def resize_pad(rgb_u8, height, width):
    """PaddleOCR's resize_norm_img: keep the aspect ratio at `height`, at most `width` wide, then
    normalise and zero-pad on the right to `width`. Returns CHW float32."""
    from PIL import Image
    h, w = rgb_u8.shape[:2]
    new_w = min(width, int(math.ceil(height * w / h)))
    img = Image.fromarray(rgb_u8).resize((new_w, height), Image.BILINEAR)
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = paddle_normalise(np.asarray(img))
    return out


def make_ocr_rec(count, batch, seed, width=320):
    """Text lines for the recogniser, `batch` lines per sample; truth = the strings."""
    def make(root):
        _need_pil()
        rng = np.random.default_rng(seed)
        src = TextSource(load_keys())
        texts, crops = [], []
        while len(texts) < count:
            text, font = src.line(rng)
            img = render_line(rng, text, font, size=int(rng.integers(28, 48)))
            if img.shape[1] * 48 / img.shape[0] > width:  # would be squeezed: draw a shorter line
                continue
            texts.append(text)
            crops.append(resize_pad(img, 48, width))
        samples = [(f"b{i // batch:04d}", {"x": np.stack(crops[i:i + batch])}) for i in range(0, count, batch)]
        write_samples(samples_dir(root), samples)
        return {"texts": texts, "batch": batch}
    return cached(f"ocr_rec_s{seed}_n{count}", {"count": count, "batch": batch, "seed": seed, "width": width}, make)


def make_ocr_cls(count, batch, seed, width=192):
    """Text lines rotated by 0 or 180 degrees (label 0 / 1), classifier preprocessing."""
    def make(root):
        _need_pil()
        rng = np.random.default_rng(seed)
        src = TextSource(load_keys())
        labels, crops = [], []
        while len(labels) < count:
            text, font = src.line(rng)
            img = render_line(rng, text, font, size=int(rng.integers(28, 48)))
            if img.shape[1] * 48 / img.shape[0] > 2 * width:  # keep lines of a plausible length
                continue
            label = int(rng.integers(0, 2))
            if label:
                img = np.ascontiguousarray(img[::-1, ::-1])
            labels.append(label)
            crops.append(resize_pad(img, 48, width))
        samples = [(f"b{i // batch:04d}", {"x": np.stack(crops[i:i + batch])}) for i in range(0, count, batch)]
        write_samples(samples_dir(root), samples)
        return {"labels": labels, "batch": batch}
    return cached(f"ocr_cls_s{seed}_n{count}", {"count": count, "batch": batch, "seed": seed, "width": width}, make)


DET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
DET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def make_ocr_det(pages, seed, height=480, width=640):
    """Pages with 5..10 text lines at known, non-overlapping positions; truth = ink boxes [x0,y0,x1,y1]."""
    def make(root):
        _need_pil()
        from PIL import Image
        rng = np.random.default_rng(seed)
        src = TextSource(load_keys())
        samples, boxes_all = [], []
        for p in range(pages):
            page = np.empty((height, width, 3), np.float32)
            base = rng.integers(200, 256, 3).astype(np.float32)
            yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
            for c in range(3):  # paper with a gentle gradient
                page[:, :, c] = base[c] - 20 * (yy / height) * rng.random() - 15 * (xx / width) * rng.random()
            boxes = []
            tries = 0
            target = int(rng.integers(5, 11))
            while len(boxes) < target and tries < 200:
                tries += 1
                text, font = src.line(rng)
                img = render_line(rng, text, font, size=int(rng.integers(18, 40)))
                h, w = img.shape[:2]
                if w > width - 20 or h > height - 20:
                    continue
                x0, y0 = int(rng.integers(5, width - w - 5)), int(rng.integers(5, height - h - 5))
                box = [x0, y0, x0 + w, y0 + h]
                if any(not (box[2] + 6 < b[0] or b[2] + 6 < box[0] or box[3] + 6 < b[1] or b[3] + 6 < box[1]) for b in boxes):
                    continue
                # Paste only the ink (darker than the line's own background) so the page stays one paper.
                ink = img.astype(np.float32).mean(axis=2)
                mask = (ink < ink.max() - 60)[:, :, None]
                region = page[y0:y0 + h, x0:x0 + w]
                page[y0:y0 + h, x0:x0 + w] = np.where(mask, img.astype(np.float32), region)
                ys, xs = np.nonzero(mask[:, :, 0])
                if len(ys) == 0:
                    continue
                boxes.append([x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1])
            page = np.clip(page + rng.normal(0, 3.0, page.shape), 0, 255)
            bgr = page[:, :, ::-1] / 255.0
            x = ((bgr - DET_MEAN) / DET_STD).transpose(2, 0, 1)[None].astype(np.float32)
            samples.append((f"p{p:03d}", {"x": x}))
            boxes_all.append(boxes)
            if p == 0:
                Image.fromarray(page.astype(np.uint8)).save(os.path.join(root, "page0.png"))
        write_samples(samples_dir(root), samples)
        return {"boxes": boxes_all}
    return cached(f"ocr_det_s{seed}_n{pages}", {"pages": pages, "seed": seed, "h": height, "w": width}, make)

# ---------------------------------------------------------------------------------------- audio

SENTENCES = [
    "The weather will stay dry for most of the week", "Please close the door when you leave the room",
    "Our train arrives at the central station at noon", "She found an old map inside the wooden box",
    "Turn left after the bridge and follow the river", "The meeting has been moved to Thursday morning",
    "He bought fresh bread and a bottle of milk", "Every evening the birds gather on the roof",
    "This model runs on a small computer without a fan", "We measured the latency of every network twice",
    "The library opens again after the summer holidays", "Keep the receipt until the package arrives",
    "A quiet voice can still carry across the hall", "The children painted the fence bright yellow",
    "Numbers in the report do not match the table", "Bring a warm coat because the nights are cold",
    "The engine starts slowly on frosty mornings", "Write the answer clearly at the bottom of the page",
    "Seven ships left the harbour before the storm", "The garden needs water after such a hot day",
]
VOICES = ["en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp"]
VARIANTS = ["", "+m3", "+f2", "+m7", "+f4"]
SR = 16000
FRAME = 512


def _need(tool, package):
    if not shutil.which(tool):
        raise BenchError(f"{tool} not found (scripts/setup.sh installs {package})")


def _read_wav(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise BenchError(f"{path}: expected 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0


def speech_track(seconds, seed, tmp):
    """Speech with pauses, and its segments. Returns (clean float32 audio at 16 kHz, [(start, end)])."""
    _need("espeak-ng", "espeak-ng")
    _need("sox", "sox")
    rng = np.random.default_rng(seed)
    total = int(seconds * SR)
    audio = np.zeros(total, np.float32)
    segments = []
    pos = int(rng.uniform(0.3, 1.5) * SR)
    k = 0
    while True:
        text = SENTENCES[int(rng.integers(0, len(SENTENCES)))]
        voice = VOICES[int(rng.integers(0, len(VOICES)))] + VARIANTS[int(rng.integers(0, len(VARIANTS)))]
        raw, wav = os.path.join(tmp, f"u{k}.wav"), os.path.join(tmp, f"u{k}_16k.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(rng.integers(135, 185))), "-p",
                        str(int(rng.integers(30, 70))), "-w", raw, text], check=True, capture_output=True)
        subprocess.run(["sox", raw, "-r", str(SR), "-c", "1", "-b", "16", wav], check=True, capture_output=True)
        x = _read_wav(wav)
        active = np.nonzero(np.abs(x) > 0.01)[0]
        if len(active) == 0:
            continue
        x = x[active[0]:active[-1] + 1] * rng.uniform(0.5, 1.0) / max(1e-6, float(np.abs(x).max()))
        if pos + len(x) > total:
            break
        audio[pos:pos + len(x)] = x
        segments.append((pos, pos + len(x)))
        pos += len(x) + int(rng.uniform(0.5, 2.5) * SR)
        k += 1
    return audio, segments


def noise_track(n, seed, tmp):
    """Pink noise from sox (repeatable mode), scaled later."""
    path = os.path.join(tmp, "noise.wav")
    subprocess.run(["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "16", path, "synth", f"{n / SR + 0.1:.3f}",
                    "pinknoise", "vol", "0.5"], check=True, capture_output=True)
    x = _read_wav(path)[:n]
    # sox's -R makes the noise repeatable but the same for every seed: shift it by the seed.
    return np.roll(x, int(seed * 7919) % n)


def make_vad(seconds, seed, snr_db=12.0):
    """`seconds` of speech + noise at 16 kHz in 512-sample frames (sample folders f000000, ... with
    input.npy [1, 512]); truth = per-frame speech labels (>= half the frame inside a segment)."""
    def make(root):
        with tempfile.TemporaryDirectory(prefix="qk_vad_") as tmp:
            clean, segments = speech_track(seconds, seed, tmp)
            noise = noise_track(len(clean), seed, tmp)
        speech_rms = float(np.sqrt(np.mean(np.concatenate([clean[a:b] for a, b in segments]) ** 2)))
        noise *= speech_rms / (float(np.sqrt(np.mean(noise ** 2))) * 10 ** (snr_db / 20))
        audio = np.clip(clean + noise, -1, 1).astype(np.float32)
        inside = np.zeros(len(audio), bool)
        for a, b in segments:
            inside[a:b] = True
        n_frames = len(audio) // FRAME
        labels = [int(inside[i * FRAME:(i + 1) * FRAME].mean() >= 0.5) for i in range(n_frames)]
        write_samples(samples_dir(root), [(f"f{i:06d}", {"input": audio[i * FRAME:(i + 1) * FRAME][None]})
                                          for i in range(n_frames)])
        with wave.open(os.path.join(root, "audio.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SR)
            w.writeframes((audio * 32767).astype(np.int16).tobytes())
        return {"labels": labels, "segments": segments, "frame": FRAME, "sr": SR, "snr_db": snr_db}
    return cached(f"vad_s{seed}_{seconds}s", {"seconds": seconds, "seed": seed, "snr_db": snr_db}, make)

# ------------------------------------------------------------------------------- Fashion-MNIST


def _load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def make_fashion(split, count, batch, offset=0):
    """Fashion-MNIST images normalised as assets/fashion_mnist_cnn.onnx expects, `batch` per sample."""
    def make(root):
        prefix = "t10k" if split == "test" else "train"
        images = os.path.join(FASHION_DIR, f"{prefix}-images-idx3-ubyte.gz")
        if not os.path.isfile(images):
            raise BenchError(f"{images} missing (scripts/setup.sh installs dataset-fashion-mnist)")
        x = _load_idx(images)[offset:offset + count].astype(np.float32) / 255.0
        y = _load_idx(os.path.join(FASHION_DIR, f"{prefix}-labels-idx1-ubyte.gz"))[offset:offset + count]
        x = ((x - 0.286) / 0.353)[:, None].astype(np.float32)
        write_samples(samples_dir(root), [(f"b{i // batch:04d}", {"image": x[i:i + batch]}) for i in range(0, len(x), batch)])
        return {"labels": [int(v) for v in y], "batch": batch}
    return cached(f"fashion_{split}_o{offset}_n{count}", {"split": split, "count": count, "batch": batch,
                                                          "offset": offset}, make)

# -------------------------------------------------------------------------------------- photos


def photo_crops(files, crops_per_file, size, seed):
    """Square RGB crops (uint8 size x size x 3) of opencv-doc's photos: the centre crop and random ones."""
    _need_pil()
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for name in files:
        path = os.path.join(PHOTO_DIR, name)
        if not os.path.isfile(path):
            continue  # lena.jpg & co. are not in every opencv-doc version
        img = Image.open(path).convert("RGB")
        w, h = img.size
        for k in range(crops_per_file):
            side = min(w, h) if k == 0 else int(min(w, h) * rng.uniform(0.5, 0.9))
            x0 = (w - side) // 2 if k == 0 else int(rng.integers(0, w - side + 1))
            y0 = (h - side) // 2 if k == 0 else int(rng.integers(0, h - side + 1))
            crop = img.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
            a = np.asarray(crop)
            out.append(a[:, ::-1] if rng.random() < 0.5 else a)
    if not out:
        raise BenchError(f"no photos found in {PHOTO_DIR} (scripts/setup.sh installs opencv-doc)")
    return out


def make_photos(kind, size, split, crops_per_file, seed, input_name):
    """Photos prepared for a model family: kind = blazeface (NHWC, [-1, 1]), mlsd (NHWC raw 0..255 +
    alpha 1), imagenet (NCHW, ImageNet mean/std). No labels: metrics compare with FP32."""
    files = PHOTOS_EVAL if split == "eval" else PHOTOS_CALIB

    def prepare(a):
        x = a.astype(np.float32)
        if kind == "blazeface":
            return (x / 127.5 - 1.0)[None]
        if kind == "mlsd":
            return np.concatenate([x, np.ones(x.shape[:2] + (1,), np.float32)], axis=2)[None]
        if kind == "imagenet":
            mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
            return ((x / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
        raise BenchError(f"unknown photo preparation '{kind}'")

    def make(root):
        crops = photo_crops(files, crops_per_file, size, seed)
        write_samples(samples_dir(root), [(f"i{i:03d}", {input_name: prepare(c)}) for i, c in enumerate(crops)])
        return {"count": len(crops), "files": files}
    return cached(f"photos_{kind}_{size}_{split}_c{crops_per_file}_{safe_name(input_name)}",
                  {"kind": kind, "size": size, "split": split, "crops": crops_per_file, "seed": seed,
                   "input": input_name}, make)


def make_tensor(name, shape, count, seed, input_name):
    """Seeded standard-normal tensors of one shape (input of the torch-exported encoder and LSTM)."""
    def make(root):
        rng = np.random.default_rng(seed)
        write_samples(samples_dir(root), [(f"t{i:03d}", {input_name: rng.standard_normal(shape).astype(np.float32)})
                                          for i in range(count)])
        return {"count": count, "shape": list(shape)}
    return cached(f"tensor_{name}_s{seed}_n{count}", {"shape": list(shape), "count": count, "seed": seed,
                                                       "input": input_name}, make)


def first_sample_inputs(data_dir, input_names):
    """{input name: .npy path} of the first sample folder (the timing input)."""
    first = sorted(e for e in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, e)))[0]
    return {n: os.path.join(data_dir, first, safe_name(n) + ".npy") for n in input_names}


