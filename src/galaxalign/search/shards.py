"""Embedding shards: one Parquet file of fp16 vectors per input shard, each vouched for by a manifest.

This is the contract between `galaxalign embed` (which writes shards) and the survey index (which
reads them); the layout is in docs/search.md. The unit of work is one input shard, so a killed job
loses at most one shard: the Parquet file is written under a temporary name and renamed, and only
then is its small JSON manifest written. A shard is done iff its manifest exists and matches the
file (rows and bytes; `verify_shard` also checks the sha256). A Parquet file without a manifest is
half-written work, redone on the next run.

Vectors are `fixed_size_list<halffloat>[D]`: half the bytes of float32, with cosine ranking
unchanged to fp16 precision, and read back without a copy.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path, read_json, write_json_atomic

FORMAT = 1
CATALOGUE_FILE = "embedding.json"
COLUMNS = ("id", "ra", "dec", "source", "row", "vector")
_SHARD = re.compile(r"^shard-(\d{5,})\.json$")
_HASH_BLOCK = 2**20


def shard_path(folder: str | os.PathLike, k: int) -> Path:
    return Path(folder) / f"shard-{k:05d}.parquet"


def manifest_path(folder: str | os.PathLike, k: int) -> Path:
    return Path(folder) / f"shard-{k:05d}.json"


def shard_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("ra", pa.float64()),
            ("dec", pa.float64()),
            ("source", pa.string()),
            ("row", pa.int64()),
            ("vector", pa.list_(pa.float16(), dim)),
        ]
    )


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_catalogue_manifest(folder: str | os.PathLike, manifest: dict) -> None:
    """`embedding.json`: {"format", "run", "fingerprint", "dim", "sources", "modality"} (atomic)."""
    missing = [key for key in ("fingerprint", "dim", "sources") if key not in manifest]
    if missing:
        raise ValueError(f"catalogue manifest lacks {', '.join(missing)}")
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / CATALOGUE_FILE, {"format": FORMAT, "modality": "image", **manifest})


def read_catalogue_manifest(folder: str | os.PathLike) -> dict:
    path = Path(folder) / CATALOGUE_FILE
    if not Path(folder).is_dir():
        raise GalaxAlignError(f"{folder}: no such embedding folder")
    manifest = read_json(path, "embedding catalogue manifest (not an embedding folder, or an unfinished one)")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalaxAlignError(f"{path}: not a GalaxAlign embedding manifest of format {FORMAT}")
    missing = [key for key in ("fingerprint", "dim", "sources") if key not in manifest]
    if missing:
        raise GalaxAlignError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


def _catalogue_or_none(folder: Path) -> dict | None:
    return read_catalogue_manifest(folder) if (folder / CATALOGUE_FILE).exists() else None


def check_width(path: str | os.PathLike, dim: int, expected: int) -> None:
    if dim != expected:
        raise GalaxAlignError(f"{path}: vectors are {dim} wide, the catalogue's are {expected}")


def check_fingerprint(path: str | os.PathLike, fingerprint: str, expected: str) -> None:
    if fingerprint != expected:
        raise GalaxAlignError(
            f"{path}: embedded by run fingerprint {fingerprint[:12]}, this catalogue is {expected[:12]}"
        )


def write_shard(
    folder: str | os.PathLike,
    k: int,
    *,
    ids: Sequence[str],
    ra: np.ndarray | Sequence[float],
    dec: np.ndarray | Sequence[float],
    source: str,
    rows: np.ndarray | Sequence[int],
    vectors: np.ndarray,
    fingerprint: str,
) -> Path:
    """Write shard k (Parquet, then its manifest) and return the Parquet path.

    Refused before anything is written: vectors that are not (n, D) float16, columns of another
    length, and (when the folder has its `embedding.json`) another width or run fingerprint.
    """
    folder = Path(folder)
    path = shard_path(folder, k)
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.dtype != np.float16:
        raise GalaxAlignError(f"{path}: vectors must be (n, D) float16, got {vectors.shape} {vectors.dtype}")
    n, dim = vectors.shape
    lengths = {"ids": len(ids), "ra": len(ra), "dec": len(dec), "rows": len(rows)}
    if any(length != n for length in lengths.values()):
        raise GalaxAlignError(f"{path}: columns of unequal length ({lengths}, {n} vectors)")
    catalogue = _catalogue_or_none(folder)
    if catalogue is not None:
        check_width(path, dim, int(catalogue["dim"]))
        check_fingerprint(path, fingerprint, str(catalogue["fingerprint"]))
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1), type=pa.float16())
    table = pa.Table.from_arrays(
        [
            pa.array([str(i) for i in ids], type=pa.string()),
            pa.array(np.asarray(ra, dtype=np.float64)),
            pa.array(np.asarray(dec, dtype=np.float64)),
            pa.array([str(source)] * n, type=pa.string()),
            pa.array(np.asarray(rows, dtype=np.int64)),
            pa.FixedSizeListArray.from_arrays(flat, dim),
        ],
        schema=shard_schema(dim),
    )
    manifest_path(folder, k).unlink(missing_ok=True)  # a rewritten shard is not done until its new manifest
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="none", use_dictionary=["source"], row_group_size=65_536)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    manifest = {
        "shard": k,
        "source": str(source),
        "rows": n,
        "dim": dim,
        "fingerprint": fingerprint,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "format": FORMAT,
    }
    write_json_atomic(manifest_path(folder, k), manifest)
    return path


def _shard_manifest(path: Path) -> dict:
    manifest = read_json(path, "shard manifest")
    keys = ("shard", "rows", "dim", "fingerprint", "bytes", "sha256")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or any(k not in manifest for k in keys):
        raise GalaxAlignError(f"{path}: not a GalaxAlign shard manifest of format {FORMAT}")
    return manifest


def _parquet_rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise GalaxAlignError(f"{path}: truncated or not a Parquet file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _matches(path: Path, manifest: dict) -> str | None:
    """Why the Parquet file at `path` is not the one `manifest` describes, or None."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != manifest["bytes"]:
        return f"{size} bytes, its manifest says {manifest['bytes']} (truncated or rewritten)"
    rows = _parquet_rows(path)
    if rows != manifest["rows"]:
        return f"{rows} rows, its manifest says {manifest['rows']}"
    return None


def done_shards(folder: str | os.PathLike) -> dict[int, dict]:
    """Shard number -> manifest of every shard whose manifest matches its file (rows, bytes).

    Cheap (reads Parquet footers only), so a rerun can decide what to skip; a shard that does not
    match is simply not done.
    """
    folder = Path(folder)
    done: dict[int, dict] = {}
    if not folder.is_dir():
        return done
    for entry in sorted(folder.iterdir()):
        match = _SHARD.match(entry.name)
        if not match:
            continue
        try:
            manifest = _shard_manifest(entry)
            if _matches(entry.with_suffix(".parquet"), manifest) is None:
                done[int(match.group(1))] = manifest
        except GalaxAlignError:
            continue
    return done


def verify_shard(
    folder: str | os.PathLike,
    k: int,
    check_sha: bool = True,
    *,
    dim: int | None = None,
    fingerprint: str | None = None,
) -> dict:
    """Shard k's manifest, after checking the file against it (and its sha256 with `check_sha`).

    The expected width and fingerprint default to the folder's `embedding.json` where it exists.
    """
    folder = Path(folder)
    path = shard_path(folder, k)
    mpath = manifest_path(folder, k)
    if not mpath.exists():
        if path.exists():
            raise GalaxAlignError(f"{path}: has no manifest (half-written; rerun embed to redo it)")
        raise GalaxAlignError(f"{path}: missing")
    manifest = _shard_manifest(mpath)
    problem = _matches(path, manifest)
    if problem:
        raise GalaxAlignError(f"{path}: {problem}")
    if check_sha and file_sha256(path) != manifest["sha256"]:
        raise GalaxAlignError(f"{path}: sha256 differs from its manifest (corrupted or rewritten)")
    catalogue = _catalogue_or_none(folder) if dim is None or fingerprint is None else None
    if dim is None and catalogue is not None:
        dim = int(catalogue["dim"])
    if fingerprint is None and catalogue is not None:
        fingerprint = str(catalogue["fingerprint"])
    if dim is not None:
        check_width(path, int(manifest["dim"]), dim)
    if fingerprint is not None:
        check_fingerprint(path, str(manifest["fingerprint"]), fingerprint)
    return manifest


def catalogue_shards(folder: str | os.PathLike, check_sha: bool = True) -> tuple[dict, list[dict]]:
    """The catalogue manifest and every shard's manifest in order, all verified: what an index reads.

    Every input shard must be embedded (a missing or half-written one is named).
    """
    catalogue = read_catalogue_manifest(folder)
    dim, fingerprint = int(catalogue["dim"]), str(catalogue["fingerprint"])
    shards = [
        verify_shard(folder, k, check_sha, dim=dim, fingerprint=fingerprint) for k in range(len(catalogue["sources"]))
    ]
    return catalogue, shards


def read_shard(path: str | os.PathLike, *, columns: Sequence[str] | None = None) -> pa.Table:
    """A shard's table (or some of its columns); checked against its manifest where one exists.

    A truncated or unreadable file, a schema other than the format's, or a file that differs from
    its manifest (rows, bytes, width) is a one-line GalaxAlignError naming the file.
    """
    path = Path(path)
    mpath = path.with_suffix(".json")
    manifest = _shard_manifest(mpath) if mpath.exists() else None
    if manifest is not None:
        problem = _matches(path, manifest)
        if problem:
            raise GalaxAlignError(f"{path}: {problem}")
    unknown = [c for c in columns or () if c not in COLUMNS]
    if unknown:
        raise GalaxAlignError(f"{path}: no column {', '.join(unknown)} in an embedding shard")
    try:
        table = pq.read_table(path, columns=list(columns) if columns is not None else None, memory_map=True)
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise GalaxAlignError(f"{path}: truncated or not a Parquet file ({_first_line(exc)})") from None
    if "vector" in table.column_names:
        vtype = table.schema.field("vector").type
        if not (pa.types.is_fixed_size_list(vtype) and pa.types.is_float16(vtype.value_type)):
            raise GalaxAlignError(f"{path}: vector column is {vtype}, not fixed_size_list<halffloat>")
        if manifest is not None:
            check_width(path, vtype.list_size, int(manifest["dim"]))
    return table


def shard_vectors(table: pa.Table) -> np.ndarray:
    """The (n, D) float16 vectors of a shard table, without a copy when the column is one chunk."""
    column = table.column("vector")
    dim = column.type.list_size
    array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if len(array) == 0:
        return np.empty((0, dim), np.float16)
    return array.flatten().to_numpy(zero_copy_only=True).reshape(-1, dim)
