"""DACLModule under a Lightning Trainer: fitting, metrics, checkpoints."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dacl import FER2013_CLASSES, DACLModule


def _loader(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n) % 7)
    return DataLoader(data, batch_size=8)


def _trainer(tmp_path, **kw):
    return pl.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


def test_fast_dev_run_fits_on_cpu_and_logs_the_losses(tmp_path):
    module = DACLModule(image_size=32)
    trainer = _trainer(tmp_path, fast_dev_run=2, logger=False)
    trainer.fit(module, _loader(), _loader(seed=1))
    logged = trainer.callback_metrics
    for key in ("train/loss", "train/loss_ce", "train/loss_sc", "val/loss", "val/acc"):
        assert key in logged, key
    assert {f"val/recall_{c}" for c in FER2013_CLASSES} <= set(logged)
    # the last validation confusion matrix is kept: rows sum to the class counts (2 batches)
    cm = module.confusion["val"]
    assert cm.shape == (7, 7)
    assert torch.equal(cm.sum(1), torch.bincount(torch.arange(16) % 7, minlength=7))


def test_optimizer_covers_the_network_only():
    module = DACLModule(image_size=32)
    opt = module.configure_optimizers()["optimizer"]
    params = {id(p) for group in opt.param_groups for p in group["params"]}
    assert params == {id(p) for p in module.net.parameters()}
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4


def test_checkpoint_reloads_with_no_other_argument(tmp_path):
    torch.manual_seed(0)
    module = DACLModule(variant="dacl", image_size=32, lam=0.05)
    trainer = _trainer(tmp_path, max_epochs=1, logger=False)
    trainer.fit(module, _loader(), _loader(seed=1))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    reloaded = DACLModule.load_from_checkpoint(path, map_location="cpu")
    assert reloaded.hparams.lam == 0.05 and reloaded.class_names == FER2013_CLASSES
    assert torch.equal(reloaded.center_loss.centers, module.center_loss.centers)
    images = torch.randn(4, 3, 32, 32)
    module.eval()
    reloaded.eval()
    with torch.no_grad():
        for ours, theirs in zip(module(images), reloaded(images), strict=True):
            assert torch.equal(ours, theirs)


def test_pretrained_file_is_needed_at_fit_not_at_reload(tmp_path):
    """A checkpoint carries the trained weights: reloading it must not need the init file."""
    weights = tmp_path / "trunk.pth"
    torch.save(DACLModule(image_size=32).net.trunk.state_dict(), weights)
    module = DACLModule(image_size=32, pretrained=str(weights))
    trainer = _trainer(tmp_path, max_steps=1, logger=False, limit_val_batches=0)
    trainer.fit(module, _loader())
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    weights.unlink()
    DACLModule.load_from_checkpoint(tmp_path / "m.ckpt")


def test_compile_does_not_change_checkpoint_keys():
    eager = DACLModule(image_size=32).state_dict()
    compiled = DACLModule(image_size=32, compile=True).state_dict()
    assert list(compiled) == list(eager)
    assert all(k.startswith(("net.", "center_loss.")) for k in eager)
