"""Crash-safe training: exact resume after SIGKILL, SIGTERM checkpoints, the NaN guard, atomic
checkpoint writes, and outputs under --trainer.default_root_dir."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from dacl import DACLModule
from dacl.checkpoint import AtomicCheckpointIO, LastCheckpoint, safe_load
from dacl.data import FaceOptions, FER2013DataModule
from dacl.errors import DACLError, NonFiniteLossError

#: One training run as a separate process: 3 epochs of 5 batches (70 images, batch 16) on the
#: synthetic set, last.ckpt every 4 steps; optionally killed with a signal after a given step.
RUN = """
import os, signal, sys
import pytorch_lightning as pl, torch
from pytorch_lightning.callbacks import ModelCheckpoint
from dacl import DACLModule
from dacl.checkpoint import AtomicCheckpointIO, LastCheckpoint
from dacl.data import FaceOptions, FER2013DataModule

root, out, mode, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

class Kill(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if mode != "resume" and trainer.global_step == at:
            os.kill(os.getpid(), signal.SIGKILL if mode == "kill" else signal.SIGTERM)

pl.seed_everything(0)
trainer = pl.Trainer(
    accelerator="cpu", max_epochs=3, logger=False, enable_progress_bar=False,
    enable_model_summary=False, default_root_dir=out, plugins=[AtomicCheckpointIO()],
    callbacks=[Kill(), LastCheckpoint(every_n_steps=4, every_minutes=0),
               ModelCheckpoint(dirpath=out, monitor="val/balanced_acc", mode="max",
                               save_last=True)],
)
module = DACLModule(image_size=32, in_chans=1, lr_schedule="cosine")
data = FER2013DataModule(root, crop=32, resize=36, batch_size=16, faces=FaceOptions(cache_dir=out))
ckpt = os.path.join(out, "last.ckpt") if mode == "resume" else None
trainer.fit(module, data, ckpt_path=ckpt)
torch.save(module.state_dict(), os.path.join(out, "final.pt"))
"""


def _run(tmp_path: Path, root: Path, out: Path, mode: str, at: int = -1):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    return subprocess.run(
        [sys.executable, str(script), str(root), str(out), mode, str(at)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(synthetic_dataset, tmp_path):
    root = synthetic_dataset("folders")
    full = _run(tmp_path, root, tmp_path / "full", "full")
    assert full.returncode == 0, full.stderr[-3000:]
    # step 14 = epoch 2, batch 4; the last save before it was step 12 (epoch 2, 2 batches done)
    killed = _run(tmp_path, root, tmp_path / "cut", "kill", at=14)
    assert killed.returncode == -signal.SIGKILL
    assert safe_load(tmp_path / "cut" / "last.ckpt")["global_step"] == 12
    resumed = _run(tmp_path, root, tmp_path / "cut", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # CPU kernels are deterministic here: model, centers, metric maxima all bitwise equal
    _assert_same_state(
        torch.load(tmp_path / "cut" / "final.pt"), torch.load(tmp_path / "full" / "final.pt")
    )


@pytest.mark.slow
def test_sigterm_saves_the_step_reached_and_resuming_finishes(synthetic_dataset, tmp_path):
    root, out = synthetic_dataset("folders"), tmp_path / "run"
    stopped = _run(tmp_path, root, out, "term", at=7)
    assert "SIGTERM at epoch 1, step 7" in stopped.stderr + stopped.stdout
    assert "--ckpt_path last" in stopped.stderr + stopped.stdout
    ckpt = safe_load(out / "last.ckpt")
    assert ckpt["global_step"] == 7 and ckpt["epoch"] == 1
    resumed = _run(tmp_path, root, out, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "final.pt").is_file()  # the run went on to its end


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)

    def dies(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_truncated_checkpoint_is_one_error_naming_it(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(10_000)}}, path)
    half = tmp_path / "half.ckpt"
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DACLError, match=r"checkpoint '.*half\.ckpt' is unreadable, truncated\?"):
        safe_load(half)
    assert safe_load(path)["state_dict"]["w"].shape == (10_000,)
    (tmp_path / "notes.ckpt").write_text("garbage")
    with pytest.raises(
        DACLError, match=r"notes\.ckpt' is not a PyTorch file \(it starts with b'ga'\)"
    ):
        safe_load(tmp_path / "notes.ckpt")
    with pytest.raises(DACLError, match=r"checkpoint '.*' is a folder"):
        safe_load(tmp_path)
    legacy = tmp_path / "legacy.ckpt"  # the pre-zip format: a pickle, read as before
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert safe_load(legacy)["w"].tolist() == [1.0, 1.0]


class _NaNAt(pl.Callback):
    """Poisons the features of one training step (a forward hook on the pooling layer)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_fit_start(self, trainer, pl_module):
        def hook(module, args, out):
            if trainer.training and trainer.global_step == self.step:
                return out * float("nan")
            return out

        pl_module.net.pool.register_forward_hook(hook)


def test_nan_stops_training_naming_epoch_step_and_term(synthetic_dataset, tmp_path):
    data = FER2013DataModule(
        synthetic_dataset("folders"),
        crop=32,
        resize=36,
        batch_size=16,
        faces=FaceOptions(cache_dir=tmp_path),
    )
    module = DACLModule(image_size=32, in_chans=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            _NaNAt(7),
            LastCheckpoint(every_n_steps=2, every_minutes=0),
            ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True),
        ],
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 7: L_CE = nan, L_SC = nan"):
        trainer.fit(module, data)
    good = safe_load(tmp_path / "last.ckpt")
    assert good["global_step"] == 6
    assert all(
        torch.isfinite(v).all() for v in good["state_dict"].values() if v.is_floating_point()
    )
    assert torch.isfinite(module.net.trunk.conv1.weight).all()  # the bad step changed nothing


class _Touch:
    """A pickle that creates a file when it is loaded unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "x": _Touch(marker)}, path)
    return path, marker


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from dacl.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err


def _config(tmp_path: Path, root: Path, logger: bool = True) -> Path:
    import yaml

    trainer = {"accelerator": "cpu", "precision": "32-true", "max_epochs": 1}
    trainer["enable_progress_bar"] = False
    if logger:
        trainer["logger"] = {"init_args": {"save_dir": str(tmp_path / "logs"), "name": "t"}}
    else:
        trainer["logger"] = {"init_args": {"name": "t"}}
    config = {
        "trainer": trainer,
        "model": {"in_chans": 1},
        "data": {"root": str(root), "crop": 32, "resize": 36, "batch_size": 16},
    }
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("command", ["fit", "test", "predict_split", "report"])
def test_crafted_checkpoint_is_refused_by_every_command(
    synthetic_dataset, tmp_path, crafted, capsys, command
):
    path, marker = crafted
    config = _config(tmp_path, synthetic_dataset("folders"))
    code, err = _cli([command, "--config", str(config), "--ckpt_path", str(path)], capsys)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"dacl: error: refused to load --ckpt_path file '{path}'")
    assert not marker.exists()


def test_crafted_files_are_refused_by_every_loader(fresh_dataset, tmp_path, crafted, caplog):
    from dacl.data.cache import cache_path
    from dacl.data.layouts import find_layout
    from dacl.model import DACLNet
    from dacl.report import write_report

    path, marker = crafted
    with pytest.raises(DACLError, match="refused to load pretrained weights file"):
        DACLNet(image_size=32, pretrained=str(path))
    root = fresh_dataset("folders")
    data = FER2013DataModule(
        root, crop=32, resize=36, batch_size=16, faces=FaceOptions(cache_dir=tmp_path)
    )
    with pytest.raises(DACLError, match="refused to load checkpoint"):
        write_report(
            DACLModule(image_size=32), data, split="val", out=tmp_path / "r", ckpt_path=path
        )
    # a crafted decoded cache is refused with one warning and rebuilt (by a new datamodule: the
    # report's has set up its data before its checkpoint was refused)
    cache = cache_path(find_layout(root).split("val"), tmp_path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(path.read_bytes())
    data = FER2013DataModule(
        root, crop=32, resize=36, batch_size=16, faces=FaceOptions(cache_dir=tmp_path)
    )
    data.setup("validate")
    assert any("refused to load decoded cache" in r.getMessage() for r in caplog.records)
    assert len(data.names("val")) > 0 and not marker.exists()


@pytest.mark.slow
def test_default_root_dir_receives_the_run_and_last_finds_it(
    synthetic_dataset, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, synthetic_dataset("folders"), logger=False)
    out = tmp_path / "elsewhere"
    from dacl.cli import main

    main(["fit", "--config", str(config), "--trainer.default_root_dir", str(out)])
    run = out / "lightning_logs" / "t" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "config.yaml").is_file()
    assert not (tmp_path / "lightning_logs").exists()
    capsys.readouterr()
    root_dir = ["--trainer.default_root_dir", str(out)]
    main(["test", "--config", str(config), *root_dir, "--ckpt_path", "last"])
    assert str(run / "checkpoints" / "last.ckpt") in capsys.readouterr().err


def test_unwritable_output_folder_fails_before_training(synthetic_dataset, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    config = _config(tmp_path, synthetic_dataset("folders"), logger=False)
    bad = tmp_path / "a_file" / "runs"
    code, err = _cli(
        ["fit", "--config", str(config), "--trainer.default_root_dir", str(bad)], capsys
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("dacl: error: output folder '")
    assert "is not writable" in err


def _fit_tiny(root: Path, tmp_path: Path, last: LastCheckpoint, **trainer_options) -> pl.Trainer:
    """A tiny DACL fitted on ``root`` without validation; checkpoints go to ``tmp_path``."""
    data = FER2013DataModule(
        root, crop=32, resize=36, batch_size=16, faces=FaceOptions(cache_dir=tmp_path)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        limit_val_batches=0,
        # the folder for LastCheckpoint; saves nothing itself
        callbacks=[last, ModelCheckpoint(dirpath=tmp_path, save_top_k=0)],
        **trainer_options,
    )
    trainer.fit(DACLModule(image_size=32, in_chans=1), data)
    return trainer


def test_a_mid_epoch_save_and_the_epoch_end_save_share_one_last_ckpt(synthetic_dataset, tmp_path):
    data = FER2013DataModule(synthetic_dataset("folders"), crop=32, resize=36, batch_size=16,
                             faces=FaceOptions(cache_dir=tmp_path))  # fmt: skip
    saves = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=0, save_last=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         limit_val_batches=0, limit_train_batches=3, max_epochs=1,
                         callbacks=[LastCheckpoint(every_n_steps=2), saves])  # fmt: skip
    trainer.fit(DACLModule(image_size=32, in_chans=1), data)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.ckpt"]
    assert safe_load(tmp_path / "ckpt" / "last.ckpt")["global_step"] == 3


@pytest.mark.parametrize(("max_time", "cut"), [(timedelta(microseconds=1), True), (None, False)])
def test_a_fit_cut_by_max_time_says_its_schedule_did_not_finish(
    synthetic_dataset, tmp_path, caplog, max_time, cut
):
    root = synthetic_dataset("folders")
    with caplog.at_level(logging.INFO):
        trainer = _fit_tiny(
            root, tmp_path, LastCheckpoint(), max_epochs=2, max_time=max_time, limit_train_batches=2
        )
    said = [r.getMessage() for r in caplog.records if "max_time ran out" in r.getMessage()]
    if cut:
        (line,) = said
        assert "at step 1 of 4 (2 epochs)" in line and "--ckpt_path last" in line
    else:
        assert not said and trainer.current_epoch == 2


@pytest.mark.parametrize(("steps", "minutes", "saved_at"), [(2, 0, 6), (0, 1e-9, 7), (0, 0, None)])
def test_last_checkpoint_every_n_steps_or_minutes(
    synthetic_dataset, tmp_path, caplog, steps, minutes, saved_at
):
    last_checkpoint = LastCheckpoint(every_n_steps=steps, every_minutes=minutes)
    with caplog.at_level(logging.INFO):
        _fit_tiny(synthetic_dataset("folders"), tmp_path, last_checkpoint, max_steps=7)
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]  # a whole save
    last = tmp_path / "last.ckpt"
    if saved_at is None:
        assert not last.exists()
    else:
        assert safe_load(last)["global_step"] == saved_at
