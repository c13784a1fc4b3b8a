"""A run: its folder, how it is built, and how a trained one is used (classify, embed).

Everything about a run folder lives here: the file names, building the model of a config,
preparing its data and split, writing weights, and `load_run`, which rebuilds a run from its
folder alone. The trainer writes runs through this module; evaluation, search, the jobs, the
report and the web app read them through it. Nothing outside this module spells a file name.

A run folder is self-contained: a backbone that cannot be rebuilt from its name alone (an `hf:`
CLIP, whose checkpoint folder may be relative, elsewhere, or gone) leaves the files that rebuild
its architecture in `backbone/` beside the weights, and `load_run` builds from those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from galaxalign.config import config_to_dict, load_config, option, required
from galaxalign.data import GalaxyDataset, Split, label_fraction, load_image, make_split, open_dataset
from galaxalign.data.augment import to_tensor_batch
from galaxalign.data.loader import image_batches, index_batches
from galaxalign.devices import DEVICE_HELP, autocast, check_device_name, resolve_device
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path, read_json, write_json_atomic
from galaxalign.models.backbones import build_backbone, rebuild_backbone
from galaxalign.models.model import GalaxAlignModel
from galaxalign.models.prototypes import FUSION_WEIGHTS, SCORING_MODES, ClassScorer, class_symbol_bank, fuse
from galaxalign.progress import progress_bar
from galaxalign.run_config import TrainConfig
from galaxalign.taxonomy import Scheme, load_scheme

CONFIG_FILE, SPLIT_FILE, MODEL_FILE = "config.json", "split.json", "model.safetensors"
CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE = "checkpoint.pt", "metrics.jsonl", "summary.json"
EVAL_METRICS_FILE, PREDICTIONS_FILE, CONFUSION_FILE = "metrics.json", "predictions.csv", "confusion.png"
FEATURES_FILE = "features.npy"  # an evaluation's image-tower features, in predictions order
BACKBONE_DIR = "backbone"  # files that rebuild the backbone's architecture (no weights), when it has any

ImageLike = np.ndarray | str | Path


# ------------------------------------------------------------------ the folder


def eval_dir(run_dir: str | Path, split: str = "test") -> Path:
    """Where `evaluate` writes a split's metrics, predictions and confusion matrix by default."""
    return Path(run_dir) / f"eval-{split}"


def read_config(run_dir: str | Path) -> TrainConfig:
    return load_config(TrainConfig, Path(run_dir) / CONFIG_FILE)


def read_summary(run_dir: str | Path) -> dict:
    """The summary the trainer writes when a run finishes (test accuracy, time, best stage)."""
    return read_json(Path(run_dir) / SUMMARY_FILE, "run summary")


def read_eval_metrics(run_dir: str | Path, split: str = "test") -> dict:
    return read_json(eval_dir(run_dir, split) / EVAL_METRICS_FILE, "evaluation metrics file")


def is_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SUMMARY_FILE).exists()


def is_evaluated(run_dir: str | Path, split: str = "test") -> bool:
    return (eval_dir(run_dir, split) / EVAL_METRICS_FILE).exists()


def build_model(config: TrainConfig, n_classes: int, stage: int = 1, run_dir: Path | None = None) -> GalaxAlignModel:
    """The model of a run, at a given stage, with the run's seed for fresh weights.

    With `run_dir` (whose weights are loaded next), the backbone is rebuilt from the files the
    folder carries, when it has them, instead of from its original checkpoint.
    """
    torch.manual_seed(config.seed)
    carried = Path(run_dir) / BACKBONE_DIR if run_dir is not None else None
    if carried is not None and carried.is_dir():
        backbone = rebuild_backbone(config.backbone, carried, **_size_option(config))
    else:
        options = _size_option(config)
        if config.allow_missing_weights:
            options["allow_missing_weights"] = True
        backbone = build_backbone(config.backbone, **options)
    model = GalaxAlignModel(backbone, embed_dim=config.embed_dim, num_classes=n_classes if config.spec.head else 0)
    if stage == 2 and config.spec.splits_symbol_encoder:
        model.split_symbol_encoder()
    return model


def _size_option(config: TrainConfig) -> dict:
    """The run's --image-size for the factory (open_clip sizes its position table from it)."""
    return {"image_size": config.image_size} if config.image_size else {}


def image_size_of(config: TrainConfig, model: GalaxAlignModel) -> int:
    return config.image_size or model.backbone.image_size


@dataclass(frozen=True)
class Scoring:
    """How a run classifies: a mode, and for fusion the text share; chosen on validation, saved with the weights."""

    mode: str
    fusion_weight: float = 0.5

    @property
    def name(self) -> str:
        return f"fusion@{self.fusion_weight:g}" if self.mode == "fusion" else self.mode


def save_weights(path: Path, model: GalaxAlignModel, scoring: Scoring | None = None) -> None:
    """Device-independent safetensors weights (a run trained on a GPU loads on a CPU-only machine),
    with the scoring chosen on validation in the file's metadata, so the two cannot drift apart.

    The first save also writes the backbone's rebuild files (`BACKBONE_DIR`) beside them."""
    carried = path.parent / BACKBONE_DIR
    if model.backbone.carries_files and not carried.is_dir():
        model.backbone.save_files(carried)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "pt"}
    if scoring is not None:
        metadata |= {"scoring": scoring.mode, "fusion_weight": repr(scoring.fusion_weight)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def _saved_scoring(path: Path, config: TrainConfig) -> Scoring:
    """The scoring stored with the weights; the method's first choice for runs saved before there was one."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("scoring") in SCORING_MODES:
        try:
            return Scoring(metadata["scoring"], float(metadata.get("fusion_weight", 0.5)))
        except ValueError:
            raise GalaxAlignError(f"{path}: unreadable fusion weight {metadata.get('fusion_weight')!r}") from None
    return Scoring(config.spec.scoring[0])


@dataclass
class RunData:
    dataset: GalaxyDataset
    split: Split
    train_indices: np.ndarray  # labelled subset of the training split


def prepare_data(config: TrainConfig, run_dir: Path, write: bool) -> RunData:
    """The run's dataset, its split (the folder's, a given file's, or a new one) and labelled subset."""
    scheme = load_scheme(config.scheme)
    dataset = open_dataset(config.data, scheme=scheme)
    labels = dataset.labels
    split_path = run_dir / SPLIT_FILE
    if split_path.exists():
        split = Split.load(split_path)
    elif config.split_file:
        split = Split.load(config.split_file)
    else:
        split = make_split(
            labels, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed
        )
    split.check_labels(labels, where=str(split_path if split_path.exists() else config.split_file or config.data))
    if write and not split_path.exists():
        split.save(split_path)
    train = label_fraction(split.train, labels, config.label_fraction, config.seed)
    return RunData(dataset=dataset, split=split, train_indices=np.asarray(train))


def load_split(run_dir: str | Path) -> Split:
    return Split.load(Path(run_dir) / SPLIT_FILE)


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json_atomic(run_dir / CONFIG_FILE, config_to_dict(config))


def init_run(config: TrainConfig) -> Path:
    """A run folder holding the model as built, untrained: the zero-shot and frozen-feature rows."""
    run_dir = Path(config.out)
    if (run_dir / CONFIG_FILE).exists():
        raise GalaxAlignError(f"{run_dir}: a run already exists here")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    prepare_data(config, run_dir, write=True)
    save_weights(run_dir / MODEL_FILE, build_model(config, len(load_scheme(config.scheme))))
    return run_dir


def write_summary(run_dir: Path, record: dict) -> None:
    write_json_atomic(run_dir / SUMMARY_FILE, record)


# ------------------------------------------------------------------ a run in use


@dataclass
class Embedded:
    """What one pass of a run over galaxies gave: unit embeddings, optional features, predictions."""

    indices: np.ndarray
    embeddings: np.ndarray  # (N, D) in the shared space
    features: np.ndarray | None = None  # (N, F) pooled image-tower features, when asked for
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # class per scoring mode asked for


class Run:
    """A GalaxAlign model with its scheme, preprocessing and default scoring.

    Built by `load_run` from a folder, or by the trainer around the model it is training (then
    the scorers see the weights as they are at each validation).
    """

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        model: GalaxAlignModel,
        scheme: Scheme,
        symbols01: torch.Tensor | None = None,
        scoring: Scoring | None = None,
    ):
        self.run_dir, self.config, self.model, self.scheme = Path(run_dir), config, model, scheme
        self.image_size = image_size_of(config, model)
        chosen = scoring or Scoring(config.spec.scoring[0])
        self.scoring, self.fusion_weight = chosen.mode, chosen.fusion_weight
        self._scorers: dict[str, ClassScorer] = {}
        if symbols01 is not None:
            self.__dict__["symbols01"] = symbols01  # the trainer's copy: no second rendering

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def fingerprint(self) -> str:
        """SHA256 of the weights file: ties search indexes to the run that embedded them."""
        digest = hashlib.sha256()
        with open(self.run_dir / MODEL_FILE, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    @cached_property
    def symbols01(self) -> torch.Tensor:
        config = self.config
        return class_symbol_bank(
            self.scheme, config.symbol_variants, self.image_size, config.seed, config.symbol_source
        )

    def scorer(self, mode: str | None = None) -> ClassScorer:
        mode = mode or self.scoring
        if mode not in self._scorers:
            needs_symbols = mode in ("symbol", "fusion")
            try:
                self._scorers[mode] = ClassScorer(
                    self.model,
                    self.scheme,
                    mode,
                    self.symbols01 if needs_symbols else None,
                    fusion_weight=self.fusion_weight,
                )
            except ValueError as exc:
                raise GalaxAlignError(f"{self.run_dir}: {exc}") from None
        return self._scorers[mode]

    def modes(self) -> tuple[str, ...]:
        """Every scoring mode this run supports, its own first."""
        available: tuple[str, ...] = ("text", "symbol", "fusion") if self.config.uses_text else ()
        if self.model.classifier is not None:
            available += ("head",)
        return (self.scoring, *(m for m in available if m != self.scoring))

    def pixels(self, images: Sequence[ImageLike | torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Model input on the run's device for images given as arrays (H, W, 3) uint8, file paths,
        (3, H, W) uint8 tensors or one (B, 3, H, W) uint8 batch: resized there as in training,
        with the backbone's interpolation and crop."""
        decoded = (
            images
            if isinstance(images, torch.Tensor)
            else [load_image(im) if isinstance(im, (str, Path)) else im for im in images]
        )
        batch = to_tensor_batch(decoded, self.image_size, self.model.backbone.resize, self.device)
        return self.model.backbone.normalize(batch)

    @torch.no_grad()
    def _forward(self, pixels: torch.Tensor, modes: Sequence[str], features: bool):
        """One pass through the image tower: embeddings, optional features, logits per mode."""
        with autocast(self.device):
            feats = self.model.image_features(pixels)
            logits = {m: self.model.classify_features(feats) for m in modes if m == "head"}
        feats = feats.float()
        embeddings = self.model.project_image(feats)
        for m in modes:
            if m != "head":
                logits[m] = self.scorer(m).logits_from_embeddings(embeddings)
        return embeddings, (feats if features else None), {m: v.float() for m, v in logits.items()}

    @torch.no_grad()
    def embed_dataset(
        self,
        dataset: GalaxyDataset,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        modes: Sequence[str] = (),
        features: bool = False,
        batch_size: int = 64,
        workers: int = 0,
        desc: str | None = None,
        on_batch: Callable[[np.ndarray, list[np.ndarray]], None] | None = None,
    ) -> Embedded:
        """Embed dataset[indices] (default: all) unaugmented, each image decoded and encoded once.

        `modes` adds the class predicted under each scoring mode; `features` keeps the pooled
        image features (linear probes); `on_batch(indices, images)` sees each batch's decoded
        images (thumbnails for a search index). `workers` processes read and decode ahead. A `desc`
        names the progress bar of a pass a user waits for (none for passes inside a job).
        """
        if batch_size < 1:
            raise GalaxAlignError(f"batch size must be at least 1, got {batch_size}")
        indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        for mode in modes:
            self.scorer(mode)  # an unsupported mode fails before any image is read
        embeddings: list[np.ndarray] = []
        feats: list[np.ndarray] = []
        predicted: dict[str, list[np.ndarray]] = {m: [] for m in modes}
        batches = index_batches(indices, batch_size)
        pin = self.device.type == "cuda"  # uint8 pixels go to the device asynchronously, resized there
        decoded = image_batches(dataset, batches, workers=workers, pin_memory=pin) if batches else iter(())
        with progress_bar(len(indices), desc, unit="img", disable=desc is None) as bar:
            for batch, chw in zip(batches, decoded):
                rows = np.asarray(batch, dtype=np.int64)
                if on_batch is not None:
                    on_batch(rows, [image.permute(1, 2, 0).numpy() for image in chw])
                emb, feat, logits = self._forward(self.pixels(chw), modes, features)
                embeddings.append(emb.cpu().numpy())
                if feat is not None:
                    feats.append(feat.cpu().numpy())
                for m, value in logits.items():
                    predicted[m].append(value.argmax(1).cpu().numpy())
                bar.update(len(rows))
        dim = self.model.embed_dim
        return Embedded(
            indices=indices,
            embeddings=np.concatenate(embeddings) if embeddings else np.zeros((0, dim), dtype=np.float32),
            features=(
                np.concatenate(feats) if feats else np.zeros((0, self.model.backbone.image_dim), dtype=np.float32)
            )
            if features
            else None,
            predicted={m: np.concatenate(v) if v else np.zeros(0, np.int64) for m, v in predicted.items()},
        )

    @torch.no_grad()
    def predict_proba(self, images: Sequence[ImageLike], mode: str | None = None, batch_size: int = 64) -> np.ndarray:
        mode = mode or self.scoring
        self.scorer(mode)
        chunks = [
            torch.softmax(self._forward(self.pixels(images[i : i + batch_size]), (mode,), False)[2][mode], dim=1)
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).cpu().numpy() if chunks else np.zeros((0, len(self.scheme)))

    @torch.no_grad()
    def proba_from_embeddings(self, embeddings: np.ndarray, mode: str | None = None) -> np.ndarray:
        """Class probabilities of images already embedded with `embed_images` (prototype modes)."""
        vectors = torch.as_tensor(embeddings, dtype=torch.float32).to(self.device)
        return torch.softmax(self.scorer(mode).logits_from_embeddings(vectors), dim=1).cpu().numpy()

    def classify(self, images: Sequence[ImageLike], mode: str | None = None, top_k: int = 3) -> list[dict]:
        """For each image: the class, its probability and the top-k classes."""
        results = []
        for probs in self.predict_proba(images, mode):
            order = np.argsort(-probs)[:top_k]
            top = [
                {"id": int(i), "key": self.scheme[i].key, "name": self.scheme[i].name, "probability": float(probs[i])}
                for i in order
            ]
            results.append({**top[0], "top": top})
        return results

    @torch.no_grad()
    def embed_images(self, images: Sequence[ImageLike], batch_size: int = 64) -> np.ndarray:
        chunks = [
            self._forward(self.pixels(images[i : i + batch_size]), (), False)[0].cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.model.embed_dim), dtype=np.float32)

    @torch.no_grad()
    def image_features(self, images: Sequence[ImageLike], batch_size: int = 64) -> np.ndarray:
        """The image tower's pooled features, before the projection: for linear probes."""
        chunks = [
            self._forward(self.pixels(images[i : i + batch_size]), (), True)[1].cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.model.backbone.image_dim), dtype=np.float32)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.model.backbone.tokenize(list(texts))
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        return self.model.encode_text(ids, mask).float().cpu().numpy()

    @torch.no_grad()
    def embed_symbols(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Embed symbol or sketch drawings through the symbol encoder."""
        return self.model.encode_symbol(self.pixels(images)).float().cpu().numpy()


def scoring_candidates(choices: Sequence[str]) -> list[Scoring]:
    """Every scoring validation picks among for `choices`: fusion at each of FUSION_WEIGHTS (0.5
    first), each other mode once. Their number is a run's selection budget per checkpoint."""
    out: list[Scoring] = []
    for mode in choices:
        weights = sorted(FUSION_WEIGHTS, key=lambda w: abs(w - 0.5)) if mode == "fusion" else [0.5]
        out += [Scoring(mode, weight) for weight in weights]
    return out


def choose_scoring(
    run: Run, dataset: GalaxyDataset, indices: np.ndarray, choices: Sequence[str], workers: int = 0
) -> tuple[Scoring, dict[str, float]]:
    """Accuracy on dataset[indices] of every scoring in `scoring_candidates(choices)`, from one pass
    over the images; the best, ties going to the earlier choice (and to fusion@0.5)."""
    plain = tuple(m for m in choices if m != "fusion")
    scanned = run.embed_dataset(dataset, indices, modes=plain, workers=workers)
    labels = dataset.labels[np.asarray(indices, dtype=np.int64)]
    candidates: dict[str, tuple[Scoring, np.ndarray]] = {}
    fused: tuple[torch.Tensor, torch.Tensor] | None = None
    for chosen in scoring_candidates(choices):
        if chosen.mode != "fusion":
            candidates[chosen.name] = (chosen, scanned.predicted[chosen.mode])
            continue
        with torch.no_grad():
            if fused is None:
                vectors = torch.from_numpy(scanned.embeddings).to(run.device)
                # fuse() standardises each row, so scaled logits mix exactly as cosines do
                fused = (
                    run.scorer("text").logits_from_embeddings(vectors),
                    run.scorer("symbol").logits_from_embeddings(vectors),
                )
            predicted = fuse(*fused, chosen.fusion_weight).argmax(1).cpu().numpy()
        candidates[chosen.name] = (chosen, predicted)
    accuracy = {
        name: float((predicted == labels).mean()) if len(labels) else float("nan")
        for name, (_, predicted) in candidates.items()
    }
    best = max(accuracy, key=lambda name: accuracy[name])  # max keeps the first of equals
    return candidates[best][0], accuracy


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild a run from its folder alone, on `device` (auto, cpu, cuda, cuda:N)."""
    run_dir = Path(run_dir)
    target = resolve_device(device)
    config = read_config(run_dir)
    weights_path = run_dir / MODEL_FILE
    if not weights_path.exists():
        raise GalaxAlignError(f"{weights_path}: no weights (has the run finished an epoch?)")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GalaxAlignError(f"{weights_path}: unreadable weights ({exc})") from None
    scheme = load_scheme(config.scheme)
    stage = 2 if any(k.startswith("symbol_encoder.") for k in state) else 1
    model = build_model(config, len(scheme), stage=stage, run_dir=run_dir)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GalaxAlignError(
            f"{weights_path}: weights do not fit backbone {config.backbone!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    model.eval().to(target)
    return Run(run_dir, config, model, scheme, scoring=_saved_scoring(weights_path, config))


def metrics_records(run_dir: str | Path) -> list[dict]:
    """The run's metrics log, one dict per line (training steps and validations)."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class ClassifyConfig:
    """`galaxalign classify`: class, probability and top-k of galaxy image files."""

    run: str = required("run folder")
    images: list[str] = required("image files (PNG, JPEG, FITS, ...)", positional=True, nargs="+", metavar="IMAGE")
    mode: str | None = option(
        None, "scoring: head, text, symbol or fusion (default: the run's own)", choices=SCORING_MODES
    )
    top_k: int = option(3, "classes listed per image")
    json: bool = option(False, "print a JSON list instead of a table")
    device: str = option("auto", DEVICE_HELP)

    def __post_init__(self):
        check_device_name(self.device)
        if self.top_k < 1:
            raise GalaxAlignError(f"classify: --top-k must be at least 1, got {self.top_k}")
