"""``dacl export``: a checkpoint's network as ONNX or TorchScript, checked against PyTorch.

    dacl export --ckpt_path best.ckpt --format onnx --out dacl.onnx

The file takes normalised faces ``(batch, 1, crop, crop)`` (any batch size; see
:meth:`dacl.predictor.Predictor.inputs` for the transform) and returns ``logits`` ``(batch, K)``
and ``attention`` ``(batch, 512)``, plus ``features`` ``(batch, 512)`` with ``--features``. Class
names and the input transform (crop, resize, interpolation, mean, std) travel in the metadata
(``metadata_props`` for ONNX, the ``dacl.json`` extra file for TorchScript). Before success is
reported, the exported model is run on batches of 8 and 1 and compared with the eager model.
"""

from __future__ import annotations

import json
import warnings
from argparse import Namespace
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dacl import pretrained
from dacl.errors import DACLError
from dacl.outputs import check_apart, check_folder, replacing
from dacl.predictor import Predictor, chosen_model

#: Largest |exported − eager| accepted on the check batches.
TOLERANCE = 1e-4


class _Exported(nn.Module):
    """The network with the outputs the file gives: logits, attention (and features)."""

    def __init__(self, net: nn.Module, features: bool) -> None:
        super().__init__()
        self.net, self.features = net, features

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        logits, features, attention = self.net(images)
        return (logits, attention, features) if self.features else (logits, attention)


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Without PyTorch's warnings that do not concern the file: the tracer's about
    ``DACLNet.forward``'s channel check (a constant in the file, whose input channels are
    fixed) and TorchScript's notices that it is deprecated (the user chose the format)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
        yield


def _runner(path: Path, kind: str):
    """A function running the saved file on a batch, returning its outputs as tensors."""
    if kind == "torchscript":
        loaded = torch.jit.load(str(path))
        return lambda x: [t for t in loaded(x)]
    try:
        import onnxruntime
    except ImportError:
        raise DACLError(
            "checking an ONNX export needs onnxruntime: pip install 'dacl[export]'"
        ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: [torch.from_numpy(o) for o in session.run(None, {"images": x.numpy()})]


def _save(model: nn.Module, x: Tensor, path: Path, kind: str, meta: dict[str, Any]) -> None:
    """``model`` traced on ``x`` (TorchScript) or exported (ONNX) to ``path``, with ``meta`` in
    the file; its outputs are named ``meta["outputs"]``."""
    if kind == "torchscript":
        traced = torch.jit.trace(model, x)
        torch.jit.save(traced, str(path), _extra_files={"dacl.json": json.dumps(meta)})
        return
    import onnx

    names = meta["outputs"]
    axes = {name: {0: "batch"} for name in ["images", *names]}
    torch.onnx.export(
        model, (x,), str(path), input_names=["images"], output_names=names,
        dynamic_axes=axes, dynamo=False,
    )  # fmt: skip
    proto = onnx.load(str(path))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(proto, str(path))


def export(
    predictor: Predictor,
    out: str | Path,
    kind: Literal["onnx", "torchscript"],
    features: bool = False,
) -> dict[str, Any]:
    """Write ``predictor``'s network to ``out`` and check it; returns what was written, the
    largest difference from the eager model on the check batches and whether a file was
    replaced. The file is written beside ``out`` and renamed into place once it passes: a
    failed export leaves an earlier file as it was."""
    if kind not in ("onnx", "torchscript"):
        raise DACLError(f"--format must be onnx or torchscript, got '{kind}'")
    out = Path(out)
    check_folder(out.parent, "--out folder")
    model = _Exported(predictor.module.net, features).eval().cpu()
    names = ["logits", "attention", "features"][: 3 if features else 2]
    meta = {**predictor.describe(), "outputs": names}
    gen = torch.Generator().manual_seed(0)
    shape = (predictor.format.channels, predictor.format.size, predictor.format.size)
    faces = {
        n: torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen) for n in (8, 1)
    }
    checks = {n: predictor.inputs(f, tta="none").cpu().contiguous() for n, f in faces.items()}
    with torch.no_grad(), _quiet_tracing(), replacing(out, "--out", binary=True) as pending:
        pending.file.close()  # the exporters write by path
        _save(model, checks[8], pending.path, kind, meta)
        run = _runner(pending.path, kind)
        diff = 0.0
        for x in checks.values():
            for got, want in zip(run(x), model(x), strict=True):
                diff = max(diff, float((got - want).abs().max()))
        if diff > TOLERANCE:
            raise DACLError(
                f"the {kind} export of '{out}' differs from PyTorch by {diff:.2e} (> {TOLERANCE})"
            )
    return {
        "out": str(out), "format": kind, "max_abs_diff": diff, "replaced": pending.replaced,
        **meta,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``dacl export``: parsed by jsonargparse (``--help``, ``--print_config``, ``--config``)."""
    from jsonargparse import CLI

    from dacl.usage import ProgramParser

    def command(
        *,
        ckpt_path: str | None = None, model: str | None = None,
        format: Literal["onnx", "torchscript"] = "onnx", out: str | None = None,
        features: bool = False,
    ) -> None:  # fmt: skip
        """Export a checkpoint's network as ONNX or TorchScript, checked against PyTorch.

        Args:
            ckpt_path: a ``dacl fit`` .ckpt file or a NAME.json weights pair; default: the
                model shipped with dacl.
            model: a model shipped with dacl instead: default or small.
            format: onnx or torchscript.
            out: the file to write; default: the checkpoint's name with .onnx or .pt (the
                shipped model: dacl_fer2013 in the working folder).
            features: also return the 512 features.
        """
        chosen = chosen_model(Namespace(ckpt_path=ckpt_path, model=model))
        source = Path(ckpt_path or pretrained.read_config(model)["name"])
        target = out or str(source.with_suffix(".onnx" if format == "onnx" else ".pt"))
        check_apart(target, [source, source.with_suffix(".safetensors")], "--out", "model's files")
        predictor = Predictor.load(chosen)
        result = export(predictor, target, format, features)
        print(
            f"{format} model written to {result['out']}"
            f"{' (replacing the earlier file)' if result['replaced'] else ''}: outputs "
            f"{', '.join(result['outputs'])}, max |difference| from PyTorch "
            f"{result['max_abs_diff']:.1e} on batches of 8 and 1"
        )

    CLI(command, args=argv, prog="dacl export", parser_class=ProgramParser)
