"""What a trained model's attention does and how compact its classes are, on one split; and the
statistics ``dacl ablate`` compares runs by.

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

:func:`figure` draws an ablation's runs (attention histograms per class, the ratio per config)
and :func:`write` (``dacl ablate --analyze``) writes them up. For ``dacl ablate``'s own results:
:func:`mean_std`, :func:`welch` and :func:`paired` (Student's t by :func:`t_tail` and
:func:`t_quantile`, no SciPy) are the statistics over seeds, :func:`cell`, :func:`p_cell` and
:func:`table` their markdown, :func:`bars` their figure.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from dacl import viz
from dacl.cli import resolve_checkpoint
from dacl.data import FER2013DataModule
from dacl.defaults import template
from dacl.diagnostics import HIGH, LOW
from dacl.errors import DACLError
from dacl.outputs import write_text
from dacl.predictor import Predictor

BINS = 20  # of the attention histograms over [0, 1]
CONFIDENCE = 0.95  # of the paired differences' intervals
#: :func:`write`'s measures and their column names.
COMPACTNESS = {"intra": "intra-class spread", "inter": "inter-class distance",
               "ratio": "intra / inter"}  # fmt: skip
ATTENTION = {"mean": "mean a", "low": "a < 0.1", "high": "a > 0.9"}


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
    has_attention = predictor.module.learns_attention
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
    runs_of = f"{len(mine)} run{'s' * (len(mine) != 1)}"
    title = f"{Path(first).stem}: a per class (val, {runs_of})" if mine else "no attention"
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


def bars(
    summary: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], labels: dict[str, str]
) -> Figure:
    """``dacl ablate``'s ``ablation.png``: per config (``summary``'s rows) a bar (mean ± std over
    its runs) per measure of ``labels`` (measure → its name, in the order drawn) at the
    best-validation epoch, and a dot per finished run (``records``)."""
    fig = viz.figure(max(5.5, 2.2 + 1.6 * len(summary)), 4)  # room for the title
    ax = fig.add_subplot()
    width, done = 0.8 / len(labels), [r for r in records if r["status"] == "done"]
    place = {row["config"]: i for i, row in enumerate(summary)}
    for j, (m, label) in enumerate(labels.items()):
        shift = (j - (len(labels) - 1) / 2) * width
        stats = [row.get(f"val_{m}", {"mean": math.nan, "std": None}) for row in summary]
        means, stds = [s["mean"] for s in stats], [s["std"] or 0.0 for s in stats]
        x = np.arange(len(summary)) + shift
        ax.bar(x, means, width * 0.9, yerr=stds, capsize=3, label=f"best val {label}")
        xs, ys = [place[r["config"]] + shift for r in done], [r["best"][m] for r in done]
        ax.scatter(xs, ys, s=12, color="k", zorder=3)
    ticks = [f"{Path(r['config']).stem}\n(n={r['n']})" for r in summary]
    ax.set_xticks(range(len(summary)), ticks, fontsize=8)
    ax.set(ylabel="score (mean ± std over seeds; dots: runs)", ylim=(0, 1))
    ax.set_title("Ablation: best-validation metrics per config")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def write(
    out: Path, done: Sequence[dict[str, Any]], configs: Sequence[str],
    data: Callable[[str], FER2013DataModule],
) -> None:  # fmt: skip
    """``dacl ablate --analyze``: :func:`analyze` of each finished run's best checkpoint (``done``:
    its records) on its config's data (``data(config)``), written up in ``out``: per config (in
    the order given) the mean ± std over its runs in ``attention.md``, every run in
    ``attention.json``, and :func:`figure` as ``attention.png``. A run already in
    ``attention.json`` from the same checkpoint is not measured again (delete the file to
    re-measure every run whose checkpoint is here)."""
    file = out / "attention.json"
    earlier = {r["name"]: r for r in json.loads(file.read_text())["runs"]} if file.is_file() else {}
    runs = [run for r in done if (run := _measure(out, r, data, earlier)) is not None]
    summary, compact, tables = [], [], []
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        variant = mine[0]["variant"]  # a config's runs share it
        row: dict[str, Any] = {"config": config, "variant": variant, "n": len(mine)}
        row |= {k: mean_std([r[k] for r in mine]) for k in COMPACTNESS} | {"attention": None}
        summary.append(row)
        cells = [f"`{config}` ({variant})", str(len(mine)), *(cell(row[k]) for k in COMPACTNESS)]
        compact.append(cells)
        if mine[0]["attention"]:
            per = [{"all": r["attention"]["all"], **r["attention"]["per_class"]} for r in mine]
            row["attention"] = {c: {k: mean_std([p[c][k] for p in per]) for k in ATTENTION}
                                for c in per[0]}  # fmt: skip
            cells = [[c, str(n["n"]), *map(cell, row["attention"][c].values())]
                     for c, n in per[0].items()]  # fmt: skip
            tables.append(
                f"### `{config}`\n\n{table(['class', 'faces', *ATTENTION.values()], cells)}"
            )
    write_text(out / "attention.json", json.dumps({"summary": summary, "runs": runs}, indent=1))
    write_text(
        out / "attention.md",
        template("attention.md").format(
            compactness=table(["config", "runs", *COMPACTNESS.values()], compact),
            attention="\n\n".join(tables) or "_No config has attention (center, softmax)._",
        ),
    )
    viz.save_figure(figure(summary, runs), out / "attention.png", dpi=120)
    print(f"analysis written to {out}/attention.md, attention.json, attention.png")


def _measure(
    out: Path, record: dict[str, Any], data: Callable[[str], FER2013DataModule],
    earlier: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:  # fmt: skip
    """:func:`analyze` of one finished run's best checkpoint (its run folder relative to
    ``out``), or its ``earlier`` entry (by run name) when that entry is of the same checkpoint
    or the checkpoint is not on this machine; ``None`` (and one line) when there is neither."""
    name = record["name"]
    kept = earlier.get(name)
    try:
        ckpt = resolve_checkpoint("best", out / Path(record["run_dir"]).parent)
    except DACLError as err:
        print(f"{name}: {'earlier analysis kept' if kept else 'skipped'} ({err})", flush=True)
        return kept
    where = os.path.relpath(ckpt, out)
    if kept and kept["checkpoint"] == where:
        return kept
    got = analyze(ckpt, data(record["config"]))
    got["checkpoint"] = where
    print(f"{name}: intra/inter {got['ratio']:.4f} ({ckpt})", flush=True)
    return {"name": name, "config": record["config"], "seed": record["seed"], **got}


def mean_std(values: list[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (n − 1); ``None`` for the std of a single value."""
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std}


def welch(a: list[float], b: list[float]) -> dict[str, float] | None:
    """Welch's two-sample t-test of ``mean(a) − mean(b)`` (unequal variances): the difference,
    t, the Welch–Satterthwaite degrees of freedom and the two-sided p-value; ``None`` unless
    both samples have two values or more and some spread."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"diff": diff, "t": t, "df": df, "p": 2 * t_tail(abs(t), df)}


def paired(diffs: list[float]) -> dict[str, Any] | None:
    """Paired t-test of per-seed differences (one arm minus the other, same seed): their mean,
    sample std (n − 1), the mean's two-sided 95 % confidence interval (Student's t quantile at
    n − 1 degrees of freedom), t and the two-sided p-value. Seeds pair the arms (same initial
    weights, data order and crops), so seed-to-seed spread cancels out of the differences.
    ``None`` below two pairs; ``t`` and ``p`` are ``None`` when the differences do not vary."""
    n = len(diffs)
    if n < 2:
        return None
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    t = mean / (sd / math.sqrt(n)) if sd > 0 else None
    p = None if t is None else 2 * t_tail(abs(t), n - 1)
    return {"n": n, "diff": mean, "sd": sd, "ci": [mean - half, mean + half], "t": t, "df": n - 1,
            "p": p}  # fmt: skip


def t_quantile(q: float, df: float) -> float:
    """The ``q``-quantile (1/2 ≤ q < 1) of Student's t with ``df`` degrees of freedom, by
    bisection on :func:`t_tail` (e.g. 2.7764 for q = 0.975, df = 4)."""
    if not 0.5 <= q < 1:
        raise DACLError(f"a t quantile needs 0.5 <= q < 1, got {q}")
    lo, hi = 0.0, 1.0
    while t_tail(hi, df) > 1 - q:
        lo, hi = hi, 2 * hi
    for _ in range(40):  # 40 halvings: the bracket ends far below the tail's own error
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_tail(mid, df) > 1 - q else (lo, mid)
    return (lo + hi) / 2


def t_tail(t: float, df: float, steps: int = 2000) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom: 1/2 minus the density's
    integral over [0, t] (Simpson's rule on ``steps`` intervals, error far below 1e-6)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(0.0, t, steps + 1)
    pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
    area = pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum()
    return max(0.0, 0.5 - float(area) * t / steps / 3)


def cell(stat: dict | None) -> str:
    """A ``mean ± std`` cell of :func:`mean_std`; ``–`` for a missing value or std."""
    if stat is None:
        return "–"
    return f"{stat['mean']:.4f} ± " + ("–" if stat["std"] is None else f"{stat['std']:.4f}")


def p_cell(test: dict | None) -> str:
    """A test's two-sided p-value, ``n/a`` without one."""
    return "n/a" if test is None else f"{test['p']:.3f}"


def table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table of ``head`` and ``rows`` of cells."""
    lines = ["| " + " | ".join(cells) + " |" for cells in [head, *rows]]
    return "\n".join([lines[0], "|" + "---|" * len(head), *lines[1:]])
