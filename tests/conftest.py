"""Shared fixtures: small synthetic FER2013 sets (dacl.data.synthetic) in every method.md §3 layout.

Tests never need the real FER2013. Read-only sets are written once per session (as is the short
fit the callback and report tests share); tests that damage their data get a fresh copy under
their own ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from standin import PER_CLASS, SpyAttention, StandInData, trainer_for

from dacl import DACLModule, FER2013DataModule
from dacl.callbacks import (
    ConfusionMatrixLogger,
    CSVTensorBoardLogger,
    HParamsLogger,
    SampleGridLogger,
)
from dacl.data.synthetic import write_dataset

#: Split sizes of the shared sets: every class present in each split (5% floor, n >= 7).
SIZES = {"n_train": 70, "n_val": 21, "n_test": 21}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Iterator[Path]:
    """dacl's cache (decoded splits, ``--ckpt_path pretrained``) in a temporary folder, for the
    tests and the commands they start: the suite never writes into the user's ``~/.cache``."""
    cache = tmp_path_factory.mktemp("xdg_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield cache


@pytest.fixture(scope="session")
def split_sizes() -> dict[str, int]:
    """Samples per split in the sets the fixtures below write."""
    return {"train": SIZES["n_train"], "val": SIZES["n_val"], "test": SIZES["n_test"]}


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Callable[..., Path]:
    """``synthetic_dataset(layout, **write_dataset_kwargs) -> root``, written once per session
    per argument set. Treat the result as read-only."""
    made: dict[tuple, Path] = {}

    def make(layout: str = "folders", **kwargs) -> Path:
        args = {**SIZES, **kwargs}
        key = (layout, tuple(sorted((k, repr(v)) for k, v in args.items())))
        if key not in made:
            root = tmp_path_factory.mktemp(f"synthetic_{layout}")
            made[key] = write_dataset(root, layout, **args)
        return made[key]

    return make


@pytest.fixture
def fresh_dataset(tmp_path) -> Callable[..., Path]:
    """``fresh_dataset(layout, **kwargs) -> root``: a private set under ``tmp_path`` to modify."""

    def make(layout: str = "folders", **kwargs) -> Path:
        return write_dataset(tmp_path / f"data_{layout}", layout, **{**SIZES, **kwargs})

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_dataset, tmp_path_factory):
    """Two training steps of a gray-stem model at 32 px crops of 36 px on the folders set, saved
    as ``dacl fit`` does: ``(checkpoint path, module in eval mode, datamodule set up for
    validation, data root)``. Treat as read-only."""
    root = synthetic_dataset("folders")
    data = FER2013DataModule(str(root), crop=32, resize=36, batch_size=16, seed=0)
    torch.manual_seed(0)
    module = DACLModule(image_size=32, in_chans=1)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, data)
    ckpt = tmp_path_factory.mktemp("trained") / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    data.setup("validate")
    return ckpt, module.eval(), data, root


@pytest.fixture(scope="session")
def fitted_run(tmp_path_factory):
    """2 epochs × 2 training batches, validation on 35 images, then a test run; dacl's logger
    (TensorBoard and metrics.csv) and all four callbacks on. Shared with test_report.py. Treat
    as read-only."""
    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    module = DACLModule(image_size=32)
    data = StandInData()
    callbacks = SimpleNamespace(
        confusion=ConfusionMatrixLogger(),
        attention=SpyAttention(per_class=PER_CLASS),
        samples=SampleGridLogger(n=6, max_batches=2),
        hparams=HParamsLogger(),
    )
    logger = CSVTensorBoardLogger(root, name="run", version=0)
    trainer = trainer_for(
        root,
        max_epochs=2,
        limit_train_batches=2,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
        logger=logger,
        callbacks=list(vars(callbacks).values()),
        enable_checkpointing=False,
    )
    trainer.fit(module, data)
    ckpt = Path(logger.log_dir) / "checkpoints" / "last.ckpt"  # Lightning's run layout
    trainer.save_checkpoint(ckpt)
    trainer.test(module, data, verbose=False)
    return SimpleNamespace(
        trainer=trainer,
        module=module.eval(),
        data=data,
        cb=callbacks,
        log_dir=Path(logger.log_dir),
        ckpt=ckpt,
    )
