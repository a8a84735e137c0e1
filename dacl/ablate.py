"""``dacl ablate``: experiment configs × seeds, one run after another, summarised.

    dacl ablate --configs experiments/exp3.yaml experiments/exp3_center.yaml \\
        experiments/exp3_softmax.yaml --seeds 0 1 2 [--out results/ablation] \\
        [--data.root data/fer2013] [any other `dacl fit` override ...]

Each run is ``dacl fit --config C --seed_everything S`` with its TensorBoard logger pointed at
``OUT/runs/<config stem>_seed<S>/version_0`` and every unrecognised argument passed through.
When the data has a test split the run's best checkpoint is then tested (``dacl test
--ckpt_path best``, logged to ``version_0/test``). The metrics are read back from the
TensorBoard event files:

- best: the epoch of maximal ``val/balanced_acc`` (model selection, SPEC §5) and its
  ``val/acc`` and ``val/f1_macro``;
- final: the same three at the last validated epoch;
- test: ``test/*`` of the best checkpoint, when there is a test split.

Written to OUT: ``results.md`` (mean ± sample std per config, then every run), ``results.json``,
``ablation.png`` and ``commands.sh`` (the exact commands, in the order they ran).

Re-running is cheap and safe: a run whose ``done.json`` marker exists is skipped; a run with a
``last.ckpt`` but no marker is resumed from it (``--ckpt_path .../last.ckpt``). A failing run is
reported with its exit code, the others go on, and the command exits non-zero at the end naming
the failed runs.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dacl import viz
from dacl.classes import REPORTED_METRICS
from dacl.defaults import default_config

#: The selection measure first, then the two reported beside it (SPEC §5).
METRICS = ("balanced_acc", *(m for m in REPORTED_METRICS if m != "balanced_acc"))
LABELS = {"balanced_acc": "balanced acc", "acc": "acc", "f1_macro": "macro F1"}
DONE, FIT_DONE = "done.json", "fit.json"


@dataclass
class Run:
    config: Path
    seed: int
    name: str
    home: Path  # OUT/runs/<name>: markers, logs, commands

    @property
    def run_dir(self) -> Path:  # the TensorBoard logger's version_0: events and checkpoints
        return self.home / "version_0"

    @property
    def last_ckpt(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dacl ablate",
        description="Run experiment configs x seeds one after another and summarise them "
        "(mean ± std of best-validation metrics, a plot, the exact commands). Arguments not "
        "listed here (e.g. --data.root PATH, --trainer.max_epochs N) are passed to every run.",
        allow_abbrev=False,
    )
    p.add_argument("--configs", nargs="+", required=True, help="experiment YAML files")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    p.add_argument("--out", default="results/ablation", help="results folder")
    p.add_argument(
        "--test",
        choices=("auto", "always", "never"),
        default="auto",
        help="test the best checkpoint: auto = when the data has a test split (default)",
    )
    p.add_argument("--quiet", action="store_true", help="runs' output to their log files only")
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``dacl ablate``; raises ``SystemExit`` (non-zero) when a run failed."""
    args, overrides = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    _check_overrides(overrides)
    out = Path(args.out)
    runs = _plan(args.configs, args.seeds, out)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    try:
        for k, run in enumerate(runs, 1):
            tag = f"[{k}/{len(runs)}] {run.name}"
            marker = run.home / DONE
            if marker.is_file():
                print(f"{tag}: finished, skipped ({marker})", flush=True)
                records.append(json.loads(marker.read_text()))
                continue
            records.append(_execute(run, overrides, args, tag))
    except KeyboardInterrupt:
        _write_results(out, records, runs)
        print(f"dacl ablate: interrupted; the same command resumes from {out}", file=sys.stderr)
        raise SystemExit(130) from None
    _write_results(out, records, runs)
    failed = [r for r in records if r["status"] != "done"]
    print(f"results written to {out}/results.md, results.json, ablation.png, commands.sh")
    if failed:
        names = ", ".join(f"{r['name']} (exit {r['returncode']})" for r in failed)
        raise SystemExit(f"dacl ablate: {len(failed)} of {len(runs)} runs failed: {names}")


#: Arguments the runner sets itself for every run; passing them through would break the layout.
_OWN = (
    "--config",
    "--seed_everything",
    "--ckpt_path",
    "--trainer.logger.init_args.save_dir",
    "--trainer.logger.init_args.name",
    "--trainer.logger.init_args.version",
    "--trainer.logger.init_args.sub_dir",
)


def _check_overrides(overrides: list[str]) -> None:
    for arg in overrides:
        if arg.split("=", 1)[0] in _OWN:
            raise SystemExit(
                f"dacl ablate: {arg.split('=', 1)[0]} is set by the runner for each run "
                "(use --configs, --seeds and --out)"
            )
    if overrides and not overrides[0].startswith("-"):
        raise SystemExit(f"dacl ablate: unexpected argument '{overrides[0]}'")


def _plan(configs: list[str], seeds: list[int], out: Path) -> list[Run]:
    runs, seen = [], {}
    for config in configs:
        path = Path(config)
        if not path.is_file():
            raise SystemExit(f"dacl ablate: config '{config}' not found")
        if path.stem in seen and seen[path.stem] != path.resolve():
            raise SystemExit(
                f"dacl ablate: '{config}' and '{seen[path.stem]}' share the stem '{path.stem}', "
                "which names the runs; rename one"
            )
        seen[path.stem] = path.resolve()
    # Seed by seed, every config in each: an ablation stopped midway has whole seeds to compare.
    for seed in dict.fromkeys(seeds):
        for config in dict.fromkeys(configs):  # a config listed twice runs once
            name = f"{Path(config).stem}_seed{seed}"
            runs.append(Run(Path(config), seed, name, out / "runs" / name))
    return runs


def _cli_args(run: Run, subcommand: str, overrides: list[str], sub_dir: str | None) -> list[str]:
    cmd = [
        sys.executable, "-m", "dacl.cli", subcommand,
        "--config", str(run.config),
        "--seed_everything", str(run.seed),
        "--trainer.logger.init_args.save_dir", str(run.home.parent),
        "--trainer.logger.init_args.name", run.name,
        "--trainer.logger.init_args.version", "0",
    ]  # fmt: skip
    if sub_dir:
        cmd += ["--trainer.logger.init_args.sub_dir", sub_dir]
    return cmd + list(overrides)


def _execute(run: Run, overrides: list[str], args: argparse.Namespace, tag: str) -> dict:
    """Fit (or resume, or skip a finished fit), test when asked, and write the markers."""
    run.home.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "name": run.name,
        "config": str(run.config),
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "status": "failed",
        "returncode": None,
    }
    fit_marker = run.home / FIT_DONE
    if fit_marker.is_file():
        record.update(json.loads(fit_marker.read_text()))
        print(f"{tag}: fit finished earlier, testing only", flush=True)
    else:
        cmd = _cli_args(run, "fit", overrides, None)
        if run.last_ckpt.is_file():
            cmd += ["--ckpt_path", str(run.last_ckpt)]
            print(f"{tag}: resuming from {run.last_ckpt}", flush=True)
        else:
            print(f"{tag}: fit", flush=True)
        rc, wall = _call(cmd, run, "fit", args.quiet)
        record["fit_wall_s"] = round(wall, 1)
        if rc != 0:
            print(f"{tag}: FAILED, fit exited {rc} (log: {run.home / 'fit.log'})", flush=True)
            return {**record, "returncode": rc, "failed_step": "fit"}
        try:
            metrics = read_fit_metrics(run.run_dir)
        except ValueError as err:
            print(f"{tag}: FAILED, {err}", flush=True)
            return {**record, "returncode": 0, "failed_step": "metrics"}
        record.update(metrics)
        fit_marker.write_text(json.dumps({**metrics, "fit_wall_s": record["fit_wall_s"]}))

    record["test"] = None
    if _wants_test(args.test, run, overrides):
        cmd = [*_cli_args(run, "test", overrides, "test"), "--ckpt_path", "best"]
        print(f"{tag}: test (best checkpoint)", flush=True)
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
    """Run ``cmd``, teeing its output to ``<run>/<step>.log`` (and the console unless quiet);
    the command is appended to ``<run>/commands.sh`` first, so ``commands.sh`` of the results
    lists every command that ran, resumed attempts included."""
    with open(run.home / "commands.sh", "a") as fh:
        fh.write(shlex.join(cmd) + "\n")
    t0 = time.perf_counter()
    with open(run.home / f"{step}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
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


# --- does the data have a test split? ---------------------------------------------------------


def _wants_test(mode: str, run: Run, overrides: list[str]) -> bool:
    if mode != "auto":
        return mode == "always"
    data = _data_config(run.config, overrides)
    if _truthy(data.get("synthetic")):
        return True  # the synthetic set has every split
    root = data.get("root")
    if not root:
        return False
    from dacl.data.layouts import find_layout
    from dacl.errors import DACLError

    try:
        return "test" in find_layout(root).splits
    except DACLError:
        return False


def _data_config(config: Path, overrides: list[str]) -> dict[str, Any]:
    """``data.*`` as ``dacl fit`` would see it: configs/default.yaml, the config, overrides."""
    data: dict[str, Any] = {}
    for path in (default_config(), config):
        if path.is_file():
            data.update((yaml.safe_load(path.read_text()) or {}).get("data") or {})
    i = 0
    while i < len(overrides):
        arg = overrides[i]
        if arg.startswith("--data."):
            key, eq, value = arg[len("--data.") :].partition("=")
            if not eq and i + 1 < len(overrides):
                i += 1
                value = overrides[i]
            data[key] = yaml.safe_load(value) if value else value
        elif arg == "--data" and i + 1 < len(overrides):  # --data path/to/data.yaml
            i += 1
            if Path(overrides[i]).is_file():
                data.update(yaml.safe_load(Path(overrides[i]).read_text()) or {})
        i += 1
    return data


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


# --- metrics from the TensorBoard event files -------------------------------------------------


def _scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """tag → {step: value} of the event files in ``log_dir`` (see :func:`dacl.viz.read_scalars`:
    not its subfolders; a step logged twice, as after a resume, keeps its last value)."""
    return {tag: dict(series) for tag, series in viz.read_scalars(log_dir).items()}


def read_fit_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """``{"best": ..., "final": ...}`` of a fit run's ``val/*`` scalars (see the module doc)."""
    s = _scalars(run_dir)
    key = "val/balanced_acc"
    if not s.get(key):
        raise ValueError(f"no '{key}' scalars in the event files of {run_dir}")
    steps = sorted(s[key])
    best_step = max(steps, key=lambda st: (s[key][st], -st))  # the earliest of equal maxima
    epochs = s.get("epoch", {})

    def at(step: int) -> dict[str, float]:
        epoch = epochs.get(step)
        row = {"epoch": int(epoch) if epoch is not None else steps.index(step), "step": step}
        for m in METRICS:
            row[m] = s.get(f"val/{m}", {}).get(step, math.nan)
        if "val/loss" in s and step in s["val/loss"]:
            row["loss"] = s["val/loss"][step]
        return row

    return {"best": at(best_step), "final": at(steps[-1])}


def read_test_metrics(log_dir: Path) -> dict[str, float]:
    """The last value of every ``test/*`` scalar (acc, balanced_acc, f1_macro, recalls, ...)."""
    s = _scalars(log_dir)
    return {
        tag.removeprefix("test/"): series[max(series)]
        for tag, series in s.items()
        if tag.startswith("test/") and series
    }


# --- results ----------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n − 1); ``None`` for the std of a single value."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


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
    return {"diff": diff, "t": t, "df": df, "p": 2 * _t_tail(abs(t), df)}


def _t_tail(t: float, df: float, steps: int = 2000) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom: 1/2 minus the density's
    integral over [0, t] (Simpson's rule on ``steps`` intervals, error far below 1e-6)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(x: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))

    h = t / steps
    area = pdf(0) + pdf(t) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return max(0.0, 0.5 - area * h / 3)


def _fmt(mean: float, std: float | None) -> str:
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f} ± –"


def summarize(records: list[dict], configs: list[str]) -> list[dict]:
    """Per config (in the order given): runs done, mean/std of the best-validation metrics
    (and of the test metrics when every done run has them), and for every config after the
    first Welch's t-test of its best val balanced accuracy against the first config's."""
    rows: list[dict[str, Any]] = []
    selection = {
        c: [r["best"][METRICS[0]] for r in records if r["config"] == c and r["status"] == "done"]
        for c in configs
    }
    for config in configs:
        done = [r for r in records if r["config"] == config and r["status"] == "done"]
        row: dict[str, Any] = {
            "config": config,
            "n": len(done),
            "seeds": [r["seed"] for r in done],
            "failed": [r["name"] for r in records if r["config"] == config and r not in done],
        }
        for m in METRICS:
            if done:
                mean, std = mean_std([r["best"][m] for r in done])
                row[f"val_{m}"] = {"mean": mean, "std": std}
            if done and all(r.get("test") and m in r["test"] for r in done):
                mean, std = mean_std([r["test"][m] for r in done])
                row[f"test_{m}"] = {"mean": mean, "std": std}
        if config != configs[0]:
            row["vs_first"] = welch(selection[config], selection[configs[0]])
        rows.append(row)
    return rows


def _write_results(out: Path, records: list[dict], runs: list[Run]) -> None:
    configs = list(dict.fromkeys(str(r.config) for r in runs))
    summary = summarize(records, configs)
    (out / "results.json").write_text(
        json.dumps({"summary": summary, "runs": records}, indent=1, allow_nan=True)
    )
    (out / "results.md").write_text(_markdown(summary, records))
    _plot(out / "ablation.png", summary, records)
    lines = [
        "#!/usr/bin/env bash",
        "# The commands `dacl ablate` ran, in order (a resumed run lists each attempt).",
        "set -e",
        f"cd {shlex.quote(str(Path.cwd()))}",
    ]
    for run in runs:
        cmds = run.home / "commands.sh"
        if cmds.is_file():
            lines += [f"# {run.name}", *cmds.read_text().splitlines()]
    (out / "commands.sh").write_text("\n".join(lines) + "\n")


def _markdown(summary: list[dict], records: list[dict]) -> str:
    has_test = any(any(k.startswith("test_") for k in row) for row in summary)
    head = ["config", "runs", *(f"best val {LABELS[m]}" for m in METRICS)]
    if has_test:
        head += [f"test {LABELS[m]}" for m in METRICS]
    head.append(f"best val {LABELS[METRICS[0]]} − first config (Welch's t-test)")
    lines = [
        "# Ablation",
        "",
        "Mean ± sample standard deviation (n − 1; – for a single run) over seeds of each run's "
        "best-validation epoch (maximal val balanced accuracy)"
        + (" and of its best checkpoint on the test split." if has_test else ".")
        + " The last column compares each config with the first by Welch's two-sample t-test "
        "(two-sided p; it needs two runs or more of both).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in summary:
        cells = [f"`{row['config']}`", str(row["n"])]
        keys = [f"val_{m}" for m in METRICS] + ([f"test_{m}" for m in METRICS] if has_test else [])
        cells += [_fmt(row[k]["mean"], row[k]["std"]) if k in row else "–" for k in keys]
        test = row.get("vs_first")
        cells.append(
            f"{test['diff']:+.4f} (t = {test['t']:.2f}, df = {test['df']:.1f}, p = {test['p']:.3f})"
            if test
            else "–"
        )
        lines.append("| " + " | ".join(cells) + " |")

    head = ["run", "config", "seed", "status", "best epoch"]
    head += [f"best val {LABELS[m]}" for m in METRICS]
    head += ["final epoch", *(f"final val {LABELS[m]}" for m in METRICS)]
    if has_test:
        head += [f"test {LABELS[m]}" for m in METRICS]
    head.append("fit wall s")
    lines += ["", "## Runs", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        done = r["status"] == "done"
        status = "done" if done else f"failed (exit {r['returncode']}, {r.get('failed_step')})"
        cells = [r["name"], f"`{r['config']}`", str(r["seed"]), status]
        for part in ("best", "final"):
            got = r.get(part)
            cells.append(str(got["epoch"]) if got else "–")
            cells += [f"{got[m]:.4f}" if got else "–" for m in METRICS]
        if has_test:
            test = r.get("test") or {}
            cells += [f"{test[m]:.4f}" if m in test else "–" for m in METRICS]
        cells.append(str(r.get("fit_wall_s", "–")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, summary: list[dict], records: list[dict]) -> None:
    fig = viz.figure(2.2 + 1.6 * max(1, len(summary)), 4)
    ax = fig.add_subplot()
    width = 0.8 / len(METRICS)
    for j, m in enumerate(METRICS):
        xs, means, errs = [], [], []
        for i, row in enumerate(summary):
            x = i + (j - (len(METRICS) - 1) / 2) * width
            runs = [r for r in records if r["config"] == row["config"] and r["status"] == "done"]
            ax.scatter([x] * len(runs), [r["best"][m] for r in runs], s=12, color="k", zorder=3)
            if f"val_{m}" in row:
                xs.append(x)
                means.append(row[f"val_{m}"]["mean"])
                errs.append(row[f"val_{m}"]["std"] or 0.0)
        ax.bar(xs, means, width * 0.9, yerr=errs, capsize=3, label=f"best val {LABELS[m]}")
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels([f"{Path(r['config']).stem}\n(n={r['n']})" for r in summary], fontsize=8)
    ax.set_ylabel("score (mean ± std over seeds; dots: runs)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Ablation: best-validation metrics per config")
    viz.save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main()
