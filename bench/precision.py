#!/usr/bin/env python3
"""Does bf16 mixed precision pay on this CPU? Times a recipe's training step both ways.

Builds the recipe's model (channels_last, as cnnlab trains it), then times full training
steps (forward, loss, backward, SGD step) on one random batch of the recipe's batch size, in
fp32 and under ``torch.autocast("cpu", bfloat16)`` as Lightning's ``bf16-mixed`` runs them,
alternating A B A B so drift cancels. Prints the median seconds a step of each and their
ratio, with the CPU's bf16-related flags, and appends the line to docs/performance.md.
``train.precision: auto`` makes the same measurement at a run's start (cnnlab.train.precision)
and picks bf16 where the ratio is at least 1.1; this script shows it for a recipe:

    .venv/bin/python bench/precision.py recipes/cifar10_fast/fast.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _record import record, stamped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cnnlab.config import load_config
    from cnnlab.models import build_model
    from cnnlab.train.cpu import configure_cpu, keep_freed_memory
    from cnnlab.train.precision import cpu_bf16_flags, time_precisions

    cfg = load_config(args.recipe, [])
    threads = configure_cpu(cfg.train.threads)
    keep_freed_memory()
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, args.size, args.size), 10)
    batch = cfg.train.batch_size
    fp32, bf16 = time_precisions(model, (3, args.size, args.size), batch,
                                 channels_last=True, rounds=args.rounds, warmup=2)
    figures = stamped({
        "recipe": str(args.recipe), "batch": batch, "size": args.size, "rounds": args.rounds,
        "threads": threads, "fp32_s_per_step": round(fp32, 3), "bf16_s_per_step": round(bf16, 3),
        "bf16_speedup": round(fp32 / bf16, 3),
        "cpu_bf16_flags": cpu_bf16_flags(),
    })
    record(f"precision `{args.recipe}`", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
