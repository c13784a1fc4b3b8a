"""`galaxalign embed`: a survey catalogue, given as input shards, into embedding shards.

The unit of work is one input shard: it is embedded by the run's own loop
(`Run.embed_dataset`) and written as one output shard (search/shards.py: Parquet under a
temporary name, renamed, then its manifest). A shard with a manifest is done and skipped on a
rerun; one without is redone, so a job killed at any moment loses at most the shard in flight.

Under torchrun (one process per GPU, on one node or many) each rank takes `shards[rank::world]`:
no sampler and no scheduler, because shards are independent and every rank lists them in the
same sorted order. torch.distributed (gloo, CPU only) serves a single final barrier, after which
rank 0 completes the catalogue manifest. clip-retrieval and AstroCLIP split work the same way
but cannot resume; Stein et al.'s DistributedSampler pads and interleaves rows, which this avoids.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galaxalign.config import option, required
from galaxalign.data.shards import count_rows, expand_inputs, open_shard, shard_rows
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError
from galaxalign.progress import progress_bar, progress_bars_enabled
from galaxalign.search.shards import (
    CATALOGUE_FILE,
    check_fingerprint,
    check_width,
    done_shards,
    manifest_path,
    read_catalogue_manifest,
    write_catalogue_manifest,
    write_shard,
)

# A rank may finish its shards hours before the slowest one; the barrier must outwait that.
# A rank that dies is not waited for: torchrun's agent stops the others.
BARRIER_TIMEOUT = datetime.timedelta(days=7)
FORMAT = 1


@dataclass
class EmbedConfig:
    """`galaxalign embed`: input shards (files, folders, globs) into one embedding shard each."""

    run: str = required("run folder whose image tower embeds the catalogue")
    inputs: list[str] = required(
        "input shards: .h5, folders, catalogues, Parquet with an 'image' column, WebDataset .tar; "
        "glob patterns in quotes",
        nargs="+",
        metavar="SHARD",
    )
    out: str = required("embedding folder: shard-NNNNN.parquet + .json per input shard, embedding.json")
    batch_size: int = option(64, "images embedded at once (a shard's vectors do not depend on the rank)")
    workers: int = option(0, "processes per rank that read and decode images ahead (0: the rank itself)")
    threads: int = option(0, "torch CPU threads per rank (0: torch's default; torchrun sets 1)")
    device: str = option("auto", DEVICE_HELP + "; under torchrun, cuda is each rank's LOCAL_RANK GPU")

    def __post_init__(self):
        check_device_name(self.device)
        if self.batch_size < 1:
            raise GalaxAlignError(f"embed: --batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 0 or self.threads < 0:
            raise GalaxAlignError("embed: --workers and --threads must be 0 or more")
        if not self.inputs:
            raise GalaxAlignError("embed: no input shards given")


@dataclass
class EmbedResult:
    """What one process did: its rank, the catalogue's size, and the shards it embedded or skipped."""

    out: Path
    rank: int
    world: int
    shards: int  # in the whole catalogue
    embedded: list[int] = field(default_factory=list)  # shard numbers this rank wrote
    skipped: list[int] = field(default_factory=list)  # this rank's shards already done
    rows: int = 0  # galaxies this rank embedded


def ranks() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) for a plain process.

    `srun` with several tasks but no torchrun would have every task embed every shard, so it is
    refused with the command that works.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        raise GalaxAlignError(
            "embed: started by srun with several tasks but without torchrun; launch one torchrun per node: "
            "srun --ntasks-per-node 1 torchrun --nnodes $SLURM_NNODES --nproc-per-node G "
            "--rdzv-backend c10d --rdzv-endpoint HOST:29500 -m galaxalign embed ..."
        )
    return 0, 1


def catalogue_manifest(run, sources: list[str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "run": str(run.run_dir),
        "fingerprint": run.fingerprint,
        "dim": int(run.model.embed_dim),
        "sources": list(sources),
        "modality": "image",
    }


def check_folder(out: Path, expected: dict[str, Any], existing: dict[str, Any] | None, done: dict[int, dict]) -> None:
    """A rerun may only continue the same catalogue: same run weights, width and input list."""
    where = out / CATALOGUE_FILE
    if existing is not None:
        if existing.get("fingerprint") != expected["fingerprint"]:
            raise GalaxAlignError(
                f"{where}: embedded by run fingerprint {str(existing.get('fingerprint'))[:12]}, this run is "
                f"{expected['fingerprint'][:12]} ({expected['run']}); use another --out"
            )
        if existing.get("dim") != expected["dim"]:
            raise GalaxAlignError(
                f"{where}: vectors are {existing.get('dim')} wide, this run's are {expected['dim']}; use another --out"
            )
        if existing.get("sources") != expected["sources"]:
            old, new = list(existing.get("sources") or []), expected["sources"]
            first = next((k for k, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
            raise GalaxAlignError(
                f"{where}: made from {len(old)} other input shards (shard {first}: "
                f"{old[first] if first < len(old) else 'none'} here, {new[first] if first < len(new) else 'none'} "
                "now); embed them into another --out"
            )
    for k, manifest in sorted(done.items()):
        shard = manifest_path(out, k)
        check_fingerprint(shard, str(manifest.get("fingerprint")), expected["fingerprint"])
        check_width(shard, int(manifest.get("dim", -1)), expected["dim"])
        if k >= len(expected["sources"]) or manifest.get("source") != expected["sources"][k]:
            raise GalaxAlignError(
                f"{shard}: embedded from {manifest.get('source')}, not from an input of this catalogue"
            )


def embed_catalogue(config: EmbedConfig) -> EmbedResult:
    """Embed every input shard not yet done into `config.out`; this process's share under torchrun."""
    import torch

    from galaxalign.runs import load_run

    rank, world = ranks()
    sources = expand_inputs(config.inputs)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise GalaxAlignError(f"{out}: exists and is not a folder")
    run = load_run(config.run, device=config.device)
    expected = catalogue_manifest(run, sources)
    existing = read_catalogue_manifest(out) if (out / CATALOGUE_FILE).exists() else None
    done = done_shards(out) if out.is_dir() else {}
    check_folder(out, expected, existing, done)
    if rank == 0 and existing is None:
        write_catalogue_manifest(out, expected)
    owned = _process_group(world)
    try:
        result = EmbedResult(out=out, rank=rank, world=world, shards=len(sources))
        with _CatalogueBar(
            out, sources, done, run.scheme, rank, world, enabled=rank == 0 and progress_bars_enabled()
        ) as bar:
            for k in range(rank, len(sources), world):
                if k in done:
                    result.skipped.append(k)
                    continue
                result.rows += embed_shard(run, out, k, sources[k], config, on_rows=bar.advance)
                result.embedded.append(k)
                bar.shard_done(k)
            bar.wait_for_others()
        if world > 1:
            torch.distributed.barrier()
        if rank == 0:
            _finish(out, expected, len(sources))
        return result
    finally:
        if owned:
            torch.distributed.destroy_process_group()


def embed_shard(run, out: Path, k: int, source: str, config: EmbedConfig, on_rows=None) -> int:
    """Embed input shard k and write its output shard; the number of galaxies."""
    dataset = open_shard(source, run.scheme)
    n = len(dataset)
    if n == 0:
        raise GalaxAlignError(f"{source}: empty input shard (0 rows)")
    rows = shard_rows(dataset, source)
    _clear_leftovers(out, k)

    def seen(indices: np.ndarray, images: list[np.ndarray]) -> None:
        if on_rows is not None:
            on_rows(len(indices))

    embedded = run.embed_dataset(dataset, batch_size=config.batch_size, workers=config.workers, on_batch=seen)
    write_shard(
        out,
        k,
        ids=rows.ids,
        ra=rows.ra,
        dec=rows.dec,
        source=source,
        rows=np.arange(n, dtype=np.int64),
        vectors=embedded.embeddings.astype(np.float16),
        fingerprint=run.fingerprint,
    )
    return n


def _clear_leftovers(out: Path, k: int) -> None:
    """A previous attempt's stale manifest and temporaries of shard k (a kill -9 inside
    atomic_path leaves its temporary behind); this rank owns k, so nobody else is writing them."""
    stem = f"shard-{k:05d}"
    manifest_path(out, k).unlink(missing_ok=True)  # not done (else skipped): must not vouch for the redo
    if out.is_dir():
        for leftover in out.glob(f".{stem}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _process_group(world: int) -> bool:
    """A gloo group for the final barrier (CPU only, so no GPU memory or NCCL setup for it);
    True when this call made it (a caller's own group is used and left alone)."""
    import torch.distributed as dist

    if world <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="gloo", timeout=BARRIER_TIMEOUT)
    return True


def _finish(out: Path, expected: dict[str, Any], n_shards: int) -> None:
    """After the barrier: every shard must be done; the catalogue manifest gets its total."""
    done = done_shards(out)
    missing = [k for k in range(n_shards) if k not in done]
    if missing:
        raise GalaxAlignError(f"{out}: shard {missing[0]} ({expected['sources'][missing[0]]}) was not written")
    write_catalogue_manifest(out, {**expected, "rows": int(sum(int(done[k]["rows"]) for k in range(n_shards)))})


class _CatalogueBar:
    """Rank 0's one bar for the whole catalogue: galaxies done (its own as they are embedded,
    other ranks' as their shard manifests appear), rate, time left; shards done in the postfix."""

    POLL_S = 2.0

    def __init__(
        self, out: Path, sources: list[str], done: dict[int, dict], scheme, rank: int, world: int, enabled: bool
    ):
        self.enabled, self.out, self.rank, self.world = enabled, out, rank, world
        self.pending: dict[int, str] = {}
        self.n_done, self.n_shards, self._polled = len(done), len(sources), 0.0
        if not enabled:
            return
        finished = sum(int(m.get("rows", 0)) for m in done.values())
        self.pending = {k: manifest_path(out, k).name for k in range(len(sources)) if k not in done}
        total = finished + sum(count_rows(sources[k], scheme) for k in self.pending)
        self.bar = progress_bar(total, "embed", initial=finished, unit="galaxy", smoothing=0.05)
        self._postfix()

    def __enter__(self) -> _CatalogueBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.close()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"shards {self.n_done}/{self.n_shards}", refresh=False)

    def advance(self, n: int) -> None:
        if self.enabled:
            self.bar.update(n)
            self._poll()

    def shard_done(self, k: int) -> None:
        if self.enabled:
            self.pending.pop(k, None)
            self.n_done += 1
            self._postfix()
            self.bar.refresh()

    def _poll(self, force: bool = False) -> None:
        """Count the shards other ranks finished: one folder listing every POLL_S seconds."""
        if not force and time.monotonic() - self._polled < self.POLL_S:
            return
        self._polled = time.monotonic()
        from galaxalign.io import read_json

        names = set(os.listdir(self.out)) if self.out.is_dir() else set()
        for k, name in list(self.pending.items()):
            if name in names and k % self.world != self.rank:
                try:
                    rows = int(read_json(self.out / name, "shard manifest").get("rows", 0))
                except (GalaxAlignError, ValueError, TypeError):
                    continue  # checked properly at the end
                del self.pending[k]
                self.n_done += 1
                self.bar.update(rows)
                self._postfix()

    def wait_for_others(self) -> None:
        """Keep the bar moving while the other ranks finish (the barrier comes next)."""
        if not self.enabled or self.world <= 1:
            return
        while self.pending:
            self._poll(force=True)
            time.sleep(self.POLL_S)
