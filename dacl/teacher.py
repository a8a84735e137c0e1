"""Soft targets of trained models and their ensemble: the teacher of distillation (method.md §2.6).

A model's soft targets are its ten-crop softmax on every train and val face of its dataset
(:func:`soft_targets`), kept as :class:`SoftTargets`: per split the faces' keys (the dataset's
sample names, in dataset order), their labels and their probabilities, stored in an ``.npz``
(float16 probabilities, no pickled objects). An ensemble is the mean of several models'
probabilities (:func:`ensemble`); :func:`select` picks its members greedily by val balanced
accuracy. ``dacl ensemble`` (:func:`main`) writes either.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dacl.data import FER2013DataModule, options
from dacl.data.soft_targets import SPLITS, SoftTargets
from dacl.errors import DACLError
from dacl.outputs import check_apart, check_folder
from dacl.predictor import Predictor
from dacl.usage import ProgramParser


@torch.no_grad()
def soft_targets(predictor: Predictor, datamodule: FER2013DataModule) -> SoftTargets:
    """The predictor's softmax (with its own test-time views: ten-crop for ``tta="crops"``) on
    every face of the datamodule's train and val splits, in dataset order."""
    if tuple(datamodule.class_names) != predictor.class_names:
        raise DACLError(
            f"the model's classes ({', '.join(predictor.class_names)}) are not the data's "
            f"({', '.join(datamodule.class_names)})"
        )
    datamodule.setup("fit")
    keys, labels, probs = {}, {}, {}
    for split in SPLITS:
        labels[split] = datamodule.labels(split).numpy()
        keys[split] = np.asarray(datamodule.names(split), dtype=str)
        faces = datamodule.faces(split, torch.arange(len(labels[split])))
        probs[split] = predictor.predict_faces(faces).probs.numpy()
    return SoftTargets(predictor.class_names, keys, labels, probs)


def ensemble(members: Sequence[SoftTargets], where: Sequence[str]) -> SoftTargets:
    """The mean of the members' probabilities; one-line error unless they share classes and
    keys (``where`` names the members in it)."""
    first = members[0]
    for member, name in zip(members[1:], where[1:], strict=True):
        if member.class_names != first.class_names:
            raise DACLError(
                f"'{name}' has classes {member.class_names}, '{where[0]}' {first.class_names}"
            )
        for split in SPLITS:
            if not np.array_equal(member.keys[split], first.keys[split]):
                raise DACLError(
                    f"'{name}' covers other {split} faces, or in another order, than "
                    f"'{where[0]}': soft targets of one dataset and layout only"
                )
    probs = {s: np.mean([m.probs[s].astype(np.float64) for m in members], 0) for s in SPLITS}
    return SoftTargets(first.class_names, first.keys, first.labels, probs)


def select(members: Sequence[SoftTargets], where: Sequence[str]) -> list[int]:
    """Greedy forward selection: start from the member of best val balanced accuracy and add,
    one at a time, the member that raises the ensemble's the most, while one does."""
    score = [m.accuracy()[1] for m in members]
    chosen = [int(np.argmax(score))]
    best = score[chosen[0]]
    while True:
        trials = {
            i: ensemble([members[j] for j in [*chosen, i]], [where[j] for j in [*chosen, i]])
            for i in range(len(members))
            if i not in chosen
        }
        gains = {i: t.accuracy()[1] for i, t in trials.items()}
        if not gains or max(gains.values()) <= best:
            return chosen
        pick = max(gains, key=gains.__getitem__)
        chosen.append(pick)
        best = gains[pick]


def parser() -> ProgramParser:
    p = ProgramParser(
        prog="dacl ensemble",
        description="Average models' soft targets (ten-crop softmax on train and val) into a "
        "teacher file for distillation; report each member's and the ensemble's val accuracy.",
    )
    p.add_argument("soft", nargs="*", type=str, help="soft-target files (.npz)")
    p.add_argument(
        "--models", nargs="+", type=str, default=[],
        help="models whose soft targets to compute: checkpoints, weights configs (.json) or "
        "'pretrained' (the shipped model), evaluated ten-crop on --data.*'s train and val",
    )  # fmt: skip
    p.add_argument("--data", type=dict[str, Any], default={}, help="FER2013DataModule options")
    p.add_argument("--out", type=str, required=True, help="the teacher file to write (.npz)")
    p.add_argument(
        "--select", type=bool, default=False,
        help="keep only the members that greedy forward selection by val balanced accuracy picks",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> None:
    """``dacl ensemble``."""
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.soft and not args.models:
        raise DACLError("dacl ensemble needs soft-target files or --models")
    check_folder(Path(args.out).parent, "--out folder")  # before the models' minutes of work
    check_apart(args.out, [*args.soft, *args.models], "--out", "members' files")
    members = [SoftTargets.load(p) for p in args.soft]
    if args.models:
        data = FER2013DataModule(**options.grouped(args.data))
        for model in args.models:
            path = None if model == "pretrained" else model
            members.append(soft_targets(Predictor.load(path, tta="crops"), data))
    names = [*args.soft, *args.models]
    chosen = select(members, names) if args.select else list(range(len(members)))
    for i, (member, path) in enumerate(zip(members, names, strict=True)):
        acc, bal = member.accuracy()
        mark = "*" if i in chosen else " "
        print(f"{mark} {path}: val acc {acc:.4f}, balanced {bal:.4f}")
    teacher = ensemble([members[i] for i in chosen], [names[i] for i in chosen])
    teacher.save(args.out)
    acc, bal = teacher.accuracy()
    print(f"teacher of {len(chosen)} written to {args.out}: val acc {acc:.4f}, balanced {bal:.4f}")
