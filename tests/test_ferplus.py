"""FER+ labels (the votes file, the published majority rule, on the real label file) and the
other datasets' label ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dacl import DACLError
from dacl.classes import FERPLUS_CLASSES
from dacl.data.ferplus import DROPPED, VOTE_COLUMNS, majority_labels, read_votes

REAL = Path(__file__).resolve().parents[2] / "shared" / "ferplus" / "fer2013new.csv"
HEADER = "Usage,Image name," + ",".join(VOTE_COLUMNS)
#: file column → the canonical class name it votes for
NAMES = dict(zip(VOTE_COLUMNS[:8], ("neutral", "happy", "surprise", "sad", "angry", "disgust",
                                    "fear", "contempt"), strict=True))  # fmt: skip


def _rule(name: str, votes: list[int]) -> str | None:
    """The majority rule as the FER+ paper states it, one row at a time."""
    kept = [v if v > 1 else 0 for v in votes]
    top = max(kept)
    winner = VOTE_COLUMNS[kept.index(top)]
    if not name or 2 * top <= sum(kept) or winner in ("unknown", "NF"):
        return None
    return NAMES[winner]


def test_majority_rule_on_hand_made_rows(tmp_path):
    rows = {
        "fer0.png,6,1,0,0,0,0,0,0,3,0": "neutral",  # the single happy vote is an outlier
        "fer1.png,0,5,5,0,0,0,0,0,0,0": None,  # a tie is no majority
        "fer2.png,0,0,0,0,0,0,0,2,6,2": None,  # unknown wins
        "fer3.png,0,0,0,0,0,0,0,6,0,4": "contempt",
        ",0,10,0,0,0,0,0,0,0,0": None,  # FER+ gave this row no image
        "fer5.png,1,1,1,1,1,1,1,3,0,0": "contempt",  # ones vanish: 3 of 3
    }
    path = tmp_path / "fer2013new.csv"
    path.write_text(HEADER + "\n" + "".join(f"Training,{r}\n" for r in rows))
    labels = majority_labels(read_votes(path)).tolist()
    expected = [FERPLUS_CLASSES.index(c) if c else DROPPED for c in rows.values()]
    assert labels == expected
    assert FERPLUS_CLASSES.index("contempt") == 7


def test_bad_files_are_one_line_naming_the_file_and_line(tmp_path):
    path = tmp_path / "fer2013new.csv"
    path.write_text("Usage,Image name,neutral\n")
    with pytest.raises(DACLError, match=r"fer2013new\.csv: expected the columns Usage"):
        read_votes(path)
    path.write_text(HEADER + "\nTraining,fer0.png,1,2,x,0,0,0,0,0,0,0\n")
    with pytest.raises(DACLError, match=r"fer2013new\.csv, line 2: expected 12 fields of votes"):
        read_votes(path)
    with pytest.raises(DACLError, match="not found"):
        read_votes(tmp_path / "none.csv")


@pytest.mark.skipif(not REAL.is_file(), reason="needs ../shared/ferplus/fer2013new.csv")
def test_real_label_file_gives_the_counts_the_rule_implies():
    votes = read_votes(REAL)
    assert len(votes.usage) == 35_887  # one row per fer2013.csv row
    labels = majority_labels(votes)
    lines = REAL.read_text().splitlines()[1:]
    for split in ("Training", "PublicTest", "PrivateTest"):
        expected = Counter()
        for line in lines:
            usage, name, *counts = line.split(",")
            if usage == split:
                expected[_rule(name, [int(c) for c in counts])] += 1
        got = Counter(
            FERPLUS_CLASSES[k] if k != DROPPED else None
            for k in labels[votes.usage == split].tolist()
        )
        assert got == expected, split
        assert got["contempt"] > 0 and got[None] > 0


def test_other_datasets_ids_map_onto_the_canonical_classes_by_name():
    from dacl.classes import FER2013_CLASSES, dataset_label

    # RAF-DB's list_patition_label.txt: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness,
    # 6 anger, 7 neutral
    raf = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}
    for raw, name in raf.items():
        assert FER2013_CLASSES[dataset_label("rafdb", raw)] == name
    # AffectNet's folders: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger,
    # 7 contempt
    assert [FERPLUS_CLASSES[dataset_label("affectnet", i)] for i in range(8)] == [
        "neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt",
    ]  # fmt: skip
    with pytest.raises(DACLError, match=r"rafdb label 0 is not one of its ids 1\.\.7"):
        dataset_label("rafdb", 0)
    with pytest.raises(DACLError, match="affectnet label 8"):
        dataset_label("affectnet", 8)
