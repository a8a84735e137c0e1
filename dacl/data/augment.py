"""Batched method.md §3 augmentation of decoded images (gray or RGB, any size), on the batch's
own device.

The reference code works per PIL image (``tests/pil_oracle.py`` keeps it as the test oracle):
``Resize(resize)`` → one of ``FiveCrop(crop)`` → ``RandomHorizontalFlip`` → ``ToTensor`` →
``Normalize``.  Resizing, cropping and flipping are all *linear and separable*: every output
row is a fixed weighted sum of input rows and every output column a fixed weighted sum of input
columns.  So for each sample

    out = Wy @ img @ Wx.T

where ``Wy`` (crop × H) holds the rows ``top .. top+crop-1`` of the 1-D resize matrix
``R`` (resize × H) and ``Wx`` (crop × W) holds its rows ``left .. left+crop-1`` — reversed when
the sample is flipped.  ``R`` is built with Pillow's own resampling rule (triangle filter,
half-pixel centres, support widened by the scale when shrinking, weights renormalised at the
borders), so the result is the reference's *before* Pillow rounds to uint8; for the 48 → 256
upsampling it is plain bilinear with ``align_corners=False`` and edge clamping.

A whole batch is therefore two batched matrix products of its images (every channel) against
per-sample matrices gathered from a small table of the 5 crops (× 2 flips): one crop-and-resize
of the decoded originals, with no per-sample Python loop and no host synchronisation, and
cheaper than ``F.grid_sample`` on the CPU (``benchmarks/datapipe.py`` measures it). The
normalisation (per channel) is folded into the row table and its shift applied to the small
input. A gray batch stays one channel; the network either expands it or uses its folded gray
stem.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dacl.classes import FER2013_STATS, Stats

__all__ = [
    "FIVE_CROPS",
    "TTA_VIEWS",
    "Tta",
    "crop_offsets",
    "crop_resize",
    "erase",
    "eval_augment",
    "resize_matrix",
    "resized_size",
    "train_augment",
]

#: torchvision's ``FiveCrop`` order: what ``crop_index`` counts in.
FIVE_CROPS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
CENTER = FIVE_CROPS.index("center")

#: Test-time augmentation: the evaluation views ``(crop_index, flip)`` of each mode. ``none`` is
#: the paper's single center crop; ``flip`` adds its mirror; ``crops`` is the ten-crop (the five
#: crops of training and their mirrors). The model averages the views' softmax.
Tta = Literal["none", "flip", "crops"]
TTA_VIEWS: dict[str, tuple[tuple[int, bool], ...]] = {
    "none": ((CENTER, False),),
    "flip": ((CENTER, False), (CENTER, True)),
    "crops": tuple((c, f) for c in range(len(FIVE_CROPS)) for f in (False, True)),
}


def resized_size(h: int, w: int, resize: int) -> tuple[int, int]:
    """Output size of ``torchvision.transforms.Resize(resize)`` (an int: the smaller edge)."""
    if h <= w:
        return resize, int(resize * w / h)
    return int(resize * h / w), resize


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size × in_size) matrix of Pillow's BILINEAR resampling along one axis.

    Mirrors ``precompute_coeffs`` in Pillow's ``Resample.c``: output pixel ``j`` is centred at
    ``(j + 0.5) * scale`` in input coordinates, input pixel ``i`` at ``i + 0.5``; the weight is
    the triangle filter ``max(0, 1 - |d| / fs)`` with ``fs = max(scale, 1)`` (antialiasing when
    shrinking), renormalised over the in-range pixels (so the borders clamp).
    """
    scale = in_size / out_size
    fs = max(scale, 1.0)
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    dist = (np.arange(in_size, dtype=np.float64)[None, :] + 0.5 - centres[:, None]) / fs
    weights = np.clip(1.0 - np.abs(dist), 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def crop_offsets(size: int, crop: int) -> tuple[int, int, int]:
    """Offsets ``(near, far, centre)`` of a ``crop`` window along an axis of length ``size``.

    ``FiveCrop``'s corners start at ``0`` and ``size - crop``; its centre crop at
    ``int(round((size - crop) / 2.0))`` — Python's round, i.e. half to even, as torchvision.
    """
    if not 0 < crop <= size:
        raise ValueError(f"crop {crop} must be in 1..{size} (the resized image's smaller edge)")
    return 0, size - crop, round((size - crop) / 2.0)


@functools.lru_cache(maxsize=32)
def _tables(
    h: int, w: int, crop: int, resize: int, device: torch.device, stats: Stats
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-crop row matrices (5, C, crop, h), per-(crop, flip) column matrices (10, 1, crop, w)
    and the per-channel shift (1, C, 1, 1), for ``stats`` = (means, stds) of C channels.

    Channel ``c``'s rows are pre-scaled by ``1 / (255 * std_c)``; the shift is ``255 * mean_c``,
    to be subtracted from the input: every row of both tables sums to a constant (the weights
    are renormalised), so ``Wy @ (x - 255 mean) @ Wx.T == Wy @ x @ Wx.T - mean / std`` — the
    normalisation's shift done on the small input instead of the crop × crop output.
    """
    mean, std = (np.asarray(v, dtype=np.float64) for v in stats)
    rh, rw = resized_size(h, w, resize)
    ry, rx = resize_matrix(h, rh), resize_matrix(w, rw)
    t_near, t_far, t_mid = crop_offsets(rh, crop)
    l_near, l_far, l_mid = crop_offsets(rw, crop)
    # FiveCrop order: tl, tr, bl, br, center.
    tops = (t_near, t_near, t_far, t_far, t_mid)
    lefts = (l_near, l_far, l_near, l_far, l_mid)
    rows = np.stack([ry[t : t + crop] for t in tops])[:, None] / (255.0 * std[:, None, None])
    cols = []
    for left in lefts:
        window = rx[left : left + crop]
        cols += [window, window[::-1]]  # index 2 * crop_index + flip
    as_t = functools.partial(torch.tensor, dtype=torch.float32, device=device)
    return as_t(rows), as_t(np.stack(cols)[:, None]), as_t(255.0 * mean).view(1, -1, 1, 1)


def _as_batch(x: Tensor, stats: Stats) -> Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or len(stats[0]) not in (1, x.shape[1]) or len(stats[0]) != len(stats[1]):
        raise ValueError(
            f"expected (B, C, H, W) or (B, H, W) images with {len(stats[0])} channel(s) of "
            f"statistics, got shape {tuple(x.shape)}"
        )
    return x


def crop_resize(
    x: Tensor,
    crop_index: Tensor,
    flip: Tensor,
    crop: int,
    resize: int = 256,
    stats: Stats = FER2013_STATS,
) -> Tensor:
    """Deterministic core: resize, take crop ``crop_index`` (FiveCrop order), flip, normalise.

    Args:
        x: uint8 (or float in 0..255) images, (B, C, H, W) or (B, H, W), on any device.
        crop_index: (B,) integers in 0..4 — top-left, top-right, bottom-left, bottom-right, centre.
        flip: (B,) bools — mirror the crop left-right.
        crop: output side.
        resize: the smaller edge after ``Resize`` (method.md §3: 256).
        stats: per-channel (means, stds) of pixel / 255 (one value: every channel).

    Returns:
        float32 (B, C, crop, crop) on ``x.device``, normalised with ``stats``: the reference
        code's PIL output (its channel 0 for gray) up to Pillow's uint8 rounding.
    """
    x = _as_batch(x, stats)
    h, w = x.shape[-2:]
    stats = tuple(tuple(float(v) for v in part) for part in stats)
    rows, cols, shift = _tables(h, w, crop, resize, x.device, stats)
    crop_index = crop_index.to(device=x.device, dtype=torch.long)
    flip = flip.to(device=x.device, dtype=torch.long)
    with torch.autocast(device_type=x.device.type, enabled=False):
        wy = rows[crop_index]  # (B, C or 1, crop, H)
        wx = cols[2 * crop_index + flip]  # (B, 1, crop, W)
        centred = x.to(torch.float32).sub_(shift) if x.dtype != torch.float32 else x - shift
        return torch.matmul(wy, torch.matmul(centred, wx.transpose(-1, -2)))


def train_augment(
    x: Tensor,
    crop: int,
    resize: int = 256,
    generator: torch.Generator | None = None,
    stats: Stats = FER2013_STATS,
) -> Tensor:
    """method.md §3 train transform for a batch: uniform one of five crops, flip with p = 0.5.

    The draws are made for the whole batch at once on ``generator``'s device (``x``'s device,
    with its default generator, when none is given). Give a generator on ``x``'s device (e.g.
    ``torch.Generator(device="cuda")``) to keep the hot path free of host-to-device copies;
    a CPU generator with a CUDA batch works but copies the (B,) draws over each step.
    """
    b = x.shape[0]
    dev = generator.device if generator is not None else x.device
    crop_index = torch.randint(0, 5, (b,), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    if dev != x.device:
        crop_index = crop_index.to(x.device, non_blocking=True)
        flip = flip.to(x.device, non_blocking=True)
    return crop_resize(x, crop_index, flip, crop, resize, stats)


def erase(
    x: Tensor,
    p: float,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> Tensor:
    """Random erasing (Zhong et al., 2020) for a normalised batch, in place: with probability
    ``p`` a sample gets one rectangle of ``scale`` × its area and aspect ``ratio`` set to 0
    (the mean face after normalisation), as ``torchvision.transforms.RandomErasing``'s defaults.
    Drawn for the whole batch at once on ``generator``'s device, like :func:`train_augment`.
    """
    b, _, h, w = x.shape
    dev = generator.device if generator is not None else x.device
    u = torch.rand(5, b, generator=generator, device=dev).to(x.device)
    area = (scale[0] + (scale[1] - scale[0]) * u[0]) * h * w
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    eh = (area * log_r.exp()).sqrt().round().clamp(1, h)
    ew = (area / log_r.exp()).sqrt().round().clamp(1, w)
    top = ((h - eh + 1) * u[2]).floor()
    left = ((w - ew + 1) * u[3]).floor()
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    inside_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = inside_r[:, :, None] & inside_c[:, None, :] & (u[4] < p)[:, None, None]
    return x.masked_fill_(mask[:, None], 0.0)


def eval_augment(
    x: Tensor, crop: int, resize: int = 256, stats: Stats = FER2013_STATS, tta: str = "none"
) -> Tensor:
    """method.md §3 eval transform for a batch: ``Resize(resize)`` → ``CenterCrop(crop)``, as
    (B, C, crop, crop). With test-time augmentation (``tta`` other than ``none``, see
    :data:`TTA_VIEWS`) every face gives its views, as (B, V, C, crop, crop)."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {', '.join(TTA_VIEWS)}, got '{tta}'")
    views = torch.tensor(TTA_VIEWS[tta], dtype=torch.long, device=x.device)  # (V, 2)
    b, v = x.shape[0], len(views)
    if v > 1:
        x = x.repeat_interleave(v, 0)
    out = crop_resize(x, views[:, 0].repeat(b), views[:, 1].bool().repeat(b), crop, resize, stats)
    return out if v == 1 else out.view(b, v, *out.shape[1:])
