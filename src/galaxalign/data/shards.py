"""Input shards: a survey catalogue as many files, each one unit of work for `galaxalign embed`.

A shard is anything `open_dataset` reads (a Galaxy10-layout h5, a folder, a catalogue or path
table), plus the two layouts catalogues ship in at scale, read sequentially and without any new
dependency: Parquet with the encoded image in a column (`id`, `ra`, `dec`, `image` as PNG/JPEG/
FITS bytes; HF datasets and MMU previews look like this) and WebDataset tars (`KEY.png|jpg|jpeg`
with an optional `KEY.json` holding id/ra/dec). Each yields ids and, where known, ra/dec.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galaxalign.data.datasets import CatalogDataset, GalaxyDataset, H5Dataset, open_dataset
from galaxalign.data.images import decode_image_bytes
from galaxalign.errors import GalaxAlignError
from galaxalign.taxonomy import Scheme, load_scheme

PARQUET_SUFFIXES = (".parquet", ".pq")
TAR_SUFFIXES = (".tar",)
IMAGE_COLUMN = "image"
TAR_IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")
_GLOB_CHARS = frozenset("*?[")


def expand_inputs(patterns: list[str] | tuple[str, ...]) -> list[str]:
    """The input shards named by files, folders and glob patterns: sorted, each once.

    The order fixes each shard's number k (its output is `shard-{k:05d}`), so it must not depend
    on the shell or the file system's listing order. A path that does not exist, or a pattern
    that matches nothing, is an error naming it (a typo must not silently embed less).
    """
    if not patterns:
        raise GalaxAlignError("embed: no input shards given")
    found: set[str] = set()
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            matches = [m for m in glob.glob(pattern, recursive=True) if not Path(m).name.startswith(".")]
            if not matches:
                raise GalaxAlignError(f"{pattern}: matches no input shard")
            found.update(matches)
        elif not os.path.exists(pattern):
            raise GalaxAlignError(f"{pattern}: no such input shard (file or folder)")
        else:
            found.add(pattern)
    return sorted(found)


def open_shard(path: str | os.PathLike, scheme: str | Scheme | None = None) -> GalaxyDataset:
    """One input shard as a dataset: Parquet with an `image` column or a tar read here, all else by
    `open_dataset`. A missing, unreadable or empty shard is a one-line error naming it."""
    p = Path(path)
    suffix = p.suffix.lower()
    scheme = scheme if isinstance(scheme, Scheme) else load_scheme(scheme or "galaxy10")
    if suffix in TAR_SUFFIXES:
        return WebDatasetShard(p, scheme)
    if suffix in PARQUET_SUFFIXES and p.is_file() and IMAGE_COLUMN in _parquet_schema(p).names:
        return ParquetImageShard(p, scheme)
    if not p.exists():
        raise GalaxAlignError(f"{p}: no such input shard (file or folder)")
    return open_dataset(p, scheme=scheme)


@dataclass
class ShardRows:
    """What an output shard stores beside each vector: the galaxy's id and its sky position."""

    ids: list[str]
    ra: np.ndarray  # float64, NaN where unknown
    dec: np.ndarray


def shard_rows(dataset: GalaxyDataset, source: str) -> ShardRows:
    """Ids and ra/dec of every row, read without decoding an image.

    Ids that are only the row numbers (an h5 without an `ids` key, a table without an id
    column) say nothing beyond the row, and would collide between shards: those become
    "<input-stem>:<row>".
    """
    n = len(dataset)
    ids = list(dataset.ids)
    if ids == [str(i) for i in range(n)]:
        stem = Path(source).name.split(".")[0] or Path(source).name
        ids = [f"{stem}:{i}" for i in range(n)]
    if isinstance(dataset, (ParquetImageShard, WebDatasetShard)):
        return ShardRows(ids, dataset.ra, dataset.dec)
    if isinstance(dataset, H5Dataset):
        meta = dataset._meta  # the file's (N,) columns, read once when it was opened
        return ShardRows(ids, *(meta.get(k, np.full(n, np.nan)).astype(np.float64) for k in ("ra", "dec")))
    if isinstance(dataset, CatalogDataset):
        table = dataset._table
        ra, dec = (table[k].to_numpy(np.float64) if k in table.columns else np.full(n, np.nan) for k in ("ra", "dec"))
        return ShardRows(ids, ra, dec)
    return ShardRows(ids, np.full(n, np.nan), np.full(n, np.nan))  # folders, path tables: no sky position


def count_rows(path: str | os.PathLike, scheme: Scheme) -> int:
    """Galaxies in a shard, from its header or listing where the format allows (for the progress bar)."""
    p = Path(path)
    if p.suffix.lower() in PARQUET_SUFFIXES and p.is_file():
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(p).metadata.num_rows)
        except Exception:
            return 0  # reported properly when the shard is opened
    try:
        return len(open_shard(p, scheme))
    except GalaxAlignError:
        return 0


# ---------------------------------------------------------------- Parquet with image bytes


def _parquet_schema(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on damaged files
        raise GalaxAlignError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})".splitlines()[0]
        ) from None


class ParquetImageShard(GalaxyDataset):
    """Parquet rows of `image` (encoded PNG/JPEG/FITS bytes) with optional `id`, `ra`, `dec`, `label`.

    Images are read one row group at a time, in order, so memory holds one row group's bytes
    and a sequential pass reads the file once. The file is opened again in each process (loader
    workers are forked).
    """

    def __init__(self, path: str | os.PathLike, scheme: Scheme):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.source, self.scheme = str(self.path), scheme
        schema = _parquet_schema(self.path)
        kind = schema.field(IMAGE_COLUMN).type
        if not (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            raise GalaxAlignError(f"{self.path}: column '{IMAGE_COLUMN}' must hold encoded image bytes, got {kind}")
        names = [c for c in ("id", "ra", "dec", "label") if c in schema.names]
        try:
            file = pq.ParquetFile(self.path)
            table = file.read(columns=names) if names else None
        except Exception as exc:
            raise GalaxAlignError(
                f"{self.path}: not a readable Parquet file ({type(exc).__name__}: {exc})".splitlines()[0]
            ) from None
        n = file.metadata.num_rows
        if n == 0:
            raise GalaxAlignError(f"{self.path}: empty input shard (0 rows)")
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        columns = {} if table is None else {c: table.column(c).to_numpy(zero_copy_only=False) for c in names}
        for k in ("ra", "dec"):
            if k in columns and columns[k].dtype.kind not in "iuf":
                raise GalaxAlignError(f"{self.path}: column '{k}' must hold numbers, got {columns[k].dtype}")
        self.ra = columns["ra"].astype(np.float64) if "ra" in columns else np.full(n, np.nan)
        self.dec = columns["dec"].astype(np.float64) if "dec" in columns else np.full(n, np.nan)
        self._ids = [str(v) for v in columns["id"]] if "id" in columns else [str(i) for i in range(n)]
        self._labels = columns["label"].astype(np.int64) if "label" in columns else np.full(n, -1, dtype=np.int64)
        self._file: Any = None
        self._pid, self._group, self._images = -1, -1, None

    def _row_group(self, group: int):
        import pyarrow.parquet as pq

        if self._file is None or self._pid != os.getpid():
            self._file, self._pid, self._group = pq.ParquetFile(self.path), os.getpid(), -1
        if group != self._group:
            try:
                self._images = self._file.read_row_group(group, columns=[IMAGE_COLUMN]).column(0)
            except Exception as exc:
                raise GalaxAlignError(
                    f"{self.path}: row group {group} unreadable ({type(exc).__name__}: {exc})".splitlines()[0]
                ) from None
            self._group = group
        return self._images

    def _image(self, i: int) -> np.ndarray:
        group = int(np.searchsorted(self._starts, i, side="right") - 1)
        value = self._row_group(group)[i - int(self._starts[group])].as_py()
        if value is None:
            raise GalaxAlignError(f"{self.path}: row {i}: no image (null '{IMAGE_COLUMN}')")
        return decode_image_bytes(value, f"{self.path}: row {i}")

    def _metadata(self, i: int) -> dict[str, Any]:
        return {"row": i, "ra": float(self.ra[i]), "dec": float(self.dec[i])}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": -1, "_group": -1, "_images": None}


# ---------------------------------------------------------------- WebDataset tars


class WebDatasetShard(GalaxyDataset):
    """A WebDataset tar: samples `KEY.png|jpg|jpeg` with an optional `KEY.json` ({"id", "ra", "dec"}).

    As in WebDataset, a sample's key is the member's path up to the first dot of its file name.
    The tar (uncompressed, as WebDataset shards are) is listed once; each image is then read at
    its offset, so a pass reads the file sequentially.
    """

    def __init__(self, path: str | os.PathLike, scheme: Scheme):
        self.path = Path(path)
        self.source, self.scheme = str(self.path), scheme
        if not self.path.is_file():
            raise GalaxAlignError(f"{self.path}: no such input shard (file or folder)")
        images: dict[str, tuple[int, int, str]] = {}
        meta: dict[str, dict] = {}
        try:
            with tarfile.open(self.path, "r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    folder, _, name = member.name.rpartition("/")
                    base, dot, extension = name.partition(".")
                    if not dot or base == "" or name.startswith("."):
                        continue
                    key = f"{folder}/{base}" if folder else base
                    extension = extension.lower()
                    if extension in TAR_IMAGE_EXTENSIONS:
                        images.setdefault(key, (member.offset_data, member.size, member.name))
                    elif extension == "json":
                        meta[key] = self._json(tar, member)
        except (tarfile.TarError, OSError) as exc:
            raise GalaxAlignError(f"{self.path}: not a readable tar file ({exc})") from None
        if not images:
            raise GalaxAlignError(f"{self.path}: empty input shard (no .png/.jpg/.jpeg samples)")
        keys = list(images)
        self._members = [images[k] for k in keys]
        n = len(keys)
        self._ids = [str(meta.get(k, {}).get("id", k)) for k in keys]
        self.ra, self.dec = (np.array([self._number(meta.get(k, {}), c, k) for k in keys]) for c in ("ra", "dec"))
        self._labels = np.full(n, -1, dtype=np.int64)
        self._handle: Any = None
        self._pid = -1

    def _json(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict:
        handle = tar.extractfile(member)
        try:
            value = json.loads(handle.read()) if handle is not None else {}
        except ValueError as exc:
            raise GalaxAlignError(f"{self.path}: member {member.name}: not readable JSON ({exc})") from None
        if not isinstance(value, dict):
            raise GalaxAlignError(f"{self.path}: member {member.name}: expected a JSON object")
        return value

    def _number(self, record: dict, column: str, key: str) -> float:
        value = record.get(column)
        if value is None:
            return float("nan")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GalaxAlignError(f"{self.path}: member {key}.json: '{column}' must be a number, got {value!r}")
        return float(value)

    def _image(self, i: int) -> np.ndarray:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = open(self.path, "rb"), os.getpid()  # kept open, one per process
        offset, size, name = self._members[i]
        self._handle.seek(offset)
        data = self._handle.read(size)
        if len(data) != size:
            raise GalaxAlignError(f"{self.path}: member {name} is truncated")
        return decode_image_bytes(data, f"{self.path}: member {name}")

    def _metadata(self, i: int) -> dict[str, Any]:
        return {"row": i, "ra": float(self.ra[i]), "dec": float(self.dec[i])}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def close(self) -> None:
        """Close this process's handle on the tar (a loader worker's closes with the worker)."""
        if getattr(self, "_handle", None) is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __del__(self) -> None:  # the handle lives as long as the shard: no caller holds it
        self.close()
