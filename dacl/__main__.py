"""The ``dacl`` command: ``dacl ablate …`` runs :mod:`dacl.ablate`; every other subcommand
(fit, validate, test, predict, report) is the LightningCLI of :mod:`dacl.cli`."""

from __future__ import annotations

import sys

from dacl import ablate, cli


def main() -> None:
    if sys.argv[1:2] == ["ablate"]:
        argv, sys.argv = sys.argv[2:], sys.argv[:1]
        ablate.main(argv)
    else:
        cli.main()


if __name__ == "__main__":
    main()
