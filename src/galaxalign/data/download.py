"""Fetch a public data set by name: a resumable, checksum-verified HTTP download.

Galaxy10 DECaLS is one 2.5 GB file, so a dropped connection must not cost the whole transfer:
bytes go to `NAME.part`, a rerun continues it with an HTTP Range request, and the file gets its
final name only once its checksums match. Standard library only (urllib), plus tqdm.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from galaxalign._version import __version__
from galaxalign.config import option, required
from galaxalign.data.datasets import GALAXY10_DECALS_SHA256
from galaxalign.errors import GalaxAlignError
from galaxalign.progress import progress_bar

# What a read from a dropped or stalled connection raises (TimeoutError and ConnectionError are OSErrors).
_TRANSFER_ERRORS = (http.client.HTTPException, OSError)


@dataclass(frozen=True)
class Remote:
    """Where a data set lives and how to tell the right file from a broken or different one."""

    name: str
    url: str
    filename: str
    sha256: str
    md5: str | None
    size: int | None  # bytes, where confirmed; only informative
    citation: str


REMOTES = {
    "galaxy10-decals": Remote(
        name="galaxy10-decals",
        # astroNN's own loader: src/astroNN/datasets/galaxy10.py, _G10_ORIGIN + _filename (docs/reproduce.md).
        url="https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
        filename="Galaxy10_DECals.h5",
        sha256=GALAXY10_DECALS_SHA256,  # the one checksum astroNN checks and publishes
        md5=None,  # astroNN publishes none
        size=None,  # astroNN's docs say "2.54 GB"; no exact byte count from the source
        citation="Leung & Bovy, Galaxy10 DECaLS (astroNN); labels from Galaxy Zoo (Lintott et al. 2008, 2011; "
        "Walmsley et al. 2021), images from the DESI Legacy Imaging Surveys (Dey et al. 2019)",
    ),
}


@dataclass
class DownloadConfig:
    dataset: str = required("data set to download", choices=tuple(REMOTES), positional=True)
    out: str = option(".", "folder to write the file into")
    url: str | None = option(None, "a mirror address instead of the default")

    def __post_init__(self):
        if self.dataset not in REMOTES:
            raise GalaxAlignError(f"download: unknown data set {self.dataset!r} (known: {', '.join(REMOTES)})")
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise GalaxAlignError(f"download: --url {self.url!r} is not an http(s) address")


def fetch_dataset(config: DownloadConfig) -> Path:
    """Download `config.dataset` into `config.out` (from the mirror if given); returns the verified file."""
    remote = REMOTES[config.dataset]
    out = Path(config.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GalaxAlignError(f"{out}: cannot create the folder ({exc.strerror or exc})") from None
    return download_file(config.url or remote.url, out / remote.filename, remote.sha256, remote.md5)


def download_file(
    url: str,
    dest: Path,
    sha256: str | None,
    md5: str | None = None,
    chunk_size: int = 1 << 20,
    timeout: float = 30,
) -> Path:
    """Stream `url` to `dest`, resuming `dest.part` if present; `dest` appears only once verified.

    An existing `dest` that verifies is returned without a request. Every failure is a one-line
    `GalaxAlignError`; none removes the .part (nor does Ctrl-C), so a rerun loses no bytes.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected = {name: value.strip().lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}
    if dest.is_file():
        bad = _mismatches(dest, expected)
        if bad:
            raise GalaxAlignError(f"{dest}: already exists but {bad}; delete it to download again")
        return dest
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"galaxalign/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code != 416 or not offset:
            raise GalaxAlignError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        # 416: nothing left past the .part's end, so it may well be complete; the checksums decide.
        return _finish(part, dest, expected, resumed=True)
    except ValueError as exc:  # not a URL urllib can open
        raise GalaxAlignError(f"{url}: not a downloadable address ({exc})") from None
    except (urllib.error.URLError, *_TRANSFER_ERRORS) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise GalaxAlignError(
            f"{url} could not be reached ({reason}); download it by hand to {dest} "
            f"and pass it to `galaxalign train --data {dest}`"
        ) from None
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            raise GalaxAlignError(
                f"{url}: answered range {response.headers.get('Content-Range')!r}, not bytes {offset}-; "
                f"delete {part} to start over"
            )
        start = offset if resumed else 0  # a plain 200 sends the whole file: start again from zero
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        received = 0
        with (
            _open(part, "ab" if resumed else "wb") as f,
            progress_bar(
                None if length is None else start + length,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(chunk_size)
                except _TRANSFER_ERRORS as exc:
                    raise _interrupted(url, part, start + received, length and start + length, exc) from None
                if not block:
                    break
                try:
                    f.write(block)
                except OSError as exc:
                    raise GalaxAlignError(f"{part}: cannot write ({exc.strerror or exc})") from None
                received += len(block)
                bar.update(len(block))
        if length is not None and received < length:
            raise _interrupted(url, part, start + received, start + length, "connection closed early")
    return _finish(part, dest, expected, resumed)


def _open(path: Path, mode: str):
    try:
        return open(path, mode)
    except OSError as exc:
        raise GalaxAlignError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _interrupted(url: str, part: Path, got: int, total: int | None, why) -> GalaxAlignError:
    of = f" of {total}" if total else ""
    why = type(why).__name__ if isinstance(why, Exception) and not str(why) else why
    return GalaxAlignError(
        f"{url}: transfer interrupted after {got}{of} bytes ({why}); {part} is kept: "
        "run the same command again to resume"
    )


def _finish(part: Path, dest: Path, expected: dict[str, str], resumed: bool) -> Path:
    bad = _mismatches(part, expected)
    if bad:
        hint = (
            "it may be stale from another download: delete it to start over"
            if resumed
            else "delete it to download again"
        )
        raise GalaxAlignError(f"{part}: {bad} (kept; {hint})")
    os.replace(part, dest)
    return dest


def _mismatches(path: Path, expected: dict[str, str]) -> str:
    """'' if every expected checksum matches; else which did not, with both values.

    All checksums come from one streaming read: the file is 2.5 GB.
    """
    if not expected:
        return ""
    digests = {name: hashlib.new(name) for name in expected}
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            for digest in digests.values():
                digest.update(block)
    got = {name: digest.hexdigest() for name, digest in digests.items()}
    return "; ".join(
        f"{name.upper()} is {got[name]}, expected {value}" for name, value in expected.items() if got[name] != value
    )
