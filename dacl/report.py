"""``dacl report``: one checkpoint evaluated once on one split and written up as the report's
chapter 4 (:meth:`Trainer.report`): confusion matrices, attention maps (per class and the class
means, and :class:`~dacl.diagnostics.AttentionDiagnostics`' figures; none for the variants
without attention heads, whose a is a constant), the most confident mistakes and correct faces,
training curves (from the run's ``metrics.csv``, when found),
``metrics.json`` and ``report.md`` (the package's ``templates/report.md``, filled in).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.classification import MulticlassPrecision

from dacl import viz
from dacl.checkpoint import AtomicCheckpointIO
from dacl.classes import REPORTED_METRICS
from dacl.defaults import template
from dacl.diagnostics import AttentionDiagnostics
from dacl.errors import DACLError
from dacl.module import eval_metrics
from dacl.outputs import check_folder, write_text

SPLITS = ("val", "test")


def compute_metrics(logits: Tensor, labels: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """method.md §5's measures of ``logits`` ``(n, K)`` against ``labels`` by torchmetrics: ``acc``,
    ``balanced_acc`` (macro recall), ``f1_macro``, per-class ``recall`` and ``precision`` (by
    class name), ``confusion_matrix`` (rows = true class), true and predicted ``counts``."""
    k = len(class_names)
    metrics = eval_metrics(k)  # the module's own measures, plus per-class precision
    metrics.add_metrics({"precision": MulticlassPrecision(k, average=None)})
    values = metrics(logits.float().cpu(), labels.cpu())
    cm = values["confmat"].long()

    per_class = {"recall": values["recall"], "precision": values["precision"],
                 "counts": cm.sum(1), "predicted_counts": cm.sum(0)}  # fmt: skip
    return {
        **{m: float(values[m]) for m in REPORTED_METRICS},
        **{k: dict(zip(class_names, t.tolist(), strict=True)) for k, t in per_class.items()},
        "confusion_matrix": cm.tolist(),
    }


def find_log_dir(ckpt_path: str | Path | None) -> Path | None:
    """The run directory of a Lightning checkpoint (``<run>/checkpoints/x.ckpt`` → ``<run>``)
    when it holds the run's :data:`~dacl.viz.METRICS_FILE`, else ``None``."""
    if ckpt_path is None:
        return None
    parent = Path(ckpt_path).resolve().parent
    runs = (parent.parent, parent) if parent.name == "checkpoints" else (parent,)
    return next((run for run in runs if (run / viz.METRICS_FILE).is_file()), None)


class _Gather(pl.Callback):
    """Keeps each evaluation batch's logits, attention and labels."""

    def __init__(self) -> None:
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, *args: Any) -> None:
        self.parts.append((outputs["logits"].float(), outputs["attention"].float(), batch[1]))

    on_test_batch_end = on_validation_batch_end


class Trainer(pl.Trainer):
    """Lightning's Trainer with two more entry points: ``report`` (``dacl report``) and
    ``predict_split`` (``dacl predict_split``: Lightning's ``predict`` under the name that
    leaves ``dacl predict`` to pictures)."""

    def predict_split(
        self, model: pl.LightningModule | None = None, dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None, return_predictions: bool | None = None,
        ckpt_path: str | None = None,
    ) -> Any:  # fmt: skip
        """Predictions of the data's predict split (test, else val), as ``Trainer.predict``."""
        return self.predict(model, dataloaders, datamodule, return_predictions, ckpt_path)

    def report(
        self, model: pl.LightningModule, datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None, split: Literal["val", "test"] = "val", out: str | None = None,
        per_class: int = 6, grid_size: int = 24,
    ) -> dict[str, Any]:  # fmt: skip
        """Evaluate the model once on one split through Lightning's own loop; write the pictures,
        ``metrics.json`` and ``report.md`` and return ``metrics.json``: ``split``, ``checkpoint``,
        ``n_images``, ``class_names``, the measures of :func:`compute_metrics`, ``attention_rows``
        (per class, the files of its map's rows), ``attention`` (the diagnostics) and ``files``.

        Args:
            ckpt_path: best, last or a checkpoint file, loaded into the model; none: the
                model's current weights.
            split: the split to evaluate.
            out: folder for the files; default ``<run>/report_<split>``.
            per_class: images per class in the per-class attention maps.
            grid_size: faces per sample grid.
        """
        if split not in SPLITS:
            raise DACLError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        log_dir = find_log_dir(ckpt_path)
        out = Path(out) if out else (log_dir or Path(ckpt_path or ".").parent) / f"report_{split}"
        check_folder(out, "--out")  # before the evaluation's minutes
        logits, attention, labels = self._evaluate(model, datamodule, ckpt_path, split)
        names, n = tuple(model.class_names), len(labels)
        files = [Path(f).name for f in datamodule.names(split)]
        ckpt_label = Path(ckpt_path).name if ckpt_path else "current weights"
        where = f"{split} · {ckpt_label}"
        metrics = compute_metrics(logits, labels, names)
        faces = functools.partial(datamodule.faces, split)

        def save(fig: Figure, name: str) -> str:
            return viz.save_figure(fig, out / f"{name}.png").name

        title = f"{split} confusion matrix · {ckpt_label}"
        cm = viz.confusion_figure(metrics["confusion_matrix"], names, title)
        written: dict[str, Any] = {"confusion": save(cm, "confusion")}
        attention_rows, diagnostics = {}, None
        if model.net.heads is not None:  # the other variants' a is a constant
            pictures = viz.attention_pictures(
                attention, labels, logits, files, faces, names, where, per_class
            )
            attention_rows, diagnostics = _attention(
                save, written, pictures, files, attention, labels, names
            )
        conf, pred = logits.softmax(-1).max(-1)
        title = f"{where} · {n} images"
        grids = viz.sample_grids(labels, pred, conf, faces, names, grid_size, title)
        written |= {f"samples_{k}": save(fig, f"samples_{k}") for k, (_, fig) in grids.items()}
        if log_dir is not None and (curves := _curves(log_dir)) is not None:
            written["curves"] = save(curves, "curves")
        written |= {"metrics": "metrics.json", "report": "report.md"}
        result = {
            "split": split, "checkpoint": str(ckpt_path) if ckpt_path is not None else None,
            "n_images": n, "class_names": list(names), **metrics,
            "attention_rows": attention_rows, "attention": diagnostics, "files": written,
        }  # fmt: skip
        _write(out, result, dict(model.hparams), log_dir, per_class)
        return result

    def _evaluate(
        self, model: pl.LightningModule, datamodule: pl.LightningDataModule,
        ckpt_path: str | None, split: str,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        """Logits, attention and labels of one split, through Lightning's own loop."""
        gather = _Gather()
        self.callbacks.append(gather)
        try:
            evaluate = self.validate if split == "val" else self.test
            evaluate(
                model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True
            )
        finally:
            self.callbacks.remove(gather)
        if not gather.parts:
            raise DACLError(f"the {split} split has no images")
        logits, attention, labels = (torch.cat(t).cpu() for t in zip(*gather.parts, strict=True))
        return logits, attention, labels


def _curves(log_dir: Path) -> Figure | None:
    """The run's training curves from its ``metrics.csv``, or ``None`` when it has none."""
    scalars = viz.read_metrics(log_dir)
    if not any(viz.curve_panel(tag) for tag in scalars):
        return None
    return viz.curves_figure(scalars, f"training curves · {log_dir}")


def _attention(
    save: Callable[[Figure, str], str], written: dict[str, Any], pictures: tuple,
    files: Sequence[str], attention: Tensor, labels: Tensor, names: Sequence[str],
) -> tuple[dict[str, list[str]], dict[str, float]]:  # fmt: skip
    """Saves :func:`~dacl.viz.attention_pictures`' maps, naming them in ``written``; returns the
    files of each class's map rows (none for a class without images) and the attention's
    :class:`~dacl.diagnostics.AttentionDiagnostics` figures."""
    maps, mean = pictures
    written["attention"] = {c: save(fig, f"attention_{c}") for c, (_, fig) in maps.items()}
    written["attention_mean"] = save(mean, "attention_mean")
    rows = {c: [files[i] for i in idx.tolist()] for c, (idx, _) in maps.items()}
    meter = AttentionDiagnostics(names, attention.shape[1])
    meter.update(attention, labels)
    diagnostics = {k: float(v) for k, v in meter.compute().items()}
    return {c: rows.get(c, []) for c in names}, diagnostics


def _write(
    out: Path, result: dict[str, Any], hp: dict[str, Any], log_dir: Path | None, per_class: int
) -> None:
    """``metrics.json`` and ``report.md`` into ``out``, and the summary lines on stdout."""
    write_text(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    write_text(out / "report.md", _markdown(result, hp, log_dir, per_class))
    print(
        f"report written to {out}: acc {result['acc']:.4f}, balanced acc "
        f"{result['balanced_acc']:.4f}, macro F1 {result['f1_macro']:.4f}"
    )
    if result["attention"] is not None:
        print(f"attention: {describe_attention(result['attention'])}")


def write_report(
    module: pl.LightningModule, datamodule: pl.LightningDataModule, *, accelerator: str = "auto",
    precision: str | int | None = None, **kwargs: Any,
) -> dict[str, Any]:  # fmt: skip
    """:meth:`Trainer.report` on a quiet one-device Trainer (``accelerator``, ``precision``)."""
    trainer = Trainer(
        accelerator=accelerator, devices=1, precision=precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],  # checkpoints read safely, errors in one line
    )  # fmt: skip
    return trainer.report(module, datamodule, **kwargs)


def _markdown(result: dict[str, Any], hp: dict[str, Any], log_dir: Path | None, k: int) -> str:
    """``report.md``: the package's ``templates/report.md`` filled in from ``result``."""
    names, written, cm = result["class_names"], result["files"], result["confusion_matrix"]
    per_class = "\n".join(
        f"| {c} | {result['counts'][c]} | {result['predicted_counts'][c]} "
        f"| {result['recall'][c]:.4f} | {result['precision'][c]:.4f} |"
        for c in names
    )
    pairs = [(cm[i][j], i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
    confusions = "\n".join(
        f"- {names[i]} → {names[j]}: {c} images ({c / sum(cm[i]):.0%} of {names[i]})"
        for c, i, j in sorted(pairs, reverse=True)[:3]
        if c
    )
    if "curves" in written:
        curves = f"Accuracy and losses as logged in `{log_dir}`.\n\n![training curves](curves.png)"
    else:
        where = f"in `{log_dir}`" if log_dir is not None else "next to the checkpoint"
        curves = f"_No accuracy or loss metrics ({viz.METRICS_FILE}) found {where}._"
    variant = hp["variant"]
    attention = f"_This model has no attention branch (variant `{variant}`: a is a constant)._"
    if "attention" in written:
        maps = [
            f"### {c}\n\n![{c} attention weights]({f})" for c, f in written["attention"].items()
        ]
        section = template("report_attention.md")
        attention = section.format(
            per_class=k, n_images=result["n_images"], maps="\n\n".join(maps),
            diagnostics=describe_attention(result["attention"]),
        )  # fmt: skip
    model = ", ".join(f"{a} {hp[a]}" for a in ("variant", "lam", "alpha", "image_size", "in_chans"))
    checkpoint = result["checkpoint"] or "current weights (no checkpoint)"
    return template("report.md").format_map(
        result
        | {"checkpoint": checkpoint, "model": model, "per_class": per_class}
        | {"confusions": confusions or "- none", "curves": curves, "attention": attention.rstrip()}
    )


def describe_attention(diagnostics: dict[str, float]) -> str:
    """:class:`~dacl.diagnostics.AttentionDiagnostics`' figures in one line."""
    d = diagnostics
    return (
        f"mean {d['mean']:.3f}, spread within a face {d['face_spread']:.3f}, spread of a weight "
        f"across faces {d['weight_spread']:.3f}, {d['low']:.1%} below 0.1, {d['high']:.1%} "
        "above 0.9"
    )
