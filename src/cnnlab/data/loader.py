"""Batches straight from the in-memory uint8 tensors.

``__getitems__`` lets the DataLoader take a whole batch with one indexing operation instead
of collating B single images, which is most of the data-loading cost on a CPU.
A shuffled loader draws each epoch's order from (seed, epoch) alone, so a run resumed from a
checkpoint sees the same batches as one that was never interrupted.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from cnnlab.data.bundle import Split


class SplitDataset(Dataset):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.images[index], self.split.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices)
        return self.split.images[idx], self.split.labels[idx]  # (B, C, H, W) uint8, (B,)


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct 63-bit seed per (run seed, epoch)."""
    return (seed * 1_000_003 + epoch * 7_919 + 12_345) % (2 ** 63)


class EpochSeededSampler(RandomSampler):
    """RandomSampler whose order is a function of (seed, epoch).

    Lightning calls ``set_epoch`` before each training epoch (as for DistributedSampler); a
    subclass of RandomSampler is still replaced by a DistributedSampler under DDP.
    """

    def __init__(self, data_source, seed: int) -> None:
        self.seed = seed
        super().__init__(data_source, generator=torch.Generator().manual_seed(epoch_seed(seed, 0)))

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(epoch_seed(self.seed, epoch))


def _whole_batch(batch):
    return batch


def make_loader(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
    if not isinstance(split, Split):  # a streamed split (data/stream.py) batches itself
        return split.loader(batch_size, shuffle=shuffle, seed=seed)
    # A last training batch of one sample breaks BatchNorm; dropping it loses one image an epoch.
    drop_last = shuffle and len(split) % batch_size == 1
    dataset = SplitDataset(split)
    sampler = EpochSeededSampler(dataset, seed) if shuffle else None
    # Its own generator: creating an iterator draws a base seed, which would otherwise come
    # from the global RNG at a moment that differs between a resumed and a whole run.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      collate_fn=_whole_batch, num_workers=0,
                      generator=torch.Generator().manual_seed(seed))
