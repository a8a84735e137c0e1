"""The test oracle: the reference code's PIL/torchvision transforms of method.md §3.

train: Grayscale(3) → Resize(256) → random one of the five crops (4 corners + centre) →
RandomHorizontalFlip(0.5) → ToTensor → Normalize(FER2013 mean/std).
eval: Grayscale(3) → Resize(256) → CenterCrop → ToTensor → Normalize.
RGB datasets (RAF-DB, AffectNet) skip Grayscale and normalise with their own statistics.

dacl runs the batched path of ``dacl.data.augment`` only, on uint8 tensors; the tests compare it
against these per-image transforms (``benchmarks/datapipe.py`` times them).
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from dacl.classes import FER2013_STATS, Stats
from dacl.data.augment import FIVE_CROPS


class RandomFiveCrop(torch.nn.Module):
    """One of FiveCrop's five crops, chosen uniformly at random per image (method.md §3).

    The choice uses torch's RNG (not :mod:`random`), so ``torch.manual_seed`` and DataLoader
    worker seeding make it reproducible.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, img: Image.Image) -> Image.Image:
        k = int(torch.randint(len(FIVE_CROPS), ()).item())
        return TF.five_crop(img, [self.size, self.size])[k]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def _color(gray: bool) -> list:
    # Gray faces replicated to 3 channels (method.md §3); RGB faces arrive as RGB already.
    return [T.Grayscale(num_output_channels=3)] if gray else []


def _normalize(stats: Stats) -> list:
    # One statistic (gray) applies to every channel.
    mean, std = stats
    return [T.ToTensor(), T.Normalize(list(mean) * (3 // len(mean)), list(std) * (3 // len(std)))]


def train_transform(
    crop: int,
    resize: int = 256,
    stats: Stats = FER2013_STATS,
    gray: bool = True,
    erasing: float = 0.0,
) -> T.Compose:
    """method.md §3 training transform: PIL image → normalised float tensor (3, crop, crop);
    ``erasing`` > 0 adds ``RandomErasing(erasing)`` after normalising."""
    return T.Compose(
        [
            *_color(gray),
            T.Resize(resize),
            RandomFiveCrop(crop),
            T.RandomHorizontalFlip(0.5),
            *_normalize(stats),
            *([T.RandomErasing(erasing)] if erasing else []),
        ]
    )


def eval_transform(
    crop: int, resize: int = 256, stats: Stats = FER2013_STATS, gray: bool = True
) -> T.Compose:
    """method.md §3 evaluation transform: PIL image → normalised float tensor (3, crop, crop)."""
    return T.Compose([*_color(gray), T.Resize(resize), T.CenterCrop(crop), *_normalize(stats)])
