"""Train/val sanity: simple image statistics of two splits, and a warning when they disagree.

A training split that is blurred, rescaled or differently normalised from its validation split
trains a model that cannot generalise, while every loss curve looks normal. Comparing a few
statistics of the decoded images when the data is set up makes that visible in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

#: Images per split the statistics are computed on (evenly spaced; enough for stable means).
SAMPLE = 2000
#: Sharpness (mean |Laplacian|) ratio between splits above which the splits are called different.
MAX_SHARPNESS_RATIO = 3.0
#: Largest difference of mean brightness (pixel / 255) or contrast ratio before warning.
MAX_MEAN_GAP = 0.1
MAX_STD_RATIO = 1.5


@dataclass(frozen=True)
class SplitStats:
    """Brightness (mean), contrast (std) of pixel/255 and sharpness (mean |Laplacian| in gray
    levels, 4-neighbour) of a split's images."""

    mean: float
    std: float
    sharpness: float


def split_stats(images: Tensor) -> SplitStats:
    """Statistics of ``uint8 (N, H, W)`` or ``(N, C, H, W)`` images, on up to :data:`SAMPLE`."""
    step = max(1, images.shape[0] // SAMPLE)
    x = images[::step].float()
    if x.ndim == 4:
        x = x.mean(dim=1)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return SplitStats(
        mean=(x.mean() / 255).item(),
        std=(x.std() / 255).item(),
        sharpness=lap.abs().mean().item(),
    )


def _ratio(a: float, b: float) -> float:
    return max(a, b) / max(min(a, b), 1e-6)


def compare_splits(a: str, stats_a: SplitStats, b: str, stats_b: SplitStats) -> str | None:
    """One line naming both splits and what differs grossly between them, or ``None``."""
    problems = []
    if _ratio(stats_a.sharpness, stats_b.sharpness) > MAX_SHARPNESS_RATIO:
        problems.append(
            f"sharpness (mean |Laplacian|) {stats_a.sharpness:.1f} vs {stats_b.sharpness:.1f}"
        )
    if abs(stats_a.mean - stats_b.mean) > MAX_MEAN_GAP:
        problems.append(f"mean brightness {stats_a.mean:.3f} vs {stats_b.mean:.3f}")
    if _ratio(stats_a.std, stats_b.std) > MAX_STD_RATIO:
        problems.append(f"contrast (std) {stats_a.std:.3f} vs {stats_b.std:.3f}")
    if not problems:
        return None
    return (
        f"the {a} and {b} splits look different ({'; '.join(problems)}): a model trained on one "
        f"may not generalise to the other — check that both come from the same release"
    )
