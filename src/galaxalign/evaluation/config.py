"""The typed configuration of a benchmark (kept light: the CLI builds its flags from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from galaxalign.config import option

from galaxalign.errors import GalaxAlignError
from galaxalign.training.config import METHODS, TARGETS

NO_TRAINING = ("zero-shot", "linear-probe")
ALL_METHODS = (*METHODS, *NO_TRAINING)



@dataclass
class BenchmarkConfig:
    data: str = field(metadata={"help": "dataset (Galaxy10-layout .h5, catalog or folder)"})
    out: str = field(metadata={"help": "output folder (runs/, results.json, results.md)"})
    backbone: str = option("packaged", "backbone for every method")
    scheme: str = option("galaxy10", "class scheme")
    label_fractions: str = option("1.0,0.1,0.01", "comma-separated label fractions")
    seeds: str = option("0,1,2", "comma-separated seeds (label subset, order, initialisation)")
    methods: str = option(",".join(ALL_METHODS), "comma-separated methods")
    epochs: int = option(3, "epochs over the labelled images")
    min_steps: int = option(30, "at least this many optimiser steps per run, so few-label runs still train")
    batch_size: int = option(32, "batch size")
    image_size: int = option(0, "input size; 0 = backbone default")
    trainable_blocks: int = option(3, "backbone blocks trained per tower, from the top")
    lr: float = option(2e-4, "peak learning rate of the top block")
    targets: str = option("onehot", "contrastive targets of the aligning methods: onehot or multi (same class = positive)",
                          choices=TARGETS)
    symbol_variants: int = option(16, "symbols per class in the galaxalign methods' training family")
    split_seed: int = option(0, "seed of the one train/val/test split all runs share")
    quick: bool = option(False, "a first look: fractions 1.0,0.1, seed 0, 1 epoch, 10 steps minimum")

    def __post_init__(self):
        if self.quick:
            self.label_fractions, self.seeds, self.epochs, self.min_steps = "1.0,0.1", "0", 1, 10
        unknown = sorted(set(self.method_list) - set(ALL_METHODS))
        if unknown:
            raise GalaxAlignError(f"benchmark: unknown method(s) {', '.join(unknown)} (known: {', '.join(ALL_METHODS)})")
        try:
            fractions, seeds = self.fraction_list, self.seed_list
        except ValueError as exc:
            raise GalaxAlignError(f"benchmark: cannot parse label fractions or seeds ({exc})") from None
        if self.symbol_variants < 1:
            raise GalaxAlignError("benchmark: --symbol-variants must be at least 1")
        if not fractions or not seeds or any(not 0 < f <= 1 for f in fractions):
            raise GalaxAlignError("benchmark: need at least one seed and label fractions in (0, 1]")

    @property
    def fraction_list(self) -> list[float]:
        return [float(x) for x in self.label_fractions.split(",") if x.strip()]

    @property
    def seed_list(self) -> list[int]:
        return [int(x) for x in self.seeds.split(",") if x.strip()]

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]
