"""Indexed sources: TFRecord files, WebDataset shards and image folders as :class:`StreamPart` s.

:data:`STREAM_SOURCES` finds an indexer by ``data.name``. With ``data.cache: none`` build_data
streams from the index; with ``memory`` the ``tfrecord`` and ``webdataset`` entries of
:data:`~cnnlab.data.sources.DATASETS` decode the whole index into tensors (:func:`materialize`).
"""

from __future__ import annotations

import functools
import glob
import re
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data import imagefolder
from cnnlab.data.memory import check_fits
from cnnlab.data.select import select_per_class
from cnnlab.data.sources import DATASETS, SourceData, uses_keys
from cnnlab.data.stream import (StreamPart, StreamSource, StreamSplit, decode_bytes,
                                 default_workers)
from cnnlab.data.tfrecord import example_image, parse_example, read_records
from cnnlab.errors import DataError
from cnnlab.registry import Registry

Indexer = Callable[[DataConfig], StreamSource]
STREAM_SOURCES: Registry[Indexer] = Registry("streamed dataset")

TFRECORD_KEYS = {"image": "image/encoded", "label": "image/class/label", "text": "image/class/text"}
WEBDATASET_KEYS = {"image": "jpg;jpeg;png;webp", "label": "cls", "text": "txt"}


def resolve_files(cfg: DataConfig) -> dict[str, list[Path]]:
    """``{part: [files]}`` from ``data.files``; an unset key or a glob matching nothing is a
    DataError naming the pattern."""
    if cfg.files is None:
        raise DataError(f"data.files is not set: `data.name: {cfg.name}` reads the files it names "
                        "(a glob, a list, or {train: [...], val: [...]}).")
    spec = cfg.files if isinstance(cfg.files, dict) else {"train": cfg.files}
    if "train" not in spec:
        raise DataError(f"data.files names {', '.join(spec)} but no `train` files.")
    parts = {}
    for part, patterns in spec.items():
        found: list[Path] = []
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            expanded = str(Path(pattern).expanduser())
            matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else (
                [expanded] if Path(expanded).is_file() else [])
            if not matches:
                raise DataError(f"data.files ({part}): {pattern!r} matches no file; check the path "
                                "(relative paths are read from the current folder).")
            found.extend(Path(m) for m in matches if Path(m).is_file())
        parts[part] = found
    return parts


def _classes_from(labels: np.ndarray, names: dict[int, str], where: str) -> list[str]:
    if len(labels) and labels.min() < 0:
        raise DataError(f"{where}: a label is negative ({int(labels.min())}); labels are class "
                        "indices 0, 1, 2, ...")
    count = int(labels.max(initial=-1)) + 1
    return [names.get(i, str(i)) for i in range(count)]


def _add_name(names: dict[int, str], label: int, text: str | None, where: str) -> None:
    if text is None:
        return
    if names.setdefault(label, text) != text:
        raise DataError(f"{where}: label {label} is named {text!r} here but {names[label]!r} "
                        "before; each class index must keep one name.")


def _part(files: list[Path], rows: list[tuple], keys: list[str] | None, payload,
          shard_samples: int) -> StreamPart:
    array = np.asarray([r[:4] for r in rows], dtype=np.int64).reshape(-1, 4)
    return StreamPart(files=[str(f) for f in files], file_id=array[:, 0].astype(np.int32),
                      offset=array[:, 1], length=array[:, 2], labels=array[:, 3],
                      record=np.asarray([r[4] for r in rows], dtype=np.int64), payload=payload,
                      keys=keys, shard_samples=shard_samples)


def _empty_check(part: str, files: list[Path], count: int) -> None:
    if count == 0:
        raise DataError(f"data.files ({part}): {', '.join(map(str, files[:3]))} hold no samples.")


# ------------------------------------------------------------------------------ tfrecord

@STREAM_SOURCES.register("tfrecord", "TFRecord files of tf.train.Example (data.files)")
def index_tfrecord(cfg: DataConfig) -> StreamSource:
    keys = {**TFRECORD_KEYS, **cfg.record_keys.model_dump(exclude_none=True)}
    names: dict[int, str] = {}
    parts = {}
    for part, files in resolve_files(cfg).items():
        rows = []
        for fid, path in enumerate(files):
            for index, record in enumerate(read_records(path)):
                where = f"{path}: record {index}"
                try:
                    features = parse_example(record.data)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise DataError(f"{where} is not a tf.train.Example ({exc}).") from None
                label = features.get(keys["label"])
                if not label or not isinstance(label[0], int):
                    raise DataError(f"{where} has no int64 feature {keys['label']!r} (its features: "
                                    f"{', '.join(sorted(features)) or 'none'}); set "
                                    "data.record_keys.label.")
                image = features.get(keys["image"])
                if not image or not isinstance(image[0], bytes):
                    raise DataError(f"{where} has no bytes feature {keys['image']!r} (its features: "
                                    f"{', '.join(sorted(features))}); set data.record_keys.image.")
                text = features.get(keys["text"])
                _add_name(names, label[0], text[0].decode("utf-8", "replace")
                          if text and isinstance(text[0], bytes) else None, where)
                rows.append((fid, record.offset, record.length, label[0], index))
        _empty_check(part, files, len(rows))
        payload = functools.partial(example_image, key=keys["image"])
        parts[part] = _part(files, rows, None, payload, shard_samples=256)
    labels = np.concatenate([p.labels for p in parts.values()])
    return StreamSource(_classes_from(labels, names, "data.files"), parts)


# ----------------------------------------------------------------------------- webdataset

# WebDataset's sample key: the path up to the first dot of the file name.
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


@STREAM_SOURCES.register("webdataset", "WebDataset .tar shards: <key>.jpg + <key>.cls (data.files)")
def index_webdataset(cfg: DataConfig) -> StreamSource:
    keys = {**WEBDATASET_KEYS, **cfg.record_keys.model_dump(exclude_none=True)}
    image_exts = [e.strip().lower() for e in keys["image"].split(";") if e.strip()]
    names: dict[int, str] = {}
    parts = {}
    for part, files in resolve_files(cfg).items():
        rows, sample_keys = [], []
        for fid, path in enumerate(files):
            for index, (key, members, read) in enumerate(_tar_samples(path)):
                where = f"{path}: sample {key!r}"
                image = next((members[e] for e in image_exts if e in members), None)
                if image is None:
                    raise DataError(f"{where} has no image ({', '.join('.' + e for e in image_exts)}; "
                                    f"it has {', '.join('.' + e for e in sorted(members))}).")
                if keys["label"] not in members:
                    raise DataError(f"{where} has no label (.{keys['label']}; it has "
                                    f"{', '.join('.' + e for e in sorted(members))}).")
                raw = read(members[keys["label"]]).strip()
                try:
                    label = int(raw)
                except ValueError:
                    raise DataError(f"{where}: its .{keys['label']} holds {raw[:40]!r}, not a class "
                                    "index.") from None
                text = read(members[keys["text"]]).decode("utf-8", "replace").strip() \
                    if keys["text"] in members else None
                _add_name(names, label, text, where)
                rows.append((fid, image.offset_data, image.size, label, index))
                sample_keys.append(key)
        _empty_check(part, files, len(rows))
        parts[part] = _part(files, rows, sample_keys, None, shard_samples=256)
    labels = np.concatenate([p.labels for p in parts.values()])
    return StreamSource(_classes_from(labels, names, "data.files"), parts)


def _tar_samples(path: Path):
    """(key, {extension: member}, read) per sample of a tar shard, members read headers-only."""
    try:
        with tarfile.open(path, "r:") as tar:
            def read(member: tarfile.TarInfo) -> bytes:
                return tar.extractfile(member).read()

            current, members = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                match = _KEY.match(member.name)
                if match is None:
                    continue
                key, ext = match.group(1), match.group(2).lower()
                if key != current and current is not None:
                    yield current, members, read
                    members = {}
                current = key
                members[ext] = member
            if current is not None:
                yield current, members, read
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable tar shard ({type(exc).__name__}: {exc}); "
                        "the file is corrupt or incomplete.") from None


# --------------------------------------------------------------------------- image folders

@STREAM_SOURCES.register("imagefolder", "root/<class>/*.jpg, one file per sample")
def index_imagefolder(cfg: DataConfig) -> StreamSource:
    # The in-memory loader's listing (same order, classes and cap), so both give the same splits.
    listing = imagefolder.list_files(cfg)
    parts = {}
    for part, (files, labels) in listing.parts.items():
        rows = [(i, 0, path.stat().st_size, int(label), 0)
                for i, (path, label) in enumerate(zip(files, labels))]
        # One file per sample: each is its own shard, so the shuffle is complete.
        parts[part] = _part(list(files), rows, None, None, shard_samples=1)
    return StreamSource(listing.classes, parts)


# ------------------------------------------------------------------------------ decoding

def select(source: StreamSource, cfg: DataConfig) -> StreamSource:
    """``data.classes`` (relabelled in the order given) and ``data.max_per_class`` on the index."""
    classes, parts = source.classes, dict(source.parts)
    if cfg.classes is not None and list(cfg.classes) != classes:
        missing = [c for c in cfg.classes if c not in classes]
        if missing:
            raise DataError(f"data.classes names {', '.join(missing)}, which the dataset does not "
                            f"have; available: {', '.join(classes)}.")
        old_to_new = np.full(len(classes), -1, dtype=np.int64)
        for new, name in enumerate(cfg.classes):
            old_to_new[classes.index(name)] = new
        parts = {k: p.relabel(old_to_new) for k, p in parts.items()}
        classes = list(cfg.classes)
    parts = {k: p.subset(select_per_class(p.labels, cfg.max_per_class, cfg.split_seed))
             for k, p in parts.items()}
    return StreamSource(classes, parts, source.info)


def stream_shape(part: StreamPart, cfg: DataConfig) -> tuple[tuple[int, int, int], bool]:
    """(C, H, W) every image is decoded to, and whether images are resized to it; without
    ``image_size`` the first image sets the size and any other size is an error."""
    channels = cfg.channels or 3
    if cfg.image_size is not None:
        size = (cfg.image_size,) * 2 if isinstance(cfg.image_size, int) else tuple(cfg.image_size)
        return (channels, int(size[0]), int(size[1])), True
    if not len(part):
        return (channels, 1, 1), False
    first = decode_bytes(part.read(0, {}), None, channels, part.where(0))
    return tuple(first.shape), False


def materialize(source: StreamSource, cfg: DataConfig) -> SourceData:
    """Decode every indexed image into uint8 tensors (``data.cache: memory``)."""
    source = select(source, cfg)
    shape, resize = stream_shape(source.parts["train"], cfg)
    parts = {}
    for name, part in source.parts.items():
        check_fits(len(part), shape[0], shape[1:], f"data.files ({name})")
        images = torch.empty((len(part), *shape), dtype=torch.uint8)
        # Decoded in index order by the streaming workers, straight into the one tensor.
        stream = StreamSplit(part, shape, resize, default_workers() if cfg.workers is None
                             else cfg.workers)
        filled = 0
        for batch, _ in stream.loader(256, shuffle=False, distributed=False):
            images[filled:filled + len(batch)] = batch
            filled += len(batch)
        parts[name] = (images, torch.from_numpy(part.labels))
    return SourceData(source.classes, parts)


def _memory_source(name: str) -> Callable[[DataConfig], SourceData]:
    def load(cfg: DataConfig) -> SourceData:
        return materialize(STREAM_SOURCES.get(name)(cfg), cfg)

    return load


for _name in ("tfrecord", "webdataset"):
    DATASETS.add(_name, _memory_source(_name), STREAM_SOURCES.describe(_name)[0][1])
    uses_keys(_name, "files", "record_keys")
