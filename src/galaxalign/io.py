"""Atomic output: write to a temporary name beside the target, then rename.

An interrupted or failed write never leaves a partial file under the final name, and a
previous output at that name survives until the new one is complete. A full disk is the user's
problem, not a bug, so it becomes a one-line `GalaxAlignError` naming the target.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from galaxalign.errors import GalaxAlignError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path (file or folder) that replaces `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        if directory and target.exists():
            # Swap: move the old folder aside, move the new one in, then drop the old one.
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.rename(target, old / "prev")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if _disk_full(exc):
            raise _full_disk_error(target) from None
        raise


# errno.ENOSPC's text, as wrapped by libraries that do not raise OSError with an errno: safetensors
# (a Rust IoError, "os error 28") and HDF5. torch.save raises ENOSPC and then, while closing its zip
# writer, a RuntimeError with the OSError as its context, so the whole chain is read.
_FULL_DISK_TEXT = ("no space left on device", "disk quota exceeded")


def _disk_full(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, Exception) and any(t in str(exc).lower() for t in _FULL_DISK_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def full_disk_is_an_error(target: str | os.PathLike) -> Iterator[None]:
    """For files written in place rather than through `atomic_path` (a large file filled piece by
    piece, a library's own writer): a full disk becomes the one-line error naming `target`."""
    try:
        yield
    except Exception as exc:
        if _disk_full(exc):
            raise _full_disk_error(Path(target)) from None
        raise


def _full_disk_error(target: Path) -> GalaxAlignError:
    return GalaxAlignError(f"{target}: not written, no space left on device (free some and rerun)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike, what: str):
    """Parse a JSON file; a missing or unreadable one is a one-line error naming it and `what` it is."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: no such {what}") from None
    except (OSError, ValueError) as exc:  # ValueError covers JSON and UTF-8 decoding errors
        raise GalaxAlignError(f"{path}: not a readable {what} ({exc})") from None


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to a log; a failed write is cut back off, so no torn line is left behind."""
    path = Path(path)
    data = memoryview((line.rstrip("\n") + "\n").encode())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # unbuffered: no flush at close
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(fd, data) :]
        except BaseException as exc:
            with contextlib.suppress(OSError):  # a device such as /dev/full cannot be truncated
                os.ftruncate(fd, start)
            if _disk_full(exc):
                raise _full_disk_error(path) from None
            raise
    finally:
        os.close(fd)


def write_json_atomic(target: str | os.PathLike, obj) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")
