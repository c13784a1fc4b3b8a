"""Training throughput: the real trainer against a plain PyTorch loop over the same model and data.

Both sides train the `packaged` backbone (DINOv2 ViT-S/14 + MiniLM) at the same batch size,
image size, trainable blocks and optimiser groups, reading the same Galaxy10-layout h5 (random
pixels: content does not change the cost) and augmenting with the same `GalaxyAugment`. The
trainer reads each sample and draws its randomness alone (seeded per sample, so batches are
reproducible under DDP and resume), then resamples the batch in one call; the plain loop reads
the batch's images in a loop (h5py fancy indexing of 32 rows took 0.7 s, the loop 4 ms),
draws one generator's worth of augmentation and resamples in one call. `galaxalign` runs stage 1 (symbols through the image encoder,
image-text and symbol-text losses) on both sides, encoding each distinct text/symbol once.

Only steady-state steps count: the trainer's own clock (`images_per_s` in metrics.jsonl, which
is seen / elapsed) gives each step's end time, so model loading, symbol rendering and the
final checkpoint stay outside, and the first `warmup` steps of both sides are dropped. Each side
counts its median step (on shared cores single steps swing by +-30 %); the two sides alternate
(which goes first flips each repeat), and the median of `repeats` pairs is reported.
Target: trainer / plain time <= 1.10.

Each row also times batch planning at Galaxy10 DECaLS's size (a 14,080-sample training epoch at
the row's batch size, the same h5 cycled): planning the whole epoch before the first batch, as
the trainer did, against the lazy plan it uses now (the first batch planned, read and augmented,
the rest planned as the loader asks), both in the same run; and the trainer's steps/s.
Run `python benchmarks/bench_train.py [--repeats 3] [--steps 6] [--methods supervised,galaxalign]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from galaxalign.data import GalaxyAugment, open_dataset
from galaxalign.models.backbones import IMAGENET_MEAN, IMAGENET_STD, normalize_pixels
from galaxalign.models.losses import contrastive_loss
from galaxalign.models.prototypes import class_texts, symbol_pixels
from galaxalign.runs import build_model
from galaxalign.taxonomy import load_scheme
from galaxalign.training import TrainConfig, train
from galaxalign.training.batches import BatchBuilder, epoch_order
from galaxalign.training.optim import parameter_groups

TITLE = "Training throughput: trainer vs plain PyTorch loop, packaged backbone (steady state, median of pairs)"
TARGET = 1.10


def write_h5(path: Path, n: int, size: int = 256, seed: int = 0) -> None:
    """A Galaxy10-layout file of n random images, classes 0-9 in turn, one chunk per image."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, size, size, 3), np.uint8, chunks=(1, size, size, 3))
        for i in range(n):
            images[i] = rng.integers(0, 256, (size, size, 3), np.uint8)
        f["ans"] = np.arange(n) % 10


def trainer_step_times(config: TrainConfig, steps: int) -> list[float]:
    """Seconds per optimiser step of `train`, read from its metrics (steps end at seen / rate)."""
    run_dir = train(config, pause_after_steps=steps)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_s"] for r in records if "loss" in r]
    ends = [(i + 1) * config.batch_size / rate for i, rate in enumerate(rates)]
    return [b - a for a, b in zip([0.0, *ends], ends)]


def plain_step_times(config: TrainConfig, steps: int) -> list[float]:
    """The same training as a bare loop: batch read, one augment call, forward, backward, AdamW."""
    scheme = load_scheme(config.scheme)
    model = build_model(config, len(scheme))
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"]
    size, normalize = config.image_size, model.backbone.normalize
    augment = GalaxyAugment(size)
    if config.uses_text:
        texts, owners = class_texts(scheme)
        tokens = model.backbone.tokenize(texts)
        by_class = [torch.nonzero(owners == c).flatten() for c in range(len(scheme))]
        symbols = normalize(symbol_pixels(scheme, config.symbol_variants, size, seed=config.seed).flatten(0, 1))
    rng = np.random.default_rng(config.seed)
    model.train()
    times = []
    with h5py.File(config.data, "r") as f:
        all_labels = f["ans"][()]
        for _ in range(steps):
            start = time.perf_counter()
            labels, pixels = plain_batch(f, all_labels, rng, config.batch_size, augment, normalize)
            if config.uses_text:
                text_rows = torch.stack([by_class[c][rng.integers(len(by_class[c]))] for c in labels.tolist()])
                symbol_rows = labels * config.symbol_variants + torch.from_numpy(
                    rng.integers(config.symbol_variants, size=len(labels))
                )
                image = model.encode_image(pixels)
                text = unique_rows(
                    text_rows, lambda r: model.encode_text(tokens["input_ids"][r], tokens["attention_mask"][r])
                )
                symbol = unique_rows(symbol_rows, lambda r: model.encode_symbol(symbols[r]))
                loss = contrastive_loss(image, text, model.logit_scale, labels) + contrastive_loss(
                    symbol, text, model.logit_scale, labels
                )
            else:
                loss = F.cross_entropy(model.classify_features(model.image_features(pixels)), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
    return times


def plain_batch(
    f: h5py.File, all_labels: np.ndarray, rng: np.random.Generator, batch_size: int, augment, normalize
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and model input of a random batch: images read in a loop, augmented in one call.

    `all_labels` is the file's label column, read once by the caller.
    """
    index = np.sort(rng.choice(len(all_labels), batch_size, replace=False))
    batch = np.stack([f["images"][i] for i in index])  # h5py fancy indexing, images[index], is ~100x slower
    return torch.from_numpy(all_labels[index]).long(), normalize(augment(torch.from_numpy(batch).permute(0, 3, 1, 2)))


def input_ms(config: TrainConfig, batches: int = 12) -> tuple[float, float]:
    """Median ms per batch of the trainer's BatchBuilder and of `plain_batch`, called alternately.

    Whole-loop steps swing by tens of percent on shared cores, too much to show a 1 % difference;
    the batch input is the only per-step work the trainer does beyond the plain loop (besides an
    lr update and a metrics line), so this pins its cost down.
    """
    scheme = load_scheme(config.scheme)
    dataset = open_dataset(config.data, scheme=scheme)

    def normalize(pixels: torch.Tensor) -> torch.Tensor:  # the packaged backbone's, without building it
        return normalize_pixels(pixels, IMAGENET_MEAN, IMAGENET_STD)

    builder = BatchBuilder(
        dataset,
        np.arange(len(dataset)),
        dataset.labels,
        config.image_size,
        normalize,
        class_texts(scheme)[1],
        config.symbol_variants,
        config.seed,
    )
    order = epoch_order(dataset.labels, config.batch_size, config.seed, 0, config.balanced)
    augment, rng = GalaxyAugment(config.image_size), np.random.default_rng(config.seed)
    times: dict[str, list[float]] = {"trainer": [], "plain": []}
    with h5py.File(config.data, "r") as f:
        all_labels = f["ans"][()]
        for i in range(batches):
            first = i % (len(order) // config.batch_size) * config.batch_size
            for name, build in (
                ("trainer", lambda: builder.build(0, order, range(first, first + config.batch_size))),
                ("plain", lambda: plain_batch(f, all_labels, rng, config.batch_size, augment, normalize)),
            ):
                start = time.perf_counter()
                build()
                times[name].append(time.perf_counter() - start)
    return 1000 * statistics.median(times["trainer"]), 1000 * statistics.median(times["plain"])


def planning_seconds(config: TrainConfig, epoch_samples: int = 14_080) -> tuple[float, float]:
    """Seconds before the first batch of an `epoch_samples` epoch: planning every batch first (as
    the trainer did) and the lazy stream's first batch (planned, read, augmented)."""
    scheme = load_scheme(config.scheme)
    dataset = open_dataset(config.data, scheme=scheme)
    indices = np.resize(np.arange(len(dataset)), epoch_samples)
    labels = dataset.labels[indices]

    def normalize(pixels: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(pixels, IMAGENET_MEAN, IMAGENET_STD)

    owners = class_texts(scheme)[1]
    builder = BatchBuilder(
        dataset, indices, labels, config.image_size, normalize, owners, config.symbol_variants, config.seed
    )
    b = config.batch_size
    order = epoch_order(labels, b, config.seed, 0, config.balanced)
    starts = list(range(0, len(order), b))
    start = time.perf_counter()
    eager = [builder.plan(0, order, range(first, first + b)) for first in starts]
    eager_s = time.perf_counter() - start
    start = time.perf_counter()
    stream = builder.stream(0, order, starts, b, torch.device("cpu"))
    first = next(stream)
    lazy_s = time.perf_counter() - start
    stream.close()
    assert first.labels.tolist() == eager[0].labels  # the same first batch
    return eager_s, lazy_s


def unique_rows(rows: torch.Tensor, encode) -> torch.Tensor:
    unique, inverse = torch.unique(rows, return_inverse=True)
    return encode(unique)[inverse]


def run(
    methods=("supervised", "galaxalign"),
    images: int = 512,
    image_size: int = 112,
    steps: int = 6,
    warmup: int = 1,
    repeats: int = 3,
) -> list[dict]:
    """One row per method: trainer and plain images/s at the median step (median of pairs), and the
    median of the pairs' step-time ratios.

    Batch size, trainable blocks and symbol variants are TrainConfig's defaults.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bench.h5"
        write_h5(data, images)
        for method in methods:
            trainer_rates, plain_rates, ratios = [], [], []
            for repeat in range(repeats):
                config = TrainConfig(
                    data=str(data),
                    out=f"{tmp}/{method}{repeat}",
                    method=method,
                    backbone="packaged",
                    epochs=1,
                    image_size=image_size,
                    stage1_fraction=1.0,
                    val_fraction=0.05,
                    test_fraction=0.05,
                )
                sides = [("trainer", trainer_step_times), ("plain", plain_step_times)]
                measured = {
                    name: statistics.median(fn(config, steps)[warmup:])
                    for name, fn in sides[:: 1 if repeat % 2 == 0 else -1]
                }
                trainer_rates.append(config.batch_size / measured["trainer"])
                plain_rates.append(config.batch_size / measured["plain"])
                ratios.append(measured["trainer"] / measured["plain"])
            ratio = statistics.median(ratios)
            trainer_input, plain_input = input_ms(config)
            trainer_step_s = config.batch_size / statistics.median(trainer_rates)
            eager_s, lazy_s = planning_seconds(config)
            rows.append(
                {
                    "method": method,
                    "batch": config.batch_size,
                    "px": image_size,
                    "trainable blocks": config.trainable_blocks,
                    "timed steps/side": steps - warmup,
                    "trainer img/s": statistics.median(trainer_rates),
                    "plain img/s": statistics.median(plain_rates),
                    "overhead (trainer/plain time)": ratio,
                    "ratios": " ".join(f"{r:.3f}" for r in ratios),
                    f"<= {TARGET}": "met" if ratio <= TARGET else "missed",
                    "input ms/batch trainer": trainer_input,
                    "input ms/batch plain": plain_input,
                    "input extra, % of step": 100 * (trainer_input - plain_input) / 1000 / trainer_step_s,
                    "trainer steps/s": 1 / trainer_step_s,
                    "epoch planned first s (before)": eager_s,
                    "first batch, planned lazily s (after)": lazy_s,
                }
            )
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from run import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="supervised,galaxalign", help="comma-separated methods")
    parser.add_argument("--steps", type=int, default=6, help="steps per side, the first dropped")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of sides; the median is reported")
    args = parser.parse_args()
    methods = tuple(m for m in args.methods.split(",") if m)
    print(f"{TITLE}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(markdown_table(run(methods, steps=args.steps, repeats=args.repeats)))
