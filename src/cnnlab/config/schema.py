"""The experiment file's schema: pydantic models that refuse unknown keys.

An experiment is ``name`` plus sections (``data``, ``augment``, ``model``, ``train``,
``eval``, ``tracking`` and the optional ``predict``) and where runs go. Layer and augmentation lists use the Keras vocabulary of the
reports, written as one-key mappings::

    model:
      layers:
        - conv2d: {filters: 32, kernel: 3, activation: relu, padding: same}
        - maxpool2d: {pool: 2}
        - flatten: {}
        - dense: {units: 512, activation: relu}
    augment:
      - flip: {mode: horizontal}
      - rotation: {factor: 0.2}

Every name that a registry elsewhere resolves (layers, augmentations, losses, optimizers,
activations) is listed here as a ``Literal`` so that a typo is caught when the file is read,
with the allowed names in the message; tests check that the registries and these lists agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.shards import Files, RecordKeys
from cnnlab.config.common import (  # noqa: F401  re-exported: the schema's names
    Activation, FillMode, Fraction, IntPair, Mode, Monitor, Padding, PositiveInt,
    one_key_mapping_to_tagged as _one_key_mapping_to_tagged,
)
from cnnlab.config.layers import (  # noqa: F401  re-exported: the schema's names
    ActivationLayer, AvgPool2D, BatchNorm, Conv2D, ConvBlock, Dense, Dropout, Flatten,
    GlobalAvgPool, LayerSpec, MaxPool2D,
)
from cnnlab.config.backbone import BackboneModelConfig
from cnnlab.config.classic import ResNetCifarConfig, SqueezeNetConfig, VGGConfig
from cnnlab.config.fastnet import FastNetConfig
from cnnlab.config.train import (  # noqa: F401  re-exported: the schema's names
    CrossEntropy, Focal, ClassWeights, Checkpoint, EarlyStopping, ReduceLROnPlateau,
    ScheduleConfig, EMA, Lookahead, Muon, ResizeStage, TrainConfig, LossSpec,
)

# ----------------------------------------------------------------------------------- data

class DataConfig(Strict):
    """Where images come from and how they are split, sized and scaled."""

    name: str = Field("imagefolder", description="dataset registry name (`cnnlab datasets`)")
    root: Path | None = Field(None, description="folder or file of the data; for torchvision "
                              "datasets, where they are downloaded")
    download: bool = Field(True, description="torchvision datasets: download when missing")
    classes: list[str] | None = Field(None, description="keep only these classes, in this order")
    max_per_class: PositiveInt | None = Field(
        None, description="keep at most this many images per class of each source split (seeded)")
    val_split: Fraction = Field(0.1, description="fraction of training images held out, stratified")
    test_split: Fraction = Field(0.1, description="fraction held out for test where the source has "
                                 "no test split")
    split_seed: int = Field(0, description="seed of the stratified splits (kept apart from the "
                            "training seed so repeated seeds share one split)")
    image_size: IntPair | None = Field(None, description="resize to this (int or [height, width]); "
                                       "null keeps the source size")
    channels: Literal[1, 3] | None = Field(None, description="1 = grayscale, 3 = RGB; null keeps "
                                           "the source's")
    normalization: Literal["none", "rescale", "standardize"] = Field(
        "rescale", description="none: raw 0-255; rescale: x/255; standardize: per-channel "
        "mean/std of the training split")
    cache: Literal["memory", "disk", "none"] = Field(
        "memory", description="memory: decoded images held in RAM (fastest); disk: decoded once "
        "to a uint8 memory-mapped file, read by page; none: streamed and decoded each epoch")
    decode_cache: bool = Field(True, description="memory: keep the decoded images on disk too, so "
                               "the next run of the same data starts in seconds")
    cache_dir: Path | None = Field(None, description="default: $CNNLAB_CACHE or ~/.cache/cnnlab")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="an unreadable image (zero bytes, corrupt, truncated): error stops "
        "with its name; skip leaves it out and lists it in data.json and the run summary")
    image_dir: Path | None = Field(None, description="csv: the folder the CSV's paths or ids are "
                                   "relative to (default: the CSV's folder)")
    path_column: str | Annotated[int, Field(ge=0)] | None = Field(
        None, description="csv: the column of image paths or ids, by header name or 0-based "
        "position (default: the first)")
    label_column: str | Annotated[int, Field(ge=0)] | None = Field(
        None, description="csv: the column of labels, by header name or 0-based position "
        "(default: the second)")
    csv_header: bool = Field(True, description="csv: the first line names the columns")
    image_suffix: str | None = Field(
        None, description="csv: appended to ids that name no file as written (e.g. .png); "
        "default: try .jpg, .jpeg, .png, .bmp, .webp")
    files: Files | None = Field(
        None, description="tfrecord/webdataset: files or globs (a string or a list) of training "
        "data, or a mapping of them per part: {train: [...], val: [...], test: [...]}; relative "
        "paths are read from the current folder")
    record_keys: RecordKeys = Field(default_factory=RecordKeys, description="tfrecord/webdataset: "
                                    "which feature (extension) holds the image, label, class name")
    workers: Annotated[int, Field(ge=0)] | None = Field(
        None, description="cache none: DataLoader processes reading and decoding images (null: "
        "the cores less one, at most 4; 0 decodes in the training process)")
    shuffle_buffer: PositiveInt = Field(4096, description="cache none: samples each worker draws "
                                        "the training order from at random, after the order of "
                                        "shards is shuffled (positions: images are read when drawn)")

    @model_validator(mode="before")
    @classmethod
    def _legacy_boolean_cache(cls, data: Any) -> Any:
        # Before the three modes, `cache: true|false` switched the decoded-image file cache on or
        # off; older experiment files keep working with the same meaning.
        if isinstance(data, dict) and isinstance(data.get("cache"), bool):
            data = {**data, "decode_cache": data["cache"], "cache": "memory"}
        return data

    @model_validator(mode="after")
    def _splits_leave_training_data(self) -> "DataConfig":
        if self.val_split + self.test_split >= 1.0:
            raise ValueError("val_split + test_split must be below 1 so training data is left")
        return self


# ---------------------------------------------------------------------------- augmentation

class Flip(Strict):
    """Keras RandomFlip; ``alternate`` is the speed records' alternating deterministic flip."""
    type: Literal["flip"]
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal"
    alternate: bool = Field(
        False, description="each image gets a fixed random orientation and is mirrored on every "
        "odd epoch, so it is seen both ways in each pair of epochs (list this flip first)")


class Rotation(Strict):
    """Keras RandomRotation: ``factor`` is a fraction of a full turn (0.2 = up to +-72 degrees)."""
    type: Literal["rotation"]
    factor: Annotated[float, Field(ge=0.0, le=1.0)]
    fill_mode: FillMode = "reflect"


class Zoom(Strict):
    """Keras RandomZoom: scale by a factor in [1 - factor, 1 + factor]."""
    type: Literal["zoom"]
    factor: Annotated[float, Field(ge=0.0, lt=1.0)]
    fill_mode: FillMode = "reflect"


class Translation(Strict):
    """Keras RandomTranslation: shift by up to ``factor`` of the height and width."""
    type: Literal["translation"]
    factor: Annotated[float, Field(ge=0.0, le=1.0)]
    fill_mode: FillMode = "reflect"


class Brightness(Strict):
    """Brightness jitter: ``add`` is Keras RandomBrightness (add up to +-``factor`` of the value
    range); ``multiply`` is ImageDataGenerator(brightness_range=[1-factor, 1+factor])."""
    type: Literal["brightness"]
    factor: Annotated[float, Field(ge=0.0, le=1.0)]
    mode: Literal["add", "multiply"] = Field(
        "add", description="add: x + U(-factor, factor) * value range (Keras RandomBrightness); "
        "multiply: x * U(1-factor, 1+factor) (Keras ImageDataGenerator brightness_range, "
        "as report 004 used); both clip to the value range")


class Contrast(Strict):
    """Keras RandomContrast: scale deviations from each image's mean by [1-factor, 1+factor]."""
    type: Literal["contrast"]
    factor: Annotated[float, Field(ge=0.0, le=1.0)]


class RandomCrop(Strict):
    """Pad by ``padding`` pixels and crop back to size at a random offset."""
    type: Literal["random_crop"]
    padding: PositiveInt = 4
    pad_mode: Literal["constant", "reflect"] = "reflect"


class Cutout(Strict):
    """Cutout (DeVries & Taylor 2017, as airbench96 uses it): one ``size`` x ``size`` square
    per image, placed wholly inside it, is blanked."""
    type: Literal["cutout"]
    size: PositiveInt = 12
    fill: Literal["mean", "zero"] = Field(
        "mean", description="mean: the image's own channel means (close to airbench's 0 after "
        "standardisation); zero: black")


AugmentSpec = Annotated[
    Union[Flip, Rotation, Zoom, Translation, Brightness, Contrast, RandomCrop, Cutout],
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------------- models
# (the layer specs, Conv2D ... ConvBlock and LayerSpec, are in cnnlab.config.layers)

class SequentialModelConfig(Strict):
    """A Keras-style stack of layers; the output Dense layer is sized to the dataset's classes."""

    name: Literal["sequential"] = "sequential"
    layers: list[LayerSpec] = Field(default_factory=list)
    init: Literal["glorot_uniform", "he_normal", "torch"] = Field(
        "glorot_uniform", description="kernel initialiser (Keras default: glorot_uniform)")
    output_l2: Annotated[float, Field(ge=0.0)] = 0.0

    @field_validator("layers", mode="before")
    @classmethod
    def _tag_layers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [_one_key_mapping_to_tagged(v) for v in value]
        return value


ModelConfig = Annotated[
    Union[SequentialModelConfig, ResNetCifarConfig, SqueezeNetConfig, VGGConfig,
          BackboneModelConfig, FastNetConfig],
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------------- train
# (optimiser, loss and callbacks, TrainConfig and its parts, are in cnnlab.config.train)

class TrackingConfig(Strict):
    """Where a run is logged besides its run folder (MLflow, TensorBoard); everything off by default."""

    mlflow: str | bool | None = Field(
        None, description="MLflow tracking URI (http(s)://host:port, file:./mlruns, sqlite:///x.db); "
        "true = the URI in MLFLOW_TRACKING_URI; null = off")
    experiment: str | None = Field(None, description="MLflow experiment; default: the first part "
                                   "of `name`")
    tensorboard: bool = Field(False, description="TensorBoard event files in the run folder "
                              "(<run>/tensorboard)")
    tags: dict[str, str] = Field(default_factory=dict, description="extra MLflow tags (sweep, "
                                 "trial, mlflow.parentRunId for a sweep's child runs)")

    @field_validator("mlflow")
    @classmethod
    def _uri_is_well_formed(cls, value: Any) -> Any:
        if value is False:
            return None
        if isinstance(value, str):
            from cnnlab.config.uri import check_tracking_uri

            check_tracking_uri(value)
        return value


class EvalConfig(Strict):
    batch_size: PositiveInt = Field(1024, description="no-grad batches: larger is faster")
    tta: Literal["none", "flip", "flip_shift"] = Field(
        "none", description="test-time augmentation: average over the mirror image (and one-pixel "
        "shifts of both)")
    splits: list[Literal["val", "test"]] = Field(default_factory=lambda: ["val", "test"])


class PredictConfig(Strict):
    """After training, label unlabelled images (a Kaggle test folder) into a CSV in the run folder."""

    source: Path = Field(description="what to label: an image folder (ids are file paths "
                         "without extensions), one image, or a CSV of ids and image paths")
    output: str = Field("submission.csv", description="file name of the predictions, written "
                        "inside the run folder")
    id_column: str = Field("id", description="header of the output's id column")
    label_column: str = Field("label", description="header of the output's label column")
    probabilities: bool = Field(False, description="add one probability column per class")
    tta: bool = Field(False, description="average with the horizontally mirrored image")
    input_id_column: str = Field("id", description="CSV source: its id column")
    input_path_column: str | None = Field(None, description="CSV source: its image path column "
                                          "(default: path, image, file, ...)")

    @field_validator("output")
    @classmethod
    def _output_is_a_plain_name(cls, value: str) -> str:
        # Predictions land in the run folder, nowhere else: a bare file name, no folders.
        if not value or "/" in value or "\\" in value or value in (".", "..") or "\x00" in value:
            raise ValueError("must be a plain file name (e.g. submission.csv): predictions are "
                             "written inside the run folder")
        return value

    @model_validator(mode="after")
    def _headers_differ(self) -> "PredictConfig":
        if self.id_column == self.label_column:
            raise ValueError("id_column and label_column must differ")
        return self


# ----------------------------------------------------------------------------- experiment

class ExperimentConfig(Strict):
    """One experiment: what to train on, what to train, how, and where results go."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")] = Field(
        description="experiment name; may hold '/' (e.g. satellite/04_rescaling)")
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    augment: list[AugmentSpec] = Field(default_factory=list)
    model: ModelConfig = Field(default_factory=SequentialModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    predict: PredictConfig | None = Field(None, description="after training, label unlabelled "
                                          "images into the run folder (a Kaggle submission)")
    runs_dir: Path = Field(Path("runs"), description="root of run folders")

    @field_validator("name", mode="before")
    @classmethod
    def _name_says_why(cls, value: Any) -> Any:
        # The pattern below would refuse these too, but without saying why.
        if isinstance(value, str) and value.startswith("/"):
            raise ValueError("an absolute name is not allowed: names are folders inside runs_dir")
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("a name may not hold a NUL byte")
        return value

    @field_validator("name")
    @classmethod
    def _name_stays_inside_runs_dir(cls, value: str) -> str:
        # The pattern already refuses absolute names, empty parts and odd bytes; '.' and '..'
        # parts match it but would leave the name's folder (store.paths checks again on write).
        if any(part in (".", "..") for part in value.split("/")):
            raise ValueError("a name may not have '.' or '..' parts: run folders stay inside "
                             "runs_dir")
        return value

    @field_validator("runs_dir")
    @classmethod
    def _runs_dir_without_nul(cls, value: Path) -> Path:
        if "\x00" in str(value):
            raise ValueError("runs_dir holds a NUL byte")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _sequential_by_default(cls, value: Any) -> Any:
        # A bare `layers:` list is the common case; it needs no `name: sequential`.
        if isinstance(value, dict) and "name" not in value:
            return {"name": "sequential", **value}
        return value

    @field_validator("augment", mode="before")
    @classmethod
    def _tag_augment(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            return [_one_key_mapping_to_tagged(v) for v in value]
        return value
