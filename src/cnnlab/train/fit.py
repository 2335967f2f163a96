"""``train(classifier, data, cfg) -> TrainResult``: Lightning's Trainer with Keras's callbacks.

ModelCheckpoint keeps the best epoch by a monitored metric (and the last one, for resuming),
EarlyStopping and ReduceLROnPlateau take Keras's arguments, a non-finite loss stops the run
as TerminateOnNaN does, and every finished epoch is handed to ``on_epoch`` so the caller can
record it before the next one starts.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint

from cnnlab.config.schema import AugmentSpec, TrainConfig
from cnnlab.data import DataBundle, make_loader
from cnnlab.data.augment import build_augment
from cnnlab.data.loader import epoch_seed
from cnnlab.errors import ConfigError
from cnnlab.train.averaging import RampedLookahead
from cnnlab.train.classifier import Classifier
from cnnlab.train.cpu import configure_cpu
from cnnlab.train.distributed import (layout, per_process_batch, threads_per_process,
                                      warn_oversubscription)
from cnnlab.train.finetune import finetune_callbacks
from cnnlab.train.losses import build_loss, class_weight_vector
from cnnlab.train.module import LitClassifier, resolve_mode
from cnnlab.train.precision import PrecisionChoice, resolve_precision

EpochRow = dict[str, float]

# Lightning's start-up banners and hints are noise on a CPU laptop; warnings still show.
for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", ".*is an invalid version and will not be supported.*")
# Returning None from training_step is how a non-finite loss skips its update (TerminateOnNaN).
warnings.filterwarnings("ignore", ".*`training_step` returned `None`.*")
# Frozen backbone BatchNorm layers are kept in eval mode on purpose (bn: frozen).
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")
# A resumed run reuses its checkpoints folder on purpose.
warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


@dataclass
class TrainResult:
    status: str  # completed | diverged | interrupted, or a RunStopper's (pruned)
    epochs_run: int
    best_epoch: int | None
    train_seconds: float
    history: list[EpochRow] = field(default_factory=list)
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    stop_reason: str = ""
    precision: PrecisionChoice | None = None


class EpochRecorder(L.Callback):
    """Hands one row per finished epoch (Keras's history keys, lr, seconds) to ``on_epoch``.

    ``seconds`` is the whole epoch and ``val_seconds`` its validation pass. An epoch that did
    not validate (``validation_freq``) records NaN val_ metrics: Lightning keeps the last
    validation's values in ``callback_metrics``, which would otherwise repeat them.
    """

    def __init__(self, on_epoch: Callable[[EpochRow], None], history: list[EpochRow]) -> None:
        self.on_epoch = on_epoch
        self.history = history
        self._started = 0.0
        self._val_started = 0.0
        self._val_seconds = 0.0
        self._validated = False
        self._lr = math.nan
        self.first_epoch = math.inf  # the first epoch this process trained (a resume starts later)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._started = time.perf_counter()
        self._val_seconds, self._validated = 0.0, False
        self._lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_started = time.perf_counter()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_seconds += time.perf_counter() - self._val_started
        self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row: EpochRow = {"epoch": trainer.current_epoch + 1}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            stale = key.startswith("val_") and not self._validated
            row[key] = float(metrics[key]) if key in metrics and not stale else math.nan
        row["lr"] = self._lr
        row["seconds"] = time.perf_counter() - self._started
        row["val_seconds"] = self._val_seconds
        self.first_epoch = min(self.first_epoch, row["epoch"])
        # A resumed run replays from its checkpoint: later rows of the old history are stale.
        self.history[:] = [r for r in self.history if r["epoch"] < row["epoch"]] + [row]
        self.on_epoch(row)


class EpochSeeding(L.Callback):
    """Seeds the global RNGs (augmentation, dropout) from (seed, epoch) as each epoch starts.

    Seeded once per run, a resumed run would replay epoch 1's random draws; seeded per epoch,
    it draws what the uninterrupted run would have. The loader's sampler does the same for
    the batch order, but a resumed run fetches its first batch before Lightning's
    ``set_epoch``, so the epoch is set here as soon as the checkpoint is read.
    """

    def __init__(self, seed: int, loader: object) -> None:
        self.seed = seed
        # An in-memory loader's sampler numbers epochs; a streamed loader does it itself.
        self.sampler = next((obj for obj in (getattr(loader, "sampler", None), loader)
                             if callable(getattr(obj, "set_epoch", None))), None)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(next_epoch(checkpoint))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not the sampler's seed itself: augmentation must not draw the permutation's stream.
        seed_rngs(epoch_seed(self.seed, trainer.current_epoch) ^ 0x5DEECE66D)


def next_epoch(checkpoint: dict) -> int:
    """The 0-based epoch a run resumed from ``checkpoint`` trains first.

    Lightning counts an epoch ``processed`` once its training part ends, and replays an epoch
    whose checkpoint came before that (a validation-end save)."""
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    processed = progress.get("current", {}).get("processed")
    return int(processed) if processed is not None else int(checkpoint.get("epoch", -1)) + 1


def seed_rngs(seed: int) -> None:
    """torch's, NumPy's and Python's global generators.

    Not Lightning's seed_everything: it takes 32-bit seeds only and rewrites PL_GLOBAL_SEED,
    which DDP samplers and loader workers read, at every call."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class RunStopper(L.Callback):
    """A callback that may end a run early with a status of its own (a sweep's pruner).

    It sets ``trainer.should_stop`` and ``stopped = (status, reason)``; the run is then
    recorded with that status and not evaluated.
    """

    stopped: tuple[str, str] | None = None


def train(classifier: Classifier, data: DataBundle, cfg: TrainConfig,
          augment: Sequence[AugmentSpec], *, checkpoint_dir: Path,
          on_epoch: Callable[[EpochRow], None] = lambda row: None,
          history: list[EpochRow] | None = None,
          resume_from: Path | None = None, loggers: Sequence = (),
          callbacks: Sequence[L.Callback] = ()) -> TrainResult:
    """``loggers``: Lightning loggers (TensorBoard, ...) the Trainer reports to; none by default.
    ``callbacks``: extra Lightning callbacks (a sweep's pruner, a :class:`RunStopper`)."""
    _check_monitors(cfg, has_val=data.val is not None)
    shape = layout(cfg)
    batch_size = per_process_batch(cfg, shape)
    warn_oversubscription(cfg, shape)
    configure_cpu(threads_per_process(cfg, shape), keep_memory=not data.streamed)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    precision = resolve_precision(cfg.precision, classifier, data.in_shape, batch_size,
                                  accelerator=_accelerator(cfg.device),
                                  channels_last=cfg.channels_last)
    lit = make_lit_module(classifier, data, cfg, augment)
    if cfg.channels_last:
        lit.to(memory_format=torch.channels_last)

    history = history if history is not None else []
    monitor = cfg.checkpoint.monitor if cfg.checkpoint else None
    mode = resolve_mode(monitor, cfg.checkpoint.mode) if monitor else "min"
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=monitor, mode=mode,
                           save_top_k=1, enable_version_counter=False) if monitor else None
    # Not save_last=True: Lightning 2.6 writes last.ckpt only in epochs that also wrote the best
    # one, so a run resumed after its best epoch redid every epoch since (and a run without a
    # monitor had no last.ckpt at all). A monitor-less callback keeping one file writes it each
    # epoch; listed after ``best`` so the state it saves holds this epoch's best score.
    last = ModelCheckpoint(dirpath=checkpoint_dir, filename="last", save_top_k=1,
                           enable_version_counter=False)
    extra = list(callbacks)
    train_loader = make_loader(data.train, batch_size, shuffle=True, seed=cfg.seed)
    recorder = EpochRecorder(on_epoch, history)
    callbacks: list[L.Callback] = [EpochSeeding(cfg.seed, train_loader),
                                   *([best] if best else []), last, recorder]
    if cfg.ema is not None:
        callbacks.append(EMAWeightAveraging(decay=cfg.ema.decay,
                                            update_every_n_steps=cfg.ema.every_n_steps,
                                            update_starting_at_step=cfg.ema.start_step))
    if cfg.lookahead is not None and cfg.lookahead.ramp == "cubic":
        callbacks.append(RampedLookahead(cfg.lookahead.k, cfg.lookahead.alpha))
    # Transfer learning: a backbone's two-phase schedule unfreezes layers (train/finetune.py).
    callbacks.extend(finetune_callbacks(classifier.net))
    if cfg.early_stopping is not None:
        es = cfg.early_stopping
        callbacks.append(EarlyStopping(monitor=es.monitor, mode=resolve_mode(es.monitor, es.mode),
                                       min_delta=es.min_delta, patience=es.patience,
                                       check_finite=False))
    callbacks.extend(extra)
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.device, devices=shape.devices,
        num_nodes=shape.num_nodes, strategy=shape.strategy,
        precision="32-true" if precision.precision == "32" else precision.precision,
        check_val_every_n_epoch=cfg.validation_freq,
        callbacks=callbacks, logger=list(loggers) or False, enable_model_summary=False,
        enable_progress_bar=cfg.progress_bar, num_sanity_val_steps=0,
        default_root_dir=str(checkpoint_dir), deterministic=False)

    val_loader = make_loader(data.val, max(cfg.batch_size, 512), shuffle=False) if data.val else None
    started = time.perf_counter()
    status = "completed"
    try:
        trainer.fit(lit, train_loader, val_loader,
                    ckpt_path=str(resume_from) if resume_from else None)
    except SystemExit:
        if not trainer.interrupted:
            raise
        status = "interrupted"
    finally:
        # Lightning ignores further Ctrl+C while it shuts down; give the user theirs back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if shape.devices > 1:
            configure_cpu(cfg.threads)  # rank 0 evaluates alone afterwards: all cores again
    # A resumed run's training time includes its earlier sittings' epochs (not the gaps between).
    seconds = time.perf_counter() - started + sum(
        r["seconds"] for r in history if r["epoch"] < recorder.first_epoch)
    if trainer.interrupted:
        status = "interrupted"
    elif lit.diverged_at is not None:
        status = "diverged"
    stopper = next((cb for cb in extra if isinstance(cb, RunStopper) and cb.stopped), None)
    if stopper is not None and status == "completed":
        status = stopper.stopped[0]

    best_path = Path(best.best_model_path) if best and best.best_model_path else None
    last_path = checkpoint_dir / "last.ckpt"
    return TrainResult(
        status=status, epochs_run=len(history), train_seconds=seconds, history=history,
        best_epoch=best_epoch(history, monitor, mode) if monitor else None,
        best_checkpoint=best_path if monitor and best_path and best_path.is_file() else None,
        last_checkpoint=last_path if last_path.is_file() else None,
        stop_reason=stopper.stopped[1] if stopper is not None and status == stopper.stopped[0]
        else _stop_reason(status, trainer, cfg, lit),
        precision=precision)


def make_lit_module(classifier: Classifier, data: DataBundle, cfg: TrainConfig,
                    augment: Sequence[AugmentSpec]) -> LitClassifier:
    """The LightningModule of a run: its loss (class-weighted from the training counts) and
    its batch augmentation."""
    weights = class_weight_vector(cfg.class_weights, data.classes,
                                  data.train.class_counts(data.num_classes))
    return LitClassifier(classifier, cfg=cfg, loss=build_loss(cfg.loss, weights),
                         val_loss=build_loss(cfg.loss, None), augment=build_augment(augment))


def best_epoch(history: Sequence[EpochRow], monitor: str, mode: str) -> int | None:
    """The first epoch with the best finite ``monitor`` value, as ModelCheckpoint keeps it."""
    scored = [(r[monitor], r["epoch"]) for r in history if math.isfinite(r.get(monitor, math.nan))]
    if not scored:
        return None
    best = min(scored) if mode == "min" else max(scored, key=lambda s: (s[0], -s[1]))
    return int(best[1])


def load_weights(classifier: Classifier, checkpoint: Path) -> None:
    """Load a Lightning checkpoint's ``model.*`` weights into ``classifier``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "model."
    classifier.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _accelerator(device: str) -> str:
    """Where Lightning's ``accelerator=device`` trains: cpu, cuda or mps."""
    if device == "gpu" or (device == "auto" and torch.cuda.is_available()):
        return "cuda"
    if device == "auto" and torch.backends.mps.is_available():
        return "mps"
    return "cpu" if device in ("cpu", "auto") else device


def _check_monitors(cfg: TrainConfig, has_val: bool) -> None:
    if has_val:
        return
    for section in ("checkpoint", "early_stopping", "reduce_lr_on_plateau"):
        spec = getattr(cfg, section)
        if spec is not None and spec.monitor.startswith("val_"):
            raise ConfigError(
                f"train.{section}.monitor is {spec.monitor}, but there is no validation split "
                "(data.val_split is 0 and the source has none): monitor loss or accuracy, or "
                "set data.val_split.")


def _stop_reason(status: str, trainer: L.Trainer, cfg: TrainConfig, lit: LitClassifier) -> str:
    if status == "diverged":
        return f"non-finite loss at step {lit.diverged_at}"
    if status == "interrupted":
        return "interrupted by the user"
    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0:
            return f"early stopping on {cb.monitor} after epoch {cb.stopped_epoch + 1}"
    return f"reached {cfg.epochs} epochs"
