"""FER2013 data: layouts on disk, synthetic faces, batched augmentation, the LightningDataModule."""

from dacl.data.datamodule import FER2013DataModule
from dacl.data.layouts import Layout, SplitIndex, decode_split, find_layout
from dacl.data.options import FaceOptions, LabelOptions

__all__ = [
    "FER2013DataModule",
    "FaceOptions",
    "LabelOptions",
    "Layout",
    "SplitIndex",
    "decode_split",
    "find_layout",
]
