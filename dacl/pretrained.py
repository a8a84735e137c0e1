"""Trained models as a weights + config pair, and the one shipped inside the package.

A pair is ``NAME.safetensors`` — the network's weights and the class centers, fp16, in the
safetensors format (no pickle: loading it runs no code) — and ``NAME.json`` beside it: the
architecture arguments, class names, face format and statistics, the evaluation transform and
test-time augmentation, the weights' SHA-256, and how the model was trained and measured.

    dacl predict face.png                           # the shipped model
    Predictor.from_pretrained()                     # the same, in Python
    dacl validate --config experiments/cpu_long.yaml --ckpt_path pretrained --data.root DIR

:func:`save` writes a pair from a ``dacl fit`` checkpoint; :func:`load` reads one back, checking
the SHA-256; :func:`as_checkpoint` turns one into a Lightning checkpoint, so that ``dacl
validate|test|report`` measure the shipped model as they measure a run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from dacl.checkpoint import read_dacl_checkpoint
from dacl.data.augment import TTA_VIEWS
from dacl.errors import DACLError
from dacl.module import DACLModule, model_config
from dacl.outputs import replacing
from dacl.paths import cache_dir

#: The folder of the models shipped with the package (package data), and the default one.
WEIGHTS = Path(__file__).with_name("weights")
SHIPPED = WEIGHTS / "dacl_fer2013.json"
#: The models shipped inside the package, by the short names ``--model`` takes.
SHIPPED_MODELS = {"default": "dacl_fer2013", "small": "dacl_fer2013_small"}
#: What a pair's config must hold (:func:`save` writes it), and the face format in its data.
REQUIRED = {"name": str, "weights": str, "sha256": str, "model": dict, "data": dict}
DATA = ("channels", "cache_size", "mean", "std", "crop", "resize")
#: The module state a pair keeps: the network and the class centers (no optimizer, no metrics).
KEPT = ("net.", "center_loss.")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(ckpt_path: str | Path, out: str | Path, **info: Any) -> dict[str, Any]:
    """Write the pair ``out`` (``.json``) + ``out.safetensors`` from a ``dacl fit`` checkpoint;
    ``info`` (e.g. ``trained``, ``metrics``, ``tta``) goes into the config as given.
    Returns the config."""
    ckpt = read_dacl_checkpoint(ckpt_path)
    out = Path(out).with_suffix(".json")
    weights = out.with_suffix(".safetensors")
    state = {
        k: v.half() if v.is_floating_point() else v
        for k, v in ckpt.state_dict.items()
        if k.startswith(KEPT)
    }
    blob = safetensors_bytes({k: v.contiguous() for k, v in state.items()})
    config = {
        "name": out.stem,
        "weights": weights.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "model": model_config(ckpt.model),
        "data": {k: ckpt.data[k] for k in DATA},
        "tta": "none",
        **info,
    }
    text = json.dumps(config, indent=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The pair is replaced as one: both files are written beside their targets, then renamed
    # into place together; a failure before that leaves the previous pair as it was.
    with (
        replacing(weights, "weights file", binary=True) as new_weights,
        replacing(out, "weights config") as new_config,
    ):
        new_weights.file.write(blob)
        new_config.file.write(text + "\n")
    return json.loads(text)


def shipped_names() -> list[str]:
    """The short and full names of the models this install ships."""
    present = {k: v for k, v in SHIPPED_MODELS.items() if (WEIGHTS / f"{v}.json").is_file()}
    return [*present, *present.values()]


def locate(model: str | Path | None) -> Path:
    """The config file of a pair: a shipped model by name (``default``, ``small`` or its full
    name), a pair's ``.json`` or ``.safetensors``, or, for ``None``, the default model."""
    if model is None:
        return SHIPPED
    if Path(model).suffix in (".json", ".safetensors"):
        return Path(model).with_suffix(".json")
    if str(model) not in shipped_names():
        raise DACLError(
            f"model '{model}' is not one shipped with dacl (shipped: "
            f"{', '.join(shipped_names())}), nor a NAME.json weights pair"
        )
    return WEIGHTS / f"{SHIPPED_MODELS.get(str(model), str(model))}.json"


def read_config(path: str | Path | None = None) -> dict[str, Any]:
    """The config of the pair at ``path`` (its ``.json`` or ``.safetensors``, or a shipped
    model's name; default: the shipped default model)."""
    path = locate(path)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DACLError(
            f"model config '{path}' not found (a pair is NAME.json + NAME.safetensors)"
        ) from None
    except (OSError, ValueError) as err:
        raise DACLError(f"model config '{path}' is not readable JSON ({err})") from None
    wrong = _wrong_entries(config)
    if wrong:
        raise DACLError(
            f"model config '{path}' is not a dacl weights config ({wrong}): expected the JSON "
            f"object dacl.pretrained.save writes, with {', '.join(REQUIRED)}"
        )
    return config


def _wrong_entries(config: Any) -> str:
    """What a config lacks or holds in the wrong type, as words; empty when it is whole."""
    if not isinstance(config, dict):
        return f"{json.dumps(config)[:40]} is not an object"
    wrong = [key for key, kind in REQUIRED.items() if not isinstance(config.get(key), kind)]
    if isinstance(config.get("data"), dict):
        wrong += [f"data.{key}" for key in DATA if key not in config["data"]]
    return f"no valid {', '.join(wrong)}" if wrong else ""


def scores(config: dict[str, Any], tta: str) -> str:
    """A config's validation accuracy with the test-time views ``tta`` (``metrics.val``, or
    ``metrics.val_tta_flip``...), and which views those are."""
    val = config.get("metrics", {}).get("val" if tta == "none" else f"val_tta_{tta}", {})
    names = {"acc": "accuracy", "balanced_acc": "balanced accuracy"}
    measured = ", ".join(f"val {names[k]} {val[k]:.3f}" for k in names if k in val)
    views = f"{len(TTA_VIEWS[tta])} view{'' if tta == 'none' else 's'}"
    return f"{measured or 'accuracy not measured'} ({views}, tta {tta})"


def load(path: str | Path | None = None) -> tuple[DACLModule, dict[str, Any]]:
    """The model of a pair (default: the shipped one) in float32, and its config. The weights'
    SHA-256 must match the config's."""
    config = read_config(path)
    folder = locate(path).parent
    weights = folder / config["weights"]
    if not weights.is_file():
        raise DACLError(f"weights '{weights}' not found beside its config")
    if sha256(weights) != config["sha256"]:
        raise DACLError(f"weights '{weights}' do not match the SHA-256 in their config")
    try:
        state = load_file(str(weights))
    except SafetensorError as err:
        raise DACLError(f"weights '{weights}' are not a safetensors file ({err})") from None
    module = DACLModule.from_config(config["model"], f"'{weights}'")
    own = module.state_dict()
    missing = sorted(k for k in own if k.startswith(KEPT) and k not in state)
    if missing or set(state) - set(own):
        raise DACLError(f"weights '{weights}' do not fit the model of their config")
    module.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in state.items()}})
    return module.eval(), config


def as_checkpoint(path: str | Path | None = None) -> Path:
    """A Lightning checkpoint of a pair (default: the shipped one), written once into dacl's
    cache folder under the weights' SHA-256, for ``--ckpt_path pretrained``."""
    config = read_config(path)
    cache = cache_dir()
    target = cache / f"pretrained-{config['sha256'][:16]}.ckpt"
    if not target.is_file():  # built once from the checked weights, named by their SHA-256
        module, config = load(path)
        cache.mkdir(parents=True, exist_ok=True)
        checkpoint = {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "datamodule_hyper_parameters": config["data"],
            "pytorch-lightning_version": pl.__version__,
            "epoch": 0,
            "global_step": 0,
        }
        partial = target.with_suffix(".part")
        torch.save(checkpoint, partial)
        partial.replace(target)
    return target
