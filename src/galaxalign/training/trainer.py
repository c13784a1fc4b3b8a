"""One trainer for every method: supervised, clip, galaxalign-stage1 and galaxalign.

The run folder holds everything needed to load, evaluate or resume the run: `config.json`,
`split.json`, `model.safetensors` (best validation weights), `checkpoint.pt` (latest weights,
optimiser, schedule position and RNG state), `metrics.jsonl` and `summary.json`.
Under `torchrun` it runs DDP: each rank builds its slice of the same global batch and the
contrastive losses all-gather features with gradients.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from galaxalign.config import config_to_dict, load_config
from galaxalign.data import GalaxyDataset, Split, label_fraction, make_split, open_dataset, to_tensor_batch
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path, write_json_atomic, write_text_atomic
from galaxalign.models.backbones import build_backbone
from galaxalign.models.losses import contrastive_loss, gather_features
from galaxalign.models.model import GalaxAlignModel
from galaxalign.models.prototypes import ClassScorer, class_texts, default_scoring, symbol_pixels
from galaxalign.taxonomy import load_scheme
from galaxalign.training.batches import Batch, BatchBuilder, epoch_order
from galaxalign.training.config import TrainConfig

CONFIG_FILE, SPLIT_FILE, MODEL_FILE = "config.json", "split.json", "model.safetensors"
CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE = "checkpoint.pt", "metrics.jsonl", "summary.json"


# ------------------------------------------------------------------ model assembly


def build_model(config: TrainConfig, n_classes: int, stage: int = 1) -> GalaxAlignModel:
    """The model of a run, at a given stage, with the run's seed for fresh weights."""
    torch.manual_seed(config.seed)
    backbone = build_backbone(config.backbone)
    model = GalaxAlignModel(backbone, embed_dim=config.embed_dim, num_classes=n_classes if config.method == "supervised" else 0)
    if stage == 2:
        model.split_symbol_encoder()
    return model


def image_size_of(config: TrainConfig, model: GalaxAlignModel) -> int:
    return config.image_size or model.backbone.image_size


def _tower_groups(blocks: list[nn.Module], trainable_blocks: int, lr: float, layer_decay: float, tag: str) -> list[dict]:
    """Freeze all but the top `trainable_blocks` blocks; give each trained block a decayed lr."""
    for block in blocks:
        block.requires_grad_(False)
    chosen = blocks if trainable_blocks == -1 else blocks[len(blocks) - trainable_blocks :] if trainable_blocks else []
    groups = []
    for depth_from_top, block in enumerate(reversed(chosen)):
        block.requires_grad_(True)
        params = [p for p in block.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "base_lr": lr * layer_decay**depth_from_top, "name": f"{tag}{depth_from_top}"})
    return groups


def parameter_groups(model: GalaxAlignModel, config: TrainConfig) -> list[dict]:
    """Optimiser groups: decayed backbone blocks, then heads and temperature at head_lr."""
    backbone = model.backbone
    groups = _tower_groups(backbone.image_blocks(), config.trainable_blocks, config.lr, config.layer_decay, "image")
    if config.uses_text:
        groups += _tower_groups(backbone.text_blocks(), config.trainable_blocks, config.lr, config.layer_decay, "text")
    else:
        model.text_encoder.requires_grad_(False)
    if model.symbol_encoder is not None:
        groups += _tower_groups(_symbol_blocks(model), config.trainable_blocks, config.lr, config.layer_decay, "symbol")
    heads = [model.logit_scale]
    for head in (model.image_projection, model.text_projection, model.symbol_projection, model.classifier):
        if head is not None:
            head.requires_grad_(True)
            heads += list(head.parameters())
    if not config.uses_text:
        model.text_projection.requires_grad_(False)
        model.logit_scale.requires_grad_(False)
        heads = [p for p in heads if p.requires_grad]
    groups.append({"params": heads, "base_lr": config.head_lr, "name": "heads", "weight_decay": 0.0})
    return groups


def _symbol_blocks(model: GalaxAlignModel) -> list[nn.Module]:
    """The symbol encoder's blocks, matched by position to the image encoder's."""
    image_modules = dict(model.image_encoder.named_modules())
    symbol_modules = dict(model.symbol_encoder.named_modules())
    names = {id(module): name for name, module in image_modules.items()}
    return [symbol_modules[names[id(block)]] for block in model.backbone.image_blocks()]


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ------------------------------------------------------------------ the loss of one batch


class LossModule(nn.Module):
    """Wraps the model so that DDP sees one forward returning the method's loss."""

    def __init__(self, model: GalaxAlignModel, config: TrainConfig, text_tokens: dict, symbols: torch.Tensor | None):
        super().__init__()
        self.model, self.config = model, config
        self.text_tokens = text_tokens
        self.symbols = symbols  # (C*V, 3, S, S), normalised

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        model, config = self.model, self.config
        if config.method == "supervised":
            loss = F.cross_entropy(model.classify_features(model.image_features(batch.pixels)), batch.labels)
            return loss, {"ce": loss.item()}
        labels = gather_features(batch.labels) if config.targets == "multi" else None
        image = gather_features(model.encode_image(batch.pixels))
        text = gather_features(self._rows(batch.text_rows, self._encode_texts))
        parts = {"image_text": (config.w_image_text, contrastive_loss(image, text, model.logit_scale, labels))}
        if config.uses_symbols:
            symbol = gather_features(self._rows(batch.symbol_rows, lambda rows: model.encode_symbol(self.symbols[rows])))
            parts["symbol_text"] = (config.w_symbol_text, contrastive_loss(symbol, text, model.logit_scale, labels))
            if model.has_separate_symbol_encoder:
                parts["image_symbol"] = (config.w_image_symbol, contrastive_loss(image, symbol, model.logit_scale, labels))
        loss = sum(weight * value for weight, value in parts.values())
        return loss, {name: value.item() for name, (_, value) in parts.items()}

    def _encode_texts(self, rows: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(self.text_tokens["input_ids"][rows], self.text_tokens["attention_mask"][rows])

    @staticmethod
    def _rows(rows: torch.Tensor, encode) -> torch.Tensor:
        """Encode each distinct row once, then expand back to one row per sample."""
        unique, inverse = torch.unique(rows, return_inverse=True)
        return encode(unique)[inverse]


# ------------------------------------------------------------------ run folder


@dataclass
class RunData:
    dataset: GalaxyDataset
    split: Split
    train_indices: np.ndarray  # labelled subset of the training split


def prepare_data(config: TrainConfig, run_dir: Path, write: bool) -> RunData:
    scheme = load_scheme(config.scheme)
    dataset = open_dataset(config.data, scheme=scheme)
    labels = dataset.labels
    split_path = run_dir / SPLIT_FILE
    if split_path.exists():
        split = Split.load(split_path)
    elif config.split_file:
        split = Split.load(config.split_file)
    else:
        split = make_split(labels, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed)
    split.check_labels(labels, where=str(split_path if split_path.exists() else config.split_file or config.data))
    if write and not split_path.exists():
        split.save(split_path)
    train = label_fraction(split.train, labels, config.label_fraction, config.seed)
    return RunData(dataset=dataset, split=split, train_indices=np.asarray(train))


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _save_checkpoint(path: Path, model: GalaxAlignModel, optimizer, state: dict) -> None:
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


CHECKPOINT_KEYS = ("model", "optimizer", "torch_rng", "step", "epoch", "batch", "stage", "best_val")


def _load_checkpoint(path: Path) -> dict:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign files surface as many exception types
        raise GalaxAlignError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise GalaxAlignError(f"{path}: not a GalaxAlign checkpoint (lacks {', '.join(missing)})")
    return checkpoint


def save_weights(path: Path, model: GalaxAlignModel) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _keep_metrics(path: Path, lines: int) -> None:
    """Cut metrics.jsonl back to the lines written before the checkpoint a resume starts from.

    Steps redone after a crash would otherwise appear twice, and a kill mid-write leaves a
    partial last line.
    """
    if path.exists():
        write_text_atomic(path, "".join(path.read_text().splitlines(keepends=True)[:lines]))


@torch.no_grad()
def predict_logits(scorer: ClassScorer, dataset: GalaxyDataset, indices: np.ndarray, size: int, normalize, batch_size: int = 64) -> torch.Tensor:
    """Class logits for dataset[indices], unaugmented."""
    out = []
    for start in range(0, len(indices), batch_size):
        images = [dataset[int(i)].image for i in indices[start : start + batch_size]]
        out.append(scorer.logits(normalize(to_tensor_batch(images, size))))
    return torch.cat(out) if out else torch.zeros(0, 0)


def _accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    return float((logits.argmax(1).numpy() == labels).mean()) if len(labels) else float("nan")


# ------------------------------------------------------------------ the loop


def train(config: TrainConfig, resume: bool = False, progress: bool = True, pause_after_steps: int = 0) -> Path:
    """Train (or resume) a run; returns the run folder.

    `pause_after_steps` stops after that many optimiser steps in total, leaving a checkpoint that
    `resume=True` continues exactly: for splitting a long run over time-limited cluster jobs.
    """
    rank, world = _distributed()
    run_dir = Path(config.out)
    config_path = run_dir / CONFIG_FILE
    if resume:
        if not config_path.exists():
            raise GalaxAlignError(f"{run_dir}: nothing to resume (no {CONFIG_FILE})")
        config = load_config(TrainConfig, config_path)
    elif config_path.exists():
        raise GalaxAlignError(f"{run_dir}: a run already exists here; use --resume or another --out")
    # Checked and applied once a resume has read the run's own config (threads change float sums).
    if config.batch_size % world:
        raise GalaxAlignError(f"config: batch_size {config.batch_size} must divide evenly over {world} processes")
    if config.threads:
        torch.set_num_threads(config.threads)
    if world > 1:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(config, run_dir, write=rank == 0)
    if rank == 0 and not resume:  # only once the data opened: a bad --data must not block a retry in --out
        write_json_atomic(config_path, config_to_dict(config))
    if world > 1:
        dist.barrier()
    scheme = load_scheme(config.scheme)
    labels_all = data.dataset.labels
    train_labels = labels_all[data.train_indices]

    checkpoint = _load_checkpoint(run_dir / CHECKPOINT_FILE) if resume and (run_dir / CHECKPOINT_FILE).exists() else None
    stage = int(checkpoint["stage"]) if checkpoint else 1
    model = build_model(config, len(scheme), stage=stage)
    size = image_size_of(config, model)
    normalize = model.backbone.normalize

    texts, text_owners = class_texts(scheme)
    text_tokens = model.backbone.tokenize(texts)
    symbols01 = symbol_pixels(scheme, config.symbol_variants, size, seed=config.seed) if config.uses_symbols else None
    symbols = normalize(symbols01.flatten(0, 1)) if symbols01 is not None else None

    builder = BatchBuilder(data.dataset, data.train_indices, train_labels, size, normalize, text_owners, config.symbol_variants, config.seed)
    batches_per_epoch = len(epoch_order(train_labels, config.batch_size, config.seed, 0, config.balanced)) // config.batch_size
    total_steps = config.epochs * math.ceil(batches_per_epoch / config.accumulate)
    warmup = int(config.warmup_fraction * total_steps)
    stage2_epoch = round(config.epochs * config.stage1_fraction) if config.method == "galaxalign" else None

    def make_optimizer():
        return torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)

    def wrap():
        module = LossModule(model, config, text_tokens, symbols)
        return nn.parallel.DistributedDataParallel(module, find_unused_parameters=True) if world > 1 else module

    optimizer = make_optimizer()
    step, start_epoch, start_batch, best_val, metrics_lines = 0, 0, 0, -1.0, 0
    if checkpoint:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # another run's checkpoint, or a damaged one
            problem = str(exc).splitlines()[0]
            raise GalaxAlignError(f"{run_dir / CHECKPOINT_FILE}: does not fit this run's config ({problem})") from None
        step, start_epoch, start_batch = int(checkpoint["step"]), int(checkpoint["epoch"]), int(checkpoint["batch"])
        best_val = float(checkpoint["best_val"])
        torch.set_rng_state(checkpoint["torch_rng"])
        metrics_lines = int(checkpoint.get("metrics_lines", -1))
        if rank == 0 and metrics_lines >= 0:
            _keep_metrics(run_dir / METRICS_FILE, metrics_lines)
    loss_module = wrap()

    def checkpoint_now(epoch: int, next_batch: int) -> None:
        if rank == 0:
            _save_checkpoint(run_dir / CHECKPOINT_FILE, model, optimizer,
                             {"step": step, "epoch": epoch, "batch": next_batch, "stage": stage, "best_val": best_val,
                              "metrics_lines": metrics_lines})

    scoring = default_scoring(config.method)
    metrics_path = run_dir / METRICS_FILE

    def log(record: dict) -> None:
        """One metrics line, counted so a checkpoint knows how much of the log it covers."""
        nonlocal metrics_lines
        _append_metrics(metrics_path, record)
        metrics_lines += 1
    local = config.batch_size // world
    autocast = torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16, enabled=config.bf16)
    bar = tqdm(total=config.epochs * batches_per_epoch, initial=start_epoch * batches_per_epoch + start_batch,
               disable=not progress or rank != 0, desc=config.method, unit="batch", dynamic_ncols=True)
    started, seen = time.perf_counter(), 0

    for epoch in range(start_epoch, config.epochs):
        if stage2_epoch is not None and epoch >= stage2_epoch and not model.has_separate_symbol_encoder:
            model.split_symbol_encoder()
            stage = 2
            optimizer = make_optimizer()
            loss_module = wrap()
        order = epoch_order(train_labels, config.batch_size, config.seed, epoch, config.balanced)
        model.train()
        for index in range(start_batch if epoch == start_epoch else 0, batches_per_epoch):
            first = index * config.batch_size + rank * local
            batch = builder.build(epoch, order, range(first, first + local))
            with autocast:
                loss, parts = loss_module(batch)
            (loss / config.accumulate).backward()
            seen += config.batch_size
            stepped = (index + 1) % config.accumulate == 0 or index + 1 == batches_per_epoch
            if stepped:
                factor = lr_factor(step, total_steps, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                step += 1
            rate = seen / (time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", img_s=f"{rate:.1f}")
            if rank == 0:
                log({"epoch": epoch, "step": step, "stage": stage, "loss": loss.item(),
                     **parts, "lr": optimizer.param_groups[0]["lr"], "images_per_s": rate})
            if stepped and pause_after_steps and step >= pause_after_steps:
                checkpoint_now(epoch, index + 1)
                bar.close()
                return run_dir
            if stepped and config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint_now(epoch, index + 1)
        validate = (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs
        if rank == 0 and validate:
            model.eval()
            scorer = ClassScorer(model, scheme, scoring, symbols01)
            val_acc = _accuracy(predict_logits(scorer, data.dataset, data.split.val, size, normalize), labels_all[data.split.val])
            log({"epoch": epoch, "step": step, "stage": stage, "val_accuracy": val_acc})
            if val_acc > best_val or not (run_dir / MODEL_FILE).exists():
                best_val = max(best_val, val_acc)
                save_weights(run_dir / MODEL_FILE, model)
            bar.write(f"epoch {epoch + 1}/{config.epochs}: val accuracy {val_acc:.3f} (best {best_val:.3f})")
        checkpoint_now(epoch + 1, 0)
        if world > 1:
            dist.barrier()
    bar.close()
    if rank == 0:
        _write_summary(run_dir, config, data, time.perf_counter() - started, seen, best_val)
    if world > 1:
        dist.barrier()
    return run_dir


def init_run(config: TrainConfig) -> Path:
    """A run folder holding the model as built, untrained: the zero-shot and frozen-feature rows."""
    run_dir = Path(config.out)
    if (run_dir / CONFIG_FILE).exists():
        raise GalaxAlignError(f"{run_dir}: a run already exists here")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CONFIG_FILE, config_to_dict(config))
    prepare_data(config, run_dir, write=True)
    save_weights(run_dir / MODEL_FILE, build_model(config, len(load_scheme(config.scheme))))
    return run_dir


def _write_summary(run_dir: Path, config: TrainConfig, data: RunData, seconds: float, seen: int, best_val: float) -> None:
    """Test accuracy of the best-validation weights: selection on val, report on test."""
    from galaxalign.runs import load_run  # the public loader rebuilds the model from the folder alone

    run = load_run(run_dir)
    test = data.split.test
    logits = predict_logits(run.scorer(), data.dataset, test, run.image_size, run.model.backbone.normalize)
    summary = {
        "method": config.method,
        "backbone": config.backbone,
        "label_fraction": config.label_fraction,
        "train_labelled": int(len(data.train_indices)),
        "best_val_accuracy": best_val,
        "test_accuracy": _accuracy(logits, data.dataset.labels[test]),
        "test_size": int(len(test)),
        "train_seconds": round(seconds, 1),
        "train_images_per_s": round(seen / seconds, 2) if seconds else None,
        "scoring": run.scoring,
    }
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
