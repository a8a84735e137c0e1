"""``dacl ablate``: experiment configs × seeds, one run after another, summarised.

Each run is ``dacl fit --config C --seed_everything S`` in its own process (the ``--data.*``,
``--model.*`` and ``--trainer.*`` options passed on), logged to ``OUT/runs/<config stem>_seed<S>/
version_0``, then, when the data has a test split, ``dacl test --ckpt_path best`` (into its
``test/``). ``best`` is the epoch of maximal ``val/balanced_acc`` (method.md §5's model selection),
``final`` the last. ``OUT`` gets ``results.md`` (mean ± sample std per config, Welch's t-test
against the first config; per later config, epoch and measure the paired t-test over the seeds
both completed, with the mean difference's 95 % interval; every run), ``results.json``,
``ablation.png`` and ``commands.sh``; with ``--analyze`` also ``attention.md``, ``.json`` and
``.png``: attention weights and feature compactness of each run's best checkpoint
(:mod:`dacl.analysis`).
Re-running resumes: ``done.json`` skips a run, ``fit.json`` its fit, a ``last.ckpt`` is resumed
from. A failed run is reported with its exit code and the others go on; the command then exits
non-zero, naming the failed runs.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from jsonargparse import ActionConfigFile, ArgumentParser

from dacl import analysis, viz
from dacl.classes import REPORTED_METRICS
from dacl.cli import build_cli, resolve_checkpoint
from dacl.data import FER2013DataModule
from dacl.defaults import template
from dacl.errors import DACLError

#: The selection measure first, then the two reported beside it (method.md §5).
METRICS = ("balanced_acc", *(m for m in REPORTED_METRICS if m != "balanced_acc"))
LABELS = {"balanced_acc": "balanced acc", "acc": "acc", "f1_macro": "macro F1"}
#: Each run's epochs compared: the best-validation one (model selection) and the last.
EPOCHS = ("best", "final")
CONFIDENCE = 0.95  # of the paired differences' intervals
#: ``--analyze``'s measures (dacl.analysis) and their column names.
COMPACTNESS = {"intra": "intra-class spread", "inter": "inter-class distance",
               "ratio": "intra / inter"}  # fmt: skip
ATTENTION = {"mean": "mean a", "low": "a < 0.1", "high": "a > 0.9"}
DONE, FIT_DONE = "done.json", "fit.json"
#: Options the runner sets for every run itself.
OWN = ("logger.init_args.save_dir", "logger.init_args.name", "logger.init_args.version")


@dataclass(frozen=True)
class Run:
    config: Path
    seed: int
    home: Path  # OUT/runs/<name>: markers and logs; the logger's version_0 below it

    @property
    def run_dir(self) -> Path:  # the TensorBoard logger's version_0: events and checkpoints
        return self.home / "version_0"


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="dacl ablate",
        description="Run experiment configs x seeds one after another and summarise them "
        "(mean ± std of best-validation metrics, paired and Welch's t-tests, a plot, the exact "
        "commands).",
    )
    p.add_argument("--config", action=ActionConfigFile, help="these options as a YAML file")
    p.add_argument("--configs", nargs="+", type=str, required=True, help="experiment files")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds")
    p.add_argument("--out", type=str, default="results/ablation", help="results folder")
    p.add_argument(
        "--test", type=Literal["auto", "always", "never"], default="auto",
        help="test the best checkpoint: auto = when the data has a test split",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="runs' output to their logs only")
    p.add_argument(
        "--analyze", action="store_true",
        help="then measure each finished run's best checkpoint on val: attention weights per "
        "class and feature compactness (attention.md, attention.json, attention.png)",
    )  # fmt: skip
    for group in ("data", "model", "trainer"):
        p.add_argument(f"--{group}", type=dict[str, Any], default={}, help=f"{group} options")
    return p


def _flatten(prefix: str, options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        if isinstance(value, dict):
            out += _flatten(f"{prefix}.{key}", value)
        else:
            out += [f"--{prefix}.{key}", value if isinstance(value, str) else json.dumps(value)]
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dacl ablate``; raises ``SystemExit`` (non-zero) when a run failed."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    configs, seeds = list(dict.fromkeys(map(Path, args.configs))), dict.fromkeys(args.seeds)
    out = Path(args.out)
    owned = [k for k in _flatten("trainer", args.trainer)[::2] if k[len("--trainer.") :] in OWN]
    missing = [c for c in configs if not c.is_file()]
    stems = [c.stem for c in configs]
    if owned:
        raise SystemExit(f"dacl ablate: {owned[0]} is set by the runner for each run")
    if missing:
        raise SystemExit(f"dacl ablate: config '{missing[0]}' not found")
    if len(set(stems)) < len(stems):
        raise SystemExit(f"dacl ablate: configs share a file name stem (it names runs): {stems}")
    overrides = [o for g in ("data", "model", "trainer") for o in _flatten(g, getattr(args, g))]
    # Seed by seed, every config in each: an ablation stopped midway has whole seeds to compare.
    runs = [Run(c, s, out / "runs" / f"{c.stem}_seed{s}") for s in seeds for c in configs]
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "commands.sh").is_file():
        cd = shlex.quote(str(Path.cwd()))
        head = f"#!/usr/bin/env bash\n# The commands dacl ablate ran, in order.\nset -e\ncd {cd}\n"
        (out / "commands.sh").write_text(head)
    records: list[dict[str, Any]] = []
    try:
        for k, run in enumerate(runs, 1):
            tag = f"[{k}/{len(runs)}] {run.home.name}"
            if (run.home / DONE).is_file():
                print(f"{tag}: finished, skipped ({run.home / DONE})", flush=True)
                records.append(json.loads((run.home / DONE).read_text()))
            else:
                records.append(_execute(run, overrides, args, tag))
    except KeyboardInterrupt:
        print(f"dacl ablate: interrupted; the same command resumes from {out}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:  # the runs so far, also when stopped
        summary = summarize(records, [str(c) for c in configs])
        results = {"summary": summary, "runs": records}
        (out / "results.json").write_text(json.dumps(results, indent=1))
        (out / "results.md").write_text(markdown(summary, records))
        _plot(out / "ablation.png", summary, records)
    print(f"results written to {out}/results.md, results.json, ablation.png, commands.sh")
    if args.analyze:
        _analyze(out, records, [str(c) for c in configs], overrides)
    failed = [f"{r['name']} (exit {r['returncode']})" for r in records if r["status"] != "done"]
    if failed:
        raise SystemExit(
            f"dacl ablate: {len(failed)} of {len(runs)} runs failed: {', '.join(failed)}"
        )


def _command(run: Run, subcommand: str, overrides: list[str], sub_dir: str = "") -> list[str]:
    return [
        sys.executable, "-m", "dacl.cli", subcommand, "--config", str(run.config),
        "--seed_everything", str(run.seed),
        "--trainer.logger.init_args.save_dir", str(run.home.parent),
        "--trainer.logger.init_args.name", run.home.name,
        "--trainer.logger.init_args.version", "0",
        *(["--trainer.logger.init_args.sub_dir", sub_dir] if sub_dir else []),
        *overrides,
    ]  # fmt: skip


@functools.cache
def _datamodule(config: Path, overrides: tuple[str, ...]) -> FER2013DataModule:
    """The config's data as ``dacl fit`` configures it; built once per config, not per seed."""
    return build_cli(["--config", str(config), *overrides]).datamodule


def _has_test_split(config: Path, overrides: tuple[str, ...]) -> bool:
    """Whether the config's data has a test split."""
    try:
        return _datamodule(config, overrides).has_split("test")
    except DACLError:
        return False  # no data there: the fit has failed already and said why


def _execute(run: Run, overrides: list[str], args: Namespace, tag: str) -> dict[str, Any]:
    """Fit (or resume, or skip a finished fit), test when asked, and write the markers."""
    say = functools.partial(print, tag + ":", flush=True)
    run.home.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "name": run.home.name, "config": str(run.config), "seed": run.seed,
        "run_dir": str(run.run_dir), "status": "failed", "returncode": None,
    }  # fmt: skip
    if (run.home / FIT_DONE).is_file():
        record.update(json.loads((run.home / FIT_DONE).read_text()))
        say("fit finished earlier, testing only")
    else:
        last = run.run_dir / "checkpoints" / "last.ckpt"
        resume = ["--ckpt_path", str(last)] if last.is_file() else []
        say(f"resuming from {last}" if resume else "fit")
        rc, wall = _call([*_command(run, "fit", overrides), *resume], run, "fit", args.quiet)
        record["fit_wall_s"] = round(wall, 1)
        try:
            if rc != 0:
                raise ValueError(f"fit exited {rc} (log: {run.home / 'fit.log'})")
            fit = read_fit_metrics(run.run_dir) | {"fit_wall_s": record["fit_wall_s"]}
        except ValueError as err:
            say(f"FAILED, {err}")
            return {**record, "returncode": rc, "failed_step": "fit"}
        record.update(fit)
        (run.home / FIT_DONE).write_text(json.dumps(fit))
    record["test"] = None
    auto = args.test == "auto" and _has_test_split(run.config, tuple(overrides))
    if args.test == "always" or auto:
        say("test (best checkpoint)")
        cmd = [*_command(run, "test", overrides, "test"), "--ckpt_path", "best"]
        rc, _ = _call(cmd, run, "test", args.quiet)
        if rc != 0:
            say(f"FAILED, test exited {rc} (log: {run.home / 'test.log'})")
            return {**record, "returncode": rc, "failed_step": "test"}
        record["test"] = read_test_metrics(run.run_dir / "test")
    record.update(status="done", returncode=0)
    (run.home / DONE).write_text(json.dumps(record, indent=1))
    scores = ", ".join(f"{LABELS[m]} {record['best'][m]:.4f}" for m in METRICS)
    say(f"done; best epoch {record['best']['epoch']}: {scores}")
    return record


def _call(cmd: list[str], run: Run, step: str, quiet: bool) -> tuple[int, float]:
    """Run ``cmd`` with its output in ``<run>/<step>.log`` (and on the console unless quiet),
    after appending it to ``OUT/commands.sh``."""
    with open(run.home.parents[1] / "commands.sh", "a") as fh:
        fh.write(f"# {run.home.name}\n{shlex.join(cmd)}\n")
    t0 = time.perf_counter()
    with open(run.home / f"{step}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                log.write(chunk)
                if not quiet:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
        finally:  # after Ctrl-C too, which reaches the run as well: let it stop first
            rc = proc.wait()
    return rc, time.perf_counter() - t0


def read_fit_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{"best": ..., "final": ...}``: epoch, step and the ``val/*`` measures of the epoch of
    maximal ``val/balanced_acc`` (the earliest of equal maxima) and of the last one."""
    s = {tag: dict(series) for tag, series in viz.read_scalars(run_dir).items()}
    key = "val/balanced_acc"
    if not s.get(key):
        raise ValueError(f"no '{key}' scalars in the event files of {run_dir}")
    steps, epochs = sorted(s[key]), s.get("epoch", {})
    best = max(steps, key=lambda st: (s[key][st], -st))

    def at(step: int) -> dict[str, float]:
        values = {m: s.get(f"val/{m}", {}).get(step, math.nan) for m in METRICS}
        return {"epoch": int(epochs.get(step, steps.index(step))), "step": step, **values}

    return {"best": at(best), "final": at(steps[-1])}


def read_test_metrics(log_dir: Path) -> dict[str, float]:
    """The last value of every ``test/*`` scalar (acc, balanced_acc, f1_macro, recalls, ...)."""
    return {
        tag.removeprefix("test/"): series[-1][1]
        for tag, series in viz.read_scalars(log_dir).items()
        if tag.startswith("test/") and series
    }


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


def summarize(records: list[dict], configs: list[str]) -> list[dict]:
    """Per config (in the order given): runs done, mean/std of the best-validation metrics (and
    of the test metrics when every done run has them) and of the last epoch's; for every config
    after the first its comparison with the first: Welch's t-test of the best val balanced
    accuracy (``vs_first``), and per epoch (best, final) and measure the paired test over the
    seeds both completed (``paired``; ``pairs`` names them) beside Welch's (``welch``)."""
    done = {c: [r for r in records if r["config"] == c and r["status"] == "done"] for c in configs}
    first = {r["seed"]: r for r in done[configs[0]]}
    rows = []
    for config, runs in done.items():
        row: dict[str, Any] = {"config": config, "n": len(runs), "seeds": [r["seed"] for r in runs]}
        row["failed"] = [r["name"] for r in records if r["config"] == config and r not in runs]
        for m in METRICS:
            if runs:
                row[f"val_{m}"] = mean_std([r["best"][m] for r in runs])
                row[f"final_{m}"] = mean_std([r["final"][m] for r in runs])
            if runs and all(m in (r.get("test") or {}) for r in runs):
                row[f"test_{m}"] = mean_std([r["test"][m] for r in runs])
        if config != configs[0]:
            mine = {r["seed"]: r for r in runs}
            row["pairs"] = pairs = sorted(set(mine) & set(first))
            row["paired"] = {
                e: {m: paired([mine[s][e][m] - first[s][e][m] for s in pairs]) for m in METRICS}
                for e in EPOCHS
            }
            row["welch"] = {
                e: {m: welch([r[e][m] for r in runs], [r[e][m] for r in first.values()])
                    for m in METRICS}
                for e in EPOCHS
            }  # fmt: skip
            row["vs_first"] = row["welch"]["best"][METRICS[0]]
        rows.append(row)
    return rows


def _stat(cell: dict | None) -> str:
    """A ``mean ± std`` cell; ``–`` for a missing value or std."""
    if cell is None:
        return "–"
    return f"{cell['mean']:.4f} ± " + ("–" if cell["std"] is None else f"{cell['std']:.4f}")


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cells) + " |" for cells in [head, *rows]]
    return "\n".join([lines[0], "|" + "---|" * len(head), *lines[1:]])


def markdown(summary: list[dict], records: list[dict]) -> str:
    """``results.md``: the per-config table, then every run."""
    tested = any("test_balanced_acc" in row for row in summary)
    label = {f"val_{m}": f"best val {LABELS[m]}" for m in METRICS}
    label |= {f"test_{m}": f"test {LABELS[m]}" for m in METRICS if tested}
    configs = []
    for r in summary:
        t = r.get("vs_first")
        vs = t and f"{t['diff']:+.4f} (t = {t['t']:.2f}, df = {t['df']:.1f}, p = {t['p']:.3f})"
        configs.append(
            [f"`{r['config']}`", str(r["n"]), *(_stat(r.get(k)) for k in label), vs or "–"]
        )
    runs, dashes = [], ["–"] * (1 + len(METRICS))  # no epoch: no metrics
    for r in records:
        failed = f"failed (exit {r.get('returncode')}, {r.get('failed_step')})"
        status = "done" if r["status"] == "done" else failed
        cells = [r["name"], f"`{r['config']}`", str(r["seed"]), status]
        for got in (r.get("best"), r.get("final")):
            cells += [str(got["epoch"]), *(f"{got[m]:.4f}" for m in METRICS)] if got else dashes
        test = r.get("test") or {}
        cells += [f"{test[m]:.4f}" if m in test else "–" for m in METRICS if tested]
        runs.append([*cells, str(r.get("fit_wall_s", "–"))])
    welch_head = f"{label['val_balanced_acc']} − first config (Welch's t-test)"
    runs_head = ["run", "config", "seed", "status"]
    for part in ("best", "final"):
        runs_head += [f"{part} epoch", *(f"{part} val {LABELS[m]}" for m in METRICS)]
    runs_head += [label[f"test_{m}"] for m in METRICS if tested] + ["fit wall s"]
    head = ["config", "runs", *label.values(), welch_head]
    return template("ablation.md").format(
        tested=" and of its best checkpoint on the test split" if tested else "",
        configs=_table(head, configs),
        paired=_paired_table(summary),
        runs=_table(runs_head, runs),
    )


def _paired_table(summary: list[dict]) -> str:
    """Per later config, epoch and measure: both means, the paired difference with its interval,
    t and p, and Welch's p; ``n/a`` where there are fewer than two pairs (or runs)."""
    first, rows = summary[0], []
    for r in summary[1:]:
        for e, m in itertools.product(EPOCHS, METRICS):
            key, pt = f"{'val' if e == 'best' else e}_{m}", r["paired"][e][m]
            cells = [f"`{r['config']}`", e, LABELS[m], str(len(r["pairs"]))]
            cells += [_stat(r.get(key)), _stat(first.get(key))]
            if pt is None:
                cells += ["n/a"] * 4
            else:
                lo, hi = pt["ci"]
                cells += [f"{pt['diff']:+.4f}", f"[{lo:+.4f}, {hi:+.4f}]"]
                cells += ["n/a"] * 2 if pt["t"] is None else [f"{pt['t']:.2f} ({pt['df']})", _p(pt)]
            rows.append([*cells, _p(r["welch"][e][m])])
    if not rows:
        return "_One config: nothing to compare._"
    head = ["config", "epoch", "measure", "pairs", "mean ± std", "first config", "paired diff",
            f"{CONFIDENCE:.0%} CI", "t (df)", "p", "Welch p"]  # fmt: skip
    return _table(head, rows)


def _p(test: dict | None) -> str:
    """A test's two-sided p-value, ``n/a`` without one."""
    return "n/a" if test is None else f"{test['p']:.3f}"


def _analyze(out: Path, records: list[dict], configs: list[str], overrides: list[str]) -> None:
    """``--analyze``: :func:`dacl.analysis.analyze` of each finished run's best checkpoint on
    its config's val split; per config the mean ± std over its runs in ``attention.md``, every
    run in ``attention.json``, and :func:`dacl.analysis.figure` as ``attention.png``."""
    done = [r for r in records if r["status"] == "done"]
    # every checkpoint found before any is analysed: a missing one fails in the first second
    ckpts = [resolve_checkpoint("best", Path(r["run_dir"]).parent) for r in done]
    runs = []
    for r, ckpt in zip(done, ckpts, strict=True):
        got = analysis.analyze(ckpt, _datamodule(Path(r["config"]), tuple(overrides)))
        runs.append({"name": r["name"], "config": r["config"], "seed": r["seed"], **got})
        print(f"{r['name']}: intra/inter {got['ratio']:.4f} ({ckpt})", flush=True)
    summary, compact, tables = [], [], []
    for config in configs:
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        variant = mine[0]["variant"]  # a config's runs share it
        row: dict[str, Any] = {"config": config, "variant": variant, "n": len(mine)}
        row |= {k: mean_std([r[k] for r in mine]) for k in COMPACTNESS} | {"attention": None}
        summary.append(row)
        cells = [f"`{config}` ({variant})", str(len(mine)), *(_stat(row[k]) for k in COMPACTNESS)]
        compact.append(cells)
        if mine[0]["attention"]:
            per = [{"all": r["attention"]["all"], **r["attention"]["per_class"]} for r in mine]
            row["attention"] = {c: {k: mean_std([p[c][k] for p in per]) for k in ATTENTION}
                                for c in per[0]}  # fmt: skip
            cells = [[c, str(n["n"]), *map(_stat, row["attention"][c].values())]
                     for c, n in per[0].items()]  # fmt: skip
            table = _table(["class", "faces", *ATTENTION.values()], cells)
            tables.append(f"### `{config}`\n\n{table}")
    (out / "attention.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    (out / "attention.md").write_text(
        template("attention.md").format(
            compactness=_table(["config", "runs", *COMPACTNESS.values()], compact),
            attention="\n\n".join(tables) or "_No config has attention (center, softmax)._",
        )
    )
    viz.save_figure(analysis.figure(summary, runs), out / "attention.png", dpi=120)
    print(f"analysis written to {out}/attention.md, attention.json, attention.png")


def _plot(path: Path, summary: list[dict], records: list[dict]) -> None:
    """``ablation.png``: per config a bar (mean ± std) per metric, and a dot per run."""
    fig = viz.figure(max(5.5, 2.2 + 1.6 * len(summary)), 4)  # room for the title
    ax = fig.add_subplot()
    width, done = 0.8 / len(METRICS), [r for r in records if r["status"] == "done"]
    place = {row["config"]: i for i, row in enumerate(summary)}
    for j, m in enumerate(METRICS):
        shift = (j - (len(METRICS) - 1) / 2) * width
        stats = [row.get(f"val_{m}", {"mean": math.nan, "std": None}) for row in summary]
        means, stds = [s["mean"] for s in stats], [s["std"] or 0.0 for s in stats]
        x = np.arange(len(summary)) + shift
        ax.bar(x, means, width * 0.9, yerr=stds, capsize=3, label=f"best val {LABELS[m]}")
        xs, ys = [place[r["config"]] + shift for r in done], [r["best"][m] for r in done]
        ax.scatter(xs, ys, s=12, color="k", zorder=3)
    ticks = [f"{Path(r['config']).stem}\n(n={r['n']})" for r in summary]
    ax.set_xticks(range(len(summary)), ticks, fontsize=8)
    ax.set(ylabel="score (mean ± std over seeds; dots: runs)", ylim=(0, 1))
    ax.set_title("Ablation: best-validation metrics per config")
    ax.legend(fontsize=8, loc="upper right")
    viz.save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
