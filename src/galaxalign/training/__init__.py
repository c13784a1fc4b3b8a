"""Training: the typed run config and the one trainer for every method."""

from galaxalign.run_config import METHODS, Method, TrainConfig

__all__ = ["METHODS", "Method", "TrainConfig", "train"]


def __getattr__(name):
    # The trainer pulls in torch and the backbones; import it only when asked for.
    if name == "train":
        from galaxalign.training.trainer import train

        return train
    raise AttributeError(name)
