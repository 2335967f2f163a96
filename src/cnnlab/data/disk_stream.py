"""``data.cache: disk`` for indexed sources (TFRecord files, WebDataset shards): the index's
samples as a :class:`~cnnlab.data.disk.Decoding`.

The index (:mod:`cnnlab.data.stream_sources`) already holds every sample's file, byte offset,
length and label, so the splits are chosen on its labels, as for listed files, and the chosen
samples are read by offset and decoded by the streaming reader itself (in DataLoader workers, in
index order, the same decoder as ``cache: none`` and ``memory``), a chunk at a time straight into
the disk cache's map: nothing holds more than a few chunks of decoded images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from cnnlab.config.schema import DataConfig
from cnnlab.data.cache import cache_key
from cnnlab.data.disk import Decoding, DiskSource, Shape
from cnnlab.data.files import size_tuple
from cnnlab.data.stream import StreamPart, StreamSplit, default_workers
from cnnlab.data.stream_sources import STREAM_SOURCES, select, stream_shape

# Images per batch read back from the streaming loader: bounds the decoded images held at once.
BATCH = 256


def indexed(cfg: DataConfig) -> DiskSource:
    """``cfg``'s streamed source, after ``classes`` and ``max_per_class``, for the disk cache."""
    source = select(STREAM_SOURCES.get(cfg.name)(cfg), cfg)

    def decoding(order: list[tuple[str, np.ndarray]]) -> Decoding:
        parts = [source.parts[part].subset(idx) for part, idx in order]
        return _decoding(parts, cfg)

    return DiskSource(source.classes, {name: part.labels for name, part in source.parts.items()},
                      decoding)


def index_key(parts: list[StreamPart], cfg: DataConfig) -> str:
    """A hash of the shard files (path, size, mtime), of which samples (file, offset, length) are
    decoded in which order, and of what shapes their pixels, so an edited shard, another
    selection or split, or other preprocessing never hits an old entry."""
    files = sorted({f for part in parts for f in part.files})
    position = {f: i for i, f in enumerate(files)}
    stats = []
    for name in files:
        st = Path(name).stat()
        stats.append((name, st.st_size, st.st_mtime_ns))
    samples = hashlib.sha256()
    for part in parts:
        global_id = np.asarray([position[f] for f in part.files], dtype=np.int64)
        for column in (global_id[part.file_id] if len(part) else part.file_id.astype(np.int64),
                       part.offset, part.length):
            samples.update(np.ascontiguousarray(column, dtype=np.int64).tobytes())
        samples.update(b"|")  # where one split ends
    return cache_key({"source": cfg.name, "files": stats, "samples": samples.hexdigest(),
                      "size": size_tuple(cfg.image_size), "channels": cfg.channels or 3,
                      "record_keys": cfg.record_keys.model_dump(), "classes": cfg.classes,
                      "what": "disk-indexed", "v": 1})


def _decoding(parts: list[StreamPart], cfg: DataConfig) -> Decoding:
    workers = default_workers() if cfg.workers is None else cfg.workers
    size = size_tuple(cfg.image_size)

    def shape() -> Shape:
        # The first sample sets the size without image_size; any other size then fails while
        # decoding (decode_sample's error, as in the other modes).
        return stream_shape(next((p for p in parts if len(p)), parts[0]), cfg)[0]

    def chunks(shape: Shape, skipped):
        start = 0
        for part in parts:
            loader = StreamSplit(part, shape, size is not None, workers).loader(
                BATCH, shuffle=False, distributed=False)
            done = 0
            for images, _ in loader:  # (k, C, H, W) uint8, in index order
                yield np.arange(start + done, start + done + len(images)), images
                done += len(images)
            start += len(part)

    return Decoding(sum(len(p) for p in parts), index_key(parts, cfg), shape, chunks,
                    {"image_size": list(size) if size else None, "channels": cfg.channels or 3})
