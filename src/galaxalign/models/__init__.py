"""Image/text towers and the models built on them.

`backbones` is the registry (`build_backbone("packaged")`); `convert` turns the packaged DINOv2
ONNX file into torch weights; `efficientnet` is a small EfficientNet-Lite0.
"""

from galaxalign.models.backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    build_backbone,
    list_backbones,
    register_backbone,
)

__all__ = ["DEFAULT_BACKBONE", "Backbone", "build_backbone", "list_backbones", "register_backbone"]
