"""The datasets dacl reads, found on disk or named with ``data.dataset``: FER2013 (its three
layouts, :mod:`dacl.data.layouts`), FER+, RAF-DB, AffectNet and any ``split/<class>/`` tree.

========== ========================================================== ========== ===========
dataset    on disk                                                    classes    images
========== ========================================================== ========== ===========
fer2013    ``train/ val/ [test/]``, ``train/ test/`` or ``fer2013.csv`` 7 (method.md §3) gray 48
ferplus    ``fer2013.csv`` + ``fer2013new.csv`` (FER+ votes)            8          gray 48
rafdb      ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/``    7          RGB 100
           (or ``Image/original/``); or ``train/ test/`` class folders
affectnet  ``train/`` + ``val/`` (its official validation set: the test 7 or 8     RGB, resized
           split) class folders, by AffectNet's ids 0–7 or by name                 once
folders    ``train/ [val/] [test/]`` class folders, mapped by         as mapped  RGB, resized
           ``data.labels.class_map``                                             once
========== ========================================================== ========== ===========

Labels are always ids into the dataset's declared classes (:func:`declared_classes`): FER2013's
7 in method.md §3 order, and contempt as 8th where a dataset has it, whatever order or numbering the
dataset uses on disk (RAF-DB's 1–7, AffectNet's 0–7). Where a dataset has no validation split
(RAF-DB, AffectNet, a ``folders`` tree without ``val/``), a stratified, seeded one is carved from
train (:func:`carve_val`) and the test split is left to ``dacl test``; the layout's notes say
which files make up each split. Every user-fixable problem is one :class:`DACLError` line
naming the path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from dacl.classes import (
    FER2013_CLASSES,
    FER2013_SIDE,
    FER2013_STATS,
    FERPLUS_CLASSES,
    IMAGENET_STATS,
    RAFDB_STATS,
    Stats,
    class_index,
    dataset_label,
)
from dacl.data.ferplus import DROPPED, majority_labels, read_votes, vote_distribution
from dacl.data.layouts import (
    CSV_NAME,
    SPLITS,
    USAGE_SPLITS,
    Layout,
    SplitIndex,
    find_layout,
    index_folder,
    read_csv_rows,
)
from dacl.errors import DACLError

log = logging.getLogger("dacl.data")

#: The datasets ``data.dataset`` names (``auto`` aside).
DatasetName = Literal["fer2013", "ferplus", "rafdb", "affectnet", "folders"]
DATASETS: tuple[str, ...] = get_args(DatasetName)
#: FER+'s label modes: hard majority labels, the vote distribution as soft targets
#: (``crossentropy``) or drawn from per batch (``probability``), or a set of targets
#: (``multi_target``).
LabelMode = Literal["majority", "crossentropy", "probability", "multi_target"]
LABEL_MODES: tuple[str, ...] = get_args(LabelMode)
FERPLUS_NAME = "fer2013new.csv"
RAFDB_LABELS = Path("EmoLabel") / "list_patition_label.txt"


@dataclass(frozen=True)
class Format:
    """How a dataset's images are decoded and normalised by default."""

    channels: int
    size: int
    stats: Stats


#: Per dataset: decoded channels and side, and the normalisation: FER2013's statistics for its
#: gray faces (method.md §3), RAF-DB's own as the reference code, ImageNet's for the others.
FORMATS: dict[str, Format] = {
    "fer2013": Format(1, FER2013_SIDE, FER2013_STATS),
    "ferplus": Format(1, FER2013_SIDE, FER2013_STATS),
    "rafdb": Format(3, 100, RAFDB_STATS),
    "affectnet": Format(3, 128, IMAGENET_STATS),
    "folders": Format(3, 112, IMAGENET_STATS),
}


def detect(root: str | Path) -> str:
    """The dataset at ``root``, from the files there alone (no image is read); a
    :class:`DACLError` when it is ambiguous (say ``data.dataset``)."""
    path = Path(root).expanduser()
    folder = path.parent if path.is_file() else path
    if (folder / RAFDB_LABELS).is_file():
        return "rafdb"
    if (folder / FERPLUS_NAME).is_file():
        raise DACLError(
            f"{folder}: {FERPLUS_NAME} (FER+ labels) is there: set data.dataset to ferplus for "
            "its labels or fer2013 for the original ones"
        )
    for split in SPLITS:
        numeric = sorted(d.name for d in _class_dirs(path / split) if d.name.isdigit())
        if numeric:
            raise DACLError(
                f"{path / split}: numbered class folders ({', '.join(numeric)}): set data.dataset "
                "to rafdb (1-7) or affectnet (0-7), whose numbers mean different classes"
            )
    return "fer2013"


def resolve(dataset: str, root: str | Path, synthetic: bool = False) -> str:
    """``data.dataset`` as read: ``auto`` → what :func:`detect` finds (synthetic faces: fer2013)."""
    if dataset != "auto":
        return dataset
    return "fer2013" if synthetic else detect(root)


def declared_classes(
    dataset: str,
    root: str | Path,
    num_classes: int = 7,
    class_map: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """The classes a dataset's labels index, in order (its model's outputs)."""
    if dataset == "ferplus" or (dataset == "affectnet" and num_classes == 8):
        return FERPLUS_CLASSES
    if dataset != "folders":
        return FER2013_CLASSES
    if class_map:
        return tuple(dict.fromkeys(class_map.values()))
    train = Path(root).expanduser() / "train"
    names = sorted(d.name for d in _class_dirs(train))
    if not names:
        raise DACLError(f"{train}: no class folders; data.dataset folders needs train/<class>/")
    return tuple(names)


def _class_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]


def find_dataset(
    root: str | Path,
    dataset: str = "auto",
    *,
    num_classes: int = 7,
    class_map: Mapping[str, str] | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    fmt: Format | None = None,
    label_mode: str = "majority",
) -> Layout:
    """Index the dataset at ``root`` (``auto``: :func:`detect`) with its splits and classes;
    images are decoded as ``fmt`` (default :data:`FORMATS` of the dataset)."""
    if dataset == "auto":
        dataset = detect(root)
    if dataset not in DATASETS:
        raise DACLError(f"data.dataset must be auto or one of {', '.join(DATASETS)}: '{dataset}'")
    if num_classes not in (7, 8):
        raise DACLError(
            f"data.labels.num_classes must be 7 or 8 (with contempt), got {num_classes}"
        )
    if label_mode not in LABEL_MODES or (label_mode != "majority" and dataset != "ferplus"):
        raise DACLError(
            f"data.labels.label_mode must be one of {', '.join(LABEL_MODES)} (all but "
            f"majority: FER+ only), got {label_mode} for {dataset}"
        )
    if not 0 < val_fraction < 1:
        raise DACLError(f"data.labels.val_fraction must be between 0 and 1, got {val_fraction}")
    path = Path(root).expanduser()
    if not path.exists():
        raise DACLError(f"data root {path} does not exist; expected a {dataset} dataset there")
    classes = declared_classes(dataset, path, num_classes, class_map)
    if dataset == "fer2013":
        layout = find_layout(path)
    elif dataset == "ferplus":
        layout = _ferplus(path, label_mode)
    elif dataset == "rafdb":
        layout = _rafdb(path)
    else:
        layout = _class_folders(path, dataset, classes, class_map)
    layout.dataset, layout.classes = dataset, classes
    # FER2013 and FER+ have their own val (PublicTest): a missing one stays an error there.
    carve = dataset in ("rafdb", "affectnet", "folders")
    if carve and "val" not in layout.splits and "train" in layout.splits:
        train, val = carve_val(layout.splits["train"], val_fraction, split_seed)
        test = {name: index for name, index in layout.splits.items() if name == "test"}
        layout.splits = {"train": train, "val": val, **test}
        layout.notes.append(
            f"val: {len(val)} images carved from train ({val_fraction:.0%} of each class, "
            f"data.labels.split_seed {split_seed}); train: the other {len(train)}"
        )
    fmt = fmt or FORMATS[dataset]
    for index in layout.splits.values():
        index.channels, index.size = fmt.channels, fmt.size
    return layout


def carve_val(index: SplitIndex, fraction: float, seed: int) -> tuple[SplitIndex, SplitIndex]:
    """A stratified validation split: ``round(fraction · n_c)`` samples of every class ``c``
    with two or more (at least one), drawn by ``seed``; the rest stays train, in order."""
    labels = np.asarray(index.labels)
    rng = np.random.default_rng(seed)
    val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) >= 2:
            take = min(len(members) - 1, max(1, round(fraction * len(members))))
            val[rng.choice(members, take, replace=False)] = True
    return subset(index, ~val, "train"), subset(index, val, "val")


def subset(index: SplitIndex, keep: np.ndarray, split: str) -> SplitIndex:
    """The samples of ``index`` where the boolean ``keep`` holds, as split ``split``."""
    rows = np.flatnonzero(keep).tolist()
    per_sample = len(index.sources) == len(index)
    return SplitIndex(
        [index.names[i] for i in rows],
        [index.labels[i] for i in rows],
        [index.sources[i] for i in rows] if per_sample else list(index.sources),
        index.pixels[rows] if index.pixels is not None else None,
        split,
        index.channels,
        index.size,
        index.targets[rows] if index.targets is not None else None,
    )


def _ferplus(path: Path, mode: str) -> Layout:
    """FER+ labels of ``mode`` (:mod:`dacl.data.ferplus`) on ``fer2013.csv``'s pixels, row by
    row; the rows FER+ drops are counted in one info line."""
    folder = path.parent if path.is_file() else path
    pixels_csv = path if path.is_file() else folder / CSV_NAME
    for need in (pixels_csv, folder / FERPLUS_NAME):
        if not need.is_file():
            raise DACLError(f"{need} not found: FER+ needs {CSV_NAME} and {FERPLUS_NAME} together")
    rows = read_csv_rows(pixels_csv)
    votes = read_votes(folder / FERPLUS_NAME)
    if len(votes.usage) != len(rows.names):
        raise DACLError(
            f"{folder / FERPLUS_NAME}: {len(votes.usage)} rows, but {pixels_csv} has "
            f"{len(rows.names)}; row i of one labels row i of the other"
        )
    for i, (u, split) in enumerate(zip(votes.usage, rows.splits, strict=True)):
        if USAGE_SPLITS.get(u) != split:
            raise DACLError(
                f"{folder / FERPLUS_NAME}, line {i + 2}: Usage '{u}' but {rows.names[i]} is "
                f"a {split} row; the two files must be in the same order"
            )
    if mode == "majority":
        labels, targets = majority_labels(votes), None
    else:
        targets, keep = vote_distribution(votes, mode)
        labels = np.where(keep, targets.argmax(1), DROPPED)
    splits, dropped = {}, []
    for split in SPLITS:
        rows_of = np.flatnonzero(np.asarray(rows.splits) == split)
        keep = rows_of[labels[rows_of] != DROPPED]
        dropped.append(f"{split} {len(rows_of) - len(keep)} of {len(rows_of)}")
        if len(keep):
            splits[split] = SplitIndex(
                [rows.names[i] for i in keep],
                labels[keep].tolist(),
                [pixels_csv, folder / FERPLUS_NAME],
                rows.pixels[keep],
                split,
                targets=targets[keep] if targets is not None else None,
            )
    note = (
        f"FER+ {mode} labels; rows dropped (no majority, unknown, not a face or unnamed): "
        + ", ".join(dropped)
    )
    return Layout("ferplus", folder, splits, notes=[note])


def _rafdb(path: Path) -> Layout:
    """RAF-DB's basic set: the label file and ``Image/aligned`` (else ``Image/original``), or
    a re-pack into ``train/`` and ``test/`` class folders (ids 1–7 or names)."""
    label_file = path / RAFDB_LABELS
    if not label_file.is_file():
        return _class_folders(path, "rafdb", FER2013_CLASSES, None)
    images = path / "Image"
    aligned = (images / "aligned").is_dir()
    folder = images / ("aligned" if aligned else "original")
    if not folder.is_dir():
        raise DACLError(f"{images}: expected aligned/ or original/ with RAF-DB's images")
    entries: dict[str, tuple[list[str], list[int], list[Path]]] = {}
    missing: list[str] = []
    for line_no, line in enumerate(label_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        split = parts[0].split("_", 1)[0] if parts else ""
        if len(parts) != 2 or not parts[1].isdigit() or split not in ("train", "test"):
            raise DACLError(
                f"{label_file}:{line_no}: expected 'train_00001.jpg 5' or 'test_0001.jpg 3', "
                f"found '{line.strip()}'"
            )
        name = parts[0]
        try:
            label = dataset_label("rafdb", int(parts[1]))
        except DACLError as err:
            raise DACLError(f"{label_file}:{line_no}: {err}") from None
        file = folder / (f"{Path(name).stem}_aligned.jpg" if aligned else name)
        if not file.is_file():
            missing.append(str(file))
            continue
        names, labels, sources = entries.setdefault(split, ([], [], []))
        names.append(f"{folder.name}/{file.name}")
        labels.append(label)
        sources.append(file)
    if missing:
        log.warning(
            "%d image(s) listed in %s are missing and left out: %s",
            len(missing),
            label_file,
            ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else ""),
        )
    if not entries:
        raise DACLError(f"{label_file}: no listed image found under {folder}")
    splits = {
        ("train" if s == "train" else "test"): SplitIndex(n, lab, src, split=s)
        for s, (n, lab, src) in entries.items()
    }
    note = f"RAF-DB label file {label_file}, images from {folder}; test: its test_* files"
    return Layout("rafdb", path, splits, notes=[note])


def _classifier(
    dataset: str, classes: tuple[str, ...], class_map: Mapping[str, str] | None
) -> Callable[[str], int]:
    """Class folder name → label id in ``classes`` (or -1: a class this run leaves out)."""

    def classify(folder: str) -> int:
        if class_map is not None:
            if folder not in class_map:
                known = ", ".join(class_map)
                raise DACLError(f"'{folder}' is not in data.labels.class_map ({known})")
            return classes.index(class_map[folder])
        if dataset == "folders":
            if folder not in classes:
                raise DACLError(f"'{folder}' is not a class of train/ ({', '.join(classes)})")
            return classes.index(folder)
        if folder.isdigit():
            name = FERPLUS_CLASSES[dataset_label(dataset, int(folder))]
        else:
            name = FERPLUS_CLASSES[class_index(folder, FERPLUS_CLASSES)]
        return classes.index(name) if name in classes else -1

    return classify


def _class_folders(
    path: Path, dataset: str, classes: tuple[str, ...], class_map: Mapping[str, str] | None
) -> Layout:
    """``train/``, ``val/``, ``test/`` class-folder trees. AffectNet's ``val/`` is its official
    validation set, used as the test split (its val is carved from train)."""
    folders = {s: s for s in SPLITS if (path / s).is_dir()}
    if dataset == "affectnet" and "val" in folders:
        if "test" in folders:
            raise DACLError(
                f"{path}: both val/ and test/; AffectNet's official val/ is the test split"
            )
        folders["test"] = folders.pop("val")
    if "train" not in folders and "test" not in folders:
        raise DACLError(f"{path}: no train/ or test/ class folders for data.dataset {dataset}")
    classify = _classifier(dataset, classes, class_map)
    splits, notes = {}, []
    for split, folder in folders.items():
        index, _ = index_folder(path, split, classify=classify, folder=folder)
        left_out = sum(1 for y in index.labels if y < 0)
        if left_out:
            notes.append(
                f"{folder}/: {left_out} contempt images left out (data.labels.num_classes 7)"
            )
            index = subset(index, np.asarray(index.labels) >= 0, split)
        splits[split] = index
    if dataset == "affectnet" and "test" in splits:
        notes.append(f"test: {folders['test']}/ (AffectNet's official validation set)")
    return Layout(dataset, path, splits, notes=notes)


__all__ = [
    "DATASETS",
    "FORMATS",
    "LABEL_MODES",
    "DatasetName",
    "Format",
    "LabelMode",
    "carve_val",
    "declared_classes",
    "detect",
    "find_dataset",
    "resolve",
    "subset",
]
