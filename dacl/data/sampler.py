"""How training batches are drawn: :class:`EpochSampler`, a reshuffle (or class-balanced draw)
per epoch that depends on ``(seed, epoch)`` alone, sharded over DDP processes."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """The training order: a permutation that depends on ``(seed, epoch)`` alone (Lightning
    calls ``set_epoch`` every epoch), sharded over DDP processes. ``start`` skips the first
    samples of the next iteration only, so a run resumed mid-epoch continues the interrupted
    epoch's order exactly where it stopped."""

    def __init__(
        self,
        dataset: Dataset,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        balanced_labels: Tensor | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0
        self.balanced_labels = balanced_labels

    def __iter__(self):
        order = list(super().__iter__()) if self.balanced_labels is None else self._balanced()
        start, self.start = self.start, 0
        return iter(order[start:])

    def _balanced(self) -> list[int]:
        """Class-balanced draws with replacement: every class equally likely per sample, as
        many samples as the dataset holds; the same ``(seed, epoch)`` function as the shuffle."""
        labels = self.balanced_labels
        weights = 1.0 / torch.bincount(labels).double()[labels]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.multinomial(weights, self.total_size, replacement=True, generator=g)
        return order[self.rank : self.total_size : self.num_replicas].tolist()
