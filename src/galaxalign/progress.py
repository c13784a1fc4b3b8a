"""Progress bars and progress lines, switched in one place rather than through every signature.

As in transformers and huggingface_hub: every bar comes from `progress_bar` (a tqdm on stderr),
and `disable_progress_bars()` silences them all. Progress lines go to each module's own logger
(`logging.getLogger(__name__)`) at INFO. The CLI's `--quiet` is `set_quiet(True)`: no bars, and
nothing below WARNING from galaxalign's loggers. From Python, bars are on by default, and the
lines follow the caller's logging setup (`logging.basicConfig(level=logging.INFO)` shows them).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

_bars = True


def disable_progress_bars() -> None:
    global _bars
    _bars = False


def enable_progress_bars() -> None:
    global _bars
    _bars = True


def progress_bars_enabled() -> bool:
    return _bars


def progress_bar(total: float | None = None, desc: str | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar sized to the terminal; an inert one while bars are off (or `disable=True`)."""
    kwargs.setdefault("dynamic_ncols", True)
    disable = bool(kwargs.pop("disable", False)) or not _bars
    return tqdm(total=total, desc=desc, disable=disable, **kwargs)


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (callers and pytest swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


_handler: _Stderr | None = None


def set_quiet(quiet: bool) -> None:
    """The CLI's one switch: bars and INFO lines on stderr, or (quiet) neither, warnings still shown."""
    global _handler
    (disable_progress_bars if quiet else enable_progress_bars)()
    logger = logging.getLogger("galaxalign")
    if _handler is None:
        _handler = _Stderr()
        logger.addHandler(_handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
