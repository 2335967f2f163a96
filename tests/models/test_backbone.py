"""The ``backbone`` model: every backbone of reports 003/004 builds and trains at 32 and 96 px
without weights; layer selection matches a hand count; BatchNorm of frozen layers stays in
eval mode; weights load from a file or the libraries' caches; no network fails at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import TypeAdapter
from safetensors.torch import save_file

from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import build_model, summarize
from cnnlab.models.backbones import BackboneNet

# Report name -> backbone spec. Report 003: ResNet50, VGG16, SqueezeNet; report 004:
# MobileNetV2, ResNet50V2, ConvNeXt-Tiny, NASNet, DenseNet169. NASNet is timm's NASNet-A
# Large (Keras's NASNetLarge); timm has no NASNetMobile.
REPORT_BACKBONES = [
    ("MobileNetV2", "timm:mobilenetv2_100"),
    ("ResNet50", "torchvision:resnet50"),
    ("ResNet50V2", "timm:resnetv2_50"),
    ("ConvNeXt-Tiny", "timm:convnext_tiny"),
    pytest.param("VGG16", "torchvision:vgg16", marks=pytest.mark.slow),  # 138M params to init
    ("DenseNet169", "timm:densenet169"),
    pytest.param("NASNet", "timm:nasnetalarge", marks=pytest.mark.slow),  # 85M params, 1.5 s/step
    ("SqueezeNet", "torchvision:squeezenet1_1"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """Empty library caches and no network, whatever the machine has."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    return tmp_path


def model_cfg(**fields):
    return TypeAdapter(ModelConfig).validate_python({"name": "backbone", **fields})


def small_experiment(tmp_path: Path) -> Path:
    """A cnnlab experiment whose sequential model has 5 layers holding parameters:

    conv2d 3->4 (3*4*9 + 4 = 112), batch_normalization (2*4 = 8), conv2d_1 4->8 (4*8*9 + 8 =
    296), batch_normalization_1 (2*8 = 16), conv2d_2 8->8 (8*8*9 + 8 = 584); then flatten and
    dense, which the backbone drops.
    """
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tests/small",
        "model": {"layers": [
            {"conv2d": {"filters": 4, "padding": "same", "activation": "relu"}},
            {"batchnorm": {}},
            {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
            {"batchnorm": {}},
            {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
            {"flatten": {}},
            {"dense": {"units": 4}},
        ]},
    }))
    return path


HAND = {"conv2d": 112, "batch_normalization": 8, "conv2d_1": 296, "batch_normalization_1": 16,
        "conv2d_2": 584}
HEAD = 8 * 3 + 3  # global_avg_pool over 8 channels, Dense(3)


@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize("report_name, spec", REPORT_BACKBONES)
def test_report_backbones_build_and_take_a_training_step(report_name, spec, size) -> None:
    torch.manual_seed(0)
    cfg = model_cfg(backbone=spec, pretrained=False,
                    head=[{"global_avg_pool": {}}, {"dense": {"units": 16, "activation": "relu"}}])
    net = build_model(cfg, (3, size, size), 5)
    assert isinstance(net, BackboneNet) and net.training
    assert net.layer_names and net.stages
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
    before = net.layer(net.layer_names[0]).weight.detach().clone()
    logits = net(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 5)
    loss = F.cross_entropy(logits, torch.tensor([0, 4]))
    loss.backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    optimizer.step()
    assert not torch.equal(before, net.layer(net.layer_names[0]).weight)
    summary = summarize(net, (3, size, size))
    assert summary.rows[0].name == "backbone" and summary.rows[-1].output_shape == (None, 5)


def test_too_small_input_names_the_smallest_size() -> None:
    with pytest.raises(ConfigError, match=r"cannot take 16x16 px.*smallest square input it takes "
                                          r"is 32x32 px"):
        build_model(model_cfg(backbone="timm:densenet169", pretrained=False), (3, 16, 16), 3)


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="mobilenetv2_100"):
        build_model(model_cfg(backbone="timm:mobilenetv2_10", pretrained=False), (3, 32, 32), 3)


@pytest.mark.parametrize("selection, trainable", [
    ({"last": 2}, ["batch_normalization_1", "conv2d_2"]),
    ({"last": 0}, []),
    ({"range": [-4, -2]}, ["batch_normalization", "conv2d_1"]),
    ({"range": [1, None]}, ["batch_normalization", "conv2d_1", "batch_normalization_1", "conv2d_2"]),
    ({"stages": ["conv2d_1", "batch_normalization_1"]}, ["conv2d_1", "batch_normalization_1"]),
])
def test_unfreezing_counts_match_a_hand_count(tmp_path, selection, trainable) -> None:
    cfg = model_cfg(backbone=f"cnnlab:{small_experiment(tmp_path)}", pretrained=False,
                    freeze="all", unfreeze=selection)
    net = build_model(cfg, (3, 8, 8), 3)
    assert net.layer_names == ["conv2d.conv", "batch_normalization", "conv2d_1.conv",
                               "batch_normalization_1", "conv2d_2.conv"]
    counts = net.param_counts()
    expected = sum(HAND[name] for name in trainable)
    assert counts["backbone"] == sum(HAND.values()) == 1016
    assert counts["backbone_trainable"] == expected
    assert counts["frozen"] == 1016 - expected
    assert counts["head"] == HEAD
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected + HEAD
    assert [n.split(".")[0] for n in net.trainable_layers()] == trainable
    summary = summarize(net, (3, 8, 8))
    assert summary.trainable == expected + HEAD
    state = "frozen" if not trainable else "partly frozen"
    assert summary.rows[0].type_name.endswith(state)


def test_frozen_batchnorm_stays_in_eval_mode_unless_bn_train(tmp_path) -> None:
    experiment = small_experiment(tmp_path)
    net = build_model(model_cfg(backbone=f"cnnlab:{experiment}", pretrained=False, freeze="all",
                                unfreeze={"last": 2}), (3, 8, 8), 3)
    frozen_bn, trainable_bn = net.layer("batch_normalization"), net.layer("batch_normalization_1")
    net.train()
    assert not frozen_bn.training and trainable_bn.training
    mean_before = frozen_bn.running_mean.clone()
    net(torch.randn(4, 3, 8, 8) * 5 + 3)
    assert torch.equal(frozen_bn.running_mean, mean_before)
    assert not torch.equal(trainable_bn.running_mean, torch.zeros(8))
    net.eval()
    net.train()  # as a training loop does between epochs
    assert not frozen_bn.training

    free = build_model(model_cfg(backbone=f"cnnlab:{experiment}", pretrained=False,
                                 freeze="all", bn="train"), (3, 8, 8), 3)
    assert free.layer("batch_normalization").training


def test_unknown_stage_prefix_lists_the_top_level_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match="top-level names: conv2d, batch_normalization"):
        build_model(model_cfg(backbone=f"cnnlab:{small_experiment(tmp_path)}", pretrained=False,
                              freeze="all", unfreeze={"stages": ["conv9"]}), (3, 8, 8), 3)


def test_finetune_param_groups_decay_per_stage_towards_the_input(tmp_path) -> None:
    from cnnlab.config.schema import TrainConfig
    from cnnlab.train.finetune import finetune_param_groups

    cfg = model_cfg(backbone=f"cnnlab:{small_experiment(tmp_path)}", pretrained=False,
                    finetune={"frozen_epochs": 2, "backbone_lr": 1e-4, "lr_decay": 0.5,
                              "unfreeze": {"last": 3}})
    net = build_model(cfg, (3, 8, 8), 3)
    assert not any(p.requires_grad for p in net.backbone.parameters())  # phase 1: all frozen
    groups = finetune_param_groups(net, TrainConfig(lr=1e-3))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["head"] == 1e-3
    assert lrs["backbone:conv2d_2"] == pytest.approx(1e-4)
    assert lrs["backbone:batch_normalization_1"] == pytest.approx(5e-5)
    assert lrs["backbone:conv2d"] == pytest.approx(1e-4 * 0.5 ** 4)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    unfrozen = net.start_finetune(2)
    assert unfrozen == ["conv2d_1.conv", "batch_normalization_1", "conv2d_2.conv"]
    assert net.finetune.applied_at_epoch == 3
    assert net.param_counts()["backbone_trainable"] == 296 + 16 + 584


def test_grayscale_is_repeated_and_input_size_resizes_inside() -> None:
    net = build_model(model_cfg(backbone="torchvision:squeezenet1_1", pretrained=False,
                                input_size=64), (1, 28, 28), 3)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    summary = summarize(net, (1, 28, 28))
    assert summary.rows[0].name == "resizing" and summary.rows[0].output_shape == (None, 64, 64, 3)


# ---------------------------------------------------------------------------------- weights

def _timm_small():
    import timm

    return timm.create_model("mobilenetv2_050", pretrained=False)


@pytest.mark.parametrize("kind", ["safetensors", "torch", "cnnlab_prefixed"])
def test_pretrained_path_loads_a_saved_state_dict(tmp_path, kind) -> None:
    source = _timm_small()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if kind == "safetensors":
        path = tmp_path / "weights.safetensors"
        save_file(state, str(path))
    elif kind == "torch":
        path = tmp_path / "weights.pth"
        torch.save(state, path)
    else:  # as a cnnlab run's model.safetensors holds them, with its mean/std
        path = tmp_path / "model.safetensors"
        save_file({**{f"net.backbone.model.{k}": v for k, v in state.items()},
                   "mean": torch.full((1, 3, 1, 1), 10.0), "std": torch.full((1, 3, 1, 1), 20.0)},
                  str(path))
    net = build_model(model_cfg(backbone="timm:mobilenetv2_050", pretrained=str(path)),
                      (3, 32, 32), 4)
    assert torch.equal(net.backbone.model.conv_stem.weight, source.conv_stem.weight)
    assert torch.equal(net.backbone.model.bn2.running_var, source.bn2.running_var)
    assert net.info["freeze"] == "all"  # auto: weights loaded -> frozen
    if kind == "cnnlab_prefixed":
        assert net.input_normalization == ((10.0,) * 3, (20.0,) * 3)
    else:  # the library's pretrained mean/std, on the 0-255 scale
        assert net.input_normalization[0] == pytest.approx((123.675, 116.28, 103.53))


def test_pretrained_path_of_another_architecture_is_refused(tmp_path) -> None:
    import timm

    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in
               timm.create_model("resnet10t", pretrained=False).state_dict().items()}, str(path))
    with pytest.raises(ConfigError, match="are not in the file"):
        build_model(model_cfg(backbone="timm:mobilenetv2_050", pretrained=str(path)), (3, 32, 32), 4)


def test_pretrained_true_uses_the_hugging_face_cache(no_weights_anywhere) -> None:
    source = _timm_small()
    import timm.models

    repo = timm.models.get_pretrained_cfg("mobilenetv2_050").hf_hub_id
    folder = no_weights_anywhere / "hf" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(folder / "snapshots" / ("0" * 40) / "model.safetensors"))
    net = build_model(model_cfg(backbone="timm:mobilenetv2_050", pretrained=True), (3, 32, 32), 4)
    assert torch.equal(net.backbone.model.conv_stem.weight, source.conv_stem.weight)
    assert repo in net.info["weights"]


def test_pretrained_true_uses_the_torch_hub_cache(no_weights_anywhere) -> None:
    import torchvision

    source = torchvision.models.squeezenet1_1()
    checkpoints = no_weights_anywhere / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(source.state_dict(), checkpoints / "squeezenet1_1-b8a52dc0.pth")
    net = build_model(model_cfg(backbone="torchvision:squeezenet1_1"), (3, 32, 32), 4)
    assert torch.equal(net.backbone.model.features[0].weight, source.features[0].weight)
    assert net.input_normalization[1] == pytest.approx((58.395, 57.12, 57.375))


@pytest.mark.parametrize("spec, file_hint", [
    ("timm:mobilenetv2_100", "models--timm--mobilenetv2_100"),
    ("torchvision:squeezenet1_1", "squeezenet1_1-b8a52dc0.pth"),
])
def test_pretrained_true_offline_fails_at_once_naming_the_file(no_weights_anywhere, spec,
                                                               file_hint) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        build_model(model_cfg(backbone=spec, pretrained=True), (3, 32, 32), 4)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert file_hint in message and "no network" in message and "pretrained: false" in message
    assert str(no_weights_anywhere) in message  # the folder the file belongs in


def test_an_unanswering_network_is_given_up_within_seconds(no_weights_anywhere, monkeypatch) -> None:
    import socket

    monkeypatch.delenv("CNNLAB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    release = threading.Event()

    def hang(*args, **kwargs):  # a connection attempt that never answers
        release.wait(60)
        raise OSError("gave up")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match="no network"):
            build_model(model_cfg(backbone="torchvision:squeezenet1_1", pretrained=True),
                        (3, 32, 32), 4)
        assert time.perf_counter() - started < 10
    finally:
        release.set()


def test_skip_pretrained_weights_builds_the_same_net_offline(no_weights_anywhere) -> None:
    """What a saved run needs: the architecture, freezing and scaling, but no weight files."""
    from cnnlab.models.backbones import skip_pretrained_weights

    cfg = model_cfg(backbone="timm:mobilenetv2_050", pretrained=True, unfreeze={"last": 3})
    with skip_pretrained_weights():
        net = build_model(cfg, (3, 32, 32), 4)
    assert net.info["freeze"] == "all" and len(net.trainable_layers()) == 3
    assert net.input_normalization[0] == pytest.approx((123.675, 116.28, 103.53))
    with pytest.raises(ConfigError, match="no network"):  # and outside it, weights are needed
        build_model(cfg, (3, 32, 32), 4)
