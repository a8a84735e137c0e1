"""Synthetic FER2013-like faces: 48x48 grayscale, deterministic, written in any method.md §3
layout — and, tinted and resized to RGB where those datasets are, as FER+, RAF-DB and AffectNet
store theirs (:data:`LAYOUTS`).

The demo and the tests need data without the real FER2013. Each face is drawn (vectorised numpy)
as an oval with eyes, brows, nose and mouth whose *expression* is what the label says:

========  ==================  ==================  ===============================
class     brows               eyes                mouth
========  ==================  ==================  ===============================
angry     lowered, V-slanted  narrow              short, pressed, thick lips
disgust   lowered, flat       narrow              frown, slightly open; nose wrinkles
fear      raised, inner up    wide                wide, open, stretched
happy     normal, arched      slightly narrow     wide smile, often open with teeth
sad       inner up            slightly narrow     frown, closed
surprise  high, arched        wide                small round open "O"
neutral   flat                normal              straight, closed
========  ==================  ==================  ===============================

Per image the expression has a random intensity and jitter, and the picture varies in pose
(shift, rotation up to ~12°), scale, face shape, skin/background/hair tone, lighting
(contrast, brightness, a linear gradient) and noise, so a CNN must learn the cues rather than
pixels. Every feature is left/right symmetric, so horizontal flips keep the class.

Labels follow FER2013's training-split imbalance (method.md §3), with a floor of 5% of ``n`` per
class so the rare class (disgust, 1.5% in FER2013) still has enough samples in a small set.
Where a dataset has contempt (FER+, AffectNet), :data:`CONTEMPT_SHARE` of the neutral faces
become contempt: one mouth corner pulled up and darkened.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from dacl.classes import DATASET_IDS, FER2013_CLASSES, FER2013_SIDE, FERPLUS_CLASSES
from dacl.data.datasets import FERPLUS_NAME, RAFDB_LABELS
from dacl.data.ferplus import VOTE_COLUMNS
from dacl.data.layouts import USAGE_SPLITS
from dacl.errors import DACLError

#: FER2013 Training-split class counts, canonical order (method.md §3, fer2013/README.md).
FER2013_TRAIN_COUNTS = (3995, 436, 4097, 7215, 4830, 3171, 4965)
#: Every class gets at least this fraction of ``n`` (the disgust floor, see module docstring).
MIN_CLASS_FRACTION = 0.05
#: Bump when the drawing changes, so ``ensure_synthetic`` rewrites old sets.
GENERATOR_VERSION = 1
MARKER = ".dacl_synthetic.json"
LAYOUTS = ("folders", "train_test", "csv", "ferplus", "rafdb", "rafdb_folders", "affectnet")
#: Of the neutral faces, this share is drawn as contempt where the dataset has the class.
CONTEMPT_SHARE = 0.5
CONTEMPT = FERPLUS_CLASSES.index("contempt")
#: FER+ fixture rows FER+ drops, by row number: i % 10 == 3 no majority, i % 15 == 7 the
#: taggers' majority is "not a face", i % 20 == 11 no image name.
FERPLUS_DROP_RULES = ((10, 3), (15, 7), (20, 11))

# Expression parameters per class (canonical order), as the neutral face plus a deviation that
# a per-image intensity scales. Columns: eye half-height, brow raise, brow tilt (>0: inner end
# up), brow arch, mouth half-width, mouth curve (>0: corners up), mouth opening, lip thickness,
# nose wrinkles, teeth. Units: face half-height ≈ 1.
_PARAMS = np.array(
    [
        # eye_h raise  tilt  arch  mouth_w curve  open   lip   wrinkle teeth
        [0.035, -0.07, -0.50, 0.0, 0.16, -0.02, 0.00, 0.048, 0.0, 0.0],  # angry
        [0.035, -0.05, -0.08, 0.0, 0.22, -0.08, 0.06, 0.035, 1.0, 0.0],  # disgust
        [0.100, 0.07, 0.40, 0.0, 0.27, -0.04, 0.12, 0.025, 0.0, 0.0],  # fear
        [0.045, 0.01, 0.00, 0.6, 0.30, 0.13, 0.07, 0.025, 0.0, 1.0],  # happy
        [0.050, 0.00, 0.35, 0.0, 0.20, -0.10, 0.00, 0.030, 0.0, 0.0],  # sad
        [0.110, 0.13, 0.00, 1.4, 0.13, 0.00, 0.26, 0.025, 0.0, 0.0],  # surprise
        [0.065, 0.00, 0.00, 0.2, 0.21, 0.00, 0.00, 0.028, 0.0, 0.0],  # neutral
    ],
    dtype=np.float32,
)
_NEUTRAL = _PARAMS[FER2013_CLASSES.index("neutral")]
# Per-image jitter (standard deviation) of each parameter, same columns.
_JITTER = np.array([0.008, 0.015, 0.07, 0.2, 0.02, 0.015, 0.015, 0.006, 0.0, 0.0], np.float32)


def class_counts(n: int) -> np.ndarray:
    """How many of ``n`` samples each class gets: FER2013's train proportions, at least
    ``ceil(5% of n)`` per class (when ``n`` allows), summing exactly to ``n``.

    Classes under the floor are lifted to it; the rest share what is left in FER2013's
    proportions (largest-remainder rounding), so their ratios stay as in the real data.
    """
    p = np.asarray(FER2013_TRAIN_COUNTS, dtype=np.float64)
    k = len(p)
    floor = min(math.ceil(MIN_CLASS_FRACTION * n), n // k)
    lifted = np.zeros(k, dtype=bool)
    while True:  # lifting a class shrinks the others' share: repeat until none is under
        share = np.where(lifted, 0.0, p) / p[~lifted].sum() * (n - floor * lifted.sum())
        under = ~lifted & (share < floor)
        if not under.any():
            break
        lifted |= under
    counts = np.where(lifted, floor, np.floor(share)).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")  # largest remainders first
    counts[order[: n - counts.sum()]] += 1
    return counts


def make_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic faces: uint8 images (n, 48, 48) and int64 labels (n,) in canonical order.

    Deterministic for ``seed``; class counts are :func:`class_counts` ``(n)`` in shuffled order.
    """
    return _make(n, np.random.default_rng(seed))


def _make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(len(FER2013_CLASSES)), class_counts(n))
    labels = rng.permutation(labels).astype(np.int64)
    images = np.empty((n, FER2013_SIDE, FER2013_SIDE), dtype=np.uint8)
    for start in range(0, n, 1024):  # chunks bound the float32 working set (~10 MB each)
        images[start : start + 1024] = _draw(labels[start : start + 1024], rng)
    return images, labels


def _col(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Uniform per-image parameter shaped (n, 1, 1) to broadcast over the pixel grid."""
    return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]


def _soft(d: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Coverage of a shape from its signed distance ``d`` (< 0 inside): anti-aliased edge."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _over(img: np.ndarray, alpha: np.ndarray, value: np.ndarray | float) -> np.ndarray:
    return img + alpha * (value - img)


class _Pose(NamedTuple):
    """Face coordinates (x right, y down; face half-height ~1) of every pixel centre, |x|, one
    pixel in face units (the anti-aliasing width) and the image grid (gx, gy)."""

    x: np.ndarray
    y: np.ndarray
    ax: np.ndarray
    px: np.ndarray
    gx: np.ndarray
    gy: np.ndarray


def _draw(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Faces of ``labels``, drawn part by part; every part takes its random draws from ``rng``
    in this order, so a seed gives the same faces."""
    expression = _expression(labels, rng)
    pose = _pose(len(labels), rng)
    img, skin, hair = _head(pose, rng)
    img = _eyes_and_brows(img, expression, pose, skin, hair, rng)
    img = _nose(img, expression["wrinkle"], pose, skin)
    img = _mouth(img, expression, pose, skin, rng)
    return _lighting(img, pose, rng)


def _expression(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """neutral + intensity * (class - neutral) + jitter, one row per image, by name."""
    n = len(labels)
    intensity = rng.uniform(0.6, 1.1, (n, 1)).astype(np.float32)
    p = _NEUTRAL + intensity * (_PARAMS[labels] - _NEUTRAL)
    p += rng.normal(0, 1, p.shape).astype(np.float32) * _JITTER
    names = ("eye_h", "raise", "tilt", "arch", "mouth_w", "curve", "opening", "lip", "wrinkle")
    e = {name: p[:, i, None, None] for i, name in enumerate((*names, "teeth"))}
    # Jitter must not turn a shape inside out.
    e["eye_h"], e["mouth_w"] = np.maximum(e["eye_h"], 0.015), np.maximum(e["mouth_w"], 0.08)
    e["opening"], e["lip"] = np.maximum(e["opening"], 0.0), np.maximum(e["lip"], 0.012)
    return e


def _pose(n: int, rng: np.random.Generator) -> _Pose:
    """A random rotation, scale and shift of the face in the frame."""
    g = (np.arange(FER2013_SIDE, dtype=np.float32) + 0.5) / (FER2013_SIDE / 2) - 1.0
    gy, gx = g[None, :, None], g[None, None, :]
    theta = np.clip(rng.normal(0, 0.1, n), -0.21, 0.21).astype(np.float32)[:, None, None]
    scale = _col(rng, n, 0.86, 1.04)
    dx, dy = _col(rng, n, -0.07, 0.07), _col(rng, n, -0.06, 0.08)
    cos, sin = np.cos(theta), np.sin(theta)
    u, v = gx - dx, gy - dy
    x = (cos * u + sin * v) / scale
    y = (-sin * u + cos * v) / scale
    return _Pose(x, y, np.abs(x), (2.0 / FER2013_SIDE) / scale, gx, gy)


def _head(pose: _Pose, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background, hair and face oval with soft shading towards its rim; and the skin and hair
    tones the other parts reuse."""
    x, y, px, n = pose.x, pose.y, pose.px, len(pose.x)
    skin = _col(rng, n, 0.5, 0.8)
    bg = _col(rng, n, 0.05, 0.95)
    bg = np.where(np.abs(bg - skin) < 0.15, np.clip(skin - 0.35, 0.0, 1.0), bg)
    img = np.broadcast_to(bg, (n, FER2013_SIDE, FER2013_SIDE)).copy()
    fa, fb = _col(rng, n, 0.56, 0.66), _col(rng, n, 0.76, 0.86)
    r = np.sqrt((x / fa) ** 2 + (y / fb) ** 2)
    hair = _col(rng, n, 0.05, 0.45)
    hairline = _col(rng, n, -0.75, -0.5)
    img = _over(img, _soft((r - 1.08) * fa, px) * (y < hairline + 0.1), hair)
    img = _over(img, _soft((r - 1.0) * fa, px), skin * (1.0 - 0.18 * r**2))
    img = _over(img, _soft(y - hairline, px) * _soft((r - 1.0) * fa, px), hair)
    return img, skin, hair


def _eyes_and_brows(
    img: np.ndarray,
    e: dict[str, np.ndarray],
    pose: _Pose,
    skin: np.ndarray,
    hair: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Eyes: sclera ellipse with a dark iris, outlined; height carries the expression. Brows over
    them: y = base + tilt*d + arch*d², d = |x| - eye x (inner end d < 0)."""
    ax, y, px, n, eye_h = pose.ax, pose.y, pose.px, len(pose.x), e["eye_h"]
    ex, ey = _col(rng, n, 0.24, 0.30), _col(rng, n, -0.16, -0.08)
    ew = _col(rng, n, 0.11, 0.14)
    er = np.sqrt(((ax - ex) / ew) ** 2 + ((y - ey) / eye_h) ** 2)
    eye_d = (er - 1.0) * eye_h
    img = _over(img, _soft(np.abs(eye_d) - 0.012, px), skin * 0.35)  # lid outline
    img = _over(img, _soft(eye_d, px), 0.92)  # sclera
    iris = np.sqrt((ax - ex) ** 2 + (y - ey) ** 2) - 0.055
    img = _over(img, _soft(np.maximum(iris, eye_d), px), 0.08)
    d = ax - ex
    brow_y = ey - 0.17 - e["raise"] - eye_h * 0.5 + e["tilt"] * d + e["arch"] * d**2
    brow_t = _col(rng, n, 0.022, 0.032)
    in_brow = np.maximum(np.abs(y - brow_y) - brow_t, np.abs(d) - 0.16)
    return _over(img, _soft(in_brow, px) * 0.9, hair * 0.6)


def _nose(img: np.ndarray, wrinkle: np.ndarray, pose: _Pose, skin: np.ndarray) -> np.ndarray:
    """Soft ridge shadow and nostrils; disgust wrinkles across the bridge."""
    ax, y, px = pose.ax, pose.y, pose.px
    img = _over(img, _soft(np.maximum(ax - 0.018, np.abs(y - 0.08) - 0.12), px) * 0.25, 0.0)
    nostril = np.sqrt(((ax - 0.06) / 0.035) ** 2 + ((y - 0.22) / 0.02) ** 2) - 1.0
    img = _over(img, _soft(nostril * 0.02, px) * 0.7, skin * 0.3)
    rows = np.minimum(np.abs(y + 0.02), np.abs(y - 0.05))
    wr = np.maximum(np.abs(rows) - 0.012, ax - 0.11)
    return _over(img, _soft(wr, px) * wrinkle * 0.75, skin * 0.35)


def _mouth(
    img: np.ndarray,
    e: dict[str, np.ndarray],
    pose: _Pose,
    skin: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Centre line m(t) = y0 - curve*t², opening h(t) = open*sqrt(1-t²), lips around it."""
    y, px, mouth_w, opening = pose.y, pose.px, e["mouth_w"], e["opening"]
    my = _col(rng, len(y), 0.40, 0.48)
    t = pose.x / mouth_w
    t2 = np.minimum(t * t, 1.0)
    m = my - e["curve"] * t2
    half = 0.5 * opening * np.sqrt(1.0 - t2)
    off = np.abs(y - m)
    ends = (np.abs(t) - 1.0) * mouth_w  # > 0 beyond the corners
    lips = np.maximum(off - half - e["lip"], ends)
    img = _over(img, _soft(lips, px), skin * 0.45)
    inner = np.maximum(off - half, ends + 0.01)
    img = _over(img, _soft(inner, px) * (opening > 0.01), 0.08)
    tooth = np.maximum(np.maximum(inner, (y - m) + 0.2 * half), ends + 0.05)
    return _over(img, _soft(tooth, px) * e["teeth"], 0.9)


def _lighting(img: np.ndarray, pose: _Pose, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness, a linear gradient and Gaussian sensor noise; to uint8."""
    n = len(img)
    phi = _col(rng, n, 0, 2 * math.pi)
    grad = _col(rng, n, 0.0, 0.3) * (np.cos(phi) * pose.gx + np.sin(phi) * pose.gy)
    img = (img - 0.5) * _col(rng, n, 0.7, 1.2) + 0.5 + _col(rng, n, -0.1, 0.1) + grad
    img += rng.normal(0, 1, img.shape).astype(np.float32) * _col(rng, n, 0.01, 0.05)
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# split -> the CSV's Usage value, also the file-name prefix (``PublicTest_3.png``).
_USAGE = {split: usage for usage, split in USAGE_SPLITS.items()}


def split_faces(
    n: int, seed: int, split: str, contempt: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The faces and labels :func:`write_dataset` writes for ``split``: uint8 (n, 48, 48) and
    ids into FER2013's classes, or with ``contempt`` into FER+'s (contempt = 7)."""
    images, labels = _make(n, np.random.default_rng([seed, list(_USAGE).index(split)]))
    if contempt:
        neutral = np.flatnonzero(labels == FER2013_CLASSES.index("neutral"))
        chosen = neutral[: int(len(neutral) * CONTEMPT_SHARE)]
        labels[chosen] = CONTEMPT
        images[chosen, 33:37, 28:34] = images[chosen, 33:37, 28:34] // 3  # the raised corner
    return images, labels


def _rgb(face: np.ndarray, size: int, rng: np.random.Generator) -> Image.Image:
    """A gray face tinted (a random skin tone) and resized to ``size`` RGB."""
    tint = rng.uniform(0.75, 1.0, 3) * np.array([1.0, 0.85, 0.7])
    rgb = np.clip(face[..., None] * tint, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)


def _ferplus_votes(label: int, row: int) -> tuple[str, list[int]]:
    """A ``fer2013new.csv`` image name and 10 taggers' votes whose FER+ majority is ``label``,
    or a row FER+ drops by :data:`FERPLUS_DROP_RULES`."""
    column = {c: VOTE_COLUMNS.index(n) for c, n in enumerate(
        ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral", "contempt")
    )}[label]  # fmt: skip
    other = (column + 1) % 8
    votes = [0] * len(VOTE_COLUMNS)
    name = f"fer{row:08d}.png"
    if row % 10 == 3:  # a tie: no emotion holds more than half of the votes
        votes[column], votes[other] = 5, 5
    elif row % 15 == 7:
        votes[VOTE_COLUMNS.index("NF")], votes[column] = 8, 2
    else:
        votes[column], votes[other], votes[(column + 2) % 8] = 7, 2, 1  # the 1 is an outlier
        if row % 20 == 11:
            name = ""
    return name, votes


def write_dataset(
    root: str | Path,
    layout: str = "folders",
    n_train: int = 700,
    n_val: int = 140,
    n_test: int = 140,
    seed: int = 0,
    class_dirs: dict[str, str] | None = None,
    image_format: str = "png",
) -> Path:
    """Write synthetic faces under ``root`` in one of :data:`LAYOUTS` and return ``root``.

    FER2013 (method.md §3): ``folders``: ``root/{train,val,test}/<class>/``; ``train_test``:
    ``root/{train,test}/<class>/`` with PublicTest_ and PrivateTest_ files together in
    ``test/``; ``csv``: ``root/fer2013.csv``. Files use FER2013's names (``Training_<k>.png``,
    ``PublicTest_<k>.png``, ``PrivateTest_<k>.png``). ``class_dirs`` renames class folders
    (canonical name → folder name, e.g. ``{"happy": "Happiness"}``).

    The other datasets: ``ferplus``: ``fer2013.csv`` and ``fer2013new.csv`` whose votes give
    each face its class, contempt included, except the rows :data:`FERPLUS_DROP_RULES` drops;
    ``rafdb``: RAF-DB's label file (ids 1–7) with ``Image/aligned/*_aligned.jpg``, 100x100
    RGB, train and test only; ``rafdb_folders``: ``train/<id>/``, ``test/<id>/``;
    ``affectnet``: ``train/<id>/`` and ``val/<id>/`` (ids 0–7, contempt included), RGB of
    varying sizes, its val written from the test faces.

    A split with 0 samples is not written. The same ``seed`` gives the same faces (and labels,
    contempt aside: :func:`split_faces`) in every layout.
    """
    if layout not in LAYOUTS:
        raise DACLError(f"synthetic layout '{layout}' is unknown; expected one of {LAYOUTS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if layout not in ("folders", "train_test", "csv"):
        _write_other(root, layout, {"train": n_train, "val": n_val, "test": n_test}, seed)
        return root
    dirs = {c: (class_dirs or {}).get(c, c) for c in FER2013_CLASSES}
    ext = "." + image_format.lower().lstrip(".")
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    rows: list[str] = []
    for k, (split, n) in enumerate(sizes.items()):
        if n <= 0:
            continue
        # One stream per split: the val set does not change when n_train does.
        images, labels = _make(n, np.random.default_rng([seed, k]))
        if layout == "csv":
            rows += [
                f"{y},{' '.join(map(str, im.ravel().tolist()))},{_USAGE[split]}"
                for im, y in zip(images, labels, strict=True)
            ]
            continue
        folder = "test" if layout == "train_test" and split == "val" else split
        for i, (im, y) in enumerate(zip(images, labels, strict=True)):
            # Folders appear only with their first image: an empty class folder is an error.
            folder_path = root / folder / dirs[FER2013_CLASSES[y]]
            folder_path.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(folder_path / f"{_USAGE[split]}_{i}{ext}")
    if layout == "csv":
        (root / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return root


def _write_other(root: Path, layout: str, sizes: dict[str, int], seed: int) -> None:
    """FER+, RAF-DB and AffectNet fixtures (see :func:`write_dataset`)."""
    rng = np.random.default_rng([seed, 99])
    if layout == "ferplus":
        pixels, votes = ["emotion,pixels,Usage"], ["Usage,Image name," + ",".join(VOTE_COLUMNS)]
        for split, n in sizes.items():
            for face, label in zip(*split_faces(n, seed, split, contempt=True), strict=True):
                fer2013 = FER2013_CLASSES.index("neutral") if label == CONTEMPT else label
                pixels.append(f"{fer2013},{' '.join(map(str, face.ravel()))},{_USAGE[split]}")
                name, row_votes = _ferplus_votes(int(label), len(votes) - 1)
                votes.append(f"{_USAGE[split]},{name}," + ",".join(map(str, row_votes)))
        (root / "fer2013.csv").write_text("\n".join(pixels) + "\n")
        (root / FERPLUS_NAME).write_text("\n".join(votes) + "\n")
        return
    dataset = "affectnet" if layout == "affectnet" else "rafdb"
    ids = {FERPLUS_CLASSES.index(name): k for k, name in DATASET_IDS[dataset].items()}
    lines = []
    for split in ("train", "test"):
        faces, labels = split_faces(sizes[split], seed, split, contempt=dataset == "affectnet")
        for i, (face, label) in enumerate(zip(faces, labels, strict=True), 1):
            name = f"{split}_{i:05d}.jpg"
            if layout == "rafdb":
                file = root / "Image" / "aligned" / f"{split}_{i:05d}_aligned.jpg"
                lines.append(f"{name} {ids[label]}")
            else:
                folder = "val" if dataset == "affectnet" and split == "test" else split
                file = root / folder / str(ids[label]) / name
            size = 100 if dataset == "rafdb" else int(rng.integers(64, 129))
            file.parent.mkdir(parents=True, exist_ok=True)
            _rgb(face, size, rng).save(file, quality=95)
    if layout == "rafdb":
        (root / RAFDB_LABELS).parent.mkdir(parents=True, exist_ok=True)
        (root / RAFDB_LABELS).write_text("\n".join(lines) + "\n")


def ensure_synthetic(
    root: str | Path,
    n_train: int = 3000,
    n_val: int = 600,
    n_test: int = 600,
    seed: int = 0,
    layout: str = "folders",
) -> Path:
    """Write the synthetic set under ``root`` once; reuse it while the parameters match.

    A marker file (``root/.dacl_synthetic.json``) records the parameters; a different request
    rewrites the set. A ``root`` holding anything else (e.g. real FER2013) is never touched:
    that is a :class:`DACLError`.
    """
    root = Path(root)
    params = {
        "version": GENERATOR_VERSION,
        "layout": layout,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "seed": seed,
    }
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == params:
                return root
        except (OSError, ValueError):
            pass  # unreadable marker: rewrite below
    elif root.exists() and any(not e.name.startswith(".") for e in root.iterdir()):
        raise DACLError(
            f"{root} already holds data that is not dacl's synthetic set; point --data.root at "
            "an empty or new folder for synthetic faces"
        )
    # Write beside root, then swap in: an interrupted run never leaves a half-written set.
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
    try:
        write_dataset(tmp, layout, n_train, n_val, n_test, seed)
        (tmp / MARKER).write_text(json.dumps(params))
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}")
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
