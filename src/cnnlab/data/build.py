"""``build_data(cfg.data) -> DataBundle``: load a source, select, split, size and scale it."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from cnnlab.config.schema import DataConfig
from cnnlab.data.bundle import DataBundle, Split
from cnnlab.data.memory import check_fits
from cnnlab.data.select import select_per_class, stratified_split
from cnnlab.data.sources import DATASETS, SourceData, check_source_keys
from cnnlab.errors import DataError


def build_data(cfg: DataConfig) -> DataBundle:
    check_source_keys(cfg)
    if cfg.cache == "disk":
        from cnnlab.data.disk import build_from_disk

        return build_from_disk(cfg)
    if cfg.cache == "none":
        from cnnlab.data.build_stream import build_streamed
        from cnnlab.data.stream_sources import STREAM_SOURCES
        if cfg.name in STREAM_SOURCES:
            return build_streamed(cfg)
        # digits, npz and torchvision arrays are in memory whatever the mode (noted in data.json)
    source = DATASETS.get(cfg.name)(cfg)
    source = select_classes(source, cfg.classes)
    parts = {name: cap_per_class(images, labels, cfg)
             for name, (images, labels) in source.parts.items()}
    parts = {name: conform(images, labels, cfg) for name, (images, labels) in parts.items()}
    check_classes(source.classes, parts["train"][1], cfg)

    plan, split_info = plan_splits({name: labels.numpy() for name, (_, labels) in parts.items()},
                                   cfg)
    splits = {split: Split(*_take(parts[part], idx)) for split, (part, idx) in plan.items()}
    info = {"dataset": cfg.name, "root": str(cfg.root) if cfg.root else None, **split_info}
    if cfg.cache == "none":
        info["cache"] = f"memory: {cfg.name} is read into memory whole, so it is not streamed"
    if cfg.on_bad_image == "skip":
        info["skipped_images"] = source.skipped
    train = splits["train"]
    mean, std = pixel_stats(train.images, cfg.normalization)
    return DataBundle(source.classes, train, splits.get("val"), splits.get("test"),
                      cfg.normalization, mean, std, info)


def plan_splits(labels: dict[str, np.ndarray], cfg: DataConfig
                ) -> tuple[dict[str, tuple[str, np.ndarray]], dict]:
    """Which images of which source part make each split: ``{split: (part, indices)}``.

    Works on labels alone, so the disk cache can decide the splits before decoding anything.
    A source's own ``val``/``test`` part is used whole; otherwise that split is a stratified
    hold-out of the source's training images.
    """
    info = {}
    plan: dict[str, tuple[str, np.ndarray]] = {}
    train_idx = np.arange(len(labels["train"]))
    if "test" in labels:
        plan["test"] = ("test", np.arange(len(labels["test"])))
        info["test_from"] = "source"
    else:
        kept, held = stratified_split(labels["train"], cfg.test_split, cfg.split_seed, "test")
        if len(held):
            plan["test"] = ("train", held)
        train_idx = kept
        info["test_from"] = f"stratified {cfg.test_split:g} of the source's training images"
    if "val" in labels:
        plan["val"] = ("val", np.arange(len(labels["val"])))
        info["val_from"] = "source"
    else:
        # The validation fraction is of the source's training images, as Keras's
        # validation_split is; after a test hold-out it is rescaled to keep that meaning.
        fraction = cfg.val_split / (1.0 - (cfg.test_split if "test" not in labels else 0.0))
        kept, held = stratified_split(labels["train"][train_idx], min(fraction, 0.9),
                                      cfg.split_seed + 1, "validation")
        if len(held):
            plan["val"] = ("train", train_idx[held])
        train_idx = train_idx[kept]
        info["val_from"] = f"stratified {cfg.val_split:g} of the source's training images"
    plan["train"] = ("train", train_idx)
    return plan, info


def _take(part: tuple[torch.Tensor, torch.Tensor], idx: np.ndarray):
    images, labels = part
    if len(idx) == len(labels) and np.array_equal(idx, np.arange(len(labels))):
        return images, labels  # the whole part, in order: no copy
    index = torch.as_tensor(idx)
    return images[index], labels[index]


def select_classes(source: SourceData, wanted: list[str] | None) -> SourceData:
    """Keep only ``wanted`` classes, relabelled 0..k-1 in the order given."""
    if wanted is None or list(wanted) == source.classes:
        return source
    missing = [c for c in wanted if c not in source.classes]
    if missing:
        raise DataError(f"data.classes names {', '.join(missing)}, which the dataset does not "
                        f"have; available: {', '.join(source.classes)}.")
    old_to_new = torch.full((len(source.classes),), -1, dtype=torch.int64)
    for new, name in enumerate(wanted):
        old_to_new[source.classes.index(name)] = new
    parts = {}
    for name, (images, labels) in source.parts.items():
        new_labels = old_to_new[labels]
        keep = new_labels >= 0
        parts[name] = (images[keep], new_labels[keep])
    return SourceData(list(wanted), parts)


def cap_per_class(images: torch.Tensor, labels: torch.Tensor, cfg: DataConfig):
    keep = select_per_class(labels.numpy(), cfg.max_per_class, cfg.split_seed)
    if len(keep) == len(labels):
        return images, labels
    keep_t = torch.as_tensor(keep)
    return images[keep_t], labels[keep_t]


def conform(images: torch.Tensor, labels: torch.Tensor, cfg: DataConfig):
    """Match ``cfg.channels`` and ``cfg.image_size`` (for sources that did not already)."""
    if cfg.channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1).contiguous()
    elif cfg.channels == 1 and images.shape[1] == 3:
        images = TF.rgb_to_grayscale(images)
    if cfg.image_size is not None:
        size = [cfg.image_size] * 2 if isinstance(cfg.image_size, int) else list(cfg.image_size)
        if list(images.shape[2:]) != size:
            check_fits(images.shape[0], images.shape[1], (size[0], size[1]),
                       f"data.image_size {cfg.image_size}")
            images = TF.resize(images, size, antialias=True)
    return images.contiguous(), labels


def check_classes(classes: list[str], labels: torch.Tensor, cfg: DataConfig) -> None:
    present = torch.unique(labels).tolist()
    if len(classes) < 2 or len(present) < 2:
        raise DataError(
            f"The {cfg.name} data{f' at {cfg.root}' if cfg.root else ''} has "
            f"{len(present)} class(es) with training images ({', '.join(classes) or 'none'}); "
            "a classifier needs at least two.")
    if labels.max() >= len(classes):
        raise DataError(f"Labels go up to {int(labels.max())} but only {len(classes)} class names "
                        "are known: the class list and the labels disagree.")


def pixel_stats(images: torch.Tensor, normalization: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) on the 0-255 scale that the normalization mode implies."""
    channels = images.shape[1]
    if normalization == "none":
        return (0.0,) * channels, (1.0,) * channels
    if normalization == "rescale":
        return (0.0,) * channels, (255.0,) * channels
    # Chunked so a large split (or a memory-mapped one, read page by page) never needs a float
    # copy of itself in memory: about 32 MB of float64 per chunk whatever the image size.
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    per_image = max(1, channels * images.shape[2] * images.shape[3])
    for chunk in images.split(max(1, min(4096, 2**22 // per_image))):
        x = chunk.to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean**2).clamp_min(1e-6).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


