"""Evaluation: classification and retrieval metrics, and scoring a trained run on its split."""

from galaxalign.evaluation.metrics import classification_metrics, retrieval_metrics

__all__ = ["classification_metrics", "evaluate_run", "retrieval_metrics"]


def __getattr__(name):
    # evaluate_run loads torch and the model code; the metrics alone need only numpy and sklearn.
    if name == "evaluate_run":
        from galaxalign.evaluation.evaluate import evaluate_run

        return evaluate_run
    raise AttributeError(name)
