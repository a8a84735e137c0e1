"""FER2013's canonical class order (SPEC §3) and the folder-name synonyms users meet."""

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
