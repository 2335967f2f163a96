"""Small types every config section shares (activation and padding names, positive ints,
fractions, int pairs) and the one-key-mapping shorthand of the YAML lists. Depends only on
pydantic, so any config module can import it."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

Activation = Literal[
    "relu", "elu", "gelu", "leaky_relu", "selu", "sigmoid", "tanh", "swish", "silu",
    "softplus", "softmax", "linear",
]
Padding = Literal["same", "valid"]
FillMode = Literal["reflect", "constant", "nearest"]
Monitor = Literal["val_loss", "val_accuracy", "loss", "accuracy"]
Mode = Literal["auto", "min", "max"]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
IntPair = Union[PositiveInt, tuple[PositiveInt, PositiveInt]]




def one_key_mapping_to_tagged(value: Any, tag: str = "type") -> Any:
    """``{conv2d: {filters: 32}}`` -> ``{type: conv2d, filters: 32}`` (also accepts a bare name)."""
    if isinstance(value, str):
        return {tag: value}
    if isinstance(value, dict) and tag not in value and len(value) == 1:
        (name, params), = value.items()
        if params is None:
            params = {}
        if isinstance(params, dict):
            return {tag: name, **params}
    return value
