"""The ``sequential`` model: a Keras-style layer list from the config, built into ``nn.Sequential``.

Each spec of ``model.layers`` is turned into modules by the entry of :data:`LAYERS` for its
``type``; ``conv_block`` expands into the plain layers it stands for. Layers get Keras's
default names (``conv2d``, ``conv2d_1``, ``batch_normalization``, ``max_pooling2d``, ...)
unless the spec has a ``name``, and the result is an ``nn.Sequential`` whose children carry
those names, so ``model.named_children()`` reads like Keras's ``model.summary()`` and layers
can be frozen by name or index.

The builder tracks the activation shape by running a zeros batch of one through each new
module; that is what sizes the next layer's inputs (as Keras infers them) and what catches a
``dense`` on a 4D input. The output layer is appended last: ``Dense(num_classes)`` producing
logits, with the config's ``output_l2``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import nn

from cnnlab.config import schema
from cnnlab.errors import ConfigError
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import (
    INITIALIZERS,
    ActivationLayer,
    ConvLayer,
    DenseLayer,
    GlobalAvgPoolLayer,
    PoolLayer,
    pair,
)
from cnnlab.models.summary import keras_shape
from cnnlab.registry import Registry


class _Stack:
    """The layers built so far, the shape they produce and the names they use."""

    def __init__(self, in_shape: InShape, *, init: str, reserved: set[str]) -> None:
        self.shape: tuple[int, ...] = tuple(in_shape)  # without batch: (C, H, W) or (F,)
        self.init = INITIALIZERS.get(init)
        self.reserved = reserved  # names given in the config; auto names avoid them
        self.layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.counters: dict[str, int] = {}
        self.where = "model"  # position in the config, for error messages

    def auto_name(self, base: str, counters: dict[str, int] | None = None, prefix: str = "") -> str:
        """Keras's ``base``, ``base_1``, ``base_2``, ... skipping names already taken."""
        counters = self.counters if counters is None else counters
        while True:
            k = counters.get(base, 0)
            counters[base] = k + 1
            name = prefix + (base if k == 0 else f"{base}_{k}")
            if name not in self.layers and name not in self.reserved:
                return name

    def require_4d(self, what: str) -> tuple[int, int, int]:
        if len(self.shape) != 3:
            raise ConfigError(
                f"{self.where}: {what} needs a 4D input (batch, height, width, channels) but "
                f"gets {keras_shape(self.shape)}; move it before `flatten` / "
                f"`global_avg_pool` / `dense`.")
        return (self.shape[0], self.shape[1], self.shape[2])

    def require_2d(self, what: str) -> int:
        if len(self.shape) != 1:
            raise ConfigError(
                f"{self.where}: {what} needs a 2D input (batch, features) but gets "
                f"{keras_shape(self.shape)}; add `flatten` or `global_avg_pool` before it.")
        return self.shape[0]

    def add(self, module: nn.Module, *, base: str, name: str | None = None) -> None:
        """Append ``module`` under ``name`` (default: Keras's next ``base`` name)."""
        if name is None:
            name = self.auto_name(base)
        elif not name or "." in name:
            raise ConfigError(f"{self.where}: layer name {name!r} must be non-empty without '.'.")
        elif name in self.layers:
            raise ConfigError(f"{self.where}: layer name {name!r} is used twice.")
        module.eval()
        try:
            with torch.no_grad():
                out = module(torch.zeros(1, *self.shape))
        except RuntimeError as exc:
            raise ConfigError(
                f"{self.where} ({name}) cannot take an input of shape {keras_shape(self.shape)}: "
                f"{str(exc).splitlines()[0]}") from None
        if out.numel() == 0:
            raise ConfigError(f"{self.where} ({name}) turns {keras_shape(self.shape)} into the "
                              f"empty {keras_shape(tuple(out.shape[1:]))}; the input is too small.")
        self.shape = tuple(out.shape[1:])
        self.layers[name] = module


#: Layer ``type`` (the schema's literal) -> function appending its module(s) to the stack.
LAYERS: Registry[Callable[[Any, _Stack], None]] = Registry("layer")


@LAYERS.register("conv2d", "Keras Conv2D")
def _conv2d(spec: schema.Conv2D, stack: _Stack) -> None:
    channels, height, width = stack.require_4d("conv2d")
    module = ConvLayer(channels, spec.filters, kernel=pair(spec.kernel), stride=pair(spec.strides),
                       padding=spec.padding, in_size=(height, width), activation=spec.activation,
                       use_bias=spec.use_bias, l2=spec.l2)
    stack.init(module.conv)
    stack.add(module, base="conv2d", name=spec.name)


def _pool(kind: str, base: str) -> Callable[[Any, _Stack], None]:
    def build(spec: schema.MaxPool2D | schema.AvgPool2D, stack: _Stack) -> None:
        _, height, width = stack.require_4d(spec.type)
        pool = pair(spec.pool)
        # Keras: strides=None means the pool size.
        stride = pair(spec.strides) if spec.strides is not None else pool
        module = PoolLayer(kind, pool=pool, stride=stride, padding=spec.padding,  # type: ignore[arg-type]
                           in_size=(height, width))
        stack.add(module, base=base, name=spec.name)

    return build


LAYERS.add("maxpool2d", _pool("max", "max_pooling2d"), "Keras MaxPooling2D")
LAYERS.add("avgpool2d", _pool("avg", "average_pooling2d"), "Keras AveragePooling2D")


@LAYERS.register("global_avg_pool", "Keras GlobalAveragePooling2D")
def _global_avg_pool(spec: schema.GlobalAvgPool, stack: _Stack) -> None:
    stack.require_4d("global_avg_pool")
    stack.add(GlobalAvgPoolLayer(), base="global_average_pooling2d", name=spec.name)


@LAYERS.register("batchnorm", "Keras BatchNormalization")
def _batchnorm(spec: schema.BatchNorm, stack: _Stack) -> None:
    # Keras's momentum is the weight of the old running statistics; torch's is the new batch's.
    kwargs = dict(eps=spec.epsilon, momentum=1.0 - spec.momentum)
    if len(stack.shape) == 3:
        module: nn.Module = nn.BatchNorm2d(stack.shape[0], **kwargs)
    else:
        module = nn.BatchNorm1d(stack.require_2d("batchnorm"), **kwargs)
    stack.add(module, base="batch_normalization", name=spec.name)


@LAYERS.register("activation", "Keras Activation")
def _activation(spec: schema.ActivationLayer, stack: _Stack) -> None:
    previous = next(reversed(stack.layers.values()), None)
    # In place only where the layer before does not keep its output for its backward.
    in_place = (isinstance(previous, (nn.BatchNorm1d, nn.BatchNorm2d))
                or (isinstance(previous, (ConvLayer, DenseLayer))
                    and isinstance(previous.act, nn.Identity)))
    stack.add(ActivationLayer(spec.activation, in_place=in_place), base="activation",
              name=spec.name)


@LAYERS.register("dropout", "Keras Dropout")
def _dropout(spec: schema.Dropout, stack: _Stack) -> None:
    stack.add(nn.Dropout(spec.rate), base="dropout", name=spec.name)


@LAYERS.register("flatten", "Keras Flatten (torch's C, H, W order: same parameter counts)")
def _flatten(spec: schema.Flatten, stack: _Stack) -> None:
    stack.add(nn.Flatten(), base="flatten", name=spec.name)


@LAYERS.register("dense", "Keras Dense")
def _dense(spec: schema.Dense, stack: _Stack) -> None:
    features = stack.require_2d("dense")
    module = DenseLayer(features, spec.units, activation=spec.activation,
                        use_bias=spec.use_bias, l2=spec.l2)
    stack.init(module.linear)
    stack.add(module, base="dense", name=spec.name)


@LAYERS.register("conv_block", "conv layers (+ BatchNorm), max pool, dropout; once per width")
def _conv_block(spec: schema.ConvBlock, stack: _Stack) -> None:
    """Expand into plain layers, each its own named child, as the Keras notebooks write them.

    ``after_activation`` is ``Conv2D(activation=...)`` then ``BatchNormalization`` (report
    002); ``before_activation`` is a linear ``Conv2D``, ``BatchNormalization``, ``Activation``
    (report 003); ``none`` is ``Conv2D(activation=...)``. A block with a ``name`` prefixes its
    layers' names with it (``features_conv2d``, ``features_conv2d_1``, ...).
    """
    widths = spec.filters if isinstance(spec.filters, list) else [spec.filters]
    rates = spec.dropout if isinstance(spec.dropout, list) else [spec.dropout] * len(widths)
    counters: dict[str, int] = {}

    def name(base: str) -> str | None:
        if spec.name is None:
            return None  # the stack's global Keras counters
        return stack.auto_name(base, counters, prefix=f"{spec.name}_")

    conv_activation = None if spec.batchnorm == "before_activation" else spec.activation
    for width, rate in zip(widths, rates):
        for _ in range(spec.convs):
            _conv2d(schema.Conv2D(type="conv2d", filters=width, kernel=spec.kernel,
                                  padding=spec.padding, activation=conv_activation, l2=spec.l2,
                                  name=name("conv2d")), stack)
            if spec.batchnorm != "none":
                _batchnorm(schema.BatchNorm(type="batchnorm", momentum=spec.bn_momentum,
                                            name=name("batch_normalization")),
                           stack)
            if spec.batchnorm == "before_activation":
                _activation(schema.ActivationLayer(type="activation", activation=spec.activation,
                                                   name=name("activation")), stack)
        if spec.pool is not None:
            _pool("max", "max_pooling2d")(
                schema.MaxPool2D(type="maxpool2d", pool=spec.pool, name=name("max_pooling2d")),
                stack)
        if rate > 0:
            _dropout(schema.Dropout(type="dropout", rate=rate, name=name("dropout")), stack)


def _given_names(layers: list[Any]) -> set[str]:
    names: list[str] = [s.name for s in layers if s.name is not None and s.type != "conv_block"]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"model.layers: layer names must be unique; repeated: {repeated}.")
    return set(names)


@MODELS.register("sequential", "Keras-style stack of layers from model.layers")
def build_sequential(cfg: schema.SequentialModelConfig, in_shape: InShape,
                     num_classes: int) -> nn.Sequential:
    """Build ``cfg.layers`` for (C, H, W) inputs and append the ``Dense(num_classes)`` logits."""
    stack = _Stack(in_shape, init=cfg.init, reserved=_given_names(cfg.layers))
    for index, spec in enumerate(cfg.layers):
        stack.where = f"model.layers[{index}] ({spec.type})"
        LAYERS.get(spec.type)(spec, stack)

    stack.where = "the output layer (dense)"
    if len(stack.shape) != 1:
        raise ConfigError(
            f"The output layer (dense, {num_classes} units) would get the 4D output "
            f"{keras_shape(stack.shape)} of the last layer; add `flatten` or `global_avg_pool` "
            f"at the end of model.layers.")
    head = DenseLayer(stack.shape[0], num_classes, activation=None, l2=cfg.output_l2)
    stack.init(head.linear)
    stack.add(head, base="dense")
    return nn.Sequential(stack.layers).train()
