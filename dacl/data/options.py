"""The data module's grouped options: what a dataset's labels are (:class:`LabelOptions`) and
how its faces are decoded, normalised and cached (:class:`FaceOptions`), apart from how batches
are drawn and augmented (the flat options of :class:`~dacl.data.datamodule.FER2013DataModule`).

On the command line and in configs they are nested: ``--data.labels.label_mode crossentropy``,
``data: {faces: {channels: 3}}``. Checkpoints keep saving the options flat, as before the
grouping (:func:`flat`), so old and new checkpoints are read the same way. Options renamed or
retired since are one line (:func:`retired_option`), never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentError, ArgumentParser

from dacl.data.augment import TTA_VIEWS
from dacl.data.datasets import DATASETS, LabelMode
from dacl.errors import DACLError


@dataclass(frozen=True)
class LabelOptions:
    """What a dataset's labels are and how its splits are made.

    Args:
        num_classes: AffectNet with 7 classes (contempt left out) or 8.
        class_map: ``folders``: class folder name → class name (the outputs, in order of first
            appearance); default: the folder names of ``train/``, sorted.
        classes: the output classes labels are mapped to by name, e.g. a checkpoint's when it
            is evaluated on another dataset (images of a class not among them are left out,
            and said); default: the dataset's own.
        label_mode: FER+'s labels: ``majority`` (hard), ``crossentropy`` (the vote
            distribution as soft targets), ``probability`` (a label drawn from it per sample
            and batch) or ``multi_target`` (every emotion with 30 % of the votes a target; the
            CLI sets ``model.target_loss`` to match); the centers and the measures use the
            distribution's top class.
        val_fraction: where a dataset has no validation split (RAF-DB, AffectNet), the fraction
            of each training class carved out as one.
        split_seed: the seed of that carving (fixed, so every run validates on the same faces).
        balanced: draw training samples class-balanced (with replacement), not shuffled.
    """

    num_classes: Literal[7, 8] = 7
    class_map: dict[str, str] | None = None
    classes: list[str] | None = None
    label_mode: LabelMode = "majority"
    val_fraction: float = 0.1
    split_seed: int = 0
    balanced: bool = False


@dataclass(frozen=True)
class FaceOptions:
    """How a dataset's faces are read: decoded (once, then cached) and normalised.

    Args:
        channels: decode gray (1) or RGB (3); default: the dataset's (FER2013 and FER+ gray).
        cache_size: side the faces are decoded (and cached) at; default: the dataset's own
            (FER2013 48, RAF-DB 100, AffectNet 128, folders 112).
        mean, std: per-channel normalisation of pixel / 255; default: FER2013's (method.md §3)
            for the gray datasets, ImageNet's for the RGB ones.
        cache_dir: where decoded splits are cached; default ``~/.cache/dacl``
            (:func:`dacl.paths.cache_dir`): the dataset folder is never written to.
        strict: make unreadable or truncated image files an error instead of a warning.
        synthetic_size: with ``data.synthetic``, the synthetic training faces written; val and
            test get a fifth of this each.
    """

    channels: Literal[1, 3] | None = None
    cache_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    cache_dir: str | Path | None = None
    strict: bool = False
    synthetic_size: int = 3000


#: The defaults of the data module's ``labels`` and ``faces``.
DEFAULT_LABELS, DEFAULT_FACES = LabelOptions(), FaceOptions()

#: The groups, and each grouped option's group: ``label_mode`` → ``labels``.
GROUPS = {"labels": LabelOptions, "faces": FaceOptions}
GROUP_OF = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}

#: Options that no longer exist, and what to do instead.
RETIRED = {
    "pipeline": "batches are always decoded once and augmented on their device; delete it",
    "num_workers": "batches are served from memory in the main process; delete it",
}


def path(name: str) -> str:
    """Where a data option lives in the config: ``labels.label_mode`` for ``label_mode``."""
    return f"{GROUP_OF[name]}.{name}" if name in GROUP_OF else name


def flat(labels: LabelOptions, faces: FaceOptions, **options: Any) -> dict[str, Any]:
    """All data options in one flat dict, as checkpoints save them (plain values only: a
    checkpoint must load with ``weights_only=True``)."""
    return {**options, **asdict(labels), **asdict(faces)}


def retired_option(key: str) -> str | None:
    """The one line for a data option renamed or retired (``key`` as ``data.pipeline``), else
    ``None``."""
    name = key.removeprefix("data.")
    if name in RETIRED:
        return f"data.{name} is no longer an option: {RETIRED[name]}"
    if name in GROUP_OF:
        return f"data.{name} is now data.{path(name)}: move it under data.{GROUP_OF[name]}"
    return None


def grouped(given: Mapping[str, Any]) -> dict[str, Any]:
    """Data module keyword arguments from plain options (``dacl ensemble --data.*``): the
    ``labels`` and ``faces`` dicts as their classes; an option renamed or retired is one line."""
    kwargs = dict(given)
    for key in kwargs:
        if line := retired_option(f"data.{key}"):
            raise DACLError(line)
    for group, cls in GROUPS.items():
        if isinstance(kwargs.get(group), Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(kwargs[group]) - known)
            if unknown:
                raise DACLError(
                    f"data.{group} has no option {', '.join(unknown)}; its options: "
                    f"{', '.join(sorted(known))}"
                )
            parser = ArgumentParser(exit_on_error=False)
            parser.add_class_arguments(cls)
            try:  # typed as the command line types them: '8' → 8
                values = parser.parse_object(kwargs[group]).as_dict()
            except ArgumentError as err:  # 'Parser key "x":' + the reason, in one line
                reason = " ".join(line.strip() for line in str(err).splitlines()[:2])
                raise DACLError(f"data.{group}: {reason}") from None
            kwargs[group] = cls(**values)
    return kwargs


def check(
    *, crop: int, resize: int, erasing: float, tta: str, teacher: str | None,
    batch_size: int, dataset: str, labels: LabelOptions, faces: FaceOptions,
) -> None:  # fmt: skip
    """One-line errors for data options out of range or that do not go together."""
    if not 0 < crop <= resize:
        raise DACLError(f"data.crop must be in 1..data.resize ({resize}), got {crop}")
    if not 0.0 <= erasing <= 1.0:
        raise DACLError(f"data.erasing must be a probability in 0..1, got {erasing}")
    if tta not in TTA_VIEWS:
        raise DACLError(f"data.tta must be one of {', '.join(TTA_VIEWS)}, got '{tta}'")
    if teacher is not None and labels.label_mode != "majority":
        raise DACLError(
            f"data.teacher needs hard labels (data.labels.label_mode majority), got "
            f"{labels.label_mode}"
        )
    if batch_size < 1:
        raise DACLError(f"data.batch_size must be positive, got {batch_size}")
    if dataset not in ("auto", *DATASETS):
        raise DACLError(f"data.dataset must be auto or one of {', '.join(DATASETS)}")
    mean, std = faces.mean, faces.std
    if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
        raise DACLError("data.faces.mean and data.faces.std go together, one value per channel")
