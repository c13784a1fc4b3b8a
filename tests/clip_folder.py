"""A tiny random CLIP checkpoint laid out like openai/clip-vit-base-patch16, for the hf: tests.

Same files as the real folder (config.json, model.safetensors, tokenizer files and a
preprocessor_config.json with bicubic resampling and OpenAI's statistics), OpenAI's legacy
text ids (bos 0, pad 1, eos 2, so the EOS is found by argmax as for the real checkpoint) and
its learned `logit_scale = ln 100`; only the widths, depths and image size are small. The
tokenizer is CLIP's byte-level BPE without merges (the real vocabulary is not available offline).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def openai_preprocessor(side: int) -> dict:
    """preprocessor_config.json as openai/clip-vit-base-patch16 ships it, at `side` pixels."""
    return {
        "crop_size": side,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": OPENAI_MEAN,
        "image_std": OPENAI_STD,
        "resample": 3,
        "size": side,
    }


def write_tiny_clip(
    folder: Path,
    dtype: torch.dtype = torch.float32,
    image_size: int = 32,
    preprocessor: dict | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """Save the tiny CLIP (weights in `dtype`) with its tokenizer to `folder`; return it in fp32."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    torch.manual_seed(seed)
    model = CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=24,
                hidden_act="quick_gelu",
                bos_token_id=0,
                pad_token_id=1,
                eos_token_id=2,
            ),
            vision_config=dict(
                hidden_size=48,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=image_size,
                patch_size=16,
                hidden_act="quick_gelu",
            ),
            projection_dim=16,
        )
    )
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    model.to(dtype).save_pretrained(folder)  # type: ignore[arg-type]  # transformers' typing of .to
    tokenizer.save_pretrained(folder)
    pre = openai_preprocessor(image_size) if preprocessor is None else preprocessor
    if pre:
        (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return model.float().eval()
