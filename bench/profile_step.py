#!/usr/bin/env python3
"""Where a training step's time goes: data, augmentation, forward, backward, optimizer.

Builds the recipe's run as `cnnlab plan` does (same data, model, LightningModule and precision)
and times STEPS real training steps phase by phase (cnnlab.plan.time_training_steps), after a
warm-up: the wait for the loader's next batch (decode and collate; in-memory data is a copy),
the batch augmentation, forward + loss, backward, and the optimizer step. Prints each phase's
median milliseconds and its share of the total, and the share spent outside forward/backward
(the part a faster input pipeline or optimizer could remove). Appends the line to
docs/performance.md.

    .venv/bin/python bench/profile_step.py recipes/cifar10_fast/fast.yaml \\
        --set data.name=imagefolder --set data.root=../shared/datasets/cifar10/train
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _record import record, stamped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    from cnnlab.config import load_config
    from cnnlab.plan import STEP_PHASES, prepare_training, time_training_steps
    from cnnlab.train.cpu import configure_cpu

    cfg = load_config(args.recipe, args.overrides)
    threads = configure_cpu(cfg.train.threads)
    data, _, lit, precision = prepare_training(cfg)
    full_epoch = next(e for e in range(cfg.train.epochs) if cfg.train.train_size(e) is None)
    phases: dict[str, list[float]] = {}
    time_training_steps(lit, data, cfg, steps=args.steps, warmup=args.warmup, epoch=full_epoch,
                        precision=precision.precision, phases=phases)
    median_ms = {name: round(1000 * statistics.median(phases[name]), 1) for name in STEP_PHASES}
    total = sum(median_ms.values())
    outside = total - median_ms["forward"] - median_ms["backward"]
    figures = stamped({
        "recipe": str(args.recipe), "overrides": args.overrides, "batch": cfg.train.batch_size,
        "steps": args.steps, "threads": threads, "precision": precision.precision,
        "median_ms": median_ms,
        "share_pct": {name: round(100 * ms / total, 1) for name, ms in median_ms.items()},
        "outside_forward_backward_pct": round(100 * outside / total, 1),
    })
    record(f"profile_step `{args.recipe}`", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
