"""A trained model on face pictures, in Python: :class:`Predictor`.

    from dacl.predictor import Predictor

    predictor = Predictor.from_pretrained()  # the model shipped with dacl
    # or: Predictor.from_checkpoint("lightning_logs/cpu/version_0/checkpoints/last.ckpt")
    out = predictor(["face.jpg", pil_image, array])  # arrays: see dacl.pictures.array_picture
    out.labels, out.confidence, out.probs   # names, (n,), (n, 7)

Each picture is treated as the training data treated its faces (EXIF rotation applied; for
FER2013 gray, 48x48; for RAF-DB RGB, 100x100, ...), then goes through the evaluation transform
of the run that trained the model (resize, center crop, normalise), in eval mode without
autograd, in batches. :func:`predict_files` does the same for files, folders and videos, a row
per face; the pictures are read and their faces found by :mod:`dacl.pictures`, and
``dacl predict`` (:mod:`dacl.predict`) writes the rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from dacl import pretrained
from dacl.checkpoint import read_dacl_checkpoint
from dacl.data.augment import FIVE_CROPS, TTA_VIEWS, eval_augment
from dacl.data.datasets import FORMATS, Format
from dacl.data.layouts import image_array
from dacl.errors import DACLError, first_sentence
from dacl.module import DACLModule
from dacl.pictures import (
    BOX,
    Box,
    Faces,
    Picture,
    annotate,
    face_boxes,
    load_picture,
    pictures_of,
    save_drawn,
)

#: How faces are resized, to the face size and then to ``resize``: Pillow's BILINEAR (a
#: triangle filter, widened when shrinking); bicubic or nearest inputs change labels.
INTERPOLATION = "bilinear"


def usable_device(device: str | torch.device) -> torch.device:
    """``device`` once a tensor has been made on it; a name PyTorch does not know, or a device
    this machine lacks (``cuda`` without a GPU, ``cuda:3`` with one), is one line."""
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DACLError(
            f"device '{device}' is not a device name (cpu, cuda, cuda:1, mps, ...)"
        ) from None
    try:
        torch.empty(0, device=resolved)
    except (RuntimeError, AssertionError) as err:  # AssertionError: a build without CUDA
        raise DACLError(
            f"device '{device}' is not usable on this machine ({first_sentence(err)}); try cpu"
        ) from None
    return resolved


@dataclass
class Predictions:
    """The model's answer for ``n`` faces, row ``i`` for face ``i``."""

    class_names: tuple[str, ...]
    probs: Tensor  #: (n, K) softmax probabilities
    attention: Tensor  #: (n, 512) attention weights (all ones for the center/softmax variants)
    #: each face's box ``(x, y, width, height)`` in its picture, and that picture's position in
    #: the input (one face per picture, the whole picture, unless faces were detected)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    pictures: list[int] = field(default_factory=list)

    @property
    def confidence(self) -> Tensor:
        """(n,) the probability of the predicted class."""
        return self.probs.max(-1).values

    @property
    def labels(self) -> list[str]:
        """The predicted class names."""
        return [self.class_names[i] for i in self.probs.argmax(-1).tolist()]


class Predictor:
    """A trained :class:`~dacl.module.DACLModule` with the eval transform it was trained for.

    Args:
        module: the model; put in eval mode on ``device``.
        crop, resize: the run's ``data.crop`` and ``data.resize``.
        device: ``"cpu"`` (default) or e.g. ``"cuda"``.
        batch_size: pictures per forward pass.
        fmt: how the run's data decoded and normalised faces (default FER2013's: gray, 48 px).
        tta: test-time augmentation, as ``data.tta``: ``none``, ``flip`` or ``crops``.
    """

    def __init__(
        self,
        module: DACLModule,
        crop: int,
        resize: int,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        fmt: Format = FORMATS["fer2013"],
        tta: str = "none",
    ) -> None:
        if tta not in TTA_VIEWS:
            raise DACLError(f"tta must be one of {', '.join(TTA_VIEWS)}, got '{tta}'")
        if batch_size < 1:
            raise DACLError(f"batch_size must be at least 1, got {batch_size}")
        self.tta = tta
        self.device = usable_device(device)
        self.module = module.eval().to(self.device)
        self.format = fmt
        self.crop, self.resize, self.batch_size = crop, resize, batch_size
        self.class_names = tuple(module.class_names)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        tta: str | None = None,
    ) -> Predictor:
        """A model shipped with dacl, by name (``"small"``; no ``path``: the default one), or
        another weights + config pair (:mod:`dacl.pretrained`); ``tta`` defaults to the
        config's."""
        module, config = pretrained.load(path)
        tta = config.get("tta", "none") if tta is None else tta
        return cls.for_inference(module, config["data"], device, batch_size, tta)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        tta: str = "none",
    ) -> Predictor:
        """The model of a ``dacl fit`` checkpoint (read with ``weights_only=True``), with the
        crop, resize and face format of the datamodule saved beside it."""
        ckpt = read_dacl_checkpoint(path)
        module = DACLModule.from_config(ckpt.model, f"checkpoint '{path}'")
        module.load_state_dict(ckpt.state_dict)
        return cls.for_inference(module, ckpt.data, device, batch_size, tta)

    @classmethod
    def for_inference(
        cls,
        module: DACLModule,
        data: Mapping[str, Any],
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        tta: str = "none",
    ) -> Predictor:
        """A predictor of a trained module the caller hands over (its trunk's BatchNorms are
        folded into their convolutions: :meth:`~dacl.model.DACLNet.fold_batchnorms`) and the
        data options it was trained with: ``crop``, ``resize`` and the face format (``channels``,
        ``cache_size``, ``mean``, ``std``; FER2013's where a checkpoint predates them)."""
        crop = int(data.get("crop", module.hparams.image_size))
        fmt = FORMATS["fer2013"]
        if data.get("channels") and data.get("mean"):
            stats = (tuple(data["mean"]), tuple(data["std"]))
            fmt = Format(int(data["channels"]), int(data["cache_size"]), stats)
        module.eval().net.fold_batchnorms()
        if module.hparams.channels_last:
            module.net.to(memory_format=torch.channels_last)
        return cls(module, crop, int(data.get("resize", crop)), device, batch_size, fmt, tta)

    @classmethod
    def load(cls, path: str | Path | None = None, tta: str | None = None, **options) -> Predictor:
        """A ``dacl fit`` checkpoint, a weights + config pair (``.json`` or ``.safetensors``)
        or, with no ``path``, the model shipped with dacl; ``options``: ``device`` and
        ``batch_size``, as :meth:`from_checkpoint` and :meth:`from_pretrained` take them."""
        if (
            path is None
            or Path(path).suffix in (".json", ".safetensors")
            or (str(path) in pretrained.shipped_names())
        ):
            return cls.from_pretrained(path, tta=tta, **options)
        return cls.from_checkpoint(path, tta=tta or "none", **options)

    def faces(self, pictures: Iterable[Picture]) -> Tensor:
        """The pictures as the training data's faces: ``uint8 (n, C, S, S)`` (FER2013:
        ``(n, 1, 48, 48)``)."""
        return torch.from_numpy(np.stack([self.face(load_picture(p)) for p in pictures]))

    def face(self, picture: Image.Image) -> np.ndarray:
        """One picture as the training data's face, ``uint8 (C, S, S)``."""
        return image_array(picture, self.format.size, self.format.channels)

    def inputs(self, faces: Tensor, tta: str | None = None) -> Tensor:
        """Faces ``uint8 (n, C, S, S)`` (or ``(n, S, S)`` gray) → the model's normalised inputs,
        as evaluation made them: ``(n, C, crop, crop)``, or ``(n, V, C, crop, crop)`` with
        test-time views (``tta``, default the predictor's)."""
        tta = self.tta if tta is None else tta
        return eval_augment(faces.to(self.device), self.crop, self.resize, self.format.stats, tta)

    def predict_faces(self, faces: Tensor) -> Predictions:
        """Predictions for faces ``uint8 (n, C, S, S)``, in batches."""
        k, d = len(self.class_names), self.module.net.classifier.in_features
        if not len(faces):  # no forward pass: test-time views cannot reshape an empty batch
            return Predictions(self.class_names, torch.empty(0, k), torch.empty(0, d))
        # inference mode, not just no_grad: without autograd's bookkeeping a face at batch 1
        # takes a fifth less time (benchmarks/peers.py)
        with torch.inference_mode():
            outputs = [self.module(self.inputs(part)) for part in faces.split(self.batch_size)]
        # joined outside: the rows are ordinary tensors, which callers may change in place
        probs = torch.cat([logits.float().softmax(-1) for logits, _, _ in outputs])
        attention = torch.cat([att.float() for _, _, att in outputs])
        return Predictions(self.class_names, probs.cpu(), attention.cpu())

    def __call__(self, pictures: Sequence[Picture] | Picture, faces: Faces = "crop") -> Predictions:
        """Predictions for one picture or a sequence of them (paths, PIL images, arrays): one
        row per picture (``crop``: each picture is a face) or per face found (``detect``, or
        the boxes a detector function of your own returns for the picture)."""
        if isinstance(pictures, str | os.PathLike | Image.Image | np.ndarray) or not isinstance(
            pictures, Iterable
        ):
            pictures = [pictures]  # one picture (or something else: load_picture names it)
        boxes, sources, crops = [], [], []
        for i, picture in enumerate(map(load_picture, pictures)):
            for box, face in _face_crops(picture, faces, self.face):
                boxes.append(box)
                sources.append(i)
                crops.append(face)
        fmt = self.format
        empty = np.empty((0, fmt.channels, fmt.size, fmt.size), np.uint8)
        stacked = np.stack(crops) if crops else empty
        out = self.predict_faces(torch.from_numpy(stacked))
        out.boxes, out.pictures = boxes, sources
        return out

    def describe(self) -> dict[str, Any]:
        """What a consumer of an exported model needs besides the weights."""
        return {
            "class_names": list(self.class_names),
            "input": f"{'gray' if self.format.channels == 1 else 'RGB'} faces resized to "
            f"{self.format.size}x{self.format.size}, then resize {self.resize}, center crop "
            f"{self.crop}, (x/255 - mean)/std per channel; both resizes {INTERPOLATION} as "
            "Pillow's (antialiased when shrinking)",
            "channels": self.format.channels,
            "crop": self.crop,
            "resize": self.resize,
            "interpolation": INTERPOLATION,
            "mean": list(self.format.stats[0]),
            "std": list(self.format.stats[1]),
            "variant": self.module.hparams.variant,
            # the file takes one view; dacl averages the softmax over these (crop, flip) views
            "tta": self.tta,
            "tta_views": [[FIVE_CROPS[c], flip] for c, flip in TTA_VIEWS[self.tta]],
        }


def _face_crops(
    picture: Image.Image, faces: Faces, face: Callable[[Image.Image], np.ndarray]
) -> list[tuple[Box, np.ndarray]]:
    """The picture's faces (:func:`face_boxes`) as ``(box, face(crop))``."""
    return [
        ((x, y, w, h), face(picture.crop((x, y, x + w, y + h))))
        for x, y, w, h in face_boxes(picture, faces)
    ]


def _found(
    path: Path, every: int, faces: Faces | dict[tuple[str, str], list[Box]], face: Callable
) -> Iterator[tuple[int | str, Image.Image, list[tuple[Box, np.ndarray]]]]:
    """``(frame, picture, its faces as (box, face))`` of a file, frame by frame; the faces of a
    :func:`read_boxes` table are the boxes listed for the file (by path or name) and frame."""
    for frame, picture in pictures_of(path, every):
        finder = faces
        if isinstance(faces, dict):
            listed = faces.get((str(path), str(frame)), faces.get((path.name, str(frame))))
            finder = functools.partial(lambda boxes, _: boxes, listed or [])
        yield frame, picture, _face_crops(picture, finder, face)


def _next_or_error(frames: Iterator, path: Path) -> Any:
    """The next of a file's frames, ``None`` after the last, or the file's error row when it
    cannot be read (a bad box of a detector counts as that too)."""
    try:
        return next(frames, None)
    except DACLError as err:
        return {"file": str(path), "error": str(err)}


def _row(unit: tuple[Path, int | str], box: Box, probs: Tensor, names: Sequence[str]) -> dict:
    """A face's row: its file, frame and box, the prediction, its confidence and each class's
    probability."""
    row = {"file": str(unit[0]), "frame": unit[1], **dict(zip(BOX, box, strict=True))}
    row |= {"prediction": names[int(probs.argmax())]}
    row |= {"confidence": round(float(probs.max()), 4), "error": ""}
    return row | {f"p_{c}": round(float(p), 4) for c, p in zip(names, probs, strict=True)}


def predict_files(
    predictor: Predictor,
    files: Iterable[Path],
    faces: Faces | dict[tuple[str, str], list[Box]] = "crop",
    attention: bool = False,
    every: int = 1,
    annotate_to: Mapping[Path, Path] | None = None,
) -> Iterable[dict[str, Any]]:
    """Rows in the order of ``files`` (and of a video's frames, every ``every``-th): one per
    face — the whole picture (``crop``: the picture is the face, as in FER2013), each face
    found (``detect`` or a detector function), or each box of a :func:`read_boxes` table
    for that file and frame — with its box, the prediction, its confidence and every class's
    probability. A file that cannot be read, or a picture without a face, gets one row saying
    so in ``error``; the others go on. Faces are predicted in batches. With ``annotate_to``
    (:func:`annotation_paths`), each picture is drawn with its boxes and labels there."""
    batch: list[tuple[tuple[Path, int | str], np.ndarray, Box]] = []
    held: dict[tuple[Path, int | str], Image.Image] = {}  # the batch's pictures, to annotate

    def flush() -> Iterable[dict[str, Any]]:
        if not batch:
            return
        out = predictor.predict_faces(torch.from_numpy(np.stack([f for _, f, _ in batch])))
        rows: dict[tuple[Path, int | str], list[dict[str, Any]]] = {}
        for (unit, _, box), probs, att in zip(batch, out.probs, out.attention, strict=True):
            row = _row(unit, box, probs, predictor.class_names)
            if attention:
                row["attention"] = [round(float(a), 4) for a in att]
            rows.setdefault(unit, []).append(row)
            yield row
        for (path, frame), picture in held.items():
            name = annotate_to[path]
            drawn = name.with_name(f"{name.name}{f'_frame{frame}' if frame != '' else ''}.png")
            save_drawn(annotate(picture, rows[(path, frame)]), drawn)
        batch.clear()
        held.clear()

    for path in files:
        frames = _found(path, every, faces, predictor.face)
        while (found := _next_or_error(frames, path)) is not None:
            if isinstance(found, dict):  # unreadable: its row, in its place among the others
                yield from flush()
                yield found
                break
            frame, picture, crops = found
            if not crops:
                yield from flush()  # rows stay in the order of the files
                yield {"file": str(path), "frame": frame, "error": f"'{path}': no face found"}
                continue
            batch.extend(((path, frame), face, box) for box, face in crops)
            if annotate_to is not None:
                held[(path, frame)] = picture
            if len(batch) >= predictor.batch_size:
                yield from flush()
    yield from flush()


def add_model_options(parser: Any) -> None:
    """``--ckpt_path``, ``--model`` and ``--tta``: which model answers, with which views
    (``dacl predict``, ``export`` and ``demo`` alike)."""
    parser.add_argument(
        "--ckpt_path", type=str | None, default=None,
        help="a dacl fit checkpoint or a NAME.json weights pair; default: the shipped model",
    )  # fmt: skip
    parser.add_argument(
        "--model", type=str | None, default=None,
        help="a model shipped with dacl: default (dacl_fer2013) or small (dacl_fer2013_small)",
    )  # fmt: skip
    parser.add_argument(
        "--tta", type=Literal["none", "flip", "crops"] | None, default=None,
        help="test-time views averaged; default: none (a pair: its config's)",
    )  # fmt: skip


def chosen_model(args: Any) -> str | None:
    """The model ``--ckpt_path`` or ``--model`` names (one of them at most; checked)."""
    if args.ckpt_path is not None and args.model is not None:
        raise DACLError("--ckpt_path and --model both name a model: pass one")
    if args.model is not None:
        pretrained.locate(args.model)  # an unknown name: one line listing the shipped ones
    return args.ckpt_path or args.model
