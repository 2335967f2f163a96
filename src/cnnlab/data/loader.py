"""Batches straight from the in-memory uint8 tensors.

``__getitems__`` lets the DataLoader take a whole batch with one indexing operation instead
of collating B single images, which is most of the data-loading cost on a CPU.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

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


def _whole_batch(batch):
    return batch


def make_loader(split: Split, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
    if not isinstance(split, Split):  # a streamed split (data/stream.py) batches itself
        return split.loader(batch_size, shuffle=shuffle, seed=seed)
    # A last training batch of one sample breaks BatchNorm; dropping it loses one image an epoch.
    drop_last = shuffle and len(split) % batch_size == 1
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(SplitDataset(split), batch_size=batch_size, shuffle=shuffle,
                      drop_last=drop_last, collate_fn=_whole_batch, generator=generator,
                      num_workers=0)
