"""Predictor (pictures → expressions) and `dacl export` (ONNX, TorchScript) of a tiny run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

from dacl import FER2013_CLASSES, DACLError, Predictor
from dacl import export as export_module


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


def test_unreadable_pictures_are_one_error_naming_the_file(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained[0])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DACLError, match=r"broken\.jpg': not a readable image"):
        predictor([tmp_path / "broken.jpg"])
    with pytest.raises(DACLError, match=r"missing\.png': no such file"):
        predictor(tmp_path / "missing.png")


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_batches_of_8_and_1(trained, tmp_path, kind):
    predictor = Predictor.from_checkpoint(trained[0])
    out = tmp_path / f"model.{kind}"
    result = export_module.export(predictor, out, kind, features=True)
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


def test_dacl_predict_on_a_folder_with_a_corrupt_file(trained, tmp_path, capsys):
    from dacl import predictor as predictor_module

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
        predictor_module.main(argv)
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
    predictor_module.main(["--ckpt_path", str(ckpt), str(folder / "0.png"), "--format", "jsonl",
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
    out = tmp_path / "annotated"
    out.mkdir()
    files = [video, tmp_path / "not_a_video.mp4"]
    rows = list(predict_files(predictor, files, "crop", every=2, annotate_to=out))
    assert [r["frame"] for r in rows[:3]] == [0, 2, 4]
    assert all(r["file"] == str(video) and r["width"] == 96 and not r["error"] for r in rows[:3])
    assert rows[3]["error"].endswith("not_a_video.mp4': not a readable video")
    drawn = sorted(p.name for p in out.iterdir())
    assert drawn == ["clip_frame0.png", "clip_frame2.png", "clip_frame4.png"]
    with Image.open(out / "clip_frame2.png") as im:
        assert im.size == (96, 96) and im.mode == "RGB"
        corner = np.asarray(im)[0, 0]  # the box is drawn along the picture's edge
        assert tuple(corner) == (255, 200, 0)


@pytest.mark.slow
def test_dacl_predict_exit_status(trained, tmp_path, capsys):
    """0 when every file was read, 1 (as a process) when one was not, 2 for a usage error."""
    import subprocess
    import sys

    from dacl import predictor as predictor_module

    ckpt, _, data, root = trained
    good = str(root / data.names("val")[0])
    predictor_module.main(["--ckpt_path", str(ckpt), good])  # returns: exit status 0
    assert capsys.readouterr().out.startswith("file,frame,x,y,width,height,prediction")
    with pytest.raises(DACLError, match="faces"):  # the dacl command: one line, exit status 2
        predictor_module.main(["--ckpt_path", str(ckpt), good, "--faces", "guess"])
    (tmp_path / "bad.png").write_bytes(b"nope")
    command = [sys.executable, "-m", "dacl", "predict", "--ckpt_path", str(ckpt), good]
    process = subprocess.run(
        [*command, str(tmp_path / "bad.png")], capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stdout.count("\n") == 3  # the header and a row for each file


def test_pictures_of_more_than_8_bits_are_read_at_their_real_brightness(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained[0])
    gray = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint16)
    Image.fromarray((gray * 257).astype(np.uint16)).save(tmp_path / "16bit.png")  # mode I;16
    Image.fromarray(gray.astype(np.float32) / 255, "F").save(tmp_path / "float.tif")
    for name in ("16bit.png", "float.tif"):
        face = predictor.faces([tmp_path / name])[0, 0].int()
        assert (face - torch.from_numpy(gray.astype(np.int32))).abs().max() <= 1, name


def test_every_frame_of_an_animated_picture_is_a_row(trained, tmp_path, capsys):
    from dacl import predictor as predictor_module

    frames = [Image.fromarray(np.full((48, 48), v, np.uint8)) for v in (20, 120, 220)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    predictor_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "anim.gif")])
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["frame"] for r in rows] == ["0", "1", "2"] and all(r["prediction"] for r in rows)


def test_a_picture_over_pillows_pixel_limit_is_one_line(trained, tmp_path, monkeypatch):
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2,304 pixels: a "bomb" now
    with pytest.raises(DACLError, match=r"big\.png': over 1,000 pixels"):
        Predictor.from_checkpoint(trained[0])(tmp_path / "big.png")


def test_boxes_from_your_own_detector(trained, tmp_path, capsys):
    from dacl import predictor as predictor_module

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
    predictor_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "photo.png"),
                           "--boxes", str(table)])  # fmt: skip
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [(r["x"], r["y"]) for r in rows] == [("0", "0"), ("40", "41")]
    assert [r["prediction"] for r in rows] == out.labels
    table.write_text("file,x,y\nphoto.png,0,0\n")
    with pytest.raises(DACLError, match="line 2: expected columns"):
        predictor_module.main(["--ckpt_path", str(trained[0]), str(tmp_path / "photo.png"),
                               "--boxes", str(table)])  # fmt: skip
