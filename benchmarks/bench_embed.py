"""Image embedding throughput (inference) and the share of the CPU's matmul peak it reaches.

Each row embeds a batch of random normalised pixels with `model.encode_image` (image tower +
projection, as `Run.embed_images` does after preprocessing). FLOPs per batch are counted with
`FlopCounterMode` (CPU SDPA is not in its table: counted with its own attention formula). The
peak is a 2048^3 fp32 `torch.mm` with the same threads, timed right before each row, because
on shared cores it moves by 2x within minutes; both are the best of several calls. Levers
shown: `inference_mode` vs `no_grad`, batch 32 vs 64, channels_last for the EfficientNet.
Dinov2 already runs SDPA attention (transformers' default for a model built from a config; the
`attention` column reads it from the built model's config). Target: `packaged` >= 50 % of
peak. Run `python benchmarks/bench_embed.py`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from galaxalign.models.backbones import build_backbone
from galaxalign.models.model import GalaxAlignModel

TITLE = "Embedding throughput (inference, fp32) vs the fp32 matmul peak measured alongside"
TARGET = 0.50
_CPU_SDPA = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, **kw: sdpa_flop_count(q, k, v)
}
# (backbone, px, batch, grad mode, channels_last)
CASES = (
    ("packaged", 112, 32, "no_grad", False),
    ("packaged", 112, 32, "inference_mode", False),
    ("packaged", 112, 64, "inference_mode", False),
    ("packaged", 224, 32, "inference_mode", False),
    ("packaged", 224, 64, "inference_mode", False),
    ("packaged-effnet", 112, 32, "inference_mode", False),
    ("packaged-effnet", 112, 32, "inference_mode", True),
    ("packaged-effnet", 224, 32, "inference_mode", False),
    ("packaged-effnet", 224, 32, "inference_mode", True),
    ("packaged-effnet", 224, 64, "inference_mode", True),
)


def timed(fn, least: int = 3, most: int = 10, budget_s: float = 3.0) -> float:
    """Best seconds of `fn()` after one warm-up call, over `least` to `most` calls within the budget.

    Best, not median, on both sides of the ratio: on shared cores the fastest call is the one
    least disturbed by other jobs, so best against best compares capability with capability.
    """
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < least or (len(times) < most and time.perf_counter() - start < budget_s):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peak_gflops(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: torch.mm(a, b), least=10, budget_s=1.0) / 1e9


def flops(model: GalaxAlignModel, pixels: torch.Tensor) -> int:
    with FlopCounterMode(display=False, custom_mapping=_CPU_SDPA) as counter, torch.inference_mode():
        model.encode_image(pixels)
    return counter.get_total_flops()


def run(cases=CASES) -> list[dict]:
    """One row per case: images/s, GFLOP per image, achieved GFLOP/s, the adjacent peak and the share of it."""
    rows, model, built = [], None, None
    for name, px, batch, mode, channels_last in cases:
        if name != built:
            model, built = None, name  # frees the previous backbone before loading the next
            model = GalaxAlignModel(build_backbone(name)).eval()
        assert model is not None
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model.image_encoder.to(memory_format=memory_format)  # type: ignore[call-overload]  # missing from torch's stubs
        pixels = torch.randn(batch, 3, px, px).contiguous(memory_format=memory_format)
        count = flops(model, pixels)
        grad_mode = torch.inference_mode if mode == "inference_mode" else torch.no_grad
        peak = matmul_peak_gflops()
        with grad_mode():
            seconds = timed(lambda: model.encode_image(pixels))
        achieved = count / seconds / 1e9
        share = achieved / peak
        dino = getattr(model.image_encoder, "model", None)
        rows.append(
            {
                "backbone": name,
                "attention": dino.config._attn_implementation if dino is not None else "(conv)",
                "px": px,
                "batch": batch,
                "mode": mode + (", channels_last" if channels_last else ""),
                "img/s": batch / seconds,
                "GFLOP/img": count / batch / 1e9,
                "GFLOP/s": achieved,
                "peak GFLOP/s": peak,
                "% of peak": round(100 * share, 1),
                f">= {TARGET:.0%}": ("met" if share >= TARGET else "missed") if name == "packaged" else "",
            }
        )
    return rows


def embed_ratio(run_dir: str, shard: str, batch_size: int = 64, repeats: int = 3) -> dict:
    """`galaxalign embed`'s throughput on one input shard against the model-only forward pass.

    embed: `jobs.embed.embed_shard` (open the shard, decode, preprocess, forward, write the Parquet
    shard and its manifest), i.e. the command's per-shard work without process start and model
    load, which are paid once per job. forward: `model.encode_image` on preprocessed-size random
    pixels in the same batches, under the same threads. Best of `repeats`, interleaved. Target >= 0.9.
    """
    import tempfile

    from galaxalign.jobs.embed import EmbedConfig, embed_shard
    from galaxalign.runs import load_run

    run = load_run(run_dir, device="cpu")
    config = EmbedConfig(run=run_dir, inputs=[shard], out="", batch_size=batch_size, device="cpu")

    def embed() -> int:
        with tempfile.TemporaryDirectory() as out:
            return embed_shard(run, Path(out), 0, shard, config)

    n = embed()  # warm-up, and the shard's size
    px = run.image_size
    batches = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    pixels = {b: torch.randn(b, 3, px, px) for b in set(batches)}

    def forward() -> None:
        with torch.inference_mode():
            for b in batches:
                run.model.encode_image(pixels[b])

    forward()
    embed_s: list[float] = []
    forward_s: list[float] = []
    for _ in range(repeats):  # interleaved, so both sides meet the same load on shared cores
        for fn, times in ((embed, embed_s), (forward, forward_s)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    embed_best, forward_best = min(embed_s), min(forward_s)
    return {
        "images": n,
        "px": px,
        "threads": torch.get_num_threads(),
        "embed img/s": n / embed_best,
        "forward img/s": n / forward_best,
        "forward img/s per core": n / forward_best / torch.get_num_threads(),
        "ratio embed / forward": forward_best / embed_best,
        "target": 0.9,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from run import markdown_table

    if sys.argv[1:2] == ["--ratio"]:  # --ratio RUN_DIR SHARD: embed vs forward only
        print(markdown_table([embed_ratio(sys.argv[2], sys.argv[3])]))
        raise SystemExit(0)
    print(f"{TITLE}; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(markdown_table(run()))
