"""FER+ labels of FER2013's faces (Barsoum et al., ICMI 2016): ``fer2013new.csv``.

Row ``i`` labels row ``i`` of ``fer2013.csv``: ``Usage`` (Training / PublicTest / PrivateTest),
``Image name`` (empty for a row FER+ dropped), then the votes of 10 taggers for neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown and NF (not a face).
Classes come out in :data:`~dacl.classes.FERPLUS_CLASSES` order: FER2013's 7 ids, contempt 7.

The ``majority`` mode of the FER+ paper and its reference scripts: a single vote for an
emotion is taken as an outlier and zeroed; the top emotion is the label when it holds more
than half of the remaining votes; a row without such a majority, or whose winner is unknown
or NF, or without an image name, is dropped.

The ``crossentropy`` and ``probability`` modes train on the vote distribution instead
(:func:`vote_distribution`): after the same outlier removal, the most-voted emotions are taken
in turn until they hold 75 % of the votes (at most 3 of them); a row whose taken emotions hold
no more than half of the votes, or where unknown / NF ties in or wins, is dropped. The
``multi_target`` mode takes every emotion with at least 30 % of the votes as a target (the
loss: −log of the probability on the targets); a row whose targets hold no more than half of
the votes, or where unknown / NF is among the most voted targets, is dropped. The hard label
(for the centers and the measures) is the distribution's top emotion.
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


def vote_distribution(
    votes: FerPlusVotes, mode: str = "crossentropy"
) -> tuple[np.ndarray, np.ndarray]:
    """The targets of the ``crossentropy`` / ``probability`` and ``multi_target`` modes (see the
    module doc): float32 (N, 8) distributions over FERPLUS_CLASSES (for ``multi_target``, the
    target set is where it is positive), and (N,) whether the row is kept."""
    counts = np.where(votes.votes > 1, votes.votes, 0).astype(np.float64)
    total = counts.sum(1)
    keep = votes.named & (total > 0)
    if mode == "multi_target":
        taken = np.where(counts >= 0.3 * total[:, None], counts, 0.0)
        top = taken.argmax(1)
        keep &= (taken.sum(1) > 0.5 * total) & (top < len(COLUMN_CLASS))
    else:
        taken = _most_voted(counts, total, keep)
    emotions = np.zeros((len(counts), len(FERPLUS_CLASSES)), dtype=np.float64)
    emotions[:, COLUMN_CLASS] = taken[:, : len(COLUMN_CLASS)]
    sums = emotions.sum(1, keepdims=True)
    dist = np.divide(emotions, sums, out=np.zeros_like(emotions), where=sums > 0)
    return dist.astype(np.float32), keep


def _most_voted(counts: np.ndarray, total: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The votes of the emotions the distribution modes take (updates ``keep`` in place)."""
    taken = np.zeros_like(counts)
    for i in np.flatnonzero(keep):
        rest, part, n, valid = counts[i].copy(), 0.0, 0, True
        while part < 0.75 * total[i] and n < 3 and valid:
            top = rest.max()
            for j in np.flatnonzero(rest == top):  # the most voted, in column order
                if j >= len(COLUMN_CLASS):  # unknown or NF: no further emotion is taken
                    valid = False
                    break
                taken[i, j], rest[j] = top, 0
                part, n = part + top, n + 1
        keep[i] = 0 < n <= 3 and part > 0.5 * total[i]
    return taken
