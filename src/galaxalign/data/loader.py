"""Read and decode images in DataLoader worker processes, so the training process only computes.

The trainer used to read and decode every image itself (h5 chunk inflate, PIL decode), which on
a GPU host leaves the accelerator waiting most of the time. `image_batches` moves that work into
`workers` processes and hands back batches in the order asked for, as uint8 (b, 3, H, W)
tensors: no resizing and no randomness here, so a batch is bitwise the same for any worker
count; augmentation (seeded per sample, see `training.batches`) is left to the caller.

Workers are forked on Linux. That is safe with h5py here, checked in tests/test_loader.py:
`H5Dataset` opens its handle again in a new process (in a fork, HDF5 hands the child the file
it inherited, and reads it with `pread`, which has no shared file offset); the file is only
read, and a child closing it leaves the parent's handle and file lock alone. Forked workers
deliver their first batch in ~0.03 s; spawned ones first import torch and galaxalign (3 s for
2 workers on 2 cores, `benchmarks/bench_input.py`), which an epoch would pay every time. Fork
does assume no other thread of the parent is inside h5py at the moment the workers start.
Elsewhere the platform default (spawn) is used; it pickles the dataset, and `H5Dataset` drops
its handle when pickled.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from galaxalign.data.datasets import GalaxyDataset
from galaxalign.errors import GalaxAlignError

Batch = torch.Tensor | list[torch.Tensor]


class RawImages(Dataset):
    """Item i is `dataset[i].image` as a uint8 (3, H, W) tensor: decoded, otherwise untouched."""

    def __init__(self, dataset: GalaxyDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.dataset[i].image
        if not image.flags.writeable:  # PIL-backed arrays are read-only; torch wants memory it may write
            image = image.copy()
        # A channels-first view, not a copy: `image_batches` copies once, into the batch.
        return torch.from_numpy(image).permute(2, 0, 1)


def index_batches(indices: Sequence[int] | np.ndarray, batch_size: int) -> list[list[int]]:
    """`indices` cut into lists of `batch_size` (the last one may be shorter), in order."""
    if batch_size < 1:
        raise GalaxAlignError(f"batch size must be at least 1, got {batch_size}")
    flat = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
    return [flat[start : start + batch_size] for start in range(0, len(flat), batch_size)]


def image_batches(
    dataset: GalaxyDataset,
    index_batches: Iterable[Sequence[int]],
    workers: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """The images of each index list, in order: a uint8 (b, 3, H, W) tensor when they share a
    shape (always for an h5), else a list of (3, H, W) tensors.

    `workers` 0 reads in this process; otherwise that many processes read ahead, each at most
    `prefetch` batches. A damaged or unreadable image raises its own one-line GalaxAlignError
    here, when its batch is reached, whichever process read it. Index lists given as a list or
    other sequence are checked before anything is read; given as an iterator (a generator that
    plans each batch when asked), each is taken and checked only when the loader needs it, a few
    batches ahead. Stopping early (break) shuts the workers down.
    """
    if workers < 0:
        raise GalaxAlignError(f"loader workers must be 0 or more, got {workers}")
    if workers and prefetch < 1:
        raise GalaxAlignError(f"loader prefetch must be at least 1 batch per worker, got {prefetch}")
    batches = _checked(dataset, index_batches)
    loader = DataLoader(
        _Guarded(dataset),
        batch_sampler=batches,
        num_workers=workers,
        prefetch_factor=prefetch if workers else None,
        pin_memory=pin_memory,
        collate_fn=_collate,
        worker_init_fn=_init_worker,
        multiprocessing_context=worker_context() if workers else None,
    )
    return _unwrapped(loader)


def worker_context() -> multiprocessing.context.BaseContext | None:
    """'fork' on Linux (safe with h5py here, see the module docstring), else the default."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


# ---------------------------------------------------------------- internals


def _checked(dataset: GalaxyDataset, index_batches: Iterable[Sequence[int]]) -> list[list[int]] | Iterator[list[int]]:
    """Plain int lists; an out-of-range index or an empty list fails in this process, not in a
    worker: all of them now for a sequence, each as it is taken for an iterator."""
    checked = (_check(dataset, number, batch) for number, batch in enumerate(index_batches))
    return list(checked) if isinstance(index_batches, Sequence) else checked


def _check(dataset: GalaxyDataset, number: int, batch: Sequence[int]) -> list[int]:
    n = len(dataset)
    rows = np.asarray(batch, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        raise GalaxAlignError(f"{dataset.source}: index batch {number} is empty")
    bad = rows[(rows < -n) | (rows >= n)]
    if bad.size:
        raise IndexError(f"{dataset.source}: index {int(bad[0])} out of range for {n} galaxies")
    return rows.tolist()


class _Failed:
    """A GalaxAlignError caught where an image was read, carried to the caller as a value.

    Raised in a worker, it would reach the caller rewrapped by DataLoader as a multi-line
    "Caught ... in DataLoader worker process" message; carried, it is raised unchanged.
    """

    def __init__(self, error: GalaxAlignError):
        self.error = error


class _Guarded(RawImages):
    """RawImages whose GalaxAlignErrors come back as `_Failed` values."""

    def __getitem__(self, i: int) -> torch.Tensor | _Failed:  # type: ignore[override]
        try:
            return super().__getitem__(i)
        except GalaxAlignError as exc:
            return _Failed(exc.with_traceback(None))


def _collate(items: list[torch.Tensor | _Failed]) -> Batch | _Failed:
    """One tensor for one shape, else a list of contiguous ones.

    The transposing copy is numpy's, into one preallocated batch: single-threaded, it took
    0.06-0.08 ms per 256 px image where `torch.stack` of the permuted views took 0.15 ms with
    1 thread and 0.3-0.4 ms with 2 OpenMP threads on 2 shared cores.
    """
    images: list[torch.Tensor] = []
    for item in items:
        if isinstance(item, _Failed):
            return item  # the batch's first bad image, as a sequential read would report it
        images.append(item)
    shape = images[0].shape
    if any(image.shape != shape for image in images):
        return [image.contiguous() for image in images]
    batch = _empty_batch((len(images), *shape))
    out = batch.numpy()
    for k, image in enumerate(images):
        out[k] = image.numpy()
    return batch


def _empty_batch(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor; in a worker, allocated in shared memory (as `default_collate` does), so
    handing it to the parent copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _init_worker(worker_id: int) -> None:
    # One thread per worker: the workers are the parallelism, and OpenMP pools in many
    # processes would oversubscribe the cores.
    torch.set_num_threads(1)


def _unwrapped(loader: DataLoader) -> Iterator[Batch]:
    iterator = iter(loader)
    try:
        for batch in iterator:
            if isinstance(batch, _Failed):
                raise batch.error
            yield batch
    finally:
        # Drop the iterator now, so its workers stop even while the raised error (whose
        # traceback holds this frame) is still alive.
        del iterator
