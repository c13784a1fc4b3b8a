"""docs/images/galaxy_symbols.png: Galaxy10-Sim galaxies, each beside its own symbol and caption.

Renders a small Galaxy10-Sim file, reads every galaxy's Galaxy Zoo answers from its generating
parameters (`morphology.answers.dataset_answers`) and draws `per_class` galaxies of each class with
the symbol and caption those answers give, so a reader can judge whether a symbol says what
the image shows. Also times `symbols.galaxy_symbol_batch`, the trainer's path, at 112 and 224 px.

Usage: python studies/figures/galaxy_symbols_sheet.py [--out PATH] [--per-class 3] [--size 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from galaxalign.data import H5Dataset
from galaxalign.morphology.answers import dataset_answers
from galaxalign.symbols import galaxy_symbol_batch, galaxy_symbol_sheet
from galaxalign.synth import SynthConfig, write_synth

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "galaxy_symbols.png"


def make_sheet(out: Path = OUT, per_class: int = 3, size: int = 128, seed: int = 0) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sim.h5"
        write_synth(path, SynthConfig(per_class=per_class, size=size, seed=seed, workers=1))
        ds = H5Dataset(path)
        answers = dataset_answers(ds)
        assert answers is not None  # Galaxy10-Sim holds its parameters
        rows = []
        for c in ds.scheme:
            picked = np.flatnonzero(ds.labels == c.id)[:per_class]
            rows.append((f"{c.id}  {c.name}", [(ds[int(i)].image, answers[i]) for i in picked]))
        ds.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Full colour: a 256-colour palette would halve the file but rings the bright galaxy cores.
    galaxy_symbol_sheet(rows, tile=size).save(out, optimize=True)
    return out


def time_symbols(answers: list, sizes: tuple[int, ...] = (112, 224), n: int = 200) -> dict[int, float]:
    """Milliseconds per symbol through `galaxy_symbol_batch`, seeded variants, after a warm-up."""
    batch = [answers[i % len(answers)] for i in range(n)]
    out = {}
    for size in sizes:
        galaxy_symbol_batch(batch[:8], size, seed=0)
        start = time.perf_counter()
        galaxy_symbol_batch(batch, size, seed=1)
        out[size] = (time.perf_counter() - start) / n * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    print(f"wrote {make_sheet(args.out, args.per_class, args.size, args.seed)}")
    if not args.no_timing:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "sim.h5"
            write_synth(path, SynthConfig(per_class=4, size=32, workers=1))
            answers = dataset_answers(H5Dataset(path))
        assert answers is not None
        for size, ms in time_symbols(answers).items():
            print(f"galaxy_symbol_batch: {ms:.2f} ms per symbol at {size} px")


if __name__ == "__main__":
    main()
