"""FER2013's constants, in one place: the canonical class order and the folder-name synonyms
users meet, the image side and the train-split statistics (SPEC §3), and the measures every
evaluation reports (SPEC §5)."""

from __future__ import annotations

from dacl.errors import DACLError

#: The dataset's own label ids: every output index in dacl means this order.
FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)

#: FER+ relabels FER2013's faces into these 8 classes: FER2013's 7 (same ids) and contempt as 7.
FERPLUS_CLASSES: tuple[str, ...] = (*FER2013_CLASSES, "contempt")

#: Other datasets' own label ids, as each distributes them, by canonical class name: RAF-DB's
#: basic set (``list_patition_label.txt``: 1–7) and AffectNet's folders (0–7; contempt is 7).
DATASET_IDS: dict[str, dict[int, str]] = {
    "rafdb": dict(
        enumerate(("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"), 1)
    ),
    "affectnet": dict(
        enumerate(("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"))
    ),
}

#: FER2013's image side: 48x48 gray faces.
FER2013_SIDE = 48

#: Train-split grayscale statistics (pixel / 255) of the sharp train images, SPEC §3.
FER2013_MEAN = 0.5077
FER2013_STD = 0.2546

#: The measures reported beside each other everywhere (selection measure: balanced accuracy).
REPORTED_METRICS: tuple[str, ...] = ("acc", "balanced_acc", "f1_macro")

_SYNONYMS: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fearful": "fear",
    "scared": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "suprise": "surprise",
    "calm": "neutral",
    "neutrality": "neutral",
}


def dataset_label(dataset: str, raw: int) -> int:
    """A dataset's own label id (:data:`DATASET_IDS`) → its id in :data:`FERPLUS_CLASSES` (the
    7 FER2013 ids, contempt 7); :class:`DACLError` naming the valid ids otherwise."""
    ids = DATASET_IDS[dataset]
    if raw not in ids:
        raise DACLError(f"{dataset} label {raw} is not one of its ids {min(ids)}..{max(ids)}")
    return FERPLUS_CLASSES.index(ids[raw])


def class_index(name: str) -> int:
    """Map a folder name such as ``Happy`` or ``sadness`` onto its canonical label id.

    Raises :class:`DACLError` naming the expected classes when ``name`` is not an expression.
    """
    key = name.strip().lower()
    key = _SYNONYMS.get(key, key)
    if key not in FER2013_CLASSES:
        raise DACLError(
            f"'{name}' is not a FER2013 expression; expected one of {', '.join(FER2013_CLASSES)}"
        )
    return FER2013_CLASSES.index(key)
