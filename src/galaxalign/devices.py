"""Where tensors live: `--device auto|cpu|cuda|cuda:N`, and mixed precision that follows it.

One place decides, so that the trainer, a loaded run and the web app agree: `auto` is CUDA when
a GPU is visible, and asking for CUDA where there is none is a user error, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from galaxalign.errors import GalaxAlignError

if TYPE_CHECKING:  # torch is imported when a device is resolved, so configs stay light to import
    import torch

DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"


def check_device_name(name: str) -> None:
    """Reject a malformed device name early (in a config's checks), without touching CUDA."""
    head, _, index = name.partition(":")
    if name not in ("auto", "cpu", "cuda") and not (head == "cuda" and index.isdigit()):
        raise GalaxAlignError(f"config: device must be {DEVICE_HELP}, got {name!r}")


def choose_device(requested: str, local_rank: int | None, world_size: int, visible: int) -> str:
    """The device a process takes: "cpu" or "cuda:N", from `--device`, this process's LOCAL_RANK
    (None outside torchrun), how many processes share this node, and how many GPUs it sees.

    Under torchrun on a node whose GPUs all are visible, `cuda` is the GPU of LOCAL_RANK. With one
    visible GPU per process (SLURM's `--gpus-per-task=1`, or CUDA_VISIBLE_DEVICES set per rank)
    that GPU is cuda:0 on every rank. `cuda:N` for several processes that see several GPUs would
    put all of them on GPU N, which NCCL refuses: it is a user error, said in one line.
    """
    check_device_name(requested)
    if requested == "auto":
        requested = "cuda" if visible else "cpu"
    if requested == "cpu":
        return "cpu"
    if not visible:
        raise GalaxAlignError(f"device {requested}: CUDA is not available on this machine (use --device cpu or auto)")
    several = world_size > 1 and visible > 1  # processes here that share the GPUs they see
    if requested == "cuda":
        if local_rank is None or visible == 1:
            return "cuda:0"
        if local_rank >= visible:
            raise GalaxAlignError(
                f"device cuda: LOCAL_RANK {local_rank} but this process sees {visible} GPUs "
                f"(start at most {visible} processes per node, or one visible GPU per process)"
            )
        return f"cuda:{local_rank}"
    index = int(requested.split(":")[1])
    if index >= visible:
        raise GalaxAlignError(f"device {requested}: this machine has {visible} CUDA device(s)")
    if several:
        raise GalaxAlignError(
            f"--device {requested}: {world_size} processes on this node would all use GPU {index}; "
            f"use --device cuda (each process takes the GPU of its LOCAL_RANK)"
        )
    return requested


def local_processes() -> tuple[int | None, int]:
    """(LOCAL_RANK or None, processes on this node) from torchrun's environment; (None, 1) outside it."""
    local_rank = os.environ.get("LOCAL_RANK")
    world = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    return (int(local_rank) if local_rank is not None else None), int(world)


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a `--device` value, by `choose_device`'s rule; on CUDA, also this
    process's current device and TF32 matmuls."""
    import torch

    check_device_name(name)
    visible = torch.cuda.device_count() if name != "cpu" and torch.cuda.is_available() else 0
    chosen = torch.device(choose_device(name, *local_processes(), visible))
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return chosen


def process_group_backend(device: torch.device) -> str:
    """DDP's backend for a device: NCCL on CUDA, gloo on CPU (`--device cpu` under torchrun)."""
    return "nccl" if device.type == "cuda" else "gloo"


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast; by default on CUDA only (on CPU bf16 is slower and changes results)."""
    import torch

    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
