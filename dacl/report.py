"""``dacl report``: evaluate a checkpoint once and write the report's chapter 4 for any run.

:func:`write_report` runs the model over one split in a single pass (Lightning's evaluation loop)
and writes, into ``out``::

    confusion.png               counts and row-normalised, class names, balanced accuracy
    attention_<class>.png       attention vectors (rows) of the first images of each class
    attention_mean.png          per-class mean attention over the whole split
    samples_wrong.png           most confident mistakes first, true / predicted (confidence)
    samples_correct.png         correct predictions, class by class
    curves.png                  accuracy and loss curves from the run's TensorBoard events
    metrics.json                acc, balanced acc, macro F1, per-class recall and precision,
                                confusion matrix, counts (all by torchmetrics)
    report.md                   ties them together

The attention pictures are left out for models without an attention branch (``center`` and
``softmax`` variants: ``a ≡ 1``) and the curves when no event files are found.

``dacl report --config … --ckpt_path … [--split val|test] [--out DIR]`` (dacl.cli) calls::

    write_report(module, datamodule, split=split, out=out, ckpt_path=ckpt, log_dir=run_dir)

with the module and datamodule built from the config; ``accelerator`` and ``precision`` can
be passed as for the Trainer (default: ``"auto"``, full precision).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics.classification import MulticlassPrecision

from dacl import viz
from dacl.callbacks import select_samples
from dacl.checkpoint import safe_load
from dacl.errors import DACLError
from dacl.module import eval_metrics

__all__ = ["SPLITS", "compute_metrics", "find_log_dir", "write_report"]

SPLITS = ("val", "test")


def compute_metrics(logits: Tensor, labels: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """SPEC §5's measures of ``logits`` ``(n, K)`` against ``labels`` ``(n,)`` by torchmetrics:
    ``acc``, ``balanced_acc`` (macro recall), ``f1_macro``, per-class ``recall`` and
    ``precision`` (dicts by class name), ``confusion_matrix`` (rows = true class) and the
    true and predicted ``counts`` per class."""
    k = len(class_names)
    metrics = eval_metrics(k)  # the module's own measures, plus per-class precision
    metrics.add_metrics({"precision": MulticlassPrecision(k, average=None)})
    values = metrics(logits.float().cpu(), labels.cpu())
    cm = values["confmat"].long()
    names = list(class_names)
    return {
        "acc": float(values["acc"]),
        "balanced_acc": float(values["balanced_acc"]),
        "f1_macro": float(values["f1_macro"]),
        "recall": dict(zip(names, values["recall"].tolist(), strict=True)),
        "precision": dict(zip(names, values["precision"].tolist(), strict=True)),
        "counts": dict(zip(names, cm.sum(1).tolist(), strict=True)),
        "predicted_counts": dict(zip(names, cm.sum(0).tolist(), strict=True)),
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


def _load_weights(module: pl.LightningModule, ckpt_path: str | Path) -> None:
    ckpt = safe_load(ckpt_path)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if state is None:
        raise DACLError(f"'{ckpt_path}' is not a Lightning checkpoint (no 'state_dict')")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise DACLError(
            f"checkpoint '{ckpt_path}' does not fit the configured model "
            f"(use the run's own config): {str(err).splitlines()[0]}"
        ) from err


class _Gather(pl.Callback):
    """Keeps what the report draws from each evaluation batch, on the CPU: logits, attention,
    labels and the pictures (the model inputs, un-normalised)."""

    def __init__(self) -> None:
        self.parts: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        logits, attention = outputs["logits"].float(), outputs["attention"].float()
        display = viz.to_display(batch[0])
        self.parts.append((logits.cpu(), attention.cpu(), batch[1].long().cpu(), display.cpu()))

    on_test_batch_end = on_validation_batch_end


def _names_of(datamodule, split: str, n: int) -> list[str] | None:
    names_of = getattr(datamodule, "names", None)
    if names_of is None:
        return None
    try:
        names = [Path(str(p)).name for p in names_of(split)]
    except (DACLError, KeyError):  # that split is not set up in this datamodule
        return None
    return names if len(names) == n else None


def _first_per_class(labels: Tensor, k: int, per_class: int) -> Tensor:
    chosen = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(k)]
    return torch.cat(chosen)


def _top_confusions(cm: list[list[int]], names: Sequence[str], top: int = 3) -> list[str]:
    k = len(names)
    pairs = [(cm[i][j], i, j) for i in range(k) for j in range(k) if i != j and cm[i][j]]
    lines = []
    for count, i, j in sorted(pairs, reverse=True)[:top]:
        share = count / max(1, sum(cm[i]))
        lines.append(f"{names[i]} → {names[j]}: {count} images ({share:.0%} of {names[i]})")
    return lines


def write_report(
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    *,
    split: str = "test",
    out: str | Path = "report",
    ckpt_path: str | Path | None = None,
    log_dir: str | Path | None = None,
    accelerator: str = "auto",
    precision: str | int | None = None,
    per_class: int = 6,
    grid_size: int = 24,
) -> dict[str, Any]:
    """Evaluate ``module`` once on ``split`` and write the report's pictures, ``metrics.json``
    and ``report.md`` into ``out``.

    Args:
        module: a :class:`~dacl.module.DACLModule` (its validation/test step returns the
            batch's logits and attention); evaluated by ``trainer.validate``/``trainer.test``.
        datamodule: gives ``val_dataloader``/``test_dataloader``, and optionally
            ``class_names`` and ``names(split)`` (file names in loader order).
        split: ``"val"`` or ``"test"``.
        out: output directory (created).
        ckpt_path: Lightning checkpoint whose ``state_dict`` is loaded into ``module``;
            ``None`` evaluates the module's current weights.
        log_dir: the run's TensorBoard directory for the curves; ``None`` looks next to the
            checkpoint (``<run>/checkpoints/*.ckpt`` → ``<run>``).
        accelerator, precision: as the Trainer's (``"auto"``, ``"cpu"``, ``"gpu"``;
            ``"32-true"``, ``"bf16-mixed"``, ...); one device.
        per_class: images per class in the per-class attention maps (the first of each class
            in loader order).
        grid_size: faces per sample grid.

    Returns:
        The contents of ``metrics.json``: ``split``, ``checkpoint``, ``n_images``,
        ``class_names``, ``acc``, ``balanced_acc``, ``f1_macro``, ``recall``, ``precision``,
        ``counts``, ``predicted_counts``, ``confusion_matrix``, ``attention_rows`` (per class,
        the file names — or ``#<loader position>`` — of the rows of its attention map) and
        ``files`` (written file names, relative to ``out``).

    Raises:
        DACLError: unknown split, missing or unfitting checkpoint, empty split, or classes of
            the model and the data that differ.
    """
    if split not in SPLITS:
        raise DACLError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    out = Path(out)
    if ckpt_path is not None:
        _load_weights(module, ckpt_path)
    class_names = tuple(getattr(module, "class_names", ()) or ())
    data_names = tuple(getattr(datamodule, "class_names", ()) or ())
    if class_names and data_names and class_names != data_names:
        raise DACLError(f"the model's classes {class_names} differ from the data's {data_names}")
    class_names = class_names or data_names
    gather = _Gather()
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=False,
        callbacks=[gather],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    # Lightning's own evaluation loop: the datamodule's transfer hooks, precision and device
    evaluate = trainer.validate if split == "val" else trainer.test
    evaluate(module, datamodule=datamodule, verbose=False)
    if not gather.parts:
        raise DACLError(f"the {split} split has no images")
    logits, attention, labels, display = (torch.cat(t) for t in zip(*gather.parts, strict=True))
    class_names = class_names or tuple(str(i) for i in range(logits.shape[1]))
    n = len(labels)
    ckpt_label = Path(ckpt_path).name if ckpt_path else "current weights"
    where = f"{split} · {ckpt_label} · {n} images"

    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(logits, labels, class_names)
    files: dict[str, Any] = {}

    title = f"{split} · {ckpt_label}"
    fig = viz.confusion_figure(metrics["confusion_matrix"], class_names, title)
    files["confusion"] = viz.save_figure(fig, out / "confusion.png").name

    probs = logits.softmax(-1)
    conf, pred = probs.max(-1)
    file_names = _names_of(datamodule, split, n)
    has_attention = not bool((attention == 1).all())
    attention_rows: dict[str, list[str]] = {}
    if has_attention:
        chosen = _first_per_class(labels, len(class_names), per_class)
        row_names = [file_names[i] if file_names else f"#{i}" for i in chosen.tolist()]
        rows = [
            f"{name} → {class_names[pred[i]]} {conf[i]:.2f}"
            for name, i in zip(row_names, chosen.tolist(), strict=True)
        ]
        attention_rows = {
            c: [r for r, y in zip(row_names, labels[chosen].tolist(), strict=True) if y == k]
            for k, c in enumerate(class_names)
        }
        figures = viz.class_attention_figures(
            attention[chosen], labels[chosen], class_names, title, rows, display[chosen]
        )
        files["attention"] = {}
        for name, fig in figures.items():
            files["attention"][name] = viz.save_figure(fig, out / f"attention_{name}.png").name
        fig = viz.mean_attention_figure(attention, labels, class_names, where)
        files["attention_mean"] = viz.save_figure(fig, out / "attention_mean.png").name

    wrong, correct = select_samples(labels, pred, conf, grid_size)
    for kind, idx, note in (
        ("wrong", wrong, f"{len(wrong)} most confident mistakes"),
        ("correct", correct, f"{len(correct)} correct, class by class"),
    ):
        fig = viz.sample_grid_figure(
            display[idx], labels[idx], pred[idx], conf[idx], class_names, f"{where} · {note}"
        )
        files[f"samples_{kind}"] = viz.save_figure(fig, out / f"samples_{kind}.png").name

    log_dir = Path(log_dir) if log_dir is not None else find_log_dir(ckpt_path)
    scalars = viz.read_scalars(log_dir) if log_dir is not None and log_dir.exists() else {}
    if any(viz.curve_panel(tag) for tag in scalars):
        fig = viz.curves_figure(scalars, f"training curves · {log_dir}")
        files["curves"] = viz.save_figure(fig, out / "curves.png").name

    result = {
        "split": split,
        "checkpoint": str(ckpt_path) if ckpt_path is not None else None,
        "n_images": n,
        "class_names": list(class_names),
        **metrics,
        "attention_rows": attention_rows,
        "files": files,
    }
    files["metrics"] = "metrics.json"
    files["report"] = "report.md"
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(result, module, log_dir, per_class))
    return result


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _markdown(result: dict[str, Any], module, log_dir: Path | None, per_class: int) -> str:
    names, files = result["class_names"], result["files"]
    split, n = result["split"], result["n_images"]
    hp = dict(getattr(module, "hparams", {}) or {})
    model = ", ".join(
        f"{k} {hp[k]}" for k in ("variant", "lam", "alpha", "image_size", "in_chans") if k in hp
    )
    lines = [
        f"# DACL report — {split} split",
        "",
        f"- checkpoint: `{result['checkpoint'] or 'current weights (no checkpoint)'}`",
        f"- images: {n}",
    ]
    if model:
        lines.append(f"- model: {model}")
    lines += [
        "",
        "## Results",
        "",
        "| measure | value |",
        "|---|---|",
        f"| accuracy | {_fmt(result['acc'])} |",
        f"| balanced accuracy (mean per-class recall) | {_fmt(result['balanced_acc'])} |",
        f"| macro F1 | {_fmt(result['f1_macro'])} |",
        "",
        "| class | images | predicted as | recall | precision |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in names:
        lines.append(
            f"| {c} | {result['counts'][c]} | {result['predicted_counts'][c]} "
            f"| {_fmt(result['recall'][c])} | {_fmt(result['precision'][c])} |"
        )
    confusions = _top_confusions(result["confusion_matrix"], names)
    if confusions:
        lines += ["", "Most frequent confusions (true → predicted):", ""]
        lines += [f"- {line}" for line in confusions]
    lines += ["", "## Training curves", ""]
    if "curves" in files:
        lines += [
            f"Accuracy and losses as logged during training (TensorBoard events in `{log_dir}`).",
            "",
            f"![training curves]({files['curves']})",
        ]
    else:
        where = f"in `{log_dir}`" if log_dir is not None else "next to the checkpoint"
        lines.append(f"_No TensorBoard scalars found {where}; pass the run's log directory._")
    lines += [
        "",
        "## Confusion matrix",
        "",
        "Counts (left) and row-normalised (right): row = true class, column = predicted class; "
        "the diagonal of the right matrix is each class's recall, and their mean the balanced "
        "accuracy.",
        "",
        f"![confusion matrix]({files['confusion']})",
        "",
        "## Attention weights",
        "",
    ]
    if "attention" in files:
        lines += [
            f"The 512 attention weights of the first {per_class} images of each class (in loader "
            "order) as rows of a heat map, one map per class: rows of one class that share "
            "bright or dark columns are the class's pattern. Each row is captioned with its "
            "file and the predicted class with its confidence.",
            "",
        ]
        for c, png in files["attention"].items():
            lines += [f"### {c}", "", f"![{c} attention weights]({png})", ""]
        lines += [
            "### Per-class mean",
            "",
            f"Mean attention of each class over all {n} images (top) and its difference from "
            "the mean over all classes (bottom).",
            "",
            f"![per-class mean attention]({files['attention_mean']})",
        ]
    else:
        lines.append("_This model has no attention branch (variant `center` or `softmax`)._")
    lines += [
        "",
        "## Classified faces",
        "",
        "Captions read `true / predicted (confidence)`; green frames are right, red wrong.",
        "",
        "### Wrongly classified, most confident mistakes first",
        "",
        f"![wrongly classified faces]({files['samples_wrong']})",
        "",
        "### Correctly classified",
        "",
        f"![correctly classified faces]({files['samples_correct']})",
        "",
        f"Numbers: [`{files['metrics']}`]({files['metrics']}).",
        "",
    ]
    return "\n".join(lines)
