"""Batch augmentations with Keras preprocessing-layer semantics, run on the training device.

Each entry of :data:`AUGMENTATIONS` takes a whole float batch ``x`` of shape (B, C, H, W)
with values in ``[0, value_range]`` and returns a batch of the same shape and range, with
random parameters drawn per sample on ``x.device``. There are no per-image Python loops and
no PIL, so augmentation costs a few kernel launches per batch on a GPU. Names are the
``type`` tags of :data:`cnnlab.config.schema.AugmentSpec`; :func:`build_augment` turns the
experiment's ``augment:`` list into one callable.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnnlab.config.schema import (
    AugmentSpec, Brightness, Contrast, Cutout, Flip, RandomCrop, Rotation, Translation, Zoom,
)
from cnnlab.registry import Registry

AugmentFn = Callable[..., Tensor]
"""``fn(x, spec, *, value_range, generator, epoch) -> Tensor``; a generator must live on
``x.device``; ``epoch`` (0-based) matters only to epoch-dependent ops such as alternating flip."""

AUGMENTATIONS: Registry[AugmentFn] = Registry("augmentation")

_PADDING_MODE = {"reflect": "reflection", "constant": "zeros", "nearest": "border"}


def _uniform(n: int, low: float, high: float, x: Tensor,
             generator: torch.Generator | None) -> Tensor:
    """``n`` draws from U[low, high) in float32 on ``x.device`` (tests patch this to fix them)."""
    u = torch.rand(n, device=x.device, dtype=torch.float32, generator=generator)
    return low + (high - low) * u


def _per_sample(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def _coin(x: Tensor, generator: torch.Generator | None) -> Tensor:
    return _per_sample(_uniform(x.shape[0], 0.0, 1.0, x, generator) < 0.5)


def _affine(x: Tensor, theta: Tensor, fill_mode: str, value_range: float) -> Tensor:
    """Resample ``x`` where output pixel p reads input at ``theta @ [p, 1]`` (normalised coords)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False).to(x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=_PADDING_MODE[fill_mode],
                        align_corners=False)
    # Bilinear weights sum to 1 only up to rounding, so the range contract needs a clamp.
    return out.clamp_(0.0, value_range)


def _theta(a: Tensor, b: Tensor, c: Tensor, d: Tensor,
           tx: Tensor | None = None, ty: Tensor | None = None) -> Tensor:
    """(B, 2, 3) matrices ``[[a, b, tx], [c, d, ty]]`` from per-sample vectors."""
    zero = torch.zeros_like(a)
    row0 = torch.stack([a, b, zero if tx is None else tx], dim=1)
    row1 = torch.stack([c, d, zero if ty is None else ty], dim=1)
    return torch.stack([row0, row1], dim=1)


@AUGMENTATIONS.register("flip", "mirror each sample with probability 0.5 per axis")
def flip(x: Tensor, spec: Flip, *, value_range: float = 255.0,
         generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    bits = _image_bits(x) if spec.alternate else None
    for axis, dim, modes in ((0, -1, ("horizontal", "horizontal_and_vertical")),
                             (1, -2, ("vertical", "horizontal_and_vertical"))):
        if spec.mode not in modes:
            continue
        if bits is None:
            coin = _coin(x, generator)
        else:
            # The image's fixed orientation, inverted on odd epochs (airbench's alternating flip).
            coin = _per_sample((bits >> axis) % 2 != epoch % 2)
        x = torch.where(coin, x.flip(dim), x)
    return x


def _image_bits(x: Tensor) -> Tensor:
    """A per-image random-looking integer that is the same in every epoch, with no index needed.

    The pixel sum of an unaugmented 8-bit image is an exact integer (summed in float64), and a
    multiplicative hash spreads it, so its bits act as coin flips fixed per image. This holds only
    for the images as loaded: listed after a random op, the flip sees new pixels every epoch.
    """
    total = x.double().sum(dim=(1, 2, 3)).round().long()  # (B,)
    return (total * 2654435761) >> 7


@AUGMENTATIONS.register("rotation", "rotate by up to +-factor of a full turn")
def rotation(x: Tensor, spec: Rotation, *, value_range: float = 255.0,
             generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    angle = _uniform(x.shape[0], -spec.factor * 2 * math.pi, spec.factor * 2 * math.pi, x,
                     generator)
    cos, sin = angle.cos(), angle.sin()
    h, w = x.shape[-2:]
    # Normalised coordinates stretch each axis to [-1, 1]; rescaling the off-diagonal terms
    # keeps the rotation rigid in pixels on non-square images.
    theta = _theta(cos, -sin * (h / w), sin * (w / h), cos)
    return _affine(x, theta, spec.fill_mode, value_range)


@AUGMENTATIONS.register("zoom", "scale by [1-factor, 1+factor] (above 1 zooms out)")
def zoom(x: Tensor, spec: Zoom, *, value_range: float = 255.0,
         generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    # A scale s > 1 makes each output pixel read from further out, i.e. the image shrinks.
    s = _uniform(x.shape[0], 1.0 - spec.factor, 1.0 + spec.factor, x, generator)
    zero = torch.zeros_like(s)
    return _affine(x, _theta(s, zero, zero, s), spec.fill_mode, value_range)


@AUGMENTATIONS.register("translation", "shift by up to +-factor of height and width")
def translation(x: Tensor, spec: Translation, *, value_range: float = 255.0,
                generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    n = x.shape[0]
    dy = _uniform(n, -spec.factor, spec.factor, x, generator)
    dx = _uniform(n, -spec.factor, spec.factor, x, generator)
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    # Moving content by +d of the size means reading from -d; the normalised axis spans 2.
    theta = _theta(one, zero, zero, one, tx=-2 * dx, ty=-2 * dy)
    return _affine(x, theta, spec.fill_mode, value_range)


def _add_brightness(x: Tensor, factor: float, value_range: float,
                    generator: torch.Generator | None) -> Tensor:
    delta = _uniform(x.shape[0], -factor, factor, x, generator) * value_range
    return x + _per_sample(delta).to(x.dtype)


def _multiply_brightness(x: Tensor, factor: float, value_range: float,
                         generator: torch.Generator | None) -> Tensor:
    # ImageDataGenerator's brightness_range goes through PIL's ImageEnhance.Brightness, which
    # blends with a black image: a plain per-image scale of every pixel.
    scale = _uniform(x.shape[0], 1.0 - factor, 1.0 + factor, x, generator)
    return x * _per_sample(scale).to(x.dtype)


_BRIGHTNESS_MODES = {"add": _add_brightness, "multiply": _multiply_brightness}


@AUGMENTATIONS.register("brightness", "add up to +-factor of the value range, or (mode: "
                        "multiply) scale by [1-factor, 1+factor]")
def brightness(x: Tensor, spec: Brightness, *, value_range: float = 255.0,
               generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    out = _BRIGHTNESS_MODES[spec.mode](x, spec.factor, value_range, generator)
    return out.clamp_(0.0, value_range)


@AUGMENTATIONS.register("contrast", "scale deviations from each image's channel means")
def contrast(x: Tensor, spec: Contrast, *, value_range: float = 255.0,
             generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    c = _per_sample(_uniform(x.shape[0], 1.0 - spec.factor, 1.0 + spec.factor, x, generator))
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return ((x - mean) * c.to(x.dtype) + mean).clamp_(0.0, value_range)


@AUGMENTATIONS.register("random_crop", "pad by `padding` pixels, crop back at a random offset")
def random_crop(x: Tensor, spec: RandomCrop, *, value_range: float = 255.0,
                generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    n, _, h, w = x.shape
    p = spec.padding
    padded = F.pad(x, (p, p, p, p), mode=spec.pad_mode)
    oy = torch.randint(0, 2 * p + 1, (n, 1), device=x.device, generator=generator)
    ox = torch.randint(0, 2 * p + 1, (n, 1), device=x.device, generator=generator)
    rows = (oy + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # One gather for the whole batch (airbench's batch_crop): NHWC view so that the
    # advanced indices are adjacent and the channel axis rides along.
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    return _layout_of(x, out)


@AUGMENTATIONS.register("cutout", "blank one size x size square per image, wholly inside it")
def cutout(x: Tensor, spec: Cutout, *, value_range: float = 255.0,
           generator: torch.Generator | None = None, epoch: int = 0) -> Tensor:
    n, _, h, w = x.shape
    sh, sw = min(spec.size, h), min(spec.size, w)
    top = torch.randint(0, h - sh + 1, (n, 1, 1), device=x.device, generator=generator)
    left = torch.randint(0, w - sw + 1, (n, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(h, device=x.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w, device=x.device)[None, None, :]  # (1, 1, W)
    inside = ((rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw))
    fill = (x.mean(dim=(-2, -1), keepdim=True) if spec.fill == "mean"
            else torch.zeros((), dtype=x.dtype, device=x.device))
    return _layout_of(x, torch.where(inside[:, None], fill, x))  # mask (B, 1, H, W)


def _layout_of(x: Tensor, out: Tensor) -> Tensor:
    """``out`` in ``x``'s memory format, so a channels_last batch stays channels_last."""
    fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
           and not x.is_contiguous() else torch.contiguous_format)
    return out.contiguous(memory_format=fmt)


def build_augment(specs: Sequence[AugmentSpec],
                  value_range: float = 255.0) -> Callable[[Tensor], Tensor]:
    """Compose the registered augmentations in the order of ``specs``.

    The result draws from torch's global RNG on ``x.device``, which the trainer seeds.
    """
    steps = [(AUGMENTATIONS.get(spec.type), spec) for spec in specs]

    def augment(x: Tensor, epoch: int = 0) -> Tensor:
        for fn, spec in steps:
            x = fn(x, spec, value_range=value_range, generator=None, epoch=epoch)
        return x

    return augment
