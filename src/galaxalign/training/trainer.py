"""One trainer for every method: the method's row says what to build and which loss to use.

The run folder (galaxalign.runs) holds everything needed to load, evaluate or resume the run.
Under `torchrun` it runs DDP: each rank builds its slice of the same global batch and the
contrastive losses all-gather features with gradients; on CUDA each rank takes its GPU by
`devices.choose_device` and DDP runs on NCCL, on CPU on gloo.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from galaxalign.config import load_config
from galaxalign.devices import autocast, process_group_backend, resolve_device
from galaxalign.errors import GalaxAlignError
from galaxalign.models.prototypes import class_symbol_bank, class_texts
from galaxalign.morphology.answers import caption, dataset_answers
from galaxalign.progress import progress_bar
from galaxalign.run_config import TrainConfig
from galaxalign.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    Run,
    RunData,
    build_model,
    choose_scoring,
    image_size_of,
    load_run,
    prepare_data,
    save_weights,
    write_config,
    write_summary,
)
from galaxalign.symbols import apparent_radius, fitted_galaxy_symbols
from galaxalign.taxonomy import load_scheme
from galaxalign.training.batches import Batch, BatchBuilder, epoch_order
from galaxalign.training.feature_cache import build_feature_cache
from galaxalign.training.objectives import Objective, Parts
from galaxalign.training.optim import Schedule, make_optimizer, set_learning_rates
from galaxalign.training.state import MetricsLog, TrainState, read_checkpoint

GALAXY_DRAWINGS = 2048  # per-galaxy symbols drawn per run at most (a cache, re-augmented every step)
# Batches whose loss records wait, as device tensors, before one read of them all writes their
# lines to metrics.jsonl (also at every epoch end, checkpoint and validation): reading a loss
# makes the host wait for the device, and the host should run ahead of it.
FLUSH_EVERY = 20


def _distributed(device: torch.device) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend=process_group_backend(device))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _open_config(config: TrainConfig, resume: bool) -> TrainConfig:
    """The config to train with: the run's own on a resume (in the folder where it is now, which may
    have been moved); a second run in one folder is refused."""
    config_path = Path(config.out) / CONFIG_FILE
    if resume:
        if not config_path.exists():
            raise GalaxAlignError(f"{config.out}: nothing to resume (no {CONFIG_FILE})")
        return replace(load_config(TrainConfig, config_path), out=config.out)
    if config_path.exists():
        raise GalaxAlignError(f"{config.out}: a run already exists here; use --resume or another --out")
    return config


class Trainer:
    """One run's training: built from its config and folder, then `fit()`."""

    def __init__(self, config: TrainConfig, resume: bool):
        config = _open_config(config, resume)
        self.device = resolve_device(config.device)  # before any folder is written: a bad device writes nothing
        self.rank, self.world = _distributed(self.device)
        # Checked and applied once a resume has read the run's own config (threads change float sums).
        if config.batch_size % self.world:
            raise GalaxAlignError(
                f"config: batch_size {config.batch_size} must divide evenly over {self.world} processes"
            )
        if config.threads:
            torch.set_num_threads(config.threads)
        self.config, self.run_dir = config, Path(config.out)
        self._barrier()  # every rank has checked the folder before rank 0 writes into it
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.data: RunData = prepare_data(config, self.run_dir, write=self.rank == 0)
        self._barrier()
        self.scheme = load_scheme(config.scheme)
        if config.spec.images:
            self.train_labels = self.data.dataset.labels[self.data.train_indices]
        else:  # no galaxy labels: the same budget of batches, each of class symbols and phrases drawn evenly
            self.train_labels = np.resize(np.arange(len(self.scheme)), len(self.data.train_indices))

        checkpoint_path = self.run_dir / CHECKPOINT_FILE
        checkpoint = read_checkpoint(checkpoint_path) if resume and checkpoint_path.exists() else None
        stage = int(checkpoint["stage"]) if checkpoint else 1
        self.model = build_model(config, len(self.scheme), stage=stage).to(self.device)
        self.size = image_size_of(config, self.model)
        self._build_banks()
        self.state = TrainState(self.model, make_optimizer(self.model, config))
        if checkpoint:
            self.state.restore(checkpoint, checkpoint_path)
        self.log = MetricsLog(self.run_dir / METRICS_FILE, self.state.position, enabled=self.rank == 0)
        if checkpoint:
            self.log.cut_back()
        self.objective = self._wrap()

        self.builder = BatchBuilder(
            self.data.dataset,
            self.data.train_indices,
            self.train_labels,
            self.size,
            self.model.backbone.normalize,
            self.text_owners.cpu(),
            config.symbol_variants,
            config.seed,
            self.galaxy_symbols,
            self.galaxy_text_rows,
            resize=self.model.backbone.resize,
            **self._domain_symbols(),
            unlabelled=self._unlabelled(),
        )
        if config.feature_cache_views:  # every rank builds the same cache: its batches read any galaxy
            self.builder.feature_cache = build_feature_cache(self.model, self.builder, config, self.device)
            self.log.write(self.builder.feature_cache.record())
        # Only once the data opened and the cache was built: bad input must not block a retry.
        if self.rank == 0 and not resume:
            write_config(self.run_dir, config)
        order = epoch_order(self.train_labels, config.batch_size, config.seed, 0, config.balanced)
        self.batches_per_epoch = len(order) // config.batch_size
        steps_per_epoch = math.ceil(self.batches_per_epoch / config.accumulate)
        self.stage2_epoch = config.stage2_epoch
        split_at = self.stage2_epoch
        stage_epochs = (split_at, config.epochs - split_at) if split_at is not None else (config.epochs,)
        self.validated = set(config.validated_epochs())
        self.schedule = Schedule(tuple(e * steps_per_epoch for e in stage_epochs if e), config.warmup_fraction)

    def _build_banks(self) -> None:
        """Every class phrase, tokenised, and every class symbol, on the training device; with
        `symbol_source=galaxy` also each labelled galaxy's own symbol and caption."""
        texts, owners = class_texts(self.scheme)
        self.text_owners = owners.to(self.device)
        self.galaxy_symbols: torch.Tensor | None = None
        self.galaxy_text_rows: np.ndarray | None = None
        if self.config.symbol_source == "galaxy" and self.config.uses_symbols and self.config.spec.images:
            captions = self._draw_galaxies()
            unique = sorted(set(captions))
            row_of = {text: len(texts) + i for i, text in enumerate(unique)}
            texts = [*texts, *unique]
            self.galaxy_text_rows = np.array([row_of[text] for text in captions], dtype=np.int64)
        self.text_tokens = {k: v.to(self.device) for k, v in self.model.backbone.tokenize(texts).items()}
        self.symbols01 = (
            class_symbol_bank(
                self.scheme, self.config.symbol_variants, self.size, self.config.seed, self.config.symbol_source
            )
            if self.config.uses_symbols
            else None
        )
        self.symbols = (
            self.model.backbone.normalize(self.symbols01.flatten(0, 1).to(self.device))
            if self.symbols01 is not None
            else None
        )

    def _unlabelled(self) -> np.ndarray | None:
        """Semi-supervised: the training split's galaxies outside the labelled subset."""
        if not self.config.unlabelled_weight or not self.config.spec.images:
            return None
        return np.setdiff1d(self.data.split.train, self.data.train_indices)

    def _domain_symbols(self) -> dict:
        """With `symbol_source=domain`: the renderer of class drawings as survey images, and each
        labelled galaxy's apparent size, which its sample's symbol takes."""
        if self.config.symbol_source != "domain" or not self.config.uses_symbols or self.symbols01 is None:
            return {}
        try:
            from galaxalign.synth import RENDER_VERSIONS
            from galaxalign.training.domain import DomainSymbols
        except ImportError as exc:
            raise GalaxAlignError(f"config: --symbol-source domain renders with GalSim ({exc})") from None
        dataset = self.data.dataset
        version = dataset.render_version or 1
        grey = self.symbols01.flatten(0, 1).mean(dim=1).numpy()
        domain = DomainSymbols(grey, self.scheme, RENDER_VERSIONS[version].difficulty, version)
        radii = np.array([apparent_radius(dataset[int(i)].image) for i in self.data.train_indices])
        return {"domain": domain, "radii": radii}

    def _draw_galaxies(self) -> list[str]:
        """Each labelled training galaxy's drawings (grey uint8, at its apparent size, upright)
        and caption, from its own answers; up to `symbol_variants` drawings each, at most
        GALAXY_DRAWINGS in all."""
        dataset = self.data.dataset
        answers = dataset_answers(dataset)
        if answers is None:
            raise GalaxAlignError(
                f"{dataset.source}: --symbol-source galaxy needs each galaxy's attributes "
                f"(a Galaxy10-Sim params group, or Galaxy Zoo vote fractions)"
            )
        indices = [int(i) for i in self.data.train_indices]
        mine = [answers[i] for i in indices]
        radii = [apparent_radius(dataset[i].image) for i in indices]
        variants = max(1, min(self.config.symbol_variants, GALAXY_DRAWINGS // max(1, len(mine))))
        drawn = fitted_galaxy_symbols(mine, radii, self.size, variants, seed=self.config.seed)
        self.galaxy_symbols = torch.from_numpy(drawn)
        return [caption(a) for a in mine]

    def _wrap(self) -> nn.Module:
        """The loss module as the loop calls it: under DDP on several processes, compiled if asked.

        Compiling wraps the loss module only: the model's own modules and weight names are
        untouched, so checkpoints and run folders are the same with or without it.
        """
        objective: nn.Module = Objective(
            self.model, self.config, self.text_tokens, self.symbols, self.text_owners, self.state.position.stage
        )
        if dist.is_initialized():  # torchrun's ranks, or a process group its caller made (even of one)
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids, find_unused_parameters=True)
        if self.config.compile:
            # torch.compile of a module returns a module (OptimizedModule); its stubs say a callable.
            objective = cast(nn.Module, torch.compile(objective))
        return objective

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _enter_stage2(self) -> None:
        """Start stage 2 (split off the symbol encoder, or start the head from the prototypes);
        the optimiser is rebuilt over the parameters as they now are."""
        if self.config.spec.splits_symbol_encoder:
            self.model.split_symbol_encoder()
            self.model.to(self.device)
        elif self.config.spec.stage2 == "prototype-head":
            self._init_head_from_prototypes()  # (a "restart" only rebuilds the optimiser, below)
        self.state = TrainState(self.model, make_optimizer(self.model, self.config), self.state.position)
        self.state.position.stage = 2
        self.objective = self._wrap()

    def _init_head_from_prototypes(self, norm_sample: int = 256) -> None:
        """LP-FT's start: the head from the prototypes of stage 1's scoring chosen on validation,
        scaled by the mean projected-feature norm of (up to `norm_sample`) labelled training images.
        Every rank computes the same from the same weights, so DDP replicas stay equal."""
        self.model.eval()
        data, workers = self.data, self.config.workers
        live = Run(self.run_dir, self.config, self.model, self.scheme, symbols01=self.symbols01)
        scoring, _ = choose_scoring(live, data.dataset, data.split.val, self.config.scoring_modes(1), workers=workers)
        chosen = Run(self.run_dir, self.config, self.model, self.scheme, symbols01=self.symbols01, scoring=scoring)
        sample = data.train_indices[:norm_sample]
        features = chosen.embed_dataset(data.dataset, sample, features=True, workers=workers).features
        assert features is not None, "asked for features"
        with torch.no_grad():
            projected = self.model.image_projection(torch.from_numpy(features).to(self.device))
            feature_norm = float(projected.norm(dim=1).mean()) if len(projected) else 1.0
        self.model.init_classifier(chosen.scorer().prototypes(), feature_norm)
        if self.rank == 0:
            self.log.write({"stage": 2, "step": self.state.position.step, "head_from": scoring.name})

    def fit(self, pause_after_steps: int = 0) -> Path:
        config, position = self.config, self.state.position
        bar = progress_bar(
            config.epochs * self.batches_per_epoch,
            initial=position.epoch * self.batches_per_epoch + position.batch,
            disable=self.rank != 0,
            desc=config.method,
            unit="batch",
        )
        started, seen_before = time.perf_counter(), position.seen
        self._bar, self._pending = bar, []
        self._sitting = (started, position.seconds)  # a resumed run's time adds to its earlier sittings'
        self._last_checkpoint = started
        start_epoch, start_batch = position.epoch, position.batch
        for epoch in range(start_epoch, config.epochs):
            if self.stage2_epoch is not None and epoch >= self.stage2_epoch and position.stage == 1:
                self._enter_stage2()
            order = epoch_order(self.train_labels, config.batch_size, config.seed, epoch, config.balanced)
            self.model.train()
            first_batch = start_batch if epoch == start_epoch else 0
            for index, batch in self._epoch_batches(epoch, order, range(first_batch, self.batches_per_epoch)):
                with autocast(self.device, enabled=config.bf16 or self.device.type == "cuda"):
                    loss, parts = self.objective(batch)
                (loss / config.accumulate).backward()
                position.seen += config.batch_size
                stepped = (index + 1) % config.accumulate == 0 or index + 1 == self.batches_per_epoch
                if stepped:
                    self._step()
                rate = (position.seen - seen_before) / (time.perf_counter() - started)
                bar.update(1)
                head = {"epoch": epoch, "step": position.step, "stage": position.stage}
                tail = {"lr": self.state.optimizer.param_groups[0]["lr"], "images_per_s": rate}
                self._pending.append((head, loss.detach(), parts, tail))
                if len(self._pending) >= FLUSH_EVERY:
                    self._flush()
                if stepped and pause_after_steps and position.step >= pause_after_steps:
                    self._checkpoint(epoch, index + 1)
                    bar.close()
                    return self.run_dir
                if stepped and config.checkpoint_every and position.step % config.checkpoint_every == 0:
                    self._checkpoint(epoch, index + 1)
            self._flush()
            if epoch in self.validated:
                self._validate(epoch, bar)
            if epoch + 1 == config.epochs or self._checkpoint_due():
                self._checkpoint(epoch + 1, 0)
            self._barrier()
        bar.close()
        if self.rank == 0:
            self._write_summary()
        self._barrier()
        return self.run_dir

    def _epoch_batches(self, epoch: int, order: np.ndarray, indices: range) -> Iterator[tuple[int, Batch]]:
        """This rank's batches: planned here (every random choice) one by one as the loader asks,
        read by `workers` processes, augmented on the training device. The same batches for any
        worker count, and the same as planning the whole epoch first."""
        local = self.config.batch_size // self.world
        starts = [i * self.config.batch_size + self.rank * local for i in indices]
        stream = self.builder.stream(
            epoch, order, starts, local, self.device, workers=self.config.workers, images=self.config.spec.images
        )
        return zip(indices, stream)

    def _flush(self) -> None:
        """Write the waiting loss records, reading their values from the device in one go; under
        DDP every rank flushes at the same steps, and one all-reduce averages them over ranks."""
        pending: list[tuple[dict, torch.Tensor, Parts, dict]] = self._pending
        if not pending:
            return
        stacked = torch.stack([v.float() for _, loss, parts, _ in pending for v in (loss, *parts.values())])
        if self.world > 1:  # the global batch's values, the mean of the ranks' (a head's loss is local)
            dist.all_reduce(stacked)
            stacked /= self.world
        values = iter(stacked.tolist())
        record: dict = {}
        for head, _, parts, tail in pending:
            record = {**head, "loss": next(values), **{name: next(values) for name in parts}, **tail}
            self.log.write(record)
        self._bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")
        pending.clear()

    def _step(self) -> None:
        position, optimizer = self.state.position, self.state.optimizer
        set_learning_rates(optimizer, self.schedule.factor(position.step))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        position.step += 1

    def _clock(self) -> None:
        started, seconds_before = self._sitting
        self.state.position.seconds = seconds_before + time.perf_counter() - started

    def _checkpoint_due(self) -> bool:
        """End-of-epoch checkpoints are rate-limited: with one-step epochs (1 % of labels) one per
        epoch meant a 200 MB write at every step, about 30 GB per run."""
        return time.perf_counter() - self._last_checkpoint >= 60 * self.config.checkpoint_minutes

    def _checkpoint(self, epoch: int, next_batch: int) -> None:
        self._flush()  # the checkpoint counts the metrics lines it covers
        self._last_checkpoint = time.perf_counter()
        if self.rank == 0:
            self._clock()
            self.state.position.epoch, self.state.position.batch = epoch, next_batch
            self.state.save(self.run_dir / CHECKPOINT_FILE)

    def _validate(self, epoch: int, bar: tqdm) -> None:
        """Validation accuracy of every scoring the method may use; the best one is the epoch's score.

        The best-scoring weights are kept, with their scoring. A two-stage method keeps only
        stage-2 weights (its stage 1 is the `-stage1` method's trajectory), whenever it has a stage 2.
        """
        if self.rank != 0:
            return
        position = self.state.position
        self.model.eval()
        live = Run(self.run_dir, self.config, self.model, self.scheme, symbols01=self.symbols01)
        scoring, by_scoring = choose_scoring(
            live,
            self.data.dataset,
            self.data.split.val,
            self.config.scoring_modes(position.stage),
            workers=self.config.workers,
        )
        val_acc = by_scoring[scoring.name]
        self.log.write(
            {
                "epoch": epoch,
                "step": position.step,
                "stage": position.stage,
                "val_accuracy": val_acc,
                "scoring": scoring.name,
                "val_by_scoring": by_scoring,
            }
        )
        eligible = self.stage2_epoch is None or position.stage == 2
        if (eligible and val_acc > position.best_val) or not (self.run_dir / MODEL_FILE).exists():
            if eligible:
                position.best_val, position.best_stage, position.best_step = val_acc, position.stage, position.step
            save_weights(self.run_dir / MODEL_FILE, self.model, scoring)
        bar.write(
            f"epoch {epoch + 1}/{self.config.epochs}: val accuracy {val_acc:.3f} ({scoring.name}; "
            f"best {max(position.best_val, 0):.3f})"
        )

    def _write_summary(self) -> None:
        """Test accuracy of the best-validation weights: selection on val, report on test; the
        training time of every sitting (a resumed run's included)."""
        self._clock()
        seconds, seen = self.state.position.seconds, self.state.position.seen
        run = load_run(self.run_dir, device=str(self.device))
        test = self.data.split.test
        predicted = run.embed_dataset(
            self.data.dataset, test, modes=(run.scoring,), workers=self.config.workers
        ).predicted[run.scoring]
        write_summary(
            self.run_dir,
            {
                "method": self.config.method,
                "backbone": self.config.backbone,
                "label_fraction": self.config.label_fraction,
                "train_labelled": int(len(self.data.train_indices)),
                "best_val_accuracy": self.state.position.best_val,
                "best_stage": self.state.position.best_stage,
                "best_step": self.state.position.best_step,
                "test_accuracy": _accuracy(predicted, self.data.dataset.labels[test]),
                "test_size": int(len(test)),
                "train_seconds": round(seconds, 1),
                "train_images_per_s": round(seen / seconds, 2) if seconds else None,
                "scoring": run.scoring,
                "fusion_weight": run.fusion_weight if run.scoring == "fusion" else None,
            },
        )


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float((predicted == labels).mean()) if len(labels) else float("nan")


def train(config: TrainConfig, resume: bool = False, pause_after_steps: int = 0) -> Path:
    """Train (or resume) a run; returns the run folder.

    `pause_after_steps` stops after that many optimiser steps in total, leaving a checkpoint that
    `resume=True` continues exactly: for splitting a long run over time-limited cluster jobs.
    """
    return Trainer(config, resume).fit(pause_after_steps)
