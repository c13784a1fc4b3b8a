"""Is a run's validation accuracy limited by its scoring rule or by its representation?

For each finished run folder, this classifies the run's validation galaxies (never the test
split) by five kinds of class prototype in its shared space: the class phrases and class symbols
the run scores with, and the mean embedding per class of its labelled galaxies' own captions, own
symbols (drawn from each galaxy's attributes, canonical strokes) and own images. With per-galaxy
symbols the class phrases may stop fitting the text tower while the representation is fine; a
weak representation is weak under every prototype. Needs a dataset with galaxy attributes
(Galaxy10-Sim parameters or Galaxy Zoo votes). Prints a table, one row per run.

    python studies/claim/own_prototypes.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from galaxalign.errors import GalaxAlignError
from galaxalign.morphology.answers import caption, dataset_answers
from galaxalign.runs import load_run, prepare_data
from galaxalign.search.index import normalise
from galaxalign.symbols import galaxy_symbol_batch

KINDS = ("class phrases", "class symbols", "own captions", "own symbols", "own images")


def class_means(vectors: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    return normalise(np.stack([vectors[labels == k].mean(0) for k in range(n_classes)]))


def prototype_accuracies(run_dir: Path) -> dict[str, float]:
    run = load_run(run_dir)
    data = prepare_data(run.config, run_dir, write=False)
    answers = dataset_answers(data.dataset)
    if answers is None:
        raise GalaxAlignError(f"{data.dataset.source}: no galaxy attributes to draw own symbols and captions from")
    labelled, val = np.asarray(data.train_indices), np.asarray(data.split.val)
    labels, val_labels = data.dataset.labels[labelled], data.dataset.labels[val]
    mine = [answers[int(i)] for i in labelled]
    with torch.no_grad():
        drawn = galaxy_symbol_batch(mine, run.image_size, seed=None).to(run.device)
        own_symbols = run.model.encode_symbol(run.model.backbone.normalize(drawn)).float().cpu().numpy()
    k = len(run.scheme)
    own = {
        "own captions": run.embed_texts([caption(a) for a in mine]),
        "own symbols": own_symbols,
        "own images": run.embed_dataset(data.dataset, labelled).embeddings,
    }
    scored = run.embed_dataset(data.dataset, val, modes=("text", "symbol"))
    result = {
        "class phrases": float((scored.predicted["text"] == val_labels).mean()),
        "class symbols": float((scored.predicted["symbol"] == val_labels).mean()),
    }
    for name, vectors in own.items():
        predicted = (scored.embeddings @ class_means(vectors, labels, k).T).argmax(1)
        result[name] = float((predicted == val_labels).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders (text- and symbol-aligned)")
    args = parser.parse_args()
    print("| run | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for run_dir in args.runs:
        row = prototype_accuracies(run_dir)
        name = f"{run_dir.parent.parent.name}/{run_dir.name}"
        print(f"| {name} | " + " | ".join(f"{row[kind]:.3f}" for kind in KINDS) + " |", flush=True)


if __name__ == "__main__":
    main()
