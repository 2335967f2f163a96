"""A CSV of labels next to a folder of images: the Kaggle layout (``train.csv`` of ``id,label``
plus ``train/<id>.png``).

``data.root`` is the CSV; images are found in ``data.image_dir`` (default: the CSV's folder).
A row's path or id names its image as written (``train/17.png``, absolute paths too) or
without its extension (``17`` finds ``17.png``, ``17.jpg``, ... or ``17`` + ``data.image_suffix``).
The class list is ``data.classes`` when given (a label outside it is an error, not a silent
drop: it is almost always a typo in the CSV), else the CSV's labels sorted (numerically when
all are integers, so ``10`` follows ``9``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cnnlab.config.schema import DataConfig
from cnnlab.data.files import FileListing, lists_files, require_root
from cnnlab.data.select import select_per_class
from cnnlab.errors import DataError


@lists_files("csv")
def list_files(cfg: DataConfig) -> FileListing:
    path = _check_csv(cfg.root)
    image_dir = Path(cfg.image_dir).expanduser() if cfg.image_dir else path.parent
    if not image_dir.is_dir():
        raise DataError(f"data.image_dir: the folder {image_dir} does not exist (it should hold "
                        f"the images that {path.name} names).")
    rows = _read_rows(path, cfg)
    classes = _class_list(path, [label for _, label, _ in rows], cfg.classes)
    index = {name: i for i, name in enumerate(classes)}
    files, labels = [], []
    for entry, label, line in rows:
        if label not in index:
            raise DataError(f"{path}, line {line}: the label {label!r} is not in the class list "
                            f"(data.classes: {', '.join(classes)}). Fix the row, or add the class "
                            "to data.classes.")
        files.append(_resolve(entry, image_dir, cfg.image_suffix, path, line))
        labels.append(index[label])
    labels_np = np.asarray(labels, dtype=np.int64)
    keep = select_per_class(labels_np, cfg.max_per_class, cfg.split_seed)
    return FileListing(classes, {"train": ([files[i] for i in keep], labels_np[keep])})


def _check_csv(root: Path | None) -> Path:
    return require_root(root, unset="a csv dataset needs the CSV file of image paths (or ids) "
                        "and labels, e.g. data.root: kaggle/train.csv.", exists=Path.is_file,
                        what="the CSV file")


def _read_rows(path: Path, cfg: DataConfig) -> list[tuple[str, str, int]]:
    """``(path or id, label, line number)`` for every non-blank row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable UTF-8 CSV file ({exc}).") from None
    numbered = [(line, row) for line, row in enumerate(table, start=1)
                if any(cell.strip() for cell in row)]
    if cfg.csv_header:
        if not numbered:
            raise DataError(f"{path} is empty: it needs a header line and one row per image "
                            "(e.g. id,label).")
        header = [cell.strip() for cell in numbered[0][1]]
        numbered = numbered[1:]
    else:
        header = None
    at = _column(path, header, cfg.path_column, 0, "path_column")
    label_at = _column(path, header, cfg.label_column, 1, "label_column")
    if not numbered:
        raise DataError(f"{path} lists no images{' (only a header)' if header else ''}: add one "
                        "row per image.")
    rows = []
    for line, row in numbered:
        if len(row) <= max(at, label_at):
            raise DataError(f"{path}, line {line}: {len(row)} column(s), but the image is in "
                            f"column {at + 1} and the label in column {label_at + 1}.")
        entry, label = row[at].strip(), row[label_at].strip()
        if not entry or not label:
            raise DataError(f"{path}, line {line}: the {'image' if not entry else 'label'} "
                            "column is empty.")
        rows.append((entry, label, line))
    return rows


def _column(path: Path, header: list[str] | None, wanted: str | int | None, default: int,
            key: str) -> int:
    """The 0-based position of a column named or numbered by ``data.<key>``."""
    if wanted is None:
        wanted = default
    if isinstance(wanted, int):
        if header is not None and wanted >= len(header):
            raise DataError(f"data.{key}: {path} has {len(header)} column(s) "
                            f"({', '.join(header)}); column {wanted} (0-based) does not exist.")
        return wanted
    if header is None:
        raise DataError(f"data.{key}: {wanted!r} names a column, but data.csv_header is false "
                        "(no header to find it in); give its 0-based position instead.")
    if wanted not in header:
        raise DataError(f"data.{key}: {path} has no column {wanted!r} (columns: "
                        f"{', '.join(header) or 'none'}).")
    return header.index(wanted)


def _class_list(path: Path, labels: list[str], wanted: list[str] | None) -> list[str]:
    if wanted is not None:
        return list(wanted)
    found = set(labels)
    if all(label.lstrip("-").isdigit() for label in found):
        return sorted(found, key=int)
    return sorted(found)


def _resolve(entry: str, image_dir: Path, suffix: str | None, csv_path: Path, line: int) -> Path:
    from cnnlab.data.imagefolder import IMAGE_SUFFIXES

    written = Path(entry).expanduser()
    base = written if written.is_absolute() else image_dir / written
    candidates = [base] + [base.with_name(base.name + s) for s in
                           ((suffix,) if suffix else IMAGE_SUFFIXES)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = f"{base}" + (f" or {base.name}{suffix}" if suffix else
                         f" with or without {', '.join(IMAGE_SUFFIXES)}")
    raise DataError(f"{csv_path}, line {line}: the image {entry!r} does not exist (looked for "
                    f"{tried}; paths and ids are read relative to data.image_dir, here "
                    f"{image_dir}).")
