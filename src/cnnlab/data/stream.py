"""Streamed data (``data.cache: none``): an index of where each encoded image lies, decoded per epoch.

A streamed source (TFRecord files, WebDataset shards, an image folder) is first scanned into a
:class:`StreamPart`: for every sample its file, byte offset and length, and its label. The index
is a few integers per image, so selection (``classes``, ``max_per_class``) and the stratified
splits work on the labels exactly as for decoded tensors, and an epoch is a well-defined list of
samples. Images are read by offset and decoded in DataLoader workers, then re-batched in the main
process; nothing holds more than a shuffle buffer of sample positions and a few decoded batches,
so peak memory does not grow with the dataset.

Shuffling is two-level, as WebDataset does it: the order of "virtual shards" (runs of up to
``shard_samples`` consecutive samples of one file) is permuted every epoch, and each worker
passes its samples through a buffer of ``shuffle_buffer`` sample positions it draws from at
random (an image is read by offset and decoded only when drawn).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.io import ImageReadMode, decode_image

from cnnlab.errors import DataError

# Samples a worker hands over at a time; the main process cuts them into batches of any size.
CHUNK = 64


def default_workers() -> int:
    """``data.workers: null``: the cores less one (the training process), at most 4."""
    import os

    return max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class StreamPart:
    """The index of one part (train/val/test) of a streamed source; no pixels."""

    files: list[str]
    file_id: np.ndarray  # (N,) int32 into files
    offset: np.ndarray  # (N,) int64 byte offset of the sample's payload in its file
    length: np.ndarray  # (N,) int64 payload bytes
    labels: np.ndarray  # (N,) int64
    record: np.ndarray  # (N,) int64 index of the sample inside its file (for messages)
    # How a payload becomes encoded image bytes (a picklable callable: workers receive it).
    payload: Callable[[bytes, str], bytes] | None = None
    keys: list[str] | None = None  # sample keys (WebDataset), for messages
    shard_samples: int = 256  # consecutive samples of one file that form a virtual shard

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray) -> "StreamPart":
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, file_id=self.file_id[idx], offset=self.offset[idx],
                       length=self.length[idx], labels=self.labels[idx], record=self.record[idx],
                       keys=[self.keys[i] for i in idx] if self.keys is not None else None)

    def relabel(self, old_to_new: np.ndarray) -> "StreamPart":
        new = old_to_new[self.labels]
        return replace(self.subset(np.flatnonzero(new >= 0)), labels=new[new >= 0])

    def where(self, i: int) -> str:
        """The sample named for a message: its file and record index or key."""
        name = self.files[int(self.file_id[i])]
        if self.keys is not None:
            return f"{name} (sample {self.keys[i]!r})"
        if self.payload is None:
            return name
        return f"{name} (record {int(self.record[i])})"

    def read(self, i: int, handles: dict[int, object]) -> bytes:
        fid = int(self.file_id[i])
        handle = handles.get(fid)
        if handle is None:
            if len(handles) >= 16:  # image folders have one file per sample: bound open files
                for old in list(handles):
                    handles.pop(old).close()
            handle = handles[fid] = open(self.files[fid], "rb")
        handle.seek(int(self.offset[i]))
        data = handle.read(int(self.length[i]))
        if len(data) != int(self.length[i]):
            raise DataError(f"{self.where(i)} is cut short: {len(data)} of {int(self.length[i])} "
                            "bytes could be read (was the file changed after it was indexed?).")
        return self.payload(data, self.where(i)) if self.payload is not None else data


@dataclass
class StreamSource:
    """What a streamed source's indexer returns: class names and indexed parts."""

    classes: list[str]
    parts: dict[str, StreamPart]
    info: dict = field(default_factory=dict)


def decode_bytes(data: bytes, size: tuple[int, int] | None, channels: int, where: str) -> torch.Tensor:
    """(C, H, W) uint8 from encoded bytes (JPEG/PNG/WebP natively, anything else via PIL)."""
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except Exception:
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                array = np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
            image = torch.from_numpy(array.reshape(*array.shape[:2], -1).copy()).permute(2, 0, 1)
        except Exception as exc:
            raise DataError(f"Cannot decode the image of {where}: it is corrupt or not an image "
                            f"({type(exc).__name__}: {str(exc).strip() or 'no detail'}).") from None
    if image.dtype != torch.uint8:
        image = TF.to_dtype(image, torch.uint8, scale=True)
    if size is not None and tuple(image.shape[1:]) != tuple(size):
        image = TF.resize(image, list(size), antialias=True)
    return image


def decode_sample(part: StreamPart, i: int, shape: tuple[int, int, int], resize: bool,
                  handles: dict) -> torch.Tensor:
    """Sample ``i`` at ``shape`` (C, H, W); without ``resize`` another size is a DataError."""
    image = decode_bytes(part.read(i, handles), shape[1:] if resize else None, shape[0], part.where(i))
    if tuple(image.shape) != tuple(shape):
        raise DataError(f"The image of {part.where(i)} is {tuple(image.shape[1:])} pixels, but the "
                        f"first image of the data is {tuple(shape[1:])}: the images have different "
                        "sizes; set data.image_size to resize them all to one size.")
    return image


# ------------------------------------------------------------------------ the epoch's plan

def virtual_shards(part: StreamPart, at_least: int = 1) -> list[np.ndarray]:
    """Sample indices grouped in runs of at most ``shard_samples`` consecutive ones of a file,
    smaller where needed so there are ``at_least`` shards (one per DDP rank) if samples allow."""
    if len(part) == 0:
        return []
    size = max(1, min(part.shard_samples, len(part) // at_least))
    breaks = np.flatnonzero(np.diff(part.file_id)) + 1
    shards = []
    for run in np.split(np.arange(len(part)), breaks):
        shards.extend(np.array_split(run, math.ceil(len(run) / size)))
    return shards


def rank_shards(shards: list[np.ndarray], world: int) -> list[list[int]]:
    """Shard numbers for each DDP rank: fixed across epochs and balanced by sample count
    (largest first to the emptiest rank), so every rank's epoch has a known length."""
    loads, owned = [0] * world, [[] for _ in range(world)]
    for s in sorted(range(len(shards)), key=lambda s: (-len(shards[s]), s)):
        r = min(range(world), key=lambda r: (loads[r], r))
        owned[r].append(s)
        loads[r] += len(shards[s])
    return [sorted(o) for o in owned]


def batches_per_epoch(n: int, batch_size: int, drop_singleton: bool) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and not drop_singleton) else 0)


def in_order_chunks(n: int, rank: int, world: int) -> list[np.ndarray]:
    """This rank's contiguous share of ``range(n)`` (ranks differ by at most one sample), cut
    into chunks of at most CHUNK consecutive indices."""
    share = np.array_split(np.arange(n), world)[rank]
    return np.array_split(share, max(1, math.ceil(len(share) / CHUNK))) if len(share) else []


def _grouped(indices: Iterator[int], size: int) -> Iterator[list[int]]:
    group: list[int] = []
    for i in indices:
        group.append(i)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class _Samples(IterableDataset):
    """Runs in each DataLoader worker: yields chunks ``((k, C, H, W) uint8, (k,) int64)``.

    Shuffled: this rank's shards in an epoch-seeded order, dealt round-robin to the workers, each
    worker's samples through its shuffle buffer. In order: the rank's consecutive chunks dealt
    round-robin, one item per chunk, which the DataLoader's in-order round-robin over workers
    returns in index order.
    """

    def __init__(self, part: StreamPart, shape, resize: bool, shuffle: bool, seed: int,
                 buffer: int) -> None:
        self.part, self.shape, self.resize = part, tuple(shape), resize
        self.shuffle, self.seed, self.buffer = shuffle, seed, buffer
        self.epoch, self.rank, self.world = 0, 0, 1

    def _my_samples(self, worker: int, workers: int) -> Iterator[int]:
        """The shuffled path's sample order for one worker, before the buffer."""
        shards = virtual_shards(self.part, self.world)
        mine = rank_shards(shards, self.world)[self.rank]
        order = random.Random(f"{self.seed}/{self.epoch}/{self.rank}").sample(mine, len(mine))
        for s in order[worker::workers]:
            yield from shards[s].tolist()

    def _groups(self, worker: int, workers: int) -> Iterator[list[int]]:
        if not self.shuffle:
            chunks = in_order_chunks(len(self.part), self.rank, self.world)
            return (chunk.tolist() for chunk in chunks[worker::workers])
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}")
        return _grouped(self._buffered(self._my_samples(worker, workers), rng), CHUNK)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        handles: dict = {}
        try:
            for group in self._groups(worker, workers):
                images = [decode_sample(self.part, i, self.shape, self.resize, handles)
                          for i in group]
                yield torch.stack(images), torch.as_tensor(self.part.labels[group])
        except DataError as exc:
            # A worker's exception reaches the main process with its traceback pasted into the
            # message; handing the message over as data keeps it one paragraph (exit 2).
            yield _Failure(str(exc))
        finally:
            for handle in handles.values():
                handle.close()

    def _buffered(self, samples: Iterator[int], rng: random.Random) -> Iterator[int]:
        if not self.shuffle or self.buffer <= 1:
            yield from samples
            return
        buffer: list[int] = []
        for i in samples:
            if len(buffer) < self.buffer:
                buffer.append(i)
                continue
            j = rng.randrange(len(buffer))
            buffer[j], i = i, buffer[j]
            yield i
        rng.shuffle(buffer)
        yield from buffer


@dataclass
class _Failure:
    message: str


def _pass_through(item):
    return item


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamLoader:
    """Batches ``((B, C, H, W) uint8, (B,) int64)`` of a streamed split, one epoch per ``iter``.

    An epoch of a shuffled loader is every sample of this rank once (a last batch of one sample
    dropped, as the in-memory loader does); under DDP each rank owns fixed shards and the ranks
    with fewer batches repeat their first ones, as torch's DistributedSampler pads, so all ranks
    step together.
    """

    def __init__(self, part: StreamPart, shape, batch_size: int, *, shuffle: bool, seed: int = 0,
                 resize: bool = True, workers: int = 0, buffer: int = 4096,
                 distributed: bool = True) -> None:
        self._samples = _Samples(part, shape, resize, shuffle, seed, buffer)
        self.batch_size, self.shuffle, self.distributed = batch_size, shuffle, distributed
        self.workers = workers if len(part) > CHUNK else 0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Number the next epoch (0-based): a resumed run continues the count it stopped at."""
        self.epoch = epoch

    def _rank(self) -> tuple[int, int]:
        return _distributed() if self.distributed else (0, 1)

    def _rank_sizes(self, world: int) -> list[int]:
        part = self._samples.part
        if not self.shuffle:
            return [len(share) for share in np.array_split(np.arange(len(part)), world)]
        shards = virtual_shards(part, world)
        return [sum(len(shards[s]) for s in owned) for owned in rank_shards(shards, world)]

    def __len__(self) -> int:
        rank, world = self._rank()
        sizes = self._rank_sizes(world)
        if self.shuffle:
            return max(batches_per_epoch(n, self.batch_size, True) for n in sizes)
        return batches_per_epoch(sizes[rank], self.batch_size, False)

    def __iter__(self):
        rank, world = self._rank()
        self._samples.epoch, self._samples.rank, self._samples.world = self.epoch, rank, world
        self.epoch += 1
        target = len(self)
        yielded = 0
        while yielded < target:
            before = yielded
            for batch in self._one_pass():
                yield batch
                yielded += 1
                if yielded == target:
                    return
            if yielded == before:
                return  # this rank has no samples at all

    def _one_pass(self):
        loader = DataLoader(self._samples, batch_size=None, collate_fn=_pass_through,
                            num_workers=self.workers, persistent_workers=False,
                            prefetch_factor=4 if self.workers else None)
        images, labels, held = [], [], 0
        for item in loader:
            if isinstance(item, _Failure):
                raise DataError(item.message)
            images.append(item[0])
            labels.append(item[1])
            held += len(item[1])
            while held >= self.batch_size:
                x, y = torch.cat(images), torch.cat(labels)
                yield x[:self.batch_size], y[:self.batch_size]
                images, labels, held = [x[self.batch_size:]], [y[self.batch_size:]], held - self.batch_size
        if held > 1 or (held == 1 and not self.shuffle):
            yield torch.cat(images), torch.cat(labels)


class StreamImages:
    """What a streamed split offers in place of its images tensor: ``len``, ``shape``,
    ``split(batch_size)`` (in-order uint8 batches, as ``Tensor.split`` gives) and indexing by a
    few indices (report galleries), each decoded on demand."""

    def __init__(self, split: "StreamSplit") -> None:
        self._split = split

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self._split), *self._split.shape)

    def __len__(self) -> int:
        return len(self._split)

    def split(self, batch_size: int) -> Iterator[torch.Tensor]:
        # Callers concatenate per-chunk results (predictions, pixel sums), so chunks are capped:
        # 4096 images of 224 px would be 600 MB of uint8 at once, 2.4 GB as float.
        loader = self._split.loader(min(batch_size, 256), shuffle=False, distributed=False)
        return (x for x, _ in loader)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):  # e.g. images[:5000] for a data-dependent initialisation
            idx = list(range(len(self._split)))[index]
        else:
            idx = torch.as_tensor(index).reshape(-1).tolist()
        if len(idx) > CHUNK:  # many images: decode them in the workers
            sub = replace(self._split, part=self._split.part.subset(np.asarray(idx)))
            return torch.cat([x for x, _ in sub.loader(len(idx), shuffle=False, distributed=False)])
        handles: dict = {}
        try:
            images = [decode_sample(self._split.part, i, self._split.shape, self._split.resize,
                                    handles) for i in idx]
        finally:
            for handle in handles.values():
                handle.close()
        return torch.stack(images) if images else torch.zeros((0, *self._split.shape), dtype=torch.uint8)


@dataclass
class StreamSplit:
    """A split whose images are decoded on demand; stands in for :class:`~cnnlab.data.Split`."""

    part: StreamPart
    shape: tuple[int, int, int]  # (C, H, W) every image is decoded to
    resize: bool
    workers: int = 0
    buffer: int = 4096

    def __len__(self) -> int:
        return len(self.part)

    @property
    def images(self) -> StreamImages:
        return StreamImages(self)

    @property
    def labels(self) -> torch.Tensor:
        return torch.from_numpy(self.part.labels)

    def class_counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.part.labels, minlength=num_classes).tolist()

    def loader(self, batch_size: int, *, shuffle: bool, seed: int = 0,
               distributed: bool = True) -> StreamLoader:
        return StreamLoader(self.part, self.shape, batch_size, shuffle=shuffle, seed=seed,
                            resize=self.resize, workers=self.workers, buffer=self.buffer,
                            distributed=distributed)
