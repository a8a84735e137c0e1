"""Callbacks for :class:`~dacl.module.DACLModule` and :class:`~dacl.data.FER2013DataModule`:
method.md §5's pictures in the run's TensorBoard while it trains, its HPARAMS tab, and ``dacl
predict``'s ``predictions.csv``; and the run's logger, TensorBoard's with a ``metrics.csv``. The
pictures are drawn on global rank 0 through a :class:`TensorBoardLogger` only (without one they
say so once), from what validation computed: no second pass over the data, nothing added to the
training steps."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from jsonargparse.typing import PositiveInt
from matplotlib.figure import Figure
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from dacl import viz
from dacl.classes import REPORTED_METRICS
from dacl.errors import DACLError
from dacl.outputs import replacing

log = logging.getLogger(__name__)

#: What a picture callback draws: figures by TensorBoard tag.
Pictures = dict[str, Figure]


class CSVTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger that also appends every scalar it logs to ``metrics.csv``
    (:data:`dacl.viz.METRICS_FILE`, read by :func:`dacl.viz.read_metrics`) in its ``log_dir``,
    beside the event files and checkpoints, one ``step,metric,value`` row each.

    One logger, not Lightning's CSVLogger beside it: two loggers pick their versions apart, and
    CSVLogger deletes the metrics of a run resumed into its folder. Here rows are only appended
    (a resumed run adds to them) and each call closes the file (a killed run keeps them all)."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        path = Path(self.log_dir) / viz.METRICS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.is_file()
        with path.open("a", newline="") as f:
            rows = csv.writer(f)
            if new:
                rows.writerow(("step", "metric", "value"))
            # add_scalars groups (dict values) stay TensorBoard's; a step-less one is step 0 there
            scalars = ((k, v) for k, v in metrics.items() if not isinstance(v, Mapping))
            rows.writerows((step or 0, k, float(v)) for k, v in scalars)


class _PictureLogger(pl.Callback):
    """Draws :meth:`_pictures` into the run's TensorBoard after each validation (not the sanity
    check)."""

    _told = False  # said once that there is no TensorBoard to draw in

    def _pictures(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Pictures:
        """The figures to draw for ``split``, by tag."""
        raise NotImplementedError

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        boards = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.is_global_zero and not boards and not self._told:
            self._told = True
            log.info("%s: no TensorBoardLogger on the trainer; skipped", type(self).__name__)
        if not trainer.is_global_zero or not boards:
            return
        for tag, fig in self._pictures(trainer, pl_module, split).items():
            boards[0].add_figure(tag, fig, trainer.global_step)
        boards[0].flush()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._draw(trainer, pl_module, "val")


class ConfusionMatrixLogger(_PictureLogger):
    """The module's confusion matrix as counts and row-normalised with class names and
    balanced accuracy: ``confusion/val`` after each validation, ``confusion/test`` after
    testing. ``last`` holds the last matrix drawn per split."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, Tensor] = {}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer, pl_module, "test")

    def _pictures(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Pictures:
        at = f"epoch {trainer.current_epoch} · step {trainer.global_step}"
        ckpt = trainer.ckpt_path and f"ckpt {Path(trainer.ckpt_path).name}"
        where = at if split == "val" else ckpt or f"weights at {at}"
        cm = self.last[split] = pl_module.confusion[split].detach().cpu()
        title = f"{split} confusion matrix · {where}"
        return {f"confusion/{split}": viz.confusion_figure(cm, pl_module.class_names, title)}


class AttentionMapLogger(_PictureLogger):
    """Attention vectors of a fixed set of validation images — the first ``per_class`` of each
    class in loader order, chosen when the run sets up — as heat maps, one per class
    (``attention/<class>``), and their per-class mean (``attention/mean``), recomputed after each
    validation in one small forward pass. ``indices``, ``labels``, ``inputs``, ``faces`` and
    ``files`` are the chosen images, ``attention`` the last vectors drawn ``(n, 512)``."""

    def __init__(self, per_class: PositiveInt = 4) -> None:
        super().__init__()
        if per_class < 1:  # PositiveInt is checked by the CLI only
            raise ValueError(f"per_class must be >= 1, got {per_class}")
        self.per_class = per_class
        self.indices: Tensor | None = None
        self.labels: Tensor | None = None
        self.inputs: Tensor | None = None
        self.faces: Tensor | None = None
        self.files: list[str] = []
        self.attention: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage not in ("fit", "validate") or self.indices is not None:
            return
        data, labels = trainer.datamodule, trainer.datamodule.labels("val")
        self.indices = viz.first_of_each_class(labels, len(pl_module.class_names), self.per_class)
        self.labels = labels[self.indices]
        self.inputs, self.faces = data.inputs("val", self.indices), data.faces("val", self.indices)
        self.files = [Path(data.names("val")[i]).name for i in self.indices.tolist()]

    def _pictures(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Pictures:
        if self.inputs is None or not len(self.inputs) or not pl_module.learns_attention:
            return {}  # the other variants' a is a constant
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            logits, _, attention = pl_module(self.inputs.to(pl_module.device))
        self.attention = attention.float().cpu()
        where = f"val · epoch {trainer.current_epoch} · step {trainer.global_step}"
        maps, mean = viz.attention_pictures(
            self.attention, self.labels, logits.cpu(), self.files, lambda idx: self.faces[idx],
            pl_module.class_names, where, self.per_class,
        )  # fmt: skip
        return {**{f"attention/{c}": fig for c, (_, fig) in maps.items()}, "attention/mean": mean}


class SampleGridLogger(_PictureLogger):
    """Grids of validation faces captioned ``true / predicted (confidence)``: the ``n`` most
    confident mistakes (``samples/val_wrong``) and ``n`` correct ones, class by class
    (``samples/val_correct``), among ``max_batches`` batches spread evenly over each validation
    (so a loader sorted by class still shows every class). ``candidates`` holds their dataset
    indices, ``last`` the selections drawn (indices, labels, predictions, confidences)."""

    def __init__(self, n: PositiveInt = 16, max_batches: PositiveInt = 4) -> None:
        super().__init__()
        if n < 1 or max_batches < 1:  # PositiveInt is checked by the CLI only
            raise ValueError("n and max_batches must be >= 1")
        self.n, self.max_batches = n, max_batches
        self.last: dict[str, dict[str, Tensor]] = {}
        self.candidates: Tensor | None = None
        self._parts: list[tuple[Tensor, ...]] = []

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parts = []

    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: dict[str, Tensor],
        batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        stride = max(1, math.ceil(trainer.num_val_batches[0] / self.max_batches))
        chosen = batch_idx % stride == 0 and batch_idx < stride * self.max_batches
        if not chosen or trainer.sanity_checking or not trainer.is_global_zero:
            return
        labels, first = batch[1], batch_idx * trainer.val_dataloaders.batch_size
        conf, pred = outputs["logits"].float().softmax(-1).max(-1)
        positions = torch.arange(first, first + len(labels), device=labels.device)
        self._parts.append((labels, pred, conf, positions))

    def _pictures(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> Pictures:
        if not self._parts:
            return {}
        labels, pred, conf, positions = (torch.cat(t).cpu() for t in zip(*self._parts, strict=True))
        # Rank 0's position p of a distributed, unshuffled loader is dataset index p·W (mod N).
        data = trainer.datamodule
        self.candidates = positions * trainer.world_size % len(data.labels("val"))
        where = f"val · epoch {trainer.current_epoch} · of {len(labels)} images"
        grids = viz.sample_grids(
            labels, pred, conf, lambda idx: data.faces("val", self.candidates[idx]),
            pl_module.class_names, self.n, where,
        )  # fmt: skip
        found = {"indices": self.candidates, "labels": labels, "pred": pred, "conf": conf}
        self.last = {k: {key: t[idx] for key, t in found.items()} for k, (idx, _) in grids.items()}
        return {f"samples/val_{kind}": fig for kind, (_, fig) in grids.items()}


class HParamsLogger(pl.Callback):
    """Hyper-parameters with the final metrics, so runs compare in TensorBoard's HPARAMS tab.

    When fitting or testing starts, ``log_hyperparams`` writes ``model/*`` and ``data/*`` (the
    module's and datamodule's initial hparams), ``trainer/*`` (epochs, precision, devices) and
    ``extra``, declaring the ``hp/*`` metrics of :data:`TAGS`; after each validation and after
    testing ``log_metrics`` writes their values, copied from what the module logged."""

    #: HPARAMS metric → the module's logged value it shows.
    TAGS: ClassVar[dict[str, str]] = {
        **{f"hp/{s}_{m}": f"{s}/{m}" for s in ("val", "test") for m in REPORTED_METRICS},
        "hp/best_val_balanced_acc": "val/balanced_acc_best",
    }

    def __init__(self, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.extra = dict(extra or {})
        self._declared: set[int] = set()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = trainer.logger
        if logger is None or id(logger) in self._declared:
            return
        self._declared.add(id(logger))
        params = {
            "model": dict(pl_module.hparams_initial),
            "data": dict(trainer.datamodule.hparams_initial),
            "trainer": {
                "max_epochs": trainer.max_epochs if trainer.max_epochs is not None else -1,
                "precision": str(trainer.precision),
                "devices": trainer.num_devices,
            },
            **self.extra,
        }
        logger.log_hyperparams(params, dict.fromkeys(self.TAGS, 0.0))

    on_test_start = on_fit_start

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
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:  # fmt: skip
        if trainer.world_size > 1:
            raise DACLError(
                "dacl predict_split writes one CSV in loader order: use --trainer.devices 1"
            )
        data = trainer.datamodule
        names, labels = data.names(data.predict_split), data.labels(data.predict_split).tolist()
        classes = pl_module.class_names
        out = Path(trainer.log_dir or ".") / self.filename
        out.parent.mkdir(parents=True, exist_ok=True)
        preds = torch.cat([b["pred"] for b in predictions]).tolist()
        probs = torch.cat([b["probs"] for b in predictions]).tolist()
        with replacing(out, "predictions file") as pending:  # whole, or the earlier one kept
            writer = csv.writer(pending.file)
            writer.writerow(["file", "label", "prediction", *(f"p_{c}" for c in classes)])
            for name, label, pred, row in zip(names, labels, preds, probs, strict=True):
                writer.writerow([name, classes[label], classes[pred], *(f"{p:.4f}" for p in row)])
        log.info("%d predictions written to %s", len(names), out)
