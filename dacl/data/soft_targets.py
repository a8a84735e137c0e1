"""A teacher file (method.md §2.6): soft targets of the train and val faces of one dataset, as
:class:`SoftTargets`, stored as an ``.npz`` (float16 probabilities, no pickled objects)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dacl.errors import DACLError
from dacl.outputs import replacing

SPLITS = ("train", "val")  # the splits a teacher covers: never test


@dataclass(frozen=True)
class SoftTargets:
    """Per split (:data:`SPLITS`): ``keys`` (n,) sample names, ``labels`` (n,) class ids and
    ``probs`` (n, K) probabilities over ``class_names``."""

    class_names: tuple[str, ...]
    keys: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]

    def accuracy(self, split: str = "val") -> tuple[float, float]:
        """Accuracy and balanced accuracy (mean recall over the classes present) on ``split``."""
        pred, labels = self.probs[split].argmax(1), self.labels[split]
        recalls = [(pred[labels == k] == k).mean() for k in np.unique(labels)]
        return float((pred == labels).mean()), float(np.mean(recalls))

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` whole or not at all (a temporary file renamed into place)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {"class_names": np.array(self.class_names)}
        for split in SPLITS:
            arrays[f"{split}_keys"] = np.asarray(self.keys[split], dtype=str)
            arrays[f"{split}_labels"] = self.labels[split].astype(np.int16)
            arrays[f"{split}_probs"] = self.probs[split].astype(np.float16)
        with replacing(path, "soft-target file", binary=True) as pending:
            np.savez_compressed(pending.file, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SoftTargets:
        """Read an ``.npz`` written by :meth:`save`; anything else is a one-line error. Object
        arrays (pickles) are refused."""
        names = ["class_names", *(f"{s}_{a}" for s in SPLITS for a in ("keys", "labels", "probs"))]
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [n for n in names if n not in npz.files]
                if missing:
                    raise DACLError(
                        f"soft targets '{path}' lack {', '.join(missing)}: expected a file "
                        "written by dacl ensemble or dacl ablate --soft"
                    )
                got = {n: npz[n] for n in names}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise DACLError(f"soft targets '{path}' cannot be read as .npz: {err}") from None
        out = cls(
            tuple(got["class_names"].tolist()),
            *({s: got[f"{s}_{a}"] for s in SPLITS} for a in ("keys", "labels", "probs")),
        )
        out.check(str(path))
        return out

    def check(self, where: str) -> None:
        """One-line error unless every split's arrays agree in length and class count."""
        k = len(self.class_names)
        for split in SPLITS:
            n = len(self.keys[split])
            if self.labels[split].shape != (n,) or self.probs[split].shape != (n, k):
                raise DACLError(
                    f"soft targets '{where}': the {split} arrays disagree (keys {n}, labels "
                    f"{self.labels[split].shape}, probs {self.probs[split].shape}, {k} classes)"
                )

    def probs_for(
        self, split: str, names: list[str], labels: np.ndarray, classes: tuple[str, ...], where: str
    ) -> np.ndarray:
        """The probabilities of ``split``, checked to be for exactly these faces: the same
        sample names in the same order, the same labels, the same class names; anything else
        is a one-line error naming ``where`` (a teacher of another dataset, layout or class
        order)."""
        if self.class_names != tuple(classes):
            raise DACLError(
                f"{where} has classes {', '.join(self.class_names)}, the data {', '.join(classes)}"
            )
        keys = self.keys[split]
        if len(keys) != len(names) or not np.array_equal(keys, np.asarray(names, dtype=str)):
            raise DACLError(
                f"{where} covers other {split} faces than the data, or in another order "
                f"({len(keys)} vs {len(names)}): make it from this dataset (dacl ensemble)"
            )
        if not np.array_equal(self.labels[split], labels):
            raise DACLError(f"{where}: its {split} labels are not the data's")
        return self.probs[split].astype(np.float32)
