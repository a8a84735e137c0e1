"""method.md §3 layouts: detection, split sizes, class mapping by name, every bad-input error."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dacl.classes import FER2013_CLASSES
from dacl.data import decode_split, find_layout
from dacl.data.synthetic import class_counts
from dacl.errors import DACLError


def _by_pixels(layout) -> dict[bytes, tuple[str, int]]:
    """Every decoded image's bytes → (split, label): compares layouts whatever their order."""
    out = {}
    for split, index in layout.splits.items():
        images, labels, _ = decode_split(index)
        for im, y in zip(images, labels, strict=True):
            out[im.numpy().tobytes()] = (split, int(y))
    return out


@pytest.mark.parametrize("kind", ["folders", "train_test", "csv"])
def test_every_layout_loads_with_its_split_sizes(synthetic_dataset, kind, split_sizes):
    layout = find_layout(synthetic_dataset(kind))
    assert layout.kind == kind
    assert {s: len(i) for s, i in layout.splits.items()} == split_sizes
    for split, index in layout.splits.items():
        # Labels are canonical ids with the generator's per-class counts.
        assert np.bincount(index.labels, minlength=7).tolist() == list(
            class_counts(split_sizes[split])
        )
        images, labels, names = decode_split(index)
        assert images.dtype == torch.uint8 and images.shape[1:] == (1, 48, 48)
        assert labels.tolist() == index.labels and names == index.names
        assert index.load(0).mode == "L" and index.load(0).size == (48, 48)


def test_csv_path_itself_is_a_root(synthetic_dataset):
    layout = find_layout(synthetic_dataset("csv") / "fer2013.csv")
    assert layout.kind == "csv" and set(layout.splits) == {"train", "val", "test"}
    assert layout.split("val").names[0].startswith("fer2013.csv:")


def test_prefix_split_puts_publictest_in_val_and_privatetest_in_test(synthetic_dataset):
    root = synthetic_dataset("train_test")
    layout = find_layout(root)
    on_disk = {p.relative_to(root).as_posix() for p in (root / "test").rglob("*.png")}
    val, test = set(layout.split("val").names), set(layout.split("test").names)
    assert val == {n for n in on_disk if Path(n).name.startswith("PublicTest_")}
    assert test == {n for n in on_disk if Path(n).name.startswith("PrivateTest_")}
    assert val | test == on_disk and not val & test
    assert all(Path(n).name.startswith("Training_") for n in layout.split("train").names)


def test_same_images_in_folders_and_csv_have_identical_labels(synthetic_dataset, split_sizes):
    folders = _by_pixels(find_layout(synthetic_dataset("folders")))
    csv = _by_pixels(find_layout(synthetic_dataset("csv")))
    assert len(folders) == sum(split_sizes.values())
    assert folders == csv


def test_folder_names_map_by_name_not_alphabetically(synthetic_dataset):
    renamed = {
        "angry": "anger",
        "disgust": "Disgusted",
        "fear": "fearful",
        "happy": "Happy",
        "sad": "SADNESS",
        "surprise": "surprised",
        "neutral": "Neutral",
    }
    # Sorted folder order would give other ids: the mapping must not depend on it.
    assert [renamed[c] for c in FER2013_CLASSES] != sorted(renamed.values())
    root = synthetic_dataset("folders", class_dirs=renamed)
    layout = find_layout(root)
    for name, label in zip(layout.split("train").names, layout.split("train").labels, strict=True):
        folder = name.split("/")[1]
        assert FER2013_CLASSES[label] == next(c for c, d in renamed.items() if d == folder)
    assert _by_pixels(layout) == _by_pixels(find_layout(synthetic_dataset("folders")))


def test_names_are_sorted_within_each_class_and_deterministic(synthetic_dataset):
    root = synthetic_dataset("folders")
    a, b = find_layout(root).split("train"), find_layout(root).split("train")
    assert a.names == b.names
    for c in FER2013_CLASSES:
        in_class = [n for n in a.names if n.split("/")[1] == c]
        assert in_class == sorted(in_class)


def test_two_folders_only_and_missing_split_error(fresh_dataset):
    root = fresh_dataset("folders", n_test=0)
    layout = find_layout(root)
    assert layout.kind == "folders" and set(layout.splits) == {"train", "val"}
    with pytest.raises(DACLError, match=r"'test' split .* only: train, val") as err:
        layout.split("test")
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_hidden_entries_are_ignored_and_stray_files_reported(fresh_dataset, caplog, split_sizes):
    root = fresh_dataset("folders")
    (root / ".dacl_cache").mkdir()
    (root / "train" / "happy" / ".DS_Store").write_text("x")
    (root / "train" / "happy" / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        layout = find_layout(root)
    assert len(layout.split("train")) == split_sizes["train"]
    assert "train/happy/notes.txt" in caplog.text and ".DS_Store" not in caplog.text


# -- bad input: one-line DACLError naming the path (and line) -----------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_root(tmp_path):
    with pytest.raises(DACLError, match="does not exist") as err:
        find_layout(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in _one_line(err)


def test_unrecognisable_layout_lists_what_was_found(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.txt").write_text("x")
    with pytest.raises(DACLError, match=r"no FER2013 layout .*images/, labels\.txt") as err:
        find_layout(tmp_path)
    assert str(tmp_path) in _one_line(err)


def test_class_folder_that_is_not_an_expression(fresh_dataset):
    root = fresh_dataset("folders")
    os.rename(root / "train" / "happy", root / "train" / "smiling")
    with pytest.raises(DACLError, match=r"train/smiling.*'smiling' is not a FER2013 expression"):
        find_layout(root)


def test_empty_class_folder(fresh_dataset):
    root = fresh_dataset("folders")
    shutil.rmtree(root / "val" / "disgust")
    (root / "val" / "disgust").mkdir()
    with pytest.raises(DACLError, match=r"val/disgust: empty class folder"):
        find_layout(root)


def test_split_folder_without_classes(fresh_dataset):
    root = fresh_dataset("folders")
    shutil.rmtree(root / "test")
    (root / "test").mkdir()
    with pytest.raises(DACLError, match=r"test: no class folders with images"):
        find_layout(root)


def test_test_file_without_prefix_in_train_test_layout(fresh_dataset):
    root = fresh_dataset("train_test")
    first = sorted((root / "test" / "sad").iterdir())[0]
    first.rename(first.with_name("img_0001.png"))
    with pytest.raises(DACLError, match=r"test/sad/img_0001\.png.*PublicTest_.*PrivateTest_"):
        find_layout(root)


def _csv(tmp_path: Path, rows: list[str], header: str = "emotion,pixels,Usage") -> Path:
    good = " ".join(["128"] * 2304)
    body = [f"3,{good},Training", f"0,{good},PublicTest", *rows]
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("7,{px},Training", r"fer2013\.csv:4: emotion '7' is not a label 0\.\.6"),
        ("x,{px},Training", r"fer2013\.csv:4: emotion 'x'"),
        ("2,1 2 3,Training", r"fer2013\.csv:4: 3 pixels, expected 2304"),
        ("2,{px} 5,PrivateTest", r"fer2013\.csv:4: 2305 pixels, expected 2304"),
        ("2,{bad},Training", r"fer2013\.csv:4: pixels must be .* integers 0\.\.255, found 'abc'"),
        ("2,{big},Training", r"fer2013\.csv:4: pixel values must be 0\.\.255"),
        ("2,{px},Validation", r"fer2013\.csv:4: Usage 'Validation' is not Training"),
        ("2,{px}", r"fer2013\.csv:4: 2 fields, expected 3"),
    ],
)
def test_bad_csv_rows_name_file_and_line(tmp_path, row, message):
    px = " ".join(["7"] * 2304)
    bad = " ".join(["7"] * 2000 + ["abc"] + ["7"] * 303)
    big = " ".join(["7"] * 2303 + ["256"])
    path = _csv(tmp_path, [row.format(px=px, bad=bad, big=big)])
    with pytest.raises(DACLError, match=message) as err:
        find_layout(tmp_path)
    assert str(path) in _one_line(err)


def test_csv_missing_column(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,pixels\n3,1 2\n")
    with pytest.raises(DACLError, match=r"fer2013\.csv:1: missing column\(s\) Usage") as err:
        find_layout(tmp_path)
    _one_line(err)


def test_csv_good_rows_are_parsed(tmp_path):
    _csv(tmp_path, [])
    layout = find_layout(tmp_path)
    assert layout.kind == "csv" and set(layout.splits) == {"train", "val"}
    assert layout.split("train").labels == [3] and layout.split("val").names == ["fer2013.csv:3"]
    assert np.asarray(layout.split("train").load(0)).tolist() == [[128] * 48] * 48


# -- unreadable images ----------------------------------------------------------------------


def test_corrupt_and_truncated_images_are_counted_then_skipped(fresh_dataset, caplog):
    root = fresh_dataset("folders")
    files = sorted((root / "train" / "happy").iterdir())
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])  # truncated
    files[1].write_bytes(b"not an image at all")  # garbage
    files[2].write_bytes(b"")  # empty
    index = find_layout(root).split("train")
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        images, labels, names = decode_split(index)
    records = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(records) == 1, "one warning for the whole split"
    msg = records[0].getMessage()
    assert "skipped 3 " in msg and files[0].name in msg and "train" in msg
    assert images.shape[0] == labels.shape[0] == len(names) == len(index) - 3
    assert not {f"train/happy/{f.name}" for f in files[:3]} & set(names)

    with pytest.raises(DACLError, match=f"{files[0].name}.*unreadable or truncated") as err:
        decode_split(index, strict=True)
    _one_line(err)


def test_images_not_48px_are_resized(fresh_dataset, split_sizes):
    root = fresh_dataset("folders")
    path = sorted((root / "val" / "sad").iterdir())[0]
    big = Image.open(path).resize((96, 80))
    big.convert("RGB").save(path.with_suffix(".JPG"))  # other size, mode and extension case
    path.unlink()
    images, _, names = decode_split(find_layout(root).split("val"))
    assert images.shape == (split_sizes["val"], 1, 48, 48)
    assert f"val/sad/{path.stem}.JPG" in names


def test_csv_with_byte_order_mark_loads_and_binary_file_is_a_clear_error(tmp_path):
    row = "3," + " ".join(["128"] * 2304) + ",Training\n"
    bom = tmp_path / "bom" / "fer2013.csv"
    bom.parent.mkdir()
    bom.write_text("\ufeffemotion,pixels,Usage\n" + row, encoding="utf-8")
    assert find_layout(bom.parent).split("train").labels == [3]
    binary = tmp_path / "bin" / "fer2013.csv"
    binary.parent.mkdir()
    binary.write_bytes(b"emotion,pixels,Usage\n\xff\xfe\x00garbage\n")
    with pytest.raises(DACLError, match=r"fer2013\.csv: not UTF-8 text"):
        find_layout(binary.parent)
