"""Files shipped inside the package, so an installed ``dacl`` has them wherever it runs: the
shared defaults every ``dacl`` command reads first, ``configs/default.yaml`` (``dacl/configs/``;
the repository's ``configs/`` links there), and the markdown templates of ``dacl report`` and
``dacl ablate`` (``dacl/templates/``)."""

from __future__ import annotations

from importlib.resources import files
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


def template(name: str) -> str:
    """The text of ``dacl/templates/<name>``, to fill in with :meth:`str.format`."""
    return files("dacl").joinpath("templates", name).read_text(encoding="utf-8")
