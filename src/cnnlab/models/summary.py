"""A Keras-style ``model.summary()`` for any torch model, so runs compare with the reports.

One row per top-level child (the layers of a ``sequential`` model) with its Keras type, its
output shape and its parameter count, then the totals. Two Keras conventions are followed so
the numbers match the notebooks' summaries exactly:

* output shapes are printed as Keras prints them, ``(None, H, W, C)`` / ``(None, F)``, even
  though the tensors are (B, C, H, W) in torch;
* BatchNorm's running mean and variance are counted as non-trainable parameters (Keras's
  ``moving_mean`` / ``moving_variance`` weights: 2 per channel), on top of any frozen
  parameters (``requires_grad=False``). Layers whose parameters are all frozen are marked
  ``, frozen`` in the type column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

Shape = tuple[int | None, ...]

_RUNNING_STATS = ("running_mean", "running_var")

# Keras class names of the torch modules used as layers as they are (custom layer modules
# carry a ``keras_type`` attribute instead).
_KERAS_TYPES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "BatchNormalization"),
    (nn.Dropout, "Dropout"),
    (nn.Flatten, "Flatten"),
    (nn.Linear, "Dense"),
    (nn.Conv2d, "Conv2D"),
    (nn.MaxPool2d, "MaxPooling2D"),
    (nn.AvgPool2d, "AveragePooling2D"),
)


def keras_shape_tuple(shape: tuple[int, ...]) -> Shape:
    """Torch shape without batch -> Keras's: (C, H, W) -> (None, H, W, C); (F,) -> (None, F)."""
    if len(shape) == 3:
        channels, height, width = shape
        return (None, height, width, channels)
    return (None, *shape)


def keras_shape(shape: tuple[int, ...]) -> str:
    """``keras_shape_tuple`` as Keras prints it: ``(None, 32, 32, 3)``."""
    return "(" + ", ".join("None" if d is None else str(d) for d in keras_shape_tuple(shape)) + ")"


class SummaryRow(NamedTuple):
    name: str
    type_name: str
    #: Keras order with None for the batch; "multiple" if called with several shapes, "" if
    #: not called by the forward pass.
    output_shape: Shape | str
    params: int


@dataclass
class ModelSummary:
    rows: list[SummaryRow]
    total: int
    trainable: int
    non_trainable: int  # frozen parameters + BatchNorm running statistics
    text: str

    def __str__(self) -> str:
        return self.text


def _running_stats(module: nn.Module) -> int:
    count = 0
    for m in module.modules():
        for name in _RUNNING_STATS:
            buffer = getattr(m, name, None)
            if isinstance(buffer, torch.Tensor):
                count += buffer.numel()
    return count


def _type_name(module: nn.Module) -> str:
    name = getattr(module, "keras_type", None)
    if name is None:
        name = next((k for cls, k in _KERAS_TYPES if isinstance(module, cls)),
                    type(module).__name__)
    params = list(module.parameters())
    frozen = sum(not p.requires_grad for p in params)
    if params and frozen == len(params):
        name += ", frozen"
    elif frozen:
        name += ", partly frozen"
    return name


def _model_name(model: nn.Module) -> str:
    if type(model) is nn.Sequential:
        return "sequential"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(model).__name__).lower()


def _format_shape(shape: Shape | str) -> str:
    if isinstance(shape, str):
        return shape
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _output_shapes(model: nn.Module, in_shape: tuple[int, int, int]) -> dict[str, Shape | str]:
    """Run a zeros batch of one through ``model`` in eval mode, recording each child's output."""
    seen: dict[str, list[Shape | str]] = {}

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                shape: Shape | str = keras_shape_tuple(tuple(output.shape[1:]))
            else:
                shape = "multiple"
            seen.setdefault(name, []).append(shape)
        return hook

    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    # Per-module flags, since a caller may keep e.g. frozen BatchNorms in eval mode on purpose.
    modes = {m: m.training for m in model.modules()}
    handles = [child.register_forward_hook(hook_for(name))
               for name, child in model.named_children()]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *in_shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return {name: shapes[0] if len(set(shapes)) == 1 else "multiple"
            for name, shapes in seen.items()}


def summarize(model: nn.Module, in_shape: tuple[int, int, int], *,
              name: str | None = None) -> ModelSummary:
    """Keras's ``model.summary()`` for ``model`` fed (C, H, W) = ``in_shape`` images."""
    shapes = _output_shapes(model, tuple(in_shape))  # type: ignore[arg-type]
    rows = [SummaryRow(child_name, _type_name(child), shapes.get(child_name, ""),
                       sum(p.numel() for p in child.parameters()) + _running_stats(child))
            for child_name, child in model.named_children()]

    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    stats = _running_stats(model)
    non_trainable = sum(p.numel() for p in params if not p.requires_grad) + stats
    total = trainable + non_trainable

    headers = ("Layer (type)", "Output Shape", "Param #")
    cells = [(f"{r.name} ({r.type_name})", _format_shape(r.output_shape), f"{r.params:,}")
             for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) + 3 for i, h in enumerate(headers)]
    widths[1] = max(widths[1], 26)
    line_width = sum(widths) + 1

    def line(values: tuple[str, str, str]) -> str:
        return (" " + "".join(v.ljust(w) for v, w in zip(values, widths))).rstrip()

    lines = [
        f'Model: "{name or _model_name(model)}"',
        "Output shapes are shown Keras-style: (batch, height, width, channels); "
        "torch tensors are (batch, channels, height, width).",
        "_" * line_width,
        line(headers),
        "=" * line_width,
        *(line(c) for c in cells),
        "=" * line_width,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
    ]
    if stats:
        lines.append(f"  (includes {stats:,} BatchNorm moving mean/variance values, "
                     "counted as Keras counts them)")
    lines.append("_" * line_width)
    return ModelSummary(rows=rows, total=total, trainable=trainable,
                        non_trainable=non_trainable, text="\n".join(lines))
