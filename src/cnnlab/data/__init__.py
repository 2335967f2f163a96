"""Data: sources by name, decoded once to uint8 tensors, split, cached, batched, augmented."""

from cnnlab.data.build import build_data
from cnnlab.data.bundle import DataBundle, Split
from cnnlab.data.loader import make_loader
from cnnlab.data.sources import DATASETS

__all__ = ["DATASETS", "DataBundle", "Split", "build_data", "make_loader"]
