"""Images/s of DACLModule's training step vs the same network as a plain PyTorch loop.

One training step is: forward, L = L_CE + λ·L_SC, backward, SGD step, center
update (method.md §2). Data loading is excluded: each side cycles over a few batches already in
memory, so only the step itself is timed.

- ``dacl``: ``DACLModule`` with its fast FER2013 settings (``in_chans=1`` gray stem fed a
  1-channel batch, ``channels_last=True``), driven the way Lightning's automatic optimization
  drives it: ``zero_grad``, ``training_step``, ``backward``, ``step``.
- ``plain``: the reference code's style — fp32, contiguous NCHW, a 3-channel batch, a plain
  ``nn.Module`` (``DACLNet(in_chans=3)``, channels-last off), the loss written inline from the
  formulas of docs/method.md §2 and the center update inline.

Both start from the same weights. After a warm-up the sides are interleaved (A B A B ...) over
several rounds and the median step time of each is reported, because a shared 2-core machine
is noisy (the load average before and after is printed: other processes on the two cores make
OpenMP's thread barriers wait for time slices, which can slow a step several-fold). Prints both
figures and the ratio per size, then one JSON line.

DACLModule's optimizer is fused SGD (one kernel per tensor); the plain loop keeps the reference
code's default for-loop SGD. At 200 px the optimizer step over the CE-Unit's 90M parameters is
a large part of a CPU step, and that is where most of the gain comes from.

    python benchmarks/train_step.py                 # 200 px (batch 16) and 48 px (batch 64)
    python benchmarks/train_step.py --sizes 48 --rounds 9
    python benchmarks/train_step.py --sizes 44 64 --bf16   # fp32 and bf16-mixed side by side
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dacl.classes import FER2013_MEAN, FER2013_STD
from dacl.cli import native_bf16
from dacl.model import DACLNet
from dacl.module import DACLModule

NUM_CLASSES = 7
LAM, ALPHA = 0.01, 0.5
DEFAULT_BATCH = {200: 16, 48: 64}


class PlainLoop:
    """The reference code's training step: fp32, contiguous NCHW, 3-channel input, loss and
    center update written inline (method.md §2)."""

    def __init__(self, image_size: int, state: dict[str, Tensor], centers: Tensor) -> None:
        self.net = DACLNet(NUM_CLASSES, image_size, attention="learned", in_chans=3)
        self.net.load_state_dict(state)
        self.net.train()
        self.centers = centers.clone()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        self.opt.zero_grad()
        logits, feat, att = self.net(x)
        loss_ce = F.cross_entropy(logits, y)
        diff = feat - self.centers[y]
        loss_sc = (att * diff.pow(2)).sum() / (2 * x.shape[0])
        loss = loss_ce + LAM * loss_sc
        loss.backward()
        self.opt.step()
        with torch.no_grad():  # c_k += α·λ·Σ_{y_i=k} a_i ⊙ (f_i − c_k) / (1 + n_k)
            pull = att * (feat - self.centers[y])
            sums = torch.zeros_like(self.centers).index_add_(0, y, pull)
            counts = torch.bincount(y, minlength=NUM_CLASSES).to(sums.dtype)
            self.centers.add_(sums / (1 + counts[:, None]), alpha=ALPHA * LAM)
        return loss


class ModuleLoop:
    """DACLModule's training step as Lightning's automatic optimization runs it (no trainer
    attached: ``self.log`` only warns, and that warning is silenced); ``bf16`` runs the forward
    pass and the loss under CPU autocast to bfloat16, as ``--trainer.precision bf16-mixed``."""

    def __init__(self, image_size: int, bf16: bool = False) -> None:
        self.bf16 = bf16
        self.module = DACLModule(
            "dacl", lam=LAM, alpha=ALPHA, image_size=image_size, in_chans=1, channels_last=True
        )
        self.module.train()
        self.opt = self.module.configure_optimizers()["optimizer"]
        self.i = 0

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        self.opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.module.training_step((x, y), self.i)
        loss.backward()
        self.opt.step()
        self.i += 1
        return loss


def _batches(n: int, batch: int, size: int, chans: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """``n`` normalized gray batches; 3 channels are real (contiguous) copies, as the reference
    pipeline's ``ToTensor`` on an RGB-converted image produces."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        gray = (torch.rand(batch, 1, size, size, generator=g) - FER2013_MEAN) / FER2013_STD
        x = gray.repeat(1, 3, 1, 1).contiguous() if chans == 3 else gray
        out.append((x, torch.randint(0, NUM_CLASSES, (batch,), generator=g)))
    return out


def _time_steps(loop, batches, steps: int, start: int) -> float:
    """Seconds per step, averaged over ``steps`` consecutive steps."""
    t0 = time.perf_counter()
    for k in range(steps):
        x, y = batches[(start + k) % len(batches)]
        loss = loop.step(x, y)
    if not math.isfinite(loss.detach().item()):
        raise RuntimeError("non-finite loss")
    return (time.perf_counter() - t0) / steps


def bench_size(
    size: int, batch: int, rounds: int, steps: int, warmup: int, bf16: bool = False
) -> dict:
    torch.manual_seed(0)
    dacl = ModuleLoop(size)
    # The plain net gets the same weights, with the gray stem unfolded to RGB: on replicated
    # gray input the two networks compute the same function.
    state = {k: v.clone() for k, v in dacl.module.net.state_dict().items()}
    state["trunk.conv1.weight"] = state["trunk.conv1.weight"].repeat(1, 3, 1, 1) / 3
    state = {k: v.contiguous() for k, v in state.items()}
    plain = PlainLoop(size, state, dacl.module.center_loss.centers)
    gray = _batches(3, batch, size, 1, seed=size)
    rgb = [(x.repeat(1, 3, 1, 1).contiguous(), y) for x, y in gray]
    sides = {"dacl": (dacl, gray), "plain": (plain, rgb)}
    if bf16:
        torch.manual_seed(0)
        sides["dacl_bf16"] = (ModuleLoop(size, bf16=True), gray)

    for loop, data in sides.values():
        _time_steps(loop, data, warmup, 0)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(rounds):
        # Rotate the order so that every side takes every position equally often.
        names = list(sides)
        order = names[r % len(names) :] + names[: r % len(names)]
        for side in order:
            loop, data = sides[side]
            times[side].append(_time_steps(loop, data, steps, r * steps))
    ips = {k: batch / statistics.median(v) for k, v in times.items()}
    best = {k: batch / min(v) for k, v in times.items()}
    out = {"size": size, "batch": batch}
    for k in sides:
        out[f"{k}_ips"] = round(ips[k], 2)
    out["ratio"] = round(ips["dacl"] / ips["plain"], 3)
    if bf16:
        out["bf16_ratio"] = round(ips["dacl_bf16"] / ips["dacl"], 3)
    out["best_of_rounds_ips"] = {k: round(v, 2) for k, v in best.items()}
    out["step_s"] = {k: [round(t, 4) for t in v] for k, v in times.items()}
    return out


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[200, 48])
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="batch for every size (default 16 at 200 px, 64 at 48 px)",
    )
    p.add_argument("--rounds", type=int, default=9, help="interleaved A/B rounds after warm-up")
    p.add_argument("--steps", type=int, default=2, help="steps per side per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="also DACLModule under bf16 autocast (bf16-mixed), beside fp32, on the CPU",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*self\.log.*")
    warnings.filterwarnings("ignore", message=r".*trainer.*reference is not registered.*")

    load_before = _load()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {_cpu_name()}; "
        f"interleaved medians over {args.rounds} rounds x {args.steps} steps; "
        f"load average before: {load_before}; bf16 in hardware: {native_bf16()}"
    )
    results = []
    for size in args.sizes:
        batch = args.batch or DEFAULT_BATCH.get(size, 32)
        res = bench_size(size, batch, args.rounds, args.steps, args.warmup, args.bf16)
        results.append(res)
        line = (
            f"{size:>4} px, batch {batch:>3}: DACLModule {res['dacl_ips']:8.2f} img/s | "
            f"plain loop {res['plain_ips']:8.2f} img/s | ratio {res['ratio']:.3f}x"
        )
        if args.bf16:
            line += (
                f" | DACLModule bf16 {res['dacl_bf16_ips']:8.2f} img/s, "
                f"{res['bf16_ratio']:.3f}x fp32"
            )
        print(line, flush=True)
    load_after = _load()
    print(f"load average after: {load_after}")
    summary = {
        "benchmark": "train_step",
        "device": "cpu",
        "cpu": _cpu_name(),
        "bf16_hardware": native_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_before_after": [load_before, load_after],
        "results": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
