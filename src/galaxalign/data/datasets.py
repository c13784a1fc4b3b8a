"""One dataset interface over every way galaxies arrive: HDF5 (Galaxy10 DECaLS and the synthetic
set), galaxy-datasets / Galaxy Zoo catalogues, class folders, and (path, label) tables.

Labels, ids and attributes come without decoding a single image, so splits, label fractions
and evaluation can look at a 17k-galaxy set instantly; images are decoded one at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np

from galaxalign.data.images import is_image_file, load_image
from galaxalign.errors import GalaxAlignError
from galaxalign.morphology.votes import gz2_summary_keys, vote_fractions
from galaxalign.synth.params import SYNTH_GENERATOR
from galaxalign.taxonomy import Scheme, load_scheme

GALAXY10_DECALS_SHA256 = "19AEFC477C41BB7F77FF07599A6B82A038DC042F889A111B0D4D98BB755C1571"
H5_SUFFIXES = (".h5", ".hdf5")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# galaxy-datasets and Galaxy Zoo catalogues name the image file or the galaxy in these columns.
FILE_COLUMNS = ("file_loc", "png_loc", "path", "filename", "file")
ID_COLUMNS = ("id_str", "iauname", "dr7objid", "objid", "GalaxyID", "asset_id", "id")
NAME_FILES = (("iauname", ".png"), ("GalaxyID", ".jpg"), ("asset_id", ".jpg"))  # files named by a column
GZ2_MAPPING_CSV = "gz2_filename_mapping.csv"  # GZ2 Hart16 catalogue: dr7objid -> asset_id.jpg
# Above this many chunks per image a random read pays more in per-chunk overhead than in pixels
# (256 px images, warm: 16 chunks of (1, 64, 64, 3) read at 0.9x one chunk per image, 768 chunks of
# (1, 16, 16, 1) at 0.16x gzip and 0.01x raw; docs/performance.md).
MAX_CHUNKS_PER_IMAGE = 64

log = logging.getLogger(__name__)
_warned_layouts: set[str] = set()  # files already warned about in this process: one line per file


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    label: int  # -1 when unknown
    id: str


class GalaxyDataset:
    """Indexable galaxies with a class scheme; subclasses set `_labels`, `_ids` and read images."""

    scheme: Scheme
    source: str
    _labels: np.ndarray
    _ids: list[str]
    # Which Galaxy10-Sim look a rendered file has (synth.params.RENDER_VERSIONS); None for other data.
    render_version: int | None = None

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        return Sample(image=self._image(i), label=int(self._labels[i]), id=self._ids[i])

    def _index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"{self.source}: index {i} out of range for {n} galaxies")
        return i % n

    def _image(self, i: int) -> np.ndarray:
        raise NotImplementedError

    @property
    def labels(self) -> np.ndarray:
        """Class ids (int64, -1 unknown), read without decoding images."""
        return self._labels

    @property
    def ids(self) -> list[str]:
        return self._ids

    def metadata(self, i: int) -> dict[str, Any]:
        """What is known about galaxy i beyond its pixels: id, source, and where known ra/dec/redshift."""
        i = self._index(i)
        return {"id": self._ids[i], "source": self.source, **self._metadata(i)}

    def _metadata(self, i: int) -> dict[str, Any]:
        return {}

    def attributes(self) -> dict[str, np.ndarray] | None:
        """Per-galaxy continuous attributes for graded relevance (synthetic parameters or vote fractions)."""
        return None

    def subset(self, indices: Sequence[int] | np.ndarray) -> GalaxyDataset:
        """A view of some galaxies, in the given order, sharing this dataset's storage."""
        return DatasetView(self, indices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, n={len(self)}, scheme={self.scheme.name})"


class DatasetView(GalaxyDataset):
    _parent: GalaxyDataset
    _parent_index: np.ndarray

    def __init__(self, parent: GalaxyDataset, indices: Sequence[int] | np.ndarray):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(parent) or idx.max() >= len(parent)):
            raise IndexError(f"{parent.source}: subset indices out of range for {len(parent)} galaxies")
        idx = idx % max(len(parent), 1)
        if isinstance(parent, DatasetView):  # a view of a view reads the original directly
            idx, parent = parent._parent_index[idx], parent._parent
        self._parent, self._parent_index = parent, idx
        self.scheme, self.source = parent.scheme, parent.source
        self._labels = parent.labels[idx]
        self._ids = [parent.ids[j] for j in idx]

    def _image(self, i: int) -> np.ndarray:
        return self._parent._image(int(self._parent_index[i]))

    def _metadata(self, i: int) -> dict[str, Any]:
        return self._parent._metadata(int(self._parent_index[i]))

    def attributes(self) -> dict[str, np.ndarray] | None:
        attrs = self._parent.attributes()
        return None if attrs is None else {k: v[self._parent_index] for k, v in attrs.items()}


def _scheme(scheme: str | Scheme | None, default: str) -> Scheme:
    if isinstance(scheme, Scheme):
        return scheme
    return load_scheme(default if scheme is None else scheme)


def _check_label_range(labels: np.ndarray, scheme: Scheme, where: str) -> None:
    bad = np.flatnonzero((labels < -1) | (labels >= len(scheme)))
    if bad.size:
        i = int(bad[0])
        raise GalaxAlignError(
            f"{where}: label {int(labels[i])} at index {i} is out of range for scheme {scheme.name} "
            f"(0..{len(scheme) - 1}, or -1 for unknown); {bad.size} such label(s)"
        )


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA256 of a file, streamed, so a 2.5 GB download is checked in constant memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- HDF5


class H5Dataset(GalaxyDataset):
    """Galaxy10 DECaLS layout: `images` (N, H, W, 3) uint8 and `ans` (N,) class ids.

    Optional: `ra`, `dec`, `redshift`, `pxscale` (N,), string ids in `ids` or `id_str`, and a
    `params` group of (N,) float datasets (the synthetic generator's parameters), exposed by
    `attributes()`. The file stays open, one handle per process: a DataLoader worker (forked or
    unpickled) opens its own, because an HDF5 handle shared across a fork is unsafe.
    """

    META_KEYS = ("ra", "dec", "redshift", "pxscale")

    def __init__(self, path: str | os.PathLike, scheme: str | Scheme = "galaxy10", verify_sha256: str | None = None):
        self.path = Path(path)
        self.source = str(self.path)
        self.scheme = _scheme(scheme, "galaxy10")
        if not self.path.is_file():
            raise GalaxAlignError(f"{self.path}: no such file")
        if verify_sha256 is not None:
            got = sha256_file(self.path)
            if got.lower() != verify_sha256.strip().lower():
                raise GalaxAlignError(
                    f"{self.path}: SHA256 {got} does not match the expected {verify_sha256.lower()} "
                    "(incomplete download or a different file)"
                )
        self._file: h5py.File | None = None
        self._pid = -1
        f = self._h5()
        images = self._dataset(f, "images")
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or 0 in images.shape[1:3]:
            raise GalaxAlignError(
                f"{self.path}: key 'images': expected (N, H, W, 3) uint8, got shape {images.shape} {images.dtype}"
            )
        n = images.shape[0]
        if n == 0:
            raise GalaxAlignError(f"{self.path}: key 'images': empty dataset (0 images)")
        self._check_layout(images)
        ans = self._dataset(f, "ans")
        if ans.shape != (n,) or ans.dtype.kind not in "iu":
            raise GalaxAlignError(
                f"{self.path}: key 'ans': expected ({n},) integer class ids to match 'images', "
                f"got shape {ans.shape} {ans.dtype}"
            )
        self._labels = ans[()].astype(np.int64)
        _check_label_range(self._labels, self.scheme, f"{self.path}: key 'ans'")
        self._meta = {k: self._column(f, k, n, numeric=True).astype(np.float64) for k in self.META_KEYS if k in f}
        id_key = next((k for k in ("ids", "id_str") if k in f), None)
        if id_key is None:
            self._ids = [str(i) for i in range(n)]
        else:
            raw = self._column(f, id_key, n)
            self._ids = [v.decode() if isinstance(v, bytes) else str(v) for v in raw.tolist()]
        self._params = None
        if "params" in f:
            group = f["params"]
            if not isinstance(group, h5py.Group):
                raise GalaxAlignError(f"{self.path}: key 'params': expected a group of (N,) datasets")
            self._params = {k: self._column(f, f"params/{k}", n, numeric=True).astype(np.float32) for k in group}
        if f.attrs.get("generator") == SYNTH_GENERATOR:  # files from before the attribute are version 1
            self.render_version = int(f.attrs.get("render_version", 1))

    def _check_layout(self, images: h5py.Dataset) -> None:
        """One warning line (once per file and process) when the pixels are laid out so that a
        random read, which is how a loader reads, costs many times the image itself."""
        problem = slow_layout(images)
        if problem is None or str(self.path.resolve()) in _warned_layouts:
            return
        _warned_layouts.add(str(self.path.resolve()))
        fixed = self.path.with_name(f"{self.path.stem}_per_image{self.path.suffix}")
        log.warning(
            "%s: key 'images' is slow to read at random (%s); rewrite it once with one image per chunk: "
            "galaxalign convert --src %s --out %s",
            self.path,
            problem,
            self.path,
            fixed,
        )

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise GalaxAlignError(f"{self.path}: not a readable HDF5 file ({exc})".splitlines()[0]) from None
            self._pid = os.getpid()
        return self._file

    def _dataset(self, f: h5py.File, key: str) -> h5py.Dataset:
        if key not in f:
            raise GalaxAlignError(f"{self.path}: missing key '{key}' (found: {', '.join(sorted(f.keys())) or 'none'})")
        obj = f[key]
        if not isinstance(obj, h5py.Dataset):
            raise GalaxAlignError(f"{self.path}: key '{key}': expected a dataset, found a group")
        return obj

    def _column(self, f: h5py.File, key: str, n: int, numeric: bool = False) -> np.ndarray:
        d = self._dataset(f, key)
        if d.shape != (n,):
            raise GalaxAlignError(f"{self.path}: key '{key}': expected shape ({n},) to match 'images', got {d.shape}")
        if numeric and d.dtype.kind not in "iuf":
            raise GalaxAlignError(f"{self.path}: key '{key}': expected numbers, got {d.dtype}")
        return d[()]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def _image(self, i: int) -> np.ndarray:
        try:
            return self._h5()["images"][i]
        except OSError as exc:  # a damaged compressed chunk fails only when read
            raise GalaxAlignError(f"{self.path}: key 'images': image {i} unreadable ({exc})".splitlines()[0]) from None

    def _metadata(self, i: int) -> dict[str, Any]:
        return {"index": i, **{k: float(v[i]) for k, v in self._meta.items()}}

    def attributes(self) -> dict[str, np.ndarray] | None:
        return self._params


def slow_layout(images: h5py.Dataset) -> str | None:
    """Why reading one image of an (N, H, W, 3) dataset costs far more than the image, or None.

    A filtered (compressed) chunk is inflated whole, so chunks spanning several images inflate
    all of them for each read; many small chunks per image cost per-chunk overhead whatever the
    storage. Contiguous storage, and chunks holding exactly one image (`galaxalign convert`'s
    layout, or tiles of one), are fine.
    """
    chunks = images.chunks
    if chunks is None:
        return None
    per_image = math.prod(math.ceil(side / chunk) for side, chunk in zip(images.shape[1:], chunks[1:]))
    filters = images.id.get_create_plist().get_nfilters()
    if filters and chunks[0] > 1:
        storage = images.compression or "filtered"
        return (
            f"{storage} chunks of {chunks}: each image read inflates {per_image} chunk(s) holding "
            f"{chunks[0]} images each"
        )
    if per_image > MAX_CHUNKS_PER_IMAGE:
        return f"chunks of {chunks}: each image read gathers {per_image} chunks"
    return None


# ---------------------------------------------------------------- tables


def _read_table(path: Path, columns_only: bool = False):
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, nrows=0 if columns_only else None)
        if columns_only:
            import pyarrow.parquet as pq

            return pd.DataFrame(columns=pq.read_schema(path).names)
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: no such file") from None
    except Exception as exc:  # pandas and pyarrow raise many parser error types
        raise GalaxAlignError(f"{path}: cannot read table ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def _labels_from_column(values: Sequence[Any], scheme: Scheme, where: str) -> np.ndarray:
    """Class ids from a column of ids or class keys/names; empty cells are unknown (-1)."""
    import pandas as pd

    out = np.empty(len(values), dtype=np.int64)
    for row, v in enumerate(values):
        if pd.isna(v) or (isinstance(v, str) and not v.strip()):
            out[row] = -1
        elif isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
            magnitude = cast("float | np.integer", abs(v))  # mypy joins abs() over the union to object
            if magnitude > np.iinfo(np.int64).max:  # would overflow below; smaller ones are range-checked after
                raise GalaxAlignError(f"{where}: row {row}: label {v!r} is out of range for scheme {scheme.name}")
            out[row] = int(v)
        else:
            try:
                out[row] = scheme.by_key(str(v)).id
            except GalaxAlignError:
                raise GalaxAlignError(
                    f"{where}: row {row}: unknown class {v!r} for scheme {scheme.name} "
                    f"(known: {', '.join(scheme.keys)})"
                ) from None
    _check_label_range(out, scheme, where)
    return out


class _FileIndex:
    """Finds an image by file name anywhere under a root, for catalogues whose paths are stale."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, name: str) -> Path | None:
        if self._by_name is None:
            self._by_name = {}
            for folder, _, files in os.walk(self.root):
                for f in files:
                    if is_image_file(f):
                        self._by_name.setdefault(f, []).append(Path(folder) / f)
        hits = self._by_name.get(name, [])
        if len(hits) > 1:
            raise GalaxAlignError(f"{self.root}: image name {name} is ambiguous ({hits[0]}, {hits[1]}, ...)")
        return hits[0] if hits else None


def _resolve_files(values: Sequence[str], root: Path, where: str, on_missing: str) -> tuple[list[Path], np.ndarray]:
    """Each row's image file (absolute, relative to root, or found by name under root) and which rows have one."""
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    index = _FileIndex(root)
    paths: list[Path] = []
    found = np.ones(len(values), dtype=bool)
    for row, value in enumerate(values):
        rel = Path(str(value))
        candidate = rel if rel.is_absolute() else root / rel
        if candidate.is_file():
            paths.append(candidate)
        else:
            hit = index.find(rel.name)
            paths.append(hit if hit is not None else root / rel)
            found[row] = hit is not None
    missing = np.flatnonzero(~found)
    if missing.size and on_missing != "skip":
        raise GalaxAlignError(
            f"{where}: {missing.size} of {len(values)} image files not found under {root} "
            f"(first: {values[missing[0]]!r}); pass image_root, or on_missing='skip' to leave them out"
        )
    return paths, found


class _FileDataset(GalaxyDataset):
    """Images stored one per file."""

    _paths: list[Path]

    def _image(self, i: int) -> np.ndarray:
        return load_image(self._paths[i])

    def _metadata(self, i: int) -> dict[str, Any]:
        return {"path": str(self._paths[i])}


class CatalogDataset(_FileDataset):
    """A galaxy-datasets or Galaxy Zoo catalogue (CSV or parquet): one row per galaxy.

    The image is the `file_column` (default `file_loc`, else `png_loc`, `path`, ...) relative to
    `image_root` (default: the catalogue's folder), or, when the catalogue has no file column,
    named by its `iauname` (GZ DECaLS) or `GalaxyID`/`asset_id` (GZ2) column; a GZ2 Hart16
    table is joined with the `gz2_filename_mapping.csv` beside it. Files not at the stated path
    are looked up by name under `image_root` (the published paths rarely match a local unzip).

    Labels: `label_column` (class ids or keys) if given; else a `summary` column of class keys;
    else the GZ2 summary label derived from vote fractions (see `votes.gz2_summary_keys`), which
    needs a scheme with the GZ2 class keys (the default); else unknown (-1). `vote_kind` picks
    raw or debiased fractions (see `votes.vote_fractions`). Rows whose image is missing are an
    error, or left out with `on_missing='skip'`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        scheme: str | Scheme = "gz2",
        image_root: str | os.PathLike | None = None,
        file_column: str = "file_loc",
        label_column: str | None = None,
        on_missing: str = "error",
        vote_kind: str = "auto",
    ):
        self.path = Path(path)
        self.source = str(self.path)
        self.scheme = _scheme(scheme, "gz2")
        if not self.path.is_file():
            raise GalaxAlignError(f"{self.path}: no such file")
        table = _read_table(self.path)
        if len(table) == 0:
            raise GalaxAlignError(f"{self.path}: empty catalogue (no rows)")
        columns = [str(c) for c in table.columns]
        if file_column != "file_loc" and file_column not in columns:
            found = ", ".join(columns[:12])
            raise GalaxAlignError(f"{self.path}: missing column '{file_column}' (found: {found}, ...)")
        if label_column is not None and label_column not in columns:
            raise GalaxAlignError(f"{self.path}: missing column '{label_column}'")
        if "dr7objid" in columns and not {*FILE_COLUMNS, "asset_id"} & set(columns):
            table = self._join_gz2_mapping(table)
        files = self._file_names(table, file_column)
        root = Path(image_root) if image_root is not None else self.path.parent
        self._paths, keep = _resolve_files(files, root, str(self.path), on_missing)
        if not keep.all():
            table = table[keep].reset_index(drop=True)
            self._paths = [p for p, k in zip(self._paths, keep) if k]
            if len(table) == 0:
                raise GalaxAlignError(f"{self.path}: no image file of any row found under {root}")
        self._table = table
        try:
            self._votes = vote_fractions(table, kind=vote_kind)
        except (TypeError, ValueError) as exc:  # a vote column that is not numbers
            raise GalaxAlignError(f"{self.path}: unreadable vote fractions ({exc})") from None
        bad = [k for k in ("ra", "dec", "redshift") if k in table.columns and table[k].dtype.kind not in "iuf"]
        if bad:
            raise GalaxAlignError(f"{self.path}: column '{bad[0]}' must hold numbers")
        self._labels = self._read_labels(table, label_column)
        id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
        self._ids = [str(v) for v in table[id_column]] if id_column else [str(i) for i in range(len(table))]

    def _join_gz2_mapping(self, table):
        mapping = self.path.parent / GZ2_MAPPING_CSV
        if not mapping.is_file():
            return table
        m = _read_table(mapping)
        if not {"objid", "asset_id"} <= set(m.columns):
            raise GalaxAlignError(f"{mapping}: missing columns 'objid' and 'asset_id'")
        return table.merge(m[["objid", "asset_id"]], left_on="dr7objid", right_on="objid", how="left")

    def _file_names(self, table, file_column: str) -> list[str]:
        column = next((c for c in (file_column, *FILE_COLUMNS) if c in table.columns), None)
        if column is not None:
            return [str(v) for v in table[column]]
        for name_column, suffix in NAME_FILES:
            if name_column in table.columns:
                # A numeric id column read with NaNs is float: 100008.0 names 100008.jpg.
                names = [int(v) if isinstance(v, float) and v.is_integer() else v for v in table[name_column]]
                return [f"{v}{suffix}" for v in names]
        raise GalaxAlignError(
            f"{self.path}: missing an image file column (looked for {', '.join(FILE_COLUMNS)}, "
            f"or {', '.join(c for c, _ in NAME_FILES)})"
        )

    def _read_labels(self, table, label_column: str | None) -> np.ndarray:
        where = f"{self.path}: column '{label_column or 'summary'}'"
        if label_column is not None:
            return _labels_from_column(table[label_column].tolist(), self.scheme, where)
        if "summary" in table.columns:
            return _labels_from_column(table["summary"].tolist(), self.scheme, where)
        if self._votes is None:
            return np.full(len(table), -1, dtype=np.int64)
        keys = gz2_summary_keys(self._votes)
        by_key = {c.key: c.id for c in self.scheme}
        needed = sorted({k for k in keys if k} - set(by_key))
        if needed:
            raise GalaxAlignError(
                f"{self.path}: vote fractions give GZ2 summary labels ({', '.join(needed)}), which scheme "
                f"{self.scheme.name} lacks; use scheme gz2, or name a label column"
            )
        return np.array([by_key[k] if k else -1 for k in keys], dtype=np.int64)

    def _metadata(self, i: int) -> dict[str, Any]:
        row = self._table.iloc[i]
        known = {k: float(row[k]) for k in ("ra", "dec", "redshift") if k in self._table.columns}
        return {"path": str(self._paths[i]), **known}

    def attributes(self) -> dict[str, np.ndarray] | None:
        """Canonical vote fractions (see `votes.VOTE_COLUMNS`), NaN where a question was not asked."""
        if self._votes is None:
            return None
        return {k: v.astype(np.float32) for k, v in self._votes.items()}


class PathLabelCSVDataset(_FileDataset):
    """A table with a `path` column (relative to `root`, default the table's folder) and an
    optional `label` column of class ids or keys (empty: unknown). CSV or parquet."""

    def __init__(
        self, csv: str | os.PathLike, scheme: str | Scheme = "galaxy10", root: str | os.PathLike | None = None
    ):
        self.path = Path(csv)
        self.source = str(self.path)
        self.scheme = _scheme(scheme, "galaxy10")
        table = _read_table(self.path)
        if "path" not in table.columns:
            raise GalaxAlignError(f"{self.path}: missing column 'path'")
        if len(table) == 0:
            raise GalaxAlignError(f"{self.path}: empty table (no rows)")
        base = Path(root) if root is not None else self.path.parent
        values = [str(v) for v in table["path"]]
        self._paths = [p if p.is_absolute() else base / p for p in map(Path, values)]
        missing = [v for v, p in zip(values, self._paths) if not p.is_file()]
        if missing:
            raise GalaxAlignError(
                f"{self.path}: {len(missing)} image file(s) not found under {base} (first: {missing[0]!r})"
            )
        if "label" in table.columns:
            self._labels = _labels_from_column(table["label"].tolist(), self.scheme, f"{self.path}: column 'label'")
        else:
            self._labels = np.full(len(table), -1, dtype=np.int64)
        self._ids = [str(v) for v in table["id"]] if "id" in table.columns else values


class FolderDataset(_FileDataset):
    """One subfolder per class, named by the class key, id or name; images anywhere inside.

    A folder with no subfolders is read as unlabelled images (label -1), e.g. a gallery to search.
    """

    def __init__(self, root: str | os.PathLike, scheme: str | Scheme = "galaxy10"):
        self.root = Path(root)
        self.source = str(self.root)
        self.scheme = _scheme(scheme, "galaxy10")
        if not self.root.is_dir():
            raise GalaxAlignError(f"{self.root}: no such folder")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        entries: list[tuple[int, Path]] = []
        if not folders:
            entries = [(-1, p) for p in sorted(self.root.iterdir()) if p.is_file() and is_image_file(p)]
            if not entries:
                raise GalaxAlignError(f"{self.root}: no class folders and no images")
        for folder in folders:
            try:
                label = self.scheme.by_key(folder.name).id
            except GalaxAlignError:
                raise GalaxAlignError(
                    f"{folder}: folder name is not a class of scheme {self.scheme.name} "
                    f"(known: {', '.join(self.scheme.keys)})"
                ) from None
            images = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
            if not images:
                raise GalaxAlignError(f"{folder}: empty class folder (no images)")
            entries += [(label, p) for p in images]
        entries.sort(key=lambda e: (e[0], str(e[1])))
        self._labels = np.array([label for label, _ in entries], dtype=np.int64)
        self._paths = [p for _, p in entries]
        self._ids = [p.relative_to(self.root).as_posix() for p in self._paths]


def open_dataset(path: str | os.PathLike, scheme: str | Scheme | None = None, **kwargs: Any) -> GalaxyDataset:
    """Open whatever `path` is: .h5/.hdf5, a folder, a (path, label) table or a catalogue.

    `scheme` None means the source's natural scheme: gz2 for Galaxy Zoo catalogues, galaxy10
    otherwise. Extra keyword arguments go to the chosen dataset class.
    """
    p = Path(path)
    if p.is_dir():
        return FolderDataset(p, scheme=_scheme(scheme, "galaxy10"), **kwargs)
    if not p.exists():
        raise GalaxAlignError(f"{p}: no such file or folder")
    suffix = p.suffix.lower()
    if suffix in H5_SUFFIXES:
        return H5Dataset(p, scheme=_scheme(scheme, "galaxy10"), **kwargs)
    if suffix in TABLE_SUFFIXES:
        columns = set(_read_table(p, columns_only=True).columns)
        catalog_files = {*FILE_COLUMNS, *(c for c, _ in NAME_FILES), "dr7objid"} - {"path"}
        if "path" in columns and not columns & catalog_files:
            return PathLabelCSVDataset(p, scheme=_scheme(scheme, "galaxy10"), **kwargs)
        return CatalogDataset(p, scheme=_scheme(scheme, "gz2"), **kwargs)
    raise GalaxAlignError(f"{p}: unsupported dataset type (expected .h5/.hdf5, .csv, .parquet, or a folder)")
