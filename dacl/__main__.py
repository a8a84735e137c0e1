"""The ``dacl`` command: ``dacl ablate …`` (:mod:`dacl.ablate`) and ``dacl export …``
(:mod:`dacl.export`); every other subcommand (fit, validate, test, predict, report) is the
LightningCLI of :mod:`dacl.cli`."""

from __future__ import annotations

import sys

from dacl import ablate, cli, export
from dacl.errors import DACLError

RUNNERS = {"ablate": ablate.main, "export": export.main}


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
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
