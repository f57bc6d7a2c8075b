"""SRResNet generator of the SRGAN paper (Ledig et al. 2017), for scales 2, 4 and 8."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .base import SRModel, register_architecture

SCALES = (2, 4, 8)


@dataclass
class SRResNetConfig:
    """Architecture hyper-parameters; stored as config.json beside the weights (defaults: ``SRResNet``'s)."""

    scale: int
    num_blocks: int
    channels: int
    in_channels: int

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"SRResNet scale must be 2, 4 or 8, got {self.scale}")
        if self.num_blocks < 1 or self.channels < 1 or self.in_channels < 1:
            raise ValueError("SRResNet num_blocks, channels and in_channels must be positive")


def _fused(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """``conv`` followed by eval-mode BatchNorm ``bn`` as one convolution (``bn`` already folded: ``conv``)."""
    return fuse_conv_bn_eval(conv, bn) if isinstance(bn, nn.BatchNorm2d) else conv


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1: nn.Module = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2: nn.Module = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))

    def fuse(self) -> None:
        """Fold both BatchNorms into their convolutions, in place (eval mode)."""
        self.conv1, self.bn1 = _fused(self.conv1, self.bn1), nn.Identity()
        self.conv2, self.bn2 = _fused(self.conv2, self.bn2), nn.Identity()


class UpsampleStage(nn.Module):
    """conv to 4x channels, pixel shuffle x2, PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


@register_architecture("SRResNet")
class SRResNet(SRModel, tags=["srresnet"], paper_url="https://arxiv.org/abs/1609.04802"):
    """SRResNet: maps an RGB image in [0, 1] (N, C, h, w) to (N, C, h*scale, w*scale), linear output.

    Parameter names (``entry``, ``trunk``, ``trunk_conv``...) are chosen so that state-dict sniffers such as
    spandrel cannot mistake this model for another architecture (``sr_core.interop.spandrel`` detects them).
    """

    config_class = SRResNetConfig

    def __init__(self, *, scale: int = 4, num_blocks: int = 16, channels: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.config = c = SRResNetConfig(scale=scale, num_blocks=num_blocks, channels=channels, in_channels=in_channels)
        self.entry = nn.Sequential(nn.Conv2d(c.in_channels, c.channels, 9, padding=4), nn.PReLU(c.channels))
        self.trunk = nn.Sequential(*(ResidualBlock(c.channels) for _ in range(c.num_blocks)))
        self.trunk_conv = nn.Conv2d(c.channels, c.channels, 3, padding=1)
        self.trunk_bn: nn.Module = nn.BatchNorm2d(c.channels)
        self.upsampler = nn.Sequential(*(UpsampleStage(c.channels) for _ in range(int(math.log2(c.scale)))))
        self.exit = nn.Conv2d(c.channels, c.in_channels, 9, padding=4)
        for block in self.trunk:
            nn.init.zeros_(block.bn2.weight)  # residual blocks start as identities: faster, stabler early training

    @property
    def scale(self) -> int:
        return self.config.scale

    def receptive_radius(self) -> int:
        """Input pixels of context each output pixel depends on, per side; tiles padded by this are exact."""
        c = self.config
        stages = int(math.log2(c.scale))
        radius = 4 + 2 * c.num_blocks + 1 + sum(1 / 2**i for i in range(stages)) + 4 / c.scale
        return math.ceil(radius) + 1

    def fuse_for_inference(self) -> SRResNet:
        """An eval-mode copy with every BatchNorm folded into the convolution before it (same function)."""
        fused = copy.deepcopy(self).eval()
        for block in fused.trunk:
            block.fuse()
        fused.trunk_conv, fused.trunk_bn = _fused(fused.trunk_conv, fused.trunk_bn), nn.Identity()
        fused.fused = True
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.entry(x)
        trunk = self.trunk_bn(self.trunk_conv(self.trunk(features)))
        return self.exit(self.upsampler(features + trunk))
