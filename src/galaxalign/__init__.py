"""GalaxAlign: align galaxy images, schematic symbols and text labels in one embedding space."""

from galaxalign._version import __version__
from galaxalign.errors import GalaxAlignError
from galaxalign.taxonomy import load_scheme

__all__ = [
    "EmbedConfig",
    "GalaxAlignError",
    "Searcher",
    "embed_catalogue",
    "evaluate_run",
    "load_index",
    "load_run",
    "load_scheme",
    "run_benchmark",
    "run_demo",
    "train",
    "__version__",
]

# Loaded on first use, so `import galaxalign` stays light (no torch, no faiss).
_LAZY = {
    "load_run": "galaxalign.runs",
    "load_index": "galaxalign.search",
    "Searcher": "galaxalign.search",
    "train": "galaxalign.training",
    "evaluate_run": "galaxalign.evaluation",
    "run_benchmark": "galaxalign.jobs",
    "run_demo": "galaxalign.jobs",
    "embed_catalogue": "galaxalign.jobs",
    "EmbedConfig": "galaxalign.jobs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'galaxalign' has no attribute {name!r}")
