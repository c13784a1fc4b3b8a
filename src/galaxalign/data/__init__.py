"""Galaxy data: image decoding, datasets, splits and augmentation."""

from galaxalign.data.augment import GalaxyAugment, to_tensor_batch
from galaxalign.data.datasets import (
    GALAXY10_DECALS_SHA256,
    CatalogDataset,
    DatasetView,
    FolderDataset,
    GalaxyDataset,
    H5Dataset,
    PathLabelCSVDataset,
    Sample,
    open_dataset,
    sha256_file,
)
from galaxalign.data.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    asinh_stretch,
    decode_image_bytes,
    is_image_file,
    load_image,
    resize_square,
)
from galaxalign.data.shards import ParquetImageShard, WebDatasetShard, expand_inputs, open_shard
from galaxalign.data.splits import Split, label_fraction, labels_fingerprint, make_split

__all__ = [
    "GALAXY10_DECALS_SHA256",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "CatalogDataset",
    "DatasetView",
    "FolderDataset",
    "GalaxyAugment",
    "GalaxyDataset",
    "H5Dataset",
    "ParquetImageShard",
    "PathLabelCSVDataset",
    "Sample",
    "Split",
    "WebDatasetShard",
    "asinh_stretch",
    "decode_image_bytes",
    "expand_inputs",
    "is_image_file",
    "label_fraction",
    "labels_fingerprint",
    "load_image",
    "make_split",
    "open_dataset",
    "open_shard",
    "resize_square",
    "sha256_file",
    "to_tensor_batch",
]
