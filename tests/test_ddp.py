"""Data-parallel centers (method.md §2): every process applies the update of the global batch."""

import os
import socket
import subprocess

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

from dacl import DACLModule, SparseCenterLoss

STEPS, PER_RANK, K, D = 4, 6, 7, 16


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        f = torch.randn(2 * PER_RANK, D, generator=g)
        a = torch.rand(2 * PER_RANK, D, generator=g)
        y = torch.randint(0, K - 1, (2 * PER_RANK,), generator=g)  # class K-1 never appears
        yield f, a, y


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    scl = SparseCenterLoss(K, D)
    for f, a, y in _batches():
        shard = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        scl.update_centers(f[shard], a[shard], y[shard])
    torch.save(scl.centers, os.path.join(out_dir, f"centers{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_centers_equal_one_process_over_concatenated_batches(tmp_path):
    mp.spawn(_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    single = SparseCenterLoss(K, D)
    initial = single.centers.clone()
    for f, a, y in _batches():
        single.update_centers(f, a, y)
    rank0, rank1 = (torch.load(tmp_path / f"centers{r}.pt") for r in range(2))
    assert torch.equal(rank0, rank1)
    torch.testing.assert_close(rank0, single.centers, rtol=1e-6, atol=1e-6)
    assert torch.equal(rank0[K - 1], initial[K - 1])
    assert not torch.allclose(rank0[0], initial[0])


class _SaveCenters(pl.Callback):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_train_end(self, trainer, module):
        path = os.path.join(self.out_dir, f"lightning{trainer.global_rank}.pt")
        torch.save(module.center_loss.centers.clone(), path)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_lightning_ddp_ranks_end_with_identical_centers(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 7, (32,)))
    torch.manual_seed(0)
    module = DACLModule(image_size=32, channels_last=False)
    initial = module.center_loss.centers.clone()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_SaveCenters(str(tmp_path))],
    )
    trainer.fit(module, DataLoader(data, batch_size=4, shuffle=True))
    rank0, rank1 = (torch.load(tmp_path / f"lightning{r}.pt") for r in range(2))
    assert torch.equal(rank0, rank1)
    assert not torch.allclose(rank0, initial)


@pytest.mark.slow
def test_the_readmes_ddp_command_trains_on_two_cpu_processes(synthetic_dataset, tmp_path):
    """`dacl fit … --trainer.devices N --trainer.strategy ddp` as the README writes it, on 2 CPU
    processes (gloo): Lightning's launcher starts the second process with the same command."""
    from test_cli import DACL, tiny_config

    config = tiny_config(tmp_path, synthetic_dataset("folders"))
    result = subprocess.run(
        [DACL, "fit", "--config", str(config), "--trainer.accelerator", "cpu",
         "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_epochs", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "logs" / "tiny" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "logs" / "tiny" / "version_1").exists()  # one run, not one per rank
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 3  # 70 images in batches of 16, split over 2 ranks
