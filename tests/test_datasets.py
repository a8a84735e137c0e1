"""FER+, RAF-DB, AffectNet and class-folder datasets: found, read with their classes mapped by
name, split as stated, decoded at their size and colour, and evaluated across datasets."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pil_oracle import eval_transform

from dacl import DACLModule
from dacl.classes import DATASET_IDS, FER2013_CLASSES, FERPLUS_CLASSES
from dacl.data import FER2013DataModule
from dacl.data.augment import eval_augment
from dacl.data.datasets import FORMATS, carve_val, detect, find_dataset
from dacl.data.ferplus import read_votes, vote_distribution
from dacl.data.options import FaceOptions, LabelOptions
from dacl.data.synthetic import FERPLUS_DROP_RULES, split_faces, write_dataset
from dacl.errors import DACLError

SHARED_FERPLUS = Path(__file__).resolve().parents[2] / "shared" / "ferplus" / "fer2013new.csv"
SIZES = {"train": 70, "val": 21, "test": 21}


def histogram(labels, k: int) -> list[int]:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=k).tolist()


def made(split: str, contempt: bool) -> np.ndarray:
    """The labels the fixture writer gave ``split``, as ids of FER+'s classes."""
    return split_faces(SIZES[split], 0, split, contempt=contempt)[1]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Every new layout, written once: ``fixtures(layout) -> root``."""
    roots: dict[str, Path] = {}

    def make(layout: str) -> Path:
        if layout not in roots:
            root = tmp_path_factory.mktemp(layout)
            roots[layout] = write_dataset(root, layout, *SIZES.values())
        return roots[layout]

    return make


@pytest.mark.parametrize("layout", ["rafdb", "rafdb_folders"])
def test_rafdb_reads_its_ids_as_named_classes_and_carves_val(fixtures, layout):
    layout_ = find_dataset(fixtures(layout), "rafdb")
    assert layout_.classes == FER2013_CLASSES and layout_.dataset == "rafdb"
    train, val, test = (layout_.splits[s] for s in ("train", "val", "test"))
    assert histogram(test.labels, 7) == histogram(made("test", False), 7)
    # val is carved from train: together they are the training files, val ~10 % of each class
    assert histogram(train.labels + val.labels, 7) == histogram(made("train", False), 7)
    assert not set(train.names) & set(val.names)
    per_class = histogram(made("train", False), 7)
    assert histogram(val.labels, 7) == [max(1, round(0.1 * n)) for n in per_class]
    assert any("carved from train" in note for note in layout_.notes)
    # decoded as RAF-DB stores them: RGB, 100 px
    assert (train.channels, train.size) == (3, 100)
    assert train.load(0).mode == "RGB"


def test_rafdb_label_ids_are_raf_dbs_own():
    # RAF-DB numbers surprise 1, fear 2, disgust 3, happiness 4, sadness 5, anger 6, neutral 7
    assert [DATASET_IDS["rafdb"][k] for k in range(1, 8)] == [
        "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral",
    ]  # fmt: skip


@pytest.mark.parametrize("num_classes", [7, 8])
def test_affectnet_folders_by_id_its_val_is_the_test_split(fixtures, num_classes, caplog):
    layout = find_dataset(fixtures("affectnet"), "affectnet", num_classes=num_classes)
    classes = FERPLUS_CLASSES[:num_classes]
    assert layout.classes == classes
    test = made("test", True)
    if num_classes == 7:  # contempt (7) left out, and said
        assert any(f"{(test == 7).sum()} contempt images left out" in n for n in layout.notes)
        test = test[test < 7]
    assert histogram(layout.splits["test"].labels, num_classes) == histogram(test, num_classes)
    assert layout.splits["test"].names[0].startswith("val/")
    train = made("train", True)
    train = train[train < num_classes]
    got = layout.splits["train"].labels + layout.splits["val"].labels
    assert histogram(got, num_classes) == histogram(train, num_classes)


def test_ferplus_majority_labels_with_contempt_and_dropped_rows(fixtures):
    layout = find_dataset(fixtures("ferplus"), "ferplus")
    assert layout.classes == FERPLUS_CLASSES
    row = 0
    for split in ("train", "val", "test"):
        labels = made(split, True)
        rows = np.arange(row, row + len(labels))
        row += len(labels)
        dropped = np.zeros(len(labels), bool)
        for every, at in FERPLUS_DROP_RULES:
            dropped |= rows % every == at
        kept = labels[~dropped]
        assert histogram(layout.splits[split].labels, 8) == histogram(kept, 8), split
        assert (kept == 7).any() or split == "test"
        assert f"{split} {dropped.sum()} of {len(labels)}" in layout.notes[0]


def test_folders_with_a_class_map(tmp_path):
    root = write_dataset(tmp_path / "d", "folders", *SIZES.values())
    mapping = {c: ("positive" if c in ("happy", "surprise") else "other") for c in FER2013_CLASSES}
    layout = find_dataset(root, "folders", class_map=mapping)
    assert layout.classes == ("other", "positive")
    fer = find_dataset(root, "fer2013")
    for split in ("train", "val", "test"):
        positive = sum(
            FER2013_CLASSES[y] in ("happy", "surprise") for y in fer.splits[split].labels
        )
        assert histogram(layout.splits[split].labels, 2)[1] == positive
    assert (layout.splits["train"].channels, layout.splits["train"].size) == (3, 112)


def test_detection_and_one_line_errors(fixtures, tmp_path):
    assert detect(fixtures("rafdb")) == "rafdb"
    assert detect(write_dataset(tmp_path / "f", "folders", 14, 7, 0)) == "fer2013"
    with pytest.raises(DACLError, match=r"ferplus.*fer2013"):
        detect(fixtures("ferplus"))
    for layout in ("rafdb_folders", "affectnet"):
        with pytest.raises(DACLError, match=r"numbered class folders.*data.dataset"):
            detect(fixtures(layout))
    wrong = r"train/2: class folder '2' is not in data.labels.class_map"
    with pytest.raises(DACLError, match=wrong):
        find_dataset(fixtures("rafdb_folders"), "folders", class_map={"1": "x"})
    # a wrong line of RAF-DB's label file names the file and the line
    bad = tmp_path / "raf"
    (bad / "EmoLabel").mkdir(parents=True)
    (bad / "Image" / "aligned").mkdir(parents=True)
    (bad / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntrain_2.jpg 9\n")
    Image.new("RGB", (100, 100)).save(bad / "Image" / "aligned" / "train_00001_aligned.jpg")
    with pytest.raises(DACLError, match=r"list_patition_label.txt:2: rafdb label 9"):
        find_dataset(bad, "rafdb")
    (bad / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\nval_3.jpg\n")
    with pytest.raises(DACLError, match=r":2: expected 'train_00001.jpg 5'"):
        find_dataset(bad, "rafdb")
    both = write_dataset(tmp_path / "a", "affectnet", 14, 7, 7)
    (both / "test").mkdir()
    with pytest.raises(DACLError, match="both val/ and test/"):
        find_dataset(both, "affectnet")


def test_missing_rafdb_images_are_counted(fixtures, tmp_path, caplog):
    root = tmp_path / "raf"
    write_dataset(root, "rafdb", 30, 0, 10)
    (root / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    with caplog.at_level(logging.WARNING, "dacl.data"):
        layout = find_dataset(root, "rafdb")
    assert "1 image(s) listed" in caplog.text and "train_00003_aligned.jpg" in caplog.text
    assert len(layout.splits["train"]) + len(layout.splits["val"]) == 29


def test_carved_val_is_stratified_seeded_and_disjoint(fixtures):
    index = find_dataset(fixtures("rafdb_folders"), "rafdb").splits["test"]
    a_train, a_val = carve_val(index, 0.3, seed=1)
    b_train, b_val = carve_val(index, 0.3, seed=1)
    assert a_val.names == b_val.names and a_train.names == b_train.names
    assert carve_val(index, 0.3, seed=2)[1].names != a_val.names
    assert sorted(a_train.names + a_val.names) == sorted(index.names)


def test_rgb_fast_path_matches_the_reference_transform(fixtures):
    index = find_dataset(fixtures("rafdb"), "rafdb").splits["test"]
    stats = FORMATS["rafdb"].stats
    pictures = [index.load(i) for i in range(4)]
    faces = torch.stack([torch.from_numpy(np.asarray(p).copy()).permute(2, 0, 1) for p in pictures])
    fast = eval_augment(faces, 88, 100, stats)
    reference = torch.stack([eval_transform(88, 100, stats, gray=False)(p) for p in pictures])
    assert fast.shape == reference.shape == (4, 3, 88, 88)
    # within one 8-bit level of the reference's uint8 rounding, in normalised units
    assert (fast - reference).abs().max() <= 1.0 / 255 / min(stats[1]) + 1e-4


def test_datamodule_serves_rgb_batches_and_maps_classes_by_name(fixtures, tmp_path, caplog):
    data = FER2013DataModule(
        fixtures("affectnet"), dataset="affectnet", labels=LabelOptions(num_classes=8), crop=56,
        resize=64, batch_size=8, faces=FaceOptions(cache_dir=tmp_path / "cache"),
    )  # fmt: skip
    assert data.class_names == FERPLUS_CLASSES
    data.setup("test")
    images, _ = data.on_after_batch_transfer(next(iter(data.test_dataloader())), 0)
    assert images.shape == (8, 3, 56, 56) and data.faces("test", torch.arange(2)).shape[1] == 3
    # a 7-class model on 8-class data: contempt has no counterpart and is left out, said
    seven = FER2013DataModule(
        fixtures("affectnet"), dataset="affectnet",
        labels=LabelOptions(num_classes=8, classes=list(FER2013_CLASSES)), crop=56, resize=64,
        faces=FaceOptions(cache_dir=tmp_path / "cache"),
    )  # fmt: skip
    with caplog.at_level(logging.INFO, "dacl.data"):
        seven.setup("test")
    test = made("test", True)
    assert histogram(seven.labels("test"), 7) == histogram(test[test < 7], 7)
    assert "images of contempt left out" in caplog.text
    # RAF-DB relabelled onto a model whose classes come in another order
    order = ["happy", "sad", "neutral", "angry", "surprise", "fear", "disgust"]
    raf = FER2013DataModule(
        fixtures("rafdb"),
        labels=LabelOptions(classes=order),
        crop=88,
        resize=100,
        faces=FaceOptions(cache_dir=tmp_path / "cache"),
    )
    raf.setup("test")
    names = [order[y] for y in raf.labels("test").tolist()]
    assert names == [FER2013_CLASSES[y] for y in made("test", False)]


def test_balanced_sampler_draws_classes_evenly(fixtures, tmp_path):
    data = FER2013DataModule(
        fixtures("rafdb_folders"), dataset="rafdb", labels=LabelOptions(balanced=True), seed=3,
        crop=88, resize=100, batch_size=4, faces=FaceOptions(cache_dir=tmp_path / "cache"),
    )  # fmt: skip
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    labels = data.labels("train")
    drawn = torch.tensor(list(iter(sampler)))
    assert len(drawn) == len(labels)
    assert torch.equal(drawn, torch.tensor(list(iter(sampler))))  # a function of (seed, epoch)
    epochs = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        epochs.append(torch.tensor(list(iter(sampler))))
    counts = torch.bincount(labels[torch.cat(epochs)], minlength=7).float()
    # every class about equally often (1/7 each, ±30 %), the rarest included
    assert ((counts / counts.mean() - 1).abs() < 0.3).all(), counts
    assert not torch.equal(epochs[0], epochs[1])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_FERPLUS.is_file(), reason="needs ../shared/ferplus")
def test_ferplus_majority_over_the_real_label_file(tmp_path):
    """The real fer2013new.csv with pixels of our own: per-split counts by the published rule
    (votes of 1 dropped, a label needs more than half of the rest, unknown / not-a-face winners
    and unnamed rows dropped), computed here row by row."""
    with SHARED_FERPLUS.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    usage = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    emotion_of = dict(
        enumerate(("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"))
    )
    expected = {s: [0] * 8 for s in usage.values()}
    for row in rows:
        votes = [int(v) if int(v) > 1 else 0 for v in row[2:]]
        top = max(range(10), key=lambda k: (votes[k], -k))
        if row[1] and 2 * votes[top] > sum(votes) and top < 8:
            expected[usage[row[0]]][FERPLUS_CLASSES.index(emotion_of[top])] += 1
    root = tmp_path / "ferplus"
    root.mkdir()
    (root / "fer2013new.csv").write_bytes(SHARED_FERPLUS.read_bytes())
    pixels = " ".join(["128"] * 48 * 48)
    (root / "fer2013.csv").write_text(
        "emotion,pixels,Usage\n" + "".join(f"0,{pixels},{row[0]}\n" for row in rows)
    )
    layout = find_dataset(root, "ferplus")
    got = {s: histogram(index.labels, 8) for s, index in layout.splits.items()}
    assert got == expected
    assert len(rows) == 35887 and all(sum(v) > 0 for v in expected.values())


def test_ferplus_vote_distribution_modes(tmp_path):
    """crossentropy / probability: the most voted emotions until 75 % of the votes (at most
    3), rows whose taken emotions hold no more than half dropped."""
    path = tmp_path / "fer2013new.csv"
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
    rows = {
        "6,4,0,0,0,0,0,0,0,0": {"neutral": 0.6, "happy": 0.4},  # two emotions make 100 %
        "5,1,0,0,0,0,0,0,0,0": {"neutral": 1.0},  # the single vote is an outlier
        "3,3,2,2,0,0,0,0,0,0": None,  # 3 emotions hold 8 of 10 votes, the 4th tie makes 4
        "4,0,0,0,0,0,0,0,0,6": None,  # not a face wins
        "2,2,0,0,0,0,0,0,3,3": None,  # unknown is the most voted
        "2,2,2,0,0,0,0,0,2,2": {"neutral": 0.3333, "happy": 0.3333, "surprise": 0.3333},
    }
    lines = [header + "unknown,NF"] + [f"Training,fer{i}.png,{r}" for i, r in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    dist, keep = vote_distribution(read_votes(path))
    for (row, want), d, k in zip(rows.items(), dist, keep, strict=True):
        assert bool(k) == (want is not None), row
        if want:
            got = {FERPLUS_CLASSES[c]: round(float(v), 4) for c, v in enumerate(d) if v}
            assert got == want, row


def test_ferplus_multi_target_takes_every_emotion_with_30_percent(tmp_path):
    path = tmp_path / "fer2013new.csv"
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,"
    rows = {
        "6,4,0,0,0,0,0,0,0,0": {"neutral", "happy"},  # 60 % and 40 %
        "7,2,1,0,0,0,0,0,0,0": {"neutral"},  # 2 of 9 votes is under 30 %
        "3,3,2,2,0,0,0,0,0,0": {"neutral", "happy"},  # the two at 30 % hold 6 of 10 votes
        "3,2,2,3,0,0,0,0,0,0": {"neutral", "sad"},
        "4,0,0,0,0,0,0,0,6,0": None,  # unknown is the top target
        "3,0,2,0,2,0,2,0,0,0": None,  # the one target holds 3 of 9 votes: not more than half
    }
    lines = [header + "unknown,NF"] + [f"Training,fer{i}.png,{r}" for i, r in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    dist, keep = vote_distribution(read_votes(path), "multi_target")
    for (row, want), d, k in zip(rows.items(), dist, keep, strict=True):
        assert bool(k) == (want is not None), row
        if want:
            assert {FERPLUS_CLASSES[c] for c in np.flatnonzero(d)} == want, row
    # the loss: -log of the probability on the targets
    # (the softmax variant's training loss is L_CE alone)
    module = DACLModule(
        "softmax", image_size=32, class_names=FERPLUS_CLASSES, target_loss="any"
    ).eval()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([6, 6])
    targets = torch.from_numpy(dist[:2])
    loss = module.training_step((images, labels, targets), 0)
    p = module(images)[0].detach().softmax(-1)
    want = -torch.log(torch.stack([p[0, 6] + p[0, 3], p[1, 6]])).mean()
    torch.testing.assert_close(loss.detach(), want)


@pytest.mark.parametrize("mode", ["crossentropy", "probability"])
def test_ferplus_soft_modes_train_on_the_distribution(fixtures, tmp_path, mode):
    data = FER2013DataModule(
        fixtures("ferplus"), dataset="ferplus", labels=LabelOptions(label_mode=mode), crop=40,
        resize=48, batch_size=8, faces=FaceOptions(cache_dir=tmp_path / "cache"),
    )  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert len(batch) == 3 and batch[2].shape == (8, 8)
    data.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0)
    images, labels, targets = data.on_after_batch_transfer(batch, 0)
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert torch.equal(targets.argmax(1) if mode == "crossentropy" else labels, labels) or (
        mode == "probability" and ((targets == 0) | (targets == 1)).all()
    )
    module = DACLModule("softmax", image_size=40, class_names=FERPLUS_CLASSES).eval()
    loss = module.training_step((images, labels, targets), 0)  # L_CE alone: the softmax variant
    logp = torch.log_softmax(module(images)[0].detach(), -1)
    torch.testing.assert_close(loss.detach(), -(targets * logp).sum(1).mean())
    with pytest.raises(DACLError, match="label_mode"):
        find_dataset(fixtures("rafdb"), "rafdb", label_mode=mode)


def test_a_model_without_any_of_the_datas_classes_is_refused(fixtures, tmp_path):
    data = FER2013DataModule(
        fixtures("rafdb"),
        labels=LabelOptions(classes=["contempt"]),
        crop=88,
        resize=100,
        faces=FaceOptions(cache_dir=tmp_path),
    )
    with pytest.raises(
        DACLError, match=r"none of its classes .* is among the model's \(contempt\)"
    ):
        data.setup("test")
