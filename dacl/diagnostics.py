"""Whether the attention selects anything (method.md §5): summary statistics of the weights a
over a split, accumulated batch by batch as a torchmetrics ``Metric`` (summed across processes
under DDP)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

LOW, HIGH = 0.1, 0.9  # a weight is "off" below LOW and "on" above HIGH


class AttentionDiagnostics(Metric):
    """Statistics of attention weights ``a`` ``(n, d)`` of faces with ``labels`` ``(n,)``.

    :meth:`compute` returns, with spreads as population standard deviations:

    * ``mean``: the mean weight;
    * ``face_spread``: the spread of one face's d weights, averaged over faces (0 when every
      face weighs all its features alike);
    * ``weight_spread``: the spread of one weight across faces, averaged over the d weights
      (0 when the attention is the same for every face);
    * ``low`` and ``high``: the fractions of weights below 0.1 and above 0.9;
    * ``mean_<class>``: the mean weight of each class's faces (classes without faces are left
      out).

    Attention that selects nothing has both spreads near 0 and ``low`` = ``high`` = 0.
    """

    full_state_update = False
    faces: Tensor
    weight_sum: Tensor
    weight_sq_sum: Tensor
    face_spread_sum: Tensor
    low: Tensor
    high: Tensor
    class_sum: Tensor
    class_faces: Tensor

    def __init__(self, class_names: Sequence[str], dim: int = 512) -> None:
        super().__init__()
        self.class_names = tuple(class_names)
        k = len(self.class_names)
        zeros = {
            "faces": (), "weight_sum": (dim,), "weight_sq_sum": (dim,), "face_spread_sum": (),
            "low": (), "high": (), "class_sum": (k,), "class_faces": (k,),
        }  # fmt: skip
        for name, shape in zeros.items():
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, attention: Tensor, labels: Tensor) -> None:
        a = attention.detach().to(torch.float64)
        self.faces += a.shape[0]
        self.weight_sum += a.sum(0)
        self.weight_sq_sum += a.pow(2).sum(0)
        self.face_spread_sum += a.std(dim=1, correction=0).sum()
        self.low += (a < LOW).sum()
        self.high += (a > HIGH).sum()
        self.class_sum.index_add_(0, labels, a.mean(1))
        self.class_faces.index_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))

    def compute(self) -> dict[str, Tensor]:
        n, dim = self.faces, self.weight_sum.numel()
        weight_mean = self.weight_sum / n
        weight_var = (self.weight_sq_sum / n - weight_mean.pow(2)).clamp(min=0)
        out = {
            "mean": weight_mean.mean(),
            "face_spread": self.face_spread_sum / n,
            "weight_spread": weight_var.sqrt().mean(),
            "low": self.low / (n * dim),
            "high": self.high / (n * dim),
        }
        for name, total, count in zip(
            self.class_names, self.class_sum, self.class_faces, strict=True
        ):
            if count > 0:
                out[f"mean_{name}"] = total / count
        return out
