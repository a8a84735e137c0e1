"""Callbacks that draw SPEC §5's pictures into the run's TensorBoard while it trains.

- :class:`ConfusionMatrixLogger` — ``confusion/val`` after each validation, ``confusion/test``
  after testing.
- :class:`AttentionMapLogger` — ``attention/<class>`` and ``attention/mean`` for a fixed set
  of validation images, the same ones every epoch.
- :class:`SampleGridLogger` — ``samples/val_wrong`` (most confident mistakes first) and
  ``samples/val_correct``.
- :class:`HParamsLogger` — the hyper-parameters with the final metrics (HPARAMS tab), through
  the logger's own ``log_hyperparams``.
- :class:`PredictionWriter` — ``dacl predict``'s ``predictions.csv`` (a ``BasePredictionWriter``).

The picture callbacks write only on global rank 0 and only through a
:class:`TensorBoardLogger`; with any other logger (or none) they log one info line and do
nothing. :class:`HParamsLogger` uses whatever logger the trainer has. None of them touches the
training steps. They draw after validation from the module's own confusion matrix or from a
second forward pass over a few images (a fixed ``7 · per_class`` for the attention maps,
``max_batches`` validation batches for the sample grids), never a second pass over the whole
validation set. Figures are rendered with :mod:`dacl.viz` (Agg, no pyplot) and written with
``SummaryWriter.add_image`` (what ``add_figure`` does, without going through pyplot).

In a LightningCLI config::

    trainer:
      callbacks:
        - class_path: dacl.callbacks.ConfusionMatrixLogger
        - class_path: dacl.callbacks.AttentionMapLogger
          init_args: {per_class: 4}
        - class_path: dacl.callbacks.SampleGridLogger
          init_args: {n: 16, max_batches: 4}
        - class_path: dacl.callbacks.HParamsLogger
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from jsonargparse.typing import PositiveInt
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torch.utils.data import BatchSampler, SequentialSampler

from dacl import viz
from dacl.classes import REPORTED_METRICS
from dacl.errors import DACLError

log = logging.getLogger(__name__)

__all__ = [
    "AttentionMapLogger",
    "ConfusionMatrixLogger",
    "HParamsLogger",
    "PredictionWriter",
    "SampleGridLogger",
    "tensorboard_writer",
]


def tensorboard_writer(trainer: pl.Trainer):
    """The ``SummaryWriter`` of the trainer's first :class:`TensorBoardLogger`, or ``None``."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def class_names_of(
    trainer: pl.Trainer, pl_module: pl.LightningModule, k: int = 7
) -> tuple[str, ...]:
    """The module's ``class_names``, else the datamodule's, else ``"0".."k-1"``."""
    names = getattr(pl_module, "class_names", None)
    if names is None:
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
    return tuple(names) if names is not None else tuple(str(i) for i in range(k))


def checkpoint_label(trainer: pl.Trainer) -> str:
    """What weights are being evaluated, for titles: the checkpoint's file name if any."""
    ckpt = getattr(trainer, "ckpt_path", None)
    return f"ckpt {Path(ckpt).name}" if ckpt else f"weights at epoch {trainer.current_epoch}"


@contextmanager
def _eval_forward(trainer: pl.Trainer, pl_module: pl.LightningModule):
    """Eval mode, no autograd and the trainer's precision (autocast) for an extra forward."""
    was_training = pl_module.training
    pl_module.eval()
    try:
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            yield
    finally:
        pl_module.train(was_training)


def _forward(trainer, pl_module, images: Tensor, chunk: int = 64) -> tuple[Tensor, Tensor]:
    """Float32 ``(logits, attention)`` of ``images`` on the module's device."""
    logits, attention = [], []
    with _eval_forward(trainer, pl_module):
        for part in images.split(chunk):
            out = pl_module(part.to(pl_module.device))
            logits.append(out[0].float())
            attention.append(out[2].float())
    return torch.cat(logits), torch.cat(attention)


def _val_loader(trainer: pl.Trainer):
    loader = trainer.val_dataloaders
    if isinstance(loader, (list, tuple)):
        loader = loader[0] if loader else None
    return loader


def _sequential_val_loader(trainer: pl.Trainer):
    """The validation loader if its positions are dataset indices — a plain
    :class:`BatchSampler` over a :class:`SequentialSampler` — else ``None`` (shuffled or
    distributed: rank 0 of W sees indices 0, W, 2W, …)."""
    loader = _val_loader(trainer)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if type(batch_sampler) is not BatchSampler or not isinstance(
        batch_sampler.sampler, SequentialSampler
    ):
        return None
    return loader


def original_images(trainer: pl.Trainer, positions: Sequence[int], labels: Sequence[int]):
    """The validation loader's raw ``uint8`` pictures at loader ``positions`` — with the fast
    pipeline these are the original 48 px faces — or ``None`` when they cannot be had
    reliably: a non-sequential sampler (shuffled or distributed), a dataset that does not
    yield ``(uint8 image, label)`` items, or labels that do not match."""
    loader = _sequential_val_loader(trainer)
    if loader is None:
        return None
    out = []
    for pos, y in zip(positions, labels, strict=True):
        item = loader.dataset[int(pos)]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            return None
        image = torch.as_tensor(item[0])
        if image.dtype != torch.uint8 or int(item[1]) != int(y):
            return None
        out.append(image[0] if image.ndim == 3 else image)
    if not out or len({tuple(o.shape) for o in out}) > 1:
        return None
    return torch.stack(out)


def sample_names(trainer: pl.Trainer, split: str, positions: Sequence[int]) -> list[str] | None:
    """File names of loader ``positions`` from ``datamodule.names(split)`` when it has them
    and the validation loader is sequential (so its positions are dataset indices)."""
    names_of = getattr(getattr(trainer, "datamodule", None), "names", None)
    if names_of is None or _sequential_val_loader(trainer) is None:
        return None
    try:
        names = names_of(split)
    except (DACLError, KeyError):  # that split is not set up in this datamodule
        return None
    return [Path(str(names[int(p)])).name for p in positions]


class _TensorBoardCallback(pl.Callback):
    """Finds the run's SummaryWriter on rank 0; says once when there is none."""

    def __init__(self) -> None:
        super().__init__()
        self._told = False

    def _writer(self, trainer: pl.Trainer):
        if not trainer.is_global_zero:
            return None
        writer = tensorboard_writer(trainer)
        if writer is None and not self._told:
            self._told = True
            log.info("%s: no TensorBoardLogger on the trainer; skipped", type(self).__name__)
        return writer

    @staticmethod
    def _add(writer, tag: str, fig, step: int) -> None:
        writer.add_image(tag, viz.figure_to_array(fig), step, dataformats="HWC")


class ConfusionMatrixLogger(_TensorBoardCallback):
    """Draws the module's confusion matrix (``pl_module.confusion[split]``, as
    :class:`~dacl.module.DACLModule` keeps it) as counts and row-normalised, with class names
    and balanced accuracy: tag ``confusion/val`` after each validation (not the sanity check),
    ``confusion/test`` after testing. ``last`` holds the last matrix drawn per split."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, Tensor] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        writer = self._writer(trainer)
        cm = getattr(pl_module, "confusion", {}).get(split)
        if writer is None or cm is None:
            return
        cm = cm.detach().cpu()
        if split == "val":
            where = f"epoch {trainer.current_epoch} · step {trainer.global_step}"
        else:
            where = checkpoint_label(trainer)
        title = f"{split} confusion matrix · {where}"
        names = class_names_of(trainer, pl_module, cm.shape[0])
        fig = viz.confusion_figure(cm, names, title)
        self._add(writer, f"confusion/{split}", fig, trainer.global_step)
        writer.flush()
        self.last[split] = cm


class AttentionMapLogger(_TensorBoardCallback):
    """Attention vectors of a fixed set of validation images as heat maps, one per class
    (tag ``attention/<class>``), plus the per-class mean (``attention/mean``).

    The set is the first ``per_class`` images of each class in validation-loader order, taken
    from the batches of the first validation after the sanity check and kept (as model inputs,
    on the CPU) for the whole run, so every epoch shows the same faces. After each validation
    their attention is recomputed in one small forward pass.

    Attributes (for inspection and tests):
        chosen_images: the chosen model inputs ``(n, C, H, W)``.
        chosen_labels: their classes ``(n,)``.
        chosen_positions: their positions in the validation loader.
        attention: the last drawn attention ``(n, 512)`` (float32, CPU), row ``i`` for image
            ``i``; ``logits`` likewise.
        display: the pictures drawn beside the rows, ``uint8`` ``(n, H, W)``: the loader's
            raw images (the fast pipeline's original 48 px faces) when they can be fetched,
            else the un-normalised model inputs.
    """

    def __init__(self, per_class: PositiveInt = 4) -> None:
        super().__init__()
        if per_class < 1:  # PositiveInt is checked by the CLI only
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class = per_class
        self.chosen_images: Tensor | None = None
        self.chosen_labels: Tensor | None = None
        self.chosen_positions: Tensor | None = None
        self.attention: Tensor | None = None
        self.logits: Tensor | None = None
        self._frozen = False
        self._seen = 0
        self._parts: list[tuple[Tensor, Tensor, Tensor]] = []
        self._counts: list[int] | None = None
        self.display: Tensor | None = None  # the pictures beside the rows (uint8)
        self._no_attention = False

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._frozen or trainer.sanity_checking or dataloader_idx != 0:
            return
        if self._writer(trainer) is None:
            return
        images, labels = batch[0], batch[1]
        if self._counts is None:
            self._counts = [0] * len(class_names_of(trainer, pl_module))
        counts = self._counts
        # A host sync per batch, but only in the first validation, until the set is full.
        take = []
        for i, y in enumerate(labels.tolist()):
            if 0 <= y < len(counts) and counts[y] < self.per_class:
                counts[y] += 1
                take.append(i)
        if take:
            idx = torch.tensor(take, device=labels.device)
            self._parts.append(
                (
                    images[idx].detach().float().cpu(),
                    labels[idx].detach().cpu(),
                    torch.tensor(take) + self._seen,
                )
            )
        self._seen += len(labels)
        if min(counts) >= self.per_class:
            self._freeze()

    def _freeze(self) -> None:
        self._frozen = True
        if self._parts:
            images, labels, positions = (torch.cat(t) for t in zip(*self._parts, strict=True))
            order = torch.argsort(labels, stable=True)  # grouped by class, loader order within
            self.chosen_images = images[order].contiguous()
            self.chosen_labels = labels[order]
            self.chosen_positions = positions[order]
        self._parts = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._no_attention:
            return
        writer = self._writer(trainer)
        if writer is None:
            return
        if not self._frozen:
            self._freeze()  # the first validation ended before every class had its images
        if self.chosen_images is None:
            return
        logits, attention = _forward(trainer, pl_module, self.chosen_images)
        logits, attention = logits.cpu(), attention.cpu()
        if bool((attention == 1).all()):
            self._no_attention = True
            log.info("AttentionMapLogger: the model has no attention branch (all ones); skipped")
            return
        self.logits, self.attention = logits, attention
        names = class_names_of(trainer, pl_module, logits.shape[1])
        conf, pred = logits.softmax(-1).max(-1)
        files = sample_names(trainer, "val", self.chosen_positions.tolist())
        rows = [
            f"{files[i] if files else f'val #{int(p)}'} → {names[int(y)]} {float(c):.2f}"
            for i, (p, y, c) in enumerate(zip(self.chosen_positions, pred, conf, strict=True))
        ]
        if self.display is None:
            original = original_images(trainer, self.chosen_positions, self.chosen_labels)
            source = original if original is not None else self.chosen_images
            self.display = viz.to_display(source)
        where = f"val · epoch {trainer.current_epoch} · step {trainer.global_step}"
        step = trainer.global_step
        figures = viz.class_attention_figures(
            attention, self.chosen_labels, names, where, rows, self.display
        )
        for name, fig in figures.items():
            self._add(writer, f"attention/{name}", fig, step)
        mean_title = f"{where} · {len(attention)} fixed images"
        mean = viz.mean_attention_figure(attention, self.chosen_labels, names, mean_title)
        self._add(writer, "attention/mean", mean, step)
        writer.flush()


class SampleGridLogger(_TensorBoardCallback):
    """Grids of validation faces with ``true / predicted (confidence)`` captions: tag
    ``samples/val_wrong`` — the ``n`` most confident mistakes first — and
    ``samples/val_correct`` — ``n`` correct ones, the most confident of each class in turn.

    Candidates are ``max_batches`` validation batches spread evenly over each validation
    (every ``ceil(batches / max_batches)``-th, so a loader sorted by class still gives every
    class a chance). Their logits come from ``validation_step``'s output (other modules get
    one more forward pass) in ``on_validation_batch_end``, device-side with no host sync, and
    they are drawn after validation. ``last`` holds the last selection (positions in the
    loader, labels, predictions, confidences) and ``candidates`` the loader positions they were
    chosen from, for inspection.
    """

    def __init__(self, n: PositiveInt = 16, max_batches: PositiveInt = 4) -> None:
        super().__init__()
        if n < 1 or max_batches < 1:  # PositiveInt is checked by the CLI only
            raise ValueError("n and max_batches must be >= 1")
        self.n = n
        self.max_batches = max_batches
        self.last: dict[str, dict[str, Tensor]] = {}
        self.candidates: Tensor | None = None
        self._reset()

    def _reset(self) -> None:
        self._parts: list[tuple[Tensor, ...]] = []
        self._seen = 0
        self._k = 7

    def _stride(self, trainer: pl.Trainer) -> int:
        batches = trainer.num_val_batches[0] if trainer.num_val_batches else math.inf
        if not math.isfinite(batches):
            return 1  # unknown length: the first max_batches batches
        return max(1, math.ceil(batches / self.max_batches))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != 0 or self._writer(trainer) is None:
            return
        images, labels = batch[0], batch[1]
        first, self._seen = self._seen, self._seen + len(labels)
        stride = self._stride(trainer)
        if batch_idx % stride or batch_idx // stride >= self.max_batches:
            return
        # DACLModule's validation_step hands back its logits: no second forward pass.
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        if logits is None:
            logits, _ = _forward(trainer, pl_module, images)
        self._k = logits.shape[1]
        conf, pred = logits.softmax(-1).max(-1)
        positions = torch.arange(len(labels), device=labels.device) + first
        self._parts.append((viz.to_display(images), labels.detach(), pred, conf, positions))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._parts:
            return
        writer = self._writer(trainer)
        if writer is None:
            return
        display, labels, pred, conf, positions = (
            torch.cat(t).cpu() for t in zip(*self._parts, strict=True)
        )
        names = class_names_of(trainer, pl_module, self._k)
        self.candidates = positions
        self._reset()
        wrong, correct = select_samples(labels, pred, conf, self.n)
        where = f"val · epoch {trainer.current_epoch} · of {len(labels)} images"
        for kind, idx in (("wrong", wrong), ("correct", correct)):
            original = original_images(trainer, positions[idx], labels[idx])
            images = original if original is not None else display[idx]
            title = f"{where} · {len(idx)} {kind}" + (
                ", most confident first" if kind == "wrong" else ""
            )
            fig = viz.sample_grid_figure(images, labels[idx], pred[idx], conf[idx], names, title)
            self._add(writer, f"samples/val_{kind}", fig, trainer.global_step)
            self.last[kind] = {
                "positions": positions[idx],
                "labels": labels[idx],
                "pred": pred[idx],
                "conf": conf[idx],
            }
        writer.flush()


def select_samples(labels: Tensor, pred: Tensor, conf: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Indices of up to ``n`` mistakes, most confident first, and of up to ``n`` correct
    predictions taken class by class in turn, each class's most confident first."""
    is_wrong = pred != labels
    wrong = torch.nonzero(is_wrong).flatten()
    wrong = wrong[torch.argsort(conf[wrong], descending=True, stable=True)][:n]
    right = torch.nonzero(~is_wrong).flatten()
    right = right[torch.argsort(conf[right], descending=True, stable=True)]
    by_class = [right[labels[right] == c] for c in torch.unique(labels[right]).tolist()]
    rounds = max((len(g) for g in by_class), default=0)
    order = [g[r] for r in range(rounds) for g in by_class if r < len(g)]
    correct = torch.stack(order[:n]) if order else right[:0]
    return wrong, correct


class HParamsLogger(pl.Callback):
    """Hyper-parameters with the final metrics, so runs compare in TensorBoard's HPARAMS tab.

    Lightning's documented pattern: when fitting or testing starts, the logger's
    ``log_hyperparams(params, metrics)`` writes the session — ``model/*`` and ``data/*`` from
    the module's and datamodule's initial hparams, ``trainer/*`` for epochs, precision and
    devices, plus ``extra`` — declaring the ``hp/*`` metrics of :data:`TAGS`; after each
    validation and after testing the logger's ``log_metrics`` writes their values, copied from
    what the module logged, and the tab shows the latest. With no logger it does nothing.
    """

    #: HPARAMS metric → the module's logged value it shows.
    TAGS: ClassVar[dict[str, str]] = {
        **{f"hp/{s}_{m}": f"{s}/{m}" for s in ("val", "test") for m in REPORTED_METRICS},
        "hp/best_val_balanced_acc": "val/balanced_acc_best",
    }

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.extra = dict(extra or {})
        self._declared: set[int] = set()

    def _declare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = trainer.logger
        if logger is None or id(logger) in self._declared:
            return
        datamodule = trainer.datamodule
        params = {
            "model": dict(pl_module.hparams_initial),
            "data": dict(datamodule.hparams_initial) if datamodule is not None else {},
            "trainer": {
                "max_epochs": trainer.max_epochs if trainer.max_epochs is not None else -1,
                "precision": str(trainer.precision),
                "devices": trainer.num_devices,
            },
            **self.extra,
        }
        logger.log_hyperparams(params, dict.fromkeys(self.TAGS, 0.0))
        self._declared.add(id(logger))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._declare(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._declare(trainer, pl_module)

    def _write(self, trainer: pl.Trainer, split: str) -> None:
        metrics = trainer.callback_metrics
        values = {
            tag: float(metrics[source])
            for tag, source in self.TAGS.items()
            if source.startswith(f"{split}/") and source in metrics
        }
        if trainer.logger is not None and values:
            trainer.logger.log_metrics(values, trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, "test")


class PredictionWriter(BasePredictionWriter):
    """``predictions.csv`` in the run folder after ``predict``: one row per image of the
    datamodule's predict split, in loader order — file, true label, prediction and the
    probability of every class."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        if trainer.world_size > 1:
            raise DACLError("dacl predict writes one CSV in loader order: use --trainer.devices 1")
        data = trainer.datamodule
        split = data.predict_split
        names, labels = data.names(split), data.labels(split).tolist()
        classes = pl_module.class_names
        out = Path(trainer.log_dir or ".") / self.filename
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = (
            row
            for batch in predictions
            for row in zip(batch["pred"].tolist(), batch["probs"].tolist(), strict=True)
        )
        with out.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "label", "prediction", *(f"p_{c}" for c in classes)])
            for name, label, (pred, probs) in zip(names, labels, rows, strict=True):
                writer.writerow([name, classes[label], classes[pred], *(f"{p:.4f}" for p in probs)])
        log.info("%d predictions written to %s", len(names), out)
