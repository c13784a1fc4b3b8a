"""Deterministic batches: which samples, which augmentation, which text and which symbol.

Every random choice for a sample is drawn from a generator seeded by (run seed, epoch, position
in the epoch). The same global batch therefore comes out whether it is built by one process or
split across DDP ranks, and a resumed run rebuilds exactly the batches it would have seen.

A batch reaches the device without making the host wait for it: its integer rows (labels, text,
symbol and caption rows, and which of them are distinct, found here on the host rather than by
a `torch.unique` on the device) travel as one pinned tensor, its augmentation parameters and
images asynchronously. Batches are planned one at a time as the loader asks for them
(`stream`), so the first one is read after planning it alone, not the whole epoch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from galaxalign.data import GalaxyAugment, GalaxyDataset
from galaxalign.data.augment import Resize, to_device
from galaxalign.data.loader import image_batches

if TYPE_CHECKING:
    from galaxalign.training.domain import DomainSymbols
    from galaxalign.training.feature_cache import FeatureCache


def epoch_order(labels: np.ndarray, batch_size: int, seed: int, epoch: int, balanced: bool) -> np.ndarray:
    """Positions into `labels` for one epoch: whole batches, at least one.

    Balanced: each sample's class is drawn uniformly, then a member of it (with replacement),
    so rare classes are seen as often as common ones. Otherwise a permutation, cycled if the
    labelled set is smaller than a batch.
    """
    n = len(labels)
    steps = max(1, n // batch_size)
    length = steps * batch_size
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    if balanced:
        classes = np.unique(labels)
        members = [np.flatnonzero(labels == c) for c in classes]
        picks = rng.integers(0, len(classes), size=length)
        return np.array([members[c][rng.integers(0, len(members[c]))] for c in picks])
    order = rng.permutation(n)
    return np.resize(order, length)


@dataclass
class Batch:
    pixels: torch.Tensor | None  # (b, 3, S, S), normalised, on the training device; None: no galaxy images
    labels: torch.Tensor  # (b,)
    text_rows: torch.Tensor  # (b,) index into the text bank: a class phrase (the image-text loss)
    symbol_rows: torch.Tensor  # (b,) index into the flattened symbol bank (class * V + variant)
    symbol_pixels: torch.Tensor | None = None  # (b, 3, S, S): each galaxy's own symbol, in its own pose
    caption_rows: torch.Tensor | None = None  # (b,) each galaxy's own caption in the text bank (symbol losses)
    unlabelled_weak: torch.Tensor | None = None  # (u, 3, S, S): unlabelled galaxies, the pseudo-labelling view
    unlabelled_strong: torch.Tensor | None = None  # (u, 3, S, S): the same galaxies, the view that learns
    # With a feature cache, in place of `pixels`: each sample's cached view after the image tower's
    # first `image_start` blocks (the frozen ones).
    image_hidden: torch.Tensor | None = None
    image_start: int = 0
    unlabelled_hidden: tuple[torch.Tensor, torch.Tensor] | None = None  # cached (weak, strong) views
    # For each of the row fields above: its distinct values (sorted) and each sample's place
    # among them, as torch.unique(rows, return_inverse=True) gives, found on the host.
    distinct: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def has_unlabelled(self) -> bool:
        return self.unlabelled_weak is not None or self.unlabelled_hidden is not None

    def distinct_of(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(distinct rows, inverse) of one of this batch's row fields, given as the field itself;
        None for any other tensor (a gathered one under DDP), which then needs torch.unique."""
        for name, found in self.distinct.items():
            if getattr(self, name) is rows:
                return found
        return None


@dataclass
class BatchPlan:
    """Every random choice of a batch, made before any image is read (cheap, in the main process)."""

    indices: list[int]  # dataset indices, in batch order
    locals: list[int]  # positions in the labelled training set (rows of per-galaxy symbols and captions)
    params: list[dict[str, torch.Tensor]]  # augmentation parameters, one set per image
    labels: list[int]
    text_rows: list[int]
    symbol_rows: list[int]
    caption_rows: list[int] = field(default_factory=list)  # with per-galaxy symbols: each one's caption,
    drawings: list[int] = field(default_factory=list)  # which of its drawings (galaxy * V + drawing)
    render_seeds: list[int] = field(default_factory=list)  # domain symbols: each one's rendering
    symbol_params: list[dict[str, torch.Tensor]] = field(default_factory=list)  # their own augmentation
    # Semi-supervised: training galaxies without labels, each with two augmentations of its own
    # (the view that pseudo-labels it, and the view that learns from that label).
    unlabelled: list[int] = field(default_factory=list)
    weak_params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    strong_params: list[dict[str, torch.Tensor]] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)  # with a feature cache: each sample's row in it
    weak_cached: list[int] = field(default_factory=list)  # and each unlabelled galaxy's two views' rows
    strong_cached: list[int] = field(default_factory=list)

    @property
    def reads(self) -> list[int]:
        """Every dataset index the batch reads: its labelled galaxies, then its unlabelled ones."""
        return self.indices + self.unlabelled


class BatchBuilder:
    """Plans the samples at given epoch positions, then turns their decoded images into model input.

    Planning and reading are separate so that images can be read by DataLoader workers while
    every random choice stays in the seeded plan: a batch is the same for any worker count.
    With per-galaxy symbols (`galaxy_symbols`, uint8 (N, V, S, S): V drawings per labelled
    galaxy at its apparent size, in a canonical pose) and captions (`galaxy_text_rows`), each
    sample's symbol is one of its galaxy's drawings with an augmentation of its own (never its
    image's pose, which would let image-symbol matching run on orientation alone) and its caption
    goes to the symbol losses; the image-text loss keeps the class phrase that scoring uses.
    """

    def __init__(
        self,
        dataset: GalaxyDataset,
        indices: np.ndarray,
        labels: np.ndarray,
        image_size: int,
        normalize,
        text_owners: torch.Tensor,
        symbol_variants: int,
        seed: int,
        galaxy_symbols: torch.Tensor | None = None,
        galaxy_text_rows: np.ndarray | None = None,
        resize: Resize = Resize(),
        domain: DomainSymbols | None = None,
        radii: np.ndarray | None = None,
        unlabelled: np.ndarray | None = None,
    ):
        self.dataset, self.indices, self.labels = dataset, indices, labels
        self.augment = GalaxyAugment(image_size, resize=resize)  # the backbone's interpolation and crop
        self.normalize = normalize
        owners = text_owners.cpu().numpy()  # planning is host work: numpy, no device tensor
        self.texts_by_class = [np.flatnonzero(owners == c) for c in range(int(owners.max()) + 1)]
        self.symbol_variants = symbol_variants
        self.seed = seed
        self.galaxy_symbols, self.galaxy_text_rows = galaxy_symbols, galaxy_text_rows
        self.domain, self.radii = domain, radii  # class drawings rendered like survey images, per sample
        self.unlabelled = unlabelled  # dataset indices of the training galaxies without labels
        # Symbols lie on a black sky: corners uncovered by a turn are black, not reflected copies.
        self.symbol_augment = GalaxyAugment(image_size, padding="zeros", resize=resize)
        # Set by the trainer with --feature-cache-views: each sample takes one of its galaxy's cached views.
        self.feature_cache: FeatureCache | None = None

    def plan(self, epoch: int, order: np.ndarray, positions: range) -> BatchPlan:
        plan = BatchPlan([], [], [], [], [], [])
        for position in positions:
            local = int(order[position])
            label = int(self.labels[local])
            rng = np.random.default_rng([self.seed, epoch, position])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            plan.indices.append(int(self.indices[local]))
            plan.locals.append(local)
            plan.params.append(self.augment.sample_params(1, generator))
            if self.feature_cache is not None:  # one of the galaxy's fixed views, whose augmentation it records
                view = self.feature_cache.choice(self.seed, epoch, position)
                plan.cached.append(self.feature_cache.row(plan.indices[-1], view))
                plan.params[-1] = self.feature_cache.params[plan.cached[-1]]
            plan.labels.append(label)
            candidates = self.texts_by_class[label]
            class_text = int(candidates[rng.integers(len(candidates))])
            plan.text_rows.append(class_text)
            plan.symbol_rows.append(label * self.symbol_variants + int(rng.integers(self.symbol_variants)))
            if self.galaxy_symbols is not None and self.galaxy_text_rows is not None:
                drawings = self.galaxy_symbols.shape[1]
                plan.caption_rows.append(int(self.galaxy_text_rows[local]))
                plan.drawings.append(local * drawings + int(rng.integers(drawings)))
                own = torch.Generator().manual_seed(int(rng.integers(2**62)))
                plan.symbol_params.append(self.symbol_augment.sample_params(1, own))
            if self.domain is not None:
                plan.render_seeds.append(int(rng.integers(2**62)))
                own = torch.Generator().manual_seed(int(rng.integers(2**62)))
                plan.symbol_params.append(self.augment.sample_params(1, own))
            if self.unlabelled is not None and len(self.unlabelled):
                pick = np.random.default_rng([self.seed, epoch, position, 0x0A11])
                plan.unlabelled.append(int(self.unlabelled[pick.integers(len(self.unlabelled))]))
                views = torch.Generator().manual_seed(int(pick.integers(2**62)))
                plan.weak_params.append(self.augment.sample_params(1, views))
                plan.strong_params.append(self.augment.sample_params(1, views))
                if self.feature_cache is not None:  # two different fixed views of the galaxy
                    weak_view, strong_view = self.feature_cache.pair(self.seed, epoch, position)
                    plan.weak_cached.append(self.feature_cache.row(plan.unlabelled[-1], weak_view))
                    plan.strong_cached.append(self.feature_cache.row(plan.unlabelled[-1], strong_view))
                    plan.weak_params[-1] = self.feature_cache.params[plan.weak_cached[-1]]
                    plan.strong_params[-1] = self.feature_cache.params[plan.strong_cached[-1]]
        return plan

    def read(self, plan: BatchPlan) -> list[torch.Tensor]:
        """The plan's images as (3, H, W) uint8 tensors, read in this process."""
        return [self.image(i) for i in plan.reads]

    def image(self, index: int) -> torch.Tensor:
        """One galaxy's image as a (3, H, W) uint8 tensor."""
        return torch.from_numpy(self.dataset[index].image).permute(2, 0, 1)

    def augmented(
        self, images: list[torch.Tensor] | torch.Tensor, params: list[dict[str, torch.Tensor]], device: torch.device
    ) -> torch.Tensor:
        """Model input: each image augmented with its parameters, normalised (as a batch's `pixels`)."""
        return self.normalize(self._augmented(images, params, device))

    def assemble(
        self, plan: BatchPlan, images: list[torch.Tensor] | torch.Tensor | None, device: torch.device | None = None
    ) -> Batch:
        """Augment the decoded images (None: a method without images) on `device` with the plan's parameters."""
        device = device or torch.device("cpu")
        symbols = None
        if self.galaxy_symbols is not None:
            drawn = to_device(self.galaxy_symbols.flatten(0, 1)[plan.drawings][:, None], device)
            drawn = drawn.expand(-1, 3, -1, -1)
            symbols = self.normalize(self._augmented(drawn, plan.symbol_params, device, self.symbol_augment))
        if self.domain is not None and self.radii is not None:
            rendered = self.domain.render(
                plan.symbol_rows, plan.labels, list(self.radii[plan.locals]), plan.render_seeds
            )
            pixels = torch.from_numpy(rendered).permute(0, 3, 1, 2)
            symbols = self.normalize(self._augmented(pixels, plan.symbol_params, device))
        weak = strong = None
        if images is not None and plan.unlabelled:  # the unlabelled galaxies follow the labelled ones
            n = len(plan.indices)
            images, extra = images[:n], images[n:]
            weak = self.normalize(self._augmented(extra, plan.weak_params, device))
            strong = self.normalize(self._augmented(extra, plan.strong_params, device))
        fields, distinct = self._rows(plan, device)
        cache, hidden, unlabelled = self.feature_cache, None, None
        if cache is not None and plan.cached and images is None:  # the cached views instead of pixels
            hidden = cache.take(plan.cached, device)
            if plan.weak_cached:
                unlabelled = (cache.take(plan.weak_cached, device), cache.take(plan.strong_cached, device))
        return Batch(
            pixels=None if images is None else self.normalize(self._augmented(images, plan.params, device)),
            image_hidden=hidden,
            image_start=cache.start if hidden is not None and cache is not None else 0,
            unlabelled_hidden=unlabelled,
            labels=fields["labels"],
            text_rows=fields["text_rows"],
            symbol_rows=fields["symbol_rows"],
            symbol_pixels=symbols,
            caption_rows=fields.get("caption_rows"),
            distinct=distinct,
            unlabelled_weak=weak,
            unlabelled_strong=strong,
        )

    @staticmethod
    def _rows(
        plan: BatchPlan, device: torch.device
    ) -> tuple[dict[str, torch.Tensor], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """The plan's integer rows and, for each row field, its distinct values and inverse, all
        on `device` by one asynchronous copy (several small blocking ones stalled every step)."""
        rows = {"labels": plan.labels, "text_rows": plan.text_rows, "symbol_rows": plan.symbol_rows}
        if plan.caption_rows:
            rows["caption_rows"] = plan.caption_rows
        parts: list[np.ndarray] = [np.asarray(v, dtype=np.int64) for v in rows.values()]
        sizes = [len(v) for v in parts]
        for name in list(rows)[1:]:
            unique, inverse = np.unique(parts[list(rows).index(name)], return_inverse=True)
            parts += [unique, inverse.reshape(-1)]
            sizes += [len(unique), len(inverse)]
        flat = to_device(torch.from_numpy(np.concatenate(parts)), device)
        pieces = iter(flat.split(sizes))
        fields = {name: next(pieces) for name in rows}
        distinct = {name: (next(pieces), next(pieces)) for name in list(rows)[1:]}
        return fields, distinct

    def build(self, epoch: int, order: np.ndarray, positions: range, device: torch.device | None = None) -> Batch:
        plan = self.plan(epoch, order, positions)
        return self.assemble(plan, self.read(plan), device)

    def stream(
        self,
        epoch: int,
        order: np.ndarray,
        starts: list[int],
        size: int,
        device: torch.device,
        workers: int = 0,
        images: bool = True,
    ) -> Generator[Batch, None, None]:
        """The batches of `size` samples from each epoch position in `starts`, in order.

        Each is planned only when the loader asks for its indices (with workers, a few batches
        ahead of training, so planning overlaps the steps); the batches are those that planning
        them all first would give. `images` False: no galaxy images are read.
        """
        plans = (self.plan(epoch, order, range(start, start + size)) for start in starts)
        if not images or self.feature_cache is not None:  # class symbols and phrases alone, or cached views
            for plan in plans:
                yield self.assemble(plan, None, device)
            return
        planned: deque[BatchPlan] = deque()

        def indices() -> Iterator[list[int]]:
            for plan in plans:
                planned.append(plan)
                yield plan.reads

        decoded = image_batches(self.dataset, indices(), workers=workers, pin_memory=device.type == "cuda")
        for pixels in decoded:
            yield self.assemble(planned.popleft(), pixels, device)

    def _augmented(
        self,
        images: list[torch.Tensor] | torch.Tensor,
        params: list[dict[str, torch.Tensor]],
        device: torch.device,
        augment: GalaxyAugment | None = None,
    ) -> torch.Tensor:
        """Each image resampled with its own parameters, in one `apply` per image shape.

        Bitwise the same pixels as augmenting image by image, without ~10 small tensor ops per
        image (docs/performance.md has the timing).
        """
        augment = augment or self.augment
        if isinstance(images, torch.Tensor):  # one shape (an h5): one apply
            group = {key: to_device(torch.cat([p[key] for p in params]), device) for key in params[0]}
            return augment.apply(to_device(images, device), group)
        out: dict[int, torch.Tensor] = {}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(tuple(image.shape), []).append(i)
        for rows in by_shape.values():
            group = {key: to_device(torch.cat([params[i][key] for i in rows]), device) for key in params[0]}
            stacked = to_device(torch.stack([images[i] for i in rows]), device)
            for i, pixels in zip(rows, augment.apply(stacked, group)):
                out[i] = pixels
        return torch.stack([out[i] for i in range(len(images))])
