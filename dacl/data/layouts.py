"""FER2013 on disk: the three layouts of method.md §3, found and indexed, and their images decoded.

1. ``folders``: ``root/{train,val,test}/<class>/*`` (the report's three folders; any subset).
2. ``train_test``: ``root/{train,test}/<class>/*``, the common download, where ``test/`` mixes
   ``PublicTest_*`` (→ val) and ``PrivateTest_*`` (→ test) files, told apart by file-name prefix.
3. ``csv``: ``root/fer2013.csv`` (or ``root`` is the ``.csv``) with columns
   ``emotion,pixels,Usage``.

Labels are always the canonical ids of method.md §3: class folders map by *name* through
:func:`dacl.classes.class_index`, never by alphabetical position. Every user-fixable problem
raises a one-line :class:`DACLError` naming the path (and line) and what was expected.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dacl.classes import FER2013_CLASSES, FER2013_SIDE, class_index
from dacl.errors import DACLError

log = logging.getLogger("dacl.data")

#: File suffixes read as pictures, for training and prediction alike (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")
CSV_NAME = "fer2013.csv"
#: CSV ``Usage`` values → split names (method.md §3).
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: ``test/`` file-name prefixes of the common download → split names.
TEST_PREFIXES = {"PublicTest_": "val", "PrivateTest_": "test"}
# How many bad file names a warning or listing shows before "...": one readable line.
_SHOW = 5


@dataclass
class SplitIndex:
    """One split's samples (method.md §3), labels as canonical ids.

    ``names`` are paths relative to the layout root (``test/happy/PublicTest_1.jpg``) or
    ``fer2013.csv:<line number>``. ``sources`` are the files the split reads, for fingerprinting:
    one per sample for image layouts (``sources[i]`` holds sample ``i``), ``[the csv]`` for CSV.
    CSV rows keep their pixels in memory (``pixels``: uint8, N x 48 x 48). Images are decoded
    to ``channels`` (1: gray, 3: RGB) at ``size`` x ``size`` (FER2013: gray 48).
    """

    names: list[str]
    labels: list[int]
    sources: list[Path]
    pixels: np.ndarray | None = field(default=None, repr=False)
    split: str = ""
    channels: int = 1
    size: int = FER2013_SIDE
    #: Soft targets (N, K) where a label mode trains on a distribution (FER+), else None.
    targets: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> Image.Image:
        """Sample ``i`` as a mode ``"L"`` (gray) or ``"RGB"`` image, decoded from its file or
        built from CSV pixels.

        Raises the underlying PIL/OS error for an unreadable file: :func:`decode_split` is the
        place that turns those into a warning or a :class:`DACLError`.
        """
        mode = "L" if self.channels == 1 else "RGB"
        if self.pixels is not None:
            return Image.fromarray(self.pixels[i]).convert(mode)  # 2-D uint8 → mode "L"
        with Image.open(self.sources[i]) as im:
            # convert() forces the full decode, so truncation shows here
            return eight_bit(im).convert(mode)


@dataclass
class Layout:
    """A dataset found on disk: its ``kind`` (for FER2013 ``folders``, ``train_test`` or
    ``csv``), the directory that holds it, the splits present, the ``dataset`` it is, its
    ``classes`` (label ``i`` is ``classes[i]``) and ``notes``: how its splits were made, for
    the setup log."""

    kind: str
    root: Path
    splits: dict[str, SplitIndex]
    dataset: str = "fer2013"
    classes: tuple[str, ...] = FER2013_CLASSES
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> SplitIndex:
        """The split ``name``; a :class:`DACLError` naming the root and what exists if absent."""
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DACLError(
                f"{self.root}: the '{name}' split is needed but the {self.kind} layout found there "
                f"has only: {have}"
            )
        return self.splits[name]

    def counts(self) -> dict[str, list[int]]:
        """Per-split, per-class sample counts in canonical class order (for the setup log)."""
        return {
            name: np.bincount(idx.labels, minlength=len(self.classes)).tolist()
            for name, idx in self.splits.items()
        }


def find_layout(root: str | Path) -> Layout:
    """Detect and index the FER2013 layout at ``root`` (method.md §3).

    Split folders win over a ``fer2013.csv`` beside them. ``val/`` present → ``folders``;
    ``train/`` + ``test/`` without ``val/`` → ``train_test`` (``test/`` split by prefix).
    Hidden entries (``.dacl_cache``, ``.DS_Store``) are ignored.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise DACLError(f"data root {path} does not exist; expected a FER2013 folder or CSV there")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DACLError(f"data root {path} is a file but not a .csv; expected a folder or CSV")
        return Layout("csv", path.parent, _read_csv(path))
    present = [s for s in SPLITS if (path / s).is_dir()]
    if "val" in present or ("train" in present and "test" not in present) or present == ["test"]:
        splits = {s: index_folder(path, s)[0] for s in present}
        return Layout("folders", path, splits)
    if present == ["train", "test"]:
        train, _ = index_folder(path, "train")
        test, routes = index_folder(path, "test", lambda name: _prefix_split(path, name))
        return Layout("train_test", path, {"train": train, **_partition(test, routes)})
    if (path / CSV_NAME).is_file():
        return Layout("csv", path, _read_csv(path / CSV_NAME))
    found = sorted(e.name + ("/" if e.is_dir() else "") for e in path.iterdir())
    listing = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") if found else "nothing"
    raise DACLError(
        f"no FER2013 layout under {path} (found: {listing}); expected train/ + val/ [+ test/], "
        f"train/ + test/ with PublicTest_/PrivateTest_ files, or {CSV_NAME}"
    )


def _prefix_split(root: Path, name: str) -> str:
    """The split a ``test/`` file of the common download belongs to, from its file-name prefix."""
    base = name.rsplit("/", 1)[-1]
    for prefix, split in TEST_PREFIXES.items():
        if base.startswith(prefix):
            return split
    raise DACLError(
        f"{root / name}: in a train/ + test/ layout every test/ file must start with PublicTest_ "
        f"(val) or PrivateTest_ (test); add a val/ folder if test/ is a plain test split"
    )


def index_folder(
    root: Path,
    split: str,
    route: Callable[[str], str] | None = None,
    classify: Callable[[str], int] = class_index,
    folder: str | None = None,
) -> tuple[SplitIndex, list[str]]:
    """Index ``root/folder/<class>/*`` as ``split`` (``folder`` defaults to ``split``); class
    folder names become labels by ``classify`` (FER2013's names by default); ``route(name)``
    tags each sample with its final split (the prefix rule of the common download), returned
    beside the index."""
    entries: list[tuple[str, int, Path, str]] = []
    ignored: list[str] = []
    folder = folder or split
    split_dir = root / folder
    for cls_dir in sorted(split_dir.iterdir()):
        if cls_dir.name.startswith("."):
            continue
        if not cls_dir.is_dir():
            ignored.append(f"{folder}/{cls_dir.name}")
            continue
        try:
            label = classify(cls_dir.name)
        except DACLError as err:
            raise DACLError(f"{cls_dir}: class folder {err}") from None
        files = sorted(f for f in os.listdir(cls_dir) if not f.startswith("."))
        images, others = [], []
        for f in files:
            (images if os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES else others).append(f)
        ignored += [f"{folder}/{cls_dir.name}/{f}" for f in others]
        if not images:
            raise DACLError(
                f"{cls_dir}: empty class folder; expected "
                f"{'/'.join(sorted(e[1:] for e in IMAGE_SUFFIXES))} images"
            )
        for f in images:
            name = f"{folder}/{cls_dir.name}/{f}"
            entries.append((name, label, cls_dir / f, route(name) if route else split))
    if ignored:
        # Not images, so not samples; still said out loud so nothing vanishes unnoticed.
        log.warning(
            "ignored %d non-image entr%s under %s: %s",
            len(ignored),
            "y" if len(ignored) == 1 else "ies",
            split_dir,
            first_few(ignored),
        )
    if not entries:
        raise DACLError(
            f"{split_dir}: no class folders with images; expected folders named after the "
            "expressions"
        )
    index = SplitIndex(
        [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries], split=split
    )
    return index, [e[3] for e in entries]


def _partition(index: SplitIndex, routes: list[str]) -> dict[str, SplitIndex]:
    """Split an index by the per-sample routes ``_index_folder`` recorded (val/test by prefix)."""
    out: dict[str, SplitIndex] = {}
    for split in ("val", "test"):
        keep = [i for i, r in enumerate(routes) if r == split]
        if keep:
            out[split] = SplitIndex(
                [index.names[i] for i in keep],
                [index.labels[i] for i in keep],
                [index.sources[i] for i in keep],
                split=split,
            )
    return out


@dataclass
class CsvRows:
    """The rows of a ``fer2013.csv`` in file order: ``names`` (``fer2013.csv:<line>``),
    ``splits`` (from ``Usage``), ``labels`` and ``pixels`` (uint8, N x 48 x 48)."""

    names: list[str]
    splits: list[str]
    labels: list[int]
    pixels: np.ndarray


def read_csv_rows(path: Path) -> CsvRows:
    """Parse ``fer2013.csv`` (method.md §3); every bad row is a :class:`DACLError` with its line."""
    try:
        return _parse_csv(path)
    except UnicodeDecodeError as err:
        raise DACLError(
            f"{path}: not UTF-8 text (bad byte at offset {err.start}); "
            "expected a CSV with columns emotion,pixels,Usage"
        ) from None


def _read_csv(path: Path) -> dict[str, SplitIndex]:
    rows = read_csv_rows(path)
    out = {}
    for split in SPLITS:
        keep = [i for i, s in enumerate(rows.splits) if s == split]
        if keep:
            names, labels = [rows.names[i] for i in keep], [rows.labels[i] for i in keep]
            out[split] = SplitIndex(names, labels, [path], rows.pixels[keep], split=split)
    return out


def _parse_csv(path: Path) -> CsvRows:
    rows = CsvRows([], [], [], np.empty(0))
    images: list[np.ndarray] = []
    # utf-8-sig: a CSV saved by Excel starts with a byte-order mark before "emotion".
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DACLError(f"{path}: empty file; expected a header line emotion,pixels,Usage")
        # Strip names: Kaggle's icml_face_data.csv writes "emotion, Usage, pixels".
        cols = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in ("emotion", "pixels", "Usage") if c not in cols]
        if missing:
            raise DACLError(
                f"{path}:1: missing column(s) {', '.join(missing)}; expected header "
                f"emotion,pixels,Usage, found {','.join(h.strip() for h in header)}"
            )
        ie, ip, iu = cols["emotion"], cols["pixels"], cols["Usage"]
        need = max(ie, ip, iu) + 1
        with warnings.catch_warnings():
            # numpy reports text it cannot parse as a warning on some versions: make it raise.
            warnings.simplefilter("error", DeprecationWarning)
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row:
                    continue
                if len(row) < need:
                    raise DACLError(f"{where}: {len(row)} fields, expected {len(header)}")
                emotion, usage = row[ie].strip(), row[iu].strip()
                if emotion not in {str(k) for k in range(len(FER2013_CLASSES))}:
                    raise DACLError(f"{where}: emotion '{emotion}' is not a label 0..6")
                if usage not in USAGE_SPLITS:
                    raise DACLError(
                        f"{where}: Usage '{usage}' is not Training, PublicTest or PrivateTest"
                    )
                images.append(_parse_pixels(row[ip], where))
                rows.names.append(f"{path.name}:{reader.line_num}")
                rows.splits.append(USAGE_SPLITS[usage])
                rows.labels.append(int(emotion))
    shape = (-1, FER2013_SIDE, FER2013_SIDE)
    rows.pixels = np.stack(images).reshape(shape) if images else np.empty((0, *shape[1:]), np.uint8)
    return rows


def _parse_pixels(text: str, where: str) -> np.ndarray:
    """2304 space-separated integers 0..255 → uint8 (48, 48)."""
    try:
        # fromstring's text mode parses far faster than split(): it matters for 35,887 rows.
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        bad = next((t for t in text.split() if not t.isdigit()), text[:20])
        raise DACLError(
            f"{where}: pixels must be space-separated integers 0..255, found '{bad}'"
        ) from None
    if values.size != FER2013_SIDE * FER2013_SIDE:
        raise DACLError(
            f"{where}: {values.size} pixels, expected {FER2013_SIDE * FER2013_SIDE} (48x48)"
        )
    if values.min() < 0 or values.max() > 255:
        lo, hi = values.min(), values.max()
        raise DACLError(f"{where}: pixel values must be 0..255, found {lo}..{hi}")
    return values.astype(np.uint8)


def first_few(names: list[str]) -> str:
    """The first :data:`_SHOW` names, and "..." when there are more: for one-line messages."""
    return ", ".join(names[:_SHOW]) + (", ..." if len(names) > _SHOW else "")


def eight_bit(im: Image.Image) -> Image.Image:
    """A picture of more than 8 bits a channel — 16-bit gray PNG or TIFF (modes ``I;16*`` and
    ``I``), float (``F``: 0..1 or 0..255) — as 8-bit gray at its real brightness; any other
    picture as it is. Pillow's own ``convert`` clips such pictures (a 16-bit face turns white)."""
    if im.mode.startswith("I"):
        scale = 255 / 65535
    elif im.mode == "F":
        scale = 255 if float(np.asarray(im).max(initial=0)) <= 1 else 1
    else:
        return im
    pixels = np.asarray(im, dtype=np.float64) * scale
    return Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), "L")


def image_array(im: Image.Image, size: int = FER2013_SIDE, channels: int = 1) -> np.ndarray:
    """A face picture as the cache stores it: uint8 ``(channels, size, size)``, gray or RGB,
    resized (bilinear, to a square) when it has another size."""
    im = eight_bit(im).convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(im)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def decode_split(
    index: SplitIndex, strict: bool = False
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode a split into memory: uint8 images (N, C, S, S), int64 labels (N,), names (N,).

    Images are converted to the split's ``channels`` (gray or RGB); any whose size is not
    ``size`` x ``size`` is resized (bilinear), so every split stacks into one tensor. Unreadable
    or truncated files are skipped with ONE warning (logger ``dacl.data``) giving how many and
    naming the first few; with ``strict=True`` they raise :class:`DACLError` instead. Nothing
    is dropped silently.
    """
    if index.pixels is not None:  # CSV: already parsed and validated
        return (
            torch.from_numpy(np.ascontiguousarray(index.pixels)).unsqueeze(1),
            torch.tensor(index.labels, dtype=torch.int64),
            list(index.names),
        )
    images = np.empty((len(index), index.channels, index.size, index.size), dtype=np.uint8)
    keep: list[int] = []
    bad: list[str] = []
    for i in range(len(index)):
        try:
            im = index.load(i)
        except Exception as err:  # any decoder failure means a bad file, whatever PIL raises
            if strict:
                raise DACLError(
                    f"{index.sources[i]}: unreadable or truncated image ({err}); "
                    "fix or remove it, or set strict=False to skip such files"
                ) from None
            bad.append(str(index.sources[i]))
            continue
        images[len(keep)] = image_array(im, index.size, index.channels)
        keep.append(i)
    if bad:
        log.warning(
            "skipped %d unreadable or truncated image file(s) of the %s split: %s",
            len(bad),
            index.split or "?",
            first_few(bad),
        )
    return (
        torch.from_numpy(images[: len(keep)].copy() if bad else images),
        torch.tensor([index.labels[i] for i in keep], dtype=torch.int64),
        [index.names[i] for i in keep],
    )
