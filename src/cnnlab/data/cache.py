"""On-disk cache of decoded images, so a second run of the same data starts in seconds.

Entries are safetensors files keyed by a hash of everything that shapes the decoded tensors
(file list with sizes and modification times, image size, channels, class selection). They
are written atomically: a crash leaves the previous state, never a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def default_cache_dir(configured: Path | None = None) -> Path:
    if configured is not None:
        return Path(configured).expanduser()
    env = os.environ.get("CNNLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cnnlab"


def cache_key(description: Any) -> str:
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached tensors, or None when absent or unreadable (a cache miss, never an error)."""
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception:
        return None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except OSError:
        # A read-only or full cache disk costs speed on the next run, not this run.
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass
