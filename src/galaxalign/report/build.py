"""Assemble the demo's report from its runs, evaluations and index."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from galaxalign.data import GalaxyDataset, Split
from galaxalign.io import write_text_atomic
from galaxalign.models.prototypes import symbol_prototypes, text_prototypes
from galaxalign.report import figures
from galaxalign.report.html import Report, bullet_list, image, table
from galaxalign.runs import Run, read_summary
from galaxalign.search import Searcher
from galaxalign.search.index import GalaxyIndex

# Queries shown as retrieval examples: (kind, query, class key whose galaxies count as right).
EXAMPLE_TEXT = ("a spiral galaxy with a bar across its centre", "barred_spiral")
EXAMPLE_SYMBOL = "edge_on_with_bulge"
EXAMPLE_IMAGE_CLASS = "unbarred_loose_spiral"


def _png(pil_image) -> bytes:
    buffer = io.BytesIO()
    pil_image.save(buffer, format="PNG")
    return buffer.getvalue()


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass(frozen=True)
class DemoOutputs:
    """What the demo made, as its report reads it: the rendered data, each method's run folder
    and test metrics (with the files `evaluate_run` wrote), the galaxalign run loaded, its index
    of the training galaxies, the dataset and split, and the wall time so far."""

    out: Path
    data: Path
    runs: dict[str, Path]
    metrics: dict[str, dict]
    run: Run
    index: GalaxyIndex
    dataset: GalaxyDataset
    split: Split
    elapsed: float


def write_report(demo: DemoOutputs) -> Path:
    """OUT/report.html, every picture inline: results, the pictures, the shared space, search."""
    split = demo.split
    report = Report(
        title="GalaxAlign demo report",
        subtitle=f"Galaxy10-Sim ({len(demo.dataset)} rendered galaxies; {len(split.train)}/{len(split.val)}/"
        f"{len(split.test)} train/val/test), backbone {demo.run.config.backbone}, "
        f"{demo.elapsed / 60:.1f} minutes on this machine",
    )
    _add_results(report, demo)
    _add_pictures(report, demo)
    _add_shared_space(report, demo)
    _add_search(report, demo)
    report.add("Try it yourself", f"<p>Serve this index in a browser:</p><p><code>{serve_command(demo.out)}</code></p>")
    path = demo.out / "report.html"
    write_text_atomic(path, report.render())
    return path


def _add_results(report: Report, demo: DemoOutputs) -> None:
    rows = []
    for method, m in demo.metrics.items():
        summary = read_summary(demo.runs[method])
        rows.append(
            [
                method,
                m["scoring"],
                _fmt(m["accuracy"]),
                _fmt(m["macro_f1"]),
                _fmt(m["map@10"]),
                _fmt(m["ndcg@10"]),
                f"{summary['train_seconds']:.0f}",
            ]
        )
    report.add(
        "Results on the test split",
        table(["method", "classified by", "accuracy", "macro-F1", "mAP@10", "nDCG@10", "training (s)"], rows),
        note="Same backbone, split and budget for both runs. Retrieval: each test galaxy queries the training split; "
        "a hit is relevant when it has the same class (nDCG grades hits by how close their generating parameters are).",
    )
    report.add("Reading the results", bullet_list(reading(demo.metrics, demo.run.scheme.names)))


def _add_pictures(report: Report, demo: DemoOutputs) -> None:
    from galaxalign.symbols import symbol_gallery
    from galaxalign.synth import render_contact_sheet

    report.add(
        "Schematic symbols",
        image(_png(symbol_gallery(demo.run.scheme, size=96, variants=3, seed=0)), "symbol gallery"),
        note="Each class's canonical symbol, then three seeded variants: the drawings the symbol encoder learns from.",
    )
    report.add(
        "Example galaxies",
        image(_png(render_contact_sheet(demo.data, per_class=8)), "Galaxy10-Sim examples"),
        note="The first eight rendered galaxies of each class (GalSim bulges and disks, PSF, noise, g/r/z colours).",
    )
    report.add("Training", image(figures.training_curves(demo.runs), "training curves"))
    report.add(
        "Confusion matrices",
        '<div class="pair">'
        + "".join(
            image(Path(m["files"]["confusion"]).read_bytes(), f"{method} confusion")
            for method, m in demo.metrics.items()
        )
        + "</div>",
        note="Rows are the true class; colour is the share of that class.",
    )


def _add_shared_space(report: Report, demo: DemoOutputs) -> None:
    run, test = demo.run, demo.split.test
    embeddings = run.embed_dataset(demo.dataset, test).embeddings
    with torch.no_grad():
        text_anchors = text_prototypes(run.model, run.scheme).numpy()
        symbol_anchors = symbol_prototypes(run.model, run.symbols01).numpy()
    report.add(
        "The shared space",
        image(
            figures.embedding_map(
                embeddings, demo.dataset.labels[test], text_anchors, symbol_anchors, run.scheme.names
            ),
            "embedding map",
        ),
        note="t-SNE of the galaxalign run's test embeddings. Stars: each class's text prototype; squares: its symbol "
        "prototype. Anchors sitting inside their class's cloud is what alignment means.",
    )


def _add_search(report: Report, demo: DemoOutputs) -> None:
    run, index, scheme, names = demo.run, demo.index, demo.run.scheme, demo.run.scheme.names
    thumbnails = index.thumbnails
    assert thumbnails is not None  # the demo's index keeps them (build_index's default)
    searcher = Searcher(index, run)
    k = 8
    strips = []
    wanted = scheme.by_key(EXAMPLE_IMAGE_CLASS).id
    candidates = np.flatnonzero(demo.dataset.labels[demo.split.test] == wanted)
    if len(candidates):
        query = demo.dataset[int(demo.split.test[candidates[0]])].image
        strips.append(
            (
                "By image: a test galaxy (an unbarred loose spiral)",
                figures.retrieval_strip(query, "image", searcher.by_image(query, k), thumbnails, names, wanted),
            )
        )
    text, text_key = EXAMPLE_TEXT
    text_tile = np.full((64, 64, 3), 245, np.uint8)
    strips.append(
        (
            f'By words: "{text}"',
            figures.retrieval_strip(
                text_tile, "words", searcher.by_text(text, k), thumbnails, names, scheme.by_key(text_key).id
            ),
        )
    )
    symbol_class = scheme.by_key(EXAMPLE_SYMBOL)
    symbol_tile = (run.symbols01[symbol_class.id][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    strips.append(
        (
            f"By symbol: {symbol_class.name}",
            figures.retrieval_strip(
                symbol_tile, "symbol", searcher.by_symbol(symbol_class.key, k), thumbnails, names, symbol_class.id
            ),
        )
    )
    report.add(
        "Similarity search",
        "".join(f"<p><b>{title}</b></p>{image(png, title)}" for title, png in strips),
        note="Top 8 from the index of training galaxies; green frame: same class as the query, red: another class.",
    )


def serve_command(out: Path) -> str:
    return f"galaxalign serve --index {out / 'index'} --run {out / 'runs' / 'galaxalign'}"


def reading(metrics: dict[str, dict], names: list[str]) -> list[str]:
    """A few plain sentences drawn from the numbers, whichever way they fall."""
    ours, base = metrics.get("galaxalign"), metrics.get("supervised")
    lines = []
    if ours and base:
        gap = ours["accuracy"] - base["accuracy"]
        n = ours["n"]
        noise = (ours["accuracy"] * (1 - ours["accuracy"]) / max(n, 1)) ** 0.5
        if abs(gap) <= 2 * noise:
            verdict = f"The two runs classify about equally well here ({gap:+.3f}); with {n} test galaxies a gap under {2 * noise:.3f} is within noise."
        elif gap > 0:
            verdict = f"GalaxAlign classifies {gap:.3f} better than plain supervised fine-tuning ({ours['accuracy']:.3f} vs {base['accuracy']:.3f}, {n} test galaxies)."
        else:
            verdict = f"Plain supervised fine-tuning classifies {-gap:.3f} better than GalaxAlign here ({base['accuracy']:.3f} vs {ours['accuracy']:.3f}, {n} test galaxies); see docs/results.md for the full comparison across label fractions."
        lines.append(verdict)
        if ours.get("map@10") is not None and base.get("map@10") is not None:
            lines.append(
                f"For search, mAP@10 is {ours['map@10']:.3f} with GalaxAlign's shared space and {base['map@10']:.3f} with the supervised run's pooled backbone features (its projection never trains, so it retrieves by the features)."
            )
    for method, m in metrics.items():
        confusion = np.asarray(m["confusion"])
        off = confusion - np.diag(np.diag(confusion))
        if off.sum():
            i, j = np.unravel_index(off.argmax(), off.shape)
            lines.append(
                f"{method}: the most common mistake is calling {names[i]} {names[j]} ({off[i, j]} of {confusion[i].sum()})."
            )
    if ours and "accuracy_by_mode" in ours:
        modes = ", ".join(f"{k} {v:.3f}" for k, v in ours["accuracy_by_mode"].items())
        lines.append(f"GalaxAlign by scoring mode (text prototypes, symbol prototypes, their fusion): {modes}.")
    lines.append(
        "Galaxy10-Sim is synthetic and small; these numbers show the pipeline working, not performance on real DECaLS images."
    )
    return lines
