"""The report's pictures, each drawn with matplotlib (Agg) and returned as PNG bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw, ImageFont

from galaxalign.runs import metrics_records

CLASS_COLOURS = [
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def training_curves(run_dirs: dict[str, Path]) -> bytes:
    """Training loss per step and validation accuracy per epoch, one line per run."""
    fig = _new_figure(9, 3.4)
    loss_ax, val_ax = fig.subplots(1, 2)
    for name, run_dir in run_dirs.items():
        records = metrics_records(run_dir)
        steps = [r for r in records if "loss" in r]
        losses = np.array([r["loss"] for r in steps])
        window = max(1, len(losses) // 20)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        loss_ax.plot(np.arange(len(smooth)) + window, smooth, label=name)
        vals = [r for r in records if "val_accuracy" in r]
        val_ax.plot([r["epoch"] + 1 for r in vals], [r["val_accuracy"] for r in vals], marker="o", label=name)
    loss_ax.set(xlabel="batch", ylabel="training loss (moving mean)", title="Training loss")
    val_ax.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy", ylim=(0, 1))
    val_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, val_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(fig)


def embedding_map(
    points: np.ndarray,
    labels: np.ndarray,
    text_anchors: np.ndarray,
    symbol_anchors: np.ndarray,
    class_names: list[str],
    seed: int = 0,
) -> bytes:
    """t-SNE of galaxy embeddings, with each class's text and symbol anchors placed among them."""
    from sklearn.manifold import TSNE

    everything = np.concatenate([points, text_anchors, symbol_anchors])
    perplexity = float(max(5, min(30, (len(everything) - 1) // 4)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine", random_state=seed).fit_transform(
        everything
    )
    n, c = len(points), len(class_names)
    fig = _new_figure(8.5, 6.5)
    ax = fig.add_subplot()
    for k, name in enumerate(class_names):
        colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        mine = labels == k
        ax.scatter(xy[:n][mine, 0], xy[:n][mine, 1], s=12, color=colour, alpha=0.6, label=name)
        tx, ty = xy[n + k]
        sx, sy = xy[n + c + k]
        ax.scatter([tx], [ty], marker="*", s=260, color=colour, edgecolor="black", linewidth=0.8, zorder=3)
        ax.scatter([sx], [sy], marker="s", s=120, color=colour, edgecolor="black", linewidth=0.8, zorder=3)
    ax.scatter([], [], marker="*", s=160, color="white", edgecolor="black", label="text anchor (star)")
    ax.scatter([], [], marker="s", s=80, color="white", edgecolor="black", label="symbol anchor (square)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("Test galaxies in the shared space (t-SNE), with class anchors")
    return _png(fig)


def retrieval_strip(
    query: np.ndarray,
    query_caption: str,
    hits: list,
    thumbnails: np.ndarray,
    class_names: list[str],
    expected_label: int | None,
    tile: int = 96,
) -> bytes:
    """The query, then its top hits: class name and score under each; green frame = same class."""
    font = ImageFont.load_default(size=11)
    pad, caption_h = 6, 30
    width = (tile + pad) * (len(hits) + 1) + pad
    canvas = Image.new("RGB", (width, tile + caption_h + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)

    def put(image: np.ndarray, slot: int, lines: list[str], frame: str | None):
        x = pad + slot * (tile + pad)
        canvas.paste(Image.fromarray(image).convert("RGB").resize((tile, tile), Image.Resampling.BILINEAR), (x, pad))
        if frame:
            draw.rectangle([x - 2, pad - 2, x + tile + 1, pad + tile + 1], outline=frame, width=3)
        for i, text in enumerate(lines):
            draw.text((x, pad + tile + 3 + 13 * i), text[:18], fill="black", font=font)

    put(query, 0, ["query", query_caption], "#333333")
    for slot, hit in enumerate(hits, start=1):
        same = expected_label is not None and hit.label == expected_label
        frame = None if expected_label is None else ("#2e9d3a" if same else "#d63a3a")
        put(
            thumbnails[hit.index],
            slot,
            [class_names[hit.label] if hit.label >= 0 else "?", f"score {hit.score:.2f}"],
            frame,
        )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
