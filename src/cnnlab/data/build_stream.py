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
from cnnlab.data.build import check_classes, pixel_stats, plan_splits
from cnnlab.data.bundle import DataBundle
from cnnlab.data.stream import StreamSplit, default_workers, virtual_shards
from cnnlab.data.stream_sources import STREAM_SOURCES, select, stream_shape


def build_streamed(cfg: DataConfig) -> DataBundle:
    source = select(STREAM_SOURCES.get(cfg.name)(cfg), cfg)
    check_classes(source.classes, torch.from_numpy(source.parts["train"].labels), cfg)
    plan, split_info = plan_splits({name: part.labels for name, part in source.parts.items()}, cfg)
    parts = {split: source.parts[part].subset(idx) for split, (part, idx) in plan.items()}
    train = parts["train"]
    info = {"dataset": cfg.name, "root": str(cfg.root) if cfg.root else None, **split_info}
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
