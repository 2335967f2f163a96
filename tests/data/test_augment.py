"""Batch augmentations: registry agrees with the schema, Keras semantics, per-sample randomness."""

from __future__ import annotations

import typing

import pytest
import torch
import torch.nn.functional as F

from cnnlab.config.schema import (
    AugmentSpec, Brightness, Contrast, Cutout, Flip, RandomCrop, Rotation, Translation, Zoom,
)
from cnnlab.data import augment
from cnnlab.data.augment import AUGMENTATIONS, build_augment

VR = 255.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _apply(spec, x, *, value_range=VR, seed=0):
    return AUGMENTATIONS.get(spec.type)(x, spec, value_range=value_range, generator=_gen(seed))


def _images(b=4, c=3, h=8, w=8, value_range=VR, seed=1):
    return torch.rand(b, c, h, w, generator=_gen(seed)) * value_range


@pytest.fixture
def fixed_params(monkeypatch):
    """Every continuous draw returns the top of its range, so the transform is known."""
    monkeypatch.setattr(augment, "_uniform",
                        lambda n, low, high, x, g: torch.full((n,), high, device=x.device))


ALL_SPECS = [
    Flip(type="flip", mode="horizontal_and_vertical"),
    Rotation(type="rotation", factor=0.2, fill_mode="reflect"),
    Rotation(type="rotation", factor=0.2, fill_mode="constant"),
    Zoom(type="zoom", factor=0.3, fill_mode="nearest"),
    Translation(type="translation", factor=0.3, fill_mode="reflect"),
    Brightness(type="brightness", factor=0.5),
    Brightness(type="brightness", factor=0.5, mode="multiply"),
    Contrast(type="contrast", factor=0.9),
    RandomCrop(type="random_crop", padding=3, pad_mode="reflect"),
    RandomCrop(type="random_crop", padding=3, pad_mode="constant"),
    Cutout(type="cutout", size=4),
    Cutout(type="cutout", size=4, fill="zero"),
]


def test_registry_names_are_the_schema_tags():
    union, *_ = typing.get_args(AugmentSpec)
    tags = {typing.get_args(cls.model_fields["type"].annotation)[0]
            for cls in typing.get_args(union)}
    assert set(AUGMENTATIONS.names()) == tags


def test_duplicate_registration_raises():
    with pytest.raises(ValueError):
        AUGMENTATIONS.register("flip")(lambda x, spec, **kw: x)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s.type}")
@pytest.mark.parametrize("value_range,dtype,channels_last",
                         [(255.0, torch.float32, False), (1.0, torch.float64, True)])
def test_shape_dtype_and_range_are_kept(spec, value_range, dtype, channels_last):
    x = _images(b=5, h=7, w=9, value_range=value_range).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = _apply(spec, x, value_range=value_range)
    assert out.shape == x.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= value_range


@pytest.mark.parametrize("mode,ops", [
    ("horizontal", [lambda t: t, lambda t: t.flip(-1)]),
    ("vertical", [lambda t: t, lambda t: t.flip(-2)]),
    ("horizontal_and_vertical", [lambda t: t, lambda t: t.flip(-1), lambda t: t.flip(-2),
                                 lambda t: t.flip(-1).flip(-2)]),
])
def test_flip_each_sample_is_one_of_the_mirrors_about_evenly(mode, ops):
    x = _images(b=200, c=1, h=3, w=3)
    out = _apply(Flip(type="flip", mode=mode), x)
    counts = [0] * len(ops)
    for xi, oi in zip(x, out):
        matches = [i for i, op in enumerate(ops) if torch.equal(oi, op(xi))]
        assert len(matches) == 1
        counts[matches[0]] += 1
    expected = 200 / len(ops)
    assert all(0.6 * expected < c < 1.4 * expected for c in counts), counts


@pytest.mark.parametrize("spec", [
    Rotation(type="rotation", factor=0.0),
    Zoom(type="zoom", factor=0.0),
    Translation(type="translation", factor=0.0),
    Brightness(type="brightness", factor=0.0),
    Brightness(type="brightness", factor=0.0, mode="multiply"),
    Contrast(type="contrast", factor=0.0),
], ids=lambda s: s.type)
def test_factor_zero_is_identity(spec):
    x = _images(h=6, w=10)
    torch.testing.assert_close(_apply(spec, x), x, atol=1e-3, rtol=0)


def test_translation_by_whole_pixels_moves_content_and_fills_zeros(fixed_params):
    x = _images(h=4, w=8) + 1  # no zeros, so the vacated zeros are visible
    out = _apply(Translation(type="translation", factor=0.25, fill_mode="constant"), x)
    expected = torch.zeros_like(x)
    expected[..., 1:, 2:] = x[..., :-1, :-2]  # 0.25 of 4 rows down, 0.25 of 8 columns right
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)


def test_rotation_quarter_turn_is_rot90_and_rigid_on_non_square(fixed_params):
    spec = Rotation(type="rotation", factor=0.25, fill_mode="constant")
    square = _images(h=6, w=6)
    torch.testing.assert_close(_apply(spec, square), torch.rot90(square, 1, dims=(-2, -1)),
                               atol=1e-3, rtol=0)
    # Without the aspect correction the central square of a 4x8 image would be stretched.
    wide = _images(h=4, w=8)
    torch.testing.assert_close(_apply(spec, wide)[..., 2:6],
                               torch.rot90(wide[..., 2:6], 1, dims=(-2, -1)), atol=1e-3, rtol=0)


def test_positive_zoom_zooms_out(fixed_params):
    x = torch.full((2, 1, 8, 8), 100.0)
    out = _apply(Zoom(type="zoom", factor=0.5, fill_mode="constant"), x)
    assert (out[..., 0, 0] == 0).all()  # the corners now read from outside the image
    torch.testing.assert_close(out[..., 3:5, 3:5], x[..., 3:5, 3:5])


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_random_crop_returns_windows_of_the_padded_input(pad_mode):
    p, h, w = 2, 5, 6
    x = torch.arange(32 * 2 * h * w, dtype=torch.float32).reshape(32, 2, h, w)
    out = _apply(RandomCrop(type="random_crop", padding=p, pad_mode=pad_mode), x,
                 value_range=float(x.numel()))
    padded = F.pad(x, (p, p, p, p), mode=pad_mode)
    offsets = set()
    for b in range(len(x)):
        found = [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
                 if torch.equal(out[b], padded[b, :, i:i + h, j:j + w])]
        assert found, f"sample {b} is not a window of its padded image"
        offsets.add(found[0])
    assert len(offsets) > 5  # offsets are drawn per sample


@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_cutout_blanks_one_whole_square_per_image(fill):
    size, h, w = 3, 7, 9
    x = 1.0 + _images(b=64, h=h, w=w, value_range=100.0)  # no pixel is 0 before
    out = _apply(Cutout(type="cutout", size=size, fill=fill), x)
    changed = (out != x).any(dim=1)  # (B, H, W)
    corners = set()
    for b in range(len(x)):
        ys, xs = changed[b].nonzero(as_tuple=True)
        top, left = int(ys.min()), int(xs.min())
        assert len(ys) == size * size and int(ys.max()) == top + size - 1  # a square, inside
        assert int(xs.max()) == left + size - 1
        expected = (x[b].mean(dim=(-2, -1)) if fill == "mean" else torch.zeros(3))
        torch.testing.assert_close(out[b, :, top, left], expected)
        corners.add((top, left))
    assert len(corners) > 10  # placed per sample


def test_cutout_larger_than_the_image_blanks_all_of_it():
    x = _images(b=2, h=4, w=4)
    out = _apply(Cutout(type="cutout", size=12, fill="zero"), x)
    assert torch.equal(out, torch.zeros_like(x))


def test_multiplicative_brightness_scales_each_sample_like_imagedatagenerator():
    # brightness_range=[0.9, 1.1]: every pixel of a sample times one factor in [0.9, 1.1].
    x = torch.linspace(1.0, 0.8 * VR, 16).view(1, 1, 4, 4).repeat(64, 3, 1, 1)
    out = _apply(Brightness(type="brightness", factor=0.1, mode="multiply"), x)
    ratio = out / x
    per_sample = ratio[:, 0, 0, 0]
    torch.testing.assert_close(ratio, per_sample.view(-1, 1, 1, 1).expand_as(ratio))
    assert per_sample.min() >= 0.9 - 1e-5 and per_sample.max() <= 1.1 + 1e-5
    assert per_sample.min() < 0.97 and per_sample.max() > 1.03  # drawn, not a constant
    # Black stays black (unlike the additive mode), and the top of the range clips.
    black = torch.zeros(8, 3, 2, 2)
    spec = Brightness(type="brightness", factor=0.1, mode="multiply")
    assert torch.equal(_apply(spec, black), black)
    bright = _apply(Brightness(type="brightness", factor=0.5, mode="multiply"),
                    torch.full((64, 3, 2, 2), VR))
    assert bright.max() <= VR and bright.min() < VR


def test_brightness_adds_one_bounded_delta_per_sample():
    x = torch.full((64, 3, 4, 4), 0.5 * VR)
    delta = _apply(Brightness(type="brightness", factor=0.2), x) - x
    per_sample = delta[:, 0, 0, 0]
    assert torch.equal(delta, per_sample.view(-1, 1, 1, 1).expand_as(delta))
    assert per_sample.abs().max() <= 0.2 * VR + 1e-3
    assert per_sample.min() < -0.1 * VR and per_sample.max() > 0.1 * VR
    assert per_sample.unique().numel() == 64


def test_brightness_clamps_to_the_value_range():
    x = torch.full((16, 1, 2, 2), 0.95)
    out = _apply(Brightness(type="brightness", factor=0.5), x, value_range=1.0)
    assert out.max() == 1.0 and out.min() >= 0.45


def test_contrast_keeps_channel_means_and_scales_deviations_per_sample():
    x = 100 + _images(b=16, value_range=55.0)  # deviations stay in range after a 1.3x stretch
    out = _apply(Contrast(type="contrast", factor=0.3), x)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    torch.testing.assert_close(out.mean(dim=(-2, -1), keepdim=True), mean)
    ratio = (out - mean) / (x - mean)
    c = ratio[:, 0, 0, 0]
    torch.testing.assert_close(ratio, c.view(-1, 1, 1, 1).expand_as(ratio), atol=1e-3, rtol=1e-3)
    assert (c >= 0.7 - 1e-4).all() and (c <= 1.3 + 1e-4).all()
    assert c.unique().numel() == 16


def test_geometric_ops_draw_parameters_per_sample():
    x = _images(b=1, h=8, w=8).expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    for spec in (Rotation(type="rotation", factor=0.3), Zoom(type="zoom", factor=0.3),
                 Translation(type="translation", factor=0.3)):
        out = _apply(spec, x)
        assert not torch.allclose(out[0], out[1]), spec.type


def test_empty_augment_is_identity():
    x = _images()
    assert build_augment([])(x) is x


def test_build_augment_composes_in_order_with_the_global_rng():
    specs = [Contrast(type="contrast", factor=0.5), Brightness(type="brightness", factor=0.5)]
    x = _images(b=8)
    torch.manual_seed(3)
    out = build_augment(specs)(x)
    torch.manual_seed(3)
    expected = augment.brightness(augment.contrast(x, specs[0], value_range=VR, generator=None),
                                  specs[1], value_range=VR, generator=None)
    torch.testing.assert_close(out, expected)
    torch.manual_seed(3)
    assert not torch.allclose(build_augment(specs[::-1])(x), out)


def test_value_range_reaches_the_ops():
    x = torch.full((4, 1, 2, 2), 0.9)
    out = build_augment([Brightness(type="brightness", factor=1.0)], value_range=1.0)(x)
    assert out.max() <= 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s.type}")
def test_runs_on_the_gpu(spec):
    x = _images().cuda().contiguous(memory_format=torch.channels_last)
    out = build_augment([spec])(x)
    assert out.device == x.device and out.shape == x.shape


def test_alternating_flip_shows_each_image_both_ways_in_each_pair_of_epochs():
    spec = Flip(type="flip", alternate=True)
    x = torch.randint(0, 256, (64, 3, 8, 8)).float()
    run = lambda epoch: AUGMENTATIONS.get("flip")(x, spec, value_range=VR, epoch=epoch)  # noqa: E731
    flipped = lambda out: (out != x).flatten(1).any(1)  # noqa: E731  (random images aren't symmetric)
    e0, e1, e2 = run(0), run(1), run(2)
    # The orientation is fixed per image (not redrawn), inverted on odd epochs, about half flipped.
    assert torch.equal(e0, e2)
    assert torch.equal(flipped(e0), ~flipped(e1))
    assert torch.equal(torch.where(flipped(e0).view(-1, 1, 1, 1), x.flip(-1), x), e0)
    assert 16 < int(flipped(e0).sum()) < 48
    # The choice follows the image, not its position in the batch.
    order = torch.randperm(64)
    assert torch.equal(AUGMENTATIONS.get("flip")(x[order], spec, value_range=VR), e0[order])
