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


def test_keep_memory_false_leaves_the_allocator_alone(monkeypatch):
    calls = []
    monkeypatch.setattr("cnnlab.train.cpu.keep_freed_memory", lambda: calls.append(1) or True)
    before = torch.get_num_threads()
    try:
        configure_cpu(1, keep_memory=False)
        assert calls == []
        configure_cpu(1)
        assert calls == [1]
    finally:
        torch.set_num_threads(before)


def test_streamed_data_trains_with_glibcs_defaults(monkeypatch, image_folder, tmp_path):
    # Streamed data is chosen to bound memory: a heap kept for reuse grew epoch after epoch there.
    from cnnlab.config.load import validate_config
    from cnnlab.data import build_data
    from cnnlab.models import build_model
    from cnnlab.train import Classifier
    from cnnlab.train.fit import train

    kept = []
    monkeypatch.setattr("cnnlab.train.cpu.keep_freed_memory", lambda: kept.append(1) or True)
    cfg = validate_config({"name": "x", "data": {
        "root": str(image_folder), "cache": "none", "workers": 0, "val_split": 0.25,
        "test_split": 0.0, "decode_cache": False}, "model": {"layers": [
            {"flatten": {}}]}, "train": {"epochs": 1, "batch_size": 8, "threads": 1}})
    data = build_data(cfg.data)
    assert data.streamed
    before = torch.get_num_threads()
    try:
        net = build_model(cfg.model, data.in_shape, data.num_classes)
        train(Classifier(net, data.mean, data.std), data, cfg.train, cfg.augment,
              checkpoint_dir=tmp_path / "ckpt")
    finally:
        torch.set_num_threads(before)
    assert kept == []
    memory = build_data(cfg.data.model_copy(update={"cache": "memory"}))
    assert not memory.streamed
