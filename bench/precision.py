#!/usr/bin/env python3
"""Does bf16 mixed precision pay on this CPU? Times a recipe's training step both ways.

Builds the recipe's model (channels_last, as cnnlab trains it), then times full training
steps (forward, loss, backward, SGD step) on one random batch of the recipe's batch size, in
fp32 and under ``torch.autocast("cpu", bfloat16)`` as Lightning's ``bf16-mixed`` runs them,
alternating A B A B so drift cancels. Prints the median seconds a step of each and their
ratio, with the CPU's bf16-related flags, and appends the line to docs/performance.md.
Set ``train.precision: bf16-mixed`` only where this prints a ratio above 1:

    .venv/bin/python bench/precision.py recipes/cifar10_fast/fast.yaml
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _record import record

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def cpu_bf16_flags() -> list[str]:
    """Which of the CPU flags that make bf16 fast the kernel reports (Linux only)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return [flag for flag in BF16_FLAGS if flag in flags]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cnnlab.config import load_config
    from cnnlab.models import build_model
    from cnnlab.store.run import cpu_description
    from cnnlab.train.cpu import configure_cpu, keep_freed_memory

    cfg = load_config(args.recipe, [])
    threads = configure_cpu(cfg.train.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, args.size, args.size), 10)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = cfg.train.batch_size
    images = torch.randn(batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,))

    def step_seconds(bf16: bool) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for bf16 in (False, True):  # warm-up: oneDNN picks and caches its kernels per dtype
        step_seconds(bf16)
        step_seconds(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for bf16 in (False, True):
            times[bf16].append(step_seconds(bf16))
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    figures = {
        "recipe": str(args.recipe), "batch": batch, "size": args.size, "rounds": args.rounds,
        "threads": threads, "fp32_s_per_step": round(fp32, 3), "bf16_s_per_step": round(bf16, 3),
        "bf16_speedup": round(fp32 / bf16, 3), "cpu": cpu_description(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record(f"precision `{args.recipe}`", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
