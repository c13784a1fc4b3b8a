"""Evaluation: classification and retrieval metrics, and scoring a run on its own split.

Imports are lazy so that building the CLI (which reads the benchmark config) stays fast.
"""

__all__ = ["classification_metrics", "evaluate_run", "paired_gap", "retrieval_metrics", "wilson_interval"]

_HOMES = {
    "classification_metrics": "galaxalign.evaluation.metrics",
    "retrieval_metrics": "galaxalign.evaluation.metrics",
    "evaluate_run": "galaxalign.evaluation.evaluate",
    "paired_gap": "galaxalign.evaluation.metrics",
    "wilson_interval": "galaxalign.evaluation.metrics",
}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
