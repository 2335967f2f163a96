"""``evaluate(classifier, split, classes) -> EvalResult``: predictions and metrics of one split.

Prediction runs in large no-grad batches; its throughput (images/s) is measured here because
it is what a user deploying the model will see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from cnnlab.data import Split
from cnnlab.evaluate.metrics import classification_metrics


@dataclass
class EvalResult:
    metrics: dict
    probs: torch.Tensor  # (N, K)
    targets: torch.Tensor  # (N,)
    images_per_s: float

    @property
    def predictions(self) -> torch.Tensor:
        return self.probs.argmax(dim=1)


@torch.inference_mode()
def predict_probs(classifier: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 1024,
                  channels_last: bool = True) -> tuple[torch.Tensor, float]:
    """Softmax probabilities (N, K) for uint8 images (N, C, H, W), and images per second."""
    was_training = classifier.training
    classifier.eval()
    device = next(classifier.parameters()).device
    outputs = []
    started = time.perf_counter()
    for chunk in images.split(batch_size):
        x = chunk.to(device, non_blocking=True).float()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs.append(classifier(x).float().softmax(dim=1).cpu())
    seconds = time.perf_counter() - started
    classifier.train(was_training)
    probs = torch.cat(outputs) if outputs else torch.zeros((0, 0))
    return probs, len(images) / max(seconds, 1e-9)


def evaluate(classifier: torch.nn.Module, split: Split, classes: list[str], *,
             batch_size: int = 1024, channels_last: bool = True) -> EvalResult:
    probs, speed = predict_probs(classifier, split.images, batch_size=batch_size,
                                 channels_last=channels_last)
    metrics = classification_metrics(probs, split.labels, classes)
    return EvalResult(metrics, probs, split.labels, speed)
