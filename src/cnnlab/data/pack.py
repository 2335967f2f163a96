"""``cnnlab data pack``: write any source cnnlab reads as TFRecord files or WebDataset shards.

Images are decoded (and resized to ``image_size``) as training would see them, JPEG-encoded and
written in a seeded random order, so consecutive records mix classes and shard-level shuffling
plus a buffer shuffles well. Shards roll over at ``shard_bytes``; each is written to a temporary
name and renamed when complete, so a crash never leaves a shard that looks finished.
``pack.json`` beside the shards records what was written and the ``data:`` section to read it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torchvision.io import encode_jpeg

from cnnlab.config.schema import DataConfig
from cnnlab.data.build import conform
from cnnlab.data.select import stratified_split
from cnnlab.data.sources import DATASETS
from cnnlab.data.stream import StreamSplit
from cnnlab.data.stream_sources import STREAM_SOURCES, select, stream_shape
from cnnlab.data.tfrecord import encode_example, record_bytes
from cnnlab.errors import DataError
from cnnlab.registry import Registry

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """``256MB`` -> 256,000,000 bytes (KB/MB/GB decimal, KiB/MiB/GiB binary)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS or float(match.group(1)) <= 0:
        raise DataError(f"--shard-size {text!r} is not a size such as 256MB, 1GB or 64MiB.")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


class _Shards:
    """Rolling shard files ``{part}-{n:06d}{suffix}`` under ``out``, renamed into place when full."""

    def __init__(self, out: Path, part: str, suffix: str, limit: int) -> None:
        self.out, self.part, self.suffix, self.limit = out, part, suffix, limit
        self.paths: list[Path] = []
        self.handle = None
        self.size = 0

    def room_for(self, nbytes: int) -> None:
        if self.handle is not None and self.size and self.size + nbytes > self.limit:
            self.close()
        if self.handle is None:
            final = self.out / f"{self.part}-{len(self.paths):06d}{self.suffix}"
            self.paths.append(final)
            self.handle = open(final.with_name(final.name + ".partial"), "wb")
            self.size = 0

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            final = self.paths[-1]
            os.replace(final.with_name(final.name + ".partial"), final)
            self.handle = None


class _TFRecordWriter(_Shards):
    def write(self, key: str, jpeg: bytes, label: int, name: str, shape) -> None:
        record = record_bytes(encode_example({
            "image/encoded": jpeg, "image/format": b"jpeg", "image/class/label": label,
            "image/class/text": name, "image/height": int(shape[1]), "image/width": int(shape[2]),
            "image/channels": int(shape[0]), "image/filename": key}))
        self.room_for(len(record))
        self.handle.write(record)
        self.size += len(record)


class _WebDatasetWriter(_Shards):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.tar = None

    def write(self, key: str, jpeg: bytes, label: int, name: str, shape) -> None:
        try:
            import webdataset  # optional extra `shards`
        except ImportError:
            raise DataError("Writing WebDataset shards needs the `webdataset` package: "
                            "pip install 'cnnlab[shards]'.") from None

        # Each member is a 512-byte header plus its data padded to 512 bytes.
        nbytes = sum(512 + -(-n // 512) * 512
                     for n in (len(jpeg), len(str(label)), len(name.encode())))
        if self.handle is not None and self.size and self.size + nbytes > self.limit:
            self.close()
        if self.handle is None:
            self.room_for(0)
            # An integer mtime: a float one costs every member an extra PAX header.
            self.tar = webdataset.TarWriter(self.handle, mtime=int(time.time()))
        self.tar.write({"__key__": key, "jpg": jpeg, "cls": label, "txt": name})
        self.size += nbytes

    def close(self) -> None:
        if self.tar is not None:
            self.tar.tarstream.close()  # writes the end-of-archive blocks, leaves the file open
            self.tar = None
        super().close()


FORMATS: Registry[tuple[str, type]] = Registry("pack format")
FORMATS.add("tfrecord", (".tfrecord", _TFRecordWriter), "TFRecord files of tf.train.Example")
FORMATS.add("webdataset", (".tar", _WebDatasetWriter), "WebDataset tar shards (.jpg, .cls, .txt)")


def _batches(cfg: DataConfig, val_split: float, seed: int, workers: int
             ) -> tuple[list[str], tuple[int, int, int], dict[str, Iterator], dict[str, int]]:
    """Class names, image shape, and per part an iterator of (uint8 images, labels) batches in a
    seeded random order."""
    rng = np.random.default_rng(seed)
    if cfg.name in STREAM_SOURCES:
        source = select(STREAM_SOURCES.get(cfg.name)(cfg), cfg)
        shape, resize = stream_shape(source.parts["train"], cfg)
        parts = _hold_out({k: p for k, p in source.parts.items()}, val_split, seed,
                          lambda p, idx: p.subset(idx), lambda p: p.labels)
        iters, counts = {}, {}
        for name, part in parts.items():
            part = part.subset(rng.permutation(len(part)))
            split = StreamSplit(part, shape, resize, workers)
            iters[name] = iter(split.loader(64, shuffle=False, distributed=False))
            counts[name] = len(part)
        return source.classes, shape, iters, counts
    source = DATASETS.get(cfg.name)(cfg)
    from cnnlab.data.build import cap_per_class, select_classes

    source = select_classes(source, cfg.classes)
    tensors = {k: conform(*cap_per_class(x, y, cfg), cfg) for k, (x, y) in source.parts.items()}
    tensors = _hold_out(tensors, val_split, seed, lambda p, idx: (p[0][idx], p[1][idx]),
                        lambda p: p[1].numpy())
    iters, counts = {}, {}
    for name, (x, y) in tensors.items():
        iters[name] = _shuffled_batches(x, y, torch.as_tensor(rng.permutation(len(y))))
        counts[name] = len(y)
    shape = tuple(int(s) for s in tensors["train"][0].shape[1:])
    return source.classes, shape, iters, counts


def _shuffled_batches(x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> Iterator:
    for idx in order.split(64):
        yield x[idx], y[idx]


def _hold_out(parts: dict, fraction: float, seed: int, take, labels_of) -> dict:
    if fraction <= 0:
        return parts
    if "val" in parts:
        raise DataError("--val-split: the source already has a val part; leave --val-split at 0.")
    kept, held = stratified_split(labels_of(parts["train"]), fraction, seed, "validation")
    return {**parts, "train": take(parts["train"], kept), "val": take(parts["train"], held)}


def pack(cfg: DataConfig, out: Path, fmt: str, *, shard_bytes: int = 256 * 10**6,
         quality: int = 90, val_split: float = 0.0, seed: int = 0, workers: int = 0,
         say: Callable[[str], None] = lambda _: None) -> dict:
    """Write ``cfg``'s data to ``out`` in ``fmt``; returns what ``pack.json`` records."""
    suffix, writer_cls = FORMATS.get(fmt)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and is not an empty folder; pack writes into a new or empty "
                        "folder so shards of two packs never mix.")
    classes, shape, iters, counts = _batches(cfg, val_split, seed, workers)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for part, batches in iters.items():
        writer = writer_cls(out, part, suffix, shard_bytes)
        index = 0
        try:
            for images, labels in batches:
                for image, label in zip(images, labels.tolist()):
                    jpeg = encode_jpeg(image.contiguous(), quality=quality).numpy().tobytes()
                    writer.write(f"{part}_{index:08d}", jpeg, int(label), classes[label], shape)
                    index += 1
        finally:
            writer.close()
        written[part] = {"samples": index, "files": [p.name for p in writer.paths]}
        say(f"{part}: {index} images in {len(writer.paths)} {fmt} file(s)")
    files = {part: [str(out / f"{part}-*{suffix}")] for part in written}
    record = {"format": fmt, "classes": classes, "image_shape": list(shape), "jpeg_quality": quality,
              "source": {"name": cfg.name, "root": str(cfg.root) if cfg.root else None},
              "parts": written, "data": {"name": fmt, "files": files}}
    tmp = out / ".pack.json.partial"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out / "pack.json")
    return record
