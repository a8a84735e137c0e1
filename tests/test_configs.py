"""Every experiment config resolves through the CLI and states the method.md §4 recipe."""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# name: (crop, batch, epochs, lr_step, lr_gamma, variant) — method.md §4
RECIPES = {
    "exp0": (224, 128, 60, 20, 0.1, "dacl"),
    "exp1": (200, 128, 30, 20, 0.1, "dacl"),
    "exp2": (224, 64, 30, 20, 0.1, "dacl"),
    "exp3": (200, 64, 30, 20, 0.1, "dacl"),
    "exp3_step5": (200, 64, 30, 5, 0.2, "dacl"),
    "exp4": (200, 64, 30, 20, 0.1, "dacl"),
    "exp3_softmax": (200, 64, 30, 20, 0.1, "softmax"),
    "exp3_center": (200, 64, 30, 20, 0.1, "center"),
}


def print_config(config: Path) -> dict:
    """What ``dacl fit --config CONFIG --print_config`` prints, parsed in-process."""
    from dacl.cli import build_cli

    cli = build_cli(["--config", str(config)], run=False)
    return yaml.safe_load(cli.parser.dump(cli.config, skip_none=False, skip_check=True))


def test_every_experiment_file_is_covered():
    on_disk = {p.stem for p in (REPO / "experiments").glob("*.yaml")}
    assert set(RECIPES) <= on_disk


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_experiment_resolves_to_spec_recipe(name):
    cfg = print_config(REPO / "experiments" / f"{name}.yaml")
    crop, batch, epochs, step, gamma, variant = RECIPES[name]
    model, data, trainer = cfg["model"], cfg["data"], cfg["trainer"]
    assert data["crop"] == crop
    assert data["batch_size"] == batch and data["resize"] == 256
    assert trainer["max_epochs"] == epochs
    assert (model["lr_step"], model["lr_gamma"]) == (step, gamma)
    assert model["variant"] == variant
    assert (model["lr"], model["momentum"], model["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert (model["lam"], model["alpha"]) == (0.01, 0.5)
    assert trainer["precision"] == "bf16-mixed"
    assert model["in_chans"] == 1 and data["pipeline"] == "fast"  # the fast path
    assert trainer["logger"]["init_args"]["name"] == name
    assert trainer["logger"]["init_args"]["save_dir"] == "lightning_logs"
    assert model["pretrained"] == ("data/weights/resnet18_msceleb.pth" if name == "exp4" else None)


@pytest.mark.parametrize(("name", "crop"), [("exp0", 224), ("exp3", 200)])
def test_model_image_size_follows_data_crop(name, crop):
    from dacl.cli import build_cli

    cli = build_cli(["--config", str(REPO / "experiments" / f"{name}.yaml")], run=False)
    assert cli.model.hparams.image_size == cli.datamodule.hparams.crop == crop
    assert cli.model.net.encoder[0].in_features == 512 * 7 * 7


@pytest.mark.parametrize("name", ["demo", "cpu48"])
def test_cpu_configs_resolve_to_a_32_bit_cpu_run_at_48px(name):
    cfg = print_config(REPO / "experiments" / f"{name}.yaml")
    assert cfg["trainer"]["accelerator"] == "cpu" and cfg["trainer"]["precision"] == "32-true"
    assert (cfg["data"]["crop"], cfg["data"]["resize"]) == (48, 56)
    assert cfg["model"]["variant"] == "dacl" and cfg["model"]["lam"] == 0.01
    assert cfg["data"]["synthetic"] is (name == "demo")


@pytest.mark.parametrize(
    ("name", "variant", "epochs"),
    [
        ("cpu", "dacl", 8),
        ("cpu_center", "center", 8),
        ("cpu_softmax", "softmax", 8),
        ("cpu_ablation", "dacl", 2),
        ("cpu_ablation_center", "center", 2),
        ("cpu_ablation_softmax", "softmax", 2),
    ],
)
def test_cpu_recipes_differ_from_each_other_only_where_stated(name, variant, epochs):
    cfg = print_config(REPO / "experiments" / f"{name}.yaml")
    model, data, trainer = cfg["model"], cfg["data"], cfg["trainer"]
    assert trainer["accelerator"] == "cpu" and trainer["precision"] == "32-true"
    assert trainer["max_epochs"] == epochs and trainer["logger"]["init_args"]["name"] == name
    assert (data["crop"], data["resize"], data["batch_size"]) == (44, 48, 64)
    assert (model["lr"], model["lr_schedule"], model["variant"]) == (0.03, "cosine", variant)
    # the method stays DACL's: method.md §2 and §4 constants, the paper's trunk
    assert (model["lam"], model["alpha"], model["momentum"]) == (0.01, 0.5, 0.9)
    assert model["weight_decay"] == 5e-4 and model["small_input"] is False


@pytest.mark.parametrize(
    ("name", "dataset", "crop", "batch", "in_chans"),
    [("rafdb", "rafdb", 224, 128, 3), ("affectnet7", "affectnet", 224, 128, 3),
     ("ferplus", "ferplus", 200, 64, 1)],
)  # fmt: skip
def test_dataset_recipes_resolve(name, dataset, crop, batch, in_chans):
    cfg = print_config(REPO / "experiments" / f"{name}.yaml")
    model, data = cfg["model"], cfg["data"]
    assert data["dataset"] == dataset and (data["crop"], data["batch_size"]) == (crop, batch)
    assert model["in_chans"] == in_chans and model["variant"] == "dacl"
    assert (model["lr"], model["lam"], model["alpha"]) == (0.01, 0.01, 0.5)
    msceleb = "data/weights/resnet18_msceleb.pth"
    assert model["pretrained"] == (msceleb if dataset != "ferplus" else None)
