"""A trained model on face pictures, in Python: :class:`Predictor`.

    from dacl.predictor import Predictor

    predictor = Predictor.from_pretrained()  # the model shipped with dacl
    # or: Predictor.from_checkpoint("lightning_logs/cpu/version_0/checkpoints/last.ckpt")
    out = predictor(["face.jpg", pil_image, uint8_array])
    out.labels, out.confidence, out.probs   # names, (n,), (n, 7)

Each picture is treated as the training data treated its faces (EXIF rotation applied; for
FER2013 gray, 48x48; for RAF-DB RGB, 100x100, ...), then goes through the evaluation transform
of the run that trained the model (resize, center crop, normalise), in eval mode without
autograd, in batches.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import json
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from tqdm import tqdm

from dacl import pretrained
from dacl.checkpoint import read_dacl_checkpoint
from dacl.data.augment import FIVE_CROPS, TTA_VIEWS, eval_augment
from dacl.data.datasets import FORMATS, Format
from dacl.data.layouts import IMAGE_SUFFIXES, eight_bit, image_array
from dacl.errors import DACLError
from dacl.module import DACLModule
from dacl.outputs import Pending, check_folder, replacing

if TYPE_CHECKING:  # the command's parser; jsonargparse is imported when the command runs
    from jsonargparse import Namespace

    from dacl.usage import ProgramParser

#: What a picture may be: a file path, a PIL image, or an (H, W) / (H, W, 3) uint8 array.
Picture = str | Path | Image.Image | np.ndarray
#: A face's box in its picture: ``(x, y, width, height)`` in pixels.
Box = tuple[int, int, int, int]
#: How faces are resized, to the face size and then to ``resize``: Pillow's BILINEAR (a
#: triangle filter, widened when shrinking); bicubic or nearest inputs change labels.
INTERPOLATION = "bilinear"
#: Where the faces of a picture are: ``crop`` (the whole picture is one face, as in FER2013),
#: ``detect`` (OpenCV's Haar cascade) or any detector, a function picture → boxes.
Faces = Literal["crop", "detect"] | Callable[[Image.Image], Sequence[Sequence[float]]]


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


def load_picture(picture: Picture) -> Image.Image:
    """A picture as a PIL image at 8 bits a channel (:func:`~dacl.data.layouts.eight_bit`),
    EXIF orientation applied; one-line :class:`DACLError` for a file that is missing, not an
    image, or larger than Pillow's decompression-bomb limit. An animated picture gives its
    first frame here; :func:`pictures_of` reads every frame."""
    if isinstance(picture, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(picture))
    if isinstance(picture, Image.Image):
        return eight_bit(ImageOps.exif_transpose(picture))
    with opened(picture) as im:
        return _upright_rgb(im)


def _upright_rgb(im: Image.Image) -> Image.Image:
    """An opened picture (or its current frame) decoded as 8-bit RGB, EXIF orientation applied;
    ``convert`` decodes it all, so a truncated file fails here."""
    return eight_bit(ImageOps.exif_transpose(im)).convert("RGB")


@contextlib.contextmanager
def opened(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` with every failure as one :class:`DACLError` line naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                yield im
    except FileNotFoundError:
        raise DACLError(f"'{path}': no such file") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DACLError(
            f"'{path}': over {Image.MAX_IMAGE_PIXELS:,} pixels, Pillow's limit against "
            "decompression bombs; downscale the picture first"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DACLError(f"'{path}': not a readable image ({err})") from None


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
        self.tta = tta
        self.module = module.eval().to(device)
        self.format = fmt
        self.crop, self.resize, self.batch_size = crop, resize, batch_size
        self.device = torch.device(device)
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
        if isinstance(pictures, (str, Path, Image.Image, np.ndarray)):
            pictures = [pictures]
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


#: File suffixes a folder is searched for beside pictures' (IMAGE_SUFFIXES): videos, read
#: frame by frame.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def expand(paths: Iterable[str]) -> list[Path]:
    """Files, folders (their images, recursively, sorted) and glob patterns → file paths; a
    path that is none of these is kept, so that it gets its error row."""
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
        elif not path.exists() and glob.has_magic(text):
            files += [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        else:
            files.append(path)
    return files


#: Face detection: OpenCV's frontal-face Haar cascade (shipped in its wheel), and the margin
#: added around each box on every side, as a fraction of its size (FER2013 faces are loose).
CASCADE, MARGIN, MIN_FACE = "haarcascade_frontalface_default.xml", 0.1, 24
#: The face box columns of a row, and the colour boxes and labels are drawn in.
BOX = ("x", "y", "width", "height")
LABEL_COLOR = (255, 200, 0)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DACLError(
            "videos and --faces detect need OpenCV: pip install 'dacl[detect]'"
        ) from None
    return cv2


def pictures_of(path: Path, every: int = 1) -> Iterable[tuple[int | str, Image.Image]]:
    """``(frame, picture)`` of a file: ``("", picture)`` for a picture; every ``every``-th frame
    (numbered from 0) of a video or an animated picture (GIF, WebP, multi-page TIFF).
    :class:`DACLError` for a file that cannot be read."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        with opened(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames == 1:  # decoded from the file already open, not read a second time
                yield "", _upright_rgb(im)
                return
            for index in range(0, frames, every):
                im.seek(index)
                yield index, eight_bit(im).convert("RGB")
        return
    if not path.is_file():
        raise DACLError(f"'{path}': no such file")
    video = _cv2().VideoCapture(str(path))
    try:
        ok, frame = video.read()
        if not ok:
            raise DACLError(f"'{path}': not a readable video")
        index = 0
        while ok:
            if index % every == 0:
                yield index, Image.fromarray(frame[..., ::-1].copy())  # BGR → RGB
            ok, frame = video.read()
            index += 1
    finally:
        video.release()


@functools.cache
def _cascade():
    cv2 = _cv2()
    return cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)


def detect_faces(picture: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x, y, width, height)`` of the faces in a picture, top to bottom, left to right,
    each widened by :data:`MARGIN` (within the picture)."""
    gray = np.asarray(picture.convert("L"))
    found = _cascade().detectMultiScale(gray, 1.1, 5, minSize=(MIN_FACE, MIN_FACE))
    boxes = []
    for x, y, w, h in sorted((tuple(map(int, b)) for b in found), key=lambda b: (b[1], b[0])):
        dx, dy = round(w * MARGIN), round(h * MARGIN)
        x0, y0 = max(0, x - dx), max(0, y - dy)
        x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def face_boxes(picture: Image.Image, faces: Faces) -> list[Box]:
    """The boxes of a picture's faces: the whole picture (``crop``), :func:`detect_faces`'
    (``detect``), or a detector function's, rounded and clipped to the picture; a box that is
    not four numbers with a positive width and height inside the picture is a :class:`DACLError`."""
    if faces == "crop":
        return [(0, 0, *picture.size)]
    if faces == "detect":
        return detect_faces(picture)
    boxes = []
    for box in faces(picture):
        try:
            x, y, w, h = (round(float(v)) for v in box)
        except (TypeError, ValueError):
            raise DACLError(
                f"a face box must be 4 numbers (x, y, width, height), got {box!r}"
            ) from None
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(picture.width, x + w), min(picture.height, y + h)
        if x1 <= x0 or y1 <= y0:
            raise DACLError(f"face box {box!r} has no area inside the {picture.size} picture")
        boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def _face_crops(
    picture: Image.Image, faces: Faces, face: Callable[[Image.Image], np.ndarray]
) -> list[tuple[Box, np.ndarray]]:
    """The picture's faces (:func:`face_boxes`) as ``(box, face(crop))``."""
    return [
        ((x, y, w, h), face(picture.crop((x, y, x + w, y + h))))
        for x, y, w, h in face_boxes(picture, faces)
    ]


def read_boxes(path: str | Path) -> dict[tuple[str, str], list[Box]]:
    """A CSV of face boxes from another detector: columns ``file``, ``x``, ``y``, ``width``,
    ``height`` (and ``frame`` for videos), a row per face → boxes by ``(file, frame)``."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise DACLError(f"--boxes '{path}': {err.strerror or err}") from None
    table: dict[tuple[str, str], list[Box]] = {}
    for line, row in enumerate(rows, 2):
        try:
            box = tuple(round(float(row[k])) for k in BOX)
            table.setdefault((row["file"], row.get("frame") or ""), []).append(box)
        except (KeyError, TypeError, ValueError):
            raise DACLError(
                f"--boxes '{path}' line {line}: expected columns file, x, y, width, height "
                "(and frame) with numbers"
            ) from None
    return table


def annotate(picture: Image.Image, rows: Sequence[dict[str, Any]]) -> Image.Image:
    """The picture with each row's face box and ``prediction confidence`` drawn on it."""
    from PIL import ImageDraw, ImageFont

    drawn = picture.convert("RGB")
    draw = ImageDraw.Draw(drawn)
    side = max(drawn.size)
    width, font = max(1, round(side / 200)), ImageFont.load_default(size=max(10, side // 45))
    for row in rows:
        x, y, w, h = (row[k] for k in BOX)
        draw.rectangle((x, y, x + w - 1, y + h - 1), outline=LABEL_COLOR, width=width)
        label = f"{row['prediction']} {row['confidence']:.2f}"
        _, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y - (bottom - top) - 2 if y >= bottom - top + 2 else y + width  # above, or inside
        draw.rectangle((x, ty, x + right + 3, ty + bottom + 1), fill=LABEL_COLOR)
        draw.text((x + 2, ty), label, fill=(0, 0, 0), font=font)
    return drawn


def annotation_paths(files: Sequence[Path], folder: Path) -> dict[Path, Path]:
    """Where ``--annotate`` draws each file (``.png``, and ``_frameN`` for a video's frames,
    are added): its path below the files' common folder, inside ``folder`` (``a/face.jpg`` and
    ``b/face.jpg`` → ``folder/a/face``, ``folder/b/face``). Files whose paths differ only by
    their suffix keep it (``face.jpg``, ``face.png``), so no picture overwrites another."""
    absolute = {path: Path(os.path.abspath(path)) for path in files}
    if not absolute:
        return {}
    common = os.path.commonpath([p.parent for p in absolute.values()])
    bare = {path: p.relative_to(common).with_suffix("") for path, p in absolute.items()}
    shared = Counter(bare.values())
    return {
        path: folder / (name.with_name(path.name) if shared[name] > 1 else name)
        for path, name in bare.items()
    }


def save_drawn(picture: Image.Image, target: Path) -> None:
    """An annotated picture as PNG at ``target``, written beside it and renamed into place."""
    if not target.parent.is_dir():
        check_folder(target.parent, "--annotate folder")
    with replacing(target, "--annotate", binary=True) as pending:
        picture.save(pending.file, format="PNG")


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


def shipped_model(tta: str, name: str | None = None) -> str:
    """One line naming a shipped model (default: the default one) and its validation accuracy
    with the test-time views ``tta``."""
    config = pretrained.read_config(name)
    return f"the shipped model {config['name']}: {pretrained.scores(config, tta)}"


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


#: Seconds between ``dacl predict``'s progress lines where stderr is not a terminal.
PROGRESS_EVERY = 5.0


class Progress:
    """How far ``dacl predict`` has come: files taken, rows written, faces predicted. On a
    terminal, tqdm's bar over the files; elsewhere (a pipe, a log file) a line every
    :data:`PROGRESS_EVERY` seconds with the files done, the faces and the faces per second."""

    def __init__(self, files: Sequence[Path], stream: TextIO) -> None:
        self.files, self.stream = files, stream
        self.taken = self.rows = self.faces = 0
        self.start = self.shown = time.monotonic()
        self.bar: tqdm | None = None

    def __iter__(self) -> Iterator[Path]:
        if self.stream.isatty():
            self.bar = tqdm(self.files, desc="dacl predict", unit="file", file=self.stream)
        for path in self.bar if self.bar is not None else self.files:
            self.taken += 1  # as the bar counts: its rows may wait for a batch to fill
            yield path

    def count(self, row: dict[str, Any]) -> None:
        """A row written; a progress line when one is due."""
        self.rows += 1
        self.faces += not row["error"]
        now = time.monotonic()
        if self.bar is None and now - self.shown >= PROGRESS_EVERY:
            self.shown = now
            rate = self.faces / (now - self.start)
            print(
                f"dacl predict: {self.taken:,}/{len(self.files):,} files, {self.faces:,} faces, "
                f"{rate:.1f} faces/s", file=self.stream, flush=True,
            )  # fmt: skip

    def close(self) -> None:
        """End the bar's line, if there is one."""
        if self.bar is not None:
            self.bar.close()


def _parser() -> ProgramParser:
    """``dacl predict``'s options."""
    from jsonargparse import ActionConfigFile

    from dacl.usage import ProgramParser

    parser = ProgramParser(
        prog="dacl predict",
        description="Expressions of the faces in pictures and videos (files, folders, glob "
        "patterns), one row per face. A dataset split's predictions: `dacl predict_split`.",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="these options as a file")
    parser.add_argument("paths", nargs="*", help="pictures, videos, folders or globs")
    add_model_options(parser)
    parser.add_argument(
        "--out", type=str | None, default=None,
        help="file; default: stdout. Written beside it and renamed into place when complete",
    )  # fmt: skip
    parser.add_argument("--format", type=Literal["csv", "jsonl"], default="csv")
    parser.add_argument(
        "--faces", type=Literal["crop", "detect"], default="crop",
        help="crop: each picture is one face (as in FER2013); detect: find the faces in photos",
    )  # fmt: skip
    parser.add_argument(
        "--boxes", type=str | None, default=None,
        help="a CSV of face boxes from your own detector (file, [frame,] x, y, width, height); "
        "replaces --faces",
    )  # fmt: skip
    parser.add_argument("--attention", type=bool, default=False, help="add the 512 weights")
    parser.add_argument("--every", type=int, default=1, help="videos: every N-th frame")
    parser.add_argument("--annotate", type=str | None, default=None, help="folder for pictures")
    parser.add_argument("--batch_size", type=int, default=64, help="pictures per forward pass")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    return parser


def write_rows(args: Namespace, files: Sequence[Path], progress: Progress, stream: TextIO) -> int:
    """The rows of ``files`` written to ``stream`` as ``args`` ask; how many files could not
    be read."""
    source = chosen_model(args)
    predictor = Predictor.load(source, args.tta, device=args.device, batch_size=args.batch_size)
    if args.ckpt_path is None:
        model = shipped_model(predictor.tta, args.model)
        print(f"dacl predict: using {model}", file=sys.stderr)
    columns = ["file", "frame", *BOX, "prediction", "confidence"]
    columns += [f"p_{c}" for c in predictor.class_names] + ["error"]
    columns += ["attention"] if args.attention else []
    writer = csv.DictWriter(stream, columns, restval="") if args.format == "csv" else None
    if writer:
        writer.writeheader()
    faces = read_boxes(args.boxes) if args.boxes else args.faces
    drawn = annotation_paths(files, Path(args.annotate)) if args.annotate else None
    failed = 0
    for row in predict_files(predictor, progress, faces, args.attention, args.every, drawn):
        failed += bool(row["error"]) and not row["error"].endswith("no face found")
        if writer is None:
            stream.write(json.dumps(row) + "\n")
        else:
            if args.attention:
                row["attention"] = " ".join(map(str, row.get("attention", [])))
            writer.writerow(row)
        progress.count(row)
    return failed


class _Terminated(Exception):
    """SIGTERM, raised where ``dacl predict`` is, so that it stops as on Ctrl-C."""


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise _Terminated


def _stopped(progress: Progress, pending: Pending | None, signum: int) -> NoReturn:
    """Ctrl-C or SIGTERM: one line saying how many rows were written and where; exit status
    128 + the signal's number (130, 143)."""
    progress.close()
    if pending is None:
        where = f"{progress.rows:,} rows written to stdout"
    elif progress.rows:
        pending.file.close()
        where = f"{progress.rows:,} rows kept in '{pending.path}', '{pending.target}' untouched"
    else:
        pending.discard()
        where = f"no rows yet, '{pending.target}' untouched"
    what = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    print(f"dacl predict: stopped ({what}): {where}", file=sys.stderr)
    sys.exit(128 + signum)


def main(argv: list[str]) -> None:
    """``dacl predict --ckpt_path FILE PATH...``: a row per picture, as CSV or JSON lines, on
    stdout or into ``--out`` (written beside it, renamed into place when complete; Ctrl-C keeps
    the rows so far beside it, as does SIGTERM). Exit status 1 when a picture could not be read
    (its row says why; the others are predicted), 2 for a usage error, 130 after Ctrl-C, 143
    after SIGTERM."""
    args = _parser().parse_args(argv)
    if not args.paths:
        raise DACLError(
            "dacl predict takes pictures, videos, folders or globs; a dataset split's "
            "predictions: dacl predict_split --config C --ckpt_path X"
        )
    if args.every < 1 or args.batch_size < 1:
        raise DACLError("--every and --batch_size must be at least 1")
    files = expand(args.paths)
    if not files:
        raise DACLError(f"no pictures found in {', '.join(args.paths)}")
    if args.annotate:  # output paths checked before the model loads
        check_folder(Path(args.annotate), "--annotate folder")
    pending = Pending(args.out, "--out") if args.out else None
    progress = Progress(files, sys.stderr)
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        failed = write_rows(args, files, progress, pending.file if pending else sys.stdout)
    except KeyboardInterrupt:
        _stopped(progress, pending, signal.SIGINT)
    except _Terminated:
        _stopped(progress, pending, signal.SIGTERM)
    except BaseException:
        if pending is not None:
            pending.discard()
        raise
    finally:
        signal.signal(signal.SIGTERM, before)
    if pending is not None and pending.commit():
        print(f"dacl predict: replaced the earlier '{args.out}'", file=sys.stderr)
    if failed:
        print(f"dacl predict: {failed} of {len(files)} files could not be read", file=sys.stderr)
        sys.exit(1)
