"""Dataset sources, found by name: each turns a DataConfig into decoded uint8 tensors.

A source returns :class:`SourceData`: the class names and one or more named parts
(``train`` always; ``val``/``test`` where the source has its own). Splitting, resizing of
array data and normalization happen once for all sources in :mod:`cnnlab.data.build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data import csvfiles, imagefolder
from cnnlab.data.cache import default_cache_dir
from cnnlab.data.files import load_in_memory
from cnnlab.errors import DataError
from cnnlab.registry import Registry


@dataclass
class SourceData:
    classes: list[str]
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> ((N, C, H, W) uint8, (N,) int64)
    # Files left out under `data.on_bad_image: skip`: {"count": n, "files": [{file, reason}]}.
    skipped: dict = field(default_factory=lambda: {"count": 0, "files": []})


Source = Callable[[DataConfig], SourceData]
DATASETS: Registry[Source] = Registry("dataset")

# Keys of `data:` that build_data applies to every source (selection, splits, size, scaling).
COMMON_KEYS = frozenset({"name", "classes", "max_per_class", "val_split", "test_split",
                         "split_seed", "image_size", "channels", "normalization"})
# Accepted by every source though not every source reads them: they choose how data is fetched
# or cached, never which images are trained on (tests and shared configs set cache: false).
HARMLESS_KEYS = frozenset({"download", "cache", "decode_cache", "cache_dir", "workers",
                           "shuffle_buffer"})
# The keys each source reads beyond COMMON_KEYS; a key set to anything but its default for a
# source that ignores it is refused, so a typo never silently trains on other data.
SOURCE_KEYS: dict[str, frozenset[str]] = {}


def uses_keys(name: str, *keys: str) -> None:
    """Declare the source-specific ``data`` keys that the source ``name`` reads."""
    SOURCE_KEYS[name] = frozenset(keys)


def check_source_keys(cfg: DataConfig) -> None:
    """Refuse a ``data`` key that ``cfg.name``'s source ignores (ConfigError, exit 2).

    A key counts only when the config sets it to a value other than its default: configs that
    spell out a default (``root: null``) stay valid. ``test_split`` is not checked (a source's
    own test split, found at load time, makes it moot), nor are HARMLESS_KEYS.
    """
    from cnnlab.errors import ConfigError

    if cfg.name not in DATASETS:
        DATASETS.get(cfg.name)  # the unknown-name error, listing the sources
    used = COMMON_KEYS | HARMLESS_KEYS | SOURCE_KEYS.get(cfg.name, frozenset(DataConfig.model_fields))
    ignored = [key for key in DataConfig.model_fields
               if key not in used and key in cfg.model_fields_set
               and getattr(cfg, key) != DataConfig.model_fields[key].get_default(call_default_factory=True)]
    if ignored:
        keys = ", ".join(f"`data.{key}`" for key in ignored)
        uses = ", ".join(f"`data.{key}`" for key in sorted(SOURCE_KEYS.get(cfg.name, ()))) or "none"
        raise ConfigError(f"{keys} {'is' if len(ignored) == 1 else 'are'} not used by "
                          f"`{cfg.name}` (its own keys: {uses}; every source also reads "
                          f"{', '.join(sorted(COMMON_KEYS - {'name'}))}). Remove "
                          f"{'it' if len(ignored) == 1 else 'them'}, or set `data.name` to the "
                          "source you meant.")


@DATASETS.register("digits", "scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)")
def load_digits_source(cfg: DataConfig) -> SourceData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16 of an 4x4 block; stretch them to the 0..255 image range.
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))
    return SourceData([str(c) for c in digits.target_names], {"train": (x, y)})


uses_keys("digits")


@DATASETS.register("imagefolder", "root/<class>/*.jpg|png|... or root/{train,val,test}/<class>/")
def load_imagefolder_source(cfg: DataConfig) -> SourceData:
    return _decoded(imagefolder.list_files(cfg), cfg)


uses_keys("imagefolder", "root", "cache", "decode_cache", "cache_dir", "on_bad_image")


@DATASETS.register("csv", "a CSV of image path or id, label + an image folder (Kaggle's train.csv)")
def load_csv_source(cfg: DataConfig) -> SourceData:
    return _decoded(csvfiles.list_files(cfg), cfg)


uses_keys("csv", "root", "image_dir", "path_column", "label_column", "csv_header", "image_suffix",
          "cache", "decode_cache", "cache_dir", "on_bad_image")


def _decoded(listing, cfg: DataConfig) -> SourceData:
    parts, skipped = load_in_memory(listing, cfg)
    return SourceData(listing.classes, parts, skipped.describe())


@DATASETS.register("npz", "a .npz file with arrays x (N,H,W[,C]), y (N,), optional classes, x_test, y_test")
def load_npz_source(cfg: DataConfig) -> SourceData:
    if cfg.root is None:
        raise DataError("data.root must name the .npz file for `data.name: npz`.")
    path = Path(cfg.root).expanduser()
    if not path.is_file():
        raise DataError(f"data.root: the .npz file {path} does not exist.")
    try:
        arrays = np.load(path, allow_pickle=False)
        keys = set(arrays.files)
    except Exception as exc:  # numpy raises several types for a bad archive
        raise DataError(f"data.root: {path} is not a readable .npz archive ({exc}).") from None
    for key in ("x", "y"):
        if key not in keys:
            raise DataError(f"{path} has no array {key!r} (found: {', '.join(sorted(keys))}); "
                            "an npz dataset needs x (N,H,W[,C]) and y (N,).")
    try:
        # Object arrays would need pickle (never loaded) and text labels do not convert: both
        # fail here, inside numpy, and become one message naming the file.
        parts = {"train": _npz_part(path, arrays["x"], arrays["y"], "x", "y")}
        if "x_test" in keys and "y_test" in keys:
            parts["test"] = _npz_part(path, arrays["x_test"], arrays["y_test"], "x_test", "y_test")
        names = arrays["classes"].tolist() if "classes" in keys else None
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: the arrays cannot be used ({exc}); an npz dataset holds numeric "
                        "x and integer y (no pickled objects).") from None
    labels = np.concatenate([p[1].numpy() for p in parts.values()])
    if names is not None:
        classes = [str(c) for c in names]
        if labels.max(initial=0) >= len(classes) or labels.min(initial=0) < 0:
            raise DataError(f"{path}: y holds labels up to {int(labels.max())} but `classes` names "
                            f"only {len(classes)} classes.")
    else:
        classes = [str(i) for i in range(int(labels.max(initial=0)) + 1)]
    return SourceData(classes, parts)


uses_keys("npz", "root")


def _npz_part(path: Path, x: np.ndarray, y: np.ndarray, xname: str, yname: str):
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{path}: {xname} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) "
                        "with C = 1 or 3.")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: {yname} has shape {y.shape}; expected ({x.shape[0]},) to match "
                        f"{xname}.")
    if np.issubdtype(x.dtype, np.floating) and x.max(initial=0) <= 1.0:
        x = x * 255.0  # float images in [0, 1]
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # (N, C, H, W)
    return images, torch.from_numpy(y.astype(np.int64))


# ------------------------------------------------------------------ torchvision downloads

@dataclass(frozen=True)
class _TorchvisionSpec:
    cls_name: str
    files: str  # what an offline user must put where, relative to the root


_TORCHVISION = {
    "cifar10": _TorchvisionSpec(
        "CIFAR10", "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/ (or its "
        "extracted folder cifar-10-batches-py/)"),
    "cifar100": _TorchvisionSpec(
        "CIFAR100", "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/ (or its "
        "extracted folder cifar-100-python/)"),
    "mnist": _TorchvisionSpec(
        "MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz), the four files "
        "of the MNIST database"),
    "fashion_mnist": _TorchvisionSpec(
        "FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte(.gz), the "
        "four files from github.com/zalandoresearch/fashion-mnist"),
}


def _torchvision_source(name: str, spec: _TorchvisionSpec) -> Source:
    def load(cfg: DataConfig) -> SourceData:
        import torchvision.datasets as tvd

        root = Path(cfg.root).expanduser() if cfg.root else default_cache_dir(cfg.cache_dir) / "datasets"
        dataset_cls = getattr(tvd, spec.cls_name)
        parts = {}
        for part, is_train in (("train", True), ("test", False)):
            try:
                ds = dataset_cls(str(root), train=is_train, download=cfg.download)
            except Exception as exc:  # RuntimeError when absent offline, URLError/OSError on network
                how = "could not be downloaded" if cfg.download else "is not there (download: false)"
                raise DataError(
                    f"Dataset {name} {how} in {root} ({type(exc).__name__}: {exc}). Put "
                    f"{spec.files} under {root} (or set data.root to where it is), or go online "
                    f"with data.download: true.".replace("\n", " ")) from None
            data = torch.as_tensor(np.asarray(ds.data))
            images = data.permute(0, 3, 1, 2) if data.ndim == 4 else data.unsqueeze(1)  # (N, C, H, W)
            labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
            parts[part] = (images.contiguous(), labels)
        return SourceData(list(ds.classes), parts)

    load.__doc__ = f"torchvision {spec.cls_name}, downloaded when online"
    return load


for _name, _spec in _TORCHVISION.items():
    DATASETS.add(_name, _torchvision_source(_name, _spec), f"torchvision {_spec.cls_name} (download)")
    uses_keys(_name, "root", "download", "cache_dir")


# Registers tfrecord and webdataset (indexed, then decoded or streamed); imported last because
# it registers into DATASETS.
from cnnlab.data import stream_sources  # noqa: E402,F401
