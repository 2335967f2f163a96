"""Per-image predictions: test-time augmentation, per-image loss, rows for predictions.csv."""

from __future__ import annotations

import torch

from cnnlab.evaluate.evaluate import predict_probs

PREDICTION_FIELDS = ("id", "true", "predicted", "confidence", "loss")


def predict_with_tta(classifier: torch.nn.Module, images: torch.Tensor, *, tta: bool = False,
                     batch_size: int = 1024, channels_last: bool = False) -> torch.Tensor:
    """Softmax probabilities (N, K); with ``tta`` the mean of the image's and its horizontal
    mirror's probabilities (``predict_probs``'s ``flip`` views)."""
    probs, _ = predict_probs(classifier, images, batch_size=batch_size, channels_last=channels_last,
                             tta="flip" if tta else "none")
    return probs


def per_image_loss(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each image (N,), clipped as the recorded log loss is."""
    eps = torch.finfo(probs.dtype).eps
    picked = probs.to(torch.float64).gather(1, targets.long().view(-1, 1)).squeeze(1)
    return -picked.clamp(eps, 1.0 - eps).log()


def prediction_rows(ids: list[str], probs: torch.Tensor, targets: torch.Tensor,
                    classes: list[str]) -> list[dict]:
    """One row per image: id, true and predicted class names, confidence and loss."""
    predicted = probs.argmax(dim=1).tolist()
    confidence = probs.max(dim=1).values.tolist()
    losses = per_image_loss(probs, targets).tolist()
    return [{"id": image_id, "true": classes[int(t)], "predicted": classes[p],
             "confidence": round(c, 6), "loss": round(loss, 6)}
            for image_id, t, p, c, loss in zip(ids, targets.tolist(), predicted, confidence, losses)]


def hardest(probs: torch.Tensor, targets: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` images with the highest loss, highest first (ties: lower index)."""
    losses = per_image_loss(probs, targets)
    order = sorted(range(len(losses)), key=lambda i: (-float(losses[i]), i))
    return order[:k]
