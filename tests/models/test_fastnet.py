import torch

from cnnlab.config.schema import ExperimentConfig
from cnnlab.models import build_model


def fastnet(**options):
    cfg = ExperimentConfig.model_validate({"name": "x", "model": {"name": "fastnet", **options}})
    return build_model(cfg.model, (3, 16, 16), 10)


def test_whitening_stem_decorrelates_training_patches():
    torch.manual_seed(0)
    base = torch.rand(200, 1, 16, 16) * 255
    images = (base.repeat(1, 3, 1, 1) + torch.rand(200, 3, 16, 16) * 20).clamp(0, 255).to(torch.uint8)
    net = fastnet(widths=[8], whiten_width=24)
    net.init_from_data(images, [128.0] * 3, [64.0] * 3)
    x = (images.float() - 128.0) / 64.0
    out = torch.nn.functional.conv2d(x, net.stem.conv.weight[:12])  # (N, 12, H', W')
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = torch.cov(flat.T)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    assert off_diagonal.abs().max() < 0.05 * torch.diag(cov).max()
    assert not net.stem.conv.weight.requires_grad
    assert torch.equal(net.stem.conv.weight[12:], -net.stem.conv.weight[:12])


def test_dirac_init_and_frozen_bn_scale():
    net = fastnet(widths=[8, 16])
    conv = net.groups[0].conv2
    identity = torch.zeros(8, 8, 3, 3)
    identity[torch.arange(8), torch.arange(8), 1, 1] = 1.0
    assert torch.equal(conv.weight, identity)
    assert not net.groups[0].bn1.weight.requires_grad and net.groups[0].bn1.bias.requires_grad
    unfrozen = fastnet(widths=[8], bn_frozen_scale=False, dirac_init=False)
    assert unfrozen.groups[0].bn1.weight.requires_grad


def test_forward_backward_and_head_scale():
    net = fastnet(widths=[8, 16], head_scale=0.5)
    out = net(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert net.head.weight.grad is not None


def test_head_init_std_rescales_only_when_asked():
    torch.manual_seed(0)
    assert abs(fastnet(widths=[8, 16], head_init_std=1.0).head.weight.std().item() - 1.0) < 1e-5
    assert fastnet(widths=[8, 16]).head.weight.std().item() < 0.5  # PyTorch's 1/sqrt(3 * 16)


def test_whitening_bias_trains_only_for_its_epochs():
    net = fastnet(widths=[8], whiten_bias_epochs=3)
    net.set_epoch(2)
    assert net.stem.conv.bias.requires_grad
    net.set_epoch(3)
    assert not net.stem.conv.bias.requires_grad
    always = fastnet(widths=[8])
    always.set_epoch(9)
    assert always.stem.conv.bias.requires_grad
