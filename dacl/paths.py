"""Where dacl keeps files of its own outside the project: one cache folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dacl``, or ``~/.cache/dacl`` when it is unset or empty (the XDG rule:
    an empty value counts as unset). Decoded dataset splits and the shipped model's checkpoint
    live here, never beside the data or the code."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dacl"
