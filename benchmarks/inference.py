"""CPU inference of a DACL network: eager PyTorch vs TorchScript vs ONNX Runtime, side by side.

For each input size (method.md's 200 px and FER2013's native 48 px) the same weights are run as

- ``eager``: ``DACLModule`` in eval mode under ``torch.inference_mode`` (gray stem,
  channels-last), as :class:`dacl.Predictor` runs it;
- ``torchscript``: the file ``dacl export --format torchscript`` writes;
- ``onnxruntime``: the file ``dacl export --format onnx`` writes, in an ONNX Runtime session
  with its default CPU settings;

on a batch of 1 (latency: milliseconds per image) and a batch of 64 (throughput: images per
second). The backends are interleaved over several rounds after a warm-up and the median of
each is reported (a shared 2-core machine is noisy), with the ratios to eager. Weights are
random: speed does not depend on them. One JSON line at the end.

    python benchmarks/inference.py                       # 200 and 48 px
    python benchmarks/inference.py --sizes 48 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from dacl import DACLModule, Predictor
from dacl.export import export


def _timer(fn, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``fn(x)`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _backends(size: int, folder: Path) -> dict:
    torch.manual_seed(0)
    module = DACLModule(image_size=size, in_chans=1)
    predictor = Predictor(module, crop=size, resize=size)
    runs = {}

    def eager(x):
        with torch.inference_mode():
            return predictor.module(x)

    runs["eager"] = eager
    ts = export(predictor, folder / f"dacl{size}.pt", "torchscript")
    loaded = torch.jit.load(ts["out"]).eval()

    def torchscript(x):
        with torch.inference_mode():
            return loaded(x)

    runs["torchscript"] = torchscript
    import onnxruntime

    onnx = export(predictor, folder / f"dacl{size}.onnx", "onnx")
    session = onnxruntime.InferenceSession(onnx["out"], providers=["CPUExecutionProvider"])
    runs["onnxruntime"] = lambda x: session.run(None, {"images": x.numpy()})
    return runs


def measure(size: int, rounds: int, folder: Path) -> dict:
    runs = _backends(size, folder)
    shapes = {"batch1": (1, 1, size, size), "batch64": (64, 1, size, size)}
    inputs = {k: torch.randn(*s) for k, s in shapes.items()}
    repeats = {"batch1": 20 if size <= 64 else 5, "batch64": 3 if size <= 64 else 1}
    for fn in runs.values():  # warm-up
        for x in inputs.values():
            fn(x)
    samples = {(name, k): [] for name in runs for k in inputs}
    for _ in range(rounds):
        for k, x in inputs.items():
            for name, fn in runs.items():
                samples[(name, k)].append(_timer(fn, x, repeats[k]))
    out = {}
    for name in runs:
        b1 = statistics.median(samples[(name, "batch1")])
        b64 = statistics.median(samples[(name, "batch64")])
        out[name] = {"batch1_ms": round(b1 * 1000, 2), "batch64_images_per_s": round(64 / b64, 1)}
    for name in runs:
        out[name]["latency_vs_eager"] = round(out[name]["batch1_ms"] / out["eager"]["batch1_ms"], 3)
        out[name]["throughput_vs_eager"] = round(
            out[name]["batch64_images_per_s"] / out["eager"]["batch64_images_per_s"], 3
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 48])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            results[size] = measure(size, args.rounds, Path(tmp))
            print(f"{size} px:")
            for name, r in results[size].items():
                print(
                    f"  {name:12s} batch 1 {r['batch1_ms']:8.2f} ms ({r['latency_vs_eager']:.2f}x"
                    f" eager)   batch 64 {r['batch64_images_per_s']:8.1f} images/s "
                    f"({r['throughput_vs_eager']:.2f}x eager)"
                )
    summary = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
