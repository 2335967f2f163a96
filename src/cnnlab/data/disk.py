"""``data.cache: disk``: decode once into a uint8 memory-mapped file, read back by page.

The splits are chosen on labels first (:func:`cnnlab.data.build.plan_splits`, the same
choice as in memory), the images are ordered train, val, test, and each is decoded once, a
chunk at a time, straight into the map. Each split is then a contiguous slice of the map:
a view, never a copy, so resident memory is the page cache of what was read, not the
dataset.

Two kinds of source feed it through one :class:`Decoding` (what to decode, how, and the
content key): sources that list image files (:data:`~cnnlab.data.files.LISTERS`), and indexed
sources (TFRecord, WebDataset: :mod:`cnnlab.data.disk_stream`). The key hashes the files (path,
size, mtime), which samples are in the entry in which order, and everything that shapes their
pixels (image size, channels, ...): an edited, added or removed image or shard makes a new entry
rather than serving a stale one.

An entry is a folder ``<cache_dir>/memmap/<key>/`` holding ``images.u8`` (raw N x C x H x W
bytes), ``kept.npy`` (which listed images it holds) and ``meta.json``; it is built in a
temporary folder and renamed into place, so a crash never leaves half an entry.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.bundle import DataBundle, Split
from cnnlab.data.cache import default_cache_dir
from cnnlab.data.decode import Skipped, decode_chunks, image_shape
from cnnlab.data.files import LISTERS, content_key, size_tuple
from cnnlab.errors import ConfigError, DataError

SPLIT_ORDER = ("train", "val", "test")

Shape = tuple[int, int, int]  # (C, H, W)


@dataclass
class Decoding:
    """The ``count`` images an entry holds, in order, before any is decoded."""

    count: int
    key: str  # content key: names the entry
    shape: Callable[[], Shape]  # the (C, H, W) every image decodes to (may decode one image)
    # Given that shape: (positions, (k, C, H, W) uint8) per chunk, positions ascending.
    chunks: Callable[[Shape, Skipped], Iterator[tuple[np.ndarray, torch.Tensor]]]
    meta: dict  # recorded in meta.json (image_size, channels)


@dataclass
class DiskSource:
    """A source as the disk cache sees it: class names, labels per source part, and how to
    decode a chosen ``[(part, indices), ...]`` in that order."""

    classes: list[str]
    labels: dict[str, np.ndarray]  # part -> (N,) int64
    decoding: Callable[[list[tuple[str, np.ndarray]]], Decoding]


def disk_refusal(name: str) -> str | None:
    """Why ``data.cache: disk`` cannot read the source ``name``, or None when it can."""
    from cnnlab.data.stream_sources import STREAM_SOURCES

    if name in LISTERS or name in STREAM_SOURCES:
        return None
    able = sorted(set(LISTERS) | set(STREAM_SOURCES.names()))
    return (f"`data.cache: disk` works for the sources that read image files or shards "
            f"({', '.join(able)}), not `{name}`; use `data.cache: memory` for it.")


def _disk_source(cfg: DataConfig) -> DiskSource:
    refusal = disk_refusal(cfg.name)
    if refusal:
        raise ConfigError(refusal)
    if cfg.name in LISTERS:  # listed files first: an image folder is also indexable
        return _listed(cfg)
    from cnnlab.data.disk_stream import indexed

    return indexed(cfg)


def _listed(cfg: DataConfig) -> DiskSource:
    listing = LISTERS[cfg.name](cfg)
    size, channels = size_tuple(cfg.image_size), cfg.channels or 3
    skip = cfg.on_bad_image == "skip"

    def decoding(order: list[tuple[str, np.ndarray]]) -> Decoding:
        files = [listing.parts[part][0][i] for part, idx in order for i in idx]
        return Decoding(
            len(files), content_key(files, cfg, "disk"),
            shape=lambda: image_shape(files, size, channels, skip) or (channels, 1, 1),
            chunks=lambda shape, skipped: decode_chunks(files, size, channels, skip_bad=skip,
                                                        skipped=skipped),
            meta={"image_size": list(size) if size else None, "channels": channels})

    labels = {part: part_labels for part, (_, part_labels) in listing.parts.items()}
    return DiskSource(listing.classes, labels, decoding)


def build_from_disk(cfg: DataConfig) -> DataBundle:
    from cnnlab.data.build import check_classes, pixel_stats, plan_splits

    source = _disk_source(cfg)
    labels = source.labels
    check_classes(source.classes, torch.as_tensor(labels["train"]), cfg)
    plan, split_info = plan_splits(labels, cfg)
    order = [(split, *plan[split]) for split in SPLIT_ORDER if split in plan]
    bounds, ordered_labels, start = {}, [], 0
    for split, part, idx in order:
        bounds[split] = (start, start + len(idx))
        start += len(idx)
        ordered_labels.append(labels[part][idx])
    all_labels = torch.as_tensor(np.concatenate(ordered_labels), dtype=torch.int64)
    todo = source.decoding([(part, idx) for _, part, idx in order])
    entry = default_cache_dir(cfg.cache_dir) / "memmap" / todo.key
    images, kept, skipped = open_or_build(todo, entry)
    # ``kept`` ascends, so the kept images of the listed range [start, end) are one slice.
    splits = {}
    for split, (start, end) in bounds.items():
        lo, hi = np.searchsorted(kept, [start, end])
        splits[split] = Split(images[lo:hi], all_labels[torch.as_tensor(kept[lo:hi])])
    if len(splits["train"]) == 0:
        raise DataError(f"No training image of {cfg.root or cfg.files} could be read (all were "
                        "skipped).")
    info = {"dataset": cfg.name, "root": str(cfg.root) if cfg.root else None, **split_info,
            "cache": "disk", "cache_entry": str(entry)}
    if cfg.on_bad_image == "skip":
        info["skipped_images"] = skipped.describe()
    mean, std = pixel_stats(splits["train"].images, cfg.normalization)
    return DataBundle(source.classes, splits["train"], splits.get("val"), splits.get("test"),
                      cfg.normalization, mean, std, info)


def open_or_build(todo: Decoding, entry: Path) -> tuple[torch.Tensor, np.ndarray, Skipped]:
    """The (K, C, H, W) uint8 memory-mapped images that ``todo`` could decode, their positions
    in it (ascending) and the skipped ones; decoded now unless the entry exists."""
    opened = _open(entry)
    if opened is None:
        if entry.exists():  # damaged (entries appear whole, by rename): make room for a new one
            shutil.rmtree(entry, ignore_errors=True)
        _build(entry, todo)
        opened = _open(entry)
        if opened is None:
            raise DataError(f"The disk cache entry {entry} cannot be read back after writing it; "
                            "check the disk, or set data.cache_dir elsewhere.")
    return opened


def _open(entry: Path):
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        kept = np.load(entry / "kept.npy", allow_pickle=False)
        shape = tuple(meta["shape"])
        if shape[0] == 0:
            images = torch.zeros(shape, dtype=torch.uint8)
        else:
            # Copy-on-write: pages are read from the file on demand; a stray in-place write
            # would stay private to this process instead of changing the cache.
            images = torch.from_numpy(np.memmap(entry / "images.u8", dtype=np.uint8, mode="c",
                                                shape=shape))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: rebuilt by the caller
    skipped = Skipped(list(meta.get("skipped", [])))
    return images, kept, skipped


def _build(entry: Path, todo: Decoding) -> None:
    shape = tuple(todo.shape())
    per_image = int(np.prod(shape))
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(entry.parent).free
    except OSError as exc:
        raise DataError(f"Cannot use the disk cache folder {entry.parent} ({exc}); set "
                        "data.cache_dir to a writable folder.") from None
    needed = todo.count * per_image
    if needed > free:
        raise DataError(f"data.cache: disk needs {needed / 2**30:,.1f} GiB in {entry.parent} for "
                        f"{todo.count:,} images of {' x '.join(map(str, shape))}, but only "
                        f"{free / 2**30:,.1f} GiB is free; set data.cache_dir elsewhere or lower "
                        "data.image_size.")
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        skipped = Skipped()
        kept = []
        written = 0
        # Chunks are appended with write(), not through a writable map: written pages are
        # then page cache only, never this process's resident memory, whatever the dataset size.
        with open(tmp / "images.u8", "wb") as target:
            for positions, images in (todo.chunks(shape, skipped) if todo.count else ()):
                target.write(np.ascontiguousarray(images.numpy()).data)
                written += len(positions)
                kept.append(positions)
        np.save(tmp / "kept.npy", np.concatenate(kept) if kept else np.zeros(0, np.int64))
        (tmp / "meta.json").write_text(json.dumps(
            {"shape": [written, *shape], "listed": todo.count, "skipped": skipped.files,
             **todo.meta}),
            encoding="utf-8")
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished it first
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"Cannot write the disk cache entry {entry} ({exc}); set data.cache_dir "
                        "to a writable folder with room for the decoded images.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
