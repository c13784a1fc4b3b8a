"""A run's own record: its typed configuration (saved as RUN_DIR/config.json) and the methods.

It sits below `runs` and `training`, so that a run folder can be read without the trainer.

A method is a value: one row of `METHODS` says what it trains and how its runs classify. The
trainer, the run loader and evaluation read the row; none of them interprets the method's name.
Adding a method is one row here plus its loss in `training/objectives.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from galaxalign.config import option
from galaxalign.devices import DEVICE_HELP, check_device_name
from galaxalign.errors import GalaxAlignError

# What the split into stage 2 does: the symbol encoder becomes a copy of the image encoder of its
# own (galaxalign), or the classifier head starts from the class prototypes (lp-ft).
# "restart" changes nothing but the schedule: a fresh optimiser and a second warm-up and cosine,
# the restart the two-stage methods get, as a control for it (clip-restart).
STAGE2_STARTS = ("symbol-encoder", "prototype-head", "restart")


@dataclass(frozen=True)
class Method:
    """What a method trains: a classifier head, which modalities it aligns with text, its stages."""

    name: str
    loss: str  # a key of training.objectives.OBJECTIVES (stage 1, or the only stage)
    head: bool  # a linear classifier on the image features
    aligns: tuple[str, ...]  # modalities contrasted with text ("image", "symbol")
    scoring: tuple[str, ...]  # scoring modes its runs may use, chosen on validation; the first breaks ties

    images: bool = True  # trains on labelled galaxy images (False: on class symbols and texts alone)
    stage2: str | None = None  # what starts stage 2: one of STAGE2_STARTS, or None for one stage
    stage2_loss: str | None = None  # stage 2's objective, when it differs from stage 1's
    stage1_scoring: tuple[str, ...] = ()  # stage 1's scoring modes, when they differ from `scoring`

    def __post_init__(self):
        # The trainer branches on these values: a misspelt one must not start the wrong stage 2.
        if self.stage2 is not None and self.stage2 not in STAGE2_STARTS:
            raise ValueError(f"method {self.name}: stage2 must be one of {STAGE2_STARTS}, got {self.stage2!r}")

    @property
    def uses_text(self) -> bool:
        return bool(self.aligns)

    @property
    def uses_symbols(self) -> bool:
        return "symbol" in self.aligns

    @property
    def two_stages(self) -> bool:
        return self.stage2 is not None

    @property
    def splits_symbol_encoder(self) -> bool:
        return self.stage2 == "symbol-encoder"

    def loss_at(self, stage: int) -> str:
        return self.stage2_loss or self.loss if stage == 2 else self.loss

    def scoring_at(self, stage: int) -> tuple[str, ...]:
        """The scoring modes validation chooses from in `stage` (a run without stage 2 stays at 1)."""
        return self.stage1_scoring or self.scoring if stage == 1 else self.scoring

    def fixed_scoring_at(self, stage: int) -> str:
        """The one scoring fixed before any run (`--scoring fixed`): the head where the method
        scores by one, else text prototypes."""
        modes = self.scoring_at(stage)
        return "head" if "head" in modes else "text" if "text" in modes else modes[0]


ALIGNED_SCORING = ("fusion", "text", "symbol")  # methods that train symbols may classify by either or both

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("supervised", loss="cross_entropy", head=True, aligns=(), scoring=("head",)),
        Method("clip", loss="contrastive", head=False, aligns=("image",), scoring=("text",)),
        # clip with the two-stage methods' schedule: at the stage switch a fresh optimiser and a
        # second warm-up and cosine, nothing else, so that a restart's gain is not credited to symbols.
        Method("clip-restart", loss="contrastive", head=False, aligns=("image",), scoring=("text",), stage2="restart"),
        Method(
            "galaxalign-stage1", loss="contrastive", head=False, aligns=("image", "symbol"), scoring=ALIGNED_SCORING
        ),
        Method(
            "galaxalign",
            loss="contrastive",
            head=False,
            aligns=("image", "symbol"),
            scoring=ALIGNED_SCORING,
            stage2="symbol-encoder",
        ),
        # The hypothesis in its purest form: learn what drawn structures mean from class symbols and
        # class texts alone (through the shared image encoder), then classify galaxies by prototypes.
        Method("zero-label", loss="contrastive", head=False, aligns=("symbol",), scoring=ALIGNED_SCORING, images=False),
        # LP-FT with an aligned start: stage 1 is galaxalign's; stage 2 starts a linear head from the
        # class prototypes (the scoring chosen on validation), then fine-tunes it and the image tower
        # with cross-entropy, so the labels refine what text and symbols taught instead of a random head.
        Method(
            "lp-ft",
            loss="contrastive",
            head=True,
            aligns=("image", "symbol"),
            scoring=("head",),
            stage2="prototype-head",
            stage2_loss="cross_entropy",
            stage1_scoring=ALIGNED_SCORING,
        ),
    )
}
TARGETS = ("multi", "onehot", "classes")
# Where the symbols come from (issue 24): drawn class symbols; class-specific random textures (the
# class structure kept, the content destroyed); the class drawings rendered like survey images,
# anew at every step; each labelled galaxy's own symbols and caption.
SYMBOL_SOURCES = ("drawn", "texture", "domain", "galaxy")
SCORING_RULES = ("choose", "fixed")


@dataclass
class TrainConfig:
    data: str = field(metadata={"help": "dataset: Galaxy10-layout .h5, catalog CSV/parquet, or image folder"})
    out: str = field(metadata={"help": "run folder to create (or resume)"})
    method: str = option("galaxalign", "what to train", choices=tuple(METHODS))
    backbone: str = option(
        "packaged", "backbone name: packaged, packaged-effnet, hf:<path>, openclip:<arch>:<tag>, tiny"
    )
    scheme: str = option("galaxy10", "class scheme: galaxy10, gz2, or a scheme file")
    label_fraction: float = option(1.0, "fraction of the training split whose labels are used (stratified)")
    epochs: int = option(4, "passes over the labelled training images")
    stage1_fraction: float = option(0.5, "galaxalign: share of the epochs spent in stage 1")
    batch_size: int = option(32, "global batch size (per optimiser step, before accumulation)")
    accumulate: int = option(1, "gradient accumulation steps")
    lr: float = option(2e-4, "peak learning rate of the top backbone block")
    head_lr: float = option(1e-3, "learning rate of projections, classifier and temperature")
    weight_decay: float = option(0.05, "AdamW weight decay")
    warmup_fraction: float = option(0.1, "share of steps with linear warm-up before the cosine decay")
    layer_decay: float = option(0.75, "layer-wise learning-rate decay per block below the top")
    trainable_blocks: int = option(
        3,
        "backbone blocks trained per tower, counted from the top (the final norm counts as one): -1 all, 0 heads only",
    )
    embed_dim: int = option(256, "shared embedding width (backbones with CLIP projections keep theirs)")
    image_size: int = option(0, "input size in pixels; 0 uses the backbone's default")
    allow_missing_weights: bool = option(
        False, "hf: train even if the checkpoint lacks some weights (they start random; named in the log)"
    )
    targets: str = option(
        "onehot",
        "contrastive targets: onehot (plain CLIP; chosen on validation, docs/archive/results-history.md), "
        "multi (same class = positive) or classes (cross-entropy against every class's "
        "text prototype, FLYP/UniCL style)",
        choices=TARGETS,
    )
    symbol_source: str = option(
        "drawn",
        "the symbols trained on: drawn (each class's drawn family), texture (class-specific random "
        "textures instead), domain (the class drawings rendered like the survey images at every "
        "step) or galaxy (each labelled galaxy's own symbols and caption, from its Galaxy Zoo answers)",
        choices=SYMBOL_SOURCES,
    )
    scoring: str = option(
        "choose",
        "how a run classifies: choose (the best of the method's scorings on validation) or fixed "
        "(the head, else text prototypes, chosen before any run: equal selection across methods)",
        choices=SCORING_RULES,
    )
    image_trainable_blocks: int | None = option(
        None, "image (and symbol) tower blocks trained; default: --trainable-blocks"
    )
    text_trainable_blocks: int | None = option(None, "text tower blocks trained; default: --trainable-blocks")
    balanced: bool = option(True, "class-balanced batches")
    w_image_text: float = option(1.0, "weight of the image-text loss")
    w_symbol_text: float = option(1.0, "weight of the symbol-text loss")
    w_image_symbol: float = option(1.0, "weight of the image-symbol loss (stage 2)")
    symbol_variants: int = option(16, "symbols per class in the training family")
    unlabelled_weight: float = option(
        0.0,
        "semi-supervised (FixMatch-style): weight of a loss on the training galaxies without labels, "
        "pseudo-labelled by the class prototypes on one augmented view and learnt on another; 0: off",
    )
    pseudo_threshold: float = option(0.9, "semi-supervised: the prototype confidence a pseudo-label needs")
    val_fraction: float = option(0.1, "validation share of the stratified split")
    test_fraction: float = option(0.1, "test share of the stratified split")
    split_file: str | None = option(None, "reuse this split file instead of making one")
    seed: int = option(0, "seed of split, label subset, data order and initialisation")
    bf16: bool = option(False, "bf16 autocast on CPU too (on CUDA it is always on)")
    val_every: int = option(1, "epochs between validations (the last epoch is always validated)")
    validations: int = option(
        0,
        "validated checkpoints, spread evenly over the stage whose weights are kept (the last epoch "
        "included), the same number for every method; 0: every --val-every epochs",
    )
    checkpoint_every: int = option(0, "steps between checkpoints (0: at ends of epochs only)")
    checkpoint_minutes: float = option(
        5.0,
        "at most one end-of-epoch checkpoint per this many minutes (0: every epoch); the last epoch always writes one",
    )
    threads: int = option(0, "torch CPU threads; 0 leaves torch's default")
    device: str = option("auto", DEVICE_HELP)
    workers: int = option(0, "processes that read and decode images ahead of training (0: the training process)")
    compile: bool = option(False, "torch.compile the training step (opt-in: measure it on your hardware first)")
    feature_cache_views: int = option(
        0,
        "a faster, different augmentation protocol: V fixed augmented views per training galaxy, "
        "each pushed once through the frozen lower image blocks and kept in RAM; every step takes "
        "one of them and runs only the trained blocks (docs/training.md); 0: fresh views, full tower",
    )

    def __post_init__(self):
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}"),
            (0 < self.label_fraction <= 1, "label_fraction must be in (0, 1]"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (0 <= self.stage1_fraction <= 1, "stage1_fraction must be in [0, 1]"),
            (self.batch_size >= 2, "batch_size must be at least 2"),
            (self.accumulate >= 1, "accumulate must be at least 1"),
            (self.lr > 0 and self.head_lr > 0, "learning rates must be positive"),
            (0 < self.layer_decay <= 1, "layer_decay must be in (0, 1]"),
            (
                all(
                    n is None or n >= -1
                    for n in (self.trainable_blocks, self.image_trainable_blocks, self.text_trainable_blocks)
                ),
                "trainable blocks must be -1, 0 or a positive count",
            ),
            (self.image_size == 0 or 16 <= self.image_size <= 1024, "image_size must be 0 or 16..1024"),
            (self.symbol_variants >= 1, "symbol_variants must be at least 1"),
            (self.val_every >= 1, "val_every must be at least 1"),
            (self.validations >= 0, "validations must be 0 or more"),
            (self.validations == 0 or self.val_every == 1, "give --validations or --val-every, not both"),
            (self.workers >= 0, "workers must be 0 or more"),
            (
                self.checkpoint_every >= 0 and self.checkpoint_minutes >= 0,
                "checkpoint_every and checkpoint_minutes must be 0 or more",
            ),
            (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1, "val/test fractions must be in (0, 1)"),
            (
                not self.allow_missing_weights or self.backbone.startswith("hf:"),
                "allow_missing_weights applies to hf: backbones only",
            ),
        ]
        check_device_name(self.device)
        for ok, message in checks:
            if not ok:
                raise GalaxAlignError(f"config: {message}")
        self._check_symbol_flags()
        self._check_unlabelled_flags()
        self._check_feature_cache_flags()

    @property
    def learns_from_unlabelled(self) -> bool:
        """Whether the method can use unlabelled galaxies: it aligns images with class texts and
        classifies by their prototypes (no head), so prototypes can pseudo-label them."""
        return "image" in self.spec.aligns and not self.spec.head

    def _check_unlabelled_flags(self) -> None:
        if not (self.unlabelled_weight >= 0 and 0 < self.pseudo_threshold <= 1):
            raise GalaxAlignError("config: unlabelled_weight must be 0 or more and pseudo_threshold in (0, 1]")
        if not self.unlabelled_weight:
            if self.pseudo_threshold != 0.9:
                raise GalaxAlignError("config: --pseudo-threshold does nothing without --unlabelled-weight")
            return
        if not self.learns_from_unlabelled:
            raise GalaxAlignError(
                f"config: --unlabelled-weight does nothing for method {self.method}, which has no "
                "prototypes to pseudo-label with (methods that do: "
                + ", ".join(m.name for m in METHODS.values() if "image" in m.aligns and not m.head)
                + ")"
            )
        if self.label_fraction >= 1:
            raise GalaxAlignError(
                "config: --unlabelled-weight does nothing at --label-fraction 1 (no galaxy is unlabelled)"
            )

    def _check_feature_cache_flags(self) -> None:
        """The cache needs galaxy images and a frozen lower image tower to keep; the checks that
        need the model (a tower that splits, the memory) are made by training.feature_cache."""
        views = self.feature_cache_views
        if views < 0:
            raise GalaxAlignError("config: feature_cache_views must be 0 or more")
        if not views:
            return
        if not self.spec.images:
            raise GalaxAlignError(
                f"config: --feature-cache-views does nothing for method {self.method}, which trains on no galaxy images"
            )
        if self.image_blocks == -1:
            raise GalaxAlignError(
                "config: --feature-cache-views caches the frozen lower image blocks, and trainable image blocks "
                "-1 trains them all (give --trainable-blocks or --image-trainable-blocks N)"
            )
        if self.unlabelled_weight and views < 2:
            raise GalaxAlignError(
                "config: --unlabelled-weight with --feature-cache-views needs at least 2 views "
                "(each unlabelled galaxy's weak and strong views are two different cached ones)"
            )

    def _check_symbol_flags(self) -> None:
        """A symbol source the method cannot use is refused: a flag that does nothing is bad input."""
        default = SYMBOL_SOURCES[0]
        if self.symbol_source != default and not self.spec.uses_symbols:
            users = ", ".join(m.name for m in METHODS.values() if m.uses_symbols)
            raise GalaxAlignError(
                f"config: --symbol-source {self.symbol_source} does nothing for method {self.method}, which "
                f"trains no symbols (methods that do: {users})"
            )
        if self.symbol_source in ("galaxy", "domain") and not self.spec.images:
            raise GalaxAlignError(
                f"config: --symbol-source {self.symbol_source} does nothing for method {self.method}, which "
                "trains on no galaxies (these symbols are made for its labelled galaxies, at their size)"
            )

    def for_method(self, method: str, **changes) -> TrainConfig:
        """This config for another method (a job's per-run copy): symbol, unlabelled and feature-cache
        settings the method cannot use fall back to their defaults, so one benchmark flag applies to
        the methods that use it."""
        spec = METHODS[method] if method in METHODS else None
        uses = (
            spec is not None and spec.uses_symbols and (spec.images or self.symbol_source not in ("galaxy", "domain"))
        )
        source = self.symbol_source if uses else SYMBOL_SOURCES[0]
        semi = spec is not None and "image" in spec.aligns and not spec.head
        unlabelled = {} if semi else {"unlabelled_weight": 0.0, "pseudo_threshold": 0.9}
        cache = {} if spec is not None and spec.images else {"feature_cache_views": 0}  # no galaxy images
        return replace(self, **{"symbol_source": source, **unlabelled, **cache, **changes, "method": method})

    @property
    def spec(self) -> Method:
        """The row of `METHODS` this run trains."""
        return METHODS[self.method]

    @property
    def uses_text(self) -> bool:
        return self.spec.uses_text

    @property
    def image_blocks(self) -> int:
        return self.trainable_blocks if self.image_trainable_blocks is None else self.image_trainable_blocks

    @property
    def text_blocks(self) -> int:
        return self.trainable_blocks if self.text_trainable_blocks is None else self.text_trainable_blocks

    @property
    def uses_symbols(self) -> bool:
        return self.spec.uses_symbols

    def scoring_modes(self, stage: int) -> tuple[str, ...]:
        """The scorings validation chooses among in `stage`: the method's, or the one fixed mode."""
        if self.scoring == "fixed":
            return (self.spec.fixed_scoring_at(stage),)
        return self.spec.scoring_at(stage)

    @property
    def stage2_epoch(self) -> int | None:
        """The first epoch of stage 2, None for a run with one stage."""
        split_at = round(self.epochs * self.stage1_fraction)
        return split_at if self.spec.two_stages and split_at < self.epochs else None

    def validated_epochs(self) -> list[int]:
        """The epochs after which the run validates (0-based). With `validations`, that many spread
        evenly over the stage whose weights are kept (stage 2 of a two-stage run), the last epoch
        included; otherwise every `val_every` epochs and the last."""
        if not self.validations:
            return [e for e in range(self.epochs) if (e + 1) % self.val_every == 0 or e + 1 == self.epochs]
        start = self.stage2_epoch if self.stage2_epoch is not None else 0
        length = self.epochs - start
        n = min(self.validations, length)
        return sorted({start + round((k + 1) * length / n) - 1 for k in range(n)})

    # Fields renamed since runs were first saved: an old config.json still loads.
    RENAMED: ClassVar[dict[str, tuple[str, dict]]] = {"symbols": ("symbol_source", {"class": "drawn"})}
