"""Augmentations that respect what a galaxy image means.

A galaxy has no preferred orientation or handedness on the sky, so any rotation and any flip
gives an equally real galaxy; small shifts and scale changes mimic centring and distance
differences. Colour is left alone: g/r/z colour tracks stellar populations, and hue jitter
would teach the model to ignore physics. Everything is one affine resample per image (pure
torch, no torchvision), drawn from a `torch.Generator` so a batch can be reproduced exactly.

Training, evaluation and classification share one resize (`resize_batch`): a centre crop and an
antialiased resize with the backbone's own interpolation (`Resize`, from the checkpoint's
preprocessing), run on the model's device from uint8 pixels, so the three cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Resize:
    """How an image becomes model input: the interpolation, and the share of the centred square
    kept before resizing (CLIP-style `crop_size / size`; 1 keeps the whole square)."""

    interpolation: str = "bilinear"
    crop_fraction: float = 1.0

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not 0 < self.crop_fraction <= 1:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")


def _as_float_batch(batch: torch.Tensor | np.ndarray, crop_fraction: float = 1.0) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] from uint8 or float, channels first or last, centre-cropped
    square (then to `crop_fraction` of its side)."""
    x = torch.as_tensor(batch)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
        raise ValueError(f"expected a (B, 3, H, W) or (B, H, W, 3) batch, got shape {tuple(x.shape)}")
    if x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    h, w = x.shape[-2:]
    side = min(h, w)
    if crop_fraction < 1:
        side = max(1, round(side * crop_fraction))
    top, left = (h - side) // 2, (w - side) // 2
    return x[:, :, top : top + side, left : left + side]


def _resize(x: torch.Tensor, size: int, interpolation: str = "bilinear") -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    if interpolation == "nearest":
        return F.interpolate(x, size=(size, size), mode="nearest-exact")
    out = F.interpolate(x, size=(size, size), mode=interpolation, align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out  # bicubic overshoots, as PIL clips


def resize_batch(batch: torch.Tensor | np.ndarray, size: int, resize: Resize = Resize()) -> torch.Tensor:
    """Model input before normalisation: (B, 3, size, size) float in [0, 1] on the batch's device."""
    return _resize(_as_float_batch(batch, resize.crop_fraction), size, resize.interpolation)


class GalaxyAugment:
    """Random rotation (0-360 deg), flips, shift and scale jitter, then output at `out_size`.

    `max_shift` is a fraction of the image side; `scale` a (min, max) zoom (above 1 zooms in).
    Corners uncovered by a rotation are filled by reflection (default), which continues the sky
    background instead of drawing black corners a model could learn from.
    """

    def __init__(
        self,
        out_size: int,
        rotate: bool = True,
        flip: bool = True,
        max_shift: float = 0.05,
        scale: tuple[float, float] = (0.9, 1.1),
        padding: str = "reflection",
        resize: Resize = Resize(),
    ):
        if padding not in ("reflection", "zeros", "border"):
            raise ValueError(f"padding must be reflection, zeros or border, got {padding!r}")
        self.out_size = out_size
        self.rotate, self.flip = rotate, flip
        self.max_shift, self.scale, self.padding = max_shift, scale, padding
        self.resize = resize

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw one set of transform parameters per image."""

        def uniform(lo: float, hi: float, shape: tuple[int, ...] = (batch_size,)) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(shape, generator=generator)

        b = batch_size
        flips = torch.rand((b, 2), generator=generator) < 0.5
        return {
            "angle": uniform(0.0, 2 * math.pi) if self.rotate else torch.zeros(b),
            "flip_h": flips[:, 0] if self.flip else torch.zeros(b, dtype=torch.bool),
            "flip_v": flips[:, 1] if self.flip else torch.zeros(b, dtype=torch.bool),
            "scale": uniform(*self.scale),
            "shift": uniform(-self.max_shift, self.max_shift, (b, 2)),
        }

    def apply(self, batch: torch.Tensor | np.ndarray, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Resample each image with its parameters: angle (radians, counter-clockwise as displayed),
        flips, zoom `scale`, and `shift` (fraction of the side, x then y)."""
        x = resize_batch(batch, self.out_size, self.resize)
        cos, sin = torch.cos(params["angle"]), torch.sin(params["angle"])
        sx = torch.where(params["flip_h"], -1.0, 1.0) / params["scale"]
        sy = torch.where(params["flip_v"], -1.0, 1.0) / params["scale"]
        # Output pixel p samples the input at R(angle) diag(sx, sy) p + shift, in normalised
        # coordinates with y pointing down: a positive angle turns the displayed image
        # counter-clockwise (90 degrees is torch.rot90(x, 1, (2, 3))).
        theta = torch.stack(
            [
                torch.stack([cos * sx, -sin * sy, 2 * params["shift"][:, 0]], dim=1),
                torch.stack([sin * sx, cos * sy, 2 * params["shift"][:, 1]], dim=1),
            ],
            dim=1,
        ).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)
        return out.clamp_(0.0, 1.0)

    def __call__(self, batch: torch.Tensor | np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        """A randomly transformed float batch (B, 3, out_size, out_size) in [0, 1]."""
        x = _as_float_batch(batch)
        return self.apply(x, self.sample_params(x.shape[0], generator))


def to_tensor_batch(
    images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
    size: int,
    resize: Resize = Resize(),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Evaluation input, no augmentation: (H, W, 3) uint8 arrays, (3, H, W) uint8 tensors or one
    (B, 3, H, W) uint8 batch, centre-cropped and resized on `device` (default CPU) as training does.

    The uint8 pixels travel to the device (pinned, asynchronously, for CUDA) and are resized
    there, one call per batch when the images share a shape.
    """
    target = torch.device(device or "cpu")
    if isinstance(images, torch.Tensor):
        return resize_batch(to_device(images, target), size, resize)
    if len(images) == 0:
        return torch.zeros((0, 3, size, size), device=target)
    chw = [
        image
        if isinstance(image, torch.Tensor)
        # torch shares the array's memory: a read-only one (a decoded PIL image) is copied first
        else torch.from_numpy(np.require(image, np.uint8, "W")).permute(2, 0, 1)
        for image in images
    ]
    if all(image.shape == chw[0].shape for image in chw):
        return resize_batch(to_device(torch.stack(chw), target), size, resize)
    return torch.cat([resize_batch(to_device(image[None], target), size, resize) for image in chw])


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`batch` on `device` without making the host wait: pinned and asynchronous for CUDA (a
    pageable or blocking host-to-device copy stalls the host until the GPU has caught up)."""
    if device.type == "cuda" and batch.device.type == "cpu":
        batch = batch if batch.is_pinned() else batch.pin_memory()
    return batch.to(device, non_blocking=True)
