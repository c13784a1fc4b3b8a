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


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a `--device` value; under torchrun, CUDA means this rank's GPU."""
    import torch

    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise GalaxAlignError(f"device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    if name == "cuda":
        index = int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))
    else:
        index = int(name.split(":")[1])
    if index >= torch.cuda.device_count():
        raise GalaxAlignError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    torch.cuda.set_device(index)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return torch.device("cuda", index)


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast; by default on CUDA only (on CPU bf16 is slower and changes results)."""
    import torch

    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
