"""Images/s delivered to the model at exp3 settings: fast data path vs the reference pipeline.

exp3 settings: train transform (method.md §3), crop 200, resize 256, batch 64. Both sides are timed
by the same harness (:func:`measure`: warm-up batches, then timed batches, epochs reshuffled
and cycled as in training), in ``--rounds`` interleaved rounds (reference, then fast) so that
load from other processes falls on both sides alike:

- reference: a ``torch.utils.data.DataLoader`` with 2 workers over per-image PIL decode of the
  JPEG/PNG files (``SplitIndex.load``) + the reference code's transforms, kept in the tests as
  their PIL oracle (``tests/pil_oracle.py``: ``train_transform``) + default collate;
  3 × 200 × 200 float batches.
- fast: the split decoded once (``dacl.data.cache.load_or_build``) into a resident uint8 tensor;
  per batch, index a shuffled permutation, gather, and ``dacl.data.augment.train_augment`` on
  the CPU in this process (1 × 200 × 200 float batches — the gray stem's input).

Data: ``--root`` at a FER2013 layout (e.g. /work/shared/fer2013), else a temporary folder of
``--images`` synthetic faces (``dacl.data.synthetic``, 48 × 48 JPEGs). Prints both figures,
their ratio, and a final JSON line.

    python benchmarks/datapipe.py [--root /work/shared/fer2013] [--threads 1,2]

The fast side is timed once per ``--threads`` count (1 and 2 by default: on a quiet 2-core
machine 2 threads are faster, on a busy one 2 OpenMP threads stall each other); every figure is
printed and the best is the headline. The 1-minute load average is printed with the result.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the PIL oracle
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pil_oracle import train_transform

from dacl.data.augment import train_augment
from dacl.data.cache import load_or_build
from dacl.data.layouts import SplitIndex, find_layout
from dacl.data.synthetic import write_dataset

CROP, RESIZE, BATCH = 200, 256, 64  # exp3


class ReferenceDataset(Dataset):
    """The reference per-image path: decode the file with PIL, then the PIL transform."""

    def __init__(self, index: SplitIndex, crop: int, resize: int) -> None:
        self.index = index
        self.labels = list(index.labels)
        self.transform = train_transform(crop, resize)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.transform(self.index.load(i)), self.labels[i]


def reference_batches(index: SplitIndex, crop: int, resize: int, batch: int, workers: int):
    loader = DataLoader(
        ReferenceDataset(index, crop, resize),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )

    def forever() -> Iterator:
        while True:
            yield from loader

    return forever()


def fast_batches(images: torch.Tensor, labels: torch.Tensor, crop: int, resize: int, batch: int):
    """The datamodule's fast path on the CPU: shuffled index batches of a resident tensor."""
    g = torch.Generator().manual_seed(0)
    n = images.shape[0]

    def forever() -> Iterator:
        while True:
            perm = torch.randperm(n, generator=g)
            for start in range(0, n - batch + 1, batch):
                idx = perm[start : start + batch]
                yield train_augment(images[idx], crop, resize, generator=g), labels[idx]

    return forever()


def measure(batches: Iterator, warmup: int, timed: int) -> dict:
    """Images/s over ``timed`` batches after ``warmup`` (worker start-up, allocator, caches)."""
    shape = None
    for _ in range(warmup):
        x, _ = next(batches)
        shape = tuple(x.shape)
    images = 0
    start = time.perf_counter()
    for _ in range(timed):
        x, y = next(batches)
        images += x.shape[0]
    elapsed = time.perf_counter() - start
    assert x.dtype == torch.float32 and y.shape[0] == x.shape[0]
    return {"images_per_s": images / elapsed, "seconds": elapsed, "images": images, "shape": shape}


def cache_timings(index: SplitIndex) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The split decoded into a fresh cache, then read back: images, labels and both seconds."""
    with tempfile.TemporaryDirectory(prefix="dacl-bench-cache-") as cache_dir:
        t = time.perf_counter()
        load_or_build(index, cache_dir)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        images, labels, _ = load_or_build(index, cache_dir)
        load_s = time.perf_counter() - t
    print(f"decoded cache: build {build_s:.2f} s, reuse {load_s:.2f} s ({tuple(images.shape)})")
    return images, labels, build_s, load_s


def interleaved_rates(
    args: argparse.Namespace, index: SplitIndex, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Images/s of the reference and of the fast side at each thread count, over the rounds."""
    ref_batches = reference_batches(index, CROP, RESIZE, BATCH, args.workers)
    sides = {"reference": (ref_batches, 1, args.batches)}
    for t in args.threads:
        batches = fast_batches(images, labels, CROP, RESIZE, BATCH)
        sides[f"fast/{t}"] = (batches, t, args.fast_batches)
    totals = {name: {"images": 0, "seconds": 0.0} for name in sides}
    for r in range(args.rounds):
        line = []
        for name, (batches, threads, timed) in sides.items():
            torch.set_num_threads(threads)
            # Per-round share of the timed batches; the warm-up also drains what the reference
            # workers prefetched while the fast side ran.
            m = measure(batches, args.warmup, max(1, timed // args.rounds))
            totals[name]["images"] += m["images"]
            totals[name]["seconds"] += m["seconds"]
            line.append(f"{name} {m['images_per_s']:.0f}")
            if name == "reference":
                time.sleep(1.0)  # let the workers finish prefetching before fast is timed
        print(f"  round {r + 1}: " + ", ".join(line) + " images/s")
    ref_batches.close()  # stop the workers
    gc.collect()
    rate = {name: t["images"] / t["seconds"] for name, t in totals.items()}
    for name, t in totals.items():
        extra = "" if name == "reference" else f", {rate[name] / rate['reference']:.1f}x"
        print(
            f"{name:>10}: {rate[name]:9.1f} images/s ({t['images']} in {t['seconds']:.2f} s{extra})"
        )
    return rate


def run(args: argparse.Namespace, root: Path, data_label: str) -> dict:
    load_before = os.getloadavg()[0]
    index = find_layout(root).split("train")
    print(f"data: {data_label}: {len(index)} train images")
    images, labels, build_s, load_s = cache_timings(index)
    # Reference: the workers do the work (torch gives each 1 thread); the main process waits.
    print(f"reference: DataLoader num_workers={args.workers} (1 torch thread each), PIL decode +")
    print("  train_transform per image, default collate; main-process torch threads=1")
    print(f"fast: resident uint8 tensor -> index batch -> train_augment; threads {args.threads}")
    print(
        f"timing {args.rounds} interleaved round(s) of reference then fast, each after "
        f"{args.warmup} warm-up batches"
    )
    rate = interleaved_rates(args, index, images, labels)
    fast = {t: rate[f"fast/{t}"] for t in args.threads}
    best = max(fast, key=fast.get)
    ratio = fast[best] / rate["reference"]
    print(f"ratio fast/reference: {ratio:.1f}x (fast with {best} thread(s); target >= 8x)")
    print(f"1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    return {
        "benchmark": "datapipe",
        "data": data_label,
        "train_images": len(index),
        "crop": CROP,
        "resize": RESIZE,
        "batch": BATCH,
        "warmup_batches": args.warmup,
        "timed_batches": {"reference": args.batches, "fast": args.fast_batches},
        "rounds": args.rounds,
        "reference_images_per_s": round(rate["reference"], 1),
        "reference_workers": args.workers,
        "fast_images_per_s": round(fast[best], 1),
        "fast_torch_threads": best,
        "fast_images_per_s_by_threads": {str(t): round(v, 1) for t, v in fast.items()},
        "ratio": round(ratio, 2),
        "cache_build_s": round(build_s, 3),
        "cache_load_s": round(load_s, 3),
        "cpus": os.cpu_count(),
        "loadavg_1min_before": round(load_before, 2),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, help="FER2013 layout (default: synthetic JPEGs)")
    p.add_argument("--images", type=int, default=4000, help="synthetic images (default 4000)")
    p.add_argument("--batches", type=int, default=120, help="timed reference batches")
    p.add_argument("--fast-batches", type=int, default=400, help="timed fast batches")
    p.add_argument("--warmup", type=int, default=5, help="warm-up batches per side and round")
    p.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument(
        "--threads",
        type=lambda v: [int(t) for t in v.split(",")],
        default=[1, 2],
        help="torch thread counts to time the fast side with (default 1,2; the best is the "
        "headline: on a busy machine 2 OpenMP threads can stall each other)",
    )
    args = p.parse_args(argv)
    if args.root is not None:
        result = run(args, args.root, str(args.root))
    else:
        with tempfile.TemporaryDirectory(prefix="dacl-bench-data-") as tmp:
            write_dataset(tmp, n_train=args.images, n_val=0, n_test=0, image_format="jpg")
            result = run(args, Path(tmp), f"synthetic faces ({args.images} 48x48 JPEGs)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
