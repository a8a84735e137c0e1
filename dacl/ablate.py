"""``dacl ablate``: experiment configs × seeds, one run after another, summarised.

    dacl ablate --configs experiments/exp3.yaml experiments/exp3_center.yaml \\
        experiments/exp3_softmax.yaml --seeds 0 1 2 [--out results/ablation] \\
        [--data.root data/fer2013] [--trainer.max_epochs 5] [--model.lr 0.1]

Each run is ``dacl fit --config C --seed_everything S`` in its own process, with the
``--data.*``, ``--model.*`` and ``--trainer.*`` options passed on and its TensorBoard logger at
``OUT/runs/<config stem>_seed<S>/version_0``; when the data has a test split, the best
checkpoint is then tested (``dacl test --ckpt_path best``, logged to ``version_0/test``). From
the event files: ``best`` is the epoch of maximal ``val/balanced_acc`` (model selection, SPEC §5)
with its ``val/acc`` and ``val/f1_macro``; ``final`` the last validated epoch; ``test`` the test
metrics. ``OUT`` gets ``results.md`` (mean ± sample std per config, Welch's t-test against the
first config, every run), ``results.json``, ``ablation.png`` and ``commands.sh`` (the commands
in the order they ran).

Re-running resumes: a run with ``done.json`` is skipped, a fit with ``fit.json`` is only tested,
a fit with a ``last.ckpt`` resumes from it. A failing run is reported with its exit code, the
others go on, and the command exits non-zero at the end naming the failed runs.
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser

from dacl import viz
from dacl.classes import REPORTED_METRICS
from dacl.cli import build_cli
from dacl.errors import DACLError

#: The selection measure first, then the two reported beside it (SPEC §5).
METRICS = ("balanced_acc", *(m for m in REPORTED_METRICS if m != "balanced_acc"))
LABELS = {"balanced_acc": "balanced acc", "acc": "acc", "f1_macro": "macro F1"}
DONE, FIT_DONE = "done.json", "fit.json"
#: Options the runner sets for every run itself.
OWN = ("logger.init_args.save_dir", "logger.init_args.name", "logger.init_args.version")


@dataclass
class Run:
    config: Path
    seed: int
    home: Path  # OUT/runs/<name>: markers, logs, commands

    @property
    def name(self) -> str:
        return self.home.name

    @property
    def run_dir(self) -> Path:  # the TensorBoard logger's version_0: events and checkpoints
        return self.home / "version_0"

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="dacl ablate",
        description="Run experiment configs x seeds one after another and summarise them "
        "(mean ± std of best-validation metrics, Welch's t-test, a plot, the exact commands).",
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
    for group in ("data", "model", "trainer"):
        p.add_argument(f"--{group}", type=dict[str, Any], default={}, help=f"{group} options")
    return p


def _flatten(prefix: str, options: dict[str, Any]) -> list[str]:
    out = []
    for key, value in options.items():
        if isinstance(value, dict):
            out += _flatten(f"{prefix}.{key}", value)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            out += [f"--{prefix}.{key}", text]
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dacl ablate``; raises ``SystemExit`` (non-zero) when a run failed."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    owned = [k for k in _flatten("trainer", args.trainer)[::2] if k[len("--trainer.") :] in OWN]
    if owned:
        raise SystemExit(f"dacl ablate: {owned[0]} is set by the runner for each run")
    overrides = [o for g in ("data", "model", "trainer") for o in _flatten(g, getattr(args, g))]
    out = Path(args.out)
    for config in args.configs:
        if not Path(config).is_file():
            raise SystemExit(f"dacl ablate: config '{config}' not found")
    stems = [Path(c).stem for c in dict.fromkeys(args.configs)]
    if len(set(stems)) < len(stems):
        raise SystemExit(
            f"dacl ablate: configs share a file name stem, which names the runs: {stems}"
        )
    # Seed by seed, every config in each: an ablation stopped midway has whole seeds to compare.
    runs = [
        Run(Path(c), s, out / "runs" / f"{Path(c).stem}_seed{s}")
        for s in dict.fromkeys(args.seeds)
        for c in dict.fromkeys(args.configs)
    ]
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    try:
        for k, run in enumerate(runs, 1):
            tag = f"[{k}/{len(runs)}] {run.name}"
            if (run.home / DONE).is_file():
                print(f"{tag}: finished, skipped ({run.home / DONE})", flush=True)
                records.append(json.loads((run.home / DONE).read_text()))
            else:
                records.append(_execute(run, overrides, args, tag))
    except KeyboardInterrupt:
        _write_results(out, records, runs)
        print(f"dacl ablate: interrupted; the same command resumes from {out}", file=sys.stderr)
        raise SystemExit(130) from None
    _write_results(out, records, runs)
    print(f"results written to {out}/results.md, results.json, ablation.png, commands.sh")
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
        "--trainer.logger.init_args.name", run.name,
        "--trainer.logger.init_args.version", "0",
        *(["--trainer.logger.init_args.sub_dir", sub_dir] if sub_dir else []),
        *overrides,
    ]  # fmt: skip


def _has_test_split(run: Run, overrides: list[str]) -> bool:
    """Whether the run's data (as ``dacl fit`` would configure it) has a test split."""
    try:
        return build_cli(["--config", str(run.config), *overrides]).datamodule.has_split("test")
    except DACLError:
        return False  # no data there: the fit has failed already and said why


def _execute(run: Run, overrides: list[str], args, tag: str) -> dict[str, Any]:
    """Fit (or resume, or skip a finished fit), test when asked, and write the markers."""
    run.home.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "name": run.name, "config": str(run.config), "seed": run.seed,
        "run_dir": str(run.run_dir), "status": "failed", "returncode": None,
    }  # fmt: skip
    if (run.home / FIT_DONE).is_file():
        record.update(json.loads((run.home / FIT_DONE).read_text()))
        print(f"{tag}: fit finished earlier, testing only", flush=True)
    else:
        cmd = _command(run, "fit", overrides)
        if run.last_ckpt.is_file():
            cmd += ["--ckpt_path", str(run.last_ckpt)]
        print(
            f"{tag}: " + (f"resuming from {run.last_ckpt}" if "--ckpt_path" in cmd else "fit"),
            flush=True,
        )
        rc, wall = _call(cmd, run, "fit", args.quiet)
        record["fit_wall_s"] = round(wall, 1)
        try:
            if rc != 0:
                raise ValueError(f"fit exited {rc} (log: {run.home / 'fit.log'})")
            metrics = read_fit_metrics(run.run_dir)
        except ValueError as err:
            print(f"{tag}: FAILED, {err}", flush=True)
            return {**record, "returncode": rc, "failed_step": "fit"}
        record.update(metrics)
        (run.home / FIT_DONE).write_text(
            json.dumps({**metrics, "fit_wall_s": record["fit_wall_s"]})
        )
    record["test"] = None
    if args.test == "always" or (args.test == "auto" and _has_test_split(run, overrides)):
        print(f"{tag}: test (best checkpoint)", flush=True)
        cmd = [*_command(run, "test", overrides, "test"), "--ckpt_path", "best"]
        rc, _ = _call(cmd, run, "test", args.quiet)
        if rc != 0:
            print(f"{tag}: FAILED, test exited {rc} (log: {run.home / 'test.log'})", flush=True)
            return {**record, "returncode": rc, "failed_step": "test"}
        record["test"] = read_test_metrics(run.run_dir / "test")
    record.update(status="done", returncode=0)
    (run.home / DONE).write_text(json.dumps(record, indent=1))
    best = record["best"]
    print(
        f"{tag}: done; best epoch {best['epoch']}: "
        + ", ".join(f"{LABELS[m]} {best[m]:.4f}" for m in METRICS),
        flush=True,
    )
    return record


def _call(cmd: list[str], run: Run, step: str, quiet: bool) -> tuple[int, float]:
    """Run ``cmd`` with its output in ``<run>/<step>.log`` (and on the console unless quiet),
    after appending it to ``<run>/commands.sh``."""
    with open(run.home / "commands.sh", "a") as fh:
        fh.write(shlex.join(cmd) + "\n")
    t0 = time.perf_counter()
    with open(run.home / f"{step}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for chunk in iter(lambda: proc.stdout.read1(65536), b""):
                log.write(chunk)
                if not quiet:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C reaches the run too: let it stop, then stop
            proc.wait()
            raise
        rc = proc.wait()
    return rc, time.perf_counter() - t0


def read_fit_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{"best": ..., "final": ...}``: epoch, step and the ``val/*`` measures of the epoch of
    maximal ``val/balanced_acc`` (the earliest of equal maxima) and of the last one."""
    s = {tag: dict(series) for tag, series in viz.read_scalars(run_dir).items()}
    key = "val/balanced_acc"
    if not s.get(key):
        raise ValueError(f"no '{key}' scalars in the event files of {run_dir}")
    steps = sorted(s[key])
    best = max(steps, key=lambda st: (s[key][st], -st))

    def at(step: int) -> dict[str, float]:
        epoch = s.get("epoch", {}).get(step, steps.index(step))
        return {
            "epoch": int(epoch),
            "step": step,
            **{m: s.get(f"val/{m}", {}).get(step, math.nan) for m in METRICS},
        }

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
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


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


def t_tail(t: float, df: float, steps: int = 2000) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom: 1/2 minus the density's
    integral over [0, t] (Simpson's rule on ``steps`` intervals, error far below 1e-6)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    area = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return max(0.0, 0.5 - area * h / 3)


def summarize(records: list[dict], configs: list[str]) -> list[dict]:
    """Per config (in the order given): runs done, mean/std of the best-validation metrics (and
    of the test metrics when every done run has them), and for every config after the first
    Welch's t-test of its best val balanced accuracy against the first config's."""
    done = {c: [r for r in records if r["config"] == c and r["status"] == "done"] for c in configs}
    first = [r["best"][METRICS[0]] for r in done[configs[0]]]
    rows = []
    for config, runs in done.items():
        row: dict[str, Any] = {"config": config, "n": len(runs), "seeds": [r["seed"] for r in runs]}
        row["failed"] = [r["name"] for r in records if r["config"] == config and r not in runs]
        for m in METRICS:
            if runs:
                row[f"val_{m}"] = mean_std([r["best"][m] for r in runs])
            if runs and all(m in (r.get("test") or {}) for r in runs):
                row[f"test_{m}"] = mean_std([r["test"][m] for r in runs])
        if config != configs[0]:
            row["vs_first"] = welch([r["best"][METRICS[0]] for r in runs], first)
        rows.append(row)
    return rows


def _write_results(out: Path, records: list[dict], runs: list[Run]) -> None:
    summary = summarize(records, list(dict.fromkeys(str(r.config) for r in runs)))
    (out / "results.json").write_text(json.dumps({"summary": summary, "runs": records}, indent=1))
    (out / "results.md").write_text(markdown(summary, records))
    _plot(out / "ablation.png", summary, records)
    lines = [
        "#!/usr/bin/env bash",
        "# The commands `dacl ablate` ran, in order (a resumed run lists each attempt).",
        "set -e",
        f"cd {shlex.quote(str(Path.cwd()))}",
    ]
    for run in runs:
        if (run.home / "commands.sh").is_file():
            lines += [f"# {run.name}", *(run.home / "commands.sh").read_text().splitlines()]
    (out / "commands.sh").write_text("\n".join(lines) + "\n")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def markdown(summary: list[dict], records: list[dict]) -> str:
    """``results.md``: the per-config table, then every run."""
    splits = ["val"] + (["test"] if any("test_balanced_acc" in row for row in summary) else [])
    keys = [f"{s}_{m}" for s in splits for m in METRICS]
    label = {
        k: ("best val " if k[:3] == "val" else "test ") + LABELS[k.split("_", 1)[1]] for k in keys
    }

    def fmt(cell: dict | None) -> str:
        return (
            "–"
            if cell is None
            else f"{cell['mean']:.4f} ± " + ("–" if cell["std"] is None else f"{cell['std']:.4f}")
        )

    def vs(t: dict | None) -> str:
        return (
            f"{t['diff']:+.4f} (t = {t['t']:.2f}, df = {t['df']:.1f}, p = {t['p']:.3f})"
            if t
            else "–"
        )

    head = [
        "config",
        "runs",
        *(label[k] for k in keys),
        f"best val {LABELS[METRICS[0]]} − first config (Welch's t-test)",
    ]
    rows = [
        [f"`{r['config']}`", str(r["n"]), *(fmt(r.get(k)) for k in keys), vs(r.get("vs_first"))]
        for r in summary
    ]
    lines = [
        "# Ablation",
        "",
        "Mean ± sample standard deviation (n − 1; – for a single run) over seeds of each run's "
        "best-validation epoch (maximal val balanced accuracy)"
        + (" and of its best checkpoint on the test split." if "test" in splits else ".")
        + " The last column compares each config with the first by Welch's two-sample t-test "
        "(two-sided p; it needs two runs or more of both).",
        "",
        *_table(head, rows),
    ]
    head = ["run", "config", "seed", "status", "best epoch", *(label[f"val_{m}"] for m in METRICS)]
    head += ["final epoch", *(f"final val {LABELS[m]}" for m in METRICS)]
    head += [label[f"test_{m}"] for m in METRICS if "test" in splits] + ["fit wall s"]
    rows = []
    for r in records:
        status = (
            "done"
            if r["status"] == "done"
            else f"failed (exit {r['returncode']}, {r.get('failed_step')})"
        )
        cells = [r["name"], f"`{r['config']}`", str(r["seed"]), status]
        for part in ("best", "final"):
            got = r.get(part)
            cells += [
                str(got["epoch"]) if got else "–",
                *(f"{got[m]:.4f}" if got else "–" for m in METRICS),
            ]
        test = r.get("test") or {}
        cells += [f"{test[m]:.4f}" if m in test else "–" for m in METRICS if "test" in splits]
        rows.append([*cells, str(r.get("fit_wall_s", "–"))])
    return "\n".join([*lines, "", "## Runs", "", *_table(head, rows)]) + "\n"


def _plot(path: Path, summary: list[dict], records: list[dict]) -> None:
    fig = viz.figure(2.2 + 1.6 * max(1, len(summary)), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(METRICS)
    for j, m in enumerate(METRICS):
        xs = [i + (j - (len(METRICS) - 1) / 2) * width for i in range(len(summary))]
        for x, row in zip(xs, summary, strict=True):
            values = [
                r["best"][m]
                for r in records
                if r["config"] == row["config"] and r["status"] == "done"
            ]
            ax.scatter([x] * len(values), values, s=12, color="k", zorder=3)
        have = [
            (x, row[f"val_{m}"]) for x, row in zip(xs, summary, strict=True) if f"val_{m}" in row
        ]
        ax.bar(
            [x for x, _ in have],
            [c["mean"] for _, c in have],
            width * 0.9,
            yerr=[c["std"] or 0.0 for _, c in have],
            capsize=3,
            label=f"best val {LABELS[m]}",
        )
    ax.set_xticks(
        range(len(summary)),
        [f"{Path(r['config']).stem}\n(n={r['n']})" for r in summary],
        fontsize=8,
    )
    ax.set(
        ylabel="score (mean ± std over seeds; dots: runs)",
        ylim=(0, 1),
        title="Ablation: best-validation metrics per config",
    )
    ax.legend(fontsize=8, loc="upper right")
    viz.save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
