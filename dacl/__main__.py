"""The ``dacl`` command: one subcommand, one program. ``fit``, ``validate``, ``test``,
``report`` and ``predict_split`` are the LightningCLI of :mod:`dacl.cli`; ``predict``
(:mod:`dacl.predict`), ``export`` (:mod:`dacl.export`), ``ablate`` (:mod:`dacl.ablate`),
``ensemble`` (:mod:`dacl.teacher`) and ``demo`` (:mod:`dacl.demo`) are programs of their own."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Callable

from dacl import cli
from dacl.errors import DACLError
from dacl.usage import did_you_mean

USAGE = """usage: dacl COMMAND [options]       (dacl COMMAND --help: its options)

Training and evaluation — Lightning's CLI: --config FILE, --model.*, --data.*, --trainer.*
  fit             train a model (dacl fit --config experiments/cpu_long.yaml --data.root DIR)
  validate        measure a checkpoint on the val split (--ckpt_path best|last|pretrained|FILE)
  test            measure a checkpoint on the test split
  report          a checkpoint's measures and pictures as report.md
  predict_split   a dataset split's predictions as predictions.csv in the run's folder

Using a trained model (default: the model shipped with dacl)
  predict         expressions of the faces in pictures, folders, globs and videos
  export          a model as ONNX or TorchScript, checked against PyTorch
  demo            a web page to try a model on photos and webcam shots

Experiments
  ablate          configs x seeds one after another, mean ± std and paired tests
  ensemble        models' ten-crop soft targets, averaged: a teacher for distillation"""


def _program(module: str) -> Callable[[list[str]], None]:
    """A program's ``main``, imported when it runs (the demo's extra need not be installed)."""
    return lambda argv: importlib.import_module(module).main(argv)


PROGRAMS = {
    name: _program(f"dacl.{module}")
    for name, module in {
        "predict": "predict",
        "export": "export",
        "ablate": "ablate",
        "ensemble": "teacher",
        "demo": "demo",
    }.items()
}


def unknown_command(command: str) -> str:
    """One line for a command ``dacl`` does not have: the closest one, and all of them."""
    commands = [*cli.DACLCLI.subcommands(), *PROGRAMS]
    hint = did_you_mean([command], commands)
    return f"unknown command '{command}'{hint}; the commands: {', '.join(commands)} (dacl --help)"


def main() -> None:
    try:
        try:
            _run(sys.argv[1] if len(sys.argv) > 1 else "")
        finally:  # a reader gone by now (| head) is met here, not in the interpreter's exit
            sys.stdout.flush()
    except BrokenPipeError:  # stop quietly, as command-line tools do when their reader leaves
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        sys.exit(128 + signal.SIGPIPE)


def _run(command: str) -> None:
    if command in ("", "-h", "--help"):
        print(USAGE)
        sys.exit(0 if command else 2)
    if command not in PROGRAMS:
        if not command.startswith("-") and command not in cli.DACLCLI.subcommands():
            print(f"dacl: error: {unknown_command(command)}", file=sys.stderr)
            sys.exit(2)
        cli.main()  # options before the subcommand (--config FILE fit) are Lightning's too
        return
    try:
        PROGRAMS[command](sys.argv[2:])
    except DACLError as err:
        print(f"dacl: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # a stop not reported already (dacl predict says what it kept)
        print(f"dacl {command}: stopped (Ctrl-C)", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


if __name__ == "__main__":
    main()
