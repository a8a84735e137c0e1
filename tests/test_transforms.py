"""method.md §3 reference transforms, checked on images with known content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pil_oracle import eval_transform, train_transform

from dacl.classes import FER2013_MEAN, FER2013_STD

RESIZE, CROP = 256, 100
# Quadrant values of the test image: top-left, top-right, bottom-left, bottom-right.
QUADS = (40, 100, 160, 220)


def _quadrants() -> Image.Image:
    a = np.empty((48, 48), np.uint8)
    a[:24, :24], a[:24, 24:], a[24:, :24], a[24:, 24:] = QUADS
    return Image.fromarray(a)


def _pixels(t: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: (3, h, w) tensor → (h, w) array in 0..255 (channels equal)."""
    assert torch.equal(t[0], t[1]) and torch.equal(t[0], t[2]), "gray replicated to 3 channels"
    return (t[0].numpy() * FER2013_STD + FER2013_MEAN) * 255.0


def _candidates(img: Image.Image) -> dict[tuple[str, bool], np.ndarray]:
    """The ten method.md outputs (5 crops x flip), cut by hand from the resized image."""
    big = np.asarray(img.resize((RESIZE, RESIZE), Image.Resampling.BILINEAR), dtype=np.float64)
    far, mid = RESIZE - CROP, round((RESIZE - CROP) / 2)
    offsets = {
        "top_left": (0, 0),
        "top_right": (0, far),
        "bottom_left": (far, 0),
        "bottom_right": (far, far),
        "center": (mid, mid),
    }
    out = {}
    for name, (top, left) in offsets.items():
        crop = big[top : top + CROP, left : left + CROP]
        out[(name, False)], out[(name, True)] = crop, crop[:, ::-1]
    return out


def _which(t: torch.Tensor, cands) -> tuple[str, bool]:
    got = _pixels(t)
    hits = [k for k, c in cands.items() if np.abs(got - c).max() < 0.51]
    assert len(hits) >= 1, "output is none of the five crops (flipped or not)"
    return hits[0]


def test_train_crop_is_one_of_the_five_and_all_five_occur():
    img = _quadrants()
    # A quadrant-only image: flips change corners' positions, so use an asymmetric one too.
    asym = np.asarray(img).copy()
    asym[:, :3] = 255
    cands = _candidates(Image.fromarray(asym))
    tf = train_transform(CROP, RESIZE)
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        out = tf(Image.fromarray(asym))
        assert out.shape == (3, CROP, CROP) and out.dtype == torch.float32
        seen.add(_which(out, cands))
    assert {name for name, _ in seen} == {
        "top_left",
        "top_right",
        "bottom_left",
        "bottom_right",
        "center",
    }
    assert {flip for _, flip in seen} == {False, True}


def test_train_crop_is_reproducible_with_a_fixed_seed():
    tf = train_transform(CROP, RESIZE)
    torch.manual_seed(7)
    a = tf(_quadrants())
    torch.manual_seed(7)
    assert torch.equal(a, tf(_quadrants()))


@pytest.mark.parametrize(("k", "quad"), [(0, 0), (1, 1), (2, 2), (3, 3)])
def test_corner_crops_hold_their_quadrant(monkeypatch, k, quad):
    """Forcing the crop choice: crop k of the known image is uniformly quadrant k's value."""
    import pil_oracle as transforms

    real = torch.randint
    monkeypatch.setattr(
        transforms.torch,
        "randint",
        lambda high, size, *a, **kw: torch.tensor(k) if size == () else real(high, size, *a, **kw),
    )
    monkeypatch.setattr(transforms.torch, "rand", lambda *a, **kw: torch.ones(*a))  # no flip
    got = _pixels(train_transform(CROP, RESIZE)(_quadrants()))
    np.testing.assert_allclose(got, QUADS[quad], atol=0.51)


def test_eval_is_the_centre_crop():
    cands = _candidates(_quadrants())
    out = eval_transform(CROP, RESIZE)(_quadrants())
    assert out.shape == (3, CROP, CROP)
    np.testing.assert_allclose(_pixels(out), cands[("center", False)], atol=0.51)
    # The centre of a quadrant image holds all four quadrants equally.
    got = _pixels(out)
    half = CROP // 2
    assert got[:half, :half].mean() < got[:half, half:].mean() < got[half:, :half].mean()
    assert abs(got.mean() - np.mean(QUADS)) < 2


def test_normalisation_uses_fer2013_statistics():
    gray = Image.fromarray(np.full((48, 48), 255, np.uint8))
    out = eval_transform(48, 56)(gray)
    np.testing.assert_allclose(out.numpy(), (1.0 - FER2013_MEAN) / FER2013_STD, rtol=1e-5)
    assert (FER2013_MEAN, FER2013_STD) == (0.5077, 0.2546)
