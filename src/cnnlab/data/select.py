"""Seeded, stratified selection of indices: per-class caps and train/val/test splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from cnnlab.errors import DataError


def select_per_class(labels: np.ndarray, max_per_class: int | None, seed: int) -> np.ndarray:
    """Indices keeping at most ``max_per_class`` of each label (a seeded random choice)."""
    if max_per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        if len(idx) > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def stratified_split(labels: np.ndarray, fraction: float, seed: int, what: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) index arrays with ``fraction`` of each class held out."""
    indices = np.arange(len(labels))
    if fraction <= 0:
        return indices, indices[:0]
    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min())
    if smallest < 2 or round(fraction * len(labels)) < np.count_nonzero(counts):
        raise DataError(
            f"Cannot hold out a stratified {what} split of {fraction:g}: the smallest class has "
            f"{smallest} image(s) among {len(labels)}, too few to put every class on both sides. "
            f"Add images, raise the fraction, or set it to 0.")
    kept, held = train_test_split(indices, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(kept), np.sort(held)
