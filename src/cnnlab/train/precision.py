"""``train.precision: auto``: mixed precision only where this host runs this model faster in it.

Whether bf16 autocast pays on a CPU depends on the host, not on the model family: issue 25
reports a VGG-style net training 4x faster on a 2-core Xeon with AMX, while on an AVX-512-BF16
host without AMX report 003's VGG ran at 0.79x of fp32 (bench/precision.py, docs/performance.md). So ``auto`` on a CPU times a few training
steps of a copy of the model both ways, alternating, and keeps bf16 only when it is clearly
faster. The answer is cached per CPU model, torch version, thread count, architecture and batch
(``$CNNLAB_CACHE/precision.json``) so that later runs start at once. On a CUDA GPU ``auto``
is bf16-mixed where the GPU supports bf16, else 16-mixed, as Keras's ``mixed_float16`` is.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from cnnlab.data.cache import cache_key, default_cache_dir
from cnnlab.train.cpu import cpu_model

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
# bf16 rounds activations to 8 bits of mantissa: take that only for a clear gain.
MIN_BF16_SPEEDUP = 1.1
CACHE_FILE = "precision.json"


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run trains in and why; recorded in metrics.json under ``precision``."""

    precision: str  # what the Trainer runs: "32" | "bf16-mixed" | "16-mixed"
    requested: str
    reason: str
    cpu: str = ""
    cpu_flags: list[str] = field(default_factory=list)
    fp32_s_per_step: float | None = None
    bf16_s_per_step: float | None = None
    cached: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_bf16_flags() -> list[str]:
    """Which CPU flags that make bf16 fast the kernel reports (Linux; empty elsewhere)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def resolve_precision(requested: str, model: nn.Module, in_shape: tuple[int, int, int],
                      batch_size: int, *, accelerator: str = "cpu", channels_last: bool = True,
                      cache_dir: Path | None = None, rounds: int = 3) -> PrecisionChoice:
    """The precision to train ``model`` in: ``requested`` unless it is ``auto``.

    ``accelerator`` is where the run trains (``cpu`` or ``cuda``). The timing runs on a copy of
    the model and restores the random state, so a run trains the same with or without it.
    """
    if requested != "auto":
        return PrecisionChoice(requested, requested, "set in the config")
    if accelerator == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16-mixed", requested, "a CUDA GPU with bf16 support")
        return PrecisionChoice("16-mixed", requested, "a CUDA GPU without bf16 support")
    if accelerator != "cpu":
        return PrecisionChoice("32", requested, f"no mixed precision chosen for {accelerator}")

    cpu, flags = cpu_model(), cpu_bf16_flags()
    key = _cache_key(model, in_shape, batch_size, channels_last, cpu, flags)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = _read_cache(cache).get(key)
    cached = entry is not None
    if entry is None:
        fp32, bf16 = time_precisions(model, in_shape, batch_size, channels_last=channels_last,
                                     rounds=rounds)
        entry = {"fp32_s_per_step": round(fp32, 4), "bf16_s_per_step": round(bf16, 4),
                 "cpu": cpu, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_cache(cache, key, entry)
    fp32, bf16 = entry["fp32_s_per_step"], entry["bf16_s_per_step"]
    speedup = fp32 / bf16 if bf16 > 0 else 0.0
    chosen = "bf16-mixed" if speedup >= MIN_BF16_SPEEDUP else "32"
    reason = (f"bf16 autocast ran a training step {speedup:.2f}x as fast as fp32 on this CPU "
              f"({'bf16 needs' if chosen == '32' else 'at least'} {MIN_BF16_SPEEDUP}x"
              f"{' to be chosen' if chosen == '32' else ''})")
    return PrecisionChoice(chosen, requested, reason, cpu=cpu, cpu_flags=flags,
                           fp32_s_per_step=fp32, bf16_s_per_step=bf16, cached=cached)


def time_precisions(model: nn.Module, in_shape: tuple[int, int, int], batch_size: int, *,
                    channels_last: bool = True, rounds: int = 3, warmup: int = 1
                    ) -> tuple[float, float]:
    """Median seconds of one training step (forward, loss, backward, SGD step) in fp32 and
    under bf16 autocast, as Lightning's ``bf16-mixed`` runs it, alternating so drift cancels.

    Times a copy of ``model`` on random 0-255 pixels; the global random state is restored.
    """
    with torch.random.fork_rng(devices=[]):
        net = copy.deepcopy(model).train()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        trainable = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable or [torch.zeros(1, requires_grad=True)], lr=1e-6)
        generator = torch.Generator().manual_seed(0)
        pixels = torch.rand((batch_size, *in_shape), generator=generator) * 255.0  # (B, C, H, W)
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        logits = net(pixels[:1])
        labels = torch.randint(0, logits.shape[1], (batch_size,), generator=generator)

        def step_seconds(bf16: bool) -> float:
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(net(pixels), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.float().backward()
            optimizer.step()
            return time.perf_counter() - started

        for _ in range(warmup):  # oneDNN picks and caches its kernels per dtype
            step_seconds(False)
            step_seconds(True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for bf16 in (False, True):
                times[bf16].append(step_seconds(bf16))
    return statistics.median(times[False]), statistics.median(times[True])


def _cache_key(model: nn.Module, in_shape: tuple[int, int, int], batch_size: int,
               channels_last: bool, cpu: str, flags: list[str]) -> str:
    # The architecture's repr names every layer and its shape: same text, same timing.
    return cache_key({"cpu": cpu, "flags": flags, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "model": repr(model),
                      "in_shape": list(in_shape), "batch": batch_size,
                      "channels_last": channels_last})


def _read_cache(cache_dir: Path) -> dict:
    """The cached timings; an absent or unreadable file is an empty cache, never an error."""
    try:
        entries = json.loads((cache_dir / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    valid = {}
    for key, entry in entries.items() if isinstance(entries, dict) else ():
        if isinstance(entry, dict) and all(isinstance(entry.get(k), (int, float))
                                           for k in ("fp32_s_per_step", "bf16_s_per_step")):
            valid[key] = entry
    return valid


def _write_cache(cache_dir: Path, key: str, entry: dict) -> None:
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        entries = {**_read_cache(cache_dir), key: entry}
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(entries, out, indent=1, sort_keys=True)
        os.replace(tmp, cache_dir / CACHE_FILE)
    except OSError:
        # A read-only cache costs the next run a few seconds of timing, not this run.
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
