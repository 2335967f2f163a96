"""The ``train`` section of an experiment file: optimiser, loss, callbacks, schedule and the
machine to train on (re-exported by :mod:`cnnlab.config.schema`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.common import Fraction, Mode, Monitor, PositiveInt


class CrossEntropy(Strict):
    name: Literal["cross_entropy"]
    label_smoothing: Fraction = 0.0


class Focal(Strict):
    """Focal loss (Lin et al. 2017): ``alpha * (1 - p_t) ** gamma * CE``."""
    name: Literal["focal"]
    gamma: Annotated[float, Field(ge=0.0)] = 2.0
    alpha: Annotated[float, Field(gt=0.0)] | None = 0.25
    label_smoothing: Fraction = 0.0


LossSpec = Annotated[Union[CrossEntropy, Focal], Field(discriminator="name")]


class ClassWeights(Strict):
    """``balanced`` weights n / (k * count_c); ``multipliers`` scale named classes on top."""

    mode: Literal["none", "balanced"] = "none"
    multipliers: dict[str, Annotated[float, Field(gt=0.0)]] = Field(default_factory=dict)


class Checkpoint(Strict):
    """Keep the best epoch's weights by ``monitor`` (Keras ModelCheckpoint save_best_only)."""
    monitor: Monitor = "val_loss"
    mode: Mode = "auto"


class EarlyStopping(Strict):
    monitor: Monitor = "val_loss"
    mode: Mode = "auto"
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    patience: Annotated[int, Field(ge=0)] = 5
    restore_best_weights: bool = True


class ReduceLROnPlateau(Strict):
    monitor: Monitor = "val_loss"
    mode: Mode = "auto"
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10
    min_delta: Annotated[float, Field(ge=0.0)] = 1e-4
    min_lr: Annotated[float, Field(ge=0.0)] = 0.0


class ScheduleConfig(Strict):
    """A per-step LR multiplier: warm-up over ``warmup`` of the run, then the named shape."""

    name: Literal["constant", "linear", "cosine"] = "linear"
    warmup: Fraction = Field(0.0, description="fraction of all steps spent warming up")
    start_factor: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0, description="LR multiplier at step 0 of the warm-up")
    final_factor: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0, description="LR multiplier at the last step")


class EMA(Strict):
    """Exponential moving average of the weights (evaluated and saved instead of the raw ones)."""

    decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999
    every_n_steps: PositiveInt = 1
    start_step: Annotated[int, Field(ge=0)] = 0


class Lookahead(Strict):
    """Lookahead weight averaging: every ``k`` steps the slow weights move ``alpha`` of the way
    to the fast ones, and training continues from them."""

    k: PositiveInt = 5
    alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    ramp: Literal["none", "cubic"] = Field(
        "none", description="cubic (airbench94): the step's alpha falls from 1 (no averaging) to "
        "`alpha` as (step/total)^3, BatchNorm statistics are averaged too, and training ends on "
        "the slow weights")


class Muon(Strict):
    """``optimizer: muon``'s settings for conv filters (Jordan's Muon, as airbench94_muon uses
    it); every other parameter trains with SGD at ``train.lr`` / ``momentum`` / ``nesterov``."""

    lr: Annotated[float, Field(gt=0.0)] = 0.24
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.6
    nesterov: bool = True
    ns_steps: Annotated[int, Field(ge=1, le=10)] = Field(
        3, description="Newton-Schulz iterations that orthogonalise each update")


class ResizeStage(Strict):
    """``epochs`` epochs trained on batches downscaled to ``size`` x ``size`` pixels."""

    epochs: PositiveInt
    size: Annotated[int, Field(ge=2)]


class TrainConfig(Strict):
    """Optimiser, loss, callbacks and the machine to train on."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop", "muon"] = "adam"
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False
    muon: Muon = Field(default_factory=Muon, description="conv filters' settings when optimizer "
                       "is muon")
    weight_decay: Annotated[float, Field(ge=0.0)] = Field(
        0.0, description="decoupled, as Keras's optimizers apply weight_decay (weight_decay_mode)")
    weight_decay_mode: Literal["decoupled", "coupled"] = Field(
        "decoupled", description="decoupled: p -= lr * weight_decay * p after each step (Keras, "
        "fastai, AdamW); coupled: weight_decay * p is added to the gradient, so momentum carries "
        "it (torch's SGD weight_decay argument, as airbench tunes it)")
    loss: LossSpec = Field(default_factory=lambda: CrossEntropy(name="cross_entropy"))
    class_weights: ClassWeights = Field(default_factory=ClassWeights)
    checkpoint: Checkpoint | None = Field(
        default_factory=Checkpoint, description="best-epoch selection; null = evaluate the last "
        "epoch's weights, as model.fit without ModelCheckpoint does")
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    schedule: ScheduleConfig | None = Field(None, description="per-step LR schedule")
    norm_bias_lr_mult: Annotated[float, Field(gt=0.0)] = Field(
        1.0, description="LR multiplier for BatchNorm parameters and biases (speed recipes: 64)")
    norm_bias_wd_mult: Annotated[float, Field(ge=0.0)] = Field(
        1.0, description="weight-decay multiplier for the same parameters; airbench's 1 / "
        "norm_bias_lr_mult keeps their decay per step equal to the weights' (coupled mode)")
    ema: EMA | None = None
    lookahead: Lookahead | None = Field(None, description="wrap the optimizer in Lookahead")
    validation_freq: PositiveInt = Field(
        1, description="validate every N epochs, as Keras's fit(validation_freq=N); the epochs in "
        "between record no val_ metrics and skip the validation pass's time")
    progressive_resize: list[ResizeStage] = Field(
        default_factory=list, description="progressive resizing (fastai): the first epochs train "
        "on downscaled batches, stage by stage; the remaining epochs and evaluation use full size")
    terminate_on_nan: bool = True
    seed: int = 42
    device: Literal["auto", "cpu", "gpu", "mps"] = "auto"
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "32", description="auto = bf16-mixed on a CPU only where a short timing of this model "
        "(cached per CPU) says it is at least 1.1x faster, else 32; on a CUDA GPU bf16-mixed "
        "(16-mixed without bf16 support)")
    channels_last: bool = Field(True, description="NHWC memory layout (faster convs on CPU)")
    threads: PositiveInt | None = Field(None, description="CPU threads (per process); default: "
                                        "all cores, shared by the processes of train.devices")
    devices: PositiveInt = Field(1, description="processes (CPU) or GPUs per node; >1 trains with "
                                 "DDP, batch_size staying the global batch")
    num_nodes: PositiveInt = Field(1, description="machines; launch each with torchrun (its "
                                   "--nnodes/--nproc-per-node override devices and num_nodes)")
    strategy: Literal["auto", "ddp"] = Field(
        "auto", description="Lightning strategy: auto = ddp when devices > 1 (gloo on CPU, NCCL "
        "on GPU)")
    progress_bar: bool = True

    @model_validator(mode="after")
    def _coherent_epoch_policies(self) -> "TrainConfig":
        if self.schedule is not None and self.reduce_lr_on_plateau is not None:
            raise ValueError("schedule (per step) and reduce_lr_on_plateau (per epoch) both set "
                             "the learning rate: keep one")
        plateau = self.reduce_lr_on_plateau
        if self.validation_freq > 1 and plateau is not None and plateau.monitor.startswith("val_"):
            raise ValueError(f"reduce_lr_on_plateau monitors {plateau.monitor} after every epoch, "
                             f"but validation_freq {self.validation_freq} validates only every "
                             f"{self.validation_freq} epochs: monitor loss, or set "
                             "validation_freq: 1")
        resized = sum(stage.epochs for stage in self.progressive_resize)
        if resized >= self.epochs:
            raise ValueError(f"progressive_resize covers {resized} epochs of {self.epochs}: leave "
                             "at least the last epoch at full size")
        return self

    @property
    def splits_norm_bias(self) -> bool:
        """Whether norm parameters and biases need a param group of their own (LR or decay)."""
        return self.norm_bias_lr_mult != 1.0 or self.norm_bias_wd_mult != 1.0

    def train_size(self, epoch: int) -> int | None:
        """The square side the 0-based ``epoch`` trains at, or None for the data's own size."""
        for stage in self.progressive_resize:
            if epoch < stage.epochs:
                return stage.size
            epoch -= stage.epochs
        return None

    @field_validator("loss", mode="before")
    @classmethod
    def _loss_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights_shorthand(cls, value: Any) -> Any:
        if value is None:
            return {"mode": "none"}
        return {"mode": value} if isinstance(value, str) else value

    @field_validator("checkpoint", "early_stopping", "reduce_lr_on_plateau", "schedule", "ema",
                     "lookahead", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value
