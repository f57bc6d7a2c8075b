"""SRResNet generator of the SRGAN paper (Ledig et al. 2017), for scales 2, 4 and 8."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .pretrained import PretrainedMixin


@dataclass
class SRResNetConfig:
    """Architecture hyper-parameters; stored as config.json beside the weights."""

    scale: int = 4
    num_blocks: int = 16
    channels: int = 64
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.scale not in (2, 4, 8):
            raise ValueError(f"SRResNet scale must be 2, 4 or 8, got {self.scale}")
        if self.num_blocks < 1 or self.channels < 1 or self.in_channels < 1:
            raise ValueError("SRResNet num_blocks, channels and in_channels must be positive")


class ResidualBlock(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleStage(nn.Module):
    """conv to 4x channels, pixel shuffle x2, PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SRResNet(PretrainedMixin, nn.Module):
    """SRResNet: maps an RGB image in [0, 1] (N, C, h, w) to (N, C, h*scale, w*scale), linear output.

    Parameter names (``entry``, ``trunk``, ``trunk_conv``...) are chosen so that state-dict sniffers such as
    spandrel cannot mistake this model for another architecture.
    """

    config_class = SRResNetConfig
    architecture = "SRResNet"

    def __init__(self, config: SRResNetConfig | None = None, **kwargs: int) -> None:
        super().__init__()
        self.config = config if config is not None else SRResNetConfig(**kwargs)
        c = self.config
        self.entry = nn.Sequential(nn.Conv2d(c.in_channels, c.channels, 9, padding=4), nn.PReLU(c.channels))
        self.trunk = nn.Sequential(*(ResidualBlock(c.channels) for _ in range(c.num_blocks)))
        self.trunk_conv = nn.Conv2d(c.channels, c.channels, 3, padding=1)
        self.trunk_bn = nn.BatchNorm2d(c.channels)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.entry(x)
        trunk = self.trunk_bn(self.trunk_conv(self.trunk(features)))
        return self.exit(self.upsampler(features + trunk))
