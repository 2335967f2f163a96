"""Torch modules that behave like the Keras layers the reports use, and their helpers.

Keras semantics kept here (the builder in :mod:`cnnlab.models.sequential` relies on them):

* ``padding="same"`` is TensorFlow's: output size ``ceil(n / stride)``, with any odd padding
  put after (bottom/right). With stride 1 that is torch's ``padding="same"``; with larger
  strides the padding depends on the input size, so it is computed once from the static size
  known when the model is built (as a Keras model has a fixed input shape).
* Pools with ``padding="same"`` ignore the padded cells (max pads with -inf, average divides
  by the number of real cells), as TensorFlow does.
* A conv or dense layer with ``activation=...`` is one module (:class:`ConvLayer`,
  :class:`DenseLayer`) so that a summary has one row per Keras layer and freezing by layer
  name or index freezes the activation's layer as a whole.
* Kernel L2 (``kernel_regularizer=l2(c)``) is stored as ``module.l2``; :func:`l2_penalty` adds
  ``c * sum(kernel ** 2)`` over all such modules, as Keras adds it to the loss.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.registry import Registry

Pair = tuple[int, int]
#: Padding of the last two dims in ``F.pad`` order: (left, right, top, bottom).
Pads = tuple[int, int, int, int]


def pair(value: int | tuple[int, int]) -> Pair:
    """Keras accepts ``3`` for ``(3, 3)``."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def tf_same_pads(size: Pair, kernel: Pair, stride: Pair) -> Pads:
    """TensorFlow's 'same' padding for an input of ``size`` (H, W): the extra cell goes after."""
    pads: list[int] = []
    # F.pad lists the last dim (W) first.
    for n, k, s in ((size[1], kernel[1], stride[1]), (size[0], kernel[0], stride[0])):
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return (pads[0], pads[1], pads[2], pads[3])


# ---------------------------------------------------------------------------- activations

#: Activation name (exactly the schema's ``Activation`` literal) -> module factory.
ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")

# Keras's constants where they differ from torch's defaults: leaky_relu's slope is 0.2 in
# keras.activations (torch: 0.01); gelu is the exact erf form in both.
ACTIVATIONS.add("relu", nn.ReLU, "max(x, 0)")
ACTIVATIONS.add("elu", nn.ELU, "exponential linear unit (alpha 1)")
ACTIVATIONS.add("gelu", nn.GELU, "Gaussian error linear unit (exact)")
ACTIVATIONS.add("leaky_relu", lambda: nn.LeakyReLU(0.2), "leaky ReLU, slope 0.2 as in Keras")
ACTIVATIONS.add("selu", nn.SELU, "scaled ELU")
ACTIVATIONS.add("sigmoid", nn.Sigmoid, "logistic sigmoid")
ACTIVATIONS.add("tanh", nn.Tanh, "hyperbolic tangent")
ACTIVATIONS.add("swish", nn.SiLU, "x * sigmoid(x) (same as silu)")
ACTIVATIONS.add("silu", nn.SiLU, "x * sigmoid(x)")
ACTIVATIONS.add("softplus", nn.Softplus, "log(1 + exp(x))")
# Keras applies softmax over the last axis, the channels of NHWC; in NCHW and (B, F) that is 1.
ACTIVATIONS.add("softmax", lambda: nn.Softmax(dim=1), "softmax over channels / features")
ACTIVATIONS.add("linear", nn.Identity, "identity")


# Activations that may overwrite their input: their backward needs only their own output.
# Only safe after a layer that does not keep its output for its own backward (a convolution,
# a linear map, BatchNorm), which is where the layers below ask for it; it saves one
# activation-sized tensor write and allocation a layer, a few percent of a CPU step.
_IN_PLACE: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True),
}


def make_activation(name: str | None, *, in_place: bool = False) -> nn.Module:
    """The activation module for ``name``; ``None`` means none (identity).

    ``in_place`` is a request: activations without a safe in-place form ignore it.
    """
    name = name or "linear"
    if in_place and name in _IN_PLACE:
        return _IN_PLACE[name]()
    return ACTIVATIONS.get(name)()


# --------------------------------------------------------------------------- initialisers

def _glorot_uniform(module: nn.Conv2d | nn.Linear) -> None:
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _he_normal(module: nn.Conv2d | nn.Linear) -> None:
    # Keras's he_normal is a truncated normal; the plain normal has the same target std.
    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _torch_default(module: nn.Conv2d | nn.Linear) -> None:
    """Keep what torch's constructor drew (kaiming_uniform with a=sqrt(5), uniform biases)."""


#: ``init`` of the model config -> function initialising a conv / linear module in place.
INITIALIZERS: Registry[Callable[[nn.Conv2d | nn.Linear], None]] = Registry("initializer")
INITIALIZERS.add("glorot_uniform", _glorot_uniform, "Keras default: Glorot uniform, zero bias")
INITIALIZERS.add("he_normal", _he_normal, "He normal (fan_in), zero bias")
INITIALIZERS.add("torch", _torch_default, "PyTorch's default initialisation")


# -------------------------------------------------------------------------------- modules

class ConvLayer(nn.Module):
    """Keras ``Conv2D``: optional TF-style padding, the convolution, then the activation."""

    keras_type = "Conv2D"

    def __init__(self, in_channels: int, filters: int, *, kernel: Pair, stride: Pair,
                 padding: Literal["same", "valid"], in_size: Pair, activation: str | None,
                 use_bias: bool = True, l2: float = 0.0) -> None:
        super().__init__()
        self.l2 = float(l2)
        self.pad: nn.Module | None = None
        conv_padding: str | Pair = 0
        if padding == "same":
            left, right, top, bottom = tf_same_pads(in_size, kernel, stride)
            if (left, top) != (right, bottom):
                # Odd total padding (even kernel, or stride > 1 on some sizes): TF's extra
                # cell after, which torch's own "same" would also do by copying the input.
                self.pad = nn.ZeroPad2d((left, right, top, bottom))
            elif stride == (1, 1):
                conv_padding = "same"
            else:
                conv_padding = (top, left)
        self.conv = nn.Conv2d(in_channels, filters, kernel, stride=stride, padding=conv_padding,
                              bias=use_bias)
        self.act = make_activation(activation, in_place=True)  # the conv keeps its input only

    @property
    def kernel(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        return self.act(self.conv(x))


class DenseLayer(nn.Module):
    """Keras ``Dense`` on a (B, F) input: linear map then the activation."""

    keras_type = "Dense"

    def __init__(self, in_features: int, units: int, *, activation: str | None,
                 use_bias: bool = True, l2: float = 0.0) -> None:
        super().__init__()
        self.l2 = float(l2)
        self.linear = nn.Linear(in_features, units, bias=use_bias)
        self.act = make_activation(activation, in_place=True)  # the map keeps its input only

    @property
    def kernel(self) -> torch.Tensor:
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


class PoolLayer(nn.Module):
    """Keras ``MaxPooling2D`` / ``AveragePooling2D`` with TF 'valid' or 'same' padding."""

    def __init__(self, kind: Literal["max", "avg"], *, pool: Pair, stride: Pair,
                 padding: Literal["same", "valid"], in_size: Pair) -> None:
        super().__init__()
        self.kind = kind
        self.keras_type = "MaxPooling2D" if kind == "max" else "AveragePooling2D"
        self.pool = pool
        self.stride = stride
        pads = tf_same_pads(in_size, pool, stride) if padding == "same" else (0, 0, 0, 0)
        self.pads: Pads | None = pads if any(pads) else None
        self.valid_fraction: torch.Tensor | None
        if self.pads is not None and kind == "avg":
            # TF averages over the real cells only: divide by each window's share of them,
            # known from the static input size. (1, 1, H_out, W_out)
            ones = F.pad(torch.ones(1, 1, *in_size), self.pads)
            self.register_buffer("valid_fraction", F.avg_pool2d(ones, pool, stride),
                                 persistent=False)
        else:
            self.valid_fraction = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max":
            if self.pads is not None:
                x = F.pad(x, self.pads, value=float("-inf"))
            return F.max_pool2d(x, self.pool, self.stride)
        if self.pads is not None:
            x = F.pad(x, self.pads)
        y = F.avg_pool2d(x, self.pool, self.stride)
        if self.valid_fraction is not None:
            y = y / self.valid_fraction.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        return f"{self.kind}, pool={self.pool}, stride={self.stride}, pads={self.pads}"


class GlobalAvgPoolLayer(nn.Module):
    """Keras ``GlobalAveragePooling2D``: (B, C, H, W) -> (B, C)."""

    keras_type = "GlobalAveragePooling2D"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ActivationLayer(nn.Module):
    """Keras ``Activation`` as a layer of its own (e.g. after a BatchNorm)."""

    keras_type = "Activation"

    def __init__(self, activation: str, *, in_place: bool = False) -> None:
        super().__init__()
        self.fn = make_activation(activation, in_place=in_place)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# -------------------------------------------------------------------------------- L2 loss

def l2_penalty(model: nn.Module) -> torch.Tensor:
    """Keras's kernel L2 loss: ``sum(c * (kernel ** 2).sum())`` over modules with ``l2 = c > 0``.

    Biases are not penalised. Modules are found on each call (a few dozen attribute reads)
    rather than cached, so the result follows ``.to(device)``, freshly replaced heads and
    copies of the model. Returns a 0-dim zero tensor on the model's device when there is none.
    """
    terms = [module.l2 * module.kernel.pow(2).sum() for module in model.modules()
             if getattr(module, "l2", 0.0) > 0.0 and hasattr(module, "kernel")]
    if terms:
        return torch.stack(terms).sum()
    first = next(model.parameters(), None)
    return torch.zeros((), device=first.device if first is not None else None)
