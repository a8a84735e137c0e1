"""Usage mistakes on the command line as one line, with the closest real name for a typo.

:func:`did_you_mean` serves the training commands (:func:`dacl.cli.usage_error`), the command
name itself (``dacl frobnicate``) and :class:`ProgramParser`, the parser of ``dacl predict``,
``dacl export``, ``dacl demo``, ``dacl ablate`` and ``dacl ensemble``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import NoReturn

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

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parser: jsonargparse handles its errors itself
            super().error(message, ex)
        text = " ".join(line.strip() for line in message.splitlines() if line.strip())
        options = [f"--{key}" for key in self.get_defaults().as_dict()]
        unknown = re.findall(r"(--?[\w.-]+)", text) if "unrecognized" in text.lower() else []
        hint = did_you_mean(unknown, options)
        raise DACLError(f"{self.prog}: {text}{hint}; see {self.prog} --help")
