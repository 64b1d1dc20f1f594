"""Task metrics: CTC greedy decoding and character error rate, DB text boxes (recall/precision at IoU
0.5, map IoU), orientation and top-1 accuracy, VAD frame accuracy. Plain numpy, no OpenCV."""

import numpy as np

# ------------------------------------------------------------------------------ recognition (CTC)


def ctc_greedy_decode(probs, keys):
    """probs [N, T, C] -> N strings. Class 0 is the CTC blank, class i in 1..len(keys) is keys[i-1],
    class len(keys)+1 is the space (PaddleOCR's use_space_char). Repeats merge unless a blank
    separates them."""
    best = np.asarray(probs).argmax(axis=2)
    texts = []
    for row in best:
        chars, prev = [], -1
        for idx in row:
            idx = int(idx)
            if idx != prev and idx != 0:
                chars.append(keys[idx - 1] if idx <= len(keys) else " ")
            prev = idx
        texts.append("".join(chars))
    return texts


def edit_distance(a, b):
    """Levenshtein distance between two strings (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predictions, truths):
    """Character error rate: total edit distance / total ground-truth characters."""
    errors = sum(edit_distance(p, t) for p, t in zip(predictions, truths))
    return errors / max(1, sum(len(t) for t in truths))

# --------------------------------------------------------------------------------- detection (DB)


def connected_components(mask):
    """8-connected components of a 2-D bool mask as a list of (y0, x0, y1, x1, pixel count), found
    from horizontal runs with union-find (fast enough for DB maps without OpenCV)."""
    h, _ = mask.shape
    runs = []  # (row, start, end) with end exclusive
    row_runs = []
    for y in range(h):
        m = np.concatenate([[False], mask[y], [False]])
        d = np.flatnonzero(m[1:] != m[:-1])
        starts, ends = d[0::2], d[1::2]
        row_runs.append(list(range(len(runs), len(runs) + len(starts))))
        runs.extend((y, int(s), int(e)) for s, e in zip(starts, ends))
    parent = list(range(len(runs)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(1, h):
        prev, cur = row_runs[y - 1], row_runs[y]
        j = 0
        for i in cur:
            _, s, e = runs[i]
            # previous-row runs overlapping [s-1, e+1) (8-connectivity); both lists are sorted
            while j < len(prev) and runs[prev[j]][2] < s:
                j += 1
            k = j
            while k < len(prev) and runs[prev[k]][1] <= e:
                a, b = find(i), find(prev[k])
                if a != b:
                    parent[a] = b
                k += 1
    comps = {}
    for i, (y, s, e) in enumerate(runs):
        r = find(i)
        c = comps.get(r)
        if c is None:
            comps[r] = [y, s, y + 1, e, e - s]
        else:
            c[0], c[1], c[2], c[3], c[4] = min(c[0], y), min(c[1], s), max(c[2], y + 1), max(c[3], e), c[4] + e - s
    return [tuple(c) for c in comps.values()]


def db_boxes(prob, thresh=0.3, box_thresh=0.6, unclip_ratio=1.5, min_size=3):
    """Axis-aligned text boxes [x0, y0, x1, y1] from a DB probability map [H, W] as PaddleOCR's
    DBPostProcess makes them, with rectangles for polygons: components of prob > thresh, dropped if
    smaller than min_size or their mean probability is below box_thresh, then grown by the unclip
    distance area * ratio / perimeter on every side."""
    prob = np.asarray(prob, np.float32)
    h, w = prob.shape
    boxes = []
    for y0, x0, y1, x1, _ in connected_components(prob > thresh):
        bw, bh = x1 - x0, y1 - y0
        if min(bw, bh) < min_size:
            continue
        if float(prob[y0:y1, x0:x1].mean()) < box_thresh:
            continue
        d = bw * bh * unclip_ratio / (2 * (bw + bh))
        boxes.append([max(0.0, x0 - d), max(0.0, y0 - d), min(float(w), x1 + d), min(float(h), y1 + d)])
    return boxes


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(pred, truth, min_iou=0.5):
    """Greedy one-to-one matching by IoU (best pairs first). Returns the number of matches."""
    pairs = sorted(((iou(p, t), i, j) for i, p in enumerate(pred) for j, t in enumerate(truth)), reverse=True)
    used_p, used_t, matches = set(), set(), 0
    for v, i, j in pairs:
        if v < min_iou:
            break
        if i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        matches += 1
    return matches


def mask_iou(a, b):
    """IoU of two bool masks (1.0 when both are empty)."""
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter) / float(union) if union else 1.0

# --------------------------------------------------------------------------------- classification


def top1(logits_batches):
    """Concatenates [N, C] batches and returns the arg-max class per row."""
    return np.concatenate([np.asarray(b).reshape(len(b), -1).argmax(axis=1) for b in logits_batches])


def accuracy(pred, labels):
    pred, labels = np.asarray(pred), np.asarray(labels)
    return float((pred == labels).mean()) if len(labels) else float("nan")
