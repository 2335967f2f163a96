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


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views whose predictions are averaged: the image, its mirror, and one-pixel shifts."""
    if tta == "none":
        return [x]
    views = [x, x.flip(-1)]
    if tta == "flip_shift":
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
        h, w = x.shape[-2:]
        for view in (padded, padded.flip(-1)):
            views += [view[..., 0:h, 0:w], view[..., 2:h + 2, 2:w + 2]]
    return views


@torch.inference_mode()
def predict_probs(classifier: torch.nn.Module, images: torch.Tensor, *, batch_size: int = 1024,
                  channels_last: bool = True, tta: str = "none") -> tuple[torch.Tensor, float]:
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
        views = tta_views(x, tta)
        probs = sum(classifier(v).float().softmax(dim=1) for v in views) / len(views)
        outputs.append(probs.cpu())
    seconds = time.perf_counter() - started
    classifier.train(was_training)
    probs = torch.cat(outputs) if outputs else torch.zeros((0, 0))
    return probs, len(images) / max(seconds, 1e-9)


def evaluate(classifier: torch.nn.Module, split: Split, classes: list[str], *,
             batch_size: int = 1024, channels_last: bool = True, tta: str = "none") -> EvalResult:
    probs, speed = predict_probs(classifier, split.images, batch_size=batch_size,
                                 channels_last=channels_last, tta=tta)
    metrics = classification_metrics(probs, split.labels, classes)
    return EvalResult(metrics, probs, split.labels, speed)
