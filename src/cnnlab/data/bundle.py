"""The in-memory dataset every later stage reads: uint8 image tensors split three ways."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Split:
    """Images of one split, decoded once and kept as uint8."""

    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, self.images.shape
        assert self.labels.shape == (self.images.shape[0],), (self.labels.shape, self.images.shape)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class DataBundle:
    """Training, validation and (optional) test splits plus how to scale their pixels.

    ``mean``/``std`` are per channel on the 0-255 scale, so the model computes
    ``(x - mean) / std`` on raw pixel values whatever the normalization mode.
    """

    classes: list[str]
    train: Split
    val: Split | None
    test: Split | None
    normalization: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def streamed(self) -> bool:
        """Decoded per epoch by DataLoader workers (``data.cache: none``), not held as tensors."""
        return "stream" in self.info

    @property
    def in_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def splits(self) -> dict[str, Split]:
        named = {"train": self.train, "val": self.val, "test": self.test}
        return {k: v for k, v in named.items() if v is not None}

    def describe(self) -> dict:
        return {
            "classes": self.classes,
            "in_shape": list(self.in_shape),
            "normalization": self.normalization,
            "mean": list(self.mean),
            "std": list(self.std),
            "sizes": {k: len(v) for k, v in self.splits().items()},
            **self.info,
        }
