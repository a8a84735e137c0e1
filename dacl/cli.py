"""The ``dacl`` LightningCLI over DACLModule and FER2013DataModule: ``fit``, ``validate``,
``test``, ``predict_split`` (a dataset split's predictions) and ``report`` (pictures and
metrics of one checkpoint, :mod:`dacl.report`).

``dacl fit --config experiments/exp3.yaml`` reads the shipped ``configs/default.yaml`` first
(trainer, logger, callbacks), then the experiment. ``--ckpt_path best|last`` resolves to the
newest run of that experiment under the logger's folder.
"""

from __future__ import annotations

import inspect
import logging
import re
import signal
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from jsonargparse import ArgumentError
from lightning_fabric.utilities.seed import max_seed_value, min_seed_value
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from dacl import pretrained
from dacl.checkpoint import read_dacl_checkpoint
from dacl.data import FER2013DataModule, options
from dacl.data.datasets import FORMATS, declared_classes, resolve
from dacl.defaults import default_config
from dacl.errors import DACLError, first_sentence
from dacl.module import DACLModule
from dacl.outputs import check_folder
from dacl.report import Trainer
from dacl.usage import did_you_mean

log = logging.getLogger(__name__)


#: The TensorBoard logger's save_dir in configs/default.yaml; with --trainer.default_root_dir DIR
#: it becomes DIR/lightning_logs, as Lightning places its own default logger.
SHIPPED_SAVE_DIR = "lightning_logs"


def place_outputs(trainer_config) -> None:
    """Put the run under ``--trainer.default_root_dir`` when one is given and the logger's
    ``save_dir`` is still the shipped default (an explicit ``save_dir`` wins)."""
    root = trainer_config.get("default_root_dir")
    logger = trainer_config.get("logger")
    if not root or not logger or not str(logger.get("class_path", "")).endswith("Logger"):
        return
    args = logger.get("init_args")
    if args is not None and args.get("save_dir") == SHIPPED_SAVE_DIR:
        args["save_dir"] = str(Path(root) / SHIPPED_SAVE_DIR)


def check_writable(folder: Path) -> None:
    """Fail in the first seconds, not after an epoch, when outputs cannot be written."""
    hint = "; pass --trainer.default_root_dir DIR or --trainer.logger.init_args.save_dir DIR"
    check_folder(folder, "output folder", hint)


def log_root(trainer_config) -> Path | None:
    """``save_dir/name`` of the TensorBoard logger in a parsed trainer config, else ``None``."""
    logger = trainer_config.get("logger")
    if not logger or not str(logger.get("class_path", "")).endswith("TensorBoardLogger"):
        return None
    args = logger.get("init_args") or {}
    name = args.get("name", "lightning_logs")
    return Path(args.get("save_dir", ".")) / name if name else Path(args.get("save_dir", "."))


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX-512 BF16 or AMX), read from Linux's
    ``/proc/cpuinfo``; elsewhere ``False``."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def cpu_precision(trainer_config) -> None:
    """On a CPU run, bf16 precision only where the CPU has it in hardware: elsewhere it is
    emulated and slower than fp32, so fp32 is used instead. Says which, in one line."""
    precision = str(trainer_config.get("precision"))
    accelerator = str(trainer_config.get("accelerator"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu or not precision.startswith("bf16"):
        return
    if native_bf16():
        log.info("precision %s: this CPU computes bf16 in hardware (avx512_bf16/amx)", precision)
        return
    trainer_config.precision = "32-true"
    log.info(
        "precision 32-true instead of %s: this CPU has no bf16 hardware (no avx512_bf16/amx), "
        "where bf16 is emulated and slower than fp32",
        precision,
    )


def resolve_checkpoint(ckpt_path: str | None, root: Path | None) -> str | None:
    """``best``/``last`` → that checkpoint of the newest run (``root/version_N``) that has one;
    ``pretrained`` → the model shipped with dacl, as a checkpoint; a file path is checked to
    exist and returned."""
    if ckpt_path == "pretrained":
        return str(pretrained.as_checkpoint())
    if ckpt_path not in ("best", "last"):
        if ckpt_path is not None and not Path(ckpt_path).is_file():
            raise DACLError(
                f"--ckpt_path '{ckpt_path}': no such checkpoint file; "
                "pass best, last, pretrained or an existing .ckpt"
            )
        return ckpt_path
    if root is None:
        raise DACLError(f"--ckpt_path {ckpt_path} needs the TensorBoard logger to find the run")
    pattern = "last.ckpt" if ckpt_path == "last" else "best*.ckpt"
    runs = sorted(
        root.glob("version_*"),
        key=lambda p: int(m.group(1)) if (m := re.fullmatch(r"version_(\d+)", p.name)) else -1,
        reverse=True,
    )
    for run in runs:
        found = sorted((run / "checkpoints").glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            log.info("--ckpt_path %s resolved to %s", ckpt_path, found[-1])
            return str(found[-1])
    raise DACLError(
        f"--ckpt_path {ckpt_path}: no {pattern} under '{root}/version_*/checkpoints'; "
        "run `dacl fit` with this config first or pass a checkpoint file"
    )


class DACLCLI(LightningCLI):
    """LightningCLI with ``model.image_size`` linked to ``data.crop``, ``best``/``last``/
    ``pretrained`` as checkpoint paths, ``report`` beside Lightning's subcommands, and
    Lightning's ``predict`` of a dataset split as ``predict_split`` (``dacl predict`` is the
    picture classifier of :mod:`dacl.predict`)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        own = {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}
        return {
            **own,
            "predict_split": {"model", "dataloaders", "datamodule"},
            "report": {"model", "datamodule"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.crop", "model.image_size")
        parser.link_arguments("data.labels.label_mode", "model.target_loss", compute_fn=target_loss)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        # Before LightningCLI merges a checkpoint's hyper-parameters into the model's config:
        # outputs placed, best/last/pretrained resolved and the file checked, so that a missing,
        # damaged or foreign checkpoint is one line, not a traceback, and `test --ckpt_path
        # best` rebuilds the model that was trained.
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise DACLError(usage_error(str(err))) from None
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if not isinstance(seed := config.get("seed_everything"), bool):
            check_seed(seed, "seed_everything")
        place_outputs(config.trainer)
        root = log_root(config.trainer)
        if subcommand == "fit" and root is not None:
            check_writable(root)
        self.trained_data = None
        if not subcommand or "ckpt_path" not in config:
            return
        config.ckpt_path = resolve_checkpoint(config.ckpt_path, root)
        if config.ckpt_path is not None:
            trained = read_checkpoint(config.ckpt_path, config.data.crop)
            self.trained_data = trained if subcommand != "fit" else None

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # An accelerator, strategy or precision this machine cannot run (``cuda`` without a
        # GPU, ``tpu`` without torch_xla) is Lightning's complaint in one line, not a traceback.
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ModuleNotFoundError) as err:
            raise DACLError(f"trainer options: {first_sentence(err)}") from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if self.subcommand == "report":  # an evaluation that writes files, not a run to log
            trainer.logger, trainer.callbacks, trainer.enable_checkpointing = False, [], False
            self.save_config_callback = None  # without a logger it would write to the cwd
        if trainer.enable_checkpointing is False or trainer.fast_dev_run:
            # no checkpoint at all: Lightning refuses a checkpoint callback without
            # checkpointing, and a fast_dev_run has no run folder to put one in
            trainer.callbacks = [c for c in trainer.callbacks or [] if not writes_checkpoints(c)]
            trainer.enable_checkpointing = False
        cpu_precision(trainer)
        trained = self.trained_data is not None or bool(config.get("ckpt_path"))
        changes, class_names = match_data(config.data, config.model, trained, self.trained_data)
        for key, value in changes.items():
            config.data[options.path(key)] = value
        config.model.class_names = class_names


def check_seed(seed: int, option: str) -> None:
    """One line for a seed NumPy cannot take (Lightning seeds NumPy with it too)."""
    if not min_seed_value <= seed <= max_seed_value:
        raise DACLError(f"{option} must be in {min_seed_value}..{max_seed_value}, got {seed}")


def read_checkpoint(path: str, crop: int) -> dict:
    """The datamodule hyper-parameters saved in a ``dacl fit`` checkpoint (``{}`` when it has
    none), after checking that it is one and was trained on ``crop`` px crops. Tensors are
    only mapped here, not read."""
    checkpoint = read_dacl_checkpoint(path, "--ckpt_path file", mmap=True)
    data, trained = checkpoint.data, checkpoint.model.get("image_size")
    if data.get("pipeline") == "reference":  # saved before the PIL path was retired
        log.info(
            "--ckpt_path '%s' was trained with data.pipeline reference (PIL per image); it is "
            "evaluated on the batched path, the same transforms up to Pillow's uint8 rounding",
            path,
        )
    if trained is not None and trained != crop:
        also = f" --data.resize {data['resize']}" if data.get("resize") else ""
        raise DACLError(
            f"--ckpt_path '{path}' was trained on {trained} px crops, but data.crop is {crop}: "
            f"pass the config it was trained with, or --data.crop {trained}{also}"
        )
    return data


def usage_error(message: str) -> str:
    """jsonargparse's complaint in one line; an unknown ``--model.*``, ``--data.*`` or
    ``--trainer.*`` option with the closest real one (``--model.lamda``: ``--model.lam``); a
    data option renamed or retired (``data.label_mode``, ``data.pipeline``) with what to do."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first = lines[0] if lines else "bad arguments"
    if first.endswith(":") and len(lines) > 1:  # 'Parser key "model.variant":' + the reason
        first = f"{first} {lines[1]}"
    # --data.pipeline, 'data.pipeline' (a config's data.pipeline: ...), or a config's data:
    # {pipeline: ...} (Group 'data' does not accept option 'pipeline')
    given = re.findall(r"(?:--|')data\.(\w+)\b(?!\.)|'data' does not accept option '(\w+)'", first)
    for name in (a or b for a, b in given):
        if line := options.retired_option(f"data.{name}"):
            return line
    unknown = re.findall(r"--((?:model|data|trainer)\.[\w.]+)", first)
    owners = {"model": DACLModule, "data": FER2013DataModule, "trainer": pl.Trainer}
    known = [
        f"{group}.{name}"
        for group, owner in owners.items()
        for name in inspect.signature(owner.__init__).parameters
        if name != "self"
    ] + [f"data.{options.path(name)}" for name in options.GROUP_OF]
    hint = did_you_mean([f"--{key}" for key in unknown], [f"--{key}" for key in known])
    return f"{first}{hint}; see dacl {{fit,validate,test,...}} --help"


def writes_checkpoints(callback) -> bool:
    """Whether a configured callback is ``ModelCheckpoint`` or dacl's ``LastCheckpoint``."""
    name = str(callback.get("class_path", "")) if hasattr(callback, "get") else ""
    return name.endswith(("ModelCheckpoint", "LastCheckpoint"))


def target_loss(label_mode: str) -> str:
    """``model.target_loss`` for a FER+ label mode: ``any`` for ``multi_target``."""
    return "any" if label_mode == "multi_target" else "soft"


def match_data(
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    from_checkpoint: bool,
    trained_data: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Outputs and labels that agree by name, and a stem that fits the faces: the ``data``
    options to change and the model's class names. A new model gets the data's classes
    (``data.labels.classes`` when given, else the dataset's own); a checkpoint's model keeps its own
    (``model.class_names``), and the data's labels are mapped onto them (``data.labels.classes``).
    Evaluated on other data, faces are decoded and normalised as the checkpoint's data was
    (``trained_data``: its saved datamodule hyper-parameters, for the options left unset)."""
    dataset = resolve(data["dataset"], data["root"], data["synthetic"])
    labels, faces = data["labels"], data["faces"]
    changes: dict[str, Any] = {}
    if from_checkpoint:
        names = list(model["class_names"])
        changes["classes"] = names
        for key in ("channels", "mean", "std"):
            if faces.get(key) is None and (trained_data or {}).get(key) is not None:
                changes[key] = trained_data[key]
    else:
        own = declared_classes(dataset, data["root"], labels["num_classes"], labels["class_map"])
        names = list(labels.get("classes") or own)
    channels = changes.get("channels", faces.get("channels"))
    if model["in_chans"] == 1 and (channels or FORMATS[dataset].channels) == 3:
        raise DACLError(
            f"model.in_chans 1 (the gray stem) takes gray faces, but {dataset} is RGB: "
            "set model.in_chans: 3 (or data.faces.channels: 1 to read it gray)"
        )
    return changes, names


def build_cli(args: list[str], run: bool = False) -> DACLCLI:
    """The ``dacl`` LightningCLI over ``args``, with the shipped defaults read first (so an
    experiment file can override parts of their logger and callbacks: jsonargparse merges
    nested ``init_args`` only onto a class given by an earlier --config). With ``run=False``
    (no subcommand) it only configures: ``.model``, ``.datamodule``, ``.trainer``.

    A run (``run=True``) reads its arguments from ``sys.argv``, set here to the command with
    the defaults in place: Lightning's DDP launcher starts every other process with the same
    ``sys.argv``, and each then parses the same command."""
    at = 1 if run and args and not args[0].startswith("-") else 0
    defaults = ["--config", str(default_config())]
    if args[at : at + 2] != defaults:  # a DDP process's command has them already
        args = [*args[:at], *defaults, *args[at:]]
    kwargs = {"save_config_kwargs": {"overwrite": True}, "trainer_class": Trainer}
    if not run:
        with _quiet():
            return DACLCLI(DACLModule, FER2013DataModule, args=args, run=False, **kwargs)
    sys.argv = [sys.argv[0], *args]
    parser_kwargs = {"prog": "dacl", "exit_on_error": False}  # errors in one line, not usage
    return DACLCLI(DACLModule, FER2013DataModule, parser_kwargs=parser_kwargs, **kwargs)


@contextmanager
def _quiet() -> Iterator[None]:
    """Configuring without the console lines a run shows: Lightning's info lines (seed,
    accelerators, tips) and its warning that ``sys.argv`` holds another command (the ``args``
    are the whole command here; the caller's own ``sys.argv`` is the caller's)."""
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*provide both args and command line arguments")
        for name in ("pytorch_lightning", "lightning_fabric"):
            lightning = logging.getLogger(name)
            stack.callback(lightning.setLevel, lightning.level)
            lightning.setLevel(logging.WARNING)
        yield


def _no_cloud_tip(record: logging.LogRecord) -> bool:
    """Whether a Lightning info line is shown: all but its tip to install a cloud logger
    (dacl logs locally, to TensorBoard and CSV, and never reaches the network)."""
    return "litlogger" not in record.getMessage()


def main(argv: list[str] | None = None) -> None:
    # The command shows dacl's own info lines (layout found, class counts, checkpoints
    # resolved, pretrained tensors loaded) and Lightning's (seed, accelerators); as a library
    # dacl stays quiet.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_no_cloud_tip)
    logger = logging.getLogger("dacl")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        build_cli(sys.argv[1:] if argv is None else argv, run=True)
    except DACLError as err:
        print(f"dacl: error: {err}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)  # LastCheckpoint has said how to resume


if __name__ == "__main__":
    main()
