"""Files dacl writes for you, so that nothing you already had is lost.

A file is written beside its target under a temporary name (``rows.partial-1a2b3c.csv`` for
``rows.csv``) and renamed over the target only when complete: a run that fails or is stopped
leaves an existing file as it was. A path that cannot be written is one :class:`DACLError` line
naming the option, found before any work is done.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from dacl.errors import DACLError

P = TypeVar("P", bound="str | os.PathLike[str]")  # a path as the caller spells it


def check_folder(folder: Path, what: str, hint: str = "") -> None:
    """Create ``folder`` (and its parents) and check that it takes files; a one-line error
    naming ``what`` (an option) otherwise, with ``hint`` after the reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = "it is a file, not a folder" if folder.is_file() else err.strerror or err
        raise DACLError(f"{what} '{folder}' is not writable ({reason}){hint}") from None


def by_real_path(paths: Iterable[P]) -> dict[str, P]:
    """``paths`` by their real path, the identity of a file (a symlink or ``..`` spelling is
    the same file): for outputs that must not replace an input."""
    return {os.path.realpath(p): p for p in paths}


def check_apart(out: str | Path, inputs: Iterable[str | Path], option: str, what: str) -> None:
    """A one-line error when the output ``out`` would replace one of the ``inputs``
    (:func:`by_real_path`); ``what`` names the inputs."""
    if os.path.realpath(out) in by_real_path(inputs):
        raise DACLError(f"{option} '{out}' is one of the {what}: name another file")


class Pending:
    """A new file being written beside ``target``; :meth:`commit` renames it over the target,
    :meth:`discard` removes it. ``option`` names the target in errors (``--out``)."""

    def __init__(self, target: str | Path, option: str, binary: bool = False) -> None:
        self.target = target = Path(target)
        if target.is_dir():
            raise DACLError(f"{option} '{target}' is a folder; name a file in it")
        folder = target.parent
        if not folder.is_dir():
            raise DACLError(f"{option} '{target}': no folder '{folder}'; create it first")
        self.path = folder / f"{target.stem}.partial-{secrets.token_hex(3)}{target.suffix}"
        try:  # O_EXCL: never someone else's file; 0o666: the umask applies, as for open()
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as err:
            raise DACLError(
                f"{option} '{target}': cannot write in '{folder}' ({err.strerror or err})"
            ) from None
        self.file: IO = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="")
        self.replaced = False

    def commit(self) -> bool:
        """Close the file and rename it over the target; whether a file was replaced (also
        kept as ``replaced``)."""
        self.file.close()
        self.replaced = self.target.exists()
        os.replace(self.path, self.target)
        return self.replaced

    def discard(self) -> None:
        """Close the file and remove it; the target stays as it was."""
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def replacing(target: str | Path, option: str, binary: bool = False) -> Iterator[Pending]:
    """A :class:`Pending` file for the block: committed when the block ends, discarded when it
    raises (Ctrl-C included)."""
    pending = Pending(target, option, binary)
    try:
        yield pending
    except BaseException:
        pending.discard()
        raise
    pending.commit()


def write_text(target: str | Path, text: str, option: str = "output") -> None:
    """``text`` as the file ``target``, whole or not at all (:func:`replacing`)."""
    with replacing(target, option) as pending:
        pending.file.write(text)
