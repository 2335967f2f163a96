"""What saved weights are applied to: unlabelled inputs for ``predict``, labelled data for
``evaluate``. Both are decoded with the data layer's own functions (``decode_all``), resized
to the run's input size and channels, so a file predicts as it would have in training.

Unlabelled input is one of:

* an image folder: every image below it, sorted; the id is the path relative to the folder
  without its extension (``cat/0001``, or ``0001`` for a flat folder);
* a single image: the id is its name without the extension;
* a CSV file with a header: an id column and an image path column (relative to the CSV's
  folder, or absolute); the ids are kept as written.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.config.schema import DataConfig
from cnnlab.data.build import cap_per_class, conform
from cnnlab.data.imagefolder import IMAGE_SUFFIXES, decode_all, list_images
from cnnlab.data.select import select_per_class
from cnnlab.data.sources import DATASETS
from cnnlab.errors import DataError

PATH_COLUMNS = ("path", "image", "image_path", "file", "filename", "file_name")


@dataclass
class Inputs:
    ids: list[str]
    paths: list[Path]
    kind: str  # folder | image | csv


def resolve_inputs(source: Path, *, id_column: str = "id", path_column: str | None = None) -> Inputs:
    """The images named by a folder, a single image or a CSV, with their ids, in order."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"The input {source} does not exist: give an image folder, an image file "
                        "or a CSV with an id column and image paths.")
    if source.is_dir():
        return _folder_inputs(source)
    if source.suffix.lower() == ".csv":
        return _csv_inputs(source, id_column, path_column)
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return Inputs([source.stem], [source], "image")
    raise DataError(f"The input {source} is neither a folder, an image "
                    f"({', '.join(IMAGE_SUFFIXES)}) nor a .csv file.")


def _folder_inputs(root: Path) -> Inputs:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DataError(f"The folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    ids = [p.relative_to(root).with_suffix("").as_posix() for p in files]
    _check_unique(ids, files, root)
    return Inputs(ids, files, "folder")


def _check_unique(ids: list[str], files: list[Path], where: Path) -> None:
    seen: dict[str, Path] = {}
    for image_id, path in zip(ids, files):
        if image_id in seen:
            raise DataError(f"Two inputs in {where} share the id {image_id!r} ({seen[image_id].name} "
                            f"and {path.name}): ids are file paths without extensions, so rename "
                            "one of them.")
        seen[image_id] = path


def _csv_inputs(path: Path, id_column: str, path_column: str | None) -> Inputs:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if id_column not in columns:
        raise DataError(f"{path} has no {id_column!r} column (columns: {', '.join(columns) or 'none'}); "
                        "name the id column with --id-column.")
    if path_column is None:
        path_column = next((c for c in PATH_COLUMNS if c in columns), None)
        if path_column is None:
            raise DataError(f"{path} has no image path column ({' or '.join(PATH_COLUMNS)}; columns: "
                            f"{', '.join(columns)}); name it with --path-column.")
    elif path_column not in columns:
        raise DataError(f"{path} has no {path_column!r} column (columns: {', '.join(columns)}).")
    if not rows:
        raise DataError(f"{path} lists no images (only a header).")
    ids, files = [], []
    for line, row in enumerate(rows, start=2):
        text = (row.get(path_column) or "").strip()
        if not text:
            raise DataError(f"{path}, line {line}: the {path_column!r} column is empty.")
        file = Path(text).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise DataError(f"{path}, line {line}: the image {file} does not exist (paths are read "
                            "relative to the CSV's folder).")
        ids.append(str(row[id_column]))
        files.append(file)
    return Inputs(ids, files, "csv")


def decode_inputs(paths: list[Path], in_shape: tuple[int, int, int]) -> torch.Tensor:
    """(N, C, H, W) uint8 at the run's input shape (C, H, W)."""
    channels, height, width = in_shape
    return decode_all(list(paths), (height, width), channels)


# ------------------------------------------------------------------------- labelled data

@dataclass
class Labelled:
    images: torch.Tensor  # (N, C, H, W) uint8 at the run's input shape
    labels: torch.Tensor  # (N,) int64 indices into the run's classes
    ids: list[str]
    parts: list[str]  # the source parts read (train, val, test)


def load_labelled(cfg: DataConfig, run_classes: list[str], in_shape: tuple[int, int, int],
                  split: str = "all") -> Labelled:
    """Every labelled image of ``cfg`` (or of one of its source parts), labelled by class name
    with the run's class indices. A class the run does not know is an error."""
    if cfg.name == "imagefolder":
        return _labelled_folder(cfg, run_classes, in_shape, split)
    source = DATASETS.get(cfg.name)(cfg)
    parts = _pick_parts(list(source.parts), split, cfg)
    mapping = _class_mapping(source.classes, run_classes, cfg)
    images, labels, ids = [], [], []
    for part in parts:
        x, y = source.parts[part]
        x, y = cap_per_class(x, y, cfg)
        x, _ = conform(x, y, _shape_cfg(cfg, in_shape))
        images.append(x)
        labels.append(mapping[y])
        ids.extend(f"{part}/{i}" for i in range(len(y)))
    return Labelled(torch.cat(images), torch.cat(labels), ids, parts)


def _labelled_folder(cfg: DataConfig, run_classes: list[str], in_shape, split: str) -> Labelled:
    if cfg.root is None or not Path(cfg.root).expanduser().is_dir():
        raise DataError(f"The data folder {cfg.root} does not exist.")
    root = Path(cfg.root).expanduser()
    listing = list_images(root)
    parts = _pick_parts(list(listing), split, cfg)
    found = sorted({name for part in parts for name in listing[part]})
    _class_mapping(found, run_classes, cfg)  # raises on unknown classes
    files: list[Path] = []
    labels: list[int] = []
    for part in parts:
        part_files, part_labels = [], []
        for name in sorted(listing[part]):
            paths = listing[part][name]
            part_files.extend(paths)
            part_labels.extend([run_classes.index(name)] * len(paths))
        keep = select_per_class(np.asarray(part_labels), cfg.max_per_class, cfg.split_seed)
        files.extend(part_files[i] for i in keep)
        labels.extend(part_labels[i] for i in keep)
    ids = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    images = decode_inputs(files, in_shape)
    return Labelled(images, torch.as_tensor(labels, dtype=torch.int64), ids, parts)


def _pick_parts(available: list[str], split: str, cfg: DataConfig) -> list[str]:
    if split == "all":
        return [p for p in ("train", "val", "test") if p in available]
    if split not in available:
        raise DataError(f"The {cfg.name} data{f' at {cfg.root}' if cfg.root else ''} has no {split!r} "
                        f"part (it has: {', '.join(available)}); use --split all or one of those.")
    return [split]


def _class_mapping(source_classes: list[str], run_classes: list[str], cfg: DataConfig) -> torch.Tensor:
    unknown = [c for c in source_classes if c not in run_classes]
    if unknown:
        raise DataError(
            f"The {cfg.name} data{f' at {cfg.root}' if cfg.root else ''} has classes the run was "
            f"not trained on: {', '.join(unknown)}. The run's classes are {', '.join(run_classes)}; "
            "evaluation data must use those names (a subset is fine).")
    return torch.as_tensor([run_classes.index(c) for c in source_classes], dtype=torch.int64)


def _shape_cfg(cfg: DataConfig, in_shape: tuple[int, int, int]) -> DataConfig:
    return cfg.model_copy(update={"channels": in_shape[0], "image_size": (in_shape[1], in_shape[2])})
