"""data.cache: none: streamed splits hold the same images as the in-memory ones, and batches
flow through the batch augmentation unchanged in form."""

from __future__ import annotations

import torch

from cnnlab.config.load import validate_config
from cnnlab.config.schema import Flip, RandomCrop
from cnnlab.data import build_data, make_loader
from cnnlab.data.augment import build_augment
from cnnlab.data.stream import StreamSplit


def data_cfg(**data):
    return validate_config({"name": "x", "data": {"cache": False, **data}}).data


def test_streamed_image_folder_splits_match_memory(image_folder) -> None:
    common = {"root": str(image_folder), "val_split": 0.25, "test_split": 0.25,
              "max_per_class": 10, "normalization": "standardize", "workers": 0}
    memory = build_data(data_cfg(**common))
    streamed = build_data(data_cfg(**common, cache="none"))
    assert isinstance(streamed.train, StreamSplit)
    for name in ("train", "val", "test"):
        ours, theirs = streamed.splits()[name], memory.splits()[name]
        assert torch.equal(ours.labels, theirs.labels), name
        assert torch.equal(torch.cat(list(ours.images.split(7))), theirs.images), name
    # The exact statistics, from one streamed pass, not from a sample.
    assert torch.allclose(torch.tensor(streamed.mean), torch.tensor(memory.mean), atol=1e-3)
    assert torch.allclose(torch.tensor(streamed.std), torch.tensor(memory.std), atol=1e-3)
    assert streamed.describe()["sizes"] == memory.describe()["sizes"] == {
        "train": 14, "val": 8, "test": 8}


def test_class_selection_and_random_access(image_folder) -> None:
    data = build_data(data_cfg(root=str(image_folder), classes=["frog", "cat"], cache="none",
                               val_split=0.0, test_split=0.0, workers=0))
    assert data.classes == ["frog", "cat"]
    assert data.train.class_counts(2) == [12, 12]
    picked = data.train.images[torch.tensor([0, 23])]  # what a report gallery does
    assert picked.shape == (2, 3, 16, 16) and picked.dtype == torch.uint8
    # frog images are blue-ish (channel 2), cat images red-ish (channel 0) in the fixture
    assert picked[0, 2].float().mean() > picked[0, 0].float().mean()
    assert picked[1, 0].float().mean() > picked[1, 2].float().mean()


def test_streamed_batches_go_through_the_batch_augmentation(image_folder) -> None:
    data = build_data(data_cfg(root=str(image_folder), cache="none", val_split=0.0,
                               test_split=0.0, image_size=12, workers=0))
    augment = build_augment([Flip(type="flip", alternate=True), RandomCrop(type="random_crop",
                                                                           padding=2)])
    loader = make_loader(data.train, 10, shuffle=True, seed=0)
    seen = 0
    for x, y in loader:
        out = augment(x.float(), epoch=1)
        assert out.shape == x.shape == (len(y), 3, 12, 12)
        seen += len(y)
    assert seen == 36 and len(loader) == 4


def test_in_memory_sources_are_not_streamed_and_say_so() -> None:
    data = build_data(data_cfg(name="digits", cache="none"))
    assert not isinstance(data.train, StreamSplit)
    assert "not streamed" in data.info["cache"]
