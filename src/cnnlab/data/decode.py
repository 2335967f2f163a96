"""Decoding a file list in chunks, with ``data.on_bad_image`` deciding what a bad file does.

Both caches use it: the in-memory path concatenates the chunks, the disk cache writes each
chunk straight into its memory-mapped file, so no more than one chunk of decoded images is
ever held besides the destination. A bad file (zero bytes, corrupt, truncated, a
decompression bomb) is an error naming it (``on_bad_image: error``) or is left out and
listed (``skip``); whichever images are kept, their positions in the input list are returned
so labels follow them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from cnnlab.errors import DataError

# Images decoded per chunk: enough for the thread pool to keep every core busy, few enough
# that a chunk of 224-px RGB images stays around 40 MB.
CHUNK = 256


@dataclass
class Skipped:
    """Files left out under ``on_bad_image: skip``, with why (the error's message)."""

    files: list[dict] = field(default_factory=list)  # [{"file": str, "reason": str}]

    def add(self, path: Path, reason: str) -> None:
        self.files.append({"file": str(path), "reason": reason})

    def describe(self) -> dict:
        return {"count": len(self.files), "files": list(self.files)}


def decode_chunks(files: list[Path], size: tuple[int, int] | None, channels: int, *,
                  skip_bad: bool = False, skipped: Skipped | None = None, chunk: int = CHUNK
                  ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(positions, images)`` per chunk: the kept files' indices into ``files`` and their
    (k, C, H, W) uint8 images. Without ``size`` every image must share the first one's size."""
    from cnnlab.data.imagefolder import decode_one

    def attempt(path: Path):
        try:
            return decode_one(path, size, channels)
        except DataError as exc:
            if not skip_bad:
                raise
            return str(exc)

    shape = None
    # Decoding releases the GIL inside torchvision and PIL, so threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        for start in range(0, len(files), chunk):
            batch = files[start:start + chunk]
            kept, images = [], []
            for offset, result in enumerate(pool.map(attempt, batch)):
                if isinstance(result, str):
                    if skipped is not None:
                        skipped.add(batch[offset], result)
                    continue
                if shape is None:
                    shape = tuple(result.shape)
                elif tuple(result.shape) != shape:
                    raise DataError(
                        f"The images have different sizes (e.g. {shape[1:]} and "
                        f"{tuple(result.shape[1:])}, the latter {batch[offset]}); set "
                        "data.image_size to resize them all to one size.")
                kept.append(start + offset)
                images.append(result)
            if images:
                yield np.asarray(kept, dtype=np.int64), torch.stack(images)


def image_shape(files: list[Path], size: tuple[int, int] | None, channels: int,
                skip_bad: bool) -> tuple[int, int, int] | None:
    """The (C, H, W) every decoded image will have: from ``size``, else the first readable file
    (None when no file is readable under ``skip``)."""
    if size is not None:
        return (channels, *size)
    from cnnlab.data.imagefolder import decode_one

    for path in files:
        try:
            return tuple(decode_one(path, None, channels).shape)
        except DataError:
            if not skip_bad:
                raise
    return None
