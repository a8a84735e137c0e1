"""Usage mistakes on the command line as one line, with the closest real name for a typo.

:func:`did_you_mean` serves the training commands (:func:`dacl.cli.usage_error`), the command
name itself (``dacl frobnicate``) and :class:`ProgramParser`, the parser of ``dacl predict``,
``dacl export``, ``dacl demo``, ``dacl ablate`` and ``dacl ensemble``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any, NoReturn

from jsonargparse import ArgumentParser

from dacl.errors import DACLError


def did_you_mean(given: Iterable[str], known: Iterable[str]) -> str:
    """`` (did you mean --faces?)``: the closest of ``known`` to each of ``given`` that has one
    close enough; empty when none has."""
    known = list(known)
    close = [m for name in given for m in difflib.get_close_matches(name, known, n=1)]
    return f" (did you mean {', '.join(close)}?)" if close else ""


class ProgramParser(ArgumentParser):
    """jsonargparse's parser whose usage errors are a :class:`DACLError` line (the ``dacl``
    command prints it as ``dacl: error: ...``, exit status 2) instead of the usage text, with
    the closest real option for an unknown one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.positionals: set[str] = set()  # their keys are no options: never suggested as one
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        if args and not str(args[0]).startswith("-"):
            self.positionals.add(args[0])
        return super().add_argument(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parser: jsonargparse handles its errors itself
            super().error(message, ex)
        text = " ".join(line.strip() for line in message.splitlines() if line.strip())
        options = [f"--{k}" for k in self.get_defaults().as_dict() if k not in self.positionals]
        unknown = re.findall(r"(--?[\w.-]+)", text) if "unrecognized" in text.lower() else []
        given = [u for u in unknown if u.lstrip("-") in self.positionals]
        if given:
            name = given[0].lstrip("-")
            hint = f" ({name} is positional: give its values without {given[0]})"
        else:
            hint = did_you_mean(unknown, options)
        raise DACLError(f"{self.prog}: {text}{hint}; see {self.prog} --help")
