"""The ``dacl`` command: ``dacl ablate …`` (:mod:`dacl.ablate`), ``dacl export …``
(:mod:`dacl.export`) and ``dacl predict --ckpt_path F PICTURE...`` (:mod:`dacl.predictor`);
every other subcommand (fit, validate, test, predict of a dataset split, report) is the
LightningCLI of :mod:`dacl.cli`."""

from __future__ import annotations

import sys

from dacl import ablate, cli, export, predictor
from dacl.errors import DACLError

RUNNERS = {"ablate": ablate.main, "export": export.main, "pictures": predictor.main}


def _names_pictures(argv: list[str]) -> bool:
    """Whether ``dacl predict`` was given pictures (positional arguments), not a config."""
    rest = iter(argv)
    for arg in rest:
        if not arg.startswith("-"):
            return True
        if arg.startswith("--") and "=" not in arg and arg not in ("--help", "--print_config"):
            next(rest, None)  # its value
    return False


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "predict" and _names_pictures(sys.argv[2:]):
        command = "pictures"
    if command not in RUNNERS:
        cli.main()
        return
    argv, sys.argv = sys.argv[2:], sys.argv[:1]
    try:
        RUNNERS[command](argv)
    except DACLError as err:
        print(f"dacl: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
