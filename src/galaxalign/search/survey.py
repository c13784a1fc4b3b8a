"""A survey-sized index: FAISS IVF-PQ with on-disk inverted lists, exact fp16 re-ranking, sky lookups.

Built from an embedding folder (search/shards.py) so that build memory is bounded by a budget, not
by N, and served memory-mapped so that serving memory stays flat as N grows:

1. Train (OPQ +) IVF + PQ on a uniform sample across shards -> `build/trained.index`.
2. For each shard: copy its vectors into `vectors.f16` (one (N, D) float16 file, global row order),
   then add them with their global rows as ids to a copy of the trained index ->
   `build/block-K.index`. Only one shard is in memory at a time.
3. `faiss.contrib.ondisk.merge_ondisk` merges the blocks into `lists.ivfdata` (an on-disk
   inverted-list file, memory-mapped) and `populated.index` (quantizer, codebooks, list offsets).
4. The catalogue columns (id, ra, dec, source, row) go to `catalogue.arrow` (Arrow IPC, mapped),
   with a declination-sorted index (`sky_dec.npy`, `sky_rows.npy`) and an id-sorted one.
5. The probe depth (nprobe) and re-rank depth are tuned per query type against exact search.
6. `survey.json` is written last, with every file's size and sha256: its presence means done.

Every stage writes atomically and is skipped when its output exists, so a build killed at any
moment (kill -9) resumes where it stopped and ends with byte-identical files.

Queries are answered from the PQ codes (candidates) and re-ranked exactly with the fp16 vectors.
On unit vectors L2 order is cosine order, so the compressed part uses FAISS's L2 path (the one its
billion-scale baselines use) and the re-rank uses the exact inner product.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import mmap
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from astropy.coordinates import angular_separation

from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path, full_disk_is_an_error, read_json, write_json_atomic
from galaxalign.search import shards
from galaxalign.search.index import Hit, advise_pages, advise_range, exact_knn, normalise

if TYPE_CHECKING:
    from galaxalign.data import GalaxyDataset
    from galaxalign.runs import Run

log = logging.getLogger(__name__)
FORMAT, FORMAT_VERSION = "galaxalign-survey", 1
MANIFEST_FILE, INDEX_FILE, LISTS_FILE = "survey.json", "populated.index", "lists.ivfdata"
VECTORS_FILE, CATALOGUE_FILE = "vectors.f16", "catalogue.arrow"
SKY_DEC_FILE, SKY_ROWS_FILE, ID_ROWS_FILE = "sky_dec.npy", "sky_rows.npy", "id_rows.npy"
DATA_FILES = (INDEX_FILE, LISTS_FILE, VECTORS_FILE, CATALOGUE_FILE, SKY_DEC_FILE, SKY_ROWS_FILE, ID_ROWS_FILE)
BUILD_DIR = "build"

# FAISS's guidelines ("Guidelines to choose an index"): K between 4 sqrt(N) and 16 sqrt(N) lists,
# trained on 30 K to 256 K vectors (k-means warns below 39 K); an HNSW32 coarse quantizer from
# 1M vectors; PQ codes of M bytes (M <= 64) after an OPQ rotation to 4 M dims (y = 4x).
NLIST_PER_SQRT_N = 4  # the guideline's low end: k-means time grows with K, and 2 cores must train it
TRAIN_PER_LIST, MIN_TRAIN_PER_LIST, MAX_TRAIN_PER_LIST = 64, 39, 256
HNSW_FROM = 1_000_000
RELEASE_EVERY = 64  # re-ranked queries between releases of the mapped pages (SurveyIndex.release_pages)
OPQ_FROM = 1_000_000  # OPQ's training (50 PQ rounds) costs more than it returns while re-ranking covers small N
DIMS_PER_PQ_BYTE, MAX_PQ_BYTES = 8, 64
PQ_MIN_TRAIN = 39  # per PQ centroid (2**bits of them), as for the coarse k-means
QUANTIZER_EF = 64  # HNSW efSearch while adding (big-ann's baseline used 80) and its floor at query time

QUERY_TYPES = ("image", "text", "symbol", "sketch")
NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
RERANK_STEPS = (16, 32, 64, 128, 256, 512, 1024, 2048)
TUNE_QUERIES = 256
TUNE_TARGET = {"image": 0.97, "cross": 0.93}  # tuned a little above the 0.95 / 0.90 aimed for on unseen queries
PAGE_BYTES = 4096  # one re-ranked row costs a page read when the vectors are cold
EXACT_CONE_MAX = 1 << 16  # a cone holding fewer galaxies is searched exactly
DEFAULT_TOLERANCE_ARCSEC = 5.0
CHUNK = 65_536
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 64, 1 << 16
FULL_HASH_BELOW = 1 << 28  # files under 256 MiB are fully hashed at open time; larger ones sampled


# ---------------------------------------------------------------- the plan: index string from N and D


@dataclass(frozen=True)
class SurveyPlan:
    """The FAISS index string and training size for N vectors of D dims, and the rule that gave them."""

    factory: str
    nlist: int
    pq_bytes: int
    pq_bits: int
    opq: bool
    hnsw: bool
    train_size: int
    rule: str


def _pow2(x: float) -> int:
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def plan_index(
    n: int,
    dim: int,
    *,
    nlist: int | None = None,
    pq_bytes: int | None = None,
    opq: bool | None = None,
    build_memory_gb: float = 4.0,
) -> SurveyPlan:
    """Choose the index by FAISS's guidelines as a function of N and D (overrides win).

    nlist = 4 sqrt(N) rounded to a power of two (at most N / 39, so k-means gets 39 points a list,
    at most 2^20); training sample = 64 nlist vectors (within FAISS's 30-256 per list, at least
    39 * 256 for the PQ codebooks), within a quarter of the build memory as float32; PQ of D / 8
    bytes (at most 64), each an 8-bit code unless the sample is too small for 256 centroids; OPQ to
    4 x PQ bytes dims (y = 4x) from 1M vectors when that is at most D; an HNSW32 coarse quantizer
    from 1M vectors.
    """
    if n < 1 or dim < 1:
        raise GalaxAlignError(f"survey index: nothing to index ({n} vectors of dim {dim})")
    cap = max(1, n // MIN_TRAIN_PER_LIST)
    auto_nlist = min(_pow2(NLIST_PER_SQRT_N * math.sqrt(n)), 1 << (cap.bit_length() - 1), 1 << 20)
    k = nlist or auto_nlist
    if k < 1 or k > n:
        raise GalaxAlignError(f"survey index: --nlist must be from 1 to the {n} vectors, got {k}")
    memory_rows = int(build_memory_gb * 2**30 / 4 / (4 * dim))
    want = max(TRAIN_PER_LIST * k, PQ_MIN_TRAIN * 256)
    train = min(n, want, MAX_TRAIN_PER_LIST * k if k * MAX_TRAIN_PER_LIST >= PQ_MIN_TRAIN * 256 else want)
    if memory_rows < min(train, MIN_TRAIN_PER_LIST * k):
        raise GalaxAlignError(
            f"survey index: --build-memory-gb {build_memory_gb} holds {memory_rows} training vectors, "
            f"fewer than the {MIN_TRAIN_PER_LIST * k} that {k} lists need; give more or fewer lists"
        )
    train = min(train, memory_rows)
    m = pq_bytes or max(1, min(MAX_PQ_BYTES, dim // DIMS_PER_PQ_BYTE))
    use_opq = (n >= OPQ_FROM and 4 * m <= dim) if opq is None else opq
    sub_dim = 4 * m if use_opq else dim
    if use_opq and 4 * m > dim:
        raise GalaxAlignError(f"survey index: OPQ to {4 * m} dims needs D >= {4 * m}, the vectors are {dim} wide")
    if sub_dim % m:
        raise GalaxAlignError(f"survey index: --pq-bytes {m} must divide the {sub_dim} dims it codes")
    bits = max(1, min(8, int(math.log2(max(train // PQ_MIN_TRAIN, 2)))))
    hnsw = n >= HNSW_FROM
    parts = [f"OPQ{m}_{sub_dim}"] if use_opq else []
    parts += [f"IVF{k}_HNSW32" if hnsw else f"IVF{k}", f"PQ{m}" if bits == 8 else f"PQ{m}x{bits}"]
    rule = (
        f"nlist {'given' if nlist else f'4 sqrt(N) = {NLIST_PER_SQRT_N * math.sqrt(n):.0f} -> power of two'}; "
        f"train {train} (64 per list, FAISS asks 30-256); PQ {m} bytes (D/8) x {bits} bits; "
        f"{'OPQ y = 4x' if use_opq else 'no OPQ'}; {'HNSW32' if hnsw else 'flat'} coarse quantizer"
    )
    return SurveyPlan(",".join(parts), k, m, bits, use_opq, hnsw, train, rule)


# ---------------------------------------------------------------- build


@dataclass
class BuildOptions:
    nlist: int | None = None
    pq_bytes: int | None = None
    opq: bool | None = None
    build_memory_gb: float = 4.0
    threads: int = 0  # 0: FAISS's default
    seed: int = 0
    tune_queries: int = TUNE_QUERIES


@dataclass
class _Input:
    folder: Path
    catalogue: dict
    manifests: list[dict]
    offsets: np.ndarray  # global row of each shard's first vector; offsets[-1] = N

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    @property
    def dim(self) -> int:
        return int(self.catalogue["dim"])

    def signature(self) -> dict:
        """What the index is a function of: a change of any input shard invalidates the build."""
        return {
            "fingerprint": self.catalogue["fingerprint"],
            "dim": self.dim,
            "shards": [m["sha256"] for m in self.manifests],
        }

    def vectors(self, k: int) -> np.ndarray:
        table = shards.read_shard(shards.shard_path(self.folder, k), columns=["vector"])
        vectors = shards.shard_vectors(table)
        if len(vectors) != self.manifests[k]["rows"]:
            raise GalaxAlignError(f"{shards.shard_path(self.folder, k)}: row count differs from its manifest")
        return vectors


def _read_input(folder: Path, check_sha: bool = True) -> _Input:
    catalogue, manifests = shards.catalogue_shards(folder, check_sha=check_sha)
    offsets = np.concatenate([[0], np.cumsum([m["rows"] for m in manifests])]).astype(np.int64)
    if offsets[-1] == 0:
        raise GalaxAlignError(f"{folder}: the embedding shards hold no galaxies")
    return _Input(folder, catalogue, manifests, offsets)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    if n > 0:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence FAISS's C-level progress lines ("resizing ...", "updating ondisk filename ..."),
    which would otherwise land in the output of every command that opens a survey index."""
    import ctypes
    import sys

    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _write_index(index: faiss.Index, target: Path) -> None:
    """Serialised by FAISS, written by Python: FAISS's own file writer meets a full disk with a line
    on stderr and a short file, which the rename would then vouch for."""
    data = faiss.serialize_index(index)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data.tobytes())
        f.flush()
        os.fsync(f.fileno())


def _read_index(path: Path, flags: int = 0) -> faiss.Index:
    if not path.is_file():
        raise GalaxAlignError(f"{path}: missing")
    try:
        with _quiet_stdout():
            return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise GalaxAlignError(f"{path}: unreadable FAISS index ({str(exc).strip().splitlines()[-1]})") from None


def _sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _gather(inp: _Input, rows: np.ndarray) -> np.ndarray:
    """float32 copies of global `rows` (sorted), read one shard at a time: a uniform sample of all."""
    out = np.empty((len(rows), inp.dim), np.float32)
    bounds = np.searchsorted(rows, inp.offsets)
    for k in range(len(inp.manifests)):
        lo, hi = bounds[k], bounds[k + 1]
        if hi > lo:
            out[lo:hi] = inp.vectors(k)[rows[lo:hi] - inp.offsets[k]]
    return out


def _train(inp: _Input, plan: SurveyPlan, seed: int) -> faiss.Index:
    """Train OPQ, the coarse k-means and PQ on a sample; the HNSW quantizer is filled on one thread
    (its graph depends on insertion order), so the trained index is the same on every run."""
    sample = _gather(inp, _sample_rows(inp.n, plan.train_size, seed))
    index = faiss.index_factory(inp.dim, plan.factory, faiss.METRIC_L2)
    ivf = faiss.extract_index_ivf(index)
    # The factory turns on polysemous training (it reorders PQ codes for Hamming-distance search,
    # which these queries never use) unless the string ends in "np"; it took 95 % of the build.
    faiss.downcast_index(ivf).do_polysemous_training = False  # type: ignore[attr-defined]  # an IndexIVFPQ
    xt = sample
    if plan.opq:
        pre = faiss.downcast_index(index)
        opq = faiss.downcast_VectorTransform(pre.chain.at(0))  # type: ignore[attr-defined]  # stubs say Index
        opq.train(sample)
        xt = opq.apply(sample)
    clustering = faiss.Clustering(ivf.d, ivf.nlist)
    clustering.seed = seed + 1234
    clustering.max_points_per_centroid = MAX_TRAIN_PER_LIST
    clustering.train(xt, faiss.IndexFlatL2(ivf.d))
    centroids = faiss.vector_to_array(clustering.centroids).reshape(ivf.nlist, ivf.d)
    quantizer = faiss.downcast_index(ivf.quantizer)
    with _threads(1):
        quantizer.add(centroids)
    if plan.hnsw:
        quantizer.hnsw.efSearch = QUANTIZER_EF  # type: ignore[attr-defined]  # an IndexHNSWFlat
    index.train(sample)  # quantizer already trained (ntotal == nlist): this trains PQ on residuals
    return index


def _stage(folder: Path, name: str) -> Path:
    return folder / BUILD_DIR / name


def build_survey_index(
    embeddings: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: BuildOptions | None = None,
    *,
    run: Run | None = None,
    on_step: Callable[[str], None] | None = None,
) -> SurveyIndex:
    """Build (or resume building) the survey index of an embedding folder in `out_dir`.

    `on_step` is called with each finished step's name (tests and the benchmark use it to kill the
    build at a chosen point). With `run`, its text and symbol queries tune the cross-modal search.
    """
    options = options or BuildOptions()
    emb, out = Path(embeddings), Path(out_dir)
    inp = _read_input(emb)
    if run is not None and run.fingerprint != inp.catalogue["fingerprint"]:
        raise GalaxAlignError(
            f"{emb}: embedded by run fingerprint {inp.catalogue['fingerprint'][:12]}, not by {run.run_dir}"
        )
    plan = plan_index(
        inp.n,
        inp.dim,
        nlist=options.nlist,
        pq_bytes=options.pq_bytes,
        opq=options.opq,
        build_memory_gb=options.build_memory_gb,
    )
    step = on_step or (lambda name: None)
    say = log.info
    state = {"plan": asdict(plan), "input": inp.signature(), "seed": options.seed, "tune_queries": options.tune_queries}
    done = out / MANIFEST_FILE
    if done.exists():
        with contextlib.suppress(GalaxAlignError):
            manifest = _read_manifest(out)
            if manifest.get("build") == state:
                say(f"{out}: already built from these shards")
                return SurveyIndex.open(out)
        done.unlink()  # another build's index: no longer trusted while this one is written
    plan_file = _stage(out, "plan.json")
    if plan_file.exists() and read_json(plan_file, "build plan") != state:
        shutil.rmtree(out / BUILD_DIR)  # a different plan or other shards: start over
    (out / BUILD_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(plan_file, state)

    with _threads(options.threads):
        trained_path = _stage(out, "trained.index")
        if not trained_path.exists():
            say(f"training {plan.factory} on {plan.train_size} vectors")
            _write_index(_train(inp, plan, options.seed), trained_path)
        step("train")
        _fill(inp, out, trained_path, step, say)
        _merge(inp, out, trained_path, step)
        _write_catalogue(inp, out, step)
        index = SurveyIndex.open(out, manifest=_provisional_manifest(inp, plan, state), verify="none")
        tuning_path = _stage(out, "tuning.json")
        if not tuning_path.exists():
            say("tuning nprobe and re-rank depth per query type")
            write_json_atomic(tuning_path, tune(index, run=run, queries=options.tune_queries, seed=options.seed))
        step("tune")
        tuning = read_json(tuning_path, "tuning record")
    manifest = {
        **_provisional_manifest(inp, plan, state),
        "tuning": tuning,
        "files": {name: _file_record(out / name) for name in DATA_FILES},
    }
    write_json_atomic(done, manifest)
    shutil.rmtree(out / BUILD_DIR)
    step("done")
    return SurveyIndex.open(out)


def _provisional_manifest(inp: _Input, plan: SurveyPlan, state: dict) -> dict:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "survey",
        "embeddings": str(inp.folder.resolve()),
        "run_dir": str(inp.catalogue.get("run", "")),
        "run_fingerprint": inp.catalogue["fingerprint"],
        "dim": inp.dim,
        "count": inp.n,
        "sources": [m.get("source", "") for m in inp.manifests],
        "plan": asdict(plan),
        "build": state,
        "tuning": {},
        "files": {},
    }


def _fill(inp: _Input, out: Path, trained_path: Path, step: Callable[[str], None], say: Callable) -> None:
    """Per shard: its rows of vectors.f16 (written, synced), then its block index (atomic)."""
    vectors_path = out / VECTORS_FILE
    size = inp.n * inp.dim * 2
    if not vectors_path.exists() or vectors_path.stat().st_size != size:
        with full_disk_is_an_error(vectors_path), open(vectors_path, "wb") as f:
            f.truncate(size)  # sparse: disk is taken shard by shard below
    for k in range(len(inp.manifests)):
        block = _stage(out, f"block-{k:05d}.index")
        if block.exists():
            continue
        vectors = inp.vectors(k)
        # a full disk here leaves shard k's rows part-written, but its block is not written, so a
        # rerun writes them again
        with full_disk_is_an_error(vectors_path), open(vectors_path, "r+b") as f:
            f.seek(int(inp.offsets[k]) * inp.dim * 2)
            f.write(np.ascontiguousarray(vectors).tobytes())
            f.flush()
            os.fsync(f.fileno())
        index = _read_index(trained_path)
        for i in range(0, len(vectors), CHUNK):
            chunk = np.ascontiguousarray(vectors[i : i + CHUNK], dtype=np.float32)
            index.add_with_ids(chunk, np.arange(i, i + len(chunk), dtype=np.int64) + inp.offsets[k])
        _write_index(index, block)
        say(f"block {k + 1}/{len(inp.manifests)}")
        step(f"block-{k}")


def _merge(inp: _Input, out: Path, trained_path: Path, step: Callable[[str], None]) -> None:
    """merge_ondisk into lists.ivfdata; the index names its lists file relative to itself."""
    from faiss.contrib.ondisk import merge_ondisk

    populated = out / INDEX_FILE
    if populated.exists() and (out / LISTS_FILE).exists():
        return
    blocks = [str(_stage(out, f"block-{k:05d}.index")) for k in range(len(inp.manifests))]
    index = _read_index(trained_path)
    lists_tmp = _stage(out, LISTS_FILE + ".tmp")
    lists_tmp.unlink(missing_ok=True)
    _check_room(lists_tmp, out / LISTS_FILE, inp.n * (faiss.extract_index_ivf(index).code_size + 8))  # codes + ids
    try:
        with full_disk_is_an_error(out / LISTS_FILE), _quiet_stdout():
            merge_ondisk(index, blocks, str(lists_tmp))
    except BaseException:
        lists_tmp.unlink(missing_ok=True)  # its space back; the merge starts over on the rerun
        raise
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)  # type: ignore[arg-type]
    invlists.filename = LISTS_FILE  # type: ignore[attr-defined]  # an OnDiskInvertedLists  # resolved beside the index (IO_FLAG_ONDISK_SAME_DIR) wherever it moves
    os.replace(lists_tmp, out / LISTS_FILE)
    _write_index(index, populated)
    step("merge")


def _check_room(probe: Path, target: Path, need: int) -> None:
    """Refuse to start the merge without room for its lists: FAISS writes them through a memory map,
    and a full disk under a map is a SIGBUS (the process killed), not an error it can report."""
    with full_disk_is_an_error(target), open(probe, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, need)
        finally:
            f.close()
            probe.unlink(missing_ok=True)


def _write_catalogue(inp: _Input, out: Path, step: Callable[[str], None]) -> None:
    """catalogue.arrow (id, ra, dec, source, row), then the dec- and id-sorted row orders."""
    path = out / CATALOGUE_FILE
    if not path.exists():
        schema = pa.schema(
            [
                ("id", pa.string()),
                ("ra", pa.float64()),
                ("dec", pa.float64()),
                ("source", pa.int32()),
                ("row", pa.int64()),
            ]
        )
        with atomic_path(path) as tmp, ipc.new_file(str(tmp), schema) as writer:
            for k in range(len(inp.manifests)):
                table = shards.read_shard(shards.shard_path(inp.folder, k), columns=["id", "ra", "dec", "row"])
                n = table.num_rows
                writer.write_table(
                    pa.table(
                        {
                            "id": table.column("id"),
                            "ra": table.column("ra"),
                            "dec": table.column("dec"),
                            "source": pa.array(np.full(n, k, np.int32)),
                            "row": table.column("row"),
                        },
                        schema=schema,
                    )
                )
    if not all((out / name).exists() for name in (SKY_DEC_FILE, SKY_ROWS_FILE, ID_ROWS_FILE)):
        table = _map_catalogue(path)
        dec = table.column("dec").to_numpy()
        order = np.argsort(dec, kind="stable")  # NaN (no position) sorts last
        known = int(np.count_nonzero(~np.isnan(dec)))
        _save_npy(out / SKY_ROWS_FILE, order[:known].astype(np.int64))
        _save_npy(out / SKY_DEC_FILE, dec[order[:known]])
        ids = table.column("id")
        if pc.count_distinct(ids).as_py() != len(ids):
            raise GalaxAlignError(f"{inp.folder}: galaxy ids are not unique (search by id needs one galaxy per id)")
        _save_npy(out / ID_ROWS_FILE, pc.sort_indices(ids).to_numpy().astype(np.int64))
    step("catalogue")


def _save_npy(target: Path, array: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _map_catalogue(path: Path) -> pa.Table:
    try:
        return ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    except FileNotFoundError:
        raise GalaxAlignError(f"{path}: missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise GalaxAlignError(f"{path}: truncated or not an Arrow file ({shards._first_line(exc)})") from None


# ---------------------------------------------------------------- manifest and checksums


def _sample_sha256(path: Path) -> str:
    """sha256 of 64 blocks of 64 KiB spread evenly over the file and its size: a check that a
    rewritten or truncated file fails at open time without reading gigabytes."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for i in range(SAMPLE_BLOCKS):
            f.seek(max(0, (size - SAMPLE_BLOCK_BYTES) * i // max(SAMPLE_BLOCKS - 1, 1)))
            digest.update(f.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def _file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": shards.file_sha256(path), "sample_sha256": _sample_sha256(path)}


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise GalaxAlignError(f"{folder}: no such index folder")
    manifest = read_json(path, "survey index manifest (not a survey index, or an unfinished build)")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GalaxAlignError(f"{path}: not a GalaxAlign survey index manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise GalaxAlignError(
            f"{path}: survey index version {manifest.get('version')}, this GalaxAlign reads {FORMAT_VERSION}"
        )
    return manifest


def is_survey_index(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MANIFEST_FILE).is_file()


def verify_files(folder: Path, manifest: dict, level: str = "sample") -> None:
    """Refuse files that differ from the manifest: sizes always; with `sample`, full sha256 of the
    small files and a sampled one of the large; with `full`, full sha256 of all."""
    if level == "none":
        return
    for name, record in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise GalaxAlignError(f"{path}: missing (incomplete survey index)")
        size = path.stat().st_size
        if size != record["bytes"]:
            raise GalaxAlignError(
                f"{path}: {size} bytes, the index manifest says {record['bytes']} (truncated or rewritten)"
            )
        if level == "full" or size < FULL_HASH_BELOW:
            if shards.file_sha256(path) != record["sha256"]:
                raise GalaxAlignError(f"{path}: sha256 differs from the index manifest (corrupted or rewritten)")
        elif _sample_sha256(path) != record["sample_sha256"]:
            raise GalaxAlignError(f"{path}: sampled sha256 differs from the index manifest (corrupted or rewritten)")


# ---------------------------------------------------------------- the opened index


@dataclass(frozen=True)
class Cone:
    """A circle on the sky: centre (degrees) and radius (degrees)."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self):
        if not (math.isfinite(self.ra) and -90 <= self.dec <= 90 and 0 < self.radius <= 180):
            raise GalaxAlignError(f"cone: need dec in [-90, 90] and radius in (0, 180] degrees, got {self}")


@dataclass
class Depth:
    nprobe: int
    rerank: int


class SurveyIndex:
    """A survey index folder opened read-only and memory-mapped: RAM holds the coarse quantizer and
    codebooks; the lists, vectors and catalogue stay in files read through the page cache."""

    kind = "survey"

    def __init__(self, folder: Path, manifest: dict, index: faiss.Index, vectors: np.ndarray, catalogue: pa.Table):
        self.dir, self.manifest, self.index, self.vectors, self.catalogue = folder, manifest, index, vectors, catalogue
        self.ivf = faiss.extract_index_ivf(index)
        self.sky_dec = np.load(folder / SKY_DEC_FILE, mmap_mode="r")
        self.sky_rows = np.load(folder / SKY_ROWS_FILE, mmap_mode="r")
        self.id_rows = np.load(folder / ID_ROWS_FILE, mmap_mode="r")
        self._ids = catalogue.column("id")
        self.ra = catalogue.column("ra")
        self.dec = catalogue.column("dec")
        self.sources: list[str] = list(manifest["sources"])
        self._datasets: dict[int, GalaxyDataset] = {}
        self._reranked = 0  # queries since the mapped pages were last let go

    @classmethod
    def open(cls, folder: str | os.PathLike, *, manifest: dict | None = None, verify: str = "sample") -> SurveyIndex:
        """Open `folder`; files that do not match its manifest are refused (see `verify_files`).

        Queries read a few hundred scattered vector rows, so the vectors are mapped for random
        access: without it the kernel reads 128 KiB around every row, and a cold query took 310 ms
        instead of 28 ms at 10^6. Passes over all rows (`exact_knn`) ask for each block ahead.
        """
        folder = Path(folder)
        manifest = manifest or _read_manifest(folder)
        verify_files(folder, manifest, verify)
        n, dim = int(manifest["count"]), int(manifest["dim"])
        # The merged lists are OnDiskInvertedLists, which map lists.ivfdata themselves (read-only);
        # adding IO_FLAG_MMAP, meant for in-RAM lists, crashes faiss-cpu 1.15.1 on such an index.
        index = _read_index(folder / INDEX_FILE, faiss.IO_FLAG_READ_ONLY | faiss.IO_FLAG_ONDISK_SAME_DIR)
        if index.ntotal != n or index.d != dim:
            raise GalaxAlignError(
                f"{folder / INDEX_FILE}: holds {index.ntotal} vectors of dim {index.d}, the manifest says {n} of {dim}"
            )
        path = folder / VECTORS_FILE
        if not path.is_file() or path.stat().st_size != n * dim * 2:
            raise GalaxAlignError(f"{path}: missing or not {n} x {dim} float16")
        vectors = np.memmap(path, dtype=np.float16, mode="r", shape=(n, dim))
        advise_pages(vectors, mmap.MADV_RANDOM)
        catalogue = _map_catalogue(folder / CATALOGUE_FILE)
        if catalogue.num_rows != n:
            raise GalaxAlignError(f"{folder / CATALOGUE_FILE}: {catalogue.num_rows} rows, the manifest says {n}")
        return cls(folder, manifest, index, vectors, catalogue)

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"SurveyIndex({str(self.dir)!r}, n={len(self)}, {self.manifest['plan']['factory']})"

    @property
    def fingerprint(self) -> str:
        return self.manifest["run_fingerprint"]

    @property
    def run_dir(self) -> str:
        return self.manifest["run_dir"]

    @property
    def thumbnails(self) -> None:
        return None  # images are read from their input shards on demand

    def depth(self, query_type: str) -> Depth:
        """The tuned depths of a query type (image; text, symbol and sketch are cross-modal)."""
        tuning = self.manifest.get("tuning", {})
        entry = tuning.get(query_type) or tuning.get("cross" if query_type != "image" else "image")
        if not entry:
            return Depth(nprobe=min(64, self.ivf.nlist), rerank=256)
        return Depth(int(entry["nprobe"]), int(entry["rerank"]))

    def candidates(self, queries: np.ndarray, depth: Depth, selector: faiss.IDSelector | None = None) -> np.ndarray:
        """Rows of the `depth.rerank` best PQ matches of each query (-1 padded).

        Depths travel as per-call search parameters, never set on the shared index, so concurrent
        requests of different query types do not race.
        """
        params = faiss.SearchParametersIVF()
        params.nprobe = min(depth.nprobe, self.ivf.nlist)
        quantizer = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from the stubs; the C++ struct keeps raw pointers: these locals own them
        if self.manifest["plan"]["hnsw"]:
            quantizer.efSearch = max(QUANTIZER_EF, 2 * params.nprobe)
            params.quantizer_params = quantizer
        if selector is not None:
            params.sel = selector
        return self.index.search(np.ascontiguousarray(queries, np.float32), depth.rerank, params=params)[1]

    def gather(self, rows: np.ndarray, block: int = 4096) -> np.ndarray:
        """float32 copies of many sorted rows (a tuning sweep's candidates), block by block, each
        block's pages let go once copied: the candidates of a sweep touch most pages of the file,
        and without this the build held 5.2 GB of them at 10^7 (resident, though each is read once).
        A fault maps up to 16 cached neighbour pages too (the kernel's fault-around), so a block
        holds at most 4096 x 64 KiB."""
        out = np.empty((len(rows), self.vectors.shape[1]), np.float32)
        for i in range(0, len(rows), block):
            part = rows[i : i + block]
            out[i : i + len(part)] = self.vectors[part]
            advise_pages(self.vectors[part[0] : part[-1] + 1], mmap.MADV_DONTNEED)
        return out

    def rerank(self, query: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of the candidate rows from the fp16 vectors; the top k, best first."""
        rows = np.unique(rows[rows >= 0])  # sorted: the memmap is read in file order
        if len(rows) == 0:
            return np.zeros(0, np.float32), rows
        scores = np.asarray(self.vectors[rows], dtype=np.float32) @ query
        top = np.argsort(-scores, kind="stable")[:k]
        self._reranked += 1
        if self._reranked >= RELEASE_EVERY:
            self.release_pages()
        return scores[top], rows[top]

    def release_pages(self) -> None:
        """Let go of this process's mapped pages of the vectors and the lists (the page cache keeps
        them). Each re-ranked row's fault also maps up to 15 cached neighbour pages (the kernel's
        fault-around), so without this a server's RSS grows with the queries it has answered
        toward the size of its files: 4.4 GB after 1,400 queries at 10^7 with a warm page cache.
        Every `RELEASE_EVERY` queries (0.3 ms at 10^7) bounds it instead."""
        self._reranked = 0
        advise_pages(self.vectors, mmap.MADV_DONTNEED)
        lists: Any = faiss.downcast_InvertedLists(self.ivf.invlists)  # type: ignore[arg-type]
        if getattr(lists, "totsize", 0):  # OnDiskInvertedLists: its own read-only map
            advise_range(int(lists.ptr), int(lists.totsize), mmap.MADV_DONTNEED)

    def search(
        self,
        vectors: np.ndarray,
        k: int = 10,
        query_type: str = "image",
        *,
        cone: Cone | None = None,
        exclude: int | None = None,
        depth: Depth | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(scores, rows) of the top k for each query vector, after exact re-ranking.

        With a cone, only galaxies inside it are answered: exactly when it holds few, else through a
        FAISS ID selector on the compressed search.
        """
        queries = normalise(vectors)
        if queries.shape[1] != self.index.d:
            raise GalaxAlignError(f"{self.dir}: query vectors have dim {queries.shape[1]}, the index {self.index.d}")
        if k < 1:
            raise GalaxAlignError(f"k must be at least 1, got {k}")
        if query_type not in QUERY_TYPES:
            raise GalaxAlignError(f"query type must be one of {', '.join(QUERY_TYPES)}, got {query_type!r}")
        extra = 1 if exclude is not None else 0
        base = depth or self.depth(query_type)
        depth = Depth(base.nprobe, max(base.rerank, k + extra))
        members = self.cone_rows(cone) if cone is not None else None
        if members is not None and len(members) <= EXACT_CONE_MAX:
            found = [members for _ in queries]
        else:
            selector = faiss.IDSelectorBatch(members) if members is not None else None
            found = list(self.candidates(queries, depth, selector))
        results = []
        for query, rows in zip(queries, found):
            scores, top = self.rerank(query, rows, k + extra)
            keep = top != exclude if exclude is not None else np.ones(len(top), bool)
            results.append((scores[keep][:k], top[keep][:k]))
        return results

    # ---- catalogue

    def galaxy_id(self, row: int) -> str:
        return str(self._ids[int(row)].as_py())

    def row(self, galaxy_id: str) -> int:
        """The row of a galaxy id, by binary search over the id-sorted order (no dict of N ids)."""
        lo, hi, target = 0, len(self.id_rows), str(galaxy_id)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.galaxy_id(self.id_rows[mid]) < target:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self.id_rows) and self.galaxy_id(self.id_rows[lo]) == target:
            return int(self.id_rows[lo])
        raise GalaxAlignError(f"{self.dir}: no galaxy with id {galaxy_id!r} in the index")

    def position(self, row: int) -> tuple[float | None, float | None]:
        ra, dec = self.ra[int(row)].as_py(), self.dec[int(row)].as_py()
        return (None if ra is None or math.isnan(ra) else ra), (None if dec is None or math.isnan(dec) else dec)

    def hit(self, row: int, score: float) -> Hit:
        ra, dec = self.position(row)
        source = int(self.catalogue.column("source")[int(row)].as_py())
        return Hit(
            id=self.galaxy_id(row),
            score=float(score),
            label=-1,
            label_name=None,
            index=int(row),
            source=self.sources[source],
            ra=ra,
            dec=dec,
        )

    def _band(self, dec: float, radius: float) -> np.ndarray:
        """Rows with declination within `radius` of `dec`: a searchsorted slice, not a scan of N."""
        lo, hi = (
            np.searchsorted(self.sky_dec, [dec - radius, dec + radius], side="left")[0],
            np.searchsorted(self.sky_dec, dec + radius, side="right"),
        )
        return np.asarray(self.sky_rows[lo:hi])

    def _separations(self, rows: np.ndarray, ra: float, dec: float) -> np.ndarray:
        """Angular separation (degrees) of catalogue rows from (ra, dec), by astropy's Vincenty formula."""
        if len(rows) == 0:
            return np.zeros(0)
        order = np.sort(rows)
        ras = pc.take(self.ra, pa.array(order)).to_numpy()
        decs = pc.take(self.dec, pa.array(order)).to_numpy()
        sep = np.degrees(angular_separation(np.radians(ras), np.radians(decs), math.radians(ra), math.radians(dec)))
        out = np.empty(len(rows))
        out[np.argsort(rows, kind="stable")] = sep
        return out

    def cone_rows(self, cone: Cone) -> np.ndarray:
        """Sorted rows of the galaxies inside a cone."""
        band = self._band(cone.dec, cone.radius)
        return np.sort(band[self._separations(band, cone.ra, cone.dec) <= cone.radius])

    def nearest(self, ra: float, dec: float, tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC) -> tuple[int, float]:
        """(row, separation in arcsec) of the catalogue galaxy nearest (ra, dec), within tolerance."""
        Cone(ra, dec, max(tolerance_arcsec, 1e-9) / 3600)  # validates the position
        band = self._band(dec, tolerance_arcsec / 3600)
        sep = self._separations(band, ra, dec) * 3600
        if len(band) == 0 or sep.min() > tolerance_arcsec:
            raise GalaxAlignError(
                f"{self.dir}: no catalogue galaxy within {tolerance_arcsec:g} arcsec of RA {ra:g}, Dec {dec:g}"
            )
        best = int(np.argmin(sep))
        return int(band[best]), float(sep[best])

    # ---- images on demand

    def image(self, row: int) -> np.ndarray:
        """A result's image, read from its input shard (thumbnails are not stored at scale)."""
        from galaxalign.data import open_dataset

        row = int(row)
        if not 0 <= row < len(self):
            raise GalaxAlignError(f"{self.dir}: no row {row}")
        source = int(self.catalogue.column("source")[row].as_py())
        if source not in self._datasets:
            if len(self._datasets) >= 8:
                self._datasets.pop(next(iter(self._datasets)))
            self._datasets[source] = open_dataset(self.sources[source])
        return self._datasets[source][int(self.catalogue.column("row")[row].as_py())].image


# ---------------------------------------------------------------- tuning


def displaced_queries(vectors: np.ndarray, n: int, seed: int, gap: float = 1.2, neighbours: int = 32) -> np.ndarray:
    """Queries like text or symbol ones: the mean of a galaxy's neighbourhood (a prototype), moved off
    the data by one fixed random 'modality gap' direction and some noise, so that their best match
    has a cosine of about 0.4-0.6 instead of about 1, as real cross-modal queries do."""
    rng = np.random.default_rng(seed)
    data = normalise(vectors)
    anchors = data[rng.choice(len(data), n, replace=len(data) < n)]
    _, near = exact_knn(data, anchors, min(neighbours, len(data)))
    prototypes = normalise(np.stack([data[row[row >= 0]].mean(axis=0) for row in near]))
    direction = normalise(rng.normal(size=(1, data.shape[1])))[0]
    noise = normalise(rng.normal(size=(n, data.shape[1]))) * 0.5
    return normalise(prototypes + gap * direction + noise)


def _run_queries(run: Run) -> dict[str, np.ndarray]:
    """A run's own cross-modal queries: every class phrase (text) and every symbol variant (symbol)."""
    from galaxalign.models.prototypes import class_texts

    texts, _ = class_texts(run.scheme)
    symbols = run.symbols01.flatten(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    return {"text": normalise(run.embed_texts(texts)), "symbol": normalise(run.embed_symbols(list(symbols)))}


def _exact_scores(index: SurveyIndex, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Exact cosine of every candidate (Q, R), -inf where FAISS returned none; one sorted gather."""
    valid = found >= 0
    uniq, inverse = np.unique(found[valid], return_inverse=True)
    vectors = index.gather(uniq)
    slots = np.zeros(found.shape, np.int64)
    slots[valid] = inverse
    scores = np.empty(found.shape, np.float32)
    for i in range(0, len(queries), 16):
        scores[i : i + 16] = np.einsum("qrd,qd->qr", vectors[slots[i : i + 16]], queries[i : i + 16])
    scores[~valid] = -np.inf
    return scores


def _top(found: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The k best candidates of each row by exact score (-1 where fewer)."""
    k = min(k, found.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable"), 1)
    rows = np.take_along_axis(found, order, 1)
    return np.where(np.isfinite(np.take_along_axis(scores, order, 1)), rows, -1)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = ((found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)).any(axis=2).sum(axis=1)
    return float(np.mean(hits / np.maximum((truth >= 0).sum(axis=1), 1)))


def sweep(
    index: SurveyIndex, queries: np.ndarray, truth: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> list[dict]:
    """recall@k over the (nprobe, rerank) grid: one FAISS search per nprobe at the deepest re-rank,
    whose prefixes are the shallower ones (FAISS returns candidates best first). Deeper probes stop
    once even their shallowest setting costs more than a setting that already reached recall 0.999."""
    steps = [p for p in NPROBE_STEPS if p < index.ivf.nlist] + [index.ivf.nlist]
    reranks = [r for r in RERANK_STEPS if r < len(index)] or [len(index)]
    reranks = [r for r in reranks if r >= k] or [reranks[-1]]
    results: list[dict] = []
    saturated = math.inf
    for nprobe in steps:
        if _cost(index, nprobe, reranks[0]) > saturated:
            break
        found = index.candidates(queries, Depth(nprobe, reranks[-1]))
        scores = _exact_scores(index, queries, found)
        if exclude is not None:
            scores[found == exclude[:, None]] = -np.inf
        for rerank in reranks:
            recall = _recall(_top(found[:, :rerank], scores[:, :rerank], k), truth)
            results.append({"nprobe": nprobe, "rerank": rerank, "recall": round(recall, 4)})
            if recall >= 0.999:
                saturated = min(saturated, _cost(index, nprobe, rerank))
                break
    return results


def _cost(index: SurveyIndex, nprobe: int, rerank: int) -> float:
    """Bytes a query reads: the codes of nprobe lists, and a page per re-ranked row."""
    per_list = len(index) / index.ivf.nlist
    return nprobe * per_list * (index.ivf.code_size + 8) + rerank * PAGE_BYTES


def choose_depth(index: SurveyIndex, grid: list[dict], target: float) -> dict:
    """The cheapest setting reaching `target`, else the best recall found (then said so)."""
    reached = [g for g in grid if g["recall"] >= target]
    if reached:
        best = min(reached, key=lambda g: (_cost(index, g["nprobe"], g["rerank"]), -g["recall"]))
        return {**best, "target": target, "reached": True}
    best = max(grid, key=lambda g: (g["recall"], -_cost(index, g["nprobe"], g["rerank"])))
    return {**best, "target": target, "reached": False}


def tune(
    index: SurveyIndex, *, run: Run | None = None, queries: int = TUNE_QUERIES, seed: int = 0, k: int = 10
) -> dict:
    """Tune (nprobe, rerank) per query type against exact search on held-out queries.

    Image: indexed vectors as queries, each left out of its own results. Cross-modal: the run's
    text phrases and symbols when a run is given, else `displaced_queries`; sketches use the
    symbol setting (they go through the symbol encoder).
    """
    n = len(index)
    k = min(k, n - 1) if n > 1 else 1
    rows = _sample_rows(n, min(queries, n), seed + 7)
    image_q = normalise(index.gather(rows))
    _, truth = exact_knn(index.vectors, image_q, k + 1)
    truth = np.array([[r for r in t if r != own][:k] for t, own in zip(truth, rows)])
    out: dict[str, Any] = {"k": k}
    out["image"] = choose_depth(index, sweep(index, image_q, truth, k, exclude=rows), TUNE_TARGET["image"]) | {
        "queries": len(rows)
    }
    if run is not None:
        cross = _run_queries(run)
        source = "run"
    else:
        sample = index.gather(_sample_rows(n, min(n, 20_000), seed + 11))
        cross = {"cross": displaced_queries(sample, min(queries, n), seed + 13)}
        source = "displaced"
    for name, q in cross.items():
        _, t = exact_knn(index.vectors, q, k)
        out[name] = choose_depth(index, sweep(index, q, t, k), TUNE_TARGET["cross"]) | {
            "queries": len(q),
            "from": source,
        }
    if "cross" not in out:  # with a run: the harder of text and symbol stands for any other cross-modal query
        out["cross"] = max((out[m] for m in cross), key=lambda d: _cost(index, d["nprobe"], d["rerank"]))
    if "symbol" in out:
        out["sketch"] = out["symbol"]
    return out


# ---------------------------------------------------------------- queries


class SurveySearcher:
    """`Searcher`'s queries on a survey index, plus sky position and cone filters.

    Text, symbol and sketch queries are searched with their own tuned depths; `run` may be None for
    search by id or position alone, which use the stored vectors.
    """

    def __init__(self, index: SurveyIndex, run: Run | None = None):
        if run is not None and run.fingerprint != index.fingerprint:
            raise GalaxAlignError(
                f"{index.dir}: built from embeddings of run fingerprint {index.fingerprint[:12]}, "
                f"not by {run.run_dir} ({run.fingerprint[:12]}); rebuild the index with this run"
            )
        self.index, self.run = index, run
        self._symbols: dict[int, np.ndarray] = {}

    def _need_run(self, what: str) -> Run:
        if self.run is None:
            raise GalaxAlignError(f"search by {what} needs the run that embedded the catalogue ({self.index.run_dir})")
        return self.run

    def by_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        query_type: str = "image",
        cone: Cone | None = None,
        exclude: int | None = None,
    ) -> list[Hit]:
        scores, rows = self.index.search(vector, k, query_type, cone=cone, exclude=exclude)[0]
        return [self.index.hit(r, s) for s, r in zip(scores, rows)]

    def by_image(self, image: Any, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        return self.by_vector(self._need_run("image").embed_images([image]), k, "image", cone)

    def by_row(self, row: int, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        return self.by_vector(np.asarray(self.index.vectors[row], np.float32), k, "image", cone, exclude=row)

    def by_id(self, galaxy_id: str, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        """Galaxies most like an indexed one; the galaxy itself is left out."""
        return self.by_row(self.index.row(galaxy_id), k, cone)

    def by_position(
        self,
        ra: float,
        dec: float,
        k: int = 10,
        tolerance_arcsec: float = DEFAULT_TOLERANCE_ARCSEC,
        cone: Cone | None = None,
    ) -> list[Hit]:
        """Galaxies like the catalogue galaxy at (ra, dec): the nearest one within the tolerance."""
        row, _ = self.index.nearest(ra, dec, tolerance_arcsec)
        return self.by_row(row, k, cone)

    def by_text(self, text: str, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        if not text.strip():
            raise GalaxAlignError("search text is empty")
        return self.by_vector(self._need_run("text").embed_texts([text]), k, "text", cone)

    def by_symbol(self, class_key: str | int, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        from galaxalign.search.query import symbol_vector

        run = self._need_run("symbol")
        spec = run.scheme.by_key(str(class_key))
        if spec.id not in self._symbols:
            self._symbols[spec.id] = symbol_vector(run, spec)
        return self.by_vector(self._symbols[spec.id], k, "symbol", cone)

    def by_sketch(self, sketch: Any, k: int = 10, cone: Cone | None = None) -> list[Hit]:
        from galaxalign.search.query import read_sketch, sketch_to_symbol

        run = self._need_run("sketch")
        image = read_sketch(sketch) if isinstance(sketch, (str, os.PathLike)) else sketch
        return self.by_vector(run.embed_symbols([sketch_to_symbol(image)]), k, "sketch", cone)


__all__ = [
    "BuildOptions",
    "Cone",
    "SurveyIndex",
    "SurveyPlan",
    "SurveySearcher",
    "build_survey_index",
    "is_survey_index",
    "plan_index",
    "tune",
]
