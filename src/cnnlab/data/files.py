"""Sources made of image files with labels (image folders, a CSV of labels): listed first,
decoded after.

Listing is cheap (names, labels, stats); decoding is the cost. Keeping the two apart lets the
in-memory path decode everything at once, and the disk cache (:mod:`cnnlab.data.disk`) choose
the splits on labels alone and then decode each image once, straight into a memory map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.cache import cache_key, default_cache_dir, load_tensors, save_tensors
from cnnlab.data.decode import Skipped, decode_chunks, image_shape
from cnnlab.data.memory import check_fits
from cnnlab.errors import DataError


@dataclass
class FileListing:
    """Class names and, per source part (``train``, ``val``, ``test``), files and labels."""

    classes: list[str]
    parts: dict[str, tuple[list[Path], np.ndarray]]  # part -> (files, (N,) int64 labels)


Lister = Callable[[DataConfig], FileListing]
# Sources that can list their files; only these support `data.cache: disk`.
LISTERS: dict[str, Lister] = {}


def lists_files(name: str) -> Callable[[Lister], Lister]:
    """Declare ``name``'s file lister (a source's ``decode later`` half)."""

    def add(lister: Lister) -> Lister:
        if name in LISTERS:
            raise ValueError(f"file lister {name!r} is already registered")
        LISTERS[name] = lister
        return lister

    return add


def size_tuple(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def content_key(files: list[Path], cfg: DataConfig, what: str) -> str:
    """A hash of the files (path, size, mtime) and of what shapes their decoded pixels, so an
    edited, added or removed image (or another image size) never hits an old entry."""
    stats = []
    for path in files:
        st = path.stat()
        stats.append((str(path), st.st_size, st.st_mtime_ns))
    return cache_key({"files": stats, "size": size_tuple(cfg.image_size),
                      "channels": cfg.channels or 3, "on_bad_image": cfg.on_bad_image,
                      "what": what, "v": 2})


def decode_in_memory(files: list[Path], cfg: DataConfig, skipped: Skipped
                     ) -> tuple[torch.Tensor, np.ndarray]:
    """(N, C, H, W) uint8 of the readable files and their positions in ``files``; cached on
    disk as safetensors (``data.decode_cache``) so the next run starts in seconds."""
    size, channels = size_tuple(cfg.image_size), cfg.channels or 3
    skip = cfg.on_bad_image == "skip"
    path = None
    if cfg.decode_cache and files:
        key = content_key(files, cfg, "memory")
        path = default_cache_dir(cfg.cache_dir) / "images" / f"{key}.safetensors"
        cached = load_tensors(path)
        if cached is not None and "kept" in cached and "skipped" in cached:
            skipped.files.extend(json.loads(bytes(cached["skipped"].tolist()).decode() or "[]"))
            return cached["images"], cached["kept"].numpy()
    if size is not None:
        check_fits(len(files), channels, size, f"image size {size[0]} x {size[1]}")
    positions, chunks = [], []
    for kept, images in decode_chunks(files, size, channels, skip_bad=skip, skipped=skipped):
        positions.append(kept)
        chunks.append(images)
    if chunks:
        images = torch.cat(chunks)
    else:
        shape = image_shape([], size, channels, skip) or (channels, 1, 1)
        images = torch.zeros((0, *shape), dtype=torch.uint8)
    kept = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    if path is not None:
        names = {str(f) for f in files}
        mine = [entry for entry in skipped.files if entry["file"] in names]
        # The skip list travels as UTF-8 bytes in a tensor: load_tensors reads tensors only.
        text = torch.tensor(list(json.dumps(mine).encode()), dtype=torch.uint8)
        save_tensors(path, {"images": images, "kept": torch.from_numpy(kept), "skipped": text},
                     {"count": str(len(files))})
    return images, kept


def load_in_memory(listing: FileListing, cfg: DataConfig
                   ) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], Skipped]:
    """Every part of ``listing`` decoded into memory: ``{part: (images, labels)}``."""
    skipped = Skipped()
    parts = {}
    for part, (files, labels) in listing.parts.items():
        images, kept = decode_in_memory(files, cfg, skipped)
        parts[part] = (images, torch.as_tensor(labels[kept], dtype=torch.int64))
    return parts, skipped


def require_root(root: Path | None, *, unset: str, exists: Callable[[Path], bool],
                 what: str) -> Path:
    """``data.root`` as a path that exists, or a DataError saying what it must be."""
    if root is None:
        raise DataError(f"data.root is not set: {unset}")
    path = Path(root).expanduser()
    if not exists(path):
        raise DataError(f"data.root: {what} {path} does not exist.")
    return path
