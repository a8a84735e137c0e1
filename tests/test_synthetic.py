"""Synthetic faces: deterministic, FER2013-imbalanced, fast, and written in every layout."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from dacl.data import find_layout
from dacl.data.synthetic import (
    FER2013_TRAIN_COUNTS,
    MARKER,
    class_counts,
    ensure_synthetic,
    make_faces,
    write_dataset,
)
from dacl.errors import DACLError


def test_make_faces_is_deterministic_for_a_seed():
    a, ya = make_faces(64, seed=3)
    b, yb = make_faces(64, seed=3)
    c, _ = make_faces(64, seed=4)
    assert a.shape == (64, 48, 48) and a.dtype == np.uint8 and ya.dtype == np.int64
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)
    # Real pictures, not flat fields: a face on a background spans many gray levels.
    assert all(len(np.unique(im)) > 40 for im in a)


def test_class_counts_follow_fer2013_imbalance_with_a_floor():
    n = 3000
    counts = class_counts(n)
    assert counts.sum() == n and counts.min() >= 0.05 * n
    _, labels = make_faces(n, seed=0)
    assert np.bincount(labels, minlength=7).tolist() == counts.tolist()
    # Same order of class sizes as FER2013's training split...
    assert np.argsort(counts, kind="stable").tolist() == np.argsort(FER2013_TRAIN_COUNTS).tolist()
    # ...in proportion, except the rare class lifted to the floor (disgust: 1.5% → 5%).
    share = np.asarray(FER2013_TRAIN_COUNTS) / sum(FER2013_TRAIN_COUNTS)
    assert counts[1] == 150
    others = [0, 2, 3, 4, 5, 6]
    ratio = counts[others] / (share[others] * n)
    assert np.all((ratio > 0.9) & (ratio <= 1.0))


@pytest.mark.parametrize("n", [1, 7, 20, 101])
def test_small_sets_still_sum_to_n(n):
    counts = class_counts(n)
    assert counts.sum() == n
    if n >= 7:
        assert counts.min() >= 1


def test_generation_is_fast():
    make_faces(64)  # warm-up
    start = time.perf_counter()
    make_faces(1000, seed=1)
    assert time.perf_counter() - start < 2.0, "expected well over 500 faces per second"


@pytest.mark.parametrize("kind", ["folders", "train_test", "csv"])
def test_write_dataset_uses_fer2013_file_names(tmp_path, kind):
    root = write_dataset(tmp_path, kind, n_train=14, n_val=7, n_test=7, seed=1)
    layout = find_layout(root)
    prefix = {"train": "Training_", "val": "PublicTest_", "test": "PrivateTest_"}
    for split, index in layout.splits.items():
        for name in index.names:
            if kind == "csv":
                assert re.fullmatch(r"fer2013\.csv:\d+", name)
            else:
                assert name.rsplit("/", 1)[1].startswith(prefix[split]) and name.endswith(".png")
    if kind == "csv":
        head = (root / "fer2013.csv").read_text().splitlines()[:2]
        assert head[0] == "emotion,pixels,Usage" and head[1].endswith(",Training")
        assert len(head[1].split(",")[1].split()) == 2304


def test_write_dataset_rejects_an_unknown_layout(tmp_path):
    with pytest.raises(DACLError, match="synthetic layout 'zip'"):
        write_dataset(tmp_path, "zip")


def test_ensure_synthetic_writes_once_and_reuses(tmp_path):
    root = tmp_path / "synthetic"
    ensure_synthetic(root, 14, 7, 7, seed=0)
    marker = root / MARKER
    assert json.loads(marker.read_text())["n_train"] == 14
    stamp = marker.stat().st_mtime_ns
    files = sorted(p.name for p in (root / "train").rglob("*.png"))
    ensure_synthetic(root, 14, 7, 7, seed=0)
    assert marker.stat().st_mtime_ns == stamp, "same parameters: reused, not rewritten"
    ensure_synthetic(root, 21, 7, 7, seed=0)
    assert len(find_layout(root).split("train")) == 21, "new parameters: rewritten"
    assert len(files) == 14
    assert not [p for p in tmp_path.iterdir() if p.name != "synthetic"], "no temp dirs left"


def test_ensure_synthetic_never_overwrites_other_data(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "real.jpg").write_bytes(b"x")
    with pytest.raises(DACLError, match="not dacl's synthetic set"):
        ensure_synthetic(tmp_path, 14, 7, 7)
    assert (tmp_path / "train" / "real.jpg").exists()
