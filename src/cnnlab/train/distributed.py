"""Training in several processes (Lightning's DDP), launched by Lightning itself or by torchrun.

Only rank 0 owns the run folder: it creates it, records every file, evaluates and reports.
The other ranks join ``trainer.fit`` and nothing else. They learn the folder's path

- from ``CNNLAB_RUN_DIR``, which rank 0 sets before Lightning's DDP launcher starts them (that
  launcher re-executes the same ``cnnlab`` command line in each child process), or
- under torchrun (every rank started at once, on one or many machines), from rank 0 through a
  broadcast over the process group, which Lightning then reuses.

``batch_size`` stays the global batch: each of the N processes loads ``batch_size / N``
images per step, so a step sees as many images as one process would.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from cnnlab.config.schema import TrainConfig
from cnnlab.errors import ConfigError

RUN_DIR_ENV = "CNNLAB_RUN_DIR"


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and "RANK" in os.environ


def global_rank() -> int:
    """This process's rank: torchrun's RANK, or the LOCAL_RANK Lightning's launcher gives."""
    for key in ("RANK", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def is_worker() -> bool:
    """Whether this process is a rank > 0 of a multi-process run (it writes nothing)."""
    return global_rank() > 0


@dataclass(frozen=True)
class Layout:
    devices: int
    num_nodes: int
    strategy: str

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


def layout(cfg: TrainConfig) -> Layout:
    """Processes per node, nodes and strategy; under torchrun its own numbers win, so the same
    experiment file serves any launch line."""
    if under_torchrun():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        nodes = max(1, int(os.environ["WORLD_SIZE"]) // local)
        return Layout(local, nodes, "ddp")
    strategy = cfg.strategy
    if strategy == "auto" and cfg.devices > 1:
        strategy = "ddp"
    return Layout(cfg.devices, cfg.num_nodes, strategy)


def per_process_batch(cfg: TrainConfig, shape: Layout) -> int:
    if cfg.batch_size % shape.world_size:
        raise ConfigError(f"train.batch_size {cfg.batch_size} is the global batch and must split "
                          f"evenly over {shape.world_size} processes (train.devices x nodes).")
    return cfg.batch_size // shape.world_size


def threads_per_process(cfg: TrainConfig, shape: Layout) -> int:
    """``train.threads`` if set, else this machine's cores shared by its processes."""
    if cfg.threads:
        return cfg.threads
    return max(1, (os.cpu_count() or 1) // shape.devices)


def oversubscription(cfg: TrainConfig, shape: Layout) -> str | None:
    """A warning when CPU processes outnumber cores (it runs, slowly, and never hangs)."""
    cores = os.cpu_count() or 1
    on_cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    if on_cpu and shape.devices > cores:
        return (f"train.devices is {shape.devices} on a machine with {cores} cores: the "
                f"processes share cores (1 thread each) and train slower than {cores} would")
    return None


def warn_oversubscription(cfg: TrainConfig, shape: Layout) -> None:
    message = oversubscription(cfg, shape)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def shared_run_dir(make: Callable[[], Path]) -> Path:
    """The run folder every rank uses: made (by ``make``) on rank 0 only."""
    if under_torchrun():
        import torch.distributed as dist

        if not dist.is_initialized():
            # Lightning finds this group initialised and keeps it (NCCL for CUDA tensors).
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        box = [str(make()) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        path = Path(box[0])
    elif is_worker():
        if RUN_DIR_ENV not in os.environ:
            raise RuntimeError(f"rank {global_rank()} started without {RUN_DIR_ENV}")
        path = Path(os.environ[RUN_DIR_ENV])
    else:
        path = make()
    # Lightning's launcher copies this process's environment into the ranks it starts.
    os.environ[RUN_DIR_ENV] = str(path)
    return path
