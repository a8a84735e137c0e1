"""dacl.viz: the figures hold the data they claim to show, with class names and colour bars."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from torchmetrics.functional.classification import multiclass_recall

from dacl import DACLError, viz
from dacl.classes import FER2013_CLASSES

K = len(FER2013_CLASSES)


def _heatmaps(fig, width=512):
    """The figure's heat maps ``width`` columns wide (not the face thumbnails), in axes order."""
    return [im for ax in fig.axes for im in ax.images if im.get_array().shape[-1] == width]


def _colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def _render(fig) -> np.ndarray:
    """The figure drawn on its own canvas, as RGB ``uint8`` ``(H, W, 3)``."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def test_figures_are_headless_agg_figures_outside_pyplot():
    import matplotlib.pyplot as plt  # torchmetrics imports it anyway

    before = plt.get_fignums()
    fig = viz.attention_figure(np.full((2, 512), 0.5))
    assert isinstance(fig.canvas, FigureCanvasAgg)
    assert plt.get_fignums() == before  # not held by pyplot: nothing leaks epoch after epoch
    assert _render(fig).dtype == np.uint8


def test_balanced_accuracy_is_torchmetrics_macro_recall():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, K, (200,), generator=g)
    target[target == 1] = 0  # an absent class that is still predicted sometimes
    pred = torch.where(torch.rand(200, generator=g) < 0.6, target, torch.randint(0, K, (200,)))
    cm = torch.zeros(K, K, dtype=torch.long)
    cm.index_put_((target, pred), torch.ones(200, dtype=torch.long), accumulate=True)
    expected = multiclass_recall(pred, target, K, average="macro")
    assert viz.balanced_accuracy(cm) == pytest.approx(float(expected))


def test_confusion_figure_shows_counts_and_row_normalised_with_names():
    cm = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])
    fig = viz.confusion_figure(cm, ["angry", "disgust", "fear"], title="val · epoch 3")
    counts, norm = _heatmaps(fig, width=3)
    np.testing.assert_array_equal(counts.get_array(), cm)
    np.testing.assert_allclose(norm.get_array()[:2], [[5 / 6, 1 / 6, 0], [0.5, 0.5, 0]])
    assert np.ma.getmaskarray(norm.get_array())[2].all() or np.isnan(norm.get_array()[2]).all()
    assert len(_colorbars(fig)) == 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["angry", "disgust", "fear"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["angry (6)", "disgust (4)", "fear (0)"]
    title = fig.get_suptitle()
    assert "val · epoch 3" in title and "10 images" in title
    assert f"balanced acc {(5 / 6 + 0.5) / 2:.3f}" in title
    assert _render(fig).shape[2] == 3


def test_attention_figure_rows_are_the_vectors():
    attn = torch.rand(5, 512)
    thumbs = torch.randint(0, 256, (5, 48, 48), dtype=torch.uint8)
    labels = [f"img{i}" for i in range(5)]
    fig = viz.attention_figure(attn, "sad · val", row_labels=labels, images=thumbs)
    (heat,) = _heatmaps(fig)
    np.testing.assert_allclose(heat.get_array(), attn.numpy())
    assert heat.get_clim() == (0.0, 1.0)
    assert len(_colorbars(fig)) == 1
    heat_ax = heat.axes
    assert [t.get_text() for t in heat_ax.get_yticklabels()] == labels
    assert sum(1 for ax in fig.axes if ax.images and ax is not heat_ax) == 5  # thumbnails
    assert "sad · val" in fig.get_suptitle()
    empty = viz.attention_figure(np.zeros((0, 512)), "nothing")
    assert _render(empty).size


def test_attention_pictures_map_the_first_images_of_each_class_and_the_mean_of_all():
    attn = torch.rand(9, 512, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 3, 0, 6, 3, 0, 0, 6])
    logits = torch.zeros(9, K).index_fill_(1, torch.tensor([3]), 2.0)  # all predicted happy
    files = [f"f{i}.png" for i in range(9)]
    faces = torch.randint(0, 256, (9, 48, 48), dtype=torch.uint8)
    maps, mean = viz.attention_pictures(
        attn, labels, logits, files, faces.__getitem__, FER2013_CLASSES, "val", per_class=2
    )
    assert list(maps) == ["angry", "happy", "neutral"]  # the classes present, in class order
    idx, fig = maps["happy"]
    assert idx.tolist() == [1, 2]  # the first two happy images
    (heat,) = _heatmaps(fig)
    np.testing.assert_allclose(heat.get_array(), attn[[1, 2]].numpy())
    assert fig.get_suptitle().startswith("happy: attention weights of 2 images · val")
    conf = float(logits.softmax(-1)[0, 3])
    rows = [t.get_text() for t in heat.axes.get_yticklabels()]
    assert rows == [f"f1.png → happy {conf:.2f}", f"f2.png → happy {conf:.2f}"]
    beside = [ax.images[0].get_array() for ax in fig.axes if ax.images and ax is not heat.axes]
    np.testing.assert_array_equal(beside[1], faces[2].numpy())
    means, _ = _heatmaps(mean)  # the mean of every image given, not only the rows drawn
    np.testing.assert_allclose(means.get_array()[3], attn[[1, 2, 5]].mean(0).numpy(), rtol=1e-6)
    assert "9 images" in mean.get_suptitle()


def test_mean_attention_figure_has_one_row_per_class():
    attn = np.random.default_rng(1).random((6, 512))
    labels = np.array([0, 0, 2, 2, 2, 5])
    fig = viz.mean_attention_figure(attn, labels, FER2013_CLASSES, title="test")
    mean, diff = _heatmaps(fig)
    assert mean.get_array().shape == (K, 512)
    np.testing.assert_allclose(mean.get_array()[2], attn[2:5].mean(0))
    assert np.ma.getmaskarray(mean.get_array())[1].all()  # disgust: no images
    np.testing.assert_allclose(diff.get_array()[0], attn[:2].mean(0) - attn.mean(0))
    rows = [t.get_text() for t in mean.axes.get_yticklabels()]
    assert rows[0] == "angry (n=2)" and rows[1] == "disgust (n=0)"
    assert len(_colorbars(fig)) == 2


def test_sample_grid_captions_true_pred_confidence():
    images = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    fig = viz.sample_grid_figure(
        images, [3, 0, 5], [3, 1, 2], [0.9, 0.55, 0.123], FER2013_CLASSES, "val · wrong"
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["happy / happy (0.90)", "angry / disgust (0.55)", "surprise / fear (0.12)"]
    assert fig.axes[0].title.get_color() == viz.CORRECT_COLOR
    assert fig.axes[1].title.get_color() == viz.WRONG_COLOR
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), images[0].numpy())
    assert _render(viz.sample_grid_figure(images[:0], [], [], [], FER2013_CLASSES)).size
    # RGB faces (RAF-DB, AffectNet) in colour; one-channel ones in gray
    rgb = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    fig = viz.sample_grid_figure(rgb, [0, 1], [0, 1], [0.5, 0.5], FER2013_CLASSES)
    shown = fig.axes[1].images[0].get_array()
    np.testing.assert_array_equal(shown, rgb[1].permute(1, 2, 0).numpy())
    fig = viz.sample_grid_figure(images[:1, None], [3], [3], [0.9], FER2013_CLASSES)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), images[0].numpy())


def test_read_metrics_and_curves_draw_them(tmp_path):
    rows = [(step, "train/loss", 2.0 - 0.1 * step) for step in range(5)]
    # a run resumed into the same folder logs step 4 again: the later row counts
    rows += [(4, "val/acc", 0.3), (4, "val/acc", 0.4), (9, "val/acc", 0.5), (9, "lr", 0.01)]
    with (tmp_path / viz.METRICS_FILE).open("w", newline="") as f:
        csv.writer(f).writerows([("step", "metric", "value"), *rows])
    scalars = viz.read_metrics(tmp_path)
    assert scalars["train/loss"] == [(s, pytest.approx(2.0 - 0.1 * s)) for s in range(5)]
    assert scalars["val/acc"] == [(4, 0.4), (9, 0.5)]
    fig = viz.curves_figure(scalars, title="run")
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert set(panels) == {"accuracy", "loss (L = L_CE + λ·L_SC, and L_CE)"}  # lr left out
    legend = [t.get_text() for t in panels["accuracy"].get_legend().get_texts()]
    assert legend == ["val/acc"]
    np.testing.assert_allclose(panels["accuracy"].lines[0].get_ydata(), [0.4, 0.5])
    with pytest.raises(DACLError, match=r"has no metrics\.csv"):
        viz.read_metrics(tmp_path / "events_only")


def test_save_figure_writes_a_png(tmp_path):
    fig = viz.confusion_figure(np.eye(K, dtype=int), FER2013_CLASSES)
    path = viz.save_figure(fig, tmp_path / "sub" / "cm.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 500
