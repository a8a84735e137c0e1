"""The one exception type for mistakes a user can fix (bad paths, data, options).

The CLI prints these as a single ``dacl: error: ...`` line and exits non-zero, with no traceback.
"""


class DACLError(Exception):
    """A problem with the user's input; the message names the file or option and what was
    expected."""


class NonFiniteLossError(DACLError):
    """Training produced a NaN or infinite loss; the message names the epoch, step and term."""


def first_sentence(err: BaseException) -> str:
    """The first sentence of an error's message, for a one-line report of a library's error
    (torch's and Lightning's run on for several lines); its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(err).__name__
