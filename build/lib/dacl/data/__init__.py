"""FER2013 data: layouts on disk, synthetic faces, transforms and the LightningDataModule."""

from dacl.data.datamodule import FER2013DataModule
from dacl.data.layouts import Layout, SplitIndex, decode_split, find_layout

__all__ = ["FER2013DataModule", "Layout", "SplitIndex", "decode_split", "find_layout"]
