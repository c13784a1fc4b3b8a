"""Load a trained run from its folder alone, and use it: classify and embed.

`load_run(RUN_DIR)` rebuilds the model from `config.json` and `model.safetensors`; the returned
`Run` is the one object the CLI, the report and the web app use.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from galaxalign.config import load_config
from galaxalign.data import load_image, to_tensor_batch
from galaxalign.errors import GalaxAlignError
from galaxalign.models.model import GalaxAlignModel
from galaxalign.models.prototypes import ClassScorer, default_scoring, symbol_pixels
from galaxalign.taxonomy import Scheme, load_scheme
from galaxalign.training.config import TrainConfig
from galaxalign.training.trainer import CONFIG_FILE, MODEL_FILE, build_model, image_size_of

ImageLike = np.ndarray | str | Path


class Run:
    """A trained GalaxAlign model with its scheme, preprocessing and default scoring."""

    def __init__(self, run_dir: Path, config: TrainConfig, model: GalaxAlignModel, scheme: Scheme):
        self.run_dir, self.config, self.model, self.scheme = run_dir, config, model, scheme
        self.image_size = image_size_of(config, model)
        self.scoring = default_scoring(config.method)
        self._scorers: dict[str, ClassScorer] = {}

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
        return symbol_pixels(self.scheme, self.config.symbol_variants, self.image_size, seed=self.config.seed)

    def scorer(self, mode: str | None = None) -> ClassScorer:
        mode = mode or self.scoring
        if mode not in self._scorers:
            needs_symbols = mode in ("symbol", "fusion")
            try:
                self._scorers[mode] = ClassScorer(self.model, self.scheme, mode, self.symbols01 if needs_symbols else None)
            except ValueError as exc:
                raise GalaxAlignError(f"{self.run_dir}: {exc}") from None
        return self._scorers[mode]

    def pixels(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Model input for images given as arrays (H, W, 3) uint8 or file paths."""
        arrays = [load_image(im) if isinstance(im, (str, Path)) else im for im in images]
        return self.model.backbone.normalize(to_tensor_batch(arrays, self.image_size))

    @torch.no_grad()
    def predict_proba(self, images: Sequence[ImageLike], mode: str | None = None, batch_size: int = 64) -> np.ndarray:
        scorer = self.scorer(mode)
        chunks = [
            torch.softmax(scorer.logits(self.pixels(images[i : i + batch_size])), dim=1)
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, len(self.scheme)))

    @torch.no_grad()
    def proba_from_embeddings(self, embeddings: np.ndarray, mode: str | None = None) -> np.ndarray:
        """Class probabilities of images already embedded with `embed_images` (prototype modes)."""
        logits = self.scorer(mode).logits_from_embeddings(torch.as_tensor(embeddings, dtype=torch.float32))
        return torch.softmax(logits, dim=1).numpy()

    def classify(self, images: Sequence[ImageLike], mode: str | None = None, top_k: int = 3) -> list[dict]:
        """For each image: the class, its probability and the top-k classes."""
        results = []
        for probs in self.predict_proba(images, mode):
            order = np.argsort(-probs)[:top_k]
            top = [{"id": int(i), "key": self.scheme[i].key, "name": self.scheme[i].name, "probability": float(probs[i])} for i in order]
            results.append({**top[0], "top": top})
        return results

    @torch.no_grad()
    def embed_images(self, images: Sequence[ImageLike], batch_size: int = 64) -> np.ndarray:
        chunks = [self.model.encode_image(self.pixels(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.model.embed_dim), np.float32)

    @torch.no_grad()
    def image_features(self, images: Sequence[ImageLike], batch_size: int = 64) -> np.ndarray:
        """The image tower's pooled features, before the projection: for linear probes."""
        chunks = [self.model.image_features(self.pixels(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.model.backbone.image_dim), np.float32)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.model.backbone.tokenize(list(texts))
        return self.model.encode_text(tokens["input_ids"], tokens["attention_mask"]).numpy()

    @torch.no_grad()
    def embed_symbols(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Embed symbol or sketch drawings through the symbol encoder."""
        return self.model.encode_symbol(self.pixels(images)).numpy()


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    config = load_config(TrainConfig, run_dir / CONFIG_FILE)
    weights_path = run_dir / MODEL_FILE
    if not weights_path.exists():
        raise GalaxAlignError(f"{weights_path}: no weights (has the run finished an epoch?)")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GalaxAlignError(f"{weights_path}: unreadable weights ({exc})") from None
    scheme = load_scheme(config.scheme)
    stage = 2 if any(k.startswith("symbol_encoder.") for k in state) else 1
    model = build_model(config, len(scheme), stage=stage)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GalaxAlignError(
            f"{weights_path}: weights do not fit backbone {config.backbone!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors)"
        )
    model.eval()
    return Run(run_dir, config, model, scheme)
