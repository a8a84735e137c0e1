"""``dacl report``: evaluate a checkpoint once and write the report's chapter 4 for any run.

:func:`write_report` runs Lightning's own evaluation loop over one split and writes, into
``out``: ``confusion.png`` (counts and row-normalised), ``attention_<class>.png`` (the attention
vectors of the first images of each class), ``attention_mean.png`` (per-class mean over the
split), ``samples_wrong.png`` / ``samples_correct.png``, ``curves.png`` (from the run's
TensorBoard events), ``metrics.json`` (torchmetrics: acc, balanced acc, macro F1, per-class
recall and precision, confusion matrix, counts) and ``report.md`` tying them together. Models
without an attention branch (``center``, ``softmax``: ``a ≡ 1``) get no attention pictures, runs
without event files no curves.

``dacl report --config … --ckpt_path best|last|FILE [--split val|test] [--out DIR]`` is a
LightningCLI subcommand: :meth:`Trainer.report`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassPrecision

from dacl import viz
from dacl.checkpoint import safe_load
from dacl.errors import DACLError
from dacl.module import eval_metrics

SPLITS = ("val", "test")


def compute_metrics(logits: Tensor, labels: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """SPEC §5's measures of ``logits`` ``(n, K)`` against ``labels`` by torchmetrics: ``acc``,
    ``balanced_acc`` (macro recall), ``f1_macro``, per-class ``recall`` and ``precision`` (by
    class name), ``confusion_matrix`` (rows = true class), true and predicted ``counts``."""
    k = len(class_names)
    metrics = eval_metrics(k)  # the module's own measures, plus per-class precision
    metrics.add_metrics({"precision": MulticlassPrecision(k, average=None)})
    values = metrics(logits.float().cpu(), labels.cpu())
    cm = values["confmat"].long()

    def by_class(t: Tensor) -> dict[str, Any]:
        return dict(zip(class_names, t.tolist(), strict=True))

    return {
        **{m: float(values[m]) for m in ("acc", "balanced_acc", "f1_macro")},
        "recall": by_class(values["recall"]),
        "precision": by_class(values["precision"]),
        "counts": by_class(cm.sum(1)),
        "predicted_counts": by_class(cm.sum(0)),
        "confusion_matrix": cm.tolist(),
    }


def find_log_dir(ckpt_path: str | Path | None) -> Path | None:
    """The run directory of a Lightning checkpoint (``<run>/checkpoints/x.ckpt`` → ``<run>``)
    when it holds TensorBoard event files, else ``None``."""
    if ckpt_path is None:
        return None
    parent = Path(ckpt_path).resolve().parent
    for run in (parent.parent, parent) if parent.name == "checkpoints" else (parent,):
        if any(run.glob("events.out.tfevents.*")):
            return run
    return None


class _Gather(pl.Callback):
    """Keeps each evaluation batch's logits, attention and labels on the CPU."""

    def __init__(self) -> None:
        self.parts: list[tuple[Tensor, Tensor, Tensor]] = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self.parts.append(
            (outputs["logits"].float().cpu(), outputs["attention"].float().cpu(), batch[1].cpu())
        )

    on_test_batch_end = on_validation_batch_end


def _load_weights(module: pl.LightningModule, ckpt_path: str | Path) -> None:
    state = safe_load(ckpt_path).get("state_dict")
    if state is None:
        raise DACLError(f"'{ckpt_path}' is not a Lightning checkpoint (no 'state_dict')")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise DACLError(
            f"checkpoint '{ckpt_path}' does not fit the configured model "
            f"(use the run's own config): {str(err).splitlines()[0]}"
        ) from err


class Trainer(pl.Trainer):
    """Lightning's Trainer with one more entry point, ``report`` (``dacl report``)."""

    def report(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        split: Literal["val", "test"] = "val",
        out: str | None = None,
        per_class: int = 6,
        grid_size: int = 24,
    ) -> dict[str, Any]:
        """Pictures, metrics.json and report.md of a checkpoint on one split.

        Evaluates a :class:`~dacl.module.DACLModule` once on a split of a
        :class:`~dacl.data.FER2013DataModule` through Lightning's own loop and returns the
        contents of ``metrics.json``: ``split``, ``checkpoint``, ``n_images``, ``class_names``,
        the measures of :func:`compute_metrics`, ``attention_rows`` (per class, the files of
        its attention map's rows) and ``files``. :class:`DACLError` for an unknown split, a
        missing or unfitting checkpoint or an empty split.

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
        if ckpt_path is not None:
            _load_weights(model, ckpt_path)
        gather = _Gather()
        self.callbacks.append(gather)
        try:
            evaluate = self.validate if split == "val" else self.test
            evaluate(model, datamodule=datamodule, verbose=False)
        finally:
            self.callbacks.remove(gather)
        if not gather.parts:
            raise DACLError(f"the {split} split has no images")
        logits, attention, labels = (torch.cat(t) for t in zip(*gather.parts, strict=True))
        names, n = tuple(model.class_names), len(labels)
        faces = datamodule.faces(split, torch.arange(n))
        files = [Path(f).name for f in datamodule.names(split)]
        ckpt_label = Path(ckpt_path).name if ckpt_path else "current weights"
        title, where = f"{split} · {ckpt_label}", f"{split} · {ckpt_label} · {n} images"
        log_dir = find_log_dir(ckpt_path)
        out = Path(out) if out else (log_dir or Path(ckpt_path or ".").parent) / f"report_{split}"
        out.mkdir(parents=True, exist_ok=True)
        metrics = compute_metrics(logits, labels, names)
        written: dict[str, Any] = {}

        def save(key: str, fig, name: str) -> None:
            written[key] = viz.save_figure(fig, out / name).name

        save(
            "confusion",
            viz.confusion_figure(metrics["confusion_matrix"], names, title),
            "confusion.png",
        )
        conf, pred = logits.softmax(-1).max(-1)
        attention_rows: dict[str, list[str]] = {}
        if not bool((attention == 1).all()):
            chosen = torch.cat(
                [torch.nonzero(labels == c)[:per_class, 0] for c in range(len(names))]
            )
            rows = [f"{files[i]} → {names[pred[i]]} {conf[i]:.2f}" for i in chosen.tolist()]
            attention_rows = {
                c: [files[i] for i in chosen.tolist() if labels[i] == k]
                for k, c in enumerate(names)
            }
            figures = viz.class_attention_figures(
                attention[chosen], labels[chosen], names, title, rows, faces[chosen]
            )
            written["attention"] = {
                c: viz.save_figure(f, out / f"attention_{c}.png").name for c, f in figures.items()
            }
            save(
                "attention_mean",
                viz.mean_attention_figure(attention, labels, names, where),
                "attention_mean.png",
            )
        wrong, correct = viz.select_samples(labels, pred, conf, grid_size)
        for kind, idx, note in (
            ("wrong", wrong, f"{len(wrong)} most confident mistakes"),
            ("correct", correct, f"{len(correct)} correct, class by class"),
        ):
            fig = viz.sample_grid_figure(
                faces[idx], labels[idx], pred[idx], conf[idx], names, f"{where} · {note}"
            )
            save(f"samples_{kind}", fig, f"samples_{kind}.png")
        scalars = viz.read_scalars(log_dir) if log_dir is not None and log_dir.exists() else {}
        if any(viz.curve_panel(tag) for tag in scalars):
            save("curves", viz.curves_figure(scalars, f"training curves · {log_dir}"), "curves.png")
        written |= {"metrics": "metrics.json", "report": "report.md"}
        result = {
            "split": split,
            "checkpoint": str(ckpt_path) if ckpt_path is not None else None,
            "n_images": n,
            "class_names": list(names),
            **metrics,
            "attention_rows": attention_rows,
            "files": written,
        }
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "report.md").write_text(_markdown(result, dict(model.hparams), log_dir, per_class))
        print(
            f"report written to {out}: acc {result['acc']:.4f}, balanced acc "
            f"{result['balanced_acc']:.4f}, macro F1 {result['f1_macro']:.4f}"
        )
        return result


def write_report(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    accelerator: str = "auto",
    precision: str | int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:meth:`Trainer.report` on a quiet one-device Trainer (``accelerator``, ``precision``)."""
    trainer = Trainer(
        accelerator=accelerator, devices=1, precision=precision, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    return trainer.report(module, datamodule, **kwargs)


def _markdown(result: dict[str, Any], hp: dict[str, Any], log_dir: Path | None, k: int) -> str:
    names, files, cm = result["class_names"], result["files"], result["confusion_matrix"]
    model = ", ".join(f"{a} {hp[a]}" for a in ("variant", "lam", "alpha", "image_size", "in_chans"))
    ckpt = result["checkpoint"] or "current weights (no checkpoint)"
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
    if "curves" in files:
        curves = f"Accuracy and losses as logged in `{log_dir}`.\n\n![training curves](curves.png)"
    else:
        where = f"in `{log_dir}`" if log_dir is not None else "next to the checkpoint"
        curves = f"_No TensorBoard scalars found {where}; pass the run's log directory._"
    if "attention" in files:
        maps = "\n\n".join(
            f"### {c}\n\n![{c} attention weights]({f})" for c, f in files["attention"].items()
        )
        attention = (
            f"The 512 attention weights of the first {k} images of each class (loader order) as "
            "rows of a heat map, captioned with file, prediction and confidence: columns bright "
            f"or dark across a class's rows are its pattern.\n\n{maps}\n\n### Per-class mean\n\n"
            f"Each class's mean attention over all {result['n_images']} images (top) and its "
            "difference from the mean over all classes (bottom).\n\n"
            "![per-class mean attention](attention_mean.png)"
        )
    else:
        attention = "_This model has no attention branch (variant `center` or `softmax`)._"
    return f"""# DACL report — {result["split"]} split

- checkpoint: `{ckpt}`
- images: {result["n_images"]}
- model: {model}

## Results

| measure | value |
|---|---|
| accuracy | {result["acc"]:.4f} |
| balanced accuracy (mean per-class recall) | {result["balanced_acc"]:.4f} |
| macro F1 | {result["f1_macro"]:.4f} |

| class | images | predicted as | recall | precision |
|---|---:|---:|---:|---:|
{per_class}

Most frequent confusions (true → predicted):

{confusions or "- none"}

## Training curves

{curves}

## Confusion matrix

Counts (left) and row-normalised (right): row = true class, column = predicted class; the right
diagonal is each class's recall, their mean the balanced accuracy.

![confusion matrix](confusion.png)

## Attention weights

{attention}

## Classified faces

Captions read `true / predicted (confidence)`; green frames are right, red wrong.

### Wrongly classified, most confident first

![wrongly classified faces](samples_wrong.png)

### Correctly classified

![correctly classified faces](samples_correct.png)

Numbers: [`metrics.json`](metrics.json).
"""
