"""Predictor (pictures → expressions) and `dacl export` (ONNX, TorchScript) of a tiny run."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from dacl import FER2013_CLASSES, DACLError, Predictor
from dacl import export as export_module
from dacl.pictures import annotation_paths, pictures_of


@pytest.fixture
def trained(tiny_checkpoint):
    """The shared two-step run: (checkpoint, module, datamodule, data root)."""
    return tiny_checkpoint


def test_predictions_equal_the_module_on_the_evaluation_inputs(trained):
    ckpt, module, data, root = trained
    predictor = Predictor.from_checkpoint(ckpt)
    assert (predictor.crop, predictor.resize) == (32, 36)
    files = [root / name for name in data.names("val")[:10]]
    out = predictor(files)
    with torch.no_grad():
        logits, _, attention = module(data.inputs("val", torch.arange(10)))
    torch.testing.assert_close(out.probs, logits.softmax(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.attention, attention)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(10))
    assert set(out.labels) <= set(FER2013_CLASSES) and out.confidence.shape == (10,)
    assert out.labels == [FER2013_CLASSES[i] for i in logits.argmax(-1).tolist()]


def test_any_picture_becomes_a_fer2013_face(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained[0])
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    gray = np.asarray(Image.fromarray(rgb).convert("L").resize((48, 48), Image.Resampling.BILINEAR))
    upside_down = tmp_path / "rotated.png"  # stored rotated, with EXIF saying so
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotate 180
    Image.fromarray(rgb).rotate(180).save(upside_down, exif=exif)
    faces = predictor.faces([rgb, Image.fromarray(rgb), upside_down])
    assert faces.shape == (3, 1, 48, 48) and faces.dtype == torch.uint8
    for face in faces:
        assert torch.equal(face[0], torch.from_numpy(gray))
    out = predictor(rgb)
    assert out.probs.shape == (1, 7) and out.boxes == [(0, 0, 90, 120)] and out.pictures == [0]


def test_picture_arrays_of_any_number_type_read_as_their_8_bit_picture(trained):
    predictor = Predictor.from_checkpoint(trained[0])
    gray = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    same = [
        gray[..., None],
        gray.astype(np.int64),  # np.array of Python ints
        gray.astype(np.float32) / 255,  # floats in 0..1
        gray.astype(np.float64),  # floats in 0..255
        gray.astype(np.uint16) * 257,  # 16 bits
        np.repeat(gray[..., None], 3, axis=2),
    ]
    want = predictor.faces([gray])[0]
    for array in same:
        assert torch.equal(predictor.faces([array])[0], want), (array.dtype, array.shape)


@pytest.mark.parametrize(
    ("picture", "error"),
    [
        (
            np.zeros(5, np.uint8),
            r"must be \(H, W\) gray or \(H, W, 3\|4\) channels last, got \(5,\)",
        ),
        (np.zeros((8, 8, 2), np.uint8), r"channels last, got \(8, 8, 2\)"),
        (np.zeros((0, 8), np.uint8), r"got \(0, 8\)"),
        (np.full((8, 8), 300), r"array \(int64\) must lie in 0\.\.255 .*got 300\.\.300"),
        (np.full((8, 8), -0.5), r"array \(float64\) must lie in 0\.\.255"),
        (np.full((8, 8), np.nan), r"must lie in 0\.\.255"),
        (np.ones((8, 8), bool), r"must hold numbers, got bool"),
        (torch.zeros(48, 48, dtype=torch.uint8), r"not a picture: Tensor; .*\.numpy\(\)"),
        (3, r"not a picture: int; pass a file path, a PIL image or a numpy array"),
    ],
)
def test_what_is_not_a_picture_is_one_line(trained, picture, error):
    predictor = Predictor.from_checkpoint(trained[0])
    with pytest.raises(DACLError, match=error):
        predictor(picture)


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ({"tta": "bogus"}, r"^tta must be one of none, flip, crops, got 'bogus'"),
        ({"batch_size": 0}, r"^batch_size must be at least 1, got 0"),  # was torch's split error
    ],
)
def test_predictor_options_outside_their_choices_are_one_line(trained, option, error):
    with pytest.raises(DACLError, match=error):
        Predictor.from_checkpoint(trained[0], **option)


def test_unreadable_pictures_are_one_error_naming_the_file(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained[0])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DACLError, match=r"broken\.jpg': not a readable image"):
        predictor([tmp_path / "broken.jpg"])
    with pytest.raises(DACLError, match=r"missing\.png': no such file"):
        predictor(tmp_path / "missing.png")
    with pytest.raises(DACLError, match=r"clip\.mp4' is a video: .*predict_files"):
        predictor(tmp_path / "clip.mp4")  # was "not a readable image"
    # frames cut short: Pillow's GIF and TIFF plugins fail with IndexError and TypeError there
    frames = [Image.fromarray(np.random.default_rng(v).integers(0, 255, (32, 32), np.uint8))
              for v in range(10)]  # fmt: skip
    for name in ("cut.gif", "cut.tif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        whole = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(whole[: len(whole) // 2])
        with pytest.raises(DACLError, match=rf"{name}': not a readable image"):
            list(pictures_of(tmp_path / name))


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_batches_of_8_and_1(trained, tmp_path, kind):
    predictor = Predictor.from_checkpoint(trained[0])
    out = tmp_path / f"model.{kind}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = export_module.export(predictor, out, kind, features=True)
    notices = (torch.jit.TracerWarning, FutureWarning)  # PyTorch's, not about the file
    assert not [str(w.message) for w in caught if issubclass(w.category, notices)]
    assert result["max_abs_diff"] <= export_module.TOLERANCE
    assert result["outputs"] == ["logits", "attention", "features"]
    if kind == "onnx":
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}

        def run(x):
            return [torch.from_numpy(o) for o in session.run(None, {"images": x.numpy()})]
    else:
        files = {"dacl.json": ""}
        loaded = torch.jit.load(str(out), _extra_files=files)
        meta = json.loads(files["dacl.json"])

        def run(x):
            return list(loaded(x))

    assert meta["class_names"] == list(FER2013_CLASSES)
    assert (meta["crop"], meta["resize"]) == (32, 36) and meta["mean"] == pytest.approx([0.5077])
    assert meta["interpolation"] == "bilinear"  # bicubic inputs would change labels
    faces = torch.randint(0, 256, (11, 48, 48), dtype=torch.uint8)
    for batch in (faces[:8], faces[8:9]):
        x = predictor.inputs(batch)
        with torch.no_grad():
            logits, features, attention = predictor.module.net(x)
        for got, want in zip(run(x), (logits, attention, features), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_dacl_export_command(trained, tmp_path, capsys):
    out = tmp_path / "m.pt"
    export_module.main(
        ["--ckpt_path", str(trained[0]), "--format", "torchscript", "--out", str(out)]
    )
    assert out.is_file() and "torchscript model written to" in capsys.readouterr().out
    with pytest.raises(DACLError, match=r"dacl export: .*tflite; see dacl export --help"):
        export_module.main(["--ckpt_path", str(trained[0]), "--format", "tflite"])
    with pytest.raises(DACLError, match=r"none\.ckpt' not found"):
        export_module.main(["--ckpt_path", str(tmp_path / "none.ckpt")])
    # an --out that is the model's own file: refused before anything is written
    before = Path(trained[0]).read_bytes()
    with pytest.raises(DACLError, match=r"--out '.*' is one of the model's files: name another"):
        export_module.main(["--ckpt_path", str(trained[0]), "--out", str(trained[0])])
    assert Path(trained[0]).read_bytes() == before


def test_dacl_predict_on_a_folder_with_a_corrupt_file(trained, tmp_path, capsys):
    from dacl import predict as predict_module

    ckpt, module, data, root = trained
    folder = tmp_path / "photos"
    folder.mkdir()
    picked = [root / name for name in data.names("val")[:5]]
    for i, path in enumerate(picked):
        (folder / f"{i}.png").write_bytes(path.read_bytes())
    (folder / "2_corrupt.jpg").write_bytes(b"\xff\xd8 cut short")
    out = tmp_path / "rows.csv"
    argv = ["--ckpt_path", str(ckpt), str(folder), "--out", str(out), "--batch_size", "2"]
    with pytest.raises(SystemExit) as exit:
        predict_module.main(argv)
    assert exit.value.code == 1  # one picture unreadable: its row says so, the others are there
    assert "1 of 6 files could not be read" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["file"]).name for r in rows] == [
        *("0.png", "1.png", "2.png", "2_corrupt.jpg", "3.png", "4.png"),
    ]
    bad = rows.pop(3)  # in its place among the others
    assert "not a readable image" in bad["error"] and bad["prediction"] == ""
    probs = torch.tensor([[float(r[f"p_{c}"]) for c in FER2013_CLASSES] for r in rows[:5]])
    torch.testing.assert_close(probs.sum(-1), torch.ones(5), atol=5e-4, rtol=0)
    with torch.no_grad():
        expected = module(data.inputs("val", torch.arange(5)))[0].softmax(-1)
    torch.testing.assert_close(probs, expected, atol=1e-4, rtol=0)  # the CSV's 4 decimals
    assert [r["prediction"] for r in rows[:5]] == [FER2013_CLASSES[i] for i in expected.argmax(-1)]
    assert all(r["width"] == "48" and r["height"] == "48" for r in rows[:5])
    # JSON lines with the attention weights, on stdout
    predict_module.main(["--ckpt_path", str(ckpt), str(folder / "0.png"), "--format", "jsonl",
                         "--attention", "true"])  # fmt: skip
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert row["prediction"] == rows[0]["prediction"] and len(row["attention"]) == 512


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_detect_finds_each_face_of_a_photo(trained, tmp_path):
    from dacl.data.synthetic import make_faces
    from dacl.predictor import predict_files

    predictor = Predictor.from_checkpoint(trained[0])
    faces, _ = make_faces(8, seed=0)
    photo = np.full((224, 448), 200, np.uint8)  # two faces, 3x FER2013's size, on a background
    pasted = {1: (40, 40, 144, 144), 7: (264, 40, 144, 144)}
    for i, (x, y, w, h) in pasted.items():
        face = Image.fromarray(faces[i]).resize((w, h), Image.Resampling.BILINEAR)
        photo[y : y + h, x : x + w] = np.asarray(face)
    Image.fromarray(photo).save(tmp_path / "two.png")
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(tmp_path / "wall.png")
    rows = list(predict_files(predictor, [tmp_path / "two.png", tmp_path / "wall.png"], "detect"))
    assert len(rows) == 3
    boxes = [tuple(r[k] for k in ("x", "y", "width", "height")) for r in rows[:2]]
    for box, square in zip(sorted(boxes), pasted.values(), strict=True):
        assert _iou(box, square) > 0.5, (box, square)
    crops = [photo[y : y + h, x : x + w] for x, y, w, h in boxes]
    expected = predictor.predict_faces(torch.from_numpy(np.stack([
        np.asarray(Image.fromarray(c).resize((48, 48), Image.Resampling.BILINEAR)) for c in crops
    ])))  # fmt: skip
    assert [r["prediction"] for r in rows[:2]] == expected.labels
    assert rows[2]["error"].endswith("wall.png': no face found")
    # the same from Python: a row per face, with its box and its picture
    out = predictor([tmp_path / "two.png", tmp_path / "wall.png"], faces="detect")
    assert out.boxes == boxes and out.pictures == [0, 0] and out.labels == expected.labels
    assert predictor(tmp_path / "wall.png", faces="detect").probs.shape == (0, 7)


def test_video_frames_and_annotated_pictures(trained, tmp_path):
    import cv2

    from dacl.data.synthetic import make_faces
    from dacl.pictures import annotation_paths
    from dacl.predictor import predict_files

    predictor = Predictor.from_checkpoint(trained[0])
    faces, _ = make_faces(6, seed=1)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 96))
    for face in faces:
        big = np.asarray(Image.fromarray(face).resize((96, 96), Image.Resampling.BILINEAR))
        writer.write(np.repeat(big[..., None], 3, axis=2))
    writer.release()
    (tmp_path / "not_a_video.mp4").write_bytes(b"\x00" * 100)
    cut = tmp_path / "cut.avi"  # its header lists 6 frames; about half of them remain
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    out = tmp_path / "annotated"
    out.mkdir()
    files = [video, tmp_path / "not_a_video.mp4", cut]
    rows = list(
        predict_files(predictor, files, "crop", every=2, annotate_to=annotation_paths(files, out))
    )
    assert [r["frame"] for r in rows[:3]] == [0, 2, 4]
    assert all(r["file"] == str(video) and r["width"] == 96 and not r["error"] for r in rows[:3])
    assert rows[3]["error"].endswith("not_a_video.mp4': not a readable video")
    assert all(r["file"] == str(cut) and not r["error"] for r in rows[4:-1]) and len(rows) < 8
    assert "cut.avi': only " in rows[-1]["error"] and "of the 6 frames" in rows[-1]["error"]
    drawn = sorted(p.name for p in out.iterdir() if p.name.startswith("clip"))
    assert drawn == ["clip_frame0.png", "clip_frame2.png", "clip_frame4.png"]
    with Image.open(out / "clip_frame2.png") as im:
        assert im.size == (96, 96) and im.mode == "RGB"
        corner = np.asarray(im)[0, 0]  # the box is drawn along the picture's edge
        assert tuple(corner) == (255, 200, 0)


@pytest.mark.slow
def test_dacl_predict_exit_status(trained, tmp_path, capsys):
    """0 when every file was read, 1 (as a process) when one was not, 2 for a usage error,
    141 when its reader closed the pipe."""
    import subprocess
    import sys

    from dacl import predict as predict_module

    ckpt, _, data, root = trained
    good = str(root / data.names("val")[0])
    predict_module.main(["--ckpt_path", str(ckpt), good])  # returns: exit status 0
    assert capsys.readouterr().out.startswith("file,frame,x,y,width,height,prediction")
    with pytest.raises(DACLError, match="faces"):  # the dacl command: one line, exit status 2
        predict_module.main(["--ckpt_path", str(ckpt), good, "--faces", "guess"])
    (tmp_path / "bad.png").write_bytes(b"nope")
    command = [sys.executable, "-m", "dacl", "predict", "--ckpt_path", str(ckpt), good]
    process = subprocess.run(
        [*command, str(tmp_path / "bad.png")], capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stdout.count("\n") == 3  # the header and a row for each file
    # a reader that leaves early (| head): SIGPIPE's exit status, and no traceback
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader.stdout.close()  # before the first row: every write meets a closed pipe
    said = reader.stderr.read()
    assert reader.wait(timeout=300) == 128 + signal.SIGPIPE and "Error" not in said, said


@pytest.mark.parametrize(
    ("device", "expected"),
    [("gpu", "a device name (cpu, cuda, cuda:1, mps, ...)"), ("cuda:99", "); try cpu")],
)
def test_a_device_this_machine_lacks_is_one_line(trained, monkeypatch, capsys, device, expected):
    code, out, err = dacl_command(
        monkeypatch, capsys, "predict", "--ckpt_path", trained[0], trained[3], "--device", device
    )
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"dacl: error: device '{device}' is not "), line
    assert line.endswith(expected), line


def test_pictures_of_more_than_8_bits_are_read_at_their_real_brightness(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained[0])
    gray = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint16)
    Image.fromarray((gray * 257).astype(np.uint16)).save(tmp_path / "16bit.png")  # mode I;16
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(tmp_path / "float.tif")
    for name in ("16bit.png", "float.tif"):
        face = predictor.faces([tmp_path / name])[0, 0].int()
        assert (face - torch.from_numpy(gray.astype(np.int32))).abs().max() <= 1, name


def test_every_frame_of_an_animated_picture_is_a_row(trained, tmp_path, capsys):
    from dacl import predict as predict_module

    frames = [Image.fromarray(np.full((48, 48), v, np.uint8)) for v in (20, 120, 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    predict_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "anim.gif")])
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["frame"] for r in rows] == ["0", "1", "2"] and all(r["prediction"] for r in rows)


def test_a_picture_over_pillows_pixel_limit_is_one_line(trained, tmp_path, monkeypatch):
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2,304 pixels: a "bomb" now
    with pytest.raises(DACLError, match=r"big\.png': over 1,000 pixels"):
        Predictor.from_checkpoint(trained[0])(tmp_path / "big.png")


def test_boxes_from_your_own_detector(trained, tmp_path, capsys):
    from dacl import predict as predict_module

    predictor = Predictor.from_checkpoint(trained[0])
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 256, (96, 96), np.uint8))
    photo.save(tmp_path / "photo.png")
    boxes = [(0, 0, 48, 48), (40.4, 40.6, 80, 80)]  # the second runs off the picture: clipped
    out = predictor(photo, faces=lambda picture: boxes)
    assert out.boxes == [(0, 0, 48, 48), (40, 41, 56, 55)] and out.pictures == [0, 0]
    alone = predictor(photo.crop((40, 41, 96, 96)))
    torch.testing.assert_close(out.probs[1:], alone.probs)
    with pytest.raises(DACLError, match="no area inside"):
        predictor(photo, faces=lambda picture: [(100, 100, 5, 5)])
    with pytest.raises(DACLError, match="must be 4 numbers"):
        predictor(photo, faces=lambda picture: [(1, 2, 3)])
    # the same boxes as a CSV for the command, matched by file name
    table = tmp_path / "boxes.csv"
    table.write_text("file,x,y,width,height\nphoto.png,0,0,48,48\nphoto.png,40,41,56,55\n")
    predict_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "photo.png"),
                         "--boxes", str(table)])  # fmt: skip
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["x"], r["y"]) for r in rows] == [("0", "0"), ("40", "41")]
    assert [r["prediction"] for r in rows] == out.labels
    for text, error in [
        ("file,x,y,width,height\nphoto.png,0,0\n", "line 2: expected columns"),
        ("file,x,y\n", "has no column width, height: expected"),  # no rows: still an error
    ]:
        table.write_text(text)
        with pytest.raises(DACLError, match=error):
            predict_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "photo.png"),
                                 "--boxes", str(table)])  # fmt: skip
        assert capsys.readouterr().out == ""  # checked before the model loads or a row is out


# -- dacl predict's outputs: nothing lost, every bad path one line ---------------------------


@pytest.fixture
def pictures(trained, tmp_path) -> list[Path]:
    """Five validation faces of the shared run as files."""
    _, _, data, root = trained
    return [root / name for name in data.names("val")[:5]]


def dacl_command(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The ``dacl`` command in this process: its exit status, stdout and stderr."""
    from dacl.__main__ import main

    monkeypatch.setattr("sys.argv", ["dacl", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit:
        code = exit.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _stop_at_batch(monkeypatch, n: int, error: type[BaseException] | signal.Signals) -> None:
    """Predictions fail with ``error`` from the ``n``-th batch on (1-based); a signal is sent
    to this process once, at the ``n``-th batch, and handled where the program is."""
    calls = []
    real = Predictor.predict_faces

    def predict_faces(self, faces):
        calls.append(len(faces))
        if isinstance(error, signal.Signals):
            if len(calls) == n:
                os.kill(os.getpid(), error)
        elif len(calls) >= n:
            raise error("stopped")
        return real(self, faces)

    monkeypatch.setattr(Predictor, "predict_faces", predict_faces)


def test_out_replaces_an_existing_file_only_when_complete(
    trained, pictures, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "rows.csv"
    out.write_text("file,prediction\nold.png,happy\n")
    args = ("predict", "--ckpt_path", trained[0], *pictures, "--out", out, "--batch_size", "2")
    _stop_at_batch(monkeypatch, 2, RuntimeError)
    with pytest.raises(RuntimeError):  # a failure midway: the earlier file is whole
        dacl_command(monkeypatch, capsys, *args)
    assert out.read_text() == "file,prediction\nold.png,happy\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]  # no partial file left
    monkeypatch.undo()
    code, _, err = dacl_command(monkeypatch, capsys, *args)
    assert code == 0 and len(list(csv.DictReader(out.open()))) == 5
    assert err.strip().splitlines()[-1] == f"dacl predict: replaced the earlier '{out}'"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


@pytest.mark.parametrize(
    ("stop", "code", "what"),
    [(KeyboardInterrupt, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
)
def test_a_stop_keeps_the_rows_so_far_beside_an_untouched_out(
    trained, pictures, tmp_path, monkeypatch, capsys, stop, code, what
):
    out = tmp_path / "rows.csv"
    out.write_text("earlier rows\n")
    handler = signal.getsignal(signal.SIGTERM)
    _stop_at_batch(monkeypatch, 3, stop)
    exit_code, _, err = dacl_command(
        monkeypatch, capsys,
        "predict", "--ckpt_path", trained[0], *pictures, "--out", out, "--batch_size", "2",
    )  # fmt: skip
    assert exit_code == code and "Traceback" not in err
    (line,) = err.strip().splitlines()
    (kept,) = tmp_path.glob("rows.partial-*.csv")
    assert line == (f"dacl predict: stopped ({what}): 4 rows kept in '{kept}', '{out}' untouched")
    assert out.read_text() == "earlier rows\n" and signal.getsignal(signal.SIGTERM) is handler
    rows = list(csv.DictReader(kept.open()))
    assert [r["file"] for r in rows] == [str(p) for p in pictures[:4]]


def test_ctrl_c_on_stdout_says_how_many_rows_went_out(trained, pictures, monkeypatch, capsys):
    _stop_at_batch(monkeypatch, 2, KeyboardInterrupt)
    code, out, err = dacl_command(
        monkeypatch, capsys, "predict", "--ckpt_path", trained[0], *pictures, "--batch_size", "2"
    )
    assert code == 130 and len(out.splitlines()) == 1 + 2  # the header and the first batch
    assert err.strip() == "dacl predict: stopped (Ctrl-C): 2 rows written to stdout"


def _unwritable(monkeypatch, folder: Path) -> None:
    """Writing into ``folder`` fails as on a read-only mount, even for root."""
    import os
    import tempfile

    def refuse(path) -> None:
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(13, "Permission denied", str(path))

    real_open, real_temp = os.open, tempfile.TemporaryFile
    monkeypatch.setattr(os, "open", lambda path, *a, **k: refuse(path) or real_open(path, *a, **k))
    monkeypatch.setattr(
        tempfile,
        "TemporaryFile",
        lambda *a, dir=None, **k: refuse(dir) or real_temp(*a, dir=dir, **k),
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing folder", r"--out '\S+/missing/rows\.csv': no folder '\S+'; create it first"),
        ("a folder", r"--out '\S+/photos' is a folder; name a file in it"),
        ("read-only folder", r"--out '\S+/rows\.csv': cannot write in '\S+/ro' \(Perm.*\)"),
        ("read-only annotate", r"--annotate folder '\S+/ro/drawn' is not writable \(Perm.*\)"),
    ],
)  # fmt: skip
def test_a_bad_output_path_is_one_line_before_any_work(
    trained, pictures, tmp_path, monkeypatch, capsys, case, expected
):
    (tmp_path / "photos").mkdir()
    (tmp_path / "ro").mkdir()
    options = {
        "missing folder": ["--out", tmp_path / "missing" / "rows.csv"],
        "a folder": ["--out", tmp_path / "photos"],
        "read-only folder": ["--out", tmp_path / "ro" / "rows.csv"],
        "read-only annotate": ["--annotate", tmp_path / "ro" / "drawn"],
    }[case]
    _unwritable(monkeypatch, tmp_path / "ro")
    monkeypatch.setattr(Predictor, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, out, err = dacl_command(
        monkeypatch, capsys, "predict", "--ckpt_path", trained[0], pictures[0], *options
    )
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert re.fullmatch(f"dacl: error: {expected}", line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "ro"]


def test_annotated_pictures_of_files_sharing_a_name_are_all_kept(trained, tmp_path, capsys):
    from dacl import predict as predict_module
    from dacl.data.synthetic import make_faces

    faces, _ = make_faces(3, seed=0)
    files = [tmp_path / "a" / "face.jpg", tmp_path / "b" / "face.jpg", tmp_path / "b" / "face.png"]
    for face, path in zip(faces, files, strict=True):
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(face).resize((96, 96)).save(path)
    out = tmp_path / "drawn"
    predict_module.main(["--ckpt_path", str(trained[0]), *map(str, files), "--annotate", str(out)])
    drawn = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert drawn == ["a/face.png", "b/face.jpg.png", "b/face.png.png"]
    for path, name in zip(files, ["a/face.png", "b/face.jpg.png", "b/face.png.png"], strict=True):
        with Image.open(out / name) as im, Image.open(path) as original:
            assert im.size == original.size  # each file's own picture, with its labels
            assert np.asarray(im)[0, 0].tolist() == [255, 200, 0]
    assert len(list(csv.DictReader(capsys.readouterr().out.splitlines()))) == 3


def test_writing_over_an_input_picture_is_refused_before_any_work(
    trained, tmp_path, monkeypatch, capsys
):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("L", (48, 48), 90).save(pictures / "a.png")
    Image.new("L", (48, 48), 90).save(pictures / "b.jpg")  # its drawing, b.png, loses nothing
    before = (pictures / "a.png").read_bytes()
    (tmp_path / "link").symlink_to(pictures)
    for folder in (pictures, tmp_path / "link"):  # the same folder, by another path too
        code, out, err = dacl_command(
            monkeypatch, capsys, "predict", "--ckpt_path", trained[0], pictures, "--annotate",
            folder, "--out", tmp_path / "rows.csv",
        )  # fmt: skip
        assert code == 2 and out == "" and not (tmp_path / "rows.csv").exists()
        assert f"--annotate '{folder}' would draw over the input '{pictures / 'a.png'}'" in err
    # nor may the rows replace a picture
    code, _, err = dacl_command(
        monkeypatch, capsys, "predict", "--ckpt_path", trained[0], pictures, "--out",
        tmp_path / "link" / "a.png",
    )  # fmt: skip
    assert code == 2 and f"--out '{tmp_path / 'link' / 'a.png'}' is one of the pictures" in err
    assert (pictures / "a.png").read_bytes() == before
    assert annotation_paths([pictures / "b.jpg"], pictures) == {pictures / "b.jpg": pictures / "b"}


def test_progress_lines_when_stderr_is_not_a_terminal(trained, pictures, monkeypatch, capsys):
    from dacl import predict as predict_module

    monkeypatch.setattr(predict_module, "PROGRESS_EVERY", 0.0)  # a line for every row
    predict_module.main(["--ckpt_path", str(trained[0]), *map(str, pictures), "--batch_size", "2"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5
    for line, (done, faces) in zip(lines, [(2, 1), (2, 2), (4, 3), (4, 4), (5, 5)], strict=True):
        assert re.fullmatch(
            rf"dacl predict: {done}/5 files, {faces} faces, \d+\.\d faces/s", line
        ), line
