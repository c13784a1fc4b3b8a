"""The training state that a checkpoint holds, saved and restored as one, and the metrics log.

A checkpoint is the latest weights, the optimiser, the position in the schedule (step, epoch,
next batch, stage), the best validation score so far, the torch RNG state, how many lines
of `metrics.jsonl` it covers, and the training time and images so far. A resume restores all of
it and cuts the log back, so a resumed run reproduces an uninterrupted one and each step is
logged once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from galaxalign.errors import GalaxAlignError
from galaxalign.io import append_line, atomic_path, write_text_atomic
from galaxalign.models.model import GalaxAlignModel


@dataclass
class Position:
    """Where training stands; every field is saved in the checkpoint."""

    step: int = 0  # optimiser steps taken
    epoch: int = 0
    batch: int = 0  # next batch of `epoch`
    stage: int = 1
    best_val: float = -1.0
    best_stage: int = 0  # stage and step of the weights kept as model.safetensors (0, -1: none yet)
    best_step: int = -1
    metrics_lines: int = 0
    seconds: float = 0.0  # training time and images over every sitting, for the summary's rate
    seen: int = 0


REQUIRED_KEYS = ("model", "optimizer", "torch_rng", "step", "epoch", "batch", "stage", "best_val")


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents (weights_only: a checkpoint cannot run code), or a one-line error."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files surface as many exception types
        raise GalaxAlignError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise GalaxAlignError(f"{path}: not a GalaxAlign checkpoint (lacks {', '.join(missing)})")
    return checkpoint


class TrainState:
    """The model, its optimiser and the position: what a checkpoint saves and a resume restores."""

    def __init__(self, model: GalaxAlignModel, optimizer: torch.optim.Optimizer, position: Position | None = None):
        self.model, self.optimizer = model, optimizer
        self.position = position or Position()

    def save(self, path: Path) -> None:
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            **asdict(self.position),
        }
        # Through a Python file: a full disk then raises OSError(ENOSPC), which atomic_path turns
        # into a one-line error; torch.save on a path reports it only as a zip-writer RuntimeError.
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            torch.save(payload, file)

    def restore(self, checkpoint: dict, path: Path) -> None:
        """Load weights, optimiser, position and RNG; a checkpoint of another config is a user error."""
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # another run's checkpoint, or a damaged one
            problem = str(exc).splitlines()[0]
            raise GalaxAlignError(f"{path}: does not fit this run's config ({problem})") from None
        self.position = Position(
            step=int(checkpoint["step"]),
            epoch=int(checkpoint["epoch"]),
            batch=int(checkpoint["batch"]),
            stage=int(checkpoint["stage"]),
            best_val=float(checkpoint["best_val"]),
            best_stage=int(checkpoint.get("best_stage", 0)),
            best_step=int(checkpoint.get("best_step", -1)),
            metrics_lines=int(checkpoint.get("metrics_lines", -1)),
            seconds=float(checkpoint.get("seconds", 0.0)),
            seen=int(checkpoint.get("seen", 0)),
        )
        torch.set_rng_state(checkpoint["torch_rng"])


class MetricsLog:
    """`metrics.jsonl`, one JSON line per record, counted so a checkpoint knows what it covers."""

    def __init__(self, path: Path, position: Position, enabled: bool = True):
        self.path, self.position, self.enabled = path, position, enabled

    def cut_back(self) -> None:
        """Drop lines written after the checkpoint a resume starts from (redone steps, a torn line)."""
        lines = self.position.metrics_lines
        if self.enabled and lines >= 0 and self.path.exists():
            write_text_atomic(self.path, "".join(self.path.read_text().splitlines(keepends=True)[:lines]))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        append_line(self.path, json.dumps(record))
        self.position.metrics_lines += 1
