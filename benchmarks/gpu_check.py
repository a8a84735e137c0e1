"""exp3 training throughput on a GPU: fast vs reference pipeline, compile on/off, one epoch.

Run through ``benchmarks/gpu_check.sh`` on a lent GPU; prints one JSON object. Each setting
trains DACLModule with Lightning for ``--steps`` steps at the exp3 settings (crop 200, batch 64,
bf16-mixed) and times the steps after ``--warmup`` with the GPU synchronised at both ends only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from datapipe import RESIZE, ReferenceDataset  # the reference code's PIL path, as a Dataset
from torch.utils.data import DataLoader

from dacl import DACLModule
from dacl.data import FER2013DataModule, find_layout
from dacl.data.synthetic import write_dataset


class StepTimer(pl.Callback):
    """Images/s between the end of step ``warmup`` and the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.images = warmup, 0.0, 0.0, 0

    def _sync(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.t0 = self._sync()
        elif trainer.global_step > self.warmup:
            self.images += len(batch[1])

    def on_train_end(self, trainer, module) -> None:
        self.t1 = self._sync()

    @property
    def images_per_s(self) -> float:
        return self.images / (self.t1 - self.t0)


def _trainer(precision: str, **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="auto",
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def throughput(root: str, pipeline: str, compile: bool, args) -> dict:
    pl.seed_everything(0, verbose=False)
    if pipeline == "fast":  # dacl's datamodule: batched augmentation on the GPU
        data = {"datamodule": FER2013DataModule(root, crop=args.crop, batch_size=64)}
    else:  # PIL per image in DataLoader workers, as the reference code
        index = find_layout(root).split("train")
        loader = DataLoader(
            ReferenceDataset(index, args.crop, RESIZE), batch_size=64, shuffle=True,
            num_workers=args.workers, persistent_workers=args.workers > 0,
        )  # fmt: skip
        data = {"train_dataloaders": loader}
    module = DACLModule(
        image_size=args.crop, in_chans=1 if pipeline == "fast" else 3, compile=compile
    )
    timer = StepTimer(args.warmup)
    trainer = _trainer(
        args.precision, max_steps=args.warmup + args.steps, callbacks=[timer], limit_val_batches=0
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.fit(module, **data)
    out = {
        "pipeline": pipeline,
        "compile": compile,
        "images_per_s": round(timer.images_per_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if torch.cuda.is_available():
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def one_epoch(root: str, compile: bool, args) -> dict:
    pl.seed_everything(0, verbose=False)
    data = FER2013DataModule(root, crop=args.crop, batch_size=64)
    module = DACLModule(image_size=args.crop, in_chans=1, compile=compile)
    trainer = _trainer(args.precision, max_epochs=1)
    start = time.perf_counter()
    trainer.fit(module, data)
    wall = time.perf_counter() - start
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if "val/" in k}
    n = len(data.names("train"))
    return {
        "train_images": n,
        "epoch_wall_s": round(wall, 1),
        "compile": compile,
        "val_acc": metrics.get("val/acc"),
        "val_balanced_acc": metrics.get("val/balanced_acc"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="data/fer2013")
    parser.add_argument("--crop", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--no-epoch", action="store_true", help="skip the full-epoch run")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

    root, real = args.root, Path(args.root).is_dir()
    if not real:
        root = write_dataset(Path(tempfile.mkdtemp()) / "synthetic", "folders", 4000, 500, 500)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result = {
        "device": device,
        "torch": torch.__version__,
        "data": "FER2013" if real else "synthetic",
        "crop": args.crop,
        "batch": 64,
        "precision": args.precision,
        "runs": [],
    }
    for pipeline, compile in (("fast", False), ("fast", True), ("reference", False)):
        result["runs"].append(throughput(str(root), pipeline, compile, args))
        print(json.dumps(result["runs"][-1]), flush=True)
    by = {(r["pipeline"], r["compile"]): r["images_per_s"] for r in result["runs"]}
    result["fast_over_reference"] = round(by["fast", False] / by["reference", False], 2)
    result["compile_speedup"] = round(by["fast", True] / by["fast", False], 2)
    if real and not args.no_epoch:
        result["epoch"] = one_epoch(str(root), by["fast", True] > by["fast", False], args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
