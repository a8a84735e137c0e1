"""``torch.hub`` entries: the trained models shipped inside the package, read from its own files
(``dacl/weights/``; nothing is downloaded beyond this repository).

    model = torch.hub.load("path/to/dacl", "dacl_fer2013", source="local")
    logits, features, attention = model(images)  # (B, 7), (B, 512), (B, 512)

``images`` are normalised faces as the model was trained on them (README, "In your own code"):
for ``dacl_fer2013`` gray ``(B, 1, 64, 64)``, for ``dacl_fer2013_small`` gray ``(B, 1, 44, 44)``
(its features and attention are 192 wide). ``dacl.Predictor.from_pretrained()`` takes pictures
instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dacl import pretrained

if TYPE_CHECKING:  # torch.hub lists every public callable here as an entry: no others
    from collections.abc import Callable

    from dacl import DACLModule

dependencies = ["torch", "torchvision", "pytorch_lightning", "torchmetrics", "safetensors"]


def _shipped(name: str) -> Callable[[], DACLModule]:
    """The entry of the shipped model ``dacl/weights/NAME.json``: its DACLModule, in eval mode,
    its SHA-256 checked."""

    def entry() -> DACLModule:
        return pretrained.load(pretrained.WEIGHTS / f"{name}.json")[0]

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"The DACL model shipped with dacl as {name} (model card: docs/model_card.md), in eval "
        "mode; it returns (logits, features, attention) for a batch of normalised faces."
    )
    return entry


dacl_fer2013 = _shipped("dacl_fer2013")
dacl_fer2013_small = _shipped("dacl_fer2013_small")
