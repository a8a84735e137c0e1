"""``dacl ablate``: experiment configs × seeds, one run after another, summarised.

Each run is ``dacl fit --config C --seed_everything S`` in its own process (the ``--data.*``,
``--model.*`` and ``--trainer.*`` options passed on), logged to ``OUT/runs/<config stem>_seed<S>/
version_0``, then, when the data has a test split, ``dacl test --ckpt_path best`` (into its
``test/``). ``best`` is the epoch of maximal ``val/balanced_acc`` (method.md §5's model selection),
``final`` the last. ``OUT`` gets, rewritten as each run starts (with every run finished so far,
an earlier session's included) and at the end, ``results.md`` (mean ± sample std per config;
the paired t-test over the seeds both completed and Welch's against the first config; every
run), ``results.json`` and ``ablation.png``, and
``commands.sh``; with ``--analyze`` also ``attention.md``, ``.json`` and ``.png``
(:mod:`dacl.analysis`: attention and feature compactness of each best checkpoint), and with
``--soft`` each run's ``soft.npz`` (:mod:`dacl.teacher`: its best checkpoint's ten-crop softmax on
train and val, a teacher for distillation); both are written as soon as a run finishes, before
the next run starts (a run finished earlier without them: its soft targets when the runner passes
it, its analysis with the next run's or at the end). A finished run whose best checkpoint is not
on this machine (checkpoints stay out of git) keeps its earlier analysis and soft targets, with
one line.
Run folders are recorded relative to ``OUT``.
Re-running resumes: ``done.json`` skips a run, ``fit.json`` its fit, a ``last.ckpt`` is resumed
from. A failed run is reported with its exit code and the others go on; the command then exits
non-zero, naming the failed runs.
While it runs it holds ``OUT/.ablate.lock``: a second runner on the same ``OUT`` is refused in
one line rather than training the same runs beside it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import shlex
import subprocess
import sys
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from jsonargparse import ActionConfigFile

from dacl import analysis, teacher, viz
from dacl.classes import METRIC_LABELS, REPORTED_METRICS, SELECTION_METRIC
from dacl.cli import build_cli, check_seed, resolve_checkpoint
from dacl.data import FER2013DataModule
from dacl.defaults import template
from dacl.errors import DACLError
from dacl.outputs import check_folder, write_text
from dacl.predictor import Predictor
from dacl.usage import ProgramParser

#: The selection measure first, then the two reported beside it (method.md §5).
METRICS = ("balanced_acc", *(m for m in REPORTED_METRICS if m != "balanced_acc"))
#: Each run's epochs compared: the best-validation one (model selection) and the last.
EPOCHS = ("best", "final")
DONE, FIT_DONE = "done.json", "fit.json"
#: The file in ``OUT`` a running ``dacl ablate`` holds locked.
LOCK = ".ablate.lock"
#: Options the runner sets for every run itself.
OWN = ("logger.init_args.save_dir", "logger.init_args.name", "logger.init_args.version")


@dataclass(frozen=True)
class Run:
    config: Path
    seed: int
    home: Path  # OUT/runs/<name>: markers and logs; the logger's version_0 below it

    @property
    def run_dir(self) -> Path:  # the logger's version_0: metrics, events and checkpoints
        return self.home / "version_0"


def parser() -> ProgramParser:
    p = ProgramParser(
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
        help="measure each run's best checkpoint on val as the run finishes: attention weights "
        "per class and feature compactness (attention.md, attention.json, attention.png)",
    )  # fmt: skip
    p.add_argument(
        "--soft", action="store_true",
        help="write each run's soft.npz as it finishes: its best checkpoint's ten-crop softmax "
        "on train and val (a teacher for dacl ensemble and distillation)",
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
    for seed in seeds:
        check_seed(seed, "--seeds")
    if len(set(stems)) < len(stems):
        raise SystemExit(f"dacl ablate: configs share a file name stem (it names runs): {stems}")
    overrides = [o for g in ("data", "model", "trainer") for o in _flatten(g, getattr(args, g))]
    # Seed by seed, every config in each: an ablation stopped midway has whole seeds to compare.
    runs = [Run(c, s, out / "runs" / f"{c.stem}_seed{s}") for s in seeds for c in configs]
    check_folder(out, "--out")
    with _sole_runner(out):
        records = _run_plan(runs, out, configs, overrides, args)
    failed = [f"{r['name']} (exit {r['returncode']})" for r in records if r["status"] != "done"]
    if failed:
        raise SystemExit(
            f"dacl ablate: {len(failed)} of {len(runs)} runs failed: {', '.join(failed)}"
        )


@contextmanager
def _sole_runner(out: Path) -> Iterator[None]:
    """Hold ``OUT``'s lock while the plan runs: a second runner on the same folder would train
    the same run beside the first, each overwriting the other's checkpoints and metrics. The
    lock is the operating system's: a runner that dies, even by ``kill -9``, holds it no longer
    (the empty file stays)."""
    lock = FileLock(out / LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SystemExit(
            f"dacl ablate: --out '{out}' is in use by another dacl ablate (it holds "
            f"{out / LOCK}); wait for that one to end, or give another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _run_plan(
    runs: list[Run], out: Path, configs: list[Path], overrides: list[str], args: Namespace
) -> list[dict[str, Any]]:
    """Every run of the plan in order (a finished one skipped), the results and, with
    ``--analyze``, the analysis rewritten as they go and at the end; the runs' records."""
    if not (out / "commands.sh").is_file():
        cd = shlex.quote(str(Path.cwd()))
        head = f"#!/usr/bin/env bash\n# The commands dacl ablate ran, in order.\nset -e\ncd {cd}\n"
        write_text(out / "commands.sh", head)
    finished = {run.home: _finished_record(run, out) for run in runs if (run.home / DONE).is_file()}
    records: list[dict[str, Any]] = []
    try:
        for k, run in enumerate(runs, 1):
            tag = f"[{k}/{len(runs)}] {run.home.name}"
            if run.home in finished:
                print(f"{tag}: finished, skipped ({run.home / DONE})", flush=True)
                records.append(finished[run.home])
            else:
                # every run finished so far, this session's or an earlier one's (later seeds
                # included), readable while this one trains
                later = [finished[r.home] for r in runs[k:] if r.home in finished]
                if records or later:
                    _write_results(out, records + later, configs)
                records.append(_execute(run, overrides, args, tag))
                # now, while the run's checkpoint is surely on this machine
                if args.analyze and records[-1]["status"] == "done":
                    _write_analysis(out, records + later, configs, tuple(overrides))
            if args.soft:  # likewise
                _write_soft(run, tuple(overrides))
    except KeyboardInterrupt:
        print(f"dacl ablate: interrupted; the same command resumes from {out}", file=sys.stderr)
        raise SystemExit(130) from None
    _write_results(out, records, configs)
    print(f"results written to {out}/results.md, results.json, ablation.png, commands.sh")
    if args.analyze:
        _write_analysis(out, records, configs, tuple(overrides))
    return records


def _finished_record(run: Run, out: Path) -> dict[str, Any]:
    """A finished run's ``done.json``, its run folder relative to ``out`` (also in markers an
    earlier version wrote with absolute paths)."""
    record = json.loads((run.home / DONE).read_text())
    record["run_dir"] = str(run.run_dir.relative_to(out))
    return record


def _write_results(out: Path, records: list[dict[str, Any]], configs: list[Path]) -> None:
    """``results.md``, ``results.json`` and ``ablation.png`` of the runs so far."""
    summary = summarize(records, [str(c) for c in configs])
    write_text(out / "results.json", json.dumps({"summary": summary, "runs": records}, indent=1))
    write_text(out / "results.md", markdown(summary, records))
    viz.save_figure(analysis.bars(summary, records, METRIC_LABELS), out / "ablation.png", dpi=120)


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


def _write_analysis(
    out: Path, records: list[dict[str, Any]], configs: list[Path], overrides: tuple[str, ...]
) -> None:
    """``--analyze``: each finished run's best checkpoint on its config's val split."""
    done = [r for r in records if r["status"] == "done"]
    data = functools.partial(_datamodule, overrides=overrides)
    analysis.write(out, done, [str(c) for c in configs], lambda c: data(Path(c)))


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
        "run_dir": str(run.run_dir.relative_to(run.home.parents[1])), "status": "failed",
        "returncode": None,
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
                raise DACLError(f"fit exited {rc} (log: {run.home / 'fit.log'})")
            fit = read_fit_metrics(run.run_dir) | {"fit_wall_s": record["fit_wall_s"]}
        except DACLError as err:
            say(f"FAILED, {err}")
            return {**record, "returncode": rc, "failed_step": "fit"}
        record.update(fit)
        write_text(run.home / FIT_DONE, json.dumps(fit))
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
    write_text(run.home / DONE, json.dumps(record, indent=1))
    scores = ", ".join(f"{METRIC_LABELS[m]} {record['best'][m]:.4f}" for m in METRICS)
    say(f"done; best epoch {record['best']['epoch']}: {scores}")
    return record


def _write_soft(run: Run, overrides: tuple[str, ...]) -> None:
    """``<run>/soft.npz`` of a finished run's best checkpoint, unless written already; a run
    without one (not finished, or its checkpoint not on this machine) is skipped with one line.
    The config's data is built only for a run that gets one."""
    target = run.home / "soft.npz"
    if target.is_file() or not (run.home / DONE).is_file():
        return
    try:
        ckpt = resolve_checkpoint("best", run.home)
    except DACLError as err:
        print(f"{run.home.name}: no soft.npz, skipped ({err})", flush=True)
        return
    data = _datamodule(run.config, overrides)
    soft = teacher.soft_targets(Predictor.load(ckpt, tta="crops"), data)
    soft.save(target)
    acc, balanced = soft.accuracy()
    print(f"{run.home.name}: {target} (ten-crop val acc {acc:.4f}, balanced {balanced:.4f})")


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
    s = {tag: dict(series) for tag, series in viz.read_metrics(run_dir).items()}
    key = SELECTION_METRIC
    if not s.get(key):
        raise DACLError(f"no '{key}' in {run_dir / viz.METRICS_FILE}")
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
        for tag, series in viz.read_metrics(log_dir).items()
        if tag.startswith("test/") and series
    }


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
                row[f"val_{m}"] = analysis.mean_std([r["best"][m] for r in runs])
                row[f"final_{m}"] = analysis.mean_std([r["final"][m] for r in runs])
            if runs and all(m in (r.get("test") or {}) for r in runs):
                row[f"test_{m}"] = analysis.mean_std([r["test"][m] for r in runs])
        if config != configs[0]:
            mine = {r["seed"]: r for r in runs}
            row["pairs"] = pairs = sorted(set(mine) & set(first))
            row["paired"] = {
                e: {m: analysis.paired([mine[s][e][m] - first[s][e][m] for s in pairs])
                    for m in METRICS}
                for e in EPOCHS
            }  # fmt: skip
            row["welch"] = {
                e: {m: analysis.welch([r[e][m] for r in runs], [r[e][m] for r in first.values()])
                    for m in METRICS}
                for e in EPOCHS
            }  # fmt: skip
            row["vs_first"] = row["welch"]["best"][METRICS[0]]
        rows.append(row)
    return rows


def markdown(summary: list[dict], records: list[dict]) -> str:
    """``results.md``: the per-config table, then every run."""
    tested = any("test_balanced_acc" in row for row in summary)
    label = {f"val_{m}": f"best val {METRIC_LABELS[m]}" for m in METRICS}
    label |= {f"test_{m}": f"test {METRIC_LABELS[m]}" for m in METRICS if tested}
    configs = []
    for r in summary:
        t = r.get("vs_first")
        vs = t and f"{t['diff']:+.4f} (t = {t['t']:.2f}, df = {t['df']:.1f}, p = {t['p']:.3f})"
        configs.append(
            [f"`{r['config']}`", str(r["n"]), *(analysis.cell(r.get(k)) for k in label), vs or "–"]
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
        runs_head += [f"{part} epoch", *(f"{part} val {METRIC_LABELS[m]}" for m in METRICS)]
    runs_head += [label[f"test_{m}"] for m in METRICS if tested] + ["fit wall s"]
    head = ["config", "runs", *label.values(), welch_head]
    return template("ablation.md").format(
        tested=" and of its best checkpoint on the test split" if tested else "",
        configs=analysis.table(head, configs),
        paired=_paired_table(summary),
        runs=analysis.table(runs_head, runs),
    )


def _paired_table(summary: list[dict]) -> str:
    """Per later config, epoch and measure: both means, the paired difference with its interval,
    t and p, and Welch's p; ``n/a`` where there are fewer than two pairs (or runs)."""
    first, rows = summary[0], []
    for r in summary[1:]:
        for e, m in itertools.product(EPOCHS, METRICS):
            key, pt = f"{'val' if e == 'best' else e}_{m}", r["paired"][e][m]
            cells = [f"`{r['config']}`", e, METRIC_LABELS[m], str(len(r["pairs"]))]
            cells += [analysis.cell(r.get(key)), analysis.cell(first.get(key))]
            if pt is None:
                cells += ["n/a"] * 4
            else:
                lo, hi = pt["ci"]
                cells += [f"{pt['diff']:+.4f}", f"[{lo:+.4f}, {hi:+.4f}]"]
                cells += (
                    ["n/a"] * 2
                    if pt["t"] is None
                    else [f"{pt['t']:.2f} ({pt['df']})", analysis.p_cell(pt)]
                )
            rows.append([*cells, analysis.p_cell(r["welch"][e][m])])
    if not rows:
        return "_One config: nothing to compare._"
    head = ["config", "epoch", "measure", "pairs", "mean ± std", "first config", "paired diff",
            f"{analysis.CONFIDENCE:.0%} CI", "t (df)", "p", "Welch p"]  # fmt: skip
    return analysis.table(head, rows)


if __name__ == "__main__":
    main()
