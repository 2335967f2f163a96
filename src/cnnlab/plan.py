"""``cnnlab plan``: what an experiment will cost on this machine, before anything is trained.

Counts parameters and forward FLOPs per image, times a few real training steps (the same
LightningModule step: augmentation, forward, loss, backward, optimizer) and a validation pass
sample, and projects the time per epoch and for the whole run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.config import ExperimentConfig
from cnnlab.data import DataBundle, build_data, make_loader
from cnnlab.evaluate import predict_probs
from cnnlab.models import build_model, summarize
from cnnlab.train import Classifier
from cnnlab.train.cpu import configure_cpu
from cnnlab.train.fit import make_lit_module
from cnnlab.train.module import LitClassifier
from cnnlab.train.precision import PrecisionChoice, resolve_precision


@dataclass
class Plan:
    params: int
    trainable_params: int
    mflops_per_image: float
    train_images: int
    val_images: int
    batch_size: int
    steps_per_epoch: int
    seconds_per_step: float
    train_images_per_s: float
    eval_images_per_s: float
    seconds_per_epoch: float
    epochs: int
    validations: int
    seconds_total: float
    threads: int
    resized_seconds_per_step: dict[int, float] = field(default_factory=dict)
    precision: str = "32"
    precision_reason: str = "set in the config"

    def to_text(self) -> str:
        return "\n".join([
            f"parameters: {self.params:,} ({self.trainable_params:,} trainable)",
            f"forward: {self.mflops_per_image:,.1f} MFLOPs per image",
            f"training: {self.steps_per_epoch} steps of {self.batch_size} a epoch, "
            f"{self.seconds_per_step * 1000:.0f} ms a step measured "
            f"({self.train_images_per_s:,.0f} images/s, {self.threads} threads)",
            f"precision: {self.precision} ({self.precision_reason})",
            f"validation: {self.val_images:,} images at {self.eval_images_per_s:,.0f} images/s, "
            f"{self.validations} passes",
            *[f"progressive resizing: {size} px, {seconds * 1000:.0f} ms a step measured"
              for size, seconds in self.resized_seconds_per_step.items()],
            f"projected: {self.seconds_per_epoch:,.1f} s an epoch at full size with validation, "
            f"{_minutes(self.seconds_total)} for {self.epochs} epochs "
            "(less if early stopping ends it)",
        ])

    def as_dict(self) -> dict:
        return asdict(self)


def plan_experiment(cfg: ExperimentConfig, *, steps: int = 5, warmup: int = 2) -> Plan:
    threads = configure_cpu(cfg.train.threads)
    data, classifier, lit, precision = prepare_training(cfg)
    summary = summarize(classifier.net, data.in_shape)
    flops = forward_flops(classifier, data.in_shape)
    full_epoch = next(e for e in range(cfg.train.epochs) if cfg.train.train_size(e) is None)
    seconds_per_step = time_training_steps(lit, data, cfg, steps=steps, warmup=warmup,
                                           epoch=full_epoch, precision=precision.precision)
    first_epoch_at: dict[int, int] = {}
    for e in range(full_epoch):
        first_epoch_at.setdefault(cfg.train.train_size(e), e)
    resized = {size: time_training_steps(lit, data, cfg, steps=steps, warmup=warmup, epoch=e,
                                         precision=precision.precision)
               for size, e in first_epoch_at.items()}
    batch_size = cfg.train.batch_size
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    val_images = len(data.val) if data.val is not None else 0
    eval_speed = 0.0
    if val_images:
        sample = data.val.images[: min(val_images, 2048)]
        predict_probs(classifier, sample[:64], channels_last=cfg.train.channels_last)  # warm-up
        _, eval_speed = predict_probs(classifier, sample, batch_size=max(batch_size, 512),
                                      channels_last=cfg.train.channels_last)
    val_seconds = val_images / eval_speed if eval_speed else 0.0
    epoch = steps_per_epoch * seconds_per_step + val_seconds
    validations = cfg.train.epochs // cfg.train.validation_freq if val_images else 0
    total = validations * val_seconds + sum(
        steps_per_epoch * resized.get(cfg.train.train_size(e), seconds_per_step)
        for e in range(cfg.train.epochs))
    return Plan(
        params=summary.total, trainable_params=summary.trainable,
        mflops_per_image=flops / 1e6, train_images=len(data.train), val_images=val_images,
        batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        seconds_per_step=seconds_per_step, train_images_per_s=batch_size / seconds_per_step,
        eval_images_per_s=eval_speed, seconds_per_epoch=epoch, epochs=cfg.train.epochs,
        validations=validations, seconds_total=total, threads=threads,
        resized_seconds_per_step=resized, precision=precision.precision,
        precision_reason=precision.reason)


def prepare_training(cfg: ExperimentConfig) -> tuple[DataBundle, Classifier, LitClassifier,
                                                     PrecisionChoice]:
    """The data, classifier, LightningModule and precision a run of ``cfg`` would train with."""
    data = build_data(cfg.data)
    net = build_model(cfg.model, data.in_shape, data.num_classes)
    if hasattr(net, "init_from_data"):
        net.init_from_data(data.train.images[:512], data.mean, data.std)
    classifier = Classifier(net, data.mean, data.std)
    precision = resolve_precision(cfg.train.precision, classifier, data.in_shape,
                                  cfg.train.batch_size, channels_last=cfg.train.channels_last)
    return data, classifier, make_lit_module(classifier, data, cfg.train, cfg.augment), precision


def forward_flops(model: torch.nn.Module, in_shape: tuple[int, int, int]) -> float:
    """FLOPs (a multiply-add counts 2) of one image's forward pass."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *in_shape))
    model.train(was_training)
    return float(counter.get_total_flops())


STEP_PHASES = ("data", "augment", "forward", "backward", "optimizer")
_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def time_training_steps(lit, data, cfg: ExperimentConfig, *, steps: int, warmup: int,
                        epoch: int = 0, precision: str | None = None,
                        phases: dict[str, list[float]] | None = None) -> float:
    """Median seconds of full training steps of ``epoch`` (its augmentation and training size)
    on real batches, after ``warmup`` untimed steps, in ``precision`` (default: the config's).

    ``phases``, when given, receives each timed step's seconds per :data:`STEP_PHASES` entry
    (``data`` is the wait for the loader's next batch, not part of the step's time)."""
    optimizer = lit.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    if cfg.train.channels_last:
        lit.to(memory_format=torch.channels_last)
    lit.train()
    lit.enter_epoch(epoch)
    autocast_dtype = _AUTOCAST_DTYPES.get(precision or cfg.train.precision)
    loader = make_loader(data.train, cfg.train.batch_size, shuffle=True, seed=cfg.train.seed)
    times: list[float] = []
    batches = iter(loader)
    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        try:
            images, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, labels = next(batches)
        marks.append(time.perf_counter())
        # The run's precision: Lightning's mixed precision autocasts forward and loss only.
        with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype is not None):
            x, y = lit.prepare_batch((images, labels), training=True, epoch=epoch)
            marks.append(time.perf_counter())
            loss, _ = lit.compute_loss(x, y)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if i >= warmup:
            times.append(marks[-1] - marks[1])  # the step, without waiting for the batch
            if phases is not None:
                for name, start, end in zip(STEP_PHASES, marks, marks[1:]):
                    phases.setdefault(name, []).append(end - start)
    times.sort()
    return times[len(times) // 2]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
