"""The DACL network (method.md §1): ResNet-18 trunk (or the compact trunk, §1.6), CE-Unit,
multi-head binary attention, classifier."""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from itertools import pairwise
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock

from dacl.checkpoint import safe_load
from dacl.errors import DACLError

log = logging.getLogger(__name__)

FEAT_DIM = 512  # ResNet-18's last stage width: the deep feature f and the number of heads
LATENT_DIM = 64  # the CE-Unit's output e
Trunk = Literal["resnet18", "compact"]
#: The compact trunk's stage widths (method.md §1.6): one ResNet basic block per stage.
COMPACT_WIDTHS = (24, 48, 96, 192)


def trunk_output_size(image_size: int, small_input: bool = False, trunk: Trunk = "resnet18") -> int:
    """Side of the trunk's last map: ResNet-18 has five stride-2 stages (four without the
    max-pool), the compact trunk four; each ``ceil(s / 2)``."""
    side = image_size
    for _ in range(4 if small_input or trunk == "compact" else 5):
        side = math.ceil(side / 2)
    return side


def compact_trunk(in_chans: int) -> nn.Sequential:
    """The compact trunk (method.md §1.6): a 3x3/2 stem convolution, then one torchvision
    ``BasicBlock`` per stage at :data:`COMPACT_WIDTHS`, the last three with stride 2."""
    width = COMPACT_WIDTHS[0]
    layers: dict[str, nn.Module] = {
        "conv1": nn.Conv2d(in_chans, width, kernel_size=3, stride=2, padding=1, bias=False),
        "bn1": nn.BatchNorm2d(width),
        "relu": nn.ReLU(inplace=True),
    }
    for i, out in enumerate(COMPACT_WIDTHS, 1):
        stride = 1 if i == 1 else 2
        down = None
        if stride != 1 or width != out:
            conv = nn.Conv2d(width, out, kernel_size=1, stride=stride, bias=False)
            down = nn.Sequential(conv, nn.BatchNorm2d(out))
        layers[f"layer{i}"] = BasicBlock(width, out, stride, down)
        width = out
    trunk = nn.Sequential(OrderedDict(layers))
    for m in trunk.modules():  # torchvision's ResNet init
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return trunk


def _fold_rgb_stem(weight: Tensor, in_chans: int) -> Tensor:
    """RGB stem weights summed over channels: on gray input replicated to 3 channels a
    1-channel stem with these weights gives exactly the 3-channel stem's output."""
    if weight.shape[1] == 3 and in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    return weight


class ContextEncoder(nn.Sequential):
    """CE-Unit (method.md §1): the flattened 512·h·w map → 3584 → 512 → 64, BN after each layer,
    ReLU between and Tanh at the end, giving the latent code e (the compact trunk's: d·h·w →
    2d → 128 → 64, §1.6)."""

    def __init__(self, in_features: int, hidden: tuple[int, int] = (3584, 512)) -> None:
        widths = (in_features, *hidden, LATENT_DIM)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(pairwise(widths)):
            last = i == len(widths) - 2
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out)]
            layers.append(nn.Tanh() if last else nn.ReLU(inplace=True))
        super().__init__(*layers)


class AttentionHeads(nn.Module):
    """Multi-head binary classification (method.md §1): ``heads`` two-way softmaxes over one linear
    map of e; the probability of class 1 of head j is the attention weight a_j ∈ (0, 1)."""

    def __init__(self, in_features: int = LATENT_DIM, heads: int = FEAT_DIM) -> None:
        super().__init__()
        self.heads = heads
        self.fc = nn.Linear(in_features, 2 * heads)

    def forward(self, e: Tensor) -> Tensor:
        logits = self.fc(e).view(-1, self.heads, 2)
        return logits.softmax(dim=-1)[..., 1]


class DACLNet(nn.Module):
    """ResNet-18 with the DACL attention branch; ``forward`` returns ``(logits, f, a)``.

    Args:
        num_classes: outputs of the classifier (7 for FER2013).
        image_size: input side; the CE-Unit's first layer reads ``512 · s · s`` values where
            ``s = trunk_output_size(image_size)`` (7 at 193–224 px, 2 at 48–64 px).
        pretrained: ``None``, ``"imagenet"`` (torchvision's file, only from the local torch
            cache) or the path of a trunk checkpoint (e.g. the MS-Celeb-1M ResNet-18).
        attention: ``learned`` (the CE-Unit and heads, method.md §1), ``normalised`` (the
            same, each face's weights then scaled to mean 0.5, method.md §2.5) or a number: that
            constant for every face (1 for plain center loss, 0.5 for the ``dacl_fixed``
            control), with no CE-Unit and heads (their 92M weights are not allocated).
        in_chans: 3 (method.md §1) or 1: a gray stem, an exact reparametrisation of the RGB stem on
            FER2013's replicated-gray input at a third of the stem's work (see
            :meth:`param_groups`).
        small_input: drop the trunk's 3x3/2 max-pool, so a 48 px face ends in a 3x3 map
            instead of 2x2 (4x the trunk's work). A deviation from the paper's ResNet-18, as
            FER2013 networks at native resolution commonly make; off by default.
        trunk: ``resnet18`` (the paper's) or ``compact`` (method.md §1.6: 0.69M weights, d = 192
            features and heads, a CE-Unit of 2d and 128 hidden units).
    """

    def __init__(
        self,
        num_classes: int = 7,
        image_size: int = 200,
        pretrained: str | None = None,
        attention: Literal["learned", "normalised"] | float = "learned",
        in_chans: int = 3,
        small_input: bool = False,
        trunk: Trunk = "resnet18",
    ) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise DACLError(f"in_chans must be 1 or 3, got {in_chans}")
        if trunk not in get_args(Trunk):
            raise DACLError(f"trunk must be one of {', '.join(get_args(Trunk))}, got '{trunk}'")
        if image_size < 1:
            raise DACLError(f"image_size must be at least 1 pixel, got {image_size}")
        if isinstance(attention, str) and attention not in ("learned", "normalised"):
            raise DACLError(f"attention must be learned, normalised or a number, got {attention}")
        if trunk == "compact":
            self.trunk, d, hidden = compact_trunk(in_chans), COMPACT_WIDTHS[-1], (384, 128)
        else:
            self.trunk, d, hidden = _resnet18_trunk(in_chans, small_input), FEAT_DIM, (3584, 512)
        self.in_chans = in_chans
        self.image_size = image_size
        self.attention = attention
        #: the gray stem is a folded RGB stem only in ResNet-18 (method.md §1.4)
        self.folded_stem = trunk == "resnet18" and in_chans == 1
        side = trunk_output_size(image_size, small_input, trunk)
        learned = isinstance(attention, str)
        self.encoder = ContextEncoder(d * side * side, hidden) if learned else None
        self.heads = AttentionHeads(heads=d) if learned else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        # method.md §1: the CE-Unit's and the heads' Linears Kaiming-normal with zero bias; the
        # classifier keeps nn.Linear's default init (the reference builds it after that loop).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        self.classifier = nn.Linear(d, num_classes)
        if pretrained is not None:
            self.load_pretrained(pretrained)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.shape[1] != self.in_chans:
            # FER2013 is gray: a 1-channel batch is replicated for the RGB stem, and of a
            # replicated 3-channel batch the gray stem needs one channel.
            x = x.expand(-1, 3, -1, -1) if self.in_chans == 3 else x[:, :1]
        fmap = self.trunk(x)
        f = self.pool(fmap).flatten(1)
        logits = self.classifier(f)
        if self.encoder is None:
            return logits, f, torch.full_like(f, float(self.attention))
        a = self.heads(self.encoder(fmap.flatten(1)))
        if self.attention == "normalised":  # raising one weight of a face lowers the others
            a = a * (0.5 / a.mean(dim=-1, keepdim=True))
        return logits, f, a

    def num_params(self) -> int:
        """The network's weights (method.md §1: 20,460,679 for the gray-stem ResNet-18 at 64 px
        and smaller, 1,439,055 for the compact trunk); the class centers are the loss's, not
        counted. Before :meth:`fold_batchnorms`, which removes the BatchNorms' weights."""
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def fold_batchnorms(self) -> DACLNet:
        """For inference only: each of the trunk's BatchNorms folded into the convolution
        before it (``conv1``/``bn1``, ``conv2``/``bn2`` and the shortcuts' pairs), with the
        running statistics of eval mode. The same outputs to float rounding in half the layers
        (the compact trunk's batch-1 latency is mostly per-layer overhead). In place; returns
        the network. Training it afterwards would train without BatchNorm."""
        if self.training:
            raise DACLError("fold_batchnorms is for inference: call eval() first")
        for m in list(self.trunk.modules()):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                c, b = getattr(m, conv, None), getattr(m, bn, None)
                if isinstance(c, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    setattr(m, conv, fuse_conv_bn_eval(c, b))
                    setattr(m, bn, nn.Identity())
            down = getattr(m, "downsample", None)
            if isinstance(down, nn.Sequential) and isinstance(down[-1], nn.BatchNorm2d):
                m.downsample = nn.Sequential(fuse_conv_bn_eval(down[0], down[1]))
        return self

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """SGD parameter groups: the gray stem trains exactly like the RGB one (method.md §1.4).

        On gray input replicated to 3 channels the RGB stem's output depends only on
        V = W_r + W_g + W_b, and all three slices receive the same gradient g. One SGD step with
        momentum μ and weight decay w moves each slice by lr·(g + w·W_c), so V moves by
        lr·(3g + w·V), and the momentum buffers add up the same way. A 1-channel stem holding V
        (initialised as the RGB init summed over channels) receives g; with learning rate 3·lr
        and weight decay w/3 its step is 3·lr·(g + w/3·V) — the same, step for step. A
        scheduler scales every group's rate by the same factor, so this holds throughout.
        """
        stem = self.trunk.conv1.weight
        rest = [p for p in self.parameters() if p is not stem]
        if not self.folded_stem:
            return [{"params": [stem, *rest]}]
        gray = {"params": [stem], "lr": 3 * lr, "weight_decay": weight_decay / 3}
        return [{"params": rest}, gray]

    def load_pretrained(self, source: str) -> int:
        """Load trunk weights from ``"imagenet"`` or a checkpoint path; return how many tensors
        matched. A ``state_dict`` entry and ``module.`` prefixes are accepted; RGB stems are
        folded for a gray stem. Files are read with ``weights_only=True``: a pickle that would
        run code is refused."""
        path = _imagenet_file() if source == "imagenet" else Path(source)
        if not path.is_file():
            raise DACLError(
                f"pretrained weights file '{path}' not found: supply a ResNet-18 checkpoint "
                "(e.g. the MS-Celeb-1M ResNet-18 shared with DACL/SCN) and pass "
                "--model.pretrained PATH"
            )
        obj = safe_load(path, "pretrained weights file")
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict):
            raise DACLError(f"'{path}' holds no state dict (found {type(obj).__name__})")
        own = self.trunk.state_dict()
        matched = {}
        for key, value in state.items():
            name = key.removeprefix("module.").removeprefix("trunk.")
            if name not in own or not isinstance(value, Tensor):
                continue
            if name == "conv1.weight":
                value = _fold_rgb_stem(value, self.in_chans)
            if value.shape == own[name].shape:
                matched[name] = value
        if not matched:
            raise DACLError(
                f"no tensor in '{path}' matches the ResNet-18 trunk "
                f"(expected keys such as conv1.weight, layer1.0.conv1.weight)"
            )
        self.trunk.load_state_dict(matched, strict=False)
        missing = sorted(set(own) - set(matched))
        log.info(
            "pretrained %s: loaded %d/%d trunk tensors%s",
            path,
            len(matched),
            len(own),
            f"; missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"
            if missing
            else "",
        )
        return len(matched)


def _resnet18_trunk(in_chans: int, small_input: bool) -> nn.Sequential:
    """torchvision's ResNet-18 up to ``layer4`` (method.md §1), with the gray stem folded from
    the RGB init for ``in_chans`` 1 (§1.4) and without the max-pool for ``small_input``."""
    base = resnet18()  # torchvision's init: convs Kaiming-normal (fan_out), BN 1 / 0
    if in_chans == 1:
        rgb = base.conv1
        base.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            base.conv1.weight.copy_(_fold_rgb_stem(rgb.weight, in_chans))
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    if small_input:
        names = tuple(n for n in names if n != "maxpool")
    return nn.Sequential(OrderedDict((n, getattr(base, n)) for n in names))


def _imagenet_file() -> Path:
    """torchvision's ImageNet ResNet-18 in the local torch cache (never downloaded here)."""
    filename = Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / filename
    if not path.is_file():
        raise DACLError(
            f"ImageNet weights '{filename}' are not in the local torch cache: put the file in "
            f"'{folder}' (dacl never downloads), or pass --model.pretrained PATH"
        )
    return path
