"""User-facing errors.

A `GalaxAlignError` is a problem with the user's input (a missing file, a malformed scheme, a
label out of range). The CLI prints it as one line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


class GalaxAlignError(Exception):
    """A problem with user input; its message names the file and the problem."""
