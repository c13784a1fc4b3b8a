"""A FAISS index over a catalogue's image embeddings, stored in one folder beside its metadata.

Vectors are L2-normalised float32, so inner product is cosine similarity. The catalogue is
embedded in batches straight into a memory-mapped `embeddings.npy`, then added to FAISS in large
chunks read back from it: images and vectors in flight are bounded by a batch or chunk, not the
catalogue (FAISS itself keeps the vectors in RAM, as it must to answer queries). The folder is written under a temporary name
and swapped in only when complete, so an interrupted build leaves any previous index intact.

Kinds: `flat` (exact), `hnsw` (graph, no training) and `ivf` (k-means cells, trained on a sample).
`auto` is exact below AUTO_ANN_FROM vectors, where an exact search is still cheap and needs no
tuning; from there on IVF, which built faster and reached a higher recall than HNSW on clustered
vectors (the measurements are in docs/performance.md).
HNSW's efSearch and IVF's nprobe are tuned at build time: the smallest setting whose recall@10
against exact search, for a sample of indexed vectors as queries, reaches TUNE_RECALL. Such
queries are found more easily than unseen ones (1-4 points of recall on clustered data, see
benchmarks/bench_search.py), so tuning to 0.98 gives unseen queries the 0.95 aimed for.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import mmap
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from galaxalign.config import option, required
from galaxalign.data import resize_square
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path, read_json

if TYPE_CHECKING:
    from galaxalign.data import GalaxyDataset
    from galaxalign.runs import Run

FORMAT = "galaxalign-index"
FORMAT_VERSION = 1
INDEX_FILE, EMBEDDINGS_FILE, META_FILE = "index.faiss", "embeddings.npy", "meta.npz"
THUMBNAILS_FILE, MANIFEST_FILE = "thumbnails.npy", "manifest.json"
THUMBNAIL_SIZE = 64
KINDS = ("auto", "flat", "hnsw", "ivf")
AUTO_ANN_FROM = 200_000
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 40  # build time measured in docs/performance.md
EF_SEARCH_STEPS = (16, 32, 64, 128, 256, 512, 1024)
NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TUNE_RECALL = 0.98
TUNE_QUERIES = 256
IVF_TRAIN_PER_LIST = 40  # k-means sample per cell: FAISS asks for 39 at least; more only slows training
CHUNK = 65_536  # vectors per FAISS add and per brute-force block


def choose_kind(kind: str, count: int) -> str:
    if kind not in KINDS:
        raise GalaxAlignError(f"index kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        return "flat" if count < AUTO_ANN_FROM else "ivf"
    return kind


def ivf_nlist(count: int) -> int:
    """~4 sqrt(N) cells, but never so many that k-means has under 39 points per cell."""
    return max(1, min(round(4 * math.sqrt(count)), count // 39))


def new_faiss_index(kind: str, dim: int, count: int) -> faiss.Index:
    """An empty inner-product index of a concrete kind sized for about `count` vectors."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    if kind == "ivf":
        return faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, ivf_nlist(count), faiss.METRIC_INNER_PRODUCT)
    raise ValueError(f"not a concrete index kind: {kind!r}")


def fill_index(index: faiss.Index, vectors: np.ndarray, start: int = 0, seed: int = 0) -> None:
    """Add vectors[start:] in chunks; an untrained IVF is first trained on a random sample of all."""
    if not index.is_trained:
        ivf = faiss.extract_index_ivf(index)
        size = min(len(vectors), IVF_TRAIN_PER_LIST * ivf.nlist)
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    for i in range(start, len(vectors), CHUNK):
        index.add(np.ascontiguousarray(vectors[i : i + CHUNK], dtype=np.float32))


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product over `vectors` (an array or a memmap), one block at a time.

    A memmap's block is read ahead in one request and its pages let go after it: a scan of a
    survey's vectors would otherwise hold all of them in the process (5.3 GB of resident file
    pages at 10^7), though each is read once; the page cache keeps them for the next scan."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    shared_map = isinstance(vectors, np.memmap) and vectors.mode in ("r", "r+")  # DONTNEED loses nothing
    for i in range(0, len(vectors), CHUNK):
        rows = vectors[i : i + CHUNK]
        if shared_map:
            advise_pages(rows, mmap.MADV_WILLNEED)  # one large read, even where the map is advised random
        block = np.ascontiguousarray(rows, dtype=np.float32)
        if shared_map:
            advise_pages(rows, mmap.MADV_DONTNEED)
        scores, ids = faiss.knn(queries, block, min(k, len(block)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, np.where(ids >= 0, ids + i, -1))
    heap.finalize()
    return heap.D, heap.I


def advise_pages(array: np.ndarray, advice: int) -> None:
    """madvise over the whole pages under a C-contiguous memory-mapped array (or rows of one).

    Advice only: where the kernel refuses it, scans hold more memory and cold queries are slower,
    never wrong. MADV_DONTNEED on a read-only file mapping drops pages from this process only."""
    if array.nbytes and array.flags.c_contiguous:
        advise_range(array.ctypes.data, array.nbytes, advice)


def advise_range(address: int, nbytes: int, advice: int) -> None:
    """madvise over the whole pages under [address, address + nbytes) of a mapping."""
    start = address // mmap.PAGESIZE * mmap.PAGESIZE
    _libc_madvise()(ctypes.c_void_p(start), address + nbytes - start, advice)


@functools.cache
def _libc_madvise() -> Any:
    """libc's madvise, typed once: scans and servers call it per block and every few queries."""
    madvise = ctypes.CDLL(None).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true neighbours that were found."""
    return float(np.mean([len(np.intersect1d(f, t[t >= 0])) / max((t >= 0).sum(), 1) for f, t in zip(found, truth)]))


def search_params(index: faiss.Index) -> dict[str, int]:
    if isinstance(index, faiss.IndexHNSW):
        return {"ef_search": int(index.hnsw.efSearch)}
    if isinstance(index, faiss.IndexIVF):
        return {"nprobe": int(index.nprobe)}
    return {}


def tune_search(
    index: faiss.Index, vectors: np.ndarray, k: int = 10, target: float = TUNE_RECALL, seed: int = 0
) -> dict:
    """Set efSearch (HNSW) or nprobe (IVF) to the least that reaches `target` recall@k on a sample.

    The sample queries are indexed vectors, each left out of its own results (as search by id
    does), so they behave like unseen queries; returns the setting and its measured recall.
    """
    steps: Sequence[int]
    if isinstance(index, faiss.IndexHNSW):
        steps, setter = EF_SEARCH_STEPS, lambda v: setattr(index.hnsw, "efSearch", v)
    elif isinstance(index, faiss.IndexIVF):
        steps = [p for p in NPROBE_STEPS if p < index.nlist] + [index.nlist]
        setter = lambda v: setattr(index, "nprobe", v)  # noqa: E731
    else:
        return {}
    if len(vectors) < 2:
        return search_params(index)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), min(TUNE_QUERIES, len(vectors)), replace=False))
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    k = min(k, len(vectors) - 1)

    def others(found: np.ndarray) -> np.ndarray:
        return np.array([[r for r in row if r != own][:k] for row, own in zip(found, rows)])

    truth = others(exact_knn(vectors, queries, k + 1)[1])
    for value in steps:
        setter(value)
        recall = recall_at(others(index.search(queries, k + 1)[1]), truth)
        if recall >= target:
            break
    else:
        warnings.warn(
            f"{type(index).__name__}: recall@{k} reaches only {recall:.3f} at {search_params(index)}; "
            "an exact (flat) or IVF index would do better",
            stacklevel=2,
        )
    return {**search_params(index), "tuned_recall": round(recall, 4)}


@dataclass
class Hit:
    """One search result: a catalogue galaxy and its cosine similarity to the query."""

    id: str
    score: float
    label: int  # -1 when unknown
    label_name: str | None
    index: int  # row in the index (and in embeddings.npy / thumbnails.npy)
    source: str
    ra: float | None
    dec: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def normalise(vectors: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    return np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), dtype=np.float32)


class GalaxyIndex:
    """A loaded index folder: FAISS index, embeddings, per-galaxy metadata and thumbnails."""

    def __init__(
        self,
        index_dir: Path,
        manifest: dict,
        index: faiss.Index,
        embeddings: np.ndarray,
        meta: dict[str, np.ndarray],
        thumbnails: np.ndarray | None,
    ):
        self.dir, self.manifest, self.index, self.embeddings = index_dir, manifest, index, embeddings
        self.ids: list[str] = meta["ids"].tolist()
        self.labels = meta["labels"]
        self.label_names: list[str] = meta["label_names"].tolist()
        self.sources: list[str] = meta["sources"].tolist()
        self.source_of, self.ra, self.dec = meta["source_of"], meta["ra"], meta["dec"]
        self.thumbnails = thumbnails
        self._rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"GalaxyIndex({str(self.dir)!r}, n={len(self)}, kind={self.kind}, scheme={self.manifest['scheme']})"

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["run_fingerprint"]

    @property
    def run_dir(self) -> str:
        return self.manifest["run_dir"]

    @classmethod
    def load(cls, index_dir: str | os.PathLike, run: Run | None = None) -> GalaxyIndex:
        """Open an index folder; with `run`, refuse one built by different weights."""
        index_dir = Path(index_dir)
        manifest = read_manifest(index_dir)
        if run is not None:
            check_run(index_dir, manifest, run)
        n, dim = manifest["count"], manifest["dim"]
        embeddings = _load_npy(index_dir / EMBEDDINGS_FILE, (n, dim), np.float32)
        thumbnails = None
        if manifest["thumbnails"]:
            thumbnails = _load_npy(index_dir / THUMBNAILS_FILE, (n, THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), np.uint8)
        meta = _load_meta(index_dir / META_FILE, n)
        path = index_dir / INDEX_FILE
        if not path.is_file():
            raise GalaxAlignError(f"{path}: missing (incomplete index folder)")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise GalaxAlignError(f"{path}: unreadable FAISS index ({str(exc).strip().splitlines()[-1]})") from None
        if index.ntotal != n or index.d != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise GalaxAlignError(
                f"{path}: holds {index.ntotal} vectors of dim {index.d}, but the manifest says {n} of dim {dim}"
            )
        for name, value in manifest.get("search", {}).items():
            if name == "ef_search":
                index.hnsw.efSearch = value  # type: ignore[attr-defined]  # read_index downcasts; stubs say Index
            elif name == "nprobe":
                index.nprobe = value  # type: ignore[attr-defined]  # an IndexIVF, as above
        return cls(index_dir, manifest, index, embeddings, meta, thumbnails)

    def row(self, galaxy_id: str) -> int:
        """The index row of a galaxy id (GalaxAlignError when absent)."""
        if self._rows is None:
            self._rows = {gid: i for i, gid in enumerate(self.ids)}
        try:
            return self._rows[str(galaxy_id)]
        except KeyError:
            raise GalaxAlignError(f"{self.dir}: no galaxy with id {galaxy_id!r} in the index") from None

    def hit(self, row: int, score: float) -> Hit:
        label = int(self.labels[row])
        ra, dec = float(self.ra[row]), float(self.dec[row])
        return Hit(
            id=self.ids[row],
            score=float(score),
            label=label,
            label_name=self.label_names[label] if label >= 0 else None,
            index=int(row),
            source=self.sources[self.source_of[row]],
            ra=None if math.isnan(ra) else ra,
            dec=None if math.isnan(dec) else dec,
        )

    def search(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top-k galaxies by cosine similarity for each query vector (Q, D), best first."""
        queries = normalise(vectors)
        if queries.shape[1] != self.index.d:
            raise GalaxAlignError(f"{self.dir}: query vectors have dim {queries.shape[1]}, the index {self.index.d}")
        if k < 1:
            raise GalaxAlignError(f"k must be at least 1, got {k}")
        scores, rows = self.index.search(queries, min(k, len(self)))
        return [[self.hit(r, s) for s, r in zip(qs, qr) if r >= 0] for qs, qr in zip(scores, rows)]

    def add(self, run: Run, dataset: GalaxyDataset, batch_size: int = 64, workers: int = 0) -> GalaxyIndex:
        """Append a dataset's galaxies (embedded by the same run), rewriting the folder atomically.

        The index keeps its kind, thumbnail setting and search tuning; this object then reflects
        the new folder and is returned.
        """
        check_run(self.dir, self.manifest, run)
        with atomic_path(self.dir, directory=True) as tmp:
            _write(
                tmp,
                run,
                dataset,
                self.kind,
                batch_size,
                self.thumbnails is not None,
                base=self,
                workers=workers,
            )
        vars(self).update(vars(GalaxyIndex.load(self.dir)))
        return self


def build_index(
    run: Run,
    dataset: GalaxyDataset,
    out_dir: str | os.PathLike,
    kind: str = "auto",
    batch_size: int = 64,
    thumbnails: bool = True,
    workers: int = 0,
) -> GalaxyIndex:
    """Embed every galaxy of `dataset` with `run` and save a searchable index folder at `out_dir`."""
    if len(dataset) == 0:
        raise GalaxAlignError(f"{dataset.source}: no galaxies to index")
    kind = choose_kind(kind, len(dataset))
    with atomic_path(out_dir, directory=True) as tmp:
        _write(tmp, run, dataset, kind, batch_size, thumbnails, base=None, workers=workers)
    return GalaxyIndex.load(out_dir)


MANIFEST_KEYS = ("run_dir", "run_fingerprint", "scheme", "dim", "kind", "count", "thumbnails")


def read_manifest(index_dir: Path) -> dict:
    path = index_dir / MANIFEST_FILE
    if not index_dir.is_dir():
        raise GalaxAlignError(f"{index_dir}: no such index folder")
    manifest = read_json(path, "index manifest (not an index folder, or an incomplete one)")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalaxAlignError(f"{path}: not a GalaxAlign index manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise GalaxAlignError(
            f"{path}: index format version {manifest.get('version')}, this GalaxAlign reads {FORMAT_VERSION}; rebuild it"
        )
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        raise GalaxAlignError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


def check_run(index_dir: Path, manifest: dict, run: Run) -> None:
    """Vectors from different weights live in a different space: searching them would be silently wrong."""
    if run.fingerprint != manifest["run_fingerprint"]:
        raise GalaxAlignError(
            f"{index_dir}: built by run {manifest['run_dir']} (weights sha256 {manifest['run_fingerprint'][:12]}), "
            f"not by {run.run_dir} ({run.fingerprint[:12]}); rebuild the index with this run"
        )


def _load_npy(path: Path, shape: tuple, dtype) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: missing (incomplete index folder)") from None
    except (OSError, ValueError, EOFError) as exc:  # a truncated .npy fails to map; an empty one to parse
        raise GalaxAlignError(f"{path}: unreadable or truncated ({exc})".splitlines()[0]) from None
    if array.shape != shape or array.dtype != dtype:
        raise GalaxAlignError(f"{path}: expected {shape} {np.dtype(dtype)}, found {array.shape} {array.dtype}")
    return array


META_KEYS = ("ids", "labels", "label_names", "sources", "source_of", "ra", "dec")


def _load_meta(path: Path, n: int) -> dict[str, np.ndarray]:
    try:
        # Our own handle: np.load leaves the file open when a truncated zip fails to parse.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            meta = {k: npz[k] for k in META_KEYS}
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: missing (incomplete index folder)") from None
    except KeyError as exc:
        raise GalaxAlignError(f"{path}: missing array {exc}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GalaxAlignError(f"{path}: unreadable or truncated ({exc})".splitlines()[0]) from None
    bad = [k for k in ("ids", "labels", "source_of", "ra", "dec") if meta[k].shape != (n,)]
    if bad:
        raise GalaxAlignError(f"{path}: {', '.join(bad)} do not hold one entry per indexed galaxy ({n})")
    labels, sources = meta["labels"], meta["source_of"]
    if n and (
        labels.max() >= len(meta["label_names"])
        or labels.min() < -1
        or sources.min() < 0
        or sources.max() >= len(meta["sources"])
    ):
        raise GalaxAlignError(f"{path}: labels or sources out of range")
    return meta


def thumbnails_of(images: Sequence[np.ndarray], device, on_device: bool | None = None) -> np.ndarray:
    """(N, 64, 64, 3) uint8 thumbnails of (H, W, 3) uint8 images, centre-cropped.

    On a GPU (`on_device` None: when `device` is CUDA) they are resized there with the model
    input's resize, in one call per batch: PIL in the main process at 0.5 ms an image would hold
    a GPU index build to about 2,000 img/s. On a CPU, PIL is 10x faster than torch's resize. The
    two agree within one level of 255.
    """
    import torch

    from galaxalign.data.augment import to_tensor_batch

    if on_device is None:
        on_device = torch.device(device).type == "cuda"
    if not on_device:
        return np.stack([resize_square(image, THUMBNAIL_SIZE) for image in images])
    small = to_tensor_batch(list(images), THUMBNAIL_SIZE, device=device)
    return small.mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write(
    tmp: Path,
    run: Run,
    dataset: GalaxyDataset,
    kind: str,
    batch_size: int,
    thumbnails: bool,
    base: GalaxyIndex | None,
    workers: int = 0,
) -> None:
    """Write a complete index folder into `tmp`: `base`'s galaxies (if any), then `dataset`'s."""
    if batch_size < 1:  # checked before anything is written
        raise GalaxAlignError(f"batch size must be at least 1, got {batch_size}")
    if dataset.scheme.name != run.scheme.name and (dataset.labels >= 0).any():
        raise GalaxAlignError(
            f"{dataset.source}: labelled in scheme {dataset.scheme.name}, but the run uses {run.scheme.name}; "
            f"open the data with scheme {run.scheme.name}"
        )
    _check_unique_ids(base.ids if base else [], dataset)
    n_old, n_new = (len(base) if base else 0), len(dataset)
    n, dim = n_old + n_new, int(run.model.embed_dim)
    embeddings = np.lib.format.open_memmap(tmp / EMBEDDINGS_FILE, mode="w+", dtype=np.float32, shape=(n, dim))
    thumbs = None
    if thumbnails:
        thumbs = np.lib.format.open_memmap(
            tmp / THUMBNAILS_FILE, mode="w+", dtype=np.uint8, shape=(n, THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
        )
    sources = list(base.sources) if base else []
    if dataset.source not in sources:
        sources.append(dataset.source)
    new_source = sources.index(dataset.source)
    ids = np.empty(n, dtype=object)
    labels, source_of = np.empty(n, np.int64), np.empty(n, np.int32)
    ra, dec = np.full(n, np.nan), np.full(n, np.nan)
    if base:
        for i in range(0, n_old, CHUNK):
            block = slice(i, min(i + CHUNK, n_old))
            embeddings[block] = base.embeddings[block]
            if thumbs is not None:
                assert base.thumbnails is not None  # add() asks for thumbnails only when the base has them
                thumbs[block] = base.thumbnails[block]
        ids[:n_old], labels[:n_old], source_of[:n_old] = base.ids, base.labels, base.source_of
        ra[:n_old], dec[:n_old] = base.ra, base.dec

    def keep(rows: np.ndarray, images: list[np.ndarray]) -> None:
        """Thumbnails and metadata of each batch, from the images the run just decoded."""
        at = slice(n_old + int(rows[0]), n_old + int(rows[-1]) + 1)
        if thumbs is not None:
            thumbs[at] = thumbnails_of(images, run.device)
        for j, i in enumerate(rows, at.start):
            meta = dataset.metadata(int(i))
            ids[j], labels[j], source_of[j] = dataset.ids[int(i)], dataset.labels[int(i)], new_source
            ra[j], dec[j] = meta.get("ra", np.nan), meta.get("dec", np.nan)

    scanned = run.embed_dataset(dataset, batch_size=batch_size, workers=workers, desc="index", on_batch=keep)
    embeddings[n_old:] = normalise(scanned.embeddings)
    embeddings.flush()
    if thumbs is not None:
        thumbs.flush()

    if base:
        index = faiss.clone_index(base.index)
        fill_index(index, embeddings, start=n_old)
        params = base.manifest.get("search", {})
    else:
        index = new_faiss_index(kind, dim, n)
        fill_index(index, embeddings)
        params = tune_search(index, embeddings)
    faiss.write_index(index, str(tmp / INDEX_FILE))
    np.savez(
        tmp / META_FILE,
        ids=ids.astype(str),
        labels=labels,
        label_names=np.array(run.scheme.names),
        sources=np.array(sources),
        source_of=source_of,
        ra=ra,
        dec=dec,
    )
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "run_dir": str(Path(run.run_dir).resolve()),
        "run_fingerprint": run.fingerprint,
        "scheme": run.scheme.name,
        "dim": dim,
        "kind": kind,
        "count": n,
        "thumbnails": thumbnails,
        "thumbnail_size": THUMBNAIL_SIZE if thumbnails else None,
        "search": params,
        "data_sources": sources,
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _check_unique_ids(existing: list[str], dataset: GalaxyDataset) -> None:
    """Search by id needs one galaxy per id; checked before any image is embedded."""
    seen = set(existing)
    for galaxy_id in dataset.ids:
        if galaxy_id in seen:
            raise GalaxAlignError(
                f"{dataset.source}: galaxy id {galaxy_id!r} is already in the index (ids must be unique)"
            )
        seen.add(galaxy_id)


SURVEY_FROM = 2_000_000  # galaxies: above this, thumbnails (12 KB each) and fp32 vectors in RAM stop fitting a server
SURVEY_FLAGS = ("nlist", "pq_bytes", "opq", "build_memory_gb", "threads")
SMALL_FLAGS = ("batch_size", "workers", "add")


@dataclass
class IndexConfig:
    """`galaxalign index`: a catalogue into a search index, its kind picked by size.

    An embedding folder (written by `galaxalign embed`) becomes a survey index (IVF-PQ on disk);
    images are embedded with `--run` into an exact, HNSW or IVF index held in RAM.
    """

    data: str = required("galaxies to index: .h5, a folder, a table/catalogue, or an embedding folder")
    out: str = required("index folder (replaced atomically; a survey build resumes in it)")
    run: str | None = option(None, "run folder (needed to embed images; optional for an embedding folder)")
    kind: str | None = option(
        None,
        f"auto (default): an embedding folder -> survey; images: exact below {AUTO_ANN_FROM}, IVF up to {SURVEY_FROM}",
        choices=(*KINDS, "survey"),
    )
    batch_size: int | None = option(None, "images embedded at once (small kinds; default 64)")
    workers: int | None = option(None, "processes that read and decode images ahead (small kinds; default 0)")
    thumbnails: bool = option(True, "store 64x64 thumbnails for the web page (small kinds)")
    add: bool = option(False, "append to the existing index in --out (small kinds)")
    nlist: int | None = option(None, "survey: inverted lists (default: 4 sqrt(N), a power of two)")
    pq_bytes: int | None = option(None, "survey: PQ code bytes per vector (default: D / 8, at most 64)")
    opq: bool | None = option(None, "survey: OPQ rotation before PQ (default: from 1M vectors)")
    build_memory_gb: float | None = option(None, "survey: memory for the training sample and one shard (default 4)")
    threads: int | None = option(None, "survey: FAISS threads (default: all cores)")
    device: str = option("auto", DEVICE_HELP)

    def __post_init__(self):
        check_device_name(self.device)
        if self.add and (self.kind or not self.thumbnails):
            raise GalaxAlignError(
                "index: --add keeps the existing index's kind and thumbnails; drop --kind/--no-thumbnails"
            )

    def survey_flags(self) -> list[str]:
        return [name for name in SURVEY_FLAGS if getattr(self, name) is not None]

    def small_flags(self) -> list[str]:
        given = [name for name in SMALL_FLAGS if getattr(self, name) not in (None, False)]
        return given + ([] if self.thumbnails else ["thumbnails"])


def _flags(names: list[str]) -> str:
    return ", ".join("--" + ("no-thumbnails" if n == "thumbnails" else n.replace("_", "-")) for n in names)


def choose_index_kind(config: IndexConfig, count: int | None) -> tuple[str, str]:
    """(kind, the one-line reason) for `galaxalign index`; a flag the chosen kind ignores is an error.

    `count` is the number of galaxies of an image catalogue, None for an embedding folder.
    """
    if count is None:
        if config.kind not in (None, "auto", "survey"):
            raise GalaxAlignError(f"{config.data}: an embedding folder makes a survey index, not --kind {config.kind}")
        kind, why = "survey", f"{config.data} is an embedding folder"
    elif config.kind == "survey" or (config.kind in (None, "auto") and count > SURVEY_FROM):
        raise GalaxAlignError(
            f"{config.data}: {count} galaxies {'is above' if count > SURVEY_FROM else 'for'} a survey index "
            f"(from {SURVEY_FROM}): embed them first with `galaxalign embed` and index the embedding folder"
        )
    else:
        kind = choose_kind(config.kind or "auto", count)
        if config.kind not in (None, "auto"):
            why = "asked for with --kind"
        elif kind == "flat":
            why = f"{count} galaxies, under {AUTO_ANN_FROM}: exact search is cheap"
        else:
            why = f"{count} galaxies, from {AUTO_ANN_FROM} to {SURVEY_FROM}: IVF in RAM"
    wrong = config.small_flags() if kind == "survey" else config.survey_flags()
    if wrong:
        raise GalaxAlignError(f"index: {_flags(wrong)} do nothing for a {kind} index; drop them")
    if kind != "survey" and config.run is None:
        raise GalaxAlignError(f"index: --run is needed to embed the images of {config.data}")
    return kind, why
