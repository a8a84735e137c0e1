"""dacl.report.write_report: every file, metrics equal to torchmetrics, Lightning run layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from standin import StandInData
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from dacl import FER2013_CLASSES, DACLError, DACLModule
from dacl.report import write_report

PER_CLASS = 2


@pytest.fixture(scope="module")
def val_report(fitted_run, tmp_path_factory):
    """The report of the fitted run's checkpoint on the validation split, into a fresh module."""
    out = tmp_path_factory.mktemp("report")
    module = DACLModule(image_size=32)
    result = write_report(
        module,
        fitted_run.data,
        split="val",
        out=out,
        ckpt_path=fitted_run.ckpt,
        accelerator="cpu",
        per_class=PER_CLASS,
        grid_size=8,
    )
    return result, out, module


def _predict(module, loader):
    module.eval()
    logits, labels = [], []
    with torch.no_grad():
        for images, y in loader:
            logits.append(module(images)[0])
            labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def test_report_writes_every_file(val_report, fitted_run):
    result, out, module = val_report
    pngs = {"confusion.png", "attention_mean.png", "samples_wrong.png", "samples_correct.png"}
    pngs |= {f"attention_{c}.png" for c in FER2013_CLASSES}
    pngs.add("curves.png")  # found next to the checkpoint: <run>/checkpoints/last.ckpt
    assert {p.name for p in out.iterdir()} == pngs | {"metrics.json", "report.md"}
    for name in pngs:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 150, name
    markdown = (out / "report.md").read_text()
    for name in pngs:
        assert f"]({name})" in markdown, name
    assert "# DACL report — val split" in markdown and str(fitted_run.ckpt) in markdown
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert result["split"] == "val" and result["checkpoint"] == str(fitted_run.ckpt)
    assert result["n_images"] == 35
    # the checkpoint's weights were loaded into the fresh module
    for (name, ours), theirs in zip(
        module.state_dict().items(), fitted_run.module.state_dict().values(), strict=True
    ):
        assert torch.equal(ours.cpu(), theirs), name


def test_metrics_json_equals_torchmetrics_on_the_same_predictions(val_report, fitted_run):
    result = json.loads((val_report[1] / "metrics.json").read_text())
    logits, labels = _predict(fitted_run.module, fitted_run.data.val_dataloader())
    args = (logits, labels, 7)
    assert result["acc"] == pytest.approx(float(multiclass_accuracy(*args, average="micro")))
    assert result["balanced_acc"] == pytest.approx(float(multiclass_recall(*args)))
    assert result["f1_macro"] == pytest.approx(float(multiclass_f1_score(*args)))
    recall = multiclass_recall(*args, average=None).tolist()
    precision = multiclass_precision(*args, average=None).tolist()
    assert list(result["recall"]) == list(FER2013_CLASSES)
    assert list(result["recall"].values()) == pytest.approx(recall)
    assert list(result["precision"].values()) == pytest.approx(precision)
    assert result["confusion_matrix"] == multiclass_confusion_matrix(*args).tolist()


def test_confusion_matrix_rows_sum_to_the_class_counts(val_report, fitted_run):
    result = val_report[0]
    counts = torch.bincount(fitted_run.data.labels("val"), minlength=7).tolist()
    assert [sum(row) for row in result["confusion_matrix"]] == counts
    assert list(result["counts"].values()) == counts
    assert sum(result["predicted_counts"].values()) == result["n_images"] == sum(counts)


def test_attention_maps_show_the_first_images_of_each_class(val_report, fitted_run):
    rows = val_report[0]["attention_rows"]
    names, labels = fitted_run.data.names("val"), fitted_run.data.labels("val")
    for c, cls in enumerate(FER2013_CLASSES):
        first = torch.nonzero(labels == c).flatten()[:PER_CLASS].tolist()
        assert rows[cls] == [names[i] for i in first]


def test_test_split_of_a_model_without_attention_and_without_logs(tmp_path):
    data = StandInData()
    module = DACLModule(variant="center", image_size=32)
    result = write_report(module, data, split="test", out=tmp_path, accelerator="cpu")
    written = {p.name for p in tmp_path.iterdir()}
    assert written == {
        "confusion.png",
        "samples_wrong.png",
        "samples_correct.png",
        "metrics.json",
        "report.md",
    }
    markdown = (tmp_path / "report.md").read_text()
    assert "no attention branch" in markdown and "No accuracy or loss metrics" in markdown
    assert result["checkpoint"] is None and result["n_images"] == 21
    assert result["attention_rows"] == {}


def test_report_errors_name_the_problem(tmp_path, fitted_run):
    data = fitted_run.data
    with pytest.raises(DACLError, match="split must be one of val, test"):
        write_report(DACLModule(image_size=32), data, split="train", out=tmp_path)
    with pytest.raises(DACLError, match="not found"):
        write_report(DACLModule(image_size=32), data, out=tmp_path, ckpt_path=tmp_path / "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(DACLError, match=r"--out '.*file/r' is not writable"):
        write_report(DACLModule(image_size=32), data, out=tmp_path / "file" / "r")
    with pytest.raises(RuntimeError, match=r"Unexpected key.*net\.encoder"):
        # a dacl checkpoint into a model without the attention branch: loaded by Lightning, the
        # model's own load_state_dict refuses it (dacl report rebuilds the checkpoint's model)
        module = DACLModule(variant="center", image_size=32)
        write_report(module, data, out=tmp_path, ckpt_path=fitted_run.ckpt)


def test_report_of_the_decoded_faces(tmp_path, synthetic_dataset):
    from dacl.data.datamodule import FER2013DataModule

    data = FER2013DataModule(str(synthetic_dataset("folders")), crop=32, resize=40, batch_size=8)
    torch.manual_seed(0)
    # the loader yields raw uint8 (B, 1, 48, 48): the model only runs if the datamodule's
    # eval transform (on_after_batch_transfer) was applied
    result = write_report(
        DACLModule(image_size=32), data, split="val", out=tmp_path, accelerator="cpu", per_class=1
    )
    counts = torch.bincount(data.datasets["val"].labels, minlength=7).tolist()
    assert [sum(row) for row in result["confusion_matrix"]] == counts
    names = data.names("val")
    for rows in result["attention_rows"].values():
        assert len(rows) == 1 and rows[0] in {Path(n).name for n in names}
    assert (tmp_path / "samples_wrong.png").is_file()
