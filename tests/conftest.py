"""Shared fixtures: small synthetic FER2013 sets (dacl.data.synthetic) in every SPEC §3 layout.

Tests never need the real FER2013. Read-only sets are written once per session; tests that
damage their data get a fresh copy under their own ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dacl.data.synthetic import write_dataset

#: Split sizes of the shared sets: every class present in each split (5% floor, n >= 7).
SIZES = {"n_train": 70, "n_val": 21, "n_test": 21}


@pytest.fixture(scope="session")
def split_sizes() -> dict[str, int]:
    """Samples per split in the sets the fixtures below write."""
    return {"train": SIZES["n_train"], "val": SIZES["n_val"], "test": SIZES["n_test"]}


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Callable[..., Path]:
    """``synthetic_dataset(layout, **write_dataset_kwargs) -> root``, written once per session
    per argument set. Treat the result as read-only."""
    made: dict[tuple, Path] = {}

    def make(layout: str = "folders", **kwargs) -> Path:
        args = {**SIZES, **kwargs}
        key = (layout, tuple(sorted((k, repr(v)) for k, v in args.items())))
        if key not in made:
            root = tmp_path_factory.mktemp(f"synthetic_{layout}")
            made[key] = write_dataset(root, layout, **args)
        return made[key]

    return make


@pytest.fixture
def fresh_dataset(tmp_path) -> Callable[..., Path]:
    """``fresh_dataset(layout, **kwargs) -> root``: a private set under ``tmp_path`` to modify."""

    def make(layout: str = "folders", **kwargs) -> Path:
        return write_dataset(tmp_path / f"data_{layout}", layout, **{**SIZES, **kwargs})

    return make
