"""The TensorBoard picture callbacks and dacl's logger after a short CPU fit on random stand-in
data."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from standin import PER_CLASS, StandInData, trainer_for
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from dacl import FER2013_CLASSES, DACLModule, viz
from dacl.callbacks import (
    AttentionMapLogger,
    ConfusionMatrixLogger,
    CSVTensorBoardLogger,
    HParamsLogger,
    SampleGridLogger,
)


@pytest.fixture(scope="session")
def events(fitted_run) -> EventAccumulator:
    # the run's directory: one event file for fit, another after the logger reopens for test
    acc = EventAccumulator(str(fitted_run.log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_train_and_best_accuracies_are_logged_and_drawn(fitted_run, events):
    tags = set(events.Tags()["scalars"])
    assert {"train/acc", "train/balanced_acc", "val/acc_best", "val/balanced_acc_best"} <= tags
    assert len(events.Scalars("train/acc")) == 2  # once per epoch
    best = [e.value for e in events.Scalars("val/acc_best")]
    vals = [e.value for e in events.Scalars("val/acc")]
    assert best == pytest.approx([max(vals[: i + 1]) for i in range(len(vals))])
    fig = viz.curves_figure(viz.read_metrics(fitted_run.log_dir))
    accuracy = next(ax for ax in fig.axes if ax.get_title() == "accuracy")
    legend = {t.get_text() for t in accuracy.get_legend().get_texts()}
    assert {"train/acc", "train/balanced_acc", "val/acc", "val/balanced_acc"} <= legend
    assert not any(label.endswith("_best") for label in legend)


def test_metrics_file_holds_every_scalar_of_the_event_files(fitted_run, events):
    metrics = viz.read_metrics(fitted_run.log_dir)  # fit and test, beside their event files
    assert set(metrics) == set(events.Tags()["scalars"])
    for tag, series in metrics.items():
        logged = {e.step: e.value for e in events.Scalars(tag)}  # the later of a repeated step
        assert dict(series) == pytest.approx(logged), tag


def test_metrics_file_events_and_checkpoints_share_the_run_folder(tmp_path):
    (tmp_path / "logs" / "exp" / "version_0").mkdir(parents=True)  # an earlier run's
    logger = CSVTensorBoardLogger(tmp_path / "logs", name="exp")
    trainer = trainer_for(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=logger
    )
    trainer.fit(DACLModule(image_size=32), StandInData())
    run = tmp_path / "logs" / "exp" / "version_1"
    assert any(run.glob("events.out.tfevents.*")) and any((run / "checkpoints").glob("*.ckpt"))
    assert len(viz.read_metrics(run)["val/balanced_acc"]) == 1


def test_metrics_file_grows_when_a_run_resumes_into_its_folder(tmp_path):
    for values in ({10: 0.3, 20: 0.5}, {20: 0.45, 30: 0.6}):  # killed after step 20, resumed
        logger = CSVTensorBoardLogger(tmp_path, name="exp", version=0)
        for step, value in values.items():
            logger.log_metrics({"val/acc": value, "epoch": torch.tensor(step // 10)}, step)
        logger.finalize("success")
    metrics = viz.read_metrics(tmp_path / "exp" / "version_0")
    assert metrics["val/acc"] == [(10, 0.3), (20, 0.45), (30, 0.6)]
    assert metrics["epoch"] == [(10, 1.0), (20, 2.0), (30, 3.0)]


def test_event_file_holds_the_pictures(fitted_run, events):
    images = set(events.Tags()["images"])
    expected = {"confusion/val", "confusion/test", "attention/mean"}
    expected |= {f"attention/{c}" for c in FER2013_CLASSES}
    expected |= {"samples/val_wrong", "samples/val_correct"}
    assert expected <= images, expected - images
    # once per validation epoch (not for the sanity check), once for the test run
    val_steps = [e.step for e in events.Images("confusion/val")]
    assert len(val_steps) == 2 and val_steps[0] < val_steps[1]
    for tag in ("attention/mean", "attention/sad", "samples/val_wrong"):
        assert [e.step for e in events.Images(tag)] == val_steps, tag
    assert len(events.Images("confusion/test")) == 1
    picture = events.Images("confusion/val")[-1]
    assert picture.width > 600 and picture.height > 300


def test_hparams_session_and_final_metrics(fitted_run, events):
    content = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model/lam"].number_value == pytest.approx(0.01)
    assert hparams["model/variant"].string_value == "dacl"
    assert hparams["trainer/max_epochs"].number_value == 2
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    declared = {m.name.tag for m in experiment.metric_infos}
    assert declared == set(HParamsLogger.TAGS)
    # the declared metrics are written: after each validation, and after testing
    scalars = set(events.Tags()["scalars"])
    assert {"hp/val_acc", "hp/val_balanced_acc", "hp/best_val_balanced_acc"} <= scalars
    assert {"hp/test_acc", "hp/test_balanced_acc", "hp/test_f1_macro"} <= scalars
    balanced = [e.value for e in events.Scalars("val/balanced_acc")]
    # the declaration's placeholder at step 0, then the best so far after each validation
    best = [e.value for e in events.Scalars("hp/best_val_balanced_acc")][1:]
    assert best == pytest.approx([max(balanced[: i + 1]) for i in range(len(balanced))])
    assert events.Scalars("hp/test_acc")[-1].value == pytest.approx(
        float(fitted_run.trainer.callback_metrics["test/acc"])
    )


def test_attention_rows_are_the_attention_of_a_fixed_set_of_images(fitted_run):
    cb, data = fitted_run.cb.attention, fitted_run.data
    assert len(cb.history) == 2
    (first, _), (second, attention) = cb.history
    assert torch.equal(first, second)  # the same images every epoch
    positions, labels = cb.indices, cb.labels
    assert torch.equal(torch.bincount(labels, minlength=7), torch.full((7,), PER_CLASS))
    assert len(set(positions.tolist())) == len(positions)
    # they are the validation images at those loader positions, with their labels
    images, truth = data.sets["val"].tensors
    assert torch.equal(labels, truth[positions])
    assert torch.equal(cb.inputs, images[positions])
    # and the first PER_CLASS of each class in loader order
    for c in range(7):
        assert (
            positions[labels == c].tolist()
            == torch.nonzero(truth == c).flatten()[:PER_CLASS].tolist()
        )
    # the rows drawn are those images' attention vectors: 512 values in (0, 1)
    assert attention.shape == (7 * PER_CLASS, 512) and attention.dtype == torch.float32
    assert bool((attention > 0).all() and (attention < 1).all())
    with torch.no_grad():
        _, _, expected = fitted_run.module(cb.inputs)
    torch.testing.assert_close(attention, expected, rtol=1e-4, atol=1e-5)


def test_sample_grids_show_mistakes_most_confident_first(fitted_run):
    cb = fitted_run.cb.samples
    images, truth = fitted_run.data.sets["val"].tensors
    # 5 batches of 8, max_batches=2: batches 0 and 3, spread over the validation set
    assert cb.candidates.tolist() == list(range(8)) + list(range(24, 32))
    with torch.no_grad():
        logits, _, _ = fitted_run.module(images)
    conf, pred = logits.softmax(-1).max(-1)
    wrong, correct = cb.last["wrong"], cb.last["correct"]
    mistakes = [int(p) for p in cb.candidates if pred[p] != truth[p]]
    expected = sorted(mistakes, key=lambda p: -float(conf[p]))[:6]
    assert wrong["indices"].tolist() == expected
    assert bool((wrong["pred"] != wrong["labels"]).all())
    assert bool((correct["pred"] == correct["labels"]).all())
    assert torch.all(wrong["conf"][:-1] >= wrong["conf"][1:])
    for sel in (wrong, correct):
        assert torch.equal(sel["labels"], truth[sel["indices"]])
        assert torch.equal(sel["pred"], pred[sel["indices"]])
        torch.testing.assert_close(sel["conf"], conf[sel["indices"]], rtol=1e-4, atol=1e-5)


def test_select_samples_orders_mistakes_and_interleaves_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    pred = torch.tensor([0, 0, 1, 2, 1, 2, 2])
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.5, 0.4])
    wrong, correct = viz.select_samples(labels, pred, conf, n=3)
    assert wrong.tolist() == [4, 3, 6]
    assert correct.tolist() == [0, 2, 5]  # one per class first, most confident of each
    assert viz.select_samples(labels, pred, conf, n=10)[1].tolist() == [0, 2, 5, 1]


def test_confusion_matrices_sum_to_the_class_counts(fitted_run):
    last, data = fitted_run.cb.confusion.last, fitted_run.data
    for split in ("val", "test"):
        cm = last[split]
        assert cm.shape == (7, 7)
        assert torch.equal(cm.sum(1), torch.bincount(data.labels(split), minlength=7))
        assert torch.equal(cm, fitted_run.module.confusion[split])


def test_callbacks_skip_without_tensorboard(tmp_path):
    callbacks = [
        ConfusionMatrixLogger(),
        AttentionMapLogger(per_class=2),
        SampleGridLogger(n=4, max_batches=1),
        HParamsLogger(),
    ]
    trainer = trainer_for(tmp_path, limit_val_batches=2, logger=False, callbacks=callbacks)
    for _ in range(2):
        trainer.validate(DACLModule(image_size=32), StandInData(n_val=16), verbose=False)
    assert callbacks[0].last == {} and callbacks[1].attention is None
    assert callbacks[2].last == {}


def test_attention_shows_the_original_48px_faces(tmp_path, synthetic_dataset):
    from dacl.data.datamodule import FER2013DataModule

    data = FER2013DataModule(str(synthetic_dataset("folders")), crop=32, resize=40, batch_size=8)
    attention = AttentionMapLogger(per_class=1)
    samples = SampleGridLogger(n=4, max_batches=1)
    trainer = trainer_for(
        tmp_path,
        logger=TensorBoardLogger(tmp_path, name="fast", version=0),
        callbacks=[attention, samples],
    )
    torch.manual_seed(0)
    module = DACLModule(image_size=32)
    trainer.validate(module, data, verbose=False)
    # model inputs went through the datamodule's eval transform: normalised floats at 32 px
    assert attention.inputs.shape == (7, 1, 32, 32) and attention.inputs.dtype == torch.float32
    loader_batch = next(iter(data.val_dataloader()))
    transformed, _ = data.on_after_batch_transfer(loader_batch, 0)
    first = attention.indices[attention.indices < len(loader_batch[1])]
    torch.testing.assert_close(attention.inputs[: len(first)], transformed[first])
    assert attention.attention.shape == (7, 512)
    # the pictures beside the rows are the raw uint8 48 px faces of the chosen images
    raw = data.datasets["val"].images[attention.indices]
    assert torch.equal(data.faces("val", attention.indices), raw)
    assert {"attention/mean", "samples/val_wrong"} <= set(_image_tags(trainer))


def _image_tags(trainer) -> list[str]:
    acc = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    return acc.Tags()["images"]


def test_predictions_file_is_written_whole_or_the_earlier_one_kept(tmp_path):
    from types import SimpleNamespace

    from dacl.callbacks import PredictionWriter

    data = SimpleNamespace(
        predict_split="test", names=lambda split: ["a.png", "b.png", "c.png"],
        labels=lambda split: torch.tensor([0, 1, 1]),
    )  # fmt: skip
    trainer = SimpleNamespace(world_size=1, datamodule=data, log_dir=str(tmp_path))
    module = SimpleNamespace(class_names=("x", "y"))
    batch = {"pred": torch.tensor([0, 1]), "probs": torch.tensor([[0.9, 0.1], [0.2, 0.8]])}
    earlier = tmp_path / "predictions.csv"
    earlier.write_text("earlier\n")
    with pytest.raises(ValueError):  # 3 names, 2 predictions: fails after two rows
        PredictionWriter().write_on_epoch_end(trainer, module, [batch], [])
    assert earlier.read_text() == "earlier\n" and [p.name for p in tmp_path.iterdir()] == [
        "predictions.csv"
    ]
    batch = {k: torch.cat([v, v[-1:]]) for k, v in batch.items()}
    PredictionWriter().write_on_epoch_end(trainer, module, [batch], [])
    assert earlier.read_text().splitlines()[1:] == [
        "a.png,x,x,0.9000,0.1000", "b.png,y,y,0.2000,0.8000", "c.png,y,y,0.2000,0.8000"
    ]  # fmt: skip
