"""``dacl demo``: the page answers as :class:`dacl.Predictor` does, through Gradio's client and a
real browser, says what went wrong with a bad upload and goes on serving, and keeps everything on
the machine."""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacl import DACLError, Predictor, pretrained
from dacl.classes import FER2013_CLASSES
from dacl.data.synthetic import make_faces

pytest.importorskip("gradio")
from gradio_client import Client, handle_file

from dacl.demo import answer, check_picture, heat_map, model_line, serving

REPO = Path(__file__).resolve().parents[1]
#: Where two synthetic faces are pasted, 3 times FER2013's size, for OpenCV to find them.
PASTED = ((40, 40, 144, 144), (264, 40, 144, 144))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint, tmp_path_factory):
    """The shared two-step run saved as a weights pair, a one-face picture and a two-face
    photo."""
    folder = tmp_path_factory.mktemp("demo")
    pair = folder / "tiny.json"
    pretrained.save(tiny_checkpoint[0], pair, metrics={"val": {"acc": 0.5, "balanced_acc": 0.25}})
    faces, _ = make_faces(8, seed=0)
    Image.fromarray(faces[3]).save(folder / "face.png")
    photo = np.full((224, 448), 200, np.uint8)
    for face, (x, y, w, h) in zip(faces[[1, 7]], PASTED, strict=True):
        photo[y : y + h, x : x + w] = np.asarray(Image.fromarray(face).resize((w, h)))
    Image.fromarray(photo).save(folder / "two.png")
    return pair, folder / "face.png", folder / "two.png"


@pytest.fixture(scope="module")
def page(tiny):
    """The page served on a free local port, every outbound connection recorded: ``(page,
    predictor, remote)``, where ``remote`` lists the connections to other machines."""
    remote: list[object] = []
    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0].split("%")[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:  # a host name
                loopback = host == "localhost"
            if not loopback:
                remote.append(address)
                raise OSError(f"the demo must not connect to {address}")
        return connect(sock, address)

    predictor = Predictor.load(tiny[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded)
        with serving(predictor, model_line(str(tiny[0]), predictor), port=_free_port()) as served:
            yield served, predictor, remote


def _predict(client: Client, picture: Path, faces: str = "crop") -> tuple:
    return client.predict(handle_file(str(picture)), faces, api_name="/predict")


def test_the_page_labels_a_picture_as_predictor_does(page, tiny):
    served, predictor, remote = page
    client = Client(served.local_url, verbose=False, download_files=False)
    labelled, probs, heat, face, status, *_ = _predict(client, tiny[1])
    want = predictor(tiny[1])
    assert probs["label"] == want.labels[0] and status.startswith("1 face found: ")
    got = {c["label"]: c["confidence"] for c in probs["confidences"]}
    assert got == pytest.approx(dict(zip(want.class_names, want.probs[0].tolist(), strict=True)))
    assert want.labels[0] in status
    for image in (labelled, heat):  # served from the temporary folder
        assert Path(image["path"]).is_relative_to(os.environ["GRADIO_TEMP_DIR"])
    assert Image.open(heat["path"]).size == (32 * 12, 16 * 12 + 16)  # and its range below
    # two faces found: each labelled, the second one's probabilities on request
    _, probs, _, face, status, *_ = _predict(client, tiny[2], "detect")
    want = predictor(tiny[2], faces="detect")
    assert len(want.labels) == 2 and status.startswith("2 faces found: ")
    assert [c[0] for c in face["choices"]] == [f"{i + 1}: {x}" for i, x in enumerate(want.labels)]
    second = client.predict(1, api_name="/face")[0]
    assert second["label"] == want.labels[1]
    assert remote == []


def test_bad_uploads_get_a_message_and_the_page_goes_on(page, tiny, tmp_path, monkeypatch):
    served, predictor, _ = page
    client = Client(served.local_url, verbose=False, download_files=False)
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    labelled, probs, _, _, status, *_ = _predict(client, text)
    assert (
        labelled is None
        and probs == {}
        and status == "⚠️ 'notes.png' is not a picture (PNG, JPEG, WebP, ...)"
    )
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(wall)
    status = _predict(client, wall, "detect")[4]
    assert status.startswith("⚠️ no face found in 'wall.png'")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # as if the picture were huge
    for side in (150, 300):  # Pillow's DecompressionBombWarning, then its Error
        Image.fromarray(np.zeros((side, side), np.uint8)).save(tmp_path / "huge.png")
        status = _predict(client, tmp_path / "huge.png")[4]
        assert status == "⚠️ 'huge.png' is too large: at most 0 megapixels"
    monkeypatch.undo()
    assert _predict(client, tiny[1])[1]["label"] == predictor(tiny[1]).labels[0]


def test_a_picture_without_a_face_says_so_with_ten_crop_views(tiny, tmp_path):
    """The shipped model's default: ten views a face. No face found is the status line, and
    every output is cleared, not a server error that leaves the last picture's answer."""
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(tmp_path / "wall.png")
    predictor = Predictor.load(tiny[0], tta="crops")
    upload = {"path": str(tmp_path / "wall.png"), "orig_name": "my wall.png"}
    with pytest.warns(UserWarning, match="no face found"):  # Gradio's toast, outside a page
        labelled, probs, heat, face, status, rows = answer(predictor, upload, "detect")
    assert (labelled, probs, heat, rows) == (None, {}, None, [])
    assert face["choices"] == [] and face["value"] is None
    assert status == "⚠️ no face found in 'my wall.png': try 'The whole picture is one face'"
    status = answer(predictor, upload, "crop")[4]
    assert status.startswith("1 face found: ")


def test_an_address_the_page_cannot_have_is_one_line_with_the_reason():
    from dacl.demo import check_address

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DACLError, match=f"127.0.0.1:{port} \\(Address already in use\\)"):
            check_address("127.0.0.1", port)
    check_address("127.0.0.1", port)  # free again
    # TEST-NET-1, an address of no machine: refused without asking a name server
    with pytest.raises(DACLError, match=r"192\.0\.2\.1:8080 \(Cannot assign requested address"):
        check_address("192.0.2.1", 8080)
    # a port past 65535: the resolver would wrap it round to another port
    with pytest.raises(DACLError, match=r"--port must be in 1\.\.65535, got 99999"):
        check_address("127.0.0.1", 99999)


def test_uploads_stay_in_a_temporary_folder_removed_at_exit(tiny, tmp_path):
    predictor = Predictor.load(tiny[0])
    before = os.environ.get("GRADIO_TEMP_DIR")
    with serving(predictor, "tiny", port=_free_port()) as served:
        folder = Path(os.environ["GRADIO_TEMP_DIR"])
        assert served.local_url.startswith("http://127.0.0.1:")
        busy = served.server_port
        with (
            pytest.raises(DACLError, match=f"cannot serve on 127.0.0.1:{busy}"),
            serving(predictor, "again", port=busy),
        ):
            pass
        client = Client(served.local_url, verbose=False, download_files=False)
        _predict(client, tiny[1])
        uploads = list(folder.rglob("face.png"))
        examples = sorted((folder / "examples").iterdir())
        assert uploads and [p.stem for p in examples] == sorted(FER2013_CLASSES)
        assert all(len(predictor(p, faces="detect").labels) == 1 for p in examples)
    assert not folder.exists() and os.environ.get("GRADIO_TEMP_DIR") == before
    assert not (Path.cwd() / ".gradio").exists()


def test_the_model_line_names_the_model_and_its_accuracy(tiny, tmp_path):
    predictor = Predictor.load(tiny[0])
    line = model_line(str(tiny[0]), predictor)
    assert line.startswith(
        "Model: `tiny`, val accuracy 0.500, val balanced accuracy 0.250 (1 view, tta none);"
    )
    line = model_line(str(tiny[0]), Predictor.load(tiny[0], tta="flip"))  # not measured so
    assert line.startswith("Model: `tiny`, accuracy not measured (2 views, tta flip);")
    line = model_line(str(tmp_path / "run" / "best.ckpt"), predictor)
    assert line.startswith("Model: the checkpoint `best.ckpt`, accuracy not measured (1 view,")
    # the shipped model serves its config's ten-crop: the line quotes the ten-crop measure
    crops = pretrained.read_config()["metrics"]["val_tta_crops"]
    assert model_line(None, Predictor.from_pretrained()).startswith(
        "Model: `dacl_fer2013` (shipped with dacl), val accuracy "
        f"{crops['acc']:.3f}, val balanced accuracy {crops['balanced_acc']:.3f} (10 views, tta "
        "crops); classes: angry, disgust,"
    )
    # a fixed 0-1 scale: weights of 0.47-0.51 are drawn nearly alike, 0 and 1 far apart, and
    # their range is written below the map (16 px)
    picture = heat_map(np.linspace(0.47, 0.51, 512))
    assert picture.shape == (16 * 12 + 16, 32 * 12, 3)
    cells = picture[: 16 * 12].reshape(-1, 3).astype(int)
    assert np.abs(cells - cells[0]).max() < 30
    ends = heat_map(np.r_[np.zeros(256), np.ones(256)])[: 16 * 12].reshape(-1, 3).astype(int)
    assert np.abs(ends[0] - ends[-1]).max() > 150
    assert (picture[16 * 12 :] < 128).any()  # the caption's text
    with pytest.raises(DACLError, match=r"'x\.png' is not a picture"):
        check_picture(str(tmp_path / "missing.png"), "x.png")


def test_without_gradio_the_import_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    monkeypatch.delitem(sys.modules, "dacl.demo")
    with pytest.raises(
        DACLError, match=r"^the demo page needs Gradio: pip install 'dacl\[demo\]'$"
    ):
        importlib.import_module("dacl.demo")


def test_a_stop_while_the_page_starts_is_a_clean_stop(tiny, tmp_path, monkeypatch, capsys):
    """SIGTERM or Ctrl-C that lands while Gradio still starts (it checks its own URL before
    launch returns) stops the demo as one later would: no traceback, the folder removed."""
    import gradio as gr

    from dacl import demo

    def launch_then_stopped(self, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gr.Blocks, "launch", launch_then_stopped)
    monkeypatch.setattr(demo.tempfile, "tempdir", str(tmp_path))
    before = signal.getsignal(signal.SIGTERM)
    try:
        demo.main(["--ckpt_path", str(tiny[0]), "--port", str(_free_port())])
    except KeyboardInterrupt:  # raised on, it would stop the whole test session
        pytest.fail("a stop while the page starts escaped dacl demo")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert capsys.readouterr().err.endswith("dacl demo: stopped; uploads removed\n")
    assert not list(tmp_path.glob("dacl-demo-*"))


@pytest.mark.slow
def test_dacl_demo_serves_until_sigterm_then_removes_its_folder(tiny, tmp_path):
    port = _free_port()
    command = "import sys; from dacl.demo import main; main(sys.argv[1:])"
    server = subprocess.Popen(
        [sys.executable, "-c", command, "--ckpt_path", str(tiny[0]), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where its temporary folder goes
    )  # fmt: skip
    shown: list[str] = []  # stdout read before the stop
    try:
        deadline = time.monotonic() + 600  # Gradio's import alone takes minutes on a busy CPU
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    assert b"dacl demo" in answer.read()
                break
            except OSError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "the demo never answered"
                time.sleep(0.5)
        assert len(list(tmp_path.glob("dacl-demo-*/examples/*.png"))) == 7
        # The page answers a moment before main() prints where it serves; a SIGTERM in between
        # is a clean stop without that line, so wait for it (EOF ends the wait if it dies).
        for line in server.stdout:
            shown.append(line)
            if "Serving on" in line:
                break
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    out = "".join(shown) + out
    assert f"Serving on http://127.0.0.1:{port}/" in out and "Model: tiny, val accuracy" in out
    assert "uploads removed" in err and not list(tmp_path.iterdir())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None or shutil.which("chromedriver") is None,
    reason="no chromium and chromedriver (apt-get install chromium chromium-driver)",
)
def test_a_browser_uploads_a_picture_and_sees_its_labels(page, tiny, tmp_path):
    pytest.importorskip("selenium", reason="the browser test needs selenium (the dev extra)")
    spec = importlib.util.spec_from_file_location("shot", REPO / "benchmarks/demo_screenshot.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    served, predictor, remote = page
    shown = shot.drive(served.local_url, tiny[2], "detect", tmp_path / "page.png")
    want = predictor(tiny[2], faces="detect")
    assert shown["labels"] == want.labels and shown["top"] == want.labels[0]
    assert shown["remote"] == [] and remote == []  # the page loaded nothing from elsewhere
    assert Image.open(tmp_path / "page.png").size[0] == shot.WIDTH
    # with no upload: the examples (synthetic faces), found by OpenCV or taken whole
    folder = Path(os.environ["GRADIO_TEMP_DIR"]) / "examples"
    for example, faces in ((2, "detect"), (5, "crop")):
        shown = shot.drive(served.local_url, example, faces)
        picture = folder / f"{FER2013_CLASSES[example]}.png"
        assert shown["labels"] == predictor(picture, faces=faces).labels
        assert shown["status"].startswith("1 face found: ")
