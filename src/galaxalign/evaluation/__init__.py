"""Evaluation: classification and retrieval metrics, scoring a run on its split, the benchmark.

Imports are lazy so that building the CLI (which reads the benchmark config) stays fast.
"""

__all__ = ["classification_metrics", "evaluate_run", "retrieval_metrics", "run_benchmark"]

_HOMES = {
    "classification_metrics": "galaxalign.evaluation.metrics",
    "retrieval_metrics": "galaxalign.evaluation.metrics",
    "evaluate_run": "galaxalign.evaluation.evaluate",
    "run_benchmark": "galaxalign.evaluation.benchmark",
}


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(name)
