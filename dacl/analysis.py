"""What a trained model's attention does and how compact its classes are, on one split.

:func:`analyze` runs a ``dacl fit`` checkpoint (read safely by :class:`~dacl.predictor.Predictor`)
over a datamodule's split as evaluation sees it (its ``inputs``: the eval transform, one view) and
measures, per class:

* the attention weights a (DACL only; the ``center`` and ``softmax`` variants have a ≡ 1): their
  mean, the fractions below 0.1 and above 0.9, and a histogram over [0, 1];
* compactness of the deep features f, for every variant: the intra-class spread (mean Euclidean
  distance of a face's f to its class's mean f on this split), the inter-class distance (mean
  distance between two classes' means) and their ratio. The class means of the features, not
  the learned centers, since the ``softmax`` variant's centers are never trained; the ratio is
  free of the features' scale, which differs between variants.

:func:`figure` draws an ablation's runs: attention histograms per class, the ratio per config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dacl import viz
from dacl.data import FER2013DataModule
from dacl.errors import DACLError
from dacl.predictor import Predictor

LOW, HIGH = 0.1, 0.9  # attention weights "off" below, "on" above
BINS = 20  # of the attention histograms over [0, 1]


def compactness(features: Tensor, labels: Tensor, class_names: Sequence[str]) -> dict[str, Any]:
    """Features ``(n, d)`` of faces with ``labels`` ``(n,)``: ``intra`` (mean distance of a face's
    features to its class's mean), ``inter`` (mean distance between two class means), ``ratio``
    (intra / inter: lower is more compact) and ``intra_per_class``, over the classes present."""
    present = labels.unique()
    if len(present) < 2:
        raise DACLError(f"compactness needs faces of two classes or more, got {len(present)}")
    means = torch.stack([features[labels == c].mean(0) for c in present])
    where = torch.searchsorted(present, labels)
    spread = (features - means[where]).norm(dim=1).double()
    intra, inter = spread.mean().item(), torch.pdist(means.double()).mean().item()
    per_class = {class_names[c]: spread[labels == c].mean().item() for c in present.tolist()}
    return {"intra": intra, "inter": inter, "ratio": intra / inter, "intra_per_class": per_class}


def attention_stats(attention: Tensor, labels: Tensor, class_names: Sequence[str]) -> dict:
    """Attention weights ``(n, d)``, over all faces (``all``) and per class present
    (``per_class``): ``n`` faces, ``mean``, ``low`` (fraction of weights below 0.1), ``high``
    (above 0.9) and ``hist`` (fraction in each of 20 equal bins over [0, 1])."""

    def stats(a: Tensor) -> dict[str, Any]:
        a = a.double()
        low, high = (a < LOW).double().mean().item(), (a > HIGH).double().mean().item()
        hist = (torch.histc(a, BINS, 0.0, 1.0) / a.numel()).tolist()
        return {"n": len(a), "mean": a.mean().item(), "low": low, "high": high, "hist": hist}

    per_class = {class_names[c]: stats(attention[labels == c]) for c in labels.unique().tolist()}
    return {"all": stats(attention), "per_class": per_class}


@torch.no_grad()
def analyze(
    ckpt_path: str | Path,
    datamodule: FER2013DataModule,
    device: str | torch.device | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """The model of ``ckpt_path`` on ``datamodule``'s val split (set up here if need be): its
    ``variant``, ``n_images``, :func:`compactness` of its features and, when it has attention
    heads, :func:`attention_stats` of its weights (``attention``; ``None`` otherwise). ``device``:
    by default the GPU when there is one."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    predictor = Predictor.from_checkpoint(ckpt_path, device, batch_size)
    names = predictor.class_names
    if tuple(datamodule.class_names) != names:
        raise DACLError(
            f"'{ckpt_path}' was trained on classes {', '.join(names)}, but the data has "
            f"{', '.join(datamodule.class_names)}"
        )
    datamodule.setup("validate")
    labels = datamodule.labels("val")
    if not len(labels):
        raise DACLError("the val split has no images")
    features, attention = [], []
    for idx in torch.arange(len(labels)).split(batch_size):
        _, f, a = predictor.module(datamodule.inputs("val", idx).to(predictor.device))
        features.append(f.float().cpu())
        attention.append(a.float().cpu())
    f, a = torch.cat(features), torch.cat(attention)
    has_attention = predictor.module.net.heads is not None
    return {
        "checkpoint": str(ckpt_path),
        "variant": predictor.module.hparams.variant,
        "n_images": len(labels),
        **compactness(f, labels, names),
        "attention": attention_stats(a, labels, names) if has_attention else None,
    }


def figure(summary: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]]) -> Figure:
    """Left: the attention histogram of each class, averaged over the runs of the first config
    with attention; right: per config the intra/inter ratio (bar: mean ± std over its runs,
    dots: runs). ``summary``: per config ``config`` and ``ratio`` (``mean``, ``std``);
    ``runs``: :func:`analyze` results with their run's ``config``."""
    fig = viz.figure(11, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=(1.2, 1))
    with_attention = [r for r in runs if r["attention"]]
    first = with_attention[0]["config"] if with_attention else None
    mine = [r["attention"]["per_class"] for r in with_attention if r["config"] == first]
    for name in mine[0] if mine else ():
        hist = np.mean([per_class[name]["hist"] for per_class in mine], axis=0)
        left.stairs(hist, np.linspace(0.0, 1.0, BINS + 1), label=name)
    left.set(xlim=(0, 1), xlabel="attention weight a", ylabel="fraction of weights")
    title = f"{Path(first).stem}: a per class (val, {len(mine)} runs)" if mine else "no attention"
    left.set_title(title, fontsize=10)
    if mine:
        left.set_yscale("log")  # the mass near 0 and 1 and the middle's, on one scale
        left.legend(fontsize=7, ncol=2)
    place = {row["config"]: i for i, row in enumerate(summary)}
    means = [row["ratio"]["mean"] for row in summary]
    stds = [row["ratio"]["std"] or 0.0 for row in summary]
    right.bar(range(len(summary)), means, 0.6, yerr=stds, capsize=3, color="#9ab")
    right.scatter([place[r["config"]] for r in runs], [r["ratio"] for r in runs], s=12, c="k")
    right.set_xticks(range(len(summary)), [Path(r["config"]).stem for r in summary], fontsize=8)
    right.set(ylabel="intra-class spread / inter-class distance")
    right.set_title("Feature compactness (val; lower: tighter classes)", fontsize=10)
    return fig
