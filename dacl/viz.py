"""The pictures of SPEC §5 as matplotlib figures, drawn from arrays or tensors (report
§4.3–4.6); nothing here knows about Lightning. Figures live on their own Agg canvas, never in
``pyplot``: no display is needed, the user's backend is untouched and nothing accumulates epoch
after epoch. Captions use class names; every heat map has a colour bar."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dacl.classes import REPORTED_METRICS

Scalars = dict[str, list[tuple[int, float]]]

CORRECT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def figure(width: float, height: float) -> Figure:
    """A headless Agg figure of ``width`` x ``height`` inches (no pyplot state involved)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _join(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an RGB ``uint8`` array of shape ``(H, W, 3)``."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


# --------------------------------------------------------------------------- confusion matrix


def balanced_accuracy(cm: Any) -> float:
    """Mean per-class recall of a confusion matrix (rows = true class), as torchmetrics'
    macro recall computes it: classes absent from both the rows and the predictions are left
    out of the mean."""
    cm = _np(cm).astype(np.float64)
    tp = np.diag(cm)
    support = cm.sum(1)
    predicted = cm.sum(0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    present = (support + predicted) > 0
    return float(recall[present].mean()) if present.any() else float("nan")


def _annotate(ax, values: np.ndarray, fmt: str, image) -> None:
    cmap, norm = image.cmap, image.norm
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if np.isnan(v):
                continue
            r, g, b, _ = cmap(norm(v))
            color = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black"
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8, color=color)


def confusion_figure(cm: Any, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Confusion matrix as counts and row-normalised (each row: the fraction of that true
    class predicted as each class), side by side; balanced and plain accuracy in the title."""
    cm = _np(cm).astype(np.int64)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(class_names) != k:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} classes")
    support = cm.sum(1)
    n = int(cm.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / support[:, None]
    norm[support == 0] = np.nan
    acc = float(np.trace(cm) / n) if n else float("nan")
    side = 1.0 + 0.62 * k
    fig = figure(2 * side + 2.6, side + 1.4)
    axes = fig.subplots(1, 2)
    names = list(class_names)
    panels = (
        (cm.astype(float), "counts", ".0f", "images", None),
        (norm, "row-normalised (recall on the diagonal)", ".2f", "fraction of the true class", 1),
    )
    for ax, (values, sub, fmt, label, vmax) in zip(axes, panels, strict=True):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
        _annotate(ax, values, fmt, im)
        ax.set_xticks(range(k), names, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_xlabel("predicted class")
        ax.set_title(sub, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    axes[0].set_yticks(range(k), [f"{c} ({s})" for c, s in zip(names, support, strict=True)])
    axes[0].set_ylabel("true class (images)")
    axes[1].set_yticks(range(k), names)
    axes[1].set_ylabel("true class")
    stats = f"balanced acc {balanced_accuracy(cm):.3f} · acc {acc:.3f} · {n} images"
    fig.suptitle(_join(title or "Confusion matrix", stats), fontsize=11)
    return fig


# --------------------------------------------------------------------------- attention

#: Heat maps: one cell per value, no smoothing between neighbouring dimensions.
_HEAT = {"aspect": "auto", "interpolation": "nearest"}


def attention_figure(
    attn: Any,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    images: Any = None,
) -> Figure:
    """Attention vectors ``attn`` ``(n, d)`` as rows of a heat map (report Fig. 4.11–4.12).

    Args:
        row_labels: one caption per row (e.g. file name and prediction); default ``#i``.
        images: optional display-ready pictures ``(n, H, W)`` drawn
            as thumbnails left of their rows.

    The colour range is fixed to (0, 1) so maps compare across classes and epochs.
    """
    attn = _np(attn).astype(np.float32)
    if attn.ndim != 2:
        raise ValueError(f"attention must be (n, d), got shape {attn.shape}")
    n, d = attn.shape
    labels = list(row_labels) if row_labels is not None else [f"#{i}" for i in range(n)]
    row_h = 0.42 if images is not None else 0.3
    fig = figure(12.0, max(2.2, 1.35 + row_h * n))
    if n == 0:
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
        fig.suptitle(title or "Attention weights", fontsize=11)
        return fig
    if images is not None:
        thumbs = _np(images)
        if thumbs.ndim == 4:
            thumbs = thumbs[:, 0]
        grid = fig.add_gridspec(n, 2, width_ratios=[1, 22], hspace=0.0, wspace=0.01)
        ax = fig.add_subplot(grid[:, 1])
        for i in range(n):
            tax = fig.add_subplot(grid[i, 0])
            tax.imshow(thumbs[i], cmap="gray", vmin=0, vmax=255 if thumbs.dtype == np.uint8 else 1)
            tax.set_axis_off()
    else:
        ax = fig.add_subplot()
    im = ax.imshow(attn, cmap="viridis", vmin=0.0, vmax=1.0, **_HEAT)
    ax.set_yticks(range(n), labels, fontsize=8)
    step = 64 if d >= 256 else max(1, d // 8)
    ax.set_xticks(range(0, d, step))
    ax.set_xlabel(f"feature dimension (0–{d - 1})")
    fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04, label="attention weight")
    fig.suptitle(title or "Attention weights", fontsize=11)
    return fig


def class_attention_figures(
    attn: Any,
    labels: Any,
    class_names: Sequence[str],
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    images: Any = None,
) -> dict[str, Figure]:
    """One :func:`attention_figure` per class present in ``labels``, keyed by class name;
    rows are that class's images in their given order."""
    attn, labels = _np(attn), _np(labels).astype(np.int64)
    figures: dict[str, Figure] = {}
    for k, name in enumerate(class_names):
        idx = np.flatnonzero(labels == k)
        if idx.size == 0:
            continue
        figures[name] = attention_figure(
            attn[idx],
            title=_join(f"{name}: attention weights of {idx.size} images", title),
            row_labels=[row_labels[i] for i in idx] if row_labels is not None else None,
            images=_np(images)[idx] if images is not None else None,
        )
    return figures


def mean_attention_figure(
    attn: Any, labels: Any, class_names: Sequence[str], title: str | None = None
) -> Figure:
    """Per-class mean attention (one row per class) and, below, each class's difference from
    the mean over all images, where class-specific patterns stand out."""
    attn, labels = _np(attn).astype(np.float64), _np(labels).astype(np.int64)
    k, d = len(class_names), attn.shape[1]
    counts = np.bincount(labels, minlength=k)[:k]
    means = np.full((k, d), np.nan)
    for c in range(k):
        if counts[c]:
            means[c] = attn[labels == c].mean(0)
    diff = means - attn.mean(0, keepdims=True) if len(attn) else means
    fig = figure(12.0, 1.6 + 0.62 * k)
    axes = fig.subplots(2, 1, sharex=True)
    rows = [f"{name} (n={m})" for name, m in zip(class_names, counts, strict=True)]
    span = float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 1.0
    panels = (
        (means, "viridis", 0.0, 1.0, "mean attention"),
        (diff, "RdBu_r", -span or -1.0, span or 1.0, "difference from the all-class mean"),
    )
    for ax, (values, cmap, lo, hi, label) in zip(axes, panels, strict=True):
        masked = np.ma.masked_invalid(values)
        colors = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
        im = ax.imshow(masked, cmap=colors, vmin=lo, vmax=hi, **_HEAT)
        ax.set_yticks(range(k), rows, fontsize=8)
        ax.set_title(label, fontsize=10)
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.04, label=label.split(" from")[0])
    axes[1].set_xticks(range(0, d, 64 if d >= 256 else max(1, d // 8)))
    axes[1].set_xlabel(f"feature dimension (0–{d - 1})")
    fig.suptitle(_join("Per-class mean attention", title), fontsize=11)
    return fig


# --------------------------------------------------------------------------- sample grids


def select_samples(
    labels: torch.Tensor, pred: torch.Tensor, conf: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
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


def sample_grid_figure(
    images: Any,
    true: Any,
    pred: Any,
    conf: Any,
    class_names: Sequence[str],
    title: str | None = None,
    ncols: int = 8,
) -> Figure:
    """Faces in gray with ``true / pred (confidence)`` captions, green when right, red when
    wrong (report Fig. 4.13–4.14). ``images``: ``(n, H, W)`` or ``(n, C, H, W)``, ``uint8``
    or floats in [0, 1]."""
    imgs = _np(images)
    if imgs.ndim == 4:
        imgs = imgs[:, 0]
    true, pred, conf = _np(true).astype(int), _np(pred).astype(int), _np(conf).astype(float)
    n = len(imgs)
    cols = max(1, min(ncols, n))
    rows = max(1, math.ceil(n / cols))
    fig = figure(max(4.0, 1.55 * cols), 0.75 + 1.8 * rows)
    vmax = 255 if imgs.dtype == np.uint8 else 1.0
    if n == 0:
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=vmax, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        ok = true[i] == pred[i]
        color = CORRECT_COLOR if ok else WRONG_COLOR
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2)
        ax.set_title(
            f"{class_names[true[i]]} / {class_names[pred[i]]} ({conf[i]:.2f})",
            fontsize=8,
            color=color,
        )
    fig.suptitle(_join(title, "caption: true / predicted (confidence)"), fontsize=10)
    return fig


# --------------------------------------------------------------------------- curves


def curve_panel(tag: str) -> str | None:
    """The :func:`curves_figure` panel a scalar tag is drawn in, or ``None``."""
    name = tag.rsplit("/", 1)[-1]
    if name.endswith("_best"):  # the running maxima repeat the curves they summarise
        return None
    if name in REPORTED_METRICS or name.startswith("acc"):
        return "accuracy"
    if name == "loss_sc":
        return "sparse center loss L_SC"
    if name.startswith("loss"):
        return "loss (L = L_CE + λ·L_SC, and L_CE)"
    return None


def _smooth(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    out, last = np.empty_like(values), values[0]
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last
    return out


def curves_figure(
    scalars: Mapping[str, Sequence[tuple[int, float]]], title: str | None = None
) -> Figure:
    """Accuracy and loss curves from ``{tag: [(step, value), ...]}`` (e.g.
    :func:`read_scalars`): one panel for accuracy-like tags (``acc``, ``balanced_acc``,
    ``f1_macro``), one for ``loss``/``loss_ce`` and one for ``loss_sc``; other tags are left
    out. Dense series (per-step training losses) are drawn faintly with a smoothed line."""
    groups: dict[str, list[str]] = {}
    for tag in sorted(scalars):
        panel = curve_panel(tag)
        if panel is not None and len(scalars[tag]):
            groups.setdefault(panel, []).append(tag)
    order = [p for p in ("accuracy", "loss (L = L_CE + λ·L_SC, and L_CE)") if p in groups]
    order += [p for p in groups if p not in order]
    fig = figure(6.0 * max(1, len(order)), 4.4)
    if not order:
        fig.text(0.5, 0.5, "no accuracy or loss scalars found", ha="center", va="center")
    axes = fig.subplots(1, len(order), squeeze=False)[0] if order else []
    for ax, panel in zip(axes, order, strict=True):
        for tag in groups[panel]:
            points = sorted(scalars[tag])
            steps = np.array([p[0] for p in points])
            values = np.array([p[1] for p in points], dtype=float)
            style = "--" if tag.startswith("train") else "-"
            if len(values) > 30:
                line = ax.plot(steps, values, style, alpha=0.25, linewidth=0.8)[0]
                ax.plot(steps, _smooth(values), style, color=line.get_color(), label=tag)
            else:
                ax.plot(steps, values, style, marker="o", markersize=3, label=tag)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Training curves", fontsize=11)
    return fig


def _order(file: Path) -> tuple[int, int, str]:
    """Write order of ``events.out.tfevents.<time>.<host>.<pid>.<n>``: by time, then by the
    writer counter ``n`` as a number (by name, ``.10`` would come before ``.9``)."""
    parts = file.name.split(".")
    time, count = parts[3], parts[-1]
    return (int(time) if time.isdigit() else 0, int(count) if count.isdigit() else 0, file.name)


def read_scalars(event_dir: str | Path) -> Scalars:
    """All scalars of the TensorBoard event files in ``event_dir`` (a run's directory, e.g.
    ``lightning_logs/version_0``; not searched recursively) or of one event file, as
    ``{tag: [(step, value), ...]}`` sorted by step. Files are read in the order they were
    written and a later file's value wins for a repeated (tag, step), as after a resumed run."""
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    path = Path(event_dir)
    files = [path] if path.is_file() else sorted(path.glob("events.out.tfevents.*"), key=_order)
    merged: dict[str, dict[int, float]] = {}
    for file in files:
        acc = EventAccumulator(str(file), size_guidance={SCALARS: 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series = merged.setdefault(tag, {})
            for event in acc.Scalars(tag):
                series[int(event.step)] = float(event.value)
    return {tag: sorted(series.items()) for tag, series in merged.items()}
