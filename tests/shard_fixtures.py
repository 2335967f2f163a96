"""Small TFRecord files and WebDataset shards for tests, written by cnnlab's own pack code."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from conftest import make_image_folder


def packed(tmp: Path, fmt: str, *, shard_bytes: int = 4000, val_split: float = 0.0,
           **folder) -> Path:
    """An image folder (conftest's, 16 px PNGs) packed into ``tmp/fmt`` as ``fmt``."""
    from cnnlab.config.schema import DataConfig
    from cnnlab.data.pack import pack

    root = make_image_folder(tmp / "images", **folder)
    out = tmp / fmt
    pack(DataConfig(name="imagefolder", root=root), out, fmt, shard_bytes=shard_bytes,
         val_split=val_split)
    return out


def write_tfrecord(path: Path, examples: list[dict]) -> Path:
    from cnnlab.data.tfrecord import encode_example, record_bytes

    path.write_bytes(b"".join(record_bytes(encode_example(e)) for e in examples))
    return path


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def mixed_sizes_tar(path: Path, count: int = 5) -> Path:
    """A WebDataset shard of ``count`` 8 px PNGs labelled 0, 1, 0, ... whose last image is 12 px."""
    members = {}
    for i in range(count):  # a sample's members are consecutive in a shard
        members[f"k{i}.png"] = png_bytes(12 if i == count - 1 else 8)
        members[f"k{i}.cls"] = str(i % 2).encode()
    return write_tar(path, members)


def png_bytes(size: int = 8, value: int = 128) -> bytes:
    import torch
    from torchvision.io import encode_png

    return encode_png(torch.full((3, size, size), value, dtype=torch.uint8)).numpy().tobytes()
