"""Stand-in data and the shared short fit for the callback and report tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dacl import FER2013_CLASSES
from dacl.callbacks import AttentionMapLogger

PER_CLASS = 3


class StandInData(pl.LightningDataModule):
    """Random normalised 'faces' (B, 3, 32, 32), labels 0..6 in a fixed shuffled order — the
    reference pipeline's batch format, without depending on the real datamodule."""

    class_names = FER2013_CLASSES

    def __init__(self, n_train=16, n_val=35, n_test=21, batch_size=8, seed=0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def make(n):
            labels = (torch.arange(n) % 7)[torch.randperm(n, generator=g)]
            return TensorDataset(torch.randn(n, 3, 32, 32, generator=g), labels)

        self.sets = {"train": make(n_train), "val": make(n_val), "test": make(n_test)}
        self.batch_size = batch_size

    def names(self, split):
        return [f"{split}_{i:03d}.png" for i in range(len(self.sets[split]))]

    def labels(self, split):
        return self.sets[split].tensors[1]

    def inputs(self, split, indices):
        return self.sets[split].tensors[0][indices]

    def faces(self, split, indices):  # the first channel, shown as 8-bit gray
        return (self.inputs(split, indices)[:, 0].sigmoid() * 255).to(torch.uint8)

    def _loader(self, split, shuffle=False):
        return DataLoader(self.sets[split], batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val")

    def test_dataloader(self):
        return self._loader("test")


class SpyAttention(AttentionMapLogger):
    """Records the chosen positions and the attention drawn after every validation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.history.append((self.indices.clone(), self.attention.clone()))


def trainer_for(root, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
