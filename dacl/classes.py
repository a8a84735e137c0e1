"""The class and dataset constants, in one place: the canonical class order, other datasets'
label ids and the folder-name synonyms users meet, FER2013's image side and train-split
statistics (method.md §3), ImageNet's, and the measures every evaluation reports (method.md §5)."""

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

#: Per-channel normalisation statistics (means, stds) of pixel / 255; one value applies to
#: every channel.
Stats = tuple[tuple[float, ...], tuple[float, ...]]

#: Train-split grayscale statistics (pixel / 255) of the sharp train images, method.md §3.3.
FER2013_MEAN = 0.5077
FER2013_STD = 0.2546
FER2013_STATS: Stats = ((FER2013_MEAN,), (FER2013_STD,))

#: ImageNet's RGB statistics: the normalisation of the RGB datasets and pretrained trunks.
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

#: RAF-DB's RGB statistics, as the DACL reference code normalises it.
RAFDB_STATS: Stats = ((0.5752, 0.4495, 0.4012), (0.2086, 0.1911, 0.1827))

#: The measures reported beside each other everywhere.
REPORTED_METRICS: tuple[str, ...] = ("acc", "balanced_acc", "f1_macro")
#: What chooses a run's best epoch (method.md §5): the best checkpoint (configs/default.yaml's
#: ``monitor``), the ablation's "best" and the shipped models' selection.
SELECTION_METRIC = "val/balanced_acc"
#: Their names in tables and plots.
METRIC_LABELS: dict[str, str] = {
    "acc": "acc",
    "balanced_acc": "balanced acc",
    "f1_macro": "macro F1",
}

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
    "contemptuous": "contempt",
}


def dataset_label(dataset: str, raw: int) -> int:
    """A dataset's own label id (:data:`DATASET_IDS`) → its id in :data:`FERPLUS_CLASSES` (the
    7 FER2013 ids, contempt 7); :class:`DACLError` naming the valid ids otherwise."""
    ids = DATASET_IDS[dataset]
    if raw not in ids:
        raise DACLError(f"{dataset} label {raw} is not one of its ids {min(ids)}..{max(ids)}")
    return FERPLUS_CLASSES.index(ids[raw])


def class_index(name: str, classes: tuple[str, ...] = FER2013_CLASSES) -> int:
    """Map a folder name such as ``Happy`` or ``sadness`` onto its id in ``classes``.

    Raises :class:`DACLError` naming the expected classes when ``name`` is not one of them.
    """
    key = name.strip().lower()
    key = _SYNONYMS.get(key, key)
    if key not in classes:
        which = "a FER2013 expression" if classes == FER2013_CLASSES else "an expression"
        raise DACLError(f"'{name}' is not {which}; expected one of {', '.join(classes)}")
    return classes.index(key)
