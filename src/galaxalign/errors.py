"""User-facing errors.

A `GalaxAlignError` is a problem with the user's input (a missing file, a malformed scheme, a
label out of range). The CLI prints it as one line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


class GalaxAlignError(Exception):
    """A problem with user input; its message names the file and the problem."""


class MissingExtraError(GalaxAlignError, ImportError):
    """An optional part of the package is used without the extra that installs what it needs."""


def require_extra(extra: str, what: str, *modules: str) -> None:
    """Fail in one line, naming the extra, when a module of an optional extra is not installed.

    Checked with `find_spec` (nothing is imported), before the module that needs them imports
    them, so `import galaxalign.web` without the extra says what to install, not `No module named`.
    """
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which is not installed: pip install 'galaxalign[{extra}]'"
        )
