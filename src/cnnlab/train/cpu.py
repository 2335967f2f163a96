"""Process settings for training on a CPU: the thread count and glibc's allocator.

glibc hands every allocation over 32 MiB to the kernel as a fresh mapping and unmaps it again on
free. A training step at batch 1024 allocates dozens of such tensors (one 64-channel 32x32
activation is 256 MiB), so each step page-faults them back in and the kernel zeroes every page:
on our 2-core AVX2 host a third of a fastnet step was system time. With mappings off and the heap
trimmed only past 2 GiB of free top, freed blocks are reused by the next step, as PyTorch's
caching allocator does on a GPU; the price is that the process keeps most of its peak memory. Streamed data (``data.cache: none``)
is chosen to bound memory, so it keeps glibc's defaults: with the heap kept, the varying sizes of
the batches it assembles from the workers' chunks fragmented it, and the main process's
anonymous peak grew epoch after epoch (bench/data.py, docs/data.md).
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

import torch

# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# mallopt takes a C int: 2 GiB, far above what one training step frees at its heap's top.
_TRIM_THRESHOLD = 2**31 - 1


def configure_cpu(threads: int | None, *, keep_memory: bool = True) -> int:
    """Use ``threads`` (default: every core) and, with ``keep_memory``, keep freed memory;
    returns the thread count."""
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    if keep_memory:
        keep_freed_memory()
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """Serve large tensors from glibc's heap and keep it; False where glibc is not in use."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def cpu_model() -> str:
    """The CPU's marketing name: '2 cores' alone hides a 2x speed difference between hosts."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
