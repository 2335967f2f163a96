"""Training: the Classifier artefact, losses, optimizers and the Lightning loop."""

from cnnlab.train.classifier import Classifier
from cnnlab.train.fit import TrainResult, best_epoch, load_weights, train
from cnnlab.train.losses import LOSSES
from cnnlab.train.optim import OPTIMIZERS

__all__ = ["Classifier", "LOSSES", "OPTIMIZERS", "TrainResult", "best_epoch", "load_weights", "train"]
