"""Where training stands in the data, kept in one place so a resumed run continues exactly.

A training batch is fixed by ``(seed, epoch, batch)``: the sampler's order depends on
``(seed, epoch)`` alone (:class:`~dacl.data.sampler.EpochSampler`), and each batch's crops,
flips, erasing and drawn FER+ labels come from a generator seeded with ``(seed, rank, epoch,
batch)``. :class:`Position` counts the batches handed to the model, is saved in checkpoints
(Lightning calls the data module's ``state_dict``), restored before the loaders exist
(``load_state_dict``) and places the next sampler where the interrupted epoch stopped.
"""

from __future__ import annotations

import torch

from dacl.data.sampler import EpochSampler


class Position:
    """The resume position: the epoch, its training batches handed to the model so far, and
    the augmentation generator those batches are drawn on."""

    def __init__(self) -> None:
        self.epoch, self.batches = 0, 0
        self._restored: tuple[int, int, bool] | None = None
        self._generator: torch.Generator | None = None

    def state_dict(self, batches_per_epoch: int | None) -> dict[str, int]:
        """The epoch, its batches already trained on, and whether that was all of them
        (``batches_per_epoch``: the trainer's, limits included; ``None`` without a trainer)."""
        finished = batches_per_epoch is not None and self.batches >= batches_per_epoch
        return {"epoch": self.epoch, "batches": self.batches, "finished": int(finished)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """A checkpoint's position, applied to the next training sampler (:meth:`place`)."""
        self._restored = (int(state["epoch"]), int(state["batches"]), bool(state["finished"]))

    def place(self, sampler: EpochSampler, batch_size: int) -> None:
        """Start ``sampler`` where a restored checkpoint stopped; nothing without one."""
        if self._restored is None:
            return
        epoch, done, finished = self._restored
        self._restored = None
        if finished:  # saved at the end of its epoch: the next one starts afresh
            epoch, done = epoch + 1, 0
        sampler.set_epoch(epoch)
        sampler.start = done * batch_size
        self.epoch, self.batches = epoch, done

    def next_batch(self, epoch: int, seed: int, rank: int, device: torch.device) -> torch.Generator:
        """Count one training batch of ``epoch`` and return the generator its draws come from:
        seeded by ``(seed, rank, epoch, batch)``, so the same after a resume and different on
        each DDP process; on the batch's ``device`` (no host-device copy per step)."""
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, 0
        key = (seed, rank, self.epoch, self.batches)
        self.batches += 1
        if self._generator is None:
            self._generator = torch.Generator(device=device)
        return self._generator.manual_seed(hash(key) & (2**63 - 1))
