"""dacl: Deep Attentive Center Loss for facial expression recognition, in PyTorch Lightning."""

from dacl.classes import FER2013_CLASSES
from dacl.data import FER2013DataModule
from dacl.errors import DACLError
from dacl.loss import SparseCenterLoss
from dacl.model import AttentionHeads, ContextEncoder, DACLNet
from dacl.module import DACLModule
from dacl.predictor import Predictor

__all__ = [
    "FER2013_CLASSES",
    "AttentionHeads",
    "ContextEncoder",
    "DACLError",
    "DACLModule",
    "DACLNet",
    "FER2013DataModule",
    "Predictor",
    "SparseCenterLoss",
]
__version__ = "0.1.0"
