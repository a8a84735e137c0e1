"""FER+ labels of FER2013's faces (Barsoum et al., ICMI 2016): ``fer2013new.csv``.

Row ``i`` labels row ``i`` of ``fer2013.csv``: ``Usage`` (Training / PublicTest / PrivateTest),
``Image name`` (empty for a row FER+ dropped), then the votes of 10 taggers for neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown and NF (not a face).
Classes come out in :data:`~dacl.classes.FERPLUS_CLASSES` order: FER2013's 7 ids, contempt 7.

The ``majority`` mode of the FER+ paper and its reference scripts: a single vote for an
emotion is taken as an outlier and zeroed; the top emotion is the label when it holds more
than half of the remaining votes; a row without such a majority, or whose winner is unknown
or NF, or without an image name, is dropped.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dacl.classes import FERPLUS_CLASSES
from dacl.errors import DACLError

#: The vote columns of ``fer2013new.csv``, in file order.
VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)  # fmt: skip
#: Each emotion column's class id in FERPLUS_CLASSES (unknown and NF are not classes).
COLUMN_CLASS = np.array(
    [
        FERPLUS_CLASSES.index(c)
        for c in ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt")
    ]
)
#: Drop marker in a label vector.
DROPPED = -1


@dataclass
class FerPlusVotes:
    """The file's rows: ``usage`` (N,), ``named`` (N,) whether the row has an image name, and
    ``votes`` (N, 10) in :data:`VOTE_COLUMNS` order."""

    usage: np.ndarray
    named: np.ndarray
    votes: np.ndarray


def read_votes(path: str | Path) -> FerPlusVotes:
    """Read ``fer2013new.csv``; a wrong header or row is one :class:`DACLError` naming the
    file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DACLError(f"FER+ label file '{path}' not found (fer2013new.csv)")
    usage, named, votes = [], [], []
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        if [h.strip() for h in header] != ["Usage", "Image name", *VOTE_COLUMNS]:
            raise DACLError(
                f"{path}: expected the columns Usage, Image name, {', '.join(VOTE_COLUMNS)}"
            )
        for line, row in enumerate(rows, start=2):
            try:
                if len(row) != 12:
                    raise ValueError(f"{len(row)} fields")
                counts = [int(v) for v in row[2:]]
            except ValueError as err:
                raise DACLError(
                    f"{path}, line {line}: expected 12 fields of votes ({err})"
                ) from None
            usage.append(row[0])
            named.append(bool(row[1].strip()))
            votes.append(counts)
    return FerPlusVotes(np.array(usage), np.array(named), np.array(votes, dtype=np.int64))


def majority_labels(votes: FerPlusVotes) -> np.ndarray:
    """The ``majority`` label of every row in FERPLUS_CLASSES ids, :data:`DROPPED` where FER+
    drops the row (see the module doc)."""
    kept = np.where(votes.votes > 1, votes.votes, 0)  # a single vote is an outlier
    winner = kept.argmax(1)
    top = kept.max(1)
    majority = 2 * top > kept.sum(1)
    emotion = winner < len(COLUMN_CLASS)  # unknown and NF are not labels
    labels = np.full(len(kept), DROPPED, dtype=np.int64)
    ok = majority & emotion & votes.named
    labels[ok] = COLUMN_CLASS[winner[ok]]
    return labels
