"""DACLModule under a Lightning Trainer: fitting, metrics, checkpoints."""

import logging

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from dacl import FER2013_CLASSES, DACLError, DACLModule, FER2013DataModule


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
    prefixes = ("net.", "center_loss.", "train_metrics.", "val_best.")
    assert all(k.startswith(prefixes) for k in eager)


def _gray_loader(size=64, n=48):
    # batches of 16 at 64 px: BatchNorm over 2x2x16 values at layer4, well conditioned
    g = torch.Generator().manual_seed(3)
    gray = torch.rand(n, 1, size, size, generator=g, dtype=torch.float64)
    data = TensorDataset(gray.expand(-1, 3, -1, -1).clone(), torch.arange(n) % 7)
    return DataLoader(data, batch_size=16)


@pytest.mark.slow
def test_gray_stem_trains_exactly_like_the_rgb_stem(tmp_path):
    """method.md §1: 3 SGD steps through each module's own configure_optimizers, in float64."""
    torch.manual_seed(0)
    rgb = DACLModule(image_size=64, in_chans=3, channels_last=False).double()
    gray = DACLModule(image_size=64, in_chans=1, channels_last=False).double()
    state = rgb.state_dict()
    state["net.trunk.conv1.weight"] = state["net.trunk.conv1.weight"].sum(1, keepdim=True)
    gray.load_state_dict(state)
    for module in (rgb, gray):
        trainer = _trainer(
            tmp_path,
            max_steps=3,
            logger=False,
            precision="64-true",
            enable_checkpointing=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, _gray_loader())
    got, want = gray.state_dict(), rgb.state_dict()
    torch.testing.assert_close(
        got.pop("net.trunk.conv1.weight"),
        want.pop("net.trunk.conv1.weight").sum(1, keepdim=True),
        rtol=0,
        atol=1e-9,
    )
    assert not torch.equal(gray.net.trunk.conv1.weight, state["net.trunk.conv1.weight"])
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-9, msg=key)


def test_gray_stem_has_its_own_parameter_group():
    module = DACLModule(image_size=32, in_chans=1)
    groups = module.configure_optimizers()["optimizer"].param_groups
    stem = [g for g in groups if any(p is module.net.trunk.conv1.weight for p in g["params"])]
    assert len(stem) == 1 and len(stem[0]["params"]) == 1
    assert stem[0]["lr"] == 3 * 0.01 and stem[0]["weight_decay"] == 5e-4 / 3
    assert stem[0]["momentum"] == 0.9


def test_fit_logs_train_accuracy_and_best_validation(tmp_path):
    module = DACLModule(image_size=32)
    trainer = _trainer(tmp_path, max_epochs=2, logger=False, enable_checkpointing=False)
    trainer.fit(module, _loader(), _loader(seed=1))
    logged = trainer.callback_metrics
    for key in ("train/acc", "train/balanced_acc", "val/acc_best", "val/balanced_acc_best"):
        assert key in logged, key
    assert 0 <= logged["train/acc"] <= 1
    assert logged["val/acc_best"] >= logged["val/acc"]
    assert module.val_best["acc"].compute() == logged["val/acc_best"]


class _BestAtSanityEnd(pl.Callback):
    """How often the best-so-far scores were updated when the sanity check ended."""

    def on_sanity_check_end(self, trainer, pl_module):
        self.updates = {k: m.update_count for k, m in pl_module.val_best.items()}


def test_the_sanity_check_does_not_count_in_the_best_validation_scores(tmp_path):
    module, seen = DACLModule(image_size=32), _BestAtSanityEnd()
    trainer = _trainer(
        tmp_path, max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[seen]
    )
    trainer.fit(module, _loader(), _loader(seed=1))
    assert seen.updates == {"acc": 0, "balanced_acc": 0}
    assert module.val_best["acc"].update_count == 1
    assert module.val_best["acc"].compute() == trainer.callback_metrics["val/acc"]


@pytest.mark.parametrize("targets", ["labels", "soft", "any"])
def test_l_ce_is_float32_under_bf16_autocast(targets):
    """The logits are widened before L_CE: autocast keeps cross_entropy in float32 by itself,
    but not the log-softmax of the multi-target loss."""
    torch.manual_seed(0)
    module = DACLModule(image_size=32, target_loss="soft" if targets == "soft" else "any")
    labels = torch.arange(4)
    soft = [] if targets == "labels" else [torch.softmax(torch.randn(4, 7), -1)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, logits, _ = module._losses((torch.randn(4, 3, 32, 32), labels, *soft))
    assert logits.dtype == torch.bfloat16
    assert losses["loss_ce"].dtype == losses["loss"].dtype == torch.float32


def test_cosine_schedule_anneals_per_step_to_zero(tmp_path):
    module = DACLModule(image_size=32, lr=0.02, lr_schedule="cosine")
    trainer = _trainer(tmp_path, max_epochs=2, logger=False, enable_checkpointing=False)
    trainer.fit(module, _loader(n=32), _loader(seed=1))
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step"
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert config.scheduler.T_max == 8  # 2 epochs x 4 batches
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_unknown_schedule_is_one_clear_error():
    with pytest.raises(
        DACLError, match=r"model\.lr_schedule must be one of step, cosine, got .linear."
    ):
        DACLModule(lr_schedule="linear")


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ({"lam": -0.01}, r"model\.lam must be ≥ 0, got -0\.01"),
        ({"alpha": 1.5}, r"model\.alpha must be in 0\.\.1, got 1\.5"),
        ({"alpha": -0.1}, r"model\.alpha must be in 0\.\.1, got -0\.1"),
        ({"lr": 0.0}, r"model\.lr must be positive, got 0\.0"),
        ({"momentum": 1.0}, r"model\.momentum must be in 0\.\.1, below 1, got 1\.0"),
        ({"weight_decay": -1e-4}, r"model\.weight_decay must be ≥ 0"),
        ({"lr_step": 0}, r"model\.lr_step must be at least 1, got 0"),
        ({"lr_gamma": 0.0}, r"model\.lr_gamma must be positive"),
        ({"class_names": ["a"]}, r"model\.class_names must be 2 or more distinct names"),
        (
            {"class_names": ["a", "b", "a"]},
            r"class_names must be 2 or more distinct.*'a', 'b', 'a'",
        ),
        ({"trunk": "resnet50"}, r"^trunk must be one of resnet18, compact, got 'resnet50'"),
        ({"image_size": 0}, r"^image_size must be at least 1 pixel, got 0"),
    ],
)
def test_options_outside_their_ranges_are_one_clear_error(option, error):
    """Each would otherwise fail mid-fit (torch's SGD), build a wrong model, or train on."""
    with pytest.raises(DACLError, match=error):
        DACLModule(**option)


def test_the_ends_of_the_ranges_are_allowed():
    DACLModule(lam=0.0, alpha=1.0, momentum=0.0, weight_decay=0.0, class_names=("a", "b"))


def test_a_bf16_step_on_the_cpu_keeps_the_loss_finite_and_the_centers_float32(synthetic_dataset):
    data = FER2013DataModule(str(synthetic_dataset("folders")), crop=32, resize=36, batch_size=16)
    torch.manual_seed(0)
    module = DACLModule(image_size=32, in_chans=1)
    before = module.center_loss.centers.clone()
    trainer = pl.Trainer(
        accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, data)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert module.center_loss.centers.dtype == torch.float32
    assert not torch.equal(module.center_loss.centers, before)  # they moved, in float32


@pytest.mark.parametrize("hardware", [True, False])
def test_bf16_on_the_cpu_only_with_bf16_hardware(monkeypatch, caplog, hardware):
    from jsonargparse import Namespace

    from dacl import cli

    monkeypatch.setattr(cli, "native_bf16", lambda: hardware)
    trainer = Namespace(precision="bf16-mixed", accelerator="cpu")
    with caplog.at_level(logging.INFO, logger="dacl"):
        cli.cpu_precision(trainer)
    assert trainer.precision == ("bf16-mixed" if hardware else "32-true")
    (line,) = [r.getMessage() for r in caplog.records if "precision" in r.getMessage()]
    assert ("in hardware" if hardware else "no bf16 hardware") in line


def test_dacl_fixed_is_dacl_with_a_constant_half_attention():
    torch.manual_seed(0)
    module = DACLModule(variant="dacl_fixed", image_size=32, in_chans=1)
    assert module.net.encoder is None and module.net.heads is None
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 0, 3, 6])
    _, f, a = module(x)
    assert torch.equal(a, torch.full_like(f, 0.5))
    # L_SC with a ≡ 0.5 is half the plain center loss on the same features and centers
    losses, _, _ = module._losses((x, y))
    plain = (f - module.center_loss.centers[y]).pow(2).sum() / (2 * 4)
    assert torch.allclose(losses["loss_sc"], 0.5 * plain)
    assert torch.allclose(losses["loss"], losses["loss_ce"] + 0.01 * losses["loss_sc"])


def test_dacl_norm_scales_each_faces_weights_to_mean_half_so_some_rise():
    """method.md §2.5: ã_ij = a_ij · 0.5 / mean_k a_ik. DACL's L_SC lowers every raw weight
    (∂L/∂a_ij ≥ 0); through the normalisation ∂L/∂a_ij = (d / 2S)(g_ij − Σ_k g_ik a_ik / S),
    S = Σ_k a_ik, g = ∂L/∂ã ≥ 0: the weights of the better-fitting dimensions rise."""
    x, y = torch.randn(4, 1, 32, 32), torch.tensor([0, 0, 3, 6])
    grads = {}
    for variant in ("dacl", "dacl_norm"):
        torch.manual_seed(0)
        module = DACLModule(variant=variant, image_size=32, in_chans=1)
        raw: list[torch.Tensor] = []  # the heads' weights before any normalisation
        module.net.heads.register_forward_hook(lambda m, i, out, raw=raw: raw.append(out))
        losses, _, (_, a, _) = module._losses((x, y))
        raw[0].retain_grad()
        losses["loss_sc"].backward()
        grads[variant] = raw[0].grad
    assert torch.allclose(a.mean(-1), torch.full((4,), 0.5))  # dacl_norm's
    assert torch.allclose(a, raw[0] * 0.5 / raw[0].mean(-1, keepdim=True))
    assert (grads["dacl"] >= 0).all()  # every raw weight pushed down
    assert (grads["dacl_norm"] < 0).any() and (grads["dacl_norm"] > 0).any()


def test_a_misspelt_variant_names_the_variants():
    with pytest.raises(DACLError, match=r"dacl, dacl_norm, dacl_fixed, center, softmax.*'dacl_fi"):
        DACLModule(variant="dacl_fixd")


def test_the_model_config_rebuilds_the_module_and_counts_its_weights():
    """One model config (``model_config``) for checkpoints and the shipped JSON: it leaves out
    the fit-only arguments and Lightning's private entries, and ``from_config`` builds the same
    module from it; ``num_params`` is method.md §1.2's gray-stem count."""
    from dacl.module import model_config

    module = DACLModule(image_size=48, in_chans=1, pretrained="imagenet", compile=False, lam=0.05)
    saved = {**module.hparams, "_instantiator": "lightning.pytorch.cli.instantiate_module"}
    config = model_config(saved)
    assert "pretrained" not in config and "compile" not in config and "_instantiator" not in config
    rebuilt = DACLModule.from_config(saved, "test")  # nothing is downloaded: pretrained is None
    assert model_config(rebuilt.hparams) == config and rebuilt.hparams.pretrained is None
    assert rebuilt.num_params() == module.num_params() == 20_460_679
    with pytest.raises(DACLError, match="the config of test names another model"):
        DACLModule.from_config({**config, "depth": 50}, "test")


def test_a_checkpoint_saved_before_later_options_existed_still_loads(tiny_checkpoint, tmp_path):
    """A checkpoint whose hyper-parameters predate ``trunk``, ``distill`` and ``target_loss``
    (and carry the CLI's private entries) loads with those options' defaults."""
    from dacl import Predictor

    path, *_ = tiny_checkpoint
    ckpt = torch.load(path, weights_only=True)
    later = ("trunk", "distill", "target_loss")
    ckpt["hyper_parameters"] = {
        **{k: v for k, v in ckpt["hyper_parameters"].items() if k not in later},
        "_class_path": "dacl.module.DACLModule",
    }
    torch.save(ckpt, tmp_path / "old.ckpt")
    faces = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    old = Predictor.from_checkpoint(tmp_path / "old.ckpt").predict_faces(faces).probs
    assert torch.equal(old, Predictor.from_checkpoint(path).predict_faces(faces).probs)


def test_a_file_that_is_not_a_dacl_checkpoint_is_one_line(tmp_path):
    from dacl.checkpoint import read_dacl_checkpoint

    torch.save(DACLModule(image_size=32).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(DACLError, match=r"checkpoint '.*bare.pt' is not a dacl checkpoint"):
        read_dacl_checkpoint(tmp_path / "bare.pt")
