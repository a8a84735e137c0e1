"""method.md §5's pictures (report §4.3–4.6) as matplotlib figures of arrays or tensors; nothing
here knows about Lightning. Each figure has its own Agg canvas, outside ``pyplot``: no display is
needed, the user's backend is untouched and nothing accumulates epoch after epoch. Captions use
class names; every heat map has a colour bar."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional.classification import multiclass_recall

from dacl.classes import REPORTED_METRICS
from dacl.errors import DACLError
from dacl.outputs import replacing

Scalars = dict[str, list[tuple[int, float]]]
#: The faces of images given by their indices (a datamodule's ``faces`` of one split).
Faces = Callable[[Tensor], Any]
#: A run's metrics, beside its TensorBoard events and checkpoints (:func:`read_metrics`).
METRICS_FILE = "metrics.csv"

CORRECT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _join(*parts: str | None) -> str:
    return " · ".join(p for p in parts if p)


def figure(width: float, height: float) -> Figure:
    """A headless Agg figure of ``width`` x ``height`` inches (no pyplot state involved)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` (parents created), whole or not at all, and return the
    path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, "figure", binary=True) as pending:
        fig.savefig(pending.file, format="png", dpi=dpi, facecolor="white")
    return path


def _faces(images: Any) -> np.ndarray:
    """Pictures ``(n, H, W)`` gray, or ``(n, C, H, W)``: gray for one channel, colour
    ``(n, H, W, 3)`` for three."""
    images = _np(images)
    if images.ndim == 4:
        return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
    return images


def _show_face(ax: Axes, face: np.ndarray, **kwargs: Any) -> None:
    """A face in gray or colour, ``uint8`` on 0–255 and floats on 0–1, without ticks."""
    if face.ndim == 3:
        ax.imshow(face if face.dtype == np.uint8 else face.clip(0, 1), **kwargs)
    else:
        ax.imshow(face, cmap="gray", vmin=0, vmax=255 if face.dtype == np.uint8 else 1, **kwargs)
    ax.set(xticks=[], yticks=[])


def balanced_accuracy(cm: Any) -> float:
    """torchmetrics' macro recall of a confusion matrix (rows = true class): the mean recall of
    the classes that occur or are predicted; NaN without images."""
    cm = torch.as_tensor(_np(cm), dtype=torch.long)
    k = len(cm)
    pairs = torch.arange(k * k).repeat_interleave(cm.flatten())  # true·k + predicted, per image
    return float(multiclass_recall(pairs % k, pairs // k, k)) if len(pairs) else math.nan


def confusion_figure(cm: Any, class_names: Sequence[str], title: str | None = None) -> Figure:
    """Confusion matrix as counts and row-normalised (each row: the fraction of that true
    class predicted as each class), side by side; balanced and plain accuracy in the title."""
    cm, names = _np(cm).astype(np.int64), list(class_names)
    k = cm.shape[0]
    if cm.shape != (k, k) or len(names) != k:
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(names)} classes")
    support, n = cm.sum(1), int(cm.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / support[:, None]  # NaN rows: classes without images
        acc = np.trace(cm) / n
    side = 1.0 + 0.62 * k
    fig = figure(2 * side + 2.6, side + 1.4)
    axes = fig.subplots(1, 2)
    panels = (
        (cm.astype(float), "counts", ".0f", "images", None),
        (norm, "row-normalised (recall on the diagonal)", ".2f", "fraction of the true class", 1),
    )
    for ax, (values, sub, fmt, label, vmax) in zip(axes, panels, strict=True):
        im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):  # white text on the dark cells
                color = "white" if im.norm(v) > 0.6 else "black"
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8, color=color)
        ax.set_xticks(range(k), names, rotation=40, ha="right", rotation_mode="anchor")
        ax.set(xlabel="predicted class", ylabel="true class")
        ax.set_title(sub, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    axes[0].set_yticks(range(k), [f"{c} ({s})" for c, s in zip(names, support, strict=True)])
    axes[0].set_ylabel("true class (images)")
    axes[1].set_yticks(range(k), names)
    stats = f"balanced acc {balanced_accuracy(cm):.3f} · acc {acc:.3f} · {n} images"
    fig.suptitle(_join(title or "Confusion matrix", stats), fontsize=11)
    return fig


def _heatmap(ax: Axes, values: np.ndarray, rows: Sequence[str], label: str, **style: Any) -> None:
    """Vectors ``(n, d)`` as heat-map rows, one cell per value (no smoothing across dimensions),
    NaN rows gray, with a colour bar; ``style``: ``cmap``, ``vmin``, ``vmax``."""
    cmap = matplotlib.colormaps[style.pop("cmap", "viridis")].with_extremes(bad="#dddddd")
    masked = np.ma.masked_invalid(values)
    im = ax.imshow(masked, cmap, aspect="auto", interpolation="nearest", **style)
    d = values.shape[1]
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xticks(range(0, d, 64 if d >= 256 else max(1, d // 8)))
    ax.set_xlabel(f"feature dimension (0–{d - 1})")
    ax.figure.colorbar(im, ax=ax, pad=0.01, fraction=0.04, label=label)


def attention_figure(
    attn: Any, title: str | None = None, row_labels: Sequence[str] | None = None, images: Any = None
) -> Figure:
    """Attention vectors ``attn`` ``(n, d)`` as heat-map rows on a fixed (0, 1) range, so maps
    compare across classes and epochs (report Fig. 4.11–4.12); ``row_labels`` caption the rows
    (default ``#i``), optional faces ``images`` ``(n, H, W)`` are drawn beside them."""
    attn = _np(attn).astype(np.float32)
    if attn.ndim != 2:
        raise ValueError(f"attention must be (n, d), got shape {attn.shape}")
    n = len(attn)
    fig = figure(12.0, max(2.2, 1.35 + (0.3 if images is None else 0.42) * n))
    fig.suptitle(title or "Attention weights", fontsize=11)
    if n == 0:
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
        return fig
    if images is None:
        ax = fig.add_subplot()
    else:
        grid = fig.add_gridspec(n, 2, width_ratios=[1, 22], hspace=0.0, wspace=0.01)
        ax = fig.add_subplot(grid[:, 1])
        for i, face in enumerate(_faces(images)):
            _show_face(fig.add_subplot(grid[i, 0]), face)
    rows = list(row_labels) if row_labels is not None else [f"#{i}" for i in range(n)]
    _heatmap(ax, attn, rows, "attention weight", vmin=0.0, vmax=1.0)
    return fig


def mean_attention_figure(
    attn: Any, labels: Any, class_names: Sequence[str], title: str | None = None
) -> Figure:
    """Per-class mean attention (one row per class) and, below, each class's difference from
    the mean over all images, where class-specific patterns stand out."""
    attn, labels = _np(attn).astype(np.float64), _np(labels).astype(np.int64)
    k, d = len(class_names), attn.shape[1]
    counts = np.bincount(labels, minlength=k)[:k]
    means = np.array(
        [attn[labels == c].mean(0) if m else np.full(d, np.nan) for c, m in enumerate(counts)]
    )
    diff = means - attn.mean(0) if len(attn) else means
    span = float(np.nanmax(np.abs(diff), initial=0.0)) or 1.0
    rows = [f"{name} (n={m})" for name, m in zip(class_names, counts, strict=True)]
    fig = figure(12.0, 1.6 + 0.62 * k)
    top, bottom = fig.subplots(2, 1, sharex=True)
    _heatmap(top, means, rows, "mean attention", vmin=0.0, vmax=1.0)
    _heatmap(bottom, diff, rows, "difference", cmap="RdBu_r", vmin=-span, vmax=span)
    top.set_title("mean attention", fontsize=10)
    bottom.set_title("difference from the all-class mean", fontsize=10)
    top.label_outer()  # the dimension axis once, below
    fig.suptitle(_join("Per-class mean attention", title), fontsize=11)
    return fig


def select_samples(labels: Tensor, pred: Tensor, conf: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Indices of up to ``n`` mistakes, most confident first, and of up to ``n`` correct
    predictions taken class by class in turn, each class's most confident first."""
    order = torch.argsort(conf, descending=True, stable=True)
    is_wrong = (pred != labels)[order]
    wrong, right = order[is_wrong][:n], order[~is_wrong]
    by_class = [right[labels[right] == c] for c in torch.unique(labels[right]).tolist()]
    turns = [i for turn in itertools.zip_longest(*by_class) for i in turn if i is not None]
    return wrong, torch.stack(turns[:n]) if turns else right[:0]


def sample_grid_figure(
    images: Any, true: Any, pred: Any, conf: Any, class_names: Sequence[str],
    title: str | None = None, ncols: int = 8,
) -> Figure:  # fmt: skip
    """Faces in gray with ``true / pred (confidence)`` captions, green when right, red when
    wrong (report Fig. 4.13–4.14). ``images``: ``(n, H, W)`` or ``(n, C, H, W)``, ``uint8``
    or floats in [0, 1]."""
    faces = _faces(images)
    true, pred, conf = _np(true).astype(int), _np(pred).astype(int), _np(conf).astype(float)
    cols = max(1, min(ncols, len(faces)))
    rows = max(1, math.ceil(len(faces) / cols))
    fig = figure(max(4.0, 1.55 * cols), 0.75 + 1.8 * rows)
    fig.suptitle(_join(title, "caption: true / predicted (confidence)"), fontsize=10)
    if not len(faces):
        fig.text(0.5, 0.5, "no images", ha="center", va="center")
    for i, face in enumerate(faces):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show_face(ax, face, interpolation="bilinear")
        color = CORRECT_COLOR if true[i] == pred[i] else WRONG_COLOR
        ax.spines[:].set(edgecolor=color, linewidth=2)
        caption = f"{class_names[true[i]]} / {class_names[pred[i]]} ({conf[i]:.2f})"
        ax.set_title(caption, fontsize=8, color=color)
    return fig


def first_of_each_class(labels: Tensor, num_classes: int, per_class: int) -> Tensor:
    """Indices of the first ``per_class`` images of each class in ``labels``' order, class by
    class: the attention maps' rows, the same images in every epoch and report."""
    return torch.cat([(labels == c).nonzero()[:per_class, 0] for c in range(num_classes)])


def attention_pictures(
    attention: Tensor, labels: Tensor, logits: Tensor, files: Sequence[str], faces: Faces,
    class_names: Sequence[str], where: str, per_class: int,
) -> tuple[dict[str, tuple[Tensor, Figure]], Figure]:  # fmt: skip
    """The attention maps of TensorBoard and the report alike: per class present, the indices of
    its first ``per_class`` images and their :func:`attention_figure`, rows captioned ``file →
    predicted class confidence`` beside their ``faces(indices)``; and the
    :func:`mean_attention_figure` of all the images given."""
    chosen = first_of_each_class(labels, len(class_names), per_class)
    conf, pred = logits.float().softmax(-1).max(-1)
    maps = {}
    for k, name in enumerate(class_names):
        if len(idx := chosen[labels[chosen] == k]):
            rows = [f"{files[i]} → {class_names[pred[i]]} {conf[i]:.2f}" for i in idx.tolist()]
            title = _join(f"{name}: attention weights of {len(idx)} images", where)
            maps[name] = idx, attention_figure(attention[idx], title, rows, faces(idx))
    mean = mean_attention_figure(attention, labels, class_names, f"{where} · {len(labels)} images")
    return maps, mean


def sample_grids(
    labels: Tensor, pred: Tensor, conf: Tensor, faces: Faces, class_names: Sequence[str], n: int,
    where: str,
) -> dict[str, tuple[Tensor, Figure]]:  # fmt: skip
    """The sample grids of TensorBoard and the report alike, ``wrong`` and ``correct``: the
    indices :func:`select_samples` picks and their :func:`sample_grid_figure` of
    ``faces(indices)``."""
    wrong, correct = select_samples(labels, pred, conf, n)
    grids = {}
    for kind, idx, note in (("wrong", wrong, "most confident first"), ("correct", correct, "")):
        title = _join(where, f"{len(idx)} {kind}", note)
        fig = sample_grid_figure(faces(idx), labels[idx], pred[idx], conf[idx], class_names, title)
        grids[kind] = idx, fig
    return grids


#: The :func:`curves_figure` panels, in their order.
PANELS = ("accuracy", "loss (L = L_CE + λ·L_SC, and L_CE)", "sparse center loss L_SC")


def curve_panel(tag: str) -> str | None:
    """The :func:`curves_figure` panel a scalar tag is drawn in, or ``None``."""
    name = tag.rsplit("/", 1)[-1]
    if name.endswith("_best"):  # the running maxima repeat the curves they summarise
        return None
    if name in REPORTED_METRICS or name.startswith("acc"):
        return PANELS[0]
    if name == "loss_sc":
        return PANELS[2]
    return PANELS[1] if name.startswith("loss") else None


def curves_figure(scalars: Scalars, title: str | None = None) -> Figure:
    """Accuracy and loss curves from ``{tag: [(step, value), ...]}`` (e.g.
    :func:`read_metrics`), in the :data:`PANELS` of :func:`curve_panel`; other tags are left
    out. Dense series (per-step training losses) are drawn faintly with a smoothed line."""
    groups: dict[str, list[str]] = {}
    for tag in sorted(scalars):
        if (panel := curve_panel(tag)) and len(scalars[tag]):
            groups.setdefault(panel, []).append(tag)
    order = [p for p in PANELS if p in groups]
    fig = figure(6.0 * max(1, len(order)), 4.4)
    fig.suptitle(title or "Training curves", fontsize=11)
    if not order:
        fig.text(0.5, 0.5, "no accuracy or loss scalars found", ha="center", va="center")
        return fig
    for ax, panel in zip(fig.subplots(1, len(order), squeeze=False)[0], order, strict=True):
        for tag in groups[panel]:
            steps, values = np.array(sorted(scalars[tag]), dtype=float).T
            style = "--" if tag.startswith("train") else "-"
            if len(values) > 30:  # faint, under TensorBoard's smoothing (a moving average)
                line = ax.plot(steps, values, style, alpha=0.25, linewidth=0.8)[0]
                smooth = list(itertools.accumulate(values, lambda avg, v: 0.6 * avg + 0.4 * v))
                ax.plot(steps, smooth, style, color=line.get_color(), label=tag)
            else:
                ax.plot(steps, values, style, marker="o", markersize=3, label=tag)
        ax.set(title=panel, xlabel="training step")
        ax.title.set_fontsize(10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def read_metrics(run_dir: str | Path) -> Scalars:
    """Every metric of the run folder's :data:`METRICS_FILE` (``step,metric,value`` rows, as
    :class:`dacl.callbacks.CSVTensorBoardLogger` appends them) as ``{metric: [(step, value),
    ...]}`` sorted by step. The file only grows, so a later row wins for a repeated (metric,
    step): a run resumed into the same folder logs its last epoch again."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DACLError(f"'{run_dir}' has no {METRICS_FILE} (runs of this dacl version write one)")
    merged: dict[str, dict[int, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            merged.setdefault(row["metric"], {})[int(row["step"])] = float(row["value"])
    return {metric: sorted(series.items()) for metric, series in merged.items()}
