"""The attention diagnostics (method.md §5) against hand computations, and where they are
logged."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dacl import DACLModule
from dacl.diagnostics import AttentionDiagnostics


def test_figures_equal_a_hand_computation_over_two_batches():
    # three faces of four weights; classes 0, 1, 0 of a two-class problem
    a = torch.tensor(
        [[0.05, 0.5, 0.5, 0.95], [0.2, 0.2, 0.2, 0.2], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float32
    )
    labels = torch.tensor([0, 1, 0])
    metric = AttentionDiagnostics(("x", "y"), dim=4)
    metric.update(a[:2], labels[:2])  # accumulated over batches, as in a validation epoch
    metric.update(a[2:], labels[2:])
    out = {k: float(v) for k, v in metric.compute().items()}
    # mean of the 12 weights: (2.0 + 0.8 + 2.0) / 12
    assert out["mean"] == pytest.approx(4.8 / 12)
    # face 1: mean 0.5, deviations -0.45, 0, 0, 0.45 → std sqrt(2·0.2025/4); faces 2, 3: 0
    assert out["face_spread"] == pytest.approx(math.sqrt(0.405 / 4) / 3)
    # weight 0 across faces: 0.05, 0.2, 0.5 (mean 0.25) → std sqrt((0.04+0.0025+0.0625)/3);
    # weights 1 and 2: 0.5, 0.2, 0.5 (mean 0.4) → sqrt((0.01+0.04+0.01)/3); weight 3: 0.95, 0.2,
    # 0.5 (mean 0.55) → sqrt((0.16+0.1225+0.0025)/3)
    spreads = [math.sqrt(0.105 / 3), math.sqrt(0.06 / 3), math.sqrt(0.06 / 3), math.sqrt(0.285 / 3)]
    assert out["weight_spread"] == pytest.approx(sum(spreads) / 4)
    assert out["low"] == pytest.approx(1 / 12) and out["high"] == pytest.approx(1 / 12)
    # class x: faces 1 and 3 (face means 0.5 and 0.5); class y: face 2 (0.2)
    assert out["mean_x"] == pytest.approx(0.5) and out["mean_y"] == pytest.approx(0.2)


def test_a_class_without_faces_is_left_out():
    metric = AttentionDiagnostics(("x", "y", "z"), dim=2)
    metric.update(torch.full((2, 2), 0.3), torch.tensor([2, 2]))
    out = metric.compute()
    assert "mean_x" not in out and "mean_y" not in out
    assert float(out["mean_z"]) == pytest.approx(0.3)
    assert float(out["face_spread"]) == 0 and float(out["weight_spread"]) == pytest.approx(0)


def _fit(variant: str, tmp_path) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(14, 1, 32, 32, generator=g), torch.arange(14) % 7)
    torch.manual_seed(0)
    module = DACLModule(variant=variant, image_size=32, in_chans=1)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=7), DataLoader(data, batch_size=7))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def test_dacl_logs_its_attention_at_every_validation_the_others_none(tmp_path):
    expected = {"mean", "face_spread", "weight_spread", "low", "high", "mean_happy"}
    for variant in ("dacl", "dacl_norm"):
        logged = _fit(variant, tmp_path)
        assert {f"attention/{k}" for k in expected} <= set(logged)
        assert 0 < logged["attention/mean"] < 1
    assert logged["attention/mean"] == pytest.approx(0.5)  # dacl_norm's, by construction
    for variant in ("dacl_fixed", "center", "softmax"):
        assert not any(k.startswith("attention/") for k in _fit(variant, tmp_path)), variant
