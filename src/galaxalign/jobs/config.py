"""The typed configurations of the jobs (light to import: the CLI builds its flags from them).

Each job carries a base `TrainConfig` (`train`): its fields are the job's flags too, with the
job's own defaults, and each run the job trains is that base with the per-run fields replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from galaxalign.config import nested, option, required
from galaxalign.errors import GalaxAlignError
from galaxalign.run_config import METHODS, SYMBOL_SOURCES, TrainConfig

NO_TRAINING = ("zero-shot", "linear-probe")
# Benchmark rows that are a trained method with settings of their own (issue 13, section 3):
# a locked image tower that text and symbols shape the rest around (LiT), and class-level targets
# (each image against all K class prototypes, as in FLYP and UniCL) instead of in-batch ones.
VARIANTS: dict[str, tuple[str, dict]] = {
    "galaxalign-lit": ("galaxalign", {"image_trainable_blocks": 0}),
    "galaxalign-classes": ("galaxalign", {"targets": "classes"}),
    # The controls of issue 24, section 3: galaxalign with each symbol source in place of the drawings.
    "galaxalign-texture": ("galaxalign", {"symbol_source": "texture"}),
    "galaxalign-domain": ("galaxalign", {"symbol_source": "domain"}),
    "galaxalign-galaxy": ("galaxalign", {"symbol_source": "galaxy"}),
    # Issue 24, section 4: the unlabelled training galaxies, FixMatch-style, given to both the same way.
    "galaxalign-semi": ("galaxalign", {"unlabelled_weight": 1.0}),
    "clip-semi": ("clip", {"unlabelled_weight": 1.0}),
}
DEFAULT_METHODS = (*METHODS, *NO_TRAINING)
ALL_METHODS = (*METHODS, *VARIANTS, *NO_TRAINING)

# Set by the benchmark for each run; the other TrainConfig fields are shared by every run.
BENCHMARK_PER_RUN = ("data", "out", "method", "label_fraction", "seed", "split_file", "val_every", "validations")
DEMO_PER_RUN = ("data", "out", "method", "seed", "split_file")


def refuse_several_processes(job: str) -> None:
    """A job is one process: started N times (torchrun, or srun with several tasks) its copies
    would race on the same folders, so it stops, before writing anything, with the way that works."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tasks = int(os.environ.get("SLURM_NTASKS", "1")) if "SLURM_PROCID" in os.environ else 1
    if world > 1 or tasks > 1:
        launcher = f"torchrun with {world} processes" if world > 1 else f"srun with {tasks} tasks"
        raise GalaxAlignError(
            f"{job}: started by {launcher}; it runs as one process (run `galaxalign {job}` without "
            f"torchrun or srun; train one run on several GPUs with `torchrun ... -m galaxalign train`)"
        )


def _job_base() -> TrainConfig:
    """The jobs' shared budget: the trainer's defaults at 3 epochs (the per-run fields are filled in later)."""
    return TrainConfig(data="", out="", epochs=3)


def _benchmark_base() -> TrainConfig:
    """The benchmark's: equal selection, so that every method chooses among as many candidates
    (the scoring fixed before any run; as many validated checkpoints, set per run)."""
    return replace(_job_base(), scoring="fixed")


@dataclass
class BenchmarkConfig:
    data: str = required("dataset (Galaxy10-layout .h5, catalog or folder)")
    out: str = required("output folder (runs/, results.json, results.md)")
    label_fractions: str = option("1.0,0.1,0.01", "comma-separated label fractions")
    seeds: str = option("0,1,2", "comma-separated seeds (label subset, order, initialisation)")
    methods: str = option(
        ",".join(DEFAULT_METHODS), f"comma-separated methods; also the variants {', '.join(VARIANTS)}"
    )
    min_steps: int = option(30, "at least this many optimiser steps per run, so few-label runs still train")
    steps: str = option("", "comma-separated step budgets (a learning curve); each replaces --epochs and --min-steps")
    test_data: str | None = option(
        None,
        "a separate test file (rendered with its own seed, same scheme): every run "
        "is tested on all of it instead of the split's test part",
    )
    validation_only: bool = option(
        False,
        "train and select on validation, never read the test set (for choosing "
        "settings); the table shows validation accuracy",
    )
    probe: bool = option(True, "also fit a linear probe on each trained run's image features (C chosen on validation)")
    split_seed: int = option(0, "seed of the one train/val/test split all runs share")
    quick: bool = option(False, "a first look: fractions 1.0,0.1, seed 0, 1 epoch, 10 steps minimum")
    train: TrainConfig = nested(_benchmark_base, "settings shared by every trained run", skip=BENCHMARK_PER_RUN)

    def __post_init__(self):
        if self.quick:
            self.label_fractions, self.seeds, self.min_steps = "1.0,0.1", "0", 10
            self.train = replace(self.train, epochs=1)
        unknown = sorted(set(self.method_list) - set(ALL_METHODS))
        if unknown:
            raise GalaxAlignError(
                f"benchmark: unknown method(s) {', '.join(unknown)} (known: {', '.join(ALL_METHODS)})"
            )
        trained = [VARIANTS.get(m, (m, {}))[0] for m in self.method_list if m not in NO_TRAINING]
        source = self.train.symbol_source
        if source != SYMBOL_SOURCES[0] and not any(self.train.for_method(m).symbol_source == source for m in trained):
            raise GalaxAlignError(
                f"benchmark: --symbol-source {source} does nothing for the methods "
                f"{', '.join(self.method_list)}: none of them can use it"
            )
        self._check_feature_cache(trained)
        try:
            fractions, seeds, budgets = self.fraction_list, self.seed_list, self.step_list
        except ValueError as exc:
            raise GalaxAlignError(f"benchmark: cannot parse label fractions, seeds or steps ({exc})") from None
        if any(n is not None and n < 1 for n in budgets):
            raise GalaxAlignError("benchmark: step budgets must be at least 1")
        if not fractions or not seeds or any(not 0 < f <= 1 for f in fractions):
            raise GalaxAlignError("benchmark: need at least one seed and label fractions in (0, 1]")

    def _check_feature_cache(self, trained: list[str]) -> None:
        """--feature-cache-views goes to every method that trains on galaxy images, alike; refused
        when none of the methods does, or when a semi-supervised variant needs more views."""
        if not self.train.feature_cache_views:
            return
        if not any(METHODS[m].images for m in trained if m in METHODS):
            raise GalaxAlignError(
                f"benchmark: --feature-cache-views does nothing for the methods {', '.join(self.method_list)}: "
                "none of them trains on galaxy images"
            )
        semi = [m for m in self.method_list if VARIANTS.get(m, ("", {}))[1].get("unlabelled_weight")]
        if semi and self.train.feature_cache_views < 2:
            raise GalaxAlignError(
                f"benchmark: --feature-cache-views needs at least 2 views for {', '.join(semi)} "
                "(each unlabelled galaxy's weak and strong views are two different cached ones)"
            )

    @property
    def fraction_list(self) -> list[float]:
        return [float(x) for x in self.label_fractions.split(",") if x.strip()]

    @property
    def seed_list(self) -> list[int]:
        return [int(x) for x in self.seeds.split(",") if x.strip()]

    @property
    def step_list(self) -> list[int | None]:
        """The step budgets; [None] when the budget is epochs (with at least min_steps)."""
        return [int(x) for x in self.steps.split(",") if x.strip()] or [None]

    @property
    def method_list(self) -> list[str]:
        return [m.strip() for m in self.methods.split(",") if m.strip()]


@dataclass
class DemoConfig:
    out: str = option("runs/demo", "output folder (data, runs, index, report.html)")
    quick: bool = option(
        False,
        "a smaller first look (about 2 minutes on 2 cores): 16 per class at 64 px, "
        "56 px input, 2 epochs (replaces --epochs and --image-size)",
    )
    per_class: int = option(0, "galaxies per class to render; 0: 60 (16 with --quick)")
    seed: int = option(0, "seed of the data, split and runs")
    train: TrainConfig = nested(_job_base, "settings of both runs", skip=DEMO_PER_RUN)

    def __post_init__(self):
        if self.per_class < 0:
            raise GalaxAlignError("demo: --per-class must be positive (or 0 for the default)")
        if self.quick:
            self.train = replace(self.train, epochs=2, image_size=56)

    @property
    def galaxies_per_class(self) -> int:
        return self.per_class or (16 if self.quick else 60)

    @property
    def synth_size(self) -> int:
        return 64 if self.quick else 128
