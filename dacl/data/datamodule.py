"""FER2013DataModule: FER2013 in any method.md §3 layout, or FER+, RAF-DB, AffectNet or a
class-folder tree (:mod:`dacl.data.datasets`) → train/val/test loaders with method.md §3 transforms.

Two pipelines give the same transforms (method.md §3):

- ``fast`` (default): each split is decoded once into a uint8 (N, C, S, S) tensor (FER2013:
  gray 48), cached on disk (:mod:`dacl.data.cache`); loaders hand out uint8 batches from memory and
  :meth:`FER2013DataModule.on_after_batch_transfer` resizes, crops, flips and normalises the
  whole batch on its device (:mod:`dacl.data.augment`). No per-image Python work.
- ``reference``: a Dataset reading each image with PIL and applying the torchvision transforms
  of :mod:`dacl.data.transforms`, as the reference code does.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal, get_args

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dacl import paths
from dacl.classes import Stats
from dacl.data.augment import TTA_VIEWS, Tta, erase, eval_augment, train_augment
from dacl.data.cache import load_or_build
from dacl.data.datasets import (
    DATASETS,
    FORMATS,
    DatasetName,
    Format,
    LabelMode,
    declared_classes,
    find_dataset,
    resolve,
    subset,
)
from dacl.data.layouts import Layout, SplitIndex
from dacl.data.sanity import SplitStats, compare_splits, split_stats
from dacl.data.soft_targets import SoftTargets
from dacl.data.synthetic import ensure_synthetic
from dacl.data.transforms import eval_transform, train_transform
from dacl.errors import DACLError

log = logging.getLogger("dacl.data")

#: How batches are made: decoded once and augmented on the batch's device, or per PIL image.
Pipeline = Literal["fast", "reference"]
PIPELINES: tuple[str, ...] = get_args(Pipeline)

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


class EpochSampler(DistributedSampler):
    """The training order: a permutation that depends on ``(seed, epoch)`` alone (Lightning
    calls ``set_epoch`` every epoch), sharded over DDP processes. ``start`` skips the first
    samples of the next iteration only, so a run resumed mid-epoch continues the interrupted
    epoch's order exactly where it stopped."""

    def __init__(
        self,
        dataset: Dataset,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        balanced_labels: Tensor | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0
        self.balanced_labels = balanced_labels

    def __iter__(self):
        order = list(super().__iter__()) if self.balanced_labels is None else self._balanced()
        start, self.start = self.start, 0
        return iter(order[start:])

    def _balanced(self) -> list[int]:
        """Class-balanced draws with replacement: every class equally likely per sample, as
        many samples as the dataset holds; the same ``(seed, epoch)`` function as the shuffle."""
        labels = self.balanced_labels
        weights = 1.0 / torch.bincount(labels).double()[labels]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.multinomial(weights, self.total_size, replacement=True, generator=g)
        return order[self.rank : self.total_size : self.num_replicas].tolist()


class ReferenceDataset(Dataset):
    """method.md §3's per-image path: PIL image from the split, then a torchvision transform.

    ``keep`` lists the sample indices to serve: the readable ones (see ``load_or_build``).
    """

    def __init__(self, index: SplitIndex, keep: list[int], transform) -> None:
        self.index, self.keep, self.transform = index, keep, transform

    @property
    def labels(self) -> list[int]:
        return [self.index.labels[j] for j in self.keep]

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        j = self.keep[i]
        sample = (self.transform(self.index.load(j)), self.index.labels[j])
        targets = self.index.targets
        return sample if targets is None else (*sample, torch.from_numpy(targets[j]))


def _format(
    base: Format,
    channels: int | None,
    size: int | None,
    mean: list[float] | None,
    std: list[float] | None,
) -> Format:
    """A dataset's :data:`~dacl.data.datasets.FORMATS` entry with the user's overrides."""
    channels = channels or base.channels
    stats: Stats = (tuple(mean), tuple(std)) if mean is not None else base.stats
    if channels == 1 and len(stats[0]) != 1:  # RGB statistics of gray faces: their mean
        stats = ((sum(stats[0]) / 3,), (sum(stats[1]) / 3,))
    return Format(channels, size or base.size, stats)


def _check_options(
    *, pipeline: str, crop: int, resize: int, erasing: float, tta: str, teacher: str | None,
    label_mode: str, batch_size: int, dataset: str, mean: list[float] | None,
    std: list[float] | None,
) -> None:  # fmt: skip
    """One-line errors for data options out of range or that do not go together."""
    if pipeline not in PIPELINES:
        raise DACLError(f"data.pipeline must be {' or '.join(PIPELINES)}, got '{pipeline}'")
    if not 0 < crop <= resize:
        raise DACLError(f"data.crop must be in 1..data.resize ({resize}), got {crop}")
    if not 0.0 <= erasing <= 1.0:
        raise DACLError(f"data.erasing must be a probability in 0..1, got {erasing}")
    if tta not in TTA_VIEWS:
        raise DACLError(f"data.tta must be one of {', '.join(TTA_VIEWS)}, got '{tta}'")
    if tta != "none" and pipeline != "fast":
        raise DACLError("data.tta builds its views on the fast pipeline: set data.pipeline fast")
    if teacher is not None and (label_mode != "majority" or pipeline != "fast"):
        raise DACLError(
            "data.teacher needs hard labels and the fast pipeline (data.label_mode "
            f"majority, data.pipeline fast), got {label_mode} and {pipeline}"
        )
    if batch_size < 1:
        raise DACLError(f"data.batch_size must be positive, got {batch_size}")
    if dataset not in ("auto", *DATASETS):
        raise DACLError(f"data.dataset must be auto or one of {', '.join(DATASETS)}")
    if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
        raise DACLError("data.mean and data.std go together, one value per channel")


class FER2013DataModule(pl.LightningDataModule):
    """FER2013 in any method.md §3 layout — or FER+, RAF-DB, AffectNet or a class-folder tree —
    with method.md §3 transforms and per-epoch reshuffling.

    Args:
        root: the dataset: a folder (or a ``fer2013.csv`` path) as :mod:`dacl.data.datasets`
            describes for each dataset.
        dataset: ``auto`` (found from the files at ``root``: FER2013 or RAF-DB's label file)
            or one of fer2013, ferplus, rafdb, affectnet, folders.
        num_classes: AffectNet with 7 classes (contempt left out) or 8.
        class_map: ``folders``: class folder name → class name (the outputs, in order of first
            appearance); default: the folder names of ``train/``, sorted.
        classes: the output classes labels are mapped to by name, e.g. a checkpoint's when it
            is evaluated on another dataset (images of a class not among them are left out,
            and said); default: the dataset's own.
        val_fraction: where a dataset has no validation split (RAF-DB, AffectNet), the fraction
            of each training class carved out as one.
        split_seed: the seed of that carving (fixed, so every run validates on the same faces).
        channels: decode gray (1) or RGB (3); default: the dataset's (FER2013 and FER+ gray).
        cache_size: side the faces are decoded (and cached) at; default: the dataset's own
            (FER2013 48, RAF-DB 100, AffectNet 128, folders 112).
        mean, std: per-channel normalisation of pixel / 255; default: FER2013's (method.md §3)
            for the gray datasets, ImageNet's for the RGB ones.
        balanced: draw training samples class-balanced (with replacement), not shuffled.
        label_mode: FER+'s labels: ``majority`` (hard), ``crossentropy`` (the vote
            distribution as soft targets), ``probability`` (a label drawn from it per sample
            and batch) or ``multi_target`` (every emotion with 30 % of the votes a target; the
            CLI sets ``model.target_loss`` to match); the centers and the measures use the
            distribution's top class.
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
        num_workers: loader worker processes for the ``reference`` pipeline; the ``fast``
            pipeline serves batches from memory in the main process.
        seed: seeds the training-set shuffling and the ``fast`` augmentation draws; ``None``
            (the default) follows ``seed_everything``, so runs with different seeds also see
            different orders and crops.
        pipeline: ``fast`` (decoded, cached, batched augmentation on the batch's device) or
            ``reference`` (PIL + torchvision per image, as the reference code).
        strict: make unreadable or truncated image files an error instead of a warning.
        synthetic: create synthetic faces under ``root`` on first use (``dacl.data.synthetic``),
            reused while the sizes and seed stay the same.
        synthetic_size: synthetic training images; val and test get a fifth of this each.
        cache_dir: where decoded splits are cached (``fast``); default ``~/.cache/dacl``
            (:func:`dacl.paths.cache_dir`): the dataset folder is never written to.
        teacher: a teacher file (``dacl ensemble``) whose probabilities each training batch
            carries as its third entry, for distillation (``model.distill``, method.md §2.6);
            it must cover exactly this dataset's train faces. Hard labels and the ``fast``
            pipeline only.
    """

    def __init__(
        self,
        root: str | Path = "data/fer2013",
        dataset: Literal["auto", DatasetName] = "auto",
        num_classes: Literal[7, 8] = 7,
        class_map: dict[str, str] | None = None,
        classes: list[str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        channels: Literal[1, 3] | None = None,
        cache_size: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        balanced: bool = False,
        label_mode: LabelMode = "majority",
        crop: int = 200,
        resize: int = 256,
        erasing: float = 0.0,
        tta: Tta = "none",
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int | None = None,
        pipeline: Pipeline = "fast",
        strict: bool = False,
        synthetic: bool = False,
        synthetic_size: int = 3000,
        cache_dir: str | Path | None = None,
        teacher: str | None = None,
    ) -> None:
        super().__init__()
        _check_options(
            pipeline=pipeline, crop=crop, resize=resize, erasing=erasing, tta=tta,
            teacher=teacher, label_mode=label_mode, batch_size=batch_size, dataset=dataset,
            mean=mean, std=std,
        )  # fmt: skip
        # plain strings in checkpoints: a Path would not load with weights_only=True
        root, cache_dir = str(root), None if cache_dir is None else str(cache_dir)
        self.save_hyperparameters()
        self.root, self.crop, self.resize, self.batch_size = root, crop, resize, batch_size
        self.erasing, self.tta = erasing, tta
        self.num_workers, self.seed, self.pipeline = num_workers, seed, pipeline
        self.strict, self.synthetic, self.synthetic_size = strict, synthetic, synthetic_size
        self.cache_dir, self.teacher = cache_dir, teacher
        self.num_classes_option, self.class_map = num_classes, class_map
        self.classes = tuple(classes) if classes else None
        self.val_fraction, self.split_seed, self.balanced = val_fraction, split_seed, balanced
        self.label_mode = label_mode
        #: The dataset read: ``data.dataset``, or what ``auto`` finds at ``root`` (decided once).
        self.resolved_dataset = resolve(dataset, root, synthetic)
        #: How faces are decoded (channels, side) and normalised: the dataset's format with
        #: ``channels``, ``cache_size``, ``mean`` and ``std`` applied.
        self.format = fmt = _format(FORMATS[self.resolved_dataset], channels, cache_size, mean, std)
        # The format as resolved, saved with the checkpoint: evaluating the model on another
        # dataset then decodes and normalises faces as it was trained.
        m, sd = fmt.stats
        self.hparams.update(channels=fmt.channels, cache_size=fmt.size, mean=list(m), std=list(sd))
        self._init_state()

    def _init_state(self) -> None:
        """What setup fills in, and the resume position."""
        self.layout: Layout | None = None
        self.datasets: dict[str, Dataset] = {}
        self._names: dict[str, list[str]] = {}
        self._faces: dict[str, Tensor] = {}
        self._stats: dict[str, SplitStats] = {}
        self._aug_generator: torch.Generator | None = None
        #: (epoch, training batches of that epoch handed to the model so far): saved in
        #: checkpoints, so a resumed run continues the order and the crops exactly.
        self._progress = (0, 0)
        self._resume_from: tuple[int, int, bool] | None = None

    # -- what the rest of dacl reads ------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        """Output names, in order: ``classes`` when given, else the dataset's own."""
        if self.classes is not None:
            return self.classes
        if self.layout is not None:
            return self.layout.classes
        return declared_classes(
            self.resolved_dataset, self.root, self.num_classes_option, self.class_map
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
        them: the eval transform of either pipeline (single view), on the CPU."""
        self.names(split)
        if self.pipeline == "fast":
            faces = self._faces[split][indices]
            return eval_augment(faces, self.crop, self.resize, self.format.stats)
        dataset = self.datasets[split]
        return torch.stack([dataset[int(i)][0] for i in indices])

    # -- Lightning hooks ------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.synthetic:
            n = self.synthetic_size
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
        return find_dataset(
            self.root,
            self.resolved_dataset,
            num_classes=self.num_classes_option,
            class_map=self.class_map,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            fmt=self.format,
            label_mode=self.label_mode,
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
        # both pipelines exclude them, with the warning, instead of failing inside a worker.
        # The user's cache, never the dataset folder (it may be shared or read-only); cache file
        # names carry a hash of where the split's files live, so datasets never collide.
        folder = Path(self.cache_dir) if self.cache_dir else paths.cache_dir()
        images, labels, names = load_or_build(index, folder, self.strict)
        self._names[split] = list(names)
        self._faces[split] = images
        self._stats[split] = split_stats(images)
        if self.pipeline == "fast":
            targets = index.targets
            if self.teacher is not None and split == "train":
                soft = SoftTargets.load(self.teacher)
                where = f"data.teacher '{self.teacher}'"
                targets = soft.probs_for(split, names, labels.numpy(), self.class_names, where)
            # soft targets follow the index; a CSV (FER+) never skips a row
            return _Batches(images, labels, None if targets is None else torch.from_numpy(targets))
        readable = set(names)
        keep = [i for i, n in enumerate(index.names) if n in readable]
        gray = self.format.channels == 1
        if split == "train":
            transform = train_transform(
                self.crop, self.resize, self.format.stats, gray, self.erasing
            )
        else:
            transform = eval_transform(self.crop, self.resize, self.format.stats, gray)
        return ReferenceDataset(index, keep, transform)

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
                balanced_labels=self.labels("train") if self.balanced else None,
            )
            self._place(sampler)
        if self.pipeline == "fast":
            # Batches are slices of an in-memory tensor: worker processes would only add
            # copies, so the main process serves them (Lightning's worker hint does not apply).
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            strategy = getattr(self.trainer, "strategy", None)
            if strategy is not None and strategy.root_device.type == "cuda":
                # 83 MB for all of FER2013: batches never cross the bus.
                dataset.to(strategy.root_device)
            workers = {"num_workers": 0, "collate_fn": _identity}
        else:
            workers = {
                "num_workers": self.num_workers,
                "persistent_workers": self.num_workers > 0,
            }
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=False,
            **workers,
        )

    def _place(self, sampler: EpochSampler) -> None:
        """Start ``sampler`` where a restored checkpoint stopped (see :meth:`load_state_dict`)."""
        if self._resume_from is None:
            return
        epoch, done, finished = self._resume_from
        self._resume_from = None
        if finished:  # saved at the end of its epoch: the next one starts afresh
            epoch, done = epoch + 1, 0
        sampler.set_epoch(epoch)
        sampler.start = done * self.batch_size
        self._progress = (epoch, done)

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the data: the epoch, its batches already trained on, and
        whether that was all of them (the trainer's batches per epoch, limits included)."""
        epoch, done = self._progress
        finished = self.trainer is not None and done >= self.trainer.num_training_batches
        return {"epoch": epoch, "batches": done, "finished": int(finished)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Called by Lightning when a fit resumes from a checkpoint, before the loaders exist."""
        self._resume_from = (
            int(state_dict["epoch"]),
            int(state_dict["batches"]),
            bool(state_dict["finished"]),
        )

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
        """``fast`` pipeline: method.md §3 transforms on the whole uint8 batch, on its device.
        FER+'s ``probability`` mode: one label per training sample drawn from its votes."""
        trainer = self.trainer
        training = trainer is not None and trainer.training
        if training:
            epoch, done = self._progress
            if trainer.current_epoch != epoch:
                epoch, done = trainer.current_epoch, 0
            self._progress = (epoch, done + 1)
        images, labels, *targets = batch
        if training:
            if self._aug_generator is None:
                # Draws on the batch's device (no host-device copy per step).
                self._aug_generator = torch.Generator(device=images.device)
            # Each batch's crops, flips and drawn labels are a function of (seed, rank, epoch,
            # batch): the same after a resume, and different on each DDP process.
            key = (self._seed(), trainer.global_rank, epoch, done)
            self._aug_generator.manual_seed(hash(key) & (2**63 - 1))
        if self.pipeline == "fast":
            stats = self.format.stats
            if training:
                images = train_augment(images, self.crop, self.resize, self._aug_generator, stats)
                if self.erasing:
                    images = erase(images, self.erasing, self._aug_generator)
            else:
                images = eval_augment(images, self.crop, self.resize, stats, self.tta)
        if training and targets and self.label_mode == "probability":
            drawn = torch.multinomial(targets[0], 1, generator=self._aug_generator)
            targets = [torch.zeros_like(targets[0]).scatter_(1, drawn, 1.0)]
        return (images, labels, *targets)
