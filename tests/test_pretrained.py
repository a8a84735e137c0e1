"""Weights + config pairs (dacl.pretrained), the shipped model, and test-time augmentation."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from safetensors.torch import load_file

from dacl import DACLError, DACLModule, FER2013DataModule, Predictor, pretrained
from dacl.data.augment import eval_augment
from dacl.export import export
from dacl.predict import main as predict_main

REPO = Path(__file__).resolve().parents[1]
SHARED_VAL = REPO.parent / "shared" / "fer2013"


@pytest.fixture(scope="module")
def pair(tiny_checkpoint, tmp_path_factory):
    """The shared two-step run at 32 px crops of 36 px, as a checkpoint and a weights pair."""
    ckpt, _, data, root = tiny_checkpoint
    folder = tmp_path_factory.mktemp("pair")
    config = pretrained.save(ckpt, folder / "tiny.json", tta="flip", trained={"command": "test"})
    return ckpt, folder / "tiny.json", config, data, root


def test_a_pair_holds_the_run_in_fp16_and_says_how_to_use_it(pair):
    _, path, config, _, _ = pair
    weights = load_file(str(path.with_suffix(".safetensors")))
    assert config["sha256"] == pretrained.sha256(path.with_suffix(".safetensors"))
    assert weights["net.classifier.weight"].dtype == torch.float16
    assert "center_loss.centers" in weights and not any(k.startswith("val_") for k in weights)
    assert config["data"] | {"crop": 32, "resize": 36} == config["data"]
    assert config["model"]["class_names"] == list(DACLModule().class_names)
    assert json.loads(path.read_text()) == config


def test_a_save_that_fails_leaves_the_previous_pair_whole(pair, tmp_path, monkeypatch):
    ckpt = pair[0]
    pretrained.save(ckpt, tmp_path / "m.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(pretrained, "safetensors_bytes", lambda state: b"other weights")
    with pytest.raises(TypeError):  # a config that cannot be written, after new weights exist
        pretrained.save(ckpt, tmp_path / "m.json", trained={"when": object()})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert pretrained.load(tmp_path / "m.json")[0] is not None


def test_from_pretrained_equals_the_checkpoint_to_fp16_rounding(pair):
    ckpt, path, _, data, root = pair
    files = [root / name for name in data.names("val")[:8]]
    want = Predictor.from_checkpoint(ckpt)(files).probs
    got = Predictor.from_pretrained(path, tta="none")(files)
    torch.testing.assert_close(got.probs, want, atol=3e-3, rtol=0)


def test_pairs_load_without_pickle(pair, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load (pickle) used")

    monkeypatch.setattr(torch, "load", refuse)
    assert Predictor.from_pretrained(pair[1]).tta == "flip"


def test_weights_that_do_not_match_their_sha256_are_refused(pair, tmp_path):
    _, path, config, _, _ = pair
    weights = tmp_path / config["weights"]
    blob = bytearray(path.with_suffix(".safetensors").read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    (tmp_path / path.name).write_text(path.read_text())
    with pytest.raises(DACLError, match="do not match the SHA-256"):
        pretrained.load(tmp_path / path.name)
    with pytest.raises(DACLError, match="not found"):
        pretrained.load(tmp_path / "other.json")


def test_from_pretrained_equals_its_onnx_export(pair, tmp_path):
    predictor = Predictor.from_pretrained(pair[1], tta="none")
    result = export(predictor, tmp_path / "m.onnx", "onnx")
    assert result["tta"] == "none"
    faces = torch.randint(0, 256, (5, 1, 48, 48), dtype=torch.uint8)
    x = predictor.inputs(faces)
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    logits = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    torch.testing.assert_close(logits.softmax(-1), predictor.predict_faces(faces).probs)


def test_tta_views_are_the_crops_and_mirrors(pair):
    faces = torch.randint(0, 256, (3, 1, 48, 48), dtype=torch.uint8)
    single = eval_augment(faces, 32, 36)
    flip = eval_augment(faces, 32, 36, tta="flip")
    crops = eval_augment(faces, 32, 36, tta="crops")
    assert flip.shape == (3, 2, 1, 32, 32) and crops.shape == (3, 10, 1, 32, 32)
    torch.testing.assert_close(flip[:, 0], single)
    torch.testing.assert_close(flip[:, 1], single.flip(-1))
    torch.testing.assert_close(crops[:, 8], single)  # the center crop, unflipped


def test_tta_averages_the_views_softmax(pair):
    predictor = Predictor.from_pretrained(pair[1], tta="crops")
    faces = torch.randint(0, 256, (4, 1, 48, 48), dtype=torch.uint8)
    views = predictor.inputs(faces)
    with torch.no_grad():
        each = predictor.module(views.flatten(0, 1))[0].softmax(-1).view(4, 10, -1)
    torch.testing.assert_close(predictor.predict_faces(faces).probs, each.mean(1))


def test_tta_of_a_mirror_symmetric_face_equals_no_tta(pair):
    half = np.random.default_rng(0).integers(0, 256, (48, 24), dtype=np.uint8)
    face = np.concatenate([half, half[:, ::-1]], axis=1)  # symmetric about the middle
    plain = Predictor.from_pretrained(pair[1], tta="none")(face).probs
    flip = Predictor.from_pretrained(pair[1], tta="flip")(face).probs
    torch.testing.assert_close(flip, plain, atol=1e-5, rtol=1e-4)


def test_validation_with_tta_measures_the_predictors_tta(pair):
    ckpt, _, _, data, root = pair
    module = Predictor.from_checkpoint(ckpt).module
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    views = FER2013DataModule(str(root), crop=32, resize=36, batch_size=16, tta="crops")
    got = trainer.validate(module, views, verbose=False)[0]["val/acc"]
    labels = data.labels("val")
    faces = data.faces("val", torch.arange(len(labels)))
    probs = Predictor.from_checkpoint(ckpt, tta="crops").predict_faces(faces).probs
    assert got == pytest.approx((probs.argmax(-1) == labels).double().mean().item())
    with pytest.raises(DACLError, match=r"data\.tta"):
        FER2013DataModule(str(root), tta="ten")


# -- the shipped model -------------------------------------------------------------------


def test_the_shipped_weights_match_their_config():
    config = pretrained.read_config()
    weights = pretrained.SHIPPED.with_name(config["weights"])
    assert weights.stat().st_size <= 45 * 2**20
    assert pretrained.sha256(weights) == config["sha256"]
    state = load_file(str(weights))
    module, _ = pretrained.load()
    assert module.class_names == tuple(config["model"]["class_names"])
    assert state["net.classifier.weight"].shape == (len(module.class_names), 512)
    assert config["data"]["crop"] == module.hparams.image_size
    assert {"acc", "balanced_acc", "f1_macro"} <= set(config["metrics"]["val"])


def test_dacl_predict_without_a_checkpoint_uses_the_shipped_model(tmp_path, capsys):
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48), np.uint8)).save(face)
    predict_main([str(face)])
    out, err = capsys.readouterr()
    header, row = out.strip().splitlines()
    want = Predictor.from_pretrained()(face)
    assert row.split(",")[header.split(",").index("prediction")] == want.labels[0]
    # the accuracy quoted is the one of the evaluation in use: the config's ten-crop by default
    metrics = pretrained.read_config()["metrics"]
    assert want.probs.shape == (1, 7) and Predictor.from_pretrained().tta == "crops"
    crops, single = metrics["val_tta_crops"], metrics["val"]
    assert err.splitlines()[0] == (  # a progress line may follow on a slow machine
        "dacl predict: using the shipped model dacl_fer2013: val accuracy "
        f"{crops['acc']:.3f}, val balanced accuracy {crops['balanced_acc']:.3f} (10 views, tta "
        "crops)"
    )
    predict_main([str(face), "--tta", "none"])
    assert (
        f"val accuracy {single['acc']:.3f}, val balanced accuracy {single['balanced_acc']:.3f} "
        "(1 view, tta none)"
    ) in capsys.readouterr().err


def test_shipped_models_by_name_and_an_unknown_name_lists_them(tmp_path, capsys):
    assert pretrained.locate("default") == pretrained.locate(None) == pretrained.SHIPPED
    assert pretrained.locate("dacl_fer2013") == pretrained.SHIPPED
    assert Predictor.from_pretrained("default").class_names == Predictor.load(None).class_names
    with pytest.raises(DACLError, match=r"'tiny' is not one shipped with dacl \(shipped: default"):
        Predictor.from_pretrained("tiny")
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(face)
    with pytest.raises(DACLError, match=r"shipped: default, .*dacl_fer2013"):
        predict_main([str(face), "--model", "tiny"])
    with pytest.raises(DACLError, match="--ckpt_path and --model both name a model"):
        predict_main([str(face), "--model", "default", "--ckpt_path", "x.ckpt"])
    predict_main([str(face), "--model", "default"])
    assert "using the shipped model dacl_fer2013" in capsys.readouterr().err


def test_no_face_is_no_row_with_the_shipped_models_ten_crop(tmp_path):
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(tmp_path / "wall.png")
    predictor = Predictor.from_pretrained()
    for out in (predictor([]), predictor(tmp_path / "wall.png", faces="detect")):
        assert out.probs.shape == (0, 7) and out.attention.shape == (0, 512)
        assert out.labels == [] and out.boxes == [] and out.pictures == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"name": "x", "weights": "x.safetensors", "model": {}, "data": {}}, "no valid sha256"),
        ({}, "no valid name, weights, sha256, model, data"),
        ([1, 2], r"\[1, 2\] is not an object"),
        ("text", '"text" is not an object'),
    ],
)
def test_a_malformed_weights_config_is_one_line(tmp_path, capsys, monkeypatch, config, expected):
    from dacl.__main__ import main

    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    face = tmp_path / "face.png"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(face)
    monkeypatch.setattr(sys, "argv", ["dacl", "predict", "--ckpt_path", str(path), str(face)])
    with pytest.raises(SystemExit) as exit:
        main()
    assert exit.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"dacl: error: model config '{path}' is not a dacl weights config (")
    assert re.search(expected, line), line
    with pytest.raises(DACLError, match="is not a dacl weights config"):
        Predictor.from_pretrained(path)


def test_the_tests_cache_is_a_temporary_folder(tmp_path_factory):
    """`make test` leaves the user's ~/.cache/dacl alone: conftest.py points XDG_CACHE_HOME
    at a folder of this session's, where --ckpt_path pretrained writes its checkpoint."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    assert cache.is_relative_to(tmp_path_factory.getbasetemp())
    assert pretrained.as_checkpoint().is_relative_to(cache / "dacl")


def test_torch_hub_loads_the_shipped_model_from_the_repository():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [n for n in dir(hubconf) if callable(getattr(hubconf, n)) and n[0] != "_"]
    # what torch.hub.list shows: the public callables
    assert entries == ["dacl_fer2013", "dacl_fer2013_small"]
    assert "dacl_fer2013" in hubconf.dacl_fer2013.__doc__  # torch.hub.help
    model = torch.hub.load(str(REPO), "dacl_fer2013", source="local")
    shipped, _ = pretrained.load()
    assert isinstance(model, DACLModule) and not model.training
    want = shipped.state_dict()
    assert all(torch.equal(t, want[k]) for k, t in model.state_dict().items())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        logits, features, attention = model(x)
        torch.testing.assert_close(logits, shipped(x)[0])
    assert logits.shape == (2, 7) and features.shape == attention.shape == (2, 512)
    small = torch.hub.load(str(REPO), "dacl_fer2013_small", source="local")
    with torch.no_grad():
        logits, features, attention = small(torch.randn(2, 1, 44, 44))
    assert logits.shape == (2, 7) and features.shape == attention.shape == (2, 192)


def test_the_small_model_is_shipped_and_loads_by_name(tmp_path, capsys):
    predictor = Predictor.from_pretrained("small")
    config = pretrained.read_config("small")
    assert config["name"] == "dacl_fer2013_small" and predictor.tta == config["tta"] == "none"
    assert predictor.module.hparams.trunk == "compact" and (predictor.crop, predictor.resize) == (
        44,
        48,
    )
    assert sum(p.numel() for p in predictor.module.net.parameters()) < 2_000_000
    assert pretrained.sha256(pretrained.WEIGHTS / config["weights"]) == config["sha256"]
    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 48), np.uint8)).save(face)
    predict_main([str(face), "--model", "small"])
    out, err = capsys.readouterr()
    assert "using the shipped model dacl_fer2013_small" in err
    assert out.splitlines()[1].split(",")[6] == predictor(face).labels[0]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_VAL / "val").is_dir(), reason="no FER2013 copy beside the repo")
def test_the_shipped_model_remeasured_on_fer2013_val(tmp_path, monkeypatch):
    """The model card's val numbers, re-measured through the documented command."""
    from dacl.cli import build_cli

    monkeypatch.setattr(sys, "argv", ["dacl"])
    config = pretrained.read_config()
    for tta in ("none", config["tta"]):
        cli = build_cli(
            ["validate", "--config", str(REPO / "experiments" / "cpu_long.yaml"),
             "--ckpt_path", "pretrained", "--data.root", str(SHARED_VAL), "--data.tta", tta,
             "--trainer.default_root_dir", str(tmp_path)],
            run=True,
        )  # fmt: skip
        want = config["metrics"]["val" if tta == "none" else f"val_tta_{tta}"]
        for key in ("acc", "balanced_acc"):
            got = float(cli.trainer.callback_metrics[f"val/{key}"])
            assert got == pytest.approx(want[key], abs=2e-3)
