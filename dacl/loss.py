"""Sparse center loss and its class centers (method.md §2); the distillation term (§2.6)."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def distillation_loss(logits: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """L_KD = T² · KL(q^T ‖ p^T), the batch mean (method.md §2.6): ``teacher`` holds the
    teacher's probabilities q (B, K), softened as softmax(log q / T); ``logits`` the student's
    z, softened as softmax(z / T). Its gradient in z is (T / B) · (p^T − q^T)."""
    t = temperature
    log_q = F.log_softmax(teacher.float().clamp_min(1e-12).log() / t, dim=-1)
    log_p = F.log_softmax(logits.float() / t, dim=-1)
    return t * t * F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)


class SparseCenterLoss(nn.Module):
    """L_SC = 1/(2m) · Σ_i Σ_j a_ij · (f_ij − c_{y_i,j})²  (method.md §2).

    Autograd of this expression gives exactly method.md's gradients: ``a ⊙ (f − c) / m`` for the
    features and ``(f − c)² / (2m)`` for the attention (λ comes from the total loss). The centers
    are a buffer, not a parameter: no optimizer, weight decay or scheduler touches them; they
    move only by :meth:`update_centers`, and they are saved in the ``state_dict``.
    """

    centers: Tensor

    def __init__(self, num_classes: int = 7, feat_dim: int = 512, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha
        # N(0, 2/K): Kaiming-normal with the K axis as fan-in.
        std = math.sqrt(2.0 / num_classes)
        self.register_buffer("centers", torch.randn(num_classes, feat_dim) * std)

    def forward(self, features: Tensor, attention: Tensor, labels: Tensor) -> Tensor:
        # In the centers' float32 even under autocast: squared distances of 512-d features
        # overflow fp16.
        dtype = self.centers.dtype
        with torch.autocast(device_type=features.device.type, enabled=False):
            diff = features.to(dtype) - self.centers[labels]
            return (attention.to(dtype) * diff.pow(2)).sum() / (2 * features.shape[0])

    @torch.no_grad()
    def update_centers(self, features: Tensor, attention: Tensor, labels: Tensor) -> None:
        """c_k ← c_k + α·Σ_{i: y_i=k} a_i ⊙ (f_i − c_k) / (1 + n_k)  (method.md §2.3, Wen et al.).

        No λ: the reference's custom backward returns this step as the centers' gradient without
        scaling it by the incoming gradient (reference ``loss.py``,
        ``SparseCenterLossFunction.backward``) and steps the centers by ``SGD(lr=α)``, so the λ
        that weighs L_SC in the total loss never reaches them.

        Under ``torch.distributed`` the per-class sums and counts are all-reduced first, so every
        process applies the update of the global batch and the centers stay identical.
        """
        num_classes = self.centers.shape[0]
        dtype = self.centers.dtype
        pull = attention.to(dtype) * (features.to(dtype) - self.centers[labels])
        sums = torch.zeros_like(self.centers).index_add_(0, labels, pull)
        # index_add_, not bincount: on CUDA bincount reads the largest label back to the host.
        counts = torch.zeros(num_classes, dtype=sums.dtype, device=sums.device)
        counts.index_add_(0, labels, torch.ones_like(labels, dtype=sums.dtype))
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            packed = torch.cat([sums, counts[:, None]], dim=1)
            dist.all_reduce(packed)
            sums, counts = packed[:, :-1], packed[:, -1]
        self.centers.add_(sums / (1 + counts[:, None]), alpha=self.alpha)
