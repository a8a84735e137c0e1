"""Reading and writing checkpoint files safely.

Every file a user hands over (checkpoints, pretrained weights, the decoded data cache) is read by
:func:`safe_load`: ``torch.load(weights_only=True)``, never retried unsafely, so a pickle that
would run code is refused with one line saying why. :class:`AtomicCheckpointIO` is the Trainer's
checkpoint plugin: it writes each checkpoint to a temporary file beside its target, syncs it to
disk and renames it over the target, so a run killed while saving never leaves a half-written
``last.ckpt``, and it reads checkpoints through :func:`safe_load`. :class:`LastCheckpoint`
saves ``last.ckpt`` every N steps and M minutes, and when a fit is stopped with Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities import rank_zero_info
from pytorch_lightning.utilities.exceptions import SIGTERMException
from typing_extensions import override

from dacl.errors import DACLError, first_sentence


def safe_load(
    path: str | Path, what: str = "checkpoint", map_location: Any = "cpu", mmap: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is a :class:`DACLError` naming the
    file and the reason (missing, truncated, or holding objects that would run code when
    unpickled). ``mmap`` maps tensor data instead of reading it (zip-format files only): a cheap
    check of a large checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise DACLError(f"{what} '{path}' {'is a folder' if path.is_dir() else 'not found'}")
    with open(path, "rb") as f:
        start = f.read(2)
    if start != b"PK" and start[:1] != b"\x80":  # neither a zip archive nor a pickle: text, ...
        raise DACLError(f"{what} '{path}' is not a PyTorch file (it starts with {start!r})")
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():  # not a pickle at all, or a broken one
            raise DACLError(
                f"{what} '{path}' is not a PyTorch file ({first_sentence(err)})"
            ) from None
        raise DACLError(
            f"refused to load {what} '{path}': it holds objects beyond tensors and plain "
            f"containers, which could run code when unpickled ({_unsupported(err)})"
        ) from None
    except Exception as err:  # torch raises many kinds for a damaged file; all mean "unreadable"
        # e.g. a truncated zip archive: "failed finding central directory"
        raise DACLError(
            f"{what} '{path}' is unreadable, truncated? ({first_sentence(err)})"
        ) from None


@dataclass(frozen=True)
class DACLCheckpoint:
    """What dacl reads back from a ``dacl fit`` checkpoint.

    Attributes:
        model: the module's hyper-parameters as saved (``dacl.module.model_config`` makes the
            model config of them).
        data: the datamodule's saved hyper-parameters (crop, resize, face format, …); ``{}``
            for checkpoints saved without a datamodule.
        state_dict: the weights.
    """

    model: dict[str, Any]
    data: dict[str, Any]
    state_dict: dict[str, Any]


def read_dacl_checkpoint(
    path: str | Path, what: str = "checkpoint", mmap: bool = False
) -> DACLCheckpoint:
    """A ``dacl fit`` checkpoint, read by :func:`safe_load` (``mmap``: tensors mapped, not
    read); anything else — another program's checkpoint, a bare state dict — is one line."""
    ckpt = safe_load(path, what, mmap=mmap)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or not ckpt.get("hyper_parameters"):
        raise DACLError(
            f"{what} '{path}' is not a dacl checkpoint (no model hyper-parameters): pass a "
            "checkpoint written by dacl fit"
        )
    data = dict(ckpt.get("datamodule_hyper_parameters") or {})
    return DACLCheckpoint(dict(ckpt["hyper_parameters"]), data, ckpt["state_dict"])


def _unsupported(err: BaseException) -> str:
    """The line of torch's weights_only message that names what was refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "Unsupported" in line or "global" in line.lower()]
    return (named or lines or [type(err).__name__])[0].split(". ")[0]


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it: readers
    see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic local writes and safe reads (see module doc)."""

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_save(checkpoint, path)

    @override
    def load_checkpoint(
        self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return safe_load(path, map_location=map_location or "cpu")


class LastCheckpoint(pl.Callback):
    """``last.ckpt`` between the epoch-end saves, so a long epoch is never lost whole: every
    ``every_n_steps`` training steps, every ``every_minutes`` minutes, and when a fit is stopped
    with Ctrl-C or SIGTERM (with a line saying how to resume). It writes into the folder of the
    trainer's ModelCheckpoint, whose own ``last.ckpt`` at each epoch end it complements. Other
    exceptions — a non-finite loss among them — write nothing, so ``last.ckpt`` stays the last
    good state.
    """

    def __init__(self, every_n_steps: int = 2000, every_minutes: float = 10.0) -> None:
        super().__init__()
        self.every_n_steps, self.every_minutes = every_n_steps, every_minutes
        self._last_save = time.monotonic()

    def _save(self, trainer: pl.Trainer) -> Path | None:
        """Write ``last.ckpt`` into the ModelCheckpoint's folder; ``None`` when there is none."""
        ckpt = trainer.checkpoint_callback
        if ckpt is None or ckpt.dirpath is None:
            return None
        path = Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"
        if ckpt.save_last:  # its epoch-end save then overwrites this file, not a last-v1 beside it
            ckpt.last_model_path = str(path)
        trainer.save_checkpoint(path, weights_only=False)  # whole: resumable
        self._last_save = time.monotonic()
        return path

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_save = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        due = self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0
        if self.every_minutes > 0:
            elapsed = time.monotonic() - self._last_save >= 60 * self.every_minutes
            # rank 0's clock decides for all, as ModelCheckpoint does: a save is collective
            due = due or trainer.strategy.broadcast(elapsed, src=0)
        if due:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A fit that ``trainer.max_time`` cut before its planned steps says so: its schedule
        (the learning rate's, the epochs') has not finished, so it is not the recipe's model."""
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is None or remaining > 0:  # no time limit, or one not reached
            return
        steps = trainer.estimated_stepping_batches  # the steps of all epochs asked for
        if trainer.global_step >= steps or trainer.checkpoint_callback is None:
            return
        rank_zero_info(
            f"dacl: trainer.max_time ran out at step {trainer.global_step} of {steps:.0f} "
            f"({trainer.max_epochs} epochs): the recipe's schedule has not finished, so this is "
            "not its model. Go on from its last.ckpt: the same command with --ckpt_path last and "
            "a longer --trainer.max_time (or null)"
        )

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        path = self._save(trainer)
        if path is None:
            return
        what = "Ctrl-C" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        rank_zero_info(
            f"dacl: {what} at epoch {trainer.current_epoch}, step {trainer.global_step}: saved "
            f"{path}; resume with the same command and --ckpt_path last (or --ckpt_path {path})"
        )


class DiscardUntrainedRun(pl.Callback):
    """A fit that fails before its first training step leaves no run folder behind (an empty
    ``version_N`` beside the real runs, which ``--ckpt_path last`` and ``ls`` would then meet):
    the folder goes when it holds no checkpoint."""

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != "fit" or trainer.global_step > 0 or not trainer.is_global_zero:
            return
        # only a logger's own run folder (version_N), never the working or root folder
        folder = Path(trainer.logger.log_dir) if trainer.logger and trainer.logger.log_dir else None
        if folder is None or not re.fullmatch(r"version_\d+", folder.name):
            return
        if not folder.is_dir() or any(folder.rglob("*.ckpt")):
            return
        for logger in trainer.loggers:  # close their files before the folder goes
            logger.finalize("failed")
        shutil.rmtree(folder, ignore_errors=True)
