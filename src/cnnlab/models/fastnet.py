"""``fastnet``: the CIFAR-10 speed-record network family as a registered, configurable model.

After airbench94 (Keller Jordan, 2024): a frozen 2x2 patch-whitening convolution initialised
from the eigenvectors of the training patches' covariance, then conv groups of
(conv3x3, maxpool, BN, GELU, conv3x3, BN, GELU) with identity-initialised filters and
BatchNorm whose scale is frozen at 1, then a bias-free linear head scaled down. The
whitening stem needs training images: the pipeline calls :meth:`FastNet.init_from_data`.
Its bias may train for the first epochs only (``whiten_bias_epochs``, airbench: 3): once it
is frozen nothing before the first conv group needs a gradient, so backward skips that
conv's input gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config.fastnet import FastNetConfig
from cnnlab.models.factory import MODELS


class WhiteningStem(nn.Module):
    """A frozen convolution that decorrelates k x k patches (ZCA-like, +/- eigenvectors)."""

    def __init__(self, in_channels: int, kernel: int, width: int | None, eps: float) -> None:
        super().__init__()
        patch_dim = in_channels * kernel * kernel
        self.width = width or 2 * patch_dim
        self.eps = eps
        self.conv = nn.Conv2d(in_channels, self.width, kernel, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)  # set from data, never trained
        self.act = nn.GELU()

    @torch.no_grad()
    def init_from_patches(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the filters from (N, C, H, W) uint8 training images, scaled as the model sees them."""
        k = self.conv.kernel_size[0]
        x = (images[:5000].float() - mean) / std
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * k * k)  # (P, C*k*k)
        patches = patches - patches.mean(dim=0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.double())
        filters = (eigenvectors.T / torch.sqrt(eigenvalues[:, None] + self.eps)).float()
        filters = filters.reshape(-1, x.shape[1], k, k)  # (C*k*k, C, k, k)
        n = min(self.width // 2, len(filters))
        self.conv.weight.zero_()
        self.conv.weight[:n] = filters[-n:]  # strongest directions last from eigh
        self.conv.weight[n:2 * n] = -filters[-n:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def _batchnorm(channels: int, cfg: FastNetConfig) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, momentum=1.0 - cfg.bn_momentum, eps=1e-12)
    if cfg.bn_frozen_scale:
        bn.weight.requires_grad_(False)
    return bn


class ConvGroup(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, cfg: FastNetConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = _batchnorm(out_channels, cfg)
        self.act1 = nn.GELU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = _batchnorm(out_channels, cfg)
        self.act2 = nn.GELU()
        if cfg.dirac_init:
            for conv in (self.conv1, self.conv2):
                _dirac_(conv)


@torch.no_grad()
def _dirac_(conv: nn.Conv2d) -> None:
    """Identity-initialise the first min(in, out) filters so signals pass through at start."""
    n = min(conv.in_channels, conv.out_channels)
    nn.init.dirac_(conv.weight[:n])


class FastNet(nn.Module):
    def __init__(self, cfg: FastNetConfig, in_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        channels = in_shape[0]
        self.stem = (WhiteningStem(channels, cfg.whiten_kernel, cfg.whiten_width, cfg.whiten_eps)
                     if cfg.whiten_kernel else nn.Identity())
        width = self.stem.width if cfg.whiten_kernel else channels
        groups = []
        for out in cfg.widths:
            groups.append(ConvGroup(width, out, cfg))
            width = out
        self.groups = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(width, num_classes, bias=False)
        if cfg.head_init_std is not None:
            with torch.no_grad():
                self.head.weight.mul_(cfg.head_init_std / self.head.weight.std())
        self.head_scale = cfg.head_scale
        self.whiten_bias_epochs = cfg.whiten_bias_epochs if cfg.whiten_kernel else None

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of each training epoch (0-based)."""
        if self.whiten_bias_epochs is not None:
            self.stem.conv.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def init_from_data(self, images: torch.Tensor, mean, std) -> None:
        if isinstance(self.stem, WhiteningStem):
            mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
            std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
            self.stem.init_from_patches(images, mean_t, std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.stem(x))
        return self.head(self.flatten(self.pool(x))) * self.head_scale


@MODELS.register("fastnet", "airbench-style speed-record net: whitening stem, conv groups")
def build_fastnet(cfg: FastNetConfig, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    return FastNet(cfg, in_shape, num_classes)
