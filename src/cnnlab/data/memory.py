"""A bound on decoded data: refuse an image size whose uint8 tensors cannot fit in memory.

``data.image_size`` has no upper limit in the schema (what fits depends on the machine and the
image count), so a typo such as ``image_size: 100000`` is caught here, before any allocation,
instead of ending in an allocator traceback or the OOM killer.
"""

from __future__ import annotations

import os

from cnnlab.errors import DataError


def available_bytes() -> int | None:
    """Memory the kernel says is available now (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(images: int, channels: int, size: tuple[int, int], what: str) -> None:
    """DataError unless ``images`` uint8 images of ``channels`` x ``size`` fit in memory."""
    needed = images * channels * size[0] * size[1]
    available = available_bytes()
    if available is not None and needed > available:
        raise DataError(
            f"{what}: {images:,} images of {channels} x {size[0]} x {size[1]} pixels need "
            f"{needed / 2**30:,.1f} GiB as uint8, more than the {available / 2**30:,.1f} GiB "
            "of memory available; lower data.image_size (or data.max_per_class), or set "
            "data.cache: disk to read them from a memory-mapped file.")
