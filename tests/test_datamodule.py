"""FER2013DataModule: splits per stage, batches and their augmentation, logging, errors,
synthetic data, the constructor's options and those retired."""

from __future__ import annotations

import inspect
import logging
from types import SimpleNamespace

import pytest
import torch
from pil_oracle import eval_transform

from dacl.classes import FER2013_MEAN, FER2013_STD
from dacl.data import FER2013DataModule
from dacl.data.options import FaceOptions
from dacl.data.synthetic import MARKER
from dacl.errors import DACLError

CROP, RESIZE = 40, 48
LO, HI = (0 - FER2013_MEAN) / FER2013_STD, (1 - FER2013_MEAN) / FER2013_STD
FACES = ("cache_dir", "strict", "synthetic_size")


def _dm(root, **kw) -> FER2013DataModule:
    """A small data module; ``cache_dir``, ``strict`` and ``synthetic_size`` go to ``faces``."""
    faces = FaceOptions(
        **{k: str(kw.pop(k)) if k == "cache_dir" else kw.pop(k) for k in FACES if k in kw}
    )
    args = {"crop": CROP, "resize": RESIZE, "batch_size": 16, "faces": faces, **kw}
    return FER2013DataModule(root=str(root), **args)


def _augmented(dm: FER2013DataModule, batch, training: bool):
    """What Lightning does after moving a batch to the device, outside a Trainer."""
    dm.trainer = SimpleNamespace(training=training, global_rank=0, current_epoch=0)
    return dm.on_after_batch_transfer(batch, 0)


@pytest.mark.parametrize("kind", ["folders", "train_test", "csv"])
def test_batches_and_augmentation(synthetic_dataset, split_sizes, tmp_path, kind):
    dm = _dm(synthetic_dataset(kind), cache_dir=tmp_path / "cache")
    dm.setup("fit")
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 48, 48) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.shape == (16,)
    for training in (True, False):
        x, y = _augmented(dm, (images, labels), training)
        assert x.shape == (16, 1, CROP, CROP) and x.dtype == torch.float32
        assert torch.equal(y, labels)
        assert x.min() >= LO - 1e-3 and x.max() <= HI + 1e-3
    assert sum(len(b[1]) for b in dm.val_dataloader()) == split_sizes["val"]
    assert len(dm.names("train")) == split_sizes["train"]
    assert any((tmp_path / "cache").iterdir()), "decoded splits are cached"


def test_eval_batches_agree_with_the_pil_oracle(synthetic_dataset, tmp_path):
    dm = _dm(synthetic_dataset("folders"), cache_dir=tmp_path)
    dm.setup("validate")
    xf, yf = _augmented(dm, next(iter(dm.val_dataloader())), training=False)
    index = dm.layout.split("val")
    oracle = eval_transform(CROP, RESIZE)
    xr = torch.stack([oracle(index.load(i)) for i in range(len(yf))])
    assert yf.tolist() == list(index.labels[: len(yf)])
    # Same method.md §3 eval transform; the oracle rounds to uint8 after resizing.
    assert (xf[:, 0] - xr[:, 0]).abs().max() < 1.0 / 255 / FER2013_STD


def test_faces_and_inputs_of_samples_are_what_the_eval_loader_gives(synthetic_dataset, tmp_path):
    dm = _dm(synthetic_dataset("folders"), cache_dir=tmp_path)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    images = _augmented(dm, batch, training=False)[0]
    at = torch.tensor([5, 0, 3])
    torch.testing.assert_close(dm.inputs("val", at), images[at])
    faces = dm.faces("val", at)
    assert faces.shape == (3, 1, 48, 48) and faces.dtype == torch.uint8
    assert torch.equal(faces, batch[0][at])  # the decoded faces are the loader's raw batch
    assert dm.has_split("test") and dm.has_split("val")
    with pytest.raises(DACLError, match="'train' split is not set up"):
        dm.faces("train", at)


def test_the_constructor_takes_at_most_12_options():
    params = [p for p in inspect.signature(FER2013DataModule.__init__).parameters if p != "self"]
    assert len(params) <= 12, params


def test_train_order_is_seeded_and_reshuffled_each_epoch(synthetic_dataset, tmp_path):
    def epochs(seed: int) -> list[list[int]]:
        root = synthetic_dataset("folders")
        dm = _dm(root, seed=seed, cache_dir=tmp_path)
        dm.setup("fit")
        loader = dm.train_dataloader()
        orders = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)  # as Lightning does when an epoch starts
            orders.append(torch.cat([y for _, y in loader]).tolist())
        return orders

    first, second = epochs(0)
    assert sorted(first) == sorted(second) and first != second, "reshuffled every epoch"
    assert epochs(0) == [first, second], "same seed, same order"
    assert epochs(1)[0] != first


def test_eval_loader_follows_names(synthetic_dataset, tmp_path):
    dm = _dm(synthetic_dataset("folders"), cache_dir=str(tmp_path))
    dm.setup("test")
    labels = torch.cat([y for _, y in dm.test_dataloader()]).tolist()
    classes = [dm.class_names.index(n.split("/")[1]) for n in dm.names("test")]
    assert labels == classes
    assert dm.num_classes == 7 and dm.class_names[3] == "happy"


def test_layout_and_counts_logged_once(synthetic_dataset, tmp_path, caplog):
    dm = _dm(synthetic_dataset("train_test"), cache_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="dacl.data"):
        dm.setup("fit")
        dm.setup("test")
    tables = [r.getMessage() for r in caplog.records if "fer2013 layout" in r.getMessage()]
    assert len(tables) == 1
    assert "'train_test'" in tables[0] and "PublicTest_" in tables[0]
    lines = tables[0].splitlines()
    assert "disgust" in lines[1] and [ln.split()[0] for ln in lines[2:]] == ["train", "val", "test"]


def test_missing_split_for_a_stage(fresh_dataset, tmp_path):
    dm = _dm(fresh_dataset("folders", n_test=0), cache_dir=str(tmp_path))
    dm.setup("fit")
    with pytest.raises(DACLError, match=r"'test' split is needed .* only: train, val"):
        dm.setup("test")
    dm.setup("predict")  # predict falls back to val when there is no test split
    assert len(dm.predict_dataloader().dataset) == len(dm.names("val"))


def test_missing_root_is_a_dacl_error(tmp_path):
    with pytest.raises(DACLError, match="does not exist"):
        _dm(tmp_path / "absent").setup("fit")


def test_corrupt_files_are_excluded_with_a_warning(fresh_dataset, split_sizes, tmp_path, caplog):
    root = fresh_dataset("folders")
    bad = sorted((root / "train" / "fear").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])
    dm = _dm(root, cache_dir=tmp_path / "c")
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        dm.setup("fit")
    assert "skipped 1 " in caplog.text and bad.name in caplog.text
    assert len(dm.names("train")) == split_sizes["train"] - 1
    assert sum(len(y) for _, y in dm.train_dataloader()) == split_sizes["train"] - 1
    with pytest.raises(DACLError, match=bad.name):
        _dm(root, strict=True, cache_dir=tmp_path / "s").setup("fit")


def test_synthetic_option_creates_data_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "synthetic"
    dm = _dm(root, synthetic=True, synthetic_size=35)
    dm.prepare_data()
    stamp = (root / MARKER).stat().st_mtime_ns
    dm.setup("fit")
    assert len(dm.names("train")) == 35 and len(dm.names("val")) == 7
    _dm(root, synthetic=True, synthetic_size=35).prepare_data()
    assert (root / MARKER).stat().st_mtime_ns == stamp, "reused on the next run"
    assert list((tmp_path / "cache" / "dacl").glob("train-*.pt")), "default: the user's cache"
    assert not (root / ".dacl_cache").exists(), "the dataset folder is never written to"


def test_bad_options_are_dacl_errors(tmp_path):
    with pytest.raises(DACLError, match=r"data\.crop"):
        FER2013DataModule(str(tmp_path), crop=300, resize=256)
    with pytest.raises(DACLError, match=r"data\.faces\.mean and data\.faces\.std go together"):
        FER2013DataModule(str(tmp_path), faces=FaceOptions(mean=[0.5]))


def test_trains_through_lightning(synthetic_dataset, tmp_path):
    """Lightning calls on_after_batch_transfer: the module sees augmented float batches."""
    import pytorch_lightning as pl

    from dacl import DACLModule

    seen = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append((batch[0].shape, batch[0].dtype))

    dm = _dm(synthetic_dataset("folders"), crop=32, cache_dir=str(tmp_path))
    model = DACLModule(image_size=32, channels_last=False)
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Spy()],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, dm)
    assert seen == [(torch.Size([16, 1, 32, 32]), torch.float32)] * 2
    assert "val/balanced_acc" in trainer.callback_metrics


def test_training_order_follows_seed_everything_unless_data_seed_is_set(
    synthetic_dataset, tmp_path
):
    import pytorch_lightning as pl

    def first_labels(seed_everything: int, **kw) -> list[int]:
        pl.seed_everything(seed_everything, verbose=False)
        dm = _dm(synthetic_dataset("folders"), cache_dir=str(tmp_path / "cache"), **kw)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[1].tolist()

    assert first_labels(1) == first_labels(1)
    assert first_labels(1) != first_labels(2), "an ablation's seeds must change the data order"
    assert first_labels(1, seed=7) == first_labels(2, seed=7)


def test_blurred_train_split_is_named_in_one_warning(fresh_dataset, caplog):
    from PIL import Image

    root = fresh_dataset("folders")
    for path in (root / "train").rglob("*.png"):
        with Image.open(path) as im:  # like the blurred FER2013 copy: 12 px blown up to 48
            im.resize((12, 12), Image.BILINEAR).resize((48, 48), Image.BILINEAR).save(path)
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        _dm(root).setup("fit")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "train and val splits look different" in warnings[0]
    assert "sharpness" in warnings[0] and str(root) in warnings[0]


def test_matching_splits_give_no_warning(synthetic_dataset, caplog):
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        _dm(synthetic_dataset("folders")).setup("fit")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("xdg", ["", None])
def test_an_empty_or_unset_xdg_cache_home_means_the_home_cache(monkeypatch, tmp_path, xdg):
    from dacl.paths import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert cache_dir() == tmp_path / ".cache" / "dacl"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dacl"
