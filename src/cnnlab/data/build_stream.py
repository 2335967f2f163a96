"""``data.cache: none``: build a :class:`DataBundle` of streamed splits from a source's index.

Selection and splits work on the index's labels with the same functions, seeds and order as the
in-memory path, so a streamed run trains and is scored on the same images as a ``memory`` run of
the same files. A part the source has (separate val/test files) is used as it is; otherwise the
stratified hold-out is a set of sample indices, and each split reads only its own samples (by
byte offset), never decoding the others.
"""

from __future__ import annotations

import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.build import _check_classes, pixel_stats
from cnnlab.data.bundle import DataBundle
from cnnlab.data.select import stratified_split
from cnnlab.data.stream import StreamSplit, default_workers, virtual_shards
from cnnlab.data.stream_sources import STREAM_SOURCES, select, stream_shape


def build_streamed(cfg: DataConfig) -> DataBundle:
    source = select(STREAM_SOURCES.get(cfg.name)(cfg), cfg)
    parts = dict(source.parts)
    train = parts["train"]
    _check_classes(source.classes, torch.from_numpy(train.labels), cfg)
    info = {"dataset": cfg.name, "root": str(cfg.root) if cfg.root else None}
    if "test" not in parts:
        kept, held = stratified_split(train.labels, cfg.test_split, cfg.split_seed, "test")
        if len(held):
            parts["test"] = train.subset(held)
        train = train.subset(kept)
        info["test_from"] = f"stratified {cfg.test_split:g} of the source's training images"
    else:
        info["test_from"] = "source"
    if "val" not in parts:
        fraction = cfg.val_split / (1.0 - (cfg.test_split if "test" not in source.parts else 0.0))
        kept, held = stratified_split(train.labels, min(fraction, 0.9), cfg.split_seed + 1,
                                      "validation")
        if len(held):
            parts["val"] = train.subset(held)
        train = train.subset(kept)
        info["val_from"] = f"stratified {cfg.val_split:g} of the source's training images"
    else:
        info["val_from"] = "source"
    parts["train"] = train
    shape, resize = stream_shape(train, cfg)
    workers = default_workers() if cfg.workers is None else cfg.workers
    splits = {name: StreamSplit(part, shape, resize, workers, cfg.shuffle_buffer)
              for name, part in parts.items()}
    info["stream"] = {
        "cache": "none", "workers": workers, "shuffle_buffer": cfg.shuffle_buffer,
        "files": len(train.files), "shards": len(virtual_shards(train)),
        "samples_per_epoch": {name: len(part) for name, part in parts.items()},
        "resize": resize,
    }
    # Standardize needs one decoding pass over the training images (exact, bounded memory).
    mean, std = pixel_stats(splits["train"].images, cfg.normalization)
    return DataBundle(source.classes, splits["train"], splits.get("val"), splits.get("test"),
                      cfg.normalization, mean, std, info)
