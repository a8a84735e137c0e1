"""Every experiment config resolves through the CLI and states the method.md §4 recipe."""

import itertools
import re
import shlex
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
def test_experiment_resolves_to_spec_recipe(name, monkeypatch):
    from dacl import cli

    # the recipe as written: on a CPU without bf16 hardware the CLI trains in fp32 instead
    # (tests/test_module.py checks that switch)
    monkeypatch.setattr(cli, "native_bf16", lambda: True)
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
    assert model["in_chans"] == 1 and "pipeline" not in data  # gray stem, batched path
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
        ("cpu_fixed", "dacl_fixed", 8),
        ("cpu_norm", "dacl_norm", 8),
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


# What each experiment resolves to beyond the shipped defaults (configs/default.yaml and the
# classes' own) and its logger's name (the file's stem), as before the files were composed: a
# composed file must resolve to exactly this.
MSCELEB = "data/weights/resnet18_msceleb.pth"
ON_CPU = {
    "trainer.accelerator": "cpu",
    "trainer.precision": "32-true",
    "trainer.log_every_n_steps": 50,
}
CPU = {
    **ON_CPU,
    "trainer.max_epochs": 8,
    "trainer.max_time": "00:01:00:00",
    "model.lr": 0.03,
    "model.lr_schedule": "cosine",
    "data.crop": 44,
    "data.resize": 48,
}
CPU_LONG = {
    **CPU, "trainer.precision": "bf16-mixed", "trainer.max_epochs": 50,
    "trainer.max_time": "00:02:30:00", "data.crop": 64, "data.resize": 72, "data.erasing": 0.5,
}  # fmt: skip
CPU_ABLATION = {**CPU, "trainer.max_epochs": 2, "trainer.max_time": None}
CPU48 = {
    **ON_CPU,
    "trainer.max_epochs": 1,
    "data.crop": 48,
    "data.resize": 56,
    "data.batch_size": 32,
}
PAPER = {"trainer.max_epochs": 60, "data.crop": 224, "data.batch_size": 128}
RAFDB = {**PAPER, "model.in_chans": 3, "model.pretrained": MSCELEB, "data.dataset": "rafdb"}
PINNED = {
    "cpu": CPU,
    "cpu_center": {**CPU, "model.variant": "center"},
    "cpu_softmax": {**CPU, "model.variant": "softmax"},
    "cpu_fixed": {**CPU, "model.variant": "dacl_fixed"},
    "cpu_norm": {**CPU, "model.variant": "dacl_norm"},
    "cpu_long": CPU_LONG,
    "cpu_long_center": {**CPU_LONG, "model.variant": "center"},
    "cpu_long_softmax": {**CPU_LONG, "model.variant": "softmax"},
    "cpu_ablation": CPU_ABLATION,
    "cpu_ablation_center": {**CPU_ABLATION, "model.variant": "center"},
    "cpu_ablation_softmax": {**CPU_ABLATION, "model.variant": "softmax"},
    "cpu48": CPU48,
    "demo": {
        **CPU48, "trainer.max_epochs": 8, "trainer.log_every_n_steps": 10, "model.lr_step": 6,
        "data.root": "data/synthetic", "data.synthetic": True, "data.batch_size": 64,
    },
    "exp0": PAPER,
    "exp1": {"data.batch_size": 128},
    "exp2": {"data.crop": 224},
    "exp3": {},
    "exp3_center": {"model.variant": "center"},
    "exp3_softmax": {"model.variant": "softmax"},
    "exp3_step5": {"model.lr_step": 5, "model.lr_gamma": 0.2},
    "exp4": {"model.pretrained": MSCELEB},
    "ferplus": {"data.dataset": "ferplus", "data.root": "data/ferplus"},
    "rafdb": {**RAFDB, "data.root": "data/rafdb/basic"},
    "affectnet7": {**RAFDB, "data.dataset": "affectnet", "data.root": "data/affectnet"},
}  # fmt: skip


class _Parsed(Exception):
    """Raised with the parsed config where the CLI would start configuring objects."""


def parsed(monkeypatch, args: list[str]) -> dict:
    """The config a ``dacl`` command parses to (``args``: a subcommand and its options, or just
    options), flattened to dotted keys, before anything is built or a checkpoint resolved."""
    from dacl import cli

    def stop(self):
        tree = yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_validation=True))
        raise _Parsed(tree[self.subcommand] if self.subcommand else tree)

    monkeypatch.setattr(cli.DACLCLI, "before_instantiate_classes", stop)
    monkeypatch.setattr(cli, "resolve_checkpoint", lambda path, root: None)
    with pytest.raises(_Parsed) as stopped:
        cli.build_cli(args, run=bool(args) and not args[0].startswith("-"))
    return _flat(stopped.value.args[0])


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if key == "config":  # the files read, not a setting
            continue
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", sorted(PINNED))
def test_experiment_resolves_to_exactly_its_pinned_values(monkeypatch, name):
    defaults = parsed(monkeypatch, [])
    config = parsed(monkeypatch, ["--config", str(REPO / "experiments" / f"{name}.yaml")])
    assert config == {**defaults, **PINNED[name], "trainer.logger.init_args.name": name}


def test_a_file_that_includes_another_states_its_changes_as_dotted_keys():
    """After ``config:``, a nested section (``model:`` then ``  variant: x``) would replace the
    included file's whole section, not merge into it: jsonargparse applies the keys that follow
    an included file as they are. A dotted key (``model.variant: x``) changes that key alone."""
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        tree = yaml.safe_load(path.read_text())
        if "config" in tree:
            # a dotted key may hold a mapping: the value of one option (model.distill)
            nested = [k for k, v in tree.items() if isinstance(v, dict) and "." not in k]
            assert not nested, f"{path.name}: write {nested} as dotted keys"
            assert (path.parent / tree["config"]).is_file(), path.name


def documented_commands() -> list[list[str]]:
    """Every ``dacl`` training-side command in README.md, docs/ and the experiments' headers:
    fenced, indented and inline code and ``#   dacl ...`` comment lines, continuation lines
    joined."""
    texts = [p.read_text() for p in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))]
    blocks = [b for t in texts for b in re.findall(r"```[a-z]*\n(.*?)```", t, flags=re.S)]
    indented = [b for t in texts for b in re.findall(r"(?:^|\n\n)((?: {4}[^\n]*\n?)+)", t)]
    blocks += [re.sub(r"^ {4}", "", b, flags=re.M) for b in indented]
    inline = [c for t in texts for c in re.findall(r"(?<!`)`((?:\.venv/bin/)?dacl [^`]+)`", t)]
    blocks += [" ".join(c.split()) for c in inline]  # a span may wrap
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        header = re.findall(r"^#   ?(.*)$", path.read_text(), flags=re.M)
        blocks.append("\n".join(header))
    commands = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("#")[0].strip()
            words = shlex.split(line) if re.match(r"(\.venv/bin/)?dacl \w", line) else []
            template = any(c in line for c in "…|[")  # prose: `--data.tta none|flip|crops`
            if words and words[1] in SUBCOMMANDS and _names_a_config(words) and not template:
                commands.append(words[1:])
    return commands


def _names_a_config(words: list[str]) -> bool:
    """Whether a command names an experiment file (not a fragment such as ``dacl report``)."""
    flag = "--configs" if words[1] == "ablate" else "--config"
    return flag in words[:-1] and (REPO / words[words.index(flag) + 1]).is_file()


SUBCOMMANDS = ("fit", "validate", "test", "report", "predict_split", "ablate")


def test_every_documented_command_parses(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # the commands name experiments/ from the repository's root
    commands = documented_commands()
    assert len(commands) > 20 and {c[0] for c in commands} <= set(SUBCOMMANDS)
    outputs = ["--trainer.default_root_dir", str(tmp_path)]  # nothing written under the repo
    for command in commands:
        if command[0] != "ablate":
            assert parsed(monkeypatch, [*command, *outputs])["trainer.max_epochs"] > 0, command
            continue
        at = command.index("--configs") + 1
        configs = list(itertools.takewhile(lambda w: not w.startswith("--"), command[at:]))
        rest = command[at + len(configs) :]  # ablate's own options, and --data.* passed on
        flags = {i for i, w in enumerate(rest) if w.startswith("--data.")}
        data = [w for i, w in enumerate(rest) if i in flags or i - 1 in flags]
        for config in configs:  # ablate runs `dacl fit --config C` for each
            args = ["fit", "--config", config, *data, *outputs]
            assert parsed(monkeypatch, args)["trainer.max_epochs"] > 0, config


def test_the_best_checkpoint_is_chosen_by_the_selection_metric():
    """configs/default.yaml's best checkpoint and the ablation's "best" epoch share one measure."""
    from dacl.classes import SELECTION_METRIC
    from dacl.defaults import default_config

    callbacks = yaml.safe_load(default_config().read_text())["trainer"]["callbacks"]
    monitors = [c["init_args"]["monitor"] for c in callbacks if "monitor" in c.get("init_args", {})]
    assert monitors == [SELECTION_METRIC]
