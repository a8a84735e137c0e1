"""Reproduce the report's exp3 and its ablation (softmax, center loss) on real FER2013.

Run through ``benchmarks/gpu_reproduce.sh`` on a lent GPU. The three runs share the GPU as
parallel processes (batch 64 at 200 px leaves an H200 mostly idle, so three at once cost little
more than one), each is validated on val with its best checkpoint, and one JSON object is
printed. ``--smoke`` runs the same code on tiny synthetic data on the CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("exp3", "exp3_center", "exp3_softmax")
RECIPE_EPOCHS, RECIPE_LR_STEP = 30, 20


def lr_step_for(epochs: int) -> int:
    """method.md §4's lr drop; a shortened recipe keeps its shape: the drop at 2/3 of training."""
    return RECIPE_LR_STEP if epochs == RECIPE_EPOCHS else max(1, round(epochs * 2 / 3))


def fit_overrides(name: str, args: argparse.Namespace) -> list[str]:
    """The CLI arguments of one experiment's fit: its YAML on real data, or tiny on the CPU."""
    overrides = [
        "--config", str(REPO / "experiments" / f"{name}.yaml"),
        "--data.root", args.root,
        "--model.in_chans", "1",
        "--model.compile", str(args.compile).lower(),
        "--trainer.max_epochs", str(args.epochs),
        "--model.lr_step", str(lr_step_for(args.epochs)),
        "--trainer.logger.init_args.save_dir", args.out,
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    if args.max_minutes:
        # A hard cap so the call always returns its JSON; the output says if it bit.
        minutes, seconds = divmod(round(args.max_minutes * 60), 60)
        overrides += ["--trainer.max_time", f"00:00:{minutes:02d}:{seconds:02d}"]
    if args.smoke:
        overrides += [
            "--data.crop", "32", "--data.resize", "36", "--data.batch_size", "16",
            "--trainer.accelerator", "cpu", "--trainer.precision", "32-true",
            "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        ]  # fmt: skip
    return overrides


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Fit one experiment through the CLI's parser, then validate its best checkpoint."""
    from dacl.cli import build_cli

    cli = build_cli(fit_overrides(name, args), run=False)
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    fit_s = time.perf_counter() - start
    n_train = len(cli.datamodule.names("train"))
    if cli.trainer.limit_train_batches not in (None, 1.0):
        n_train = min(
            n_train, int(cli.trainer.limit_train_batches) * cli.datamodule.hparams.batch_size
        )
    (metrics,) = cli.trainer.validate(cli.model, cli.datamodule, ckpt_path="best", verbose=False)
    return {
        "experiment": name,
        "epochs": args.epochs,
        "epochs_done": cli.trainer.current_epoch,
        "lr_step": lr_step_for(args.epochs),
        "val_acc": round(float(metrics["val/acc"]), 4),
        "val_balanced_acc": round(float(metrics["val/balanced_acc"]), 4),
        "val_f1_macro": round(float(metrics["val/f1_macro"]), 4),
        "fit_wall_s": round(fit_s, 1),
        "fit_images_per_s": round(n_train * args.epochs / fit_s, 1),
        "best_checkpoint": cli.trainer.checkpoint_callback.best_model_path,
    }


def run_workers(args: argparse.Namespace) -> list[dict]:
    """Each experiment in its own process (this script with ``--one``); their results in order."""
    base = [sys.executable, __file__, "--root", args.root, "--epochs", str(args.epochs)]
    base += ["--out", args.out] + ["--compile"] * args.compile + ["--smoke"] * args.smoke
    if args.max_minutes:
        base += ["--max-minutes", str(args.max_minutes)]
    procs = []
    for name in EXPERIMENTS:
        log = open(Path(tempfile.gettempdir()) / f"gpu_reproduce_{name}.log", "w+")  # noqa: SIM115
        cmd = [*base, "--one", name]
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        if args.sequential:
            procs[-1][1].wait()
    results = []
    for name, proc, log in procs:
        code = proc.wait()
        log.seek(0)
        lines = log.read().strip().splitlines()
        if code == 0:
            results.append(json.loads(lines[-1]))
        else:
            results.append({"experiment": name, "error": code, "log_tail": lines[-15:]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/fer2013")
    parser.add_argument("--epochs", type=int, default=RECIPE_EPOCHS)
    parser.add_argument("--out", default="lightning_logs/gpu_reproduce")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop each fit after")
    parser.add_argument("--sequential", action="store_true", help="one run after another")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data on the CPU")
    parser.add_argument("--one", choices=EXPERIMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # a worker: print its result as the last line
        print(json.dumps(run_one(args.one, args)), flush=True)
        return
    if args.smoke and not Path(args.root).is_dir():
        from dacl.data.synthetic import write_dataset

        args.root = str(write_dataset(Path(tempfile.mkdtemp()) / "faces", "folders", 120, 40, 0))
    if not Path(args.root).is_dir():
        sys.exit(f"gpu_reproduce: no FER2013 at '{args.root}': copy ../shared/fer2013 there")

    start = time.perf_counter()
    results = run_workers(args)
    import torch

    summary = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "runs": results,
        "wall_s": round(time.perf_counter() - start, 1),
        "parallel": not args.sequential,
        "recipe": f"{args.epochs} epochs"
        + (" (method.md §4)" if args.epochs == RECIPE_EPOCHS else " (§4's 30, sized down)"),
        "smoke": args.smoke,
    }
    print(json.dumps(summary))
    sys.exit(0 if all("error" not in r for r in results) else 1)


if __name__ == "__main__":
    main()
