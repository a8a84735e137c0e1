"""FER2013DataModule: FER2013 in any method.md §3 layout, or FER+, RAF-DB, AffectNet or a
class-folder tree (:mod:`dacl.data.datasets`) → train/val/test loaders with method.md §3 transforms.

Each split is decoded once into a uint8 (N, C, S, S) tensor (FER2013: gray 48), cached on disk
(:mod:`dacl.data.cache`); loaders hand out uint8 batches from memory and
:meth:`FER2013DataModule.on_after_batch_transfer` resizes, crops, flips and normalises the whole
batch on its device (:mod:`dacl.data.augment`). No per-image Python work. What a dataset is
(its labels, its faces' format) is grouped in :mod:`dacl.data.options`; how training batches are
drawn is :mod:`dacl.data.sampler`, and where a resumed run continues :mod:`dacl.data.resume`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dacl import paths
from dacl.classes import Stats
from dacl.data import options
from dacl.data.augment import Tta, erase, eval_augment, train_augment
from dacl.data.cache import load_or_build
from dacl.data.datasets import (
    FORMATS,
    DatasetName,
    Format,
    declared_classes,
    find_dataset,
    resolve,
    subset,
)
from dacl.data.layouts import Layout, SplitIndex
from dacl.data.options import DEFAULT_FACES, DEFAULT_LABELS, FaceOptions, LabelOptions
from dacl.data.resume import Position
from dacl.data.sampler import EpochSampler
from dacl.data.sanity import SplitStats, compare_splits, split_stats
from dacl.data.soft_targets import SoftTargets
from dacl.data.synthetic import ensure_synthetic
from dacl.errors import DACLError

log = logging.getLogger("dacl.data")

#: The splits each Lightning stage reads ("predict" takes test, else val).
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}

_KIND_TEXT = {
    "folders": "train/val/test folders",
    "train_test": "train/ + test/ download, test/ split by PublicTest_ (val) / PrivateTest_ (test)",
    "csv": "fer2013.csv",
}


class _Batches(Dataset):
    """In-memory uint8 images + labels (+ soft targets, FER+'s distribution modes), fetched a
    whole batch per call (``__getitems__``)."""

    def __init__(self, images: Tensor, labels: Tensor, targets: Tensor | None = None) -> None:
        # images (N, C, S, S): the augment functions' input
        self.tensors = [t for t in (images, labels, targets) if t is not None]

    @property
    def images(self) -> Tensor:
        return self.tensors[0]

    @property
    def labels(self) -> Tensor:
        return self.tensors[1]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        return tuple(t[i] for t in self.tensors)

    def to(self, device: torch.device) -> _Batches:
        self.tensors = [t.to(device) for t in self.tensors]
        return self

    def __getitems__(self, idx: list[int]) -> tuple[Tensor, ...]:
        # One gather per batch instead of B indexings + a stack: the loader's whole cost.
        index = torch.as_tensor(idx)
        if self.images.is_cuda:
            # A pageable CPU index would make CUDA indexing wait for the stream to drain.
            index = index.pin_memory().to(self.images.device, non_blocking=True)
        return tuple(t[index] for t in self.tensors)


def _identity(batch):
    return batch


def _format(base: Format, faces: FaceOptions) -> Format:
    """A dataset's :data:`~dacl.data.datasets.FORMATS` entry with the user's overrides."""
    channels = faces.channels or base.channels
    stats: Stats = (tuple(faces.mean), tuple(faces.std)) if faces.mean is not None else base.stats
    if channels == 1 and len(stats[0]) != 1:  # RGB statistics of gray faces: their mean
        stats = ((sum(stats[0]) / 3,), (sum(stats[1]) / 3,))
    return Format(channels, faces.cache_size or base.size, stats)


class FER2013DataModule(pl.LightningDataModule):
    """FER2013 in any method.md §3 layout — or FER+, RAF-DB, AffectNet or a class-folder tree —
    with method.md §3 transforms and per-epoch reshuffling.

    Args:
        root: the dataset: a folder (or a ``fer2013.csv`` path) as :mod:`dacl.data.datasets`
            describes for each dataset.
        dataset: ``auto`` (found from the files at ``root``: FER2013 or RAF-DB's label file)
            or one of fer2013, ferplus, rafdb, affectnet, folders.
        synthetic: create synthetic faces under ``root`` on first use (``dacl.data.synthetic``),
            reused while the sizes and seed stay the same (``faces.synthetic_size``).
        labels: what the labels are and how the splits are made (:class:`~dacl.data.options.
            LabelOptions`: ``num_classes``, ``class_map``, ``classes``, ``label_mode``,
            ``val_fraction``, ``split_seed``, ``balanced``).
        faces: how the faces are decoded, normalised and cached (:class:`~dacl.data.options.
            FaceOptions`: ``channels``, ``cache_size``, ``mean``, ``std``, ``cache_dir``,
            ``strict``, ``synthetic_size``).
        crop: input side after cropping (method.md: 200 or 224; the CLI links ``model.image_size``).
        resize: smaller edge after ``Resize`` (method.md: 256).
        tta: test-time augmentation of evaluation (val, test, predict): ``none`` (the
            paper's single center crop), ``flip`` (and its mirror) or ``crops`` (the five
            crops and their mirrors); the model averages the views' softmax. Training is not
            affected.
        erasing: probability of random erasing of a training face (one rectangle of 2–33 %
            of the crop set to the mean face, after normalising); 0 (the paper's augmentation)
            by default.
        batch_size: samples per batch.
        seed: seeds the training-set shuffling and the augmentation draws; ``None`` (the
            default) follows ``seed_everything``, so runs with different seeds also see
            different orders and crops.
        teacher: a teacher file (``dacl ensemble``) whose probabilities each training batch
            carries as its third entry, for distillation (``model.distill``, method.md §2.6);
            it must cover exactly this dataset's train faces. Hard labels only.
    """

    def __init__(
        self,
        root: str | Path = "data/fer2013",
        dataset: Literal["auto", DatasetName] = "auto",
        synthetic: bool = False,
        labels: LabelOptions = DEFAULT_LABELS,
        faces: FaceOptions = DEFAULT_FACES,
        crop: int = 200,
        resize: int = 256,
        tta: Tta = "none",
        erasing: float = 0.0,
        batch_size: int = 64,
        seed: int | None = None,
        teacher: str | None = None,
    ) -> None:
        super().__init__()
        options.check(
            crop=crop, resize=resize, erasing=erasing, tta=tta, teacher=teacher,
            batch_size=batch_size, dataset=dataset, labels=labels, faces=faces,
        )  # fmt: skip
        # plain strings in checkpoints: a Path would not load with weights_only=True
        root = str(root)
        if faces.cache_dir is not None:
            faces = replace(faces, cache_dir=str(faces.cache_dir))
        self.root, self.crop, self.resize, self.batch_size = root, crop, resize, batch_size
        self.erasing, self.tta, self.seed, self.teacher = erasing, tta, seed, teacher
        self.synthetic, self.label_options, self.face_options = synthetic, labels, faces
        self.classes = tuple(labels.classes) if labels.classes else None
        #: The dataset read: ``data.dataset``, or what ``auto`` finds at ``root`` (decided once).
        self.resolved_dataset = resolve(dataset, root, synthetic)
        #: How faces are decoded (channels, side) and normalised: the dataset's format with
        #: ``faces.channels``, ``faces.cache_size``, ``faces.mean`` and ``faces.std`` applied.
        self.format = fmt = _format(FORMATS[self.resolved_dataset], faces)
        # Saved flat, as before the options were grouped: every checkpoint reads the same. The
        # format as resolved: evaluating the model on another dataset then decodes and
        # normalises faces as it was trained.
        m, sd = fmt.stats
        resolved = replace(
            faces, channels=fmt.channels, cache_size=fmt.size, mean=list(m), std=list(sd)
        )
        hparams = options.flat(
            labels, resolved, root=root, dataset=dataset, crop=crop, resize=resize,
            erasing=erasing, tta=tta, batch_size=batch_size, seed=seed, synthetic=synthetic,
            teacher=teacher,
        )  # fmt: skip
        self.save_hyperparameters(hparams)
        self._init_state()

    def _init_state(self) -> None:
        """What setup fills in, and the resume position."""
        self.layout: Layout | None = None
        self.datasets: dict[str, Dataset] = {}
        self._names: dict[str, list[str]] = {}
        self._faces: dict[str, Tensor] = {}
        self._stats: dict[str, SplitStats] = {}
        #: Where training stands in the data: saved in checkpoints (:mod:`dacl.data.resume`).
        self.position = Position()

    # -- what the rest of dacl reads ------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        """Output names, in order: ``classes`` when given, else the dataset's own."""
        if self.classes is not None:
            return self.classes
        if self.layout is not None:
            return self.layout.classes
        labels = self.label_options
        return declared_classes(
            self.resolved_dataset, self.root, labels.num_classes, labels.class_map
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def names(self, split: str) -> list[str]:
        """Sample names of a set-up split in loader order (unshuffled order for ``train``)."""
        if split not in self._names:
            raise DACLError(f"the '{split}' split is not set up; set up: {', '.join(self._names)}")
        return self._names[split]

    def labels(self, split: str) -> Tensor:
        """Labels of a set-up split in loader order (unshuffled order for ``train``)."""
        self.names(split)  # the same error for a split that is not set up
        return torch.as_tensor(self.datasets[split].labels)

    def has_split(self, split: str) -> bool:
        """Whether the data holds ``split`` (the synthetic set holds all three)."""
        return self.synthetic or split in (self.layout or self._find()).splits

    def faces(self, split: str, indices: Tensor) -> Tensor:
        """The decoded faces ``uint8 (n, C, S, S)`` of a set-up split's samples at ``indices``
        (positions in loader order): what the pictures show beside captions."""
        self.names(split)
        return self._faces[split][indices]

    def inputs(self, split: str, indices: Tensor) -> Tensor:
        """The model inputs of a set-up split's samples at ``indices`` as evaluation sees
        them: the eval transform (single view), on the CPU."""
        self.names(split)
        faces = self._faces[split][indices]
        return eval_augment(faces, self.crop, self.resize, self.format.stats)

    # -- Lightning hooks ------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.synthetic:
            n = self.face_options.synthetic_size
            # The synthetic set itself never depends on the run's seed: one set for all runs.
            ensure_synthetic(self.root, n, n // 5, n // 5, 0)

    def setup(self, stage: str) -> None:
        if self.layout is None:
            self.layout = self._find()
            self._map_classes(self.layout)
            if rank_zero_only.rank == 0:  # one table per run, not one per DDP process
                self._log_layout(self.layout)
        for split in self._needed(stage):
            if split not in self.datasets:
                self.datasets[split] = self._build(split, self.layout.split(split))
        if stage == "fit" and rank_zero_only.rank == 0:
            warning = compare_splits("train", self._stats["train"], "val", self._stats["val"])
            if warning:
                log.warning("%s: %s", self.layout.root, warning)

    def _find(self) -> Layout:
        labels = self.label_options
        return find_dataset(
            self.root,
            self.resolved_dataset,
            num_classes=labels.num_classes,
            class_map=labels.class_map,
            val_fraction=labels.val_fraction,
            split_seed=labels.split_seed,
            fmt=self.format,
            label_mode=labels.label_mode,
        )

    def _map_classes(self, layout: Layout) -> None:
        """Relabel the splits from the dataset's classes to ``classes``, by name."""
        if self.classes is None or self.classes == layout.classes:
            return
        shared = [c for c in layout.classes if c in self.classes]
        if not shared:
            raise DACLError(
                f"{layout.root}: none of its classes ({', '.join(layout.classes)}) is among the "
                f"model's ({', '.join(self.classes)})"
            )
        new_id = torch.tensor(
            [self.classes.index(c) if c in shared else -1 for c in layout.classes]
        )
        for split, index in layout.splits.items():
            labels = new_id[torch.as_tensor(index.labels, dtype=torch.long)]
            unknown = [layout.classes[c] for c in set(index.labels) if new_id[c] < 0]
            if unknown:
                keep = labels >= 0
                layout.notes.append(
                    f"{split}: {int((~keep).sum())} images of {', '.join(sorted(unknown))} left "
                    f"out: no counterpart among the model's classes"
                )
                layout.splits[split] = index = subset(index, keep.numpy(), split)
                labels = labels[keep]
            index.labels = labels.tolist()
            index.targets = None  # evaluated on the model's classes: hard labels only
        absent = [c for c in self.classes if c not in layout.classes]
        layout.notes.append(
            f"labels mapped by name onto the model's {len(self.classes)} classes"
            + (f"; {', '.join(absent)} has no images here" if absent else "")
        )
        layout.classes = self.classes

    def _needed(self, stage: str) -> tuple[str, ...]:
        if stage == "predict":
            assert self.layout is not None
            return ("test",) if "test" in self.layout.splits else ("val",)
        if stage not in STAGE_SPLITS:
            raise DACLError(f"unknown stage '{stage}'; expected fit, validate, test or predict")
        return STAGE_SPLITS[stage]

    def _log_layout(self, layout: Layout) -> None:
        """One table of per-split, per-class counts, so the class imbalance is visible, and
        how the splits were made."""
        width = max(len(c) for c in layout.classes)
        lines = [f"{'split':<6}" + "".join(f"{c:>{width + 1}}" for c in layout.classes)]
        for split, counts in layout.counts().items():
            row = "".join(f"{k:>{width + 1}}" for k in counts)
            lines.append(f"{split:<6}{row}  total {sum(counts)}")
        kind = (
            f" layout '{layout.kind}' ({_KIND_TEXT[layout.kind]})"
            if layout.kind in _KIND_TEXT
            else ""
        )
        log.info(
            "%s%s at %s\n%s", layout.dataset, kind, layout.root, "\n".join([*lines, *layout.notes])
        )

    def _build(self, split: str, index: SplitIndex) -> Dataset:
        # The cached decode (built once per dataset) also says which files are unreadable:
        # they are excluded, with the warning, instead of failing mid-epoch.
        # The user's cache, never the dataset folder (it may be shared or read-only); cache file
        # names carry a hash of where the split's files live, so datasets never collide.
        faces = self.face_options
        folder = Path(faces.cache_dir) if faces.cache_dir else paths.cache_dir()
        images, labels, names = load_or_build(index, folder, faces.strict)
        self._names[split] = list(names)
        self._faces[split] = images
        self._stats[split] = split_stats(images)
        targets = index.targets
        if self.teacher is not None and split == "train":
            soft = SoftTargets.load(self.teacher)
            where = f"data.teacher '{self.teacher}'"
            targets = soft.probs_for(split, names, labels.numpy(), self.class_names, where)
        # soft targets follow the index; a CSV (FER+) never skips a row
        return _Batches(images, labels, None if targets is None else torch.from_numpy(targets))

    def _seed(self) -> int:
        # initial_seed() is seed_everything's value, or a random 64-bit one without it.
        return self.seed if self.seed is not None else torch.initial_seed() % 2**31

    def _loader(self, split: str, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise DACLError(f"the '{split}' split is not set up; call setup() for its stage first")
        dataset = self.datasets[split]
        sampler = None
        if train:
            trainer = self.trainer
            sampler = EpochSampler(
                dataset,
                self._seed(),
                num_replicas=trainer.world_size if trainer is not None else 1,
                rank=trainer.global_rank if trainer is not None else 0,
                balanced_labels=self.labels("train") if self.label_options.balanced else None,
            )
            self.position.place(sampler, self.batch_size)
        # Batches are slices of an in-memory tensor: worker processes would only add
        # copies, so the main process serves them (Lightning's worker hint does not apply).
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        strategy = getattr(self.trainer, "strategy", None)
        if strategy is not None and strategy.root_device.type == "cuda":
            # 83 MB for all of FER2013: batches never cross the bus.
            dataset.to(strategy.root_device)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=False,
            num_workers=0,
            collate_fn=_identity,
        )

    def state_dict(self) -> dict[str, int]:
        """The resume position, saved in checkpoints (:class:`~dacl.data.resume.Position`)."""
        trainer = self.trainer
        return self.position.state_dict(trainer.num_training_batches if trainer else None)

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Called by Lightning when a fit resumes from a checkpoint, before the loaders exist."""
        self.position.load_state_dict(state_dict)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    @property
    def predict_split(self) -> str:
        """The split ``predict`` reads: test when the data has one, else val."""
        return self._needed("predict")[0]

    def predict_dataloader(self) -> DataLoader:
        assert self.layout is not None, "setup('predict') first"
        return self._loader(self.predict_split, train=False)

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, ...], dataloader_idx: int
    ) -> tuple[Tensor, ...]:
        """method.md §3 transforms on the whole uint8 batch, on its device (:mod:`dacl.data.
        augment`). FER+'s ``probability`` mode: one label per training sample drawn from its
        votes."""
        trainer = self.trainer
        images, labels, *targets = batch
        if trainer is None or not trainer.training:
            images = eval_augment(images, self.crop, self.resize, self.format.stats, self.tta)
            return (images, labels, *targets)
        rank = trainer.global_rank
        draws = self.position.next_batch(trainer.current_epoch, self._seed(), rank, images.device)
        images = train_augment(images, self.crop, self.resize, draws, self.format.stats)
        if self.erasing:
            images = erase(images, self.erasing, draws)
        if targets and self.label_options.label_mode == "probability":
            drawn = torch.multinomial(targets[0], 1, generator=draws)
            targets = [torch.zeros_like(targets[0]).scatter_(1, drawn, 1.0)]
        return (images, labels, *targets)
