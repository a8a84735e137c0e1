"""The fast data path: decoded-split cache and batched augmentation.

Fidelity tolerance (used by every fast-vs-reference comparison below)
---------------------------------------------------------------------
The fast path computes resize → crop → flip exactly (float32 matrices built with Pillow's own
resampling weights), but the reference pipeline works on a uint8 PIL image: Pillow resamples
``Resize`` in two separable passes (horizontal, then vertical) and rounds to uint8 after EACH
pass. The first rounding (≤ 0.5 grey level) passes through the second pass's weights, which are
convex (non-negative, sum 1), so it stays ≤ 0.5; the second adds ≤ 0.5. Pillow's 22-bit
fixed-point weights add < 1e-4 grey level and float32 ~1e-5. So

    |fast − reference| ≤ 1 grey level = 1/255 before Normalize = 1/(255 · 0.2546) ≈ 0.01540

and we allow 1.001 grey levels. The bound is attained, not loose: for 48 → 256 every weight is a
multiple of 1/32, so exact halves occur and both roundings can go the same way. Measured: the
maximum over these tests' images is 0.999 grey level (1.0000 on other random images), the mean
0.30; at 48 px (no resampling) both are ~1e-5.

That is tight enough to catch geometry errors: a crop one pixel off (in the 256 px image, i.e.
3/16 of a source pixel) or a wrong flip moves values by tens of grey levels on a noise image
(measured: about 45 for a one-pixel shift of the 200 px centre crop).
``test_one_pixel_shift_fails_the_tolerance`` requires > 10 grey levels for every such error,
including the half-to-even rounding of the centre crop (256 − 227 = 29 → offset 14, not 15).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pil_oracle import (
    FIVE_CROPS,
    RandomFiveCrop,
    eval_transform,
    train_transform,
)
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from dacl.classes import FER2013_MEAN, FER2013_STD
from dacl.data import cache as cache_mod
from dacl.data.augment import (
    crop_offsets,
    crop_resize,
    eval_augment,
    resize_matrix,
    train_augment,
)
from dacl.data.cache import cache_path, load_or_build
from dacl.data.layouts import find_layout

GREY = 1.0 / (255.0 * FER2013_STD)  # one grey level after Normalize
TOL = 1.001 * GREY

# (crop, resize): exp3's 200/256; 227 (odd margin 29, centre offset rounds half to even);
# 224/256; and a 48 px setting (identity resize, crop 40).
SETTINGS = [(200, 256), (227, 256), (224, 256), (40, 48)]


def noise_image(seed: int) -> np.ndarray:
    """High-contrast 48x48 uint8 image: neighbouring pixels differ, so shifts show."""
    return np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)


def face_like_image(seed: int) -> np.ndarray:
    """Smooth 48x48 uint8 image (a random walk along rows, like real photo gradients)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.integers(-12, 13, (48, 48)), axis=1) + rng.integers(60, 200)
    return np.clip(walk, 0, 255).astype(np.uint8)


def fixed_reference(crop: int, resize: int, k: int, flip: bool) -> T.Compose:
    """``train_transform`` with its two random steps pinned: crop ``k`` of FiveCrop, flip or not.

    Built from the real reference transform list, so a change there is tested here too.
    """
    steps = []
    for t in train_transform(crop, resize).transforms:
        if isinstance(t, RandomFiveCrop):
            steps.append(T.Lambda(lambda img, k=k: TF.five_crop(img, [crop, crop])[k]))
        elif isinstance(t, T.RandomHorizontalFlip):
            steps.append(T.RandomHorizontalFlip(1.0 if flip else 0.0))
        else:
            steps.append(t)
    kinds = [type(s) for s in steps]
    assert T.Lambda in kinds and T.RandomHorizontalFlip in kinds, "reference changed shape"
    return T.Compose(steps)


def all_ten(arr: np.ndarray, crop: int, resize: int) -> torch.Tensor:
    """Fast output for crop 0..4 × flip (False, True) of one image: (10, crop, crop)."""
    x = torch.from_numpy(arr)[None].expand(10, 48, 48)
    k = torch.arange(10) // 2
    flip = (torch.arange(10) % 2).bool()
    return crop_resize(x, k, flip, crop, resize)[:, 0]


# --------------------------------------------------------------------------- (a) fidelity


@pytest.mark.parametrize(("crop", "resize"), SETTINGS)
def test_every_crop_and_flip_matches_reference(crop, resize):
    diffs = []
    for seed in range(4):
        arr = noise_image(seed) if seed % 2 == 0 else face_like_image(seed)
        img = Image.fromarray(arr, mode="L")
        fast = all_ten(arr, crop, resize)
        for j in range(10):
            k, flip = j // 2, bool(j % 2)
            ref = fixed_reference(crop, resize, k, flip)(img)
            assert ref.shape == (3, crop, crop)
            d = (fast[j] - ref[0]).abs()
            assert d.max() <= TOL, (
                f"{FIVE_CROPS[k]} flip={flip}: {d.max() / GREY:.4f} grey levels > 1.001"
            )
            diffs.append(d)
    d = torch.stack(diffs)
    # Quantisation error, not bias: on average well under one rounding step.
    assert d.mean() < 0.5 * GREY


@pytest.mark.parametrize(("crop", "resize"), SETTINGS)
def test_eval_matches_reference_eval_transform(crop, resize):
    arrs = [noise_image(10), face_like_image(11)]
    fast = eval_augment(torch.from_numpy(np.stack(arrs)), crop, resize)
    for arr, out in zip(arrs, fast, strict=True):
        ref = eval_transform(crop, resize)(Image.fromarray(arr, mode="L"))
        assert (out[0] - ref[0]).abs().max() <= TOL


def test_random_reference_draws_are_among_the_ten():
    """Seeded draws of the real ``train_transform`` each equal one fast (crop, flip) variant."""
    crop, resize = 200, 256
    arr = noise_image(3)
    fast = all_ten(arr, crop, resize)
    torch.manual_seed(0)
    tf = train_transform(crop, resize)
    seen = set()
    for _ in range(30):
        ref = tf(Image.fromarray(arr, mode="L"))[0]
        err = (fast - ref).abs().amax(dim=(1, 2))
        assert err.min() <= TOL
        seen.add(int(err.argmin()))
    assert len(seen) >= 6  # the draws do vary


@pytest.mark.parametrize(("crop", "resize"), [(200, 256), (227, 256)])
def test_one_pixel_shift_fails_the_tolerance(crop, resize):
    """The tolerance would catch a crop offset off by one pixel, or a wrong flip."""
    arr = noise_image(7)
    img = Image.fromarray(arr, mode="L")
    resized = T.Resize(resize)(img)
    fast = all_ten(arr, crop, resize)
    near, far, mid = crop_offsets(resize, crop)
    offsets = [(near, near), (near, far), (far, near), (far, far), (mid, mid)]
    to_tensor = T.Compose([T.ToTensor(), T.Normalize([FER2013_MEAN], [FER2013_STD])])
    for k, (top, left) in enumerate(offsets):
        exact = to_tensor(TF.crop(resized, top, left, crop, crop))[0]
        assert (fast[2 * k] - exact).abs().max() <= TOL  # the exact offset passes ...
        shifts = [(1, 0), (-1, 0), (0, 1), (0, -1)]
        for dy, dx in shifts:
            t, lft = top + dy, left + dx
            if not (0 <= t <= resize - crop and 0 <= lft <= resize - crop):
                continue
            moved = to_tensor(TF.crop(resized, t, lft, crop, crop))[0]
            worst = (fast[2 * k] - moved).abs().max()
            assert worst > 10 * TOL, f"{FIVE_CROPS[k]} shifted ({dy},{dx}): only {worst / GREY}"
        # ... and so does the flip: unflipped vs flipped differ far beyond it.
        assert (fast[2 * k + 1] - exact).abs().max() > 10 * TOL
    if (resize - crop) % 2:
        assert mid == round((resize - crop) / 2)  # half to even, as torchvision


def test_resize_matrix_is_bilinear_when_upsampling():
    """48 → 256: Pillow's weights are plain bilinear, align_corners=False, edge-clamped."""
    r = torch.from_numpy(resize_matrix(48, 256))
    x = torch.rand(1, 1, 48, 1, dtype=torch.float64)
    ours = (r @ x[0, 0, :, 0])[None, None, :, None]
    theirs = torch.nn.functional.interpolate(x, size=(256, 1), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours, theirs)
    assert torch.allclose(r.sum(1), torch.ones(256, dtype=torch.float64))


# ----------------------------------------------------------------- (b) the random draws


def _identify(out: torch.Tensor, arr: np.ndarray, crop: int, resize: int) -> torch.Tensor:
    """Which of the 10 (crop, flip) variants each output sample is (by nearest match)."""
    ten = all_ten(arr, crop, resize)
    err = (out[:, 0, None] - ten[None]).abs().amax(dim=(2, 3))  # (B, 10)
    assert (err.min(dim=1).values < 1e-4).all()
    return err.argmin(dim=1)


def test_train_augment_draws_are_uniform_crops_and_fair_flips():
    crop, resize, n = 40, 48, 5000
    arr = noise_image(5)
    x = torch.from_numpy(arr)[None, None].expand(n, 1, 48, 48)
    g = torch.Generator().manual_seed(1234)
    which = _identify(train_augment(x, crop, resize, generator=g), arr, crop, resize)
    crops = torch.bincount(which // 2, minlength=5)
    flips = int((which % 2).sum())
    cells = torch.bincount(which, minlength=10)
    # Binomial sd: crops sqrt(5000·.2·.8) ≈ 28, flips ≈ 35, cells ≈ 21; bounds ≈ 5 sd.
    assert ((crops - n / 5).abs() < 150).all(), crops
    assert abs(flips - n / 2) < 180, flips
    assert ((cells - n / 10).abs() < 110).all(), cells


def test_train_augment_is_reproducible_with_a_generator():
    x = torch.from_numpy(np.stack([noise_image(s) for s in range(16)]))
    a = train_augment(x, 40, 48, generator=torch.Generator().manual_seed(3))
    b = train_augment(x, 40, 48, generator=torch.Generator().manual_seed(3))
    c = train_augment(x, 40, 48, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------- (d) shape, dtype, device, normalisation


@pytest.mark.parametrize("channel_dim", [False, True])
def test_output_shape_dtype_device(channel_dim):
    x = torch.from_numpy(np.stack([noise_image(s) for s in range(6)]))
    if channel_dim:
        x = x[:, None]
    for out in (train_augment(x, 200), eval_augment(x, 200), eval_augment(x, 48, resize=48)):
        assert out.dtype == torch.float32
        assert out.device == x.device
        assert out.shape[:2] == (6, 1) and out.shape[2] == out.shape[3]
    assert train_augment(x, 200).shape == (6, 1, 200, 200)
    assert eval_augment(x, 48, resize=48).shape == (6, 1, 48, 48)


def test_normalisation_of_constant_images():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8)[:, None, None].expand(3, 48, 48)
    out = train_augment(x, 200)
    expect = (torch.tensor([0.0, 255.0, 128.0]) / 255 - FER2013_MEAN) / FER2013_STD
    torch.testing.assert_close(out.amin(dim=(1, 2, 3)), expect, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.amax(dim=(1, 2, 3)), expect, atol=1e-5, rtol=0)


def test_float_input_and_autocast_keep_float32():
    x = torch.from_numpy(np.stack([noise_image(s) for s in range(4)]))
    ref = eval_augment(x, 200)
    torch.testing.assert_close(eval_augment(x.float(), 200), ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = eval_augment(x, 200)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)


def test_bad_shapes_raise():
    rgb_stats = ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="3 channel"):  # statistics for other channels
        eval_augment(torch.zeros(2, 2, 48, 48, dtype=torch.uint8), 40, 48, rgb_stats)
    with pytest.raises(ValueError, match="B, C, H, W"):
        eval_augment(torch.zeros(2, 1, 1, 48, 48, dtype=torch.uint8), 40, 48)
    with pytest.raises(ValueError, match="crop"):
        eval_augment(torch.zeros(2, 48, 48, dtype=torch.uint8), 300)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_batch_device_cuda():
    x = torch.from_numpy(np.stack([noise_image(s) for s in range(8)])).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    out = train_augment(x, 200, generator=g)
    assert out.device == x.device and out.dtype == torch.float32
    cpu = eval_augment(x.cpu(), 200)
    torch.testing.assert_close(eval_augment(x, 200).cpu(), cpu, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------- (c) the cache


def _write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise_image(seed), mode="L").save(path)


@pytest.fixture
def folder(tmp_path):
    """A tiny ``root/{train,val}/<class>/*.png`` dataset of noise images."""
    root = tmp_path / "fer"
    for i in range(6):
        _write_png(root / "train" / ("happy" if i % 2 else "sad") / f"img{i}.png", i)
    for i in range(3):
        _write_png(root / "val" / "angry" / f"v{i}.png", 100 + i)
    return root


def _build(root, cache_dir, caplog, split="train", strict=False):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dacl.data"):
        out = load_or_build(find_layout(root).split(split), cache_dir, strict=strict)
    msgs = [r.getMessage() for r in caplog.records if r.name == "dacl.data"]
    built = any(m.startswith("building decoded cache") for m in msgs)
    reused = any(m.startswith("reusing decoded cache") for m in msgs)
    assert built != reused, msgs
    return out, built


def test_cache_decodes_the_split(folder, tmp_path, caplog):
    (x, y, names), built = _build(folder, tmp_path / "cache", caplog)
    assert built
    assert x.dtype == torch.uint8 and x.shape == (6, 1, 48, 48)
    assert y.dtype == torch.int64 and y.tolist() == [3, 3, 3, 4, 4, 4]  # happy=3, sad=4
    assert names[0] == "train/happy/img1.png"
    assert torch.equal(x[0, 0], torch.from_numpy(noise_image(1)))


def test_unchanged_source_reuses_the_cache(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    first, built = _build(folder, cache_dir, caplog)
    assert built
    (path,) = cache_dir.glob("*.pt")
    stamp = path.stat().st_mtime_ns
    second, built = _build(folder, cache_dir, caplog)
    assert not built
    assert path.stat().st_mtime_ns == stamp  # not rewritten
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2]


def test_added_file_invalidates_the_cache(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    _write_png(folder / "train" / "happy" / "img9.png", 9)
    (x, _, names), built = _build(folder, cache_dir, caplog)
    assert built and x.shape[0] == 7 and "train/happy/img9.png" in names
    assert _build(folder, cache_dir, caplog)[1] is False  # and the rebuilt one is reused


def test_removed_file_invalidates_the_cache(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    (folder / "train" / "sad" / "img0.png").unlink()
    (x, _, names), built = _build(folder, cache_dir, caplog)
    assert built and x.shape[0] == 5 and "train/sad/img0.png" not in names


def test_modified_file_invalidates_the_cache(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    target = folder / "train" / "happy" / "img1.png"
    before = target.stat()
    _write_png(target, 99)  # new content in place
    # Pin the new mtime 1 s later: file-system clocks can be coarser than this test is fast.
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    (x, _, names), built = _build(folder, cache_dir, caplog)
    assert built
    assert torch.equal(x[names.index("train/happy/img1.png"), 0], torch.from_numpy(noise_image(99)))


def test_same_size_replacement_with_new_mtime_invalidates(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    target = folder / "train" / "happy" / "img1.png"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF  # same size, different bytes
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a 1 ns later mtime suffices
    assert target.stat().st_size == st.st_size
    assert _build(folder, cache_dir, caplog)[1] is True


def test_relabelled_file_invalidates_the_cache(folder, tmp_path, caplog):
    """Moving a file to another class folder (same bytes, same mtime) changes the labels."""
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    src = folder / "train" / "happy" / "img1.png"
    dst = folder / "train" / "fear" / "img1.png"
    dst.parent.mkdir()
    os.rename(src, dst)
    (_, y, names), built = _build(folder, cache_dir, caplog)
    assert built and y[names.index("train/fear/img1.png")] == 2


def test_splits_get_their_own_cache_files(tmp_path, caplog):
    """train/ + test/ layout: val and test come from one folder yet never share a file."""
    root = tmp_path / "dl"
    _write_png(root / "train" / "happy" / "Training_1.png", 1)
    _write_png(root / "test" / "happy" / "PublicTest_1.png", 2)
    _write_png(root / "test" / "happy" / "PrivateTest_1.png", 3)
    layout = find_layout(root)
    cache_dir = tmp_path / "cache"
    paths = {cache_path(layout.split(s), cache_dir) for s in ("train", "val", "test")}
    assert len(paths) == 3
    for s, seed in (("val", 2), ("test", 3)):
        (x, _, _), built = _build(root, cache_dir, caplog, split=s)
        assert built and torch.equal(x[0, 0], torch.from_numpy(noise_image(seed)))
    for s in ("val", "test"):
        assert _build(root, cache_dir, caplog, split=s)[1] is False


def test_csv_layout_is_cached(tmp_path, caplog):
    root = tmp_path / "csv"
    root.mkdir()
    rows = ["emotion,pixels,Usage"]
    for i, usage in enumerate(["Training", "Training", "PublicTest"]):
        rows.append(f"{i},{' '.join(map(str, noise_image(i).ravel()))},{usage}")
    (root / "fer2013.csv").write_text("\n".join(rows) + "\n")
    cache_dir = tmp_path / "cache"
    (x, y, _), built = _build(root, cache_dir, caplog)
    assert built and x.shape == (2, 1, 48, 48) and y.tolist() == [0, 1]
    assert _build(root, cache_dir, caplog)[1] is False
    assert _build(root, cache_dir, caplog, split="val")[1] is True  # its own file


def test_interrupted_build_is_never_reused(folder, tmp_path, caplog, monkeypatch):
    cache_dir = tmp_path / "cache"

    def dies(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(find_layout(folder).split("train"), cache_dir)
    assert list(cache_dir.iterdir()) == []  # no final file, no temporary left behind
    monkeypatch.undo()
    assert _build(folder, cache_dir, caplog)[1] is True


def test_corrupt_cache_is_rebuilt(folder, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    _build(folder, cache_dir, caplog)
    (path,) = cache_dir.glob("*.pt")
    path.write_bytes(b"not a torch file")
    (x, _, _), built = _build(folder, cache_dir, caplog)
    assert built and x.shape[0] == 6
    assert _build(folder, cache_dir, caplog)[1] is False


def test_skipped_files_are_remembered_and_strict_rebuilds(folder, tmp_path, caplog):
    from dacl.errors import DACLError

    cache_dir = tmp_path / "cache"
    (folder / "train" / "sad" / "img2.png").write_bytes(b"\x89PNG broken")
    (x, _, _), built = _build(folder, cache_dir, caplog)
    assert built and x.shape[0] == 5
    _, built = _build(folder, cache_dir, caplog)  # reused, and says what it lacks
    assert not built
    assert any("lacks 1 unreadable" in r.getMessage() for r in caplog.records)
    with pytest.raises(DACLError, match=r"img2\.png"):
        load_or_build(find_layout(folder).split("train"), cache_dir, strict=True)


def test_a_split_with_no_readable_image_is_one_line_built_or_reused(folder, tmp_path):
    from dacl.errors import DACLError

    for png in (folder / "val" / "angry").iterdir():
        png.write_bytes(b"\x89PNG broken")
    for _ in range(2):  # the second time the (empty) cache is reused
        with pytest.raises(DACLError, match=r"^the val split has no readable image: its 3 .*v0"):
            load_or_build(find_layout(folder).split("val"), tmp_path / "cache")


def test_unwritable_cache_dir_still_returns_the_data(folder, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="dacl.data"):
        x, _, _ = load_or_build(find_layout(folder).split("train"), blocker / "cache")
    assert x.shape[0] == 6
    assert any("could not write decoded cache" in r.getMessage() for r in caplog.records)


def test_every_tta_name_has_its_views():
    from typing import get_args

    from dacl.data.augment import TTA_VIEWS, Tta

    assert tuple(TTA_VIEWS) == get_args(Tta)
