"""``dacl demo``: a web page to try a model on pictures and webcam snapshots, served by Gradio.

    pip install 'dacl[demo]'
    dacl demo                                    # the shipped model on http://127.0.0.1:7860
    dacl demo --ckpt_path best.ckpt --tta flip --port 8080

The page answers as ``dacl predict`` does — through :class:`~dacl.predictor.Predictor`, with the
faces found by OpenCV or the whole picture taken as one face — and only lays the answer out: the
picture with each face boxed and labelled, the class probabilities and the 512 attention weights
of the face picked, and which model is served. Synthetic faces (:mod:`dacl.data.synthetic`) are
offered as examples, so the page works with no upload.

Nothing leaves the machine: the server listens on 127.0.0.1 unless ``--host`` says otherwise,
Gradio's analytics, share links and run history are off, the page loads no remote fonts or
scripts, and uploads are kept only in a temporary folder removed when the server stops.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import signal
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from dacl import pretrained
from dacl.classes import FER2013_CLASSES
from dacl.data.synthetic import make_faces
from dacl.errors import DACLError
from dacl.pictures import BOX, annotate, detect_faces, load_picture
from dacl.predictor import Predictor, add_model_options, chosen_model

try:
    import gradio as gr
except ImportError:
    raise DACLError("the demo page needs Gradio: pip install 'dacl[demo]'") from None

#: Largest upload Gradio accepts; the browser is told so before sending more.
MAX_FILE_SIZE = "20mb"
#: Side of the example faces on the page: FER2013's 48 px, enlarged 4 times to be seen.
EXAMPLE_SIDE = 192
#: Pixels per attention weight in the heat map.
HEAT_SCALE = 12
#: The switch's choices: ``dacl predict --faces detect|crop``.
FACES = {"Find the faces (OpenCV)": "detect", "The whole picture is one face": "crop"}


def model_line(ckpt_path: str | None, predictor: Predictor) -> str:
    """Markdown naming the model served, its validation accuracy with the test-time views in
    use (a pair's config says it; a checkpoint is named by its file) and its classes."""
    shipped = ckpt_path is None or ckpt_path in pretrained.shipped_names()
    if shipped or Path(ckpt_path).suffix in (".json", ".safetensors"):
        config = pretrained.read_config(ckpt_path)
        name = f"`{config['name']}`" + (" (shipped with dacl)" if shipped else "")
    else:
        config, name = {}, f"the checkpoint `{Path(ckpt_path).name}`"
    scores = pretrained.scores(config, predictor.tta)
    return f"Model: {name}, {scores}; classes: {', '.join(predictor.class_names)}."


def write_examples(folder: Path, seed: int = 0) -> list[Path]:
    """One synthetic face per FER2013 class as ``folder/CLASS.png``, enlarged for the page: the
    first of its class that OpenCV finds (where it is installed), so that an example works with
    either setting of the faces switch."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = make_faces(20 * len(FER2013_CLASSES), seed)
    detect = importlib.util.find_spec("cv2") is not None
    paths = []
    for index, name in enumerate(FER2013_CLASSES):
        side = (EXAMPLE_SIDE, EXAMPLE_SIDE)
        faces = [Image.fromarray(images[i]) for i in np.flatnonzero(labels == index)]
        faces = [face.resize(side, Image.Resampling.BICUBIC) for face in faces]
        found = (face for face in faces if not detect or len(detect_faces(face)) == 1)
        paths.append(folder / f"{name}.png")
        next(found, faces[0]).save(paths[-1])
    return paths


def heat_map(attention: np.ndarray) -> np.ndarray:
    """The attention weights as a colour image on the fixed scale 0 (dark) to 1 (yellow) of
    viridis, as the report draws them, so that weights of 0.47–0.51 look alike and not like a
    strong selection; laid out as the squarest grid of twice as many columns as rows that holds
    them (512: 16 × 32), with their range written below."""
    rows = max(r for r in range(1, math.isqrt(attention.size // 2) + 1) if attention.size % r == 0)
    grid = attention.reshape(rows, -1).astype(np.float64)
    rgb = (matplotlib.colormaps["viridis"](grid.clip(0, 1))[..., :3] * 255).astype(np.uint8)
    picture = Image.fromarray(rgb.repeat(HEAT_SCALE, 0).repeat(HEAT_SCALE, 1))
    framed = ImageOps.expand(picture, border=(0, 0, 0, 16), fill="white")
    caption = f"weights {grid.min():.3f} to {grid.max():.3f}; colour scale 0 (dark) to 1 (yellow)"
    ImageDraw.Draw(framed).text((4, picture.height + 3), caption, fill="black")
    return np.asarray(framed)


def check_picture(path: str, name: str) -> None:
    """One-line :class:`DACLError` for a file that is not a picture, or larger than Pillow's
    decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``); reads only the header."""
    try:  # the page predicts one picture at a time, so this filter disturbs no other request
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.open(path).close()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DACLError(
            f"'{name}' is too large: at most {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DACLError(f"'{name}' is not a picture (PNG, JPEG, WebP, ...)") from None


def _face(row: dict[str, Any]) -> tuple[dict[str, float], np.ndarray]:
    """One face's probabilities for ``gr.Label`` and its attention heat map."""
    return row["probs"], heat_map(np.asarray(row["attention"]))


def _nothing(status: str) -> tuple[Any, ...]:
    """The outputs of :func:`answer` with no faces to show, and a status line."""
    if status:
        gr.Warning(status)
    cleared = gr.update(choices=[], value=None, interactive=False)
    return None, {}, None, cleared, f"⚠️ {status}" if status else "", []


def answer(
    predictor: Predictor, picture: dict[str, Any] | None, faces: Literal["crop", "detect"]
) -> tuple:
    """The page's outputs for an upload (:func:`build`'s ``/predict``): the picture labelled,
    the first face's probabilities and attention, the list of faces, the status line and every
    face's row; a picture without a face, or a bad file, clears them and says so. Gradio hands
    the upload over unopened (``preprocess=False``), so that a file that is not a picture gets a
    message here rather than a stack trace in Gradio."""
    path = picture.get("path") if isinstance(picture, dict) else None
    if not path:
        return _nothing("")
    name = picture.get("orig_name") or Path(path).name
    try:
        check_picture(path, name)
        image = load_picture(path)
        out = predictor(image, faces=faces)
    except DACLError as err:
        return _nothing(str(err).replace(path, name))
    if not out.labels:
        return _nothing(f"no face found in '{name}': try '{list(FACES)[1]}'")
    rows = [
        {
            **dict(zip(BOX, box, strict=True)),
            "prediction": label,
            "confidence": float(confidence),
            "probs": dict(zip(out.class_names, map(float, probs), strict=True)),
            "attention": attention.tolist(),
        }
        for box, label, confidence, probs, attention in zip(
            out.boxes, out.labels, out.confidence, out.probs, out.attention, strict=True
        )
    ]
    several = len(rows) > 1  # then faces are numbered, on the picture and in the list
    names = [r["prediction"] for r in rows]
    names = [f"{i + 1}: {n}" for i, n in enumerate(names)] if several else names
    drawn = annotate(image, [{**r, "prediction": n} for r, n in zip(rows, names, strict=True)])
    picked = gr.update(choices=[(n, i) for i, n in enumerate(names)], value=0, interactive=several)
    status = " · ".join(f"{n} {r['confidence']:.2f}" for n, r in zip(names, rows, strict=True))
    status = f"{len(rows)} face{'s' if several else ''} found: {status}"
    return drawn, *_face(rows[0]), picked, status, rows


def build(predictor: Predictor, description: str, examples: list[Path]) -> gr.Blocks:
    """The page: a picture in; the picture with its faces labelled, and the face picked's
    probabilities and attention weights out. Its prediction endpoint is ``/predict``."""

    def predict(picture: dict[str, Any] | None, faces: Literal["crop", "detect"]) -> tuple:
        """``/predict``: :func:`answer` with the page's model."""
        return answer(predictor, picture, faces)

    def show(index: int | None, rows: list[dict[str, Any]]) -> tuple:
        """The probabilities and attention of the face picked in the list."""
        if index is None or not 0 <= int(index) < len(rows):
            return {}, None
        return _face(rows[int(index)])

    detect = importlib.util.find_spec("cv2") is not None
    shown = ["download", "fullscreen"]  # no "share": it would upload to Hugging Face
    with gr.Blocks(title="dacl demo", analytics_enabled=False) as page:
        gr.Markdown(
            f"# Facial expressions with DACL\n{description} Pick a face to see its class "
            "probabilities and the 512 attention weights of its features (16 × 32; dark: 0, "
            "yellow: 1, their range written below)."
        )
        with gr.Row():
            with gr.Column():
                picture = gr.Image(
                    sources=["upload", "webcam"], type="filepath", label="Picture",
                    buttons=["fullscreen"], elem_id="picture",
                )  # fmt: skip
                faces = gr.Radio(
                    [(k, v) for k, v in FACES.items()], value="detect" if detect else "crop",
                    label="Faces", elem_id="faces",
                )  # fmt: skip
                gr.Examples(
                    [str(p) for p in examples], picture, examples_per_page=len(examples),
                    label="Synthetic faces (drawn, not people): click one", elem_id="examples",
                )  # fmt: skip
            with gr.Column():
                labelled = gr.Image(
                    label="Faces found", format="png", interactive=False, buttons=shown
                )
                status = gr.Markdown(elem_id="status")
                face = gr.Dropdown([], label="Face", interactive=False, elem_id="face")
                with gr.Row():
                    probs = gr.Label(label="Probabilities", elem_id="probs")
                    heat = gr.Image(
                        label="Attention weights",
                        format="png", interactive=False, buttons=shown, elem_id="attention",
                    )  # fmt: skip
        rows = gr.State([])
        gr.on(
            [picture.change, faces.change], predict, [picture, faces],
            [labelled, probs, heat, face, status, rows], preprocess=False, api_name="predict",
            trigger_mode="always_last",  # the latest picture and switch are answered
        )  # fmt: skip
        face.input(show, [face, rows], [probs, heat], api_name="face")
    return page


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables set for the block's duration (Gradio reads its settings there)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_address(host: str, port: int) -> None:
    """One line, with the system's reason, for an address the page cannot be served on: a host
    name that does not resolve, an address that is not this machine's, a port in use (Gradio's
    own error says only that the port is taken). The test socket is closed at once."""
    if not 1 <= port <= 65535:  # the resolver would wrap it round to another port
        raise DACLError(f"--port must be in 1..65535, got {port}")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            probe.bind(address)
    except OSError as err:
        raise DACLError(f"cannot serve on {host}:{port} ({err.strerror or err})") from None


@contextlib.contextmanager
def serving(
    predictor: Predictor, description: str, host: str = "127.0.0.1", port: int = 7860
) -> Iterator[gr.Blocks]:
    """The page served in background threads while the block runs. Uploads, the examples and
    Gradio's files are kept in a temporary folder that is removed afterwards; no analytics, no
    run history (it would keep the pictures in the browser), no share link."""
    with (
        tempfile.TemporaryDirectory(prefix="dacl-demo-") as folder,
        _environ(
            GRADIO_TEMP_DIR=folder, GRADIO_ANALYTICS_ENABLED="False", GRADIO_RUN_HISTORY="False"
        ),
    ):
        check_address(host, port)
        page = build(predictor, description, write_examples(Path(folder) / "examples"))
        try:  # a stop while it starts closes what has started, too
            try:
                page.launch(
                    server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                    share=False, inbrowser=False, show_error=False, max_file_size=MAX_FILE_SIZE,
                    ssr_mode=False, mcp_server=False, pwa=False, enable_monitoring=False,
                    footer_links=["api"],
                )  # fmt: skip
            except OSError as err:
                raise DACLError(f"cannot serve on {host}:{port} ({err})") from None
            yield page
        finally:
            page.close(verbose=False)
            # Gradio makes an empty history folder in the system's temporary folder when it is
            # imported, before GRADIO_TEMP_DIR is ours: remove it if it is still empty
            shared = Path(tempfile.gettempdir()) / "gradio"
            for empty in (shared / "vibe_edit_history", shared):
                with contextlib.suppress(OSError):
                    empty.rmdir()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the server as Ctrl-C does, so that the temporary folder is removed."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> None:
    """``dacl demo``: serve the page until Ctrl-C (or SIGTERM)."""
    from dacl.usage import ProgramParser

    parser = ProgramParser(
        prog="dacl demo", description="A web page to try a model on pictures and webcam snapshots."
    )
    add_model_options(parser)
    parser.add_argument("--host", type=str, default="127.0.0.1", help="0.0.0.0: every network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    source = chosen_model(args)
    predictor = Predictor.load(source, args.tta, device=args.device)
    description = model_line(source, predictor)
    signal.signal(signal.SIGTERM, _interrupt)  # before serving: no window where it kills
    # Gradio's block_thread ends on Ctrl-C itself; a stop while the page starts ends here.
    with (
        contextlib.suppress(KeyboardInterrupt),
        serving(predictor, description, args.host, args.port) as page,
    ):
        model = description.replace("`", "")
        print(f"dacl demo: {model}\nServing on {page.local_url} (Ctrl-C stops)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"dacl demo: listening on {args.host}: whoever reaches it can use the page")
        page.block_thread()
    print("dacl demo: stopped; uploads removed", file=sys.stderr)
