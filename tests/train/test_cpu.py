"""The CPU process settings train() and plan make."""

import ctypes
import platform

import pytest
import torch

from cnnlab.train.cpu import configure_cpu, keep_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="needs glibc's mallopt")


def test_configure_cpu_sets_the_thread_count_and_restores():
    before = torch.get_num_threads()
    try:
        assert configure_cpu(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@glibc
def test_large_tensors_come_from_the_heap_not_fresh_mappings():
    # glibc's default maps a 64 MiB buffer above the heap's top (and unmaps it on free);
    # kept memory puts it below the top, where a freed block is reused without page faults.
    assert keep_freed_memory()
    tensor = torch.empty(16 * 2**20)  # 64 MiB of float32
    heap_top = ctypes.CDLL("libc.so.6").sbrk
    heap_top.restype = ctypes.c_void_p
    assert tensor.data_ptr() < heap_top(0)
