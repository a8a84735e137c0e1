"""The shared defaults every ``dacl`` command reads first: ``configs/default.yaml``, shipped
inside the package (``dacl/configs/``; the repository's ``configs/`` links there), so an
installed ``dacl`` has them wherever it runs."""

from __future__ import annotations

from pathlib import Path

from dacl.errors import DACLError

DEFAULT_CONFIG = Path(__file__).with_name("configs") / "default.yaml"


def default_config() -> Path:
    """The defaults file; a broken install is an error, never a silent run without them."""
    if not DEFAULT_CONFIG.is_file():
        raise DACLError(
            f"the shared defaults '{DEFAULT_CONFIG}' are missing from this dacl install; "
            "reinstall dacl (pip install .)"
        )
    return DEFAULT_CONFIG
