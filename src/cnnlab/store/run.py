"""Run folders: ``<runs_dir>/<experiment name>/<run id>/`` and atomic writes into them.

Every file is written to a temporary name in the same folder and renamed into place, so a
crash or Ctrl+C never leaves a half-written ``metrics.json`` or weights file behind.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import platform
import secrets
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import yaml
from safetensors.torch import save_file

from cnnlab.errors import RunError
from cnnlab.store.paths import safe_run_path
from cnnlab.train.cpu import cpu_model

STATUSES = ("running", "completed", "diverged", "failed", "interrupted", "pruned")
TRACKED_PACKAGES = ("cnnlab", "torch", "torchvision", "lightning", "timm", "torchmetrics",
                    "pydantic", "numpy", "scikit-learn")


def new_run_dir(runs_dir: Path, name: str) -> Path:
    """A new, empty ``runs_dir/name/<time>-<random>/``; never outside runs_dir, never shared.

    Two runs of one name started in the same second get distinct folders: the random suffix
    is drawn again when ``mkdir`` finds the folder taken (``exist_ok=False`` is the lock).
    """
    parent = safe_run_path(runs_dir, name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"Cannot create the run folder {parent} ({exc.strerror or exc}); check "
                       "runs_dir and its permissions.") from None
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = parent / f"{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunError(f"Cannot create the run folder {path} ({exc.strerror or exc}); check "
                           "runs_dir and its permissions.") from None
        # Resolved again after creation: a link swapped in meanwhile must not move the run out.
        safe_run_path(runs_dir, name, path.name)
        return path
    raise RunError(f"Could not find a free run folder name under {parent} after 100 tries.")


@contextmanager
def atomic_target(path: Path) -> Iterator[str]:
    """A temporary file name beside ``path``; renamed onto ``path`` only if the block succeeds."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from None
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            raise _write_error(path, exc) from None
        raise


# A full or read-only disk is the environment, not a bug: a message, not a traceback.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def _write_error(path: Path, exc: OSError) -> RunError:
    reason = exc.strerror or os.strerror(exc.errno or 0) or str(exc)
    return RunError(f"Cannot write {path}: {reason} (errno {exc.errno}). Free space or fix the "
                    "permissions of the folder, then `cnnlab resume` the run (or run it again).")


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, allow_nan=True, default=str) + "\n")


def write_yaml(path: Path, obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """The per-epoch rows of a run's history.csv (numbers; NaN where a value is missing)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_run_json(path: Path) -> Any:
    """A run file's JSON, or a RunError naming the file when it is missing or damaged."""
    try:
        return read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"{path} cannot be read ({type(exc).__name__}: {exc}); the run folder is "
                       "damaged: restore the file or start the run again.") from None


def check_checkpoint(path: Path) -> Path:
    """A Lightning checkpoint that is a whole torch archive, or a RunError naming it.

    torch saves zip archives; a write cut short (SIGKILL, full disk) leaves one whose central
    directory or member checksums fail. Checked before resuming, so the error is a message.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        bad = f"{type(exc).__name__}: {exc}"
    if bad is not None:
        raise RunError(f"The checkpoint {path} cannot be read ({bad}); it was probably cut short "
                       "while being written. Delete it and start the run again with `cnnlab "
                       "run` (checkpoints/best.ckpt, if there, holds the best epoch's weights).")
    return path


def save_weights(module: torch.nn.Module, path: Path, metadata_: Mapping[str, str] | None = None) -> Path:
    """The module's state dict as safetensors (tensors only: safe to load from anywhere)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_target(path) as tmp:
        save_file(state, tmp, metadata=dict(metadata_ or {}))
    return path


def environment() -> dict[str, Any]:
    """Code and package versions, recorded in every run so a result can be traced back."""
    versions = {}
    for package in TRACKED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["python"] = platform.python_version()
    return {"versions": versions, "git_sha": git_sha(), "machine": machine_info()}


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.machine(),
            "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def cpu_description(machine: dict[str, Any] | None = None) -> str:
    """e.g. 'AMD EPYC, AVX2, 2 cores': what a CPU timing needs beside it to be compared.

    ``machine`` is a recorded :func:`machine_info` (older records lack model and vector unit);
    default: this machine.
    """
    machine = machine_info() if machine is None else machine
    known = [machine[key] for key in ("cpu_model", "cpu_capability") if machine.get(key)]
    return ", ".join([*known, f"{machine.get('cpu_count', '?')} cores"])


def git_sha() -> str | None:
    """The commit of cnnlab's own source (``-dirty`` when it has local edits), if in git."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"],
                             cwd=source, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def open_run(path: Path) -> Path:
    """An existing run folder (one holding config.yaml), or a RunError saying what is wrong."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise RunError(f"{path} is not a cnnlab run folder (it has no config.yaml); run folders "
                       "are runs/<experiment>/<run id>/.")
    return path
