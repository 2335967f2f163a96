"""Evaluation: predictions of saved weights and the per-class metrics of the reports."""

from cnnlab.evaluate.evaluate import EvalResult, evaluate, predict_probs

__all__ = ["EvalResult", "evaluate", "predict_probs"]
