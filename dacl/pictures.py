"""Pictures in, faces out: reading photos, animated pictures and videos frame by frame, finding
the faces in them (the whole picture, OpenCV's Haar cascade, a detector of your own, or a CSV of
boxes), and drawing each face's box and prediction onto its picture.

Every failure to read a file is one :class:`~dacl.errors.DACLError` line naming it.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps

from dacl.data.layouts import IMAGE_SUFFIXES, eight_bit
from dacl.errors import DACLError
from dacl.outputs import by_real_path, check_folder, replacing

#: What a picture may be: a file path, a PIL image, or an array (:func:`array_picture`).
Picture = str | Path | Image.Image | np.ndarray
#: A face's box in its picture: ``(x, y, width, height)`` in pixels.
Box = tuple[int, int, int, int]
#: Where the faces of a picture are: ``crop`` (the whole picture is one face, as in FER2013),
#: ``detect`` (OpenCV's Haar cascade) or any detector, a function picture → boxes.
Faces = Literal["crop", "detect"] | Callable[[Image.Image], Sequence[Sequence[float]]]


def load_picture(picture: Picture) -> Image.Image:
    """A picture as a PIL image at 8 bits a channel (:func:`~dacl.data.layouts.eight_bit`),
    EXIF orientation applied; one-line :class:`DACLError` for a file that is missing, not an
    image, or larger than Pillow's decompression-bomb limit. An animated picture gives its
    first frame here; :func:`pictures_of` reads every frame."""
    if isinstance(picture, np.ndarray):
        return array_picture(picture)
    if isinstance(picture, Image.Image):
        return eight_bit(ImageOps.exif_transpose(picture))
    if not isinstance(picture, str | os.PathLike):
        raise DACLError(
            f"not a picture: {type(picture).__name__}; pass a file path, a PIL image or a "
            "numpy array (a tensor: .numpy(), channels last)"
        )
    if Path(picture).suffix.lower() in VIDEO_SUFFIXES:
        raise DACLError(
            f"'{picture}' is a video: a Predictor takes pictures; predict_files (dacl.predictor) "
            "and dacl predict read a video's frames"
        )
    with opened(picture) as im:
        return _upright_rgb(im)


def array_picture(array: np.ndarray) -> Image.Image:
    """An array as an 8-bit picture, by the rules a file's pixels follow: ``(H, W)`` gray or
    ``(H, W, 1|3|4)`` channels last; ``uint8`` as it is, ``uint16`` at 16 bits, floats in 0..1
    (or 0..255 when above 1), other integers in 0..255. Any other shape or range is one line."""
    a = array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) or 0 in a.shape:
        raise DACLError(
            f"a picture array must be (H, W) gray or (H, W, 3|4) channels last, got {array.shape}"
        )
    if a.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(a))
    if a.dtype.kind not in "uif":
        raise DACLError(f"a picture array must hold numbers, got {a.dtype}")
    if a.dtype == np.uint16:
        a = a / 257
    elif a.dtype.kind == "f" and np.nanmax(a) <= 1:
        a = a * 255
    if not (np.isfinite(a).all() and a.min() >= 0 and a.max() <= 255.5):
        raise DACLError(
            f"a picture array ({array.dtype}) must lie in 0..255 (floats: 0..1 or 0..255), "
            f"got {float(np.nanmin(array)):g}..{float(np.nanmax(array)):g}"
        )
    return Image.fromarray(np.ascontiguousarray(np.round(a).clip(0, 255).astype(np.uint8)))


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
    # Pillow's plugins fail on damaged or cut-short files in many ways (OSError, EOFError,
    # IndexError, TypeError, struct.error, ...); the body only decodes the file.
    except Exception as err:
        raise DACLError(f"'{path}': not a readable image ({err})") from None


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
    # FFmpeg's own lines about a file it cannot read: the file's error row says it once.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
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
    cv2 = _cv2()
    video = cv2.VideoCapture(str(path))
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
        _check_all_read(path, index, int(video.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        video.release()


def _check_all_read(path: Path, read: int, listed: int) -> None:
    """A video that ends before the frames its container lists (cut short or damaged) is a
    :class:`DACLError` after the frames read, not a silent loss. Some containers (Matroska,
    variable frame rates) list an estimate: a shortfall of 1 frame or 1 % passes."""
    if listed - read > max(1, listed // 100):
        raise DACLError(
            f"'{path}': only {read} of the {listed} frames its container lists could be read "
            "(the file is cut short or damaged)"
        )


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


def read_boxes(path: str | Path) -> dict[tuple[str, str], list[Box]]:
    """A CSV of face boxes from another detector: columns ``file``, ``x``, ``y``, ``width``,
    ``height`` (and ``frame`` for videos), a row per face → boxes by ``(file, frame)``."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
    except OSError as err:
        raise DACLError(f"--boxes '{path}': {err.strerror or err}") from None
    if missing := [k for k in ("file", *BOX) if k not in (reader.fieldnames or ())]:
        raise DACLError(
            f"--boxes '{path}' has no column {', '.join(missing)}: expected columns file, x, y, "
            "width, height (and frame)"
        )
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
    their suffix keep it (``face.jpg``, ``face.png``), so no picture overwrites another; a
    drawing that would replace an input picture is a :class:`DACLError`."""
    absolute = {path: Path(os.path.abspath(path)) for path in files}
    if not absolute:
        return {}
    common = os.path.commonpath([p.parent for p in absolute.values()])
    bare = {path: p.relative_to(common).with_suffix("") for path, p in absolute.items()}
    shared = Counter(bare.values())
    targets = {
        path: folder / (name.with_name(path.name) if shared[name] > 1 else name)
        for path, name in bare.items()
    }
    inputs = by_real_path(files)
    for target in targets.values():  # a drawing saved over an input picture would lose it
        if (drawn := os.path.realpath(f"{target}.png")) in inputs:
            raise DACLError(
                f"--annotate '{folder}' would draw over the input '{inputs[drawn]}': "
                "choose a folder apart from the pictures"
            )
    return targets


def save_drawn(picture: Image.Image, target: Path) -> None:
    """An annotated picture as PNG at ``target``, written beside it and renamed into place."""
    if not target.parent.is_dir():
        check_folder(target.parent, "--annotate folder")
    with replacing(target, "--annotate", binary=True) as pending:
        picture.save(pending.file, format="PNG")
