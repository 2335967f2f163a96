"""Image folders: ``root/<class>/*`` or ``root/{train,val,test}/<class>/*``, decoded once.

Decoding 50,000 JPEGs takes tens of seconds, so the decoded uint8 tensors are cached on disk
(:mod:`cnnlab.data.files`, :mod:`cnnlab.data.disk`). Every image of a run is resized to ``image_size`` at decode time;
without ``image_size`` all images must share one size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.io import ImageReadMode, decode_image

from cnnlab.config.schema import DataConfig
from cnnlab.data.files import FileListing, lists_files, require_root
from cnnlab.data.memory import check_fits
from cnnlab.data.select import select_per_class
from cnnlab.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_NAMES = ("train", "val", "test")
# torchvision decodes these natively (and fast); anything else goes through PIL.
_NATIVE = (".jpg", ".jpeg", ".png", ".webp")
# check_pixel_count refuses oversized images with its own message; PIL's warning would only
# repeat it (set once here: warning filters are process-wide, not per decoding thread).
warnings.filterwarnings("ignore", message="Image size .* exceeds limit", module="PIL")


@lists_files("imagefolder")
def list_files(cfg: DataConfig) -> FileListing:
    """The files and labels of each part (``train``, and ``val``/``test`` where present)."""
    root = _check_root(cfg.root)
    listing = list_images(root)
    classes = _select_classes(listing, cfg.classes, root)
    parts = {}
    for split, by_class in listing.items():
        files, labels = [], []
        for label, name in enumerate(classes):
            paths = by_class.get(name, [])
            files.extend(paths)
            labels.extend([label] * len(paths))
        keep = select_per_class(np.asarray(labels), cfg.max_per_class, cfg.split_seed)
        parts[split] = ([files[i] for i in keep], np.asarray(labels, dtype=np.int64)[keep])
    return FileListing(classes, parts)


def _check_root(root: Path | None) -> Path:
    return require_root(root, unset="an imagefolder dataset needs the folder that holds one "
                        "sub-folder of images per class (or train/val/test folders of them).",
                        exists=Path.is_dir, what="the folder")


def list_images(root: Path) -> dict[str, dict[str, list[Path]]]:
    """``{split: {class: [files]}}``; split is ``train`` only for the flat layout."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name for p in subdirs}
    if "train" in names and names <= set(SPLIT_NAMES):
        split_roots = {p.name: p for p in subdirs}
    else:
        split_roots = {"train": root}
    listing = {}
    for split, split_root in split_roots.items():
        class_dirs = sorted(p for p in split_root.iterdir()
                            if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise DataError(f"{split_root} holds no class folders: put the images of each class "
                            f"in their own sub-folder, e.g. {split_root}/cat/0001.jpg.")
        by_class = {}
        for class_dir in class_dirs:
            files = sorted(p for p in class_dir.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise DataError(f"The class folder {class_dir} holds no images "
                                f"({', '.join(IMAGE_SUFFIXES)}): add images or remove the folder.")
            by_class[class_dir.name] = files
        listing[split] = by_class
    return listing


def _select_classes(listing: dict[str, dict[str, list[Path]]], wanted: list[str] | None,
                    root: Path) -> list[str]:
    train_classes = sorted(listing["train"])
    for split, by_class in listing.items():
        extra = sorted(set(by_class) - set(train_classes))
        if extra:
            raise DataError(f"{root}/{split} has classes that train lacks ({', '.join(extra)}); "
                            f"train has {len(train_classes)} classes: {', '.join(train_classes)}.")
    if wanted is None:
        return train_classes
    missing = [c for c in wanted if c not in train_classes]
    if missing:
        raise DataError(f"data.classes names {', '.join(missing)}, not found in {root}; "
                        f"available: {', '.join(train_classes)}.")
    return list(wanted)


def decode_all(files: list[Path], size: tuple[int, int] | None, channels: int) -> torch.Tensor:
    """Decode (and resize) every file into one (N, C, H, W) uint8 tensor; a bad file is an error."""
    from cnnlab.data.decode import decode_chunks

    if not files:
        return torch.zeros((0, channels, *(size or (1, 1))), dtype=torch.uint8)
    if size is not None:
        check_fits(len(files), channels, size, f"image size {size[0]} x {size[1]}")
    return torch.cat([images for _, images in decode_chunks(files, size, channels)])


def decode_one(path: Path, size: tuple[int, int] | None, channels: int) -> torch.Tensor:
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    check_pixel_count(path)
    try:
        if path.suffix.lower() in _NATIVE:
            image = decode_image(torch.from_file(str(path), dtype=torch.uint8,
                                                 size=path.stat().st_size), mode=mode)
        else:
            image = _decode_with_pil(path, channels)
    except Exception as exc:
        raise DataError(f"Cannot read the image {path}: it is corrupt or not an image "
                        f"({type(exc).__name__}: {str(exc).strip() or 'no detail'}). Remove or "
                        "replace the file.".replace("\n", " ")) from None
    if image.dtype != torch.uint8:  # 16-bit PNGs decode as uint16: scale 0-65535 to 0-255
        image = TF.to_dtype(image, torch.uint8, scale=True)
    if size is not None and tuple(image.shape[1:]) != size:
        image = TF.resize(image, list(size), antialias=True)
    return image  # (C, H, W) uint8


def check_pixel_count(path: Path) -> None:
    """Refuse an image whose header claims more pixels than PIL's MAX_IMAGE_PIXELS.

    Only the header is read: a 50,000 x 50,000 PNG of a few KiB (a decompression bomb) fails
    here instead of asking the decoder for 7.5 GB.
    """
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError:
        return  # the decoder names the problem
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        # PNG, most datasets' format: the size is at a fixed offset (a third of PIL's time).
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    else:
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Image.DecompressionBombError:
            width = height = None
        except Exception:
            return  # not an image PIL knows: the decoder names the problem
    limit = Image.MAX_IMAGE_PIXELS
    if limit and (width is None or width * height > limit):
        shown = f"{width} x {height} pixels" if width is not None else "far too many pixels"
        raise DataError(f"The image {path} claims {shown}, over the limit of {limit:,} pixels "
                        "(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?). Remove or shrink "
                        "the file.")


def _decode_with_pil(path: Path, channels: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        array = np.asarray(im, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)  # (C, H, W)
