"""Why DACL's attention ends near 0.5, measured on trained DACL checkpoints (docs/results.md).

    python benchmarks/attention_forces.py --root ../shared/fer2013 \
        --config experiments/cpu_long.yaml CKPT [CKPT ...]

The attention branch (CE-Unit and heads) is trained by nothing but λ·L_SC and weight decay:
a enters no other term (docs/method.md §2). For each checkpoint this prints, on FER2013's val
faces (the eval transform, one view):

* whether the weights follow the distances: the rank correlation across the 512 features
  between a feature's mean weight and its mean squared distance to the class centre,
  d_j = mean_i (f_ij − c_{y_i,j})², and Pearson's across faces within a feature, averaged over
  the features. L_SC's gradient in a_ij is λ·d_ij/(2m) ≥ 0, so heads that learn from it give
  far features low weights; but a negative correlation also arises the other way round, since
  L_SC pulls a feature towards its centre in proportion to its weight;
* the heads' linear map (a_j = σ(z_j1 − z_j0)): the norm of W_1 − W_0, beside its norm at
  initialisation and what weight decay alone, through SGD with momentum, leaves of that over the
  checkpoint's steps; the cosine between W_1 − W_0 and its initialisation (rebuilt from the
  run's seed in the ``config.yaml`` beside ``checkpoints/``; without one, seed 0 and no
  cosine), and the same cosine for the classifier, which L_CE trains, for contrast; and the
  norm of b_1 − b_0 (0 at initialisation: all of it learned);
* the two forces on the heads' weight now, over ``--batches`` training batches in train mode:
  the mean gradient of λ·L_SC, g, and weight decay's pull, wd·w: their norms and cosine (−1
  where they cancel: heads held where weight decay balances L_SC's push).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml
from torch import Tensor

from dacl.checkpoint import safe_load
from dacl.cli import build_cli
from dacl.data import FER2013DataModule
from dacl.module import DACLModule
from dacl.predictor import Predictor


def ranks(x: Tensor) -> Tensor:
    """Ranks of ``x`` along its last axis (no ties in float features)."""
    return x.argsort(-1).argsort(-1).float()


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson's r along the last axis."""
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-12)


def cosine(x: Tensor, y: Tensor) -> float:
    """The cosine of the angle between two tensors taken as vectors."""
    return float((x * y).sum() / (x.norm() * y.norm()))


@torch.no_grad()
def selection(module: DACLModule, data: FER2013DataModule, batch: int = 256) -> dict[str, float]:
    """Correlations of a with d on the val faces (module in eval mode)."""
    module.eval()
    labels = data.labels("val")
    a_all, d_all = [], []
    for idx in torch.arange(len(labels)).split(batch):
        _, f, a = module.net(data.inputs("val", idx))
        d_all.append((f - module.center_loss.centers[labels[idx]]).pow(2))
        a_all.append(a)
    a, d = torch.cat(a_all), torch.cat(d_all)
    return {
        "features": float(pearson(ranks(a.mean(0)), ranks(d.mean(0)))),
        "faces": float(pearson(a.T, d.T).mean()),
        "a_mean": float(a.mean()),
    }


@torch.no_grad()
def head_differences(module: DACLModule) -> tuple[Tensor, Tensor]:
    """W_1 − W_0 and b_1 − b_0 of the heads' linear map (rows interleaved per head)."""
    fc = module.net.heads.fc
    w, b = fc.weight.view(-1, 2, fc.in_features), fc.bias.view(-1, 2)
    return w[:, 1] - w[:, 0], b[:, 1] - b[:, 0]


def run_seed(path: str) -> int | None:
    """The seed of the ``dacl fit`` run a checkpoint belongs to (its ``config.yaml``), if any."""
    config = Path(path).parents[1] / "config.yaml"
    seed = yaml.safe_load(config.read_text()).get("seed_everything") if config.is_file() else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def initial(module: DACLModule, seed: int | None) -> DACLModule:
    """The module as its run built it before training: the same seed, the same draws (seed 0
    for a checkpoint without its run's config: then only its norms compare)."""
    pl.seed_everything(0 if seed is None else seed, verbose=False)
    return DACLModule.from_config(module.hparams, "the checkpoint")


def decay_alone(ckpt: Mapping[str, Any]) -> float | None:
    """The factor by which weight decay alone, through SGD with momentum μ, shrinks a weight
    over a checkpoint's steps: exp(−wd/(1 − μ) · Σ_t η_t), the cosine schedule's η_t summed
    from its state (``None`` without one)."""
    if len(ckpt.get("lr_schedulers", [])) != 1 or "T_max" not in ckpt["lr_schedulers"][0]:
        return None  # a shipped model's checkpoint keeps no optimizer, or another schedule
    sched, group = ckpt["lr_schedulers"][0], ckpt["optimizer_states"][0]["param_groups"][0]
    t = torch.arange(sched["last_epoch"], dtype=torch.float64)
    lrs = sched["base_lrs"][0] * (1 + torch.cos(math.pi * t / sched["T_max"])) / 2
    return math.exp(-group["weight_decay"] / (1 - group["momentum"]) * float(lrs.sum()))


def forces(module: DACLModule, data: FER2013DataModule, batches: int) -> dict[str, float]:
    """Mean gradient of λ·L_SC on the heads' weight against weight decay's wd·w."""
    module.train()
    fc = module.net.heads.fc
    labels = data.labels("train")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    total = torch.zeros_like(fc.weight)
    for idx in order[: 64 * batches].split(64):
        module.zero_grad(set_to_none=True)
        _, f, a = module.net(data.inputs("train", idx))
        (module.lam * module.center_loss(f, a, labels[idx])).backward()
        total += fc.weight.grad
    g, pull = total / batches, module.hparams.weight_decay * fc.weight.detach()
    return {"g": float(g.norm()), "wd_w": float(pull.norm()), "cosine": cosine(g, pull)}


def measure(path: str, data: FER2013DataModule, batches: int) -> dict[str, Any]:
    """One checkpoint's row of the table."""
    module = Predictor.from_checkpoint(path).module
    if not module.learns_attention:
        raise SystemExit(f"{path}: no attention heads (variant {module.hparams.variant})")
    seed = run_seed(path)
    start = initial(module, seed)
    (w, b), (w0, _) = head_differences(module), head_differences(start)
    shrink = decay_alone(safe_load(path, mmap=True))
    classifier = (module.net.classifier.weight.detach(), start.net.classifier.weight.detach())
    return {
        **selection(module, data),
        **forces(module, data, batches),
        "w": float(w.norm()), "w0": float(w0.norm()), "b": float(b.norm()),
        "decayed": "n/a" if shrink is None else f"{float(w0.norm()) * shrink:.2f}",
        "cos_init": "n/a" if seed is None else f"{cosine(w, w0):.3f}",
        "cos_classifier": "n/a" if seed is None else f"{cosine(*classifier):.3f}",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--root", required=True, help="the FER2013 folder")
    parser.add_argument("--config", default="experiments/cpu_long.yaml")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    data = build_cli(["--config", args.config, "--data.root", args.root]).datamodule
    data.setup("fit")
    print(
        "| checkpoint | mean a | r(a, d) across features (Spearman) | r(a, d) across faces "
        "| ‖W1−W0‖ | at init | init × decay alone | cos(W1−W0, at init) | ‖b1−b0‖ (init: 0) "
        "| cos(classifier, at init) | ‖g‖ | ‖wd·w‖ | ‖wd·w‖ / ‖g‖ | cos(g, wd·w) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in args.checkpoints:
        m = measure(path, data, args.batches)
        print(
            f"| {path} | {m['a_mean']:.3f} | {m['features']:+.3f} | {m['faces']:+.3f} "
            f"| {m['w']:.2f} | {m['w0']:.2f} | {m['decayed']} | {m['cos_init']} | {m['b']:.3f} "
            f"| {m['cos_classifier']} "
            f"| {m['g']:.2e} | {m['wd_w']:.2e} | {m['wd_w'] / m['g']:.1f} | {m['cosine']:+.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
