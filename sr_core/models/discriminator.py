"""SRGAN discriminator (Ledig et al. 2017) with an adaptive pool, so any input of at least 32x32 works."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import HubModel, register_architecture

MIN_INPUT_SIZE = 32


@dataclass
class DiscriminatorConfig:
    """Width of the first layer (doubled every second conv, as in the paper), input channels, pool, head width;
    ``spectral_norm``: every conv and linear layer spectrally normalised and no BatchNorm (as Real-ESRGAN's
    discriminator), which bounds how sharply D can react to a pattern and so how hard it pushes G towards one."""

    in_channels: int
    channels: int
    pooled_size: int
    hidden: int
    spectral_norm: bool = False


def _normed(layer: nn.Module, spectral: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if spectral else layer


def _block(c_in: int, c_out: int, stride: int, batch_norm: bool, spectral: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [_normed(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), spectral)]
    if batch_norm and not spectral:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


@register_architecture("Discriminator")
class Discriminator(HubModel, tags=["srgan-discriminator"], paper_url="https://arxiv.org/abs/1609.04802"):
    """Eight 3x3 convs (BN from the second on, or spectral norm on all; LeakyReLU 0.2), dense head; returns logits
    of shape (N, 1).

    The paper's 96x96 input reaches the dense layer as 512x6x6; an adaptive average pool to 6x6 keeps that
    head for 96x96 and lets any input of 32x32 or more through. Not an upscaler, so an :class:`HubModel` without
    the generator contract of :class:`SRModel`: it saves, loads and publishes like the generators.
    """

    config_class = DiscriminatorConfig

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: int = 64,
        pooled_size: int = 6,
        hidden: int = 1024,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.config = c = DiscriminatorConfig(
            in_channels=in_channels, channels=channels, pooled_size=pooled_size, hidden=hidden,
            spectral_norm=spectral_norm,
        )  # fmt: skip
        widths = [
            c.channels,
            c.channels,
            2 * c.channels,
            2 * c.channels,
            4 * c.channels,
            4 * c.channels,
            8 * c.channels,
            8 * c.channels,
        ]
        layers: list[nn.Module] = []
        c_in = c.in_channels
        for i, width in enumerate(widths):
            layers += _block(c_in, width, stride=1 + i % 2, batch_norm=i > 0, spectral=c.spectral_norm)
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(c.pooled_size)
        self.head = nn.Sequential(
            nn.Flatten(),
            _normed(nn.Linear(widths[-1] * c.pooled_size**2, c.hidden), c.spectral_norm),
            nn.LeakyReLU(0.2, inplace=True),
            _normed(nn.Linear(c.hidden, 1), c.spectral_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < MIN_INPUT_SIZE or x.shape[-2] < MIN_INPUT_SIZE:
            raise ValueError(
                f"Discriminator needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got "
                f"{x.shape[-1]}x{x.shape[-2]}"
            )
        return self.head(self.pool(self.features(x)))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations after each of the eight conv blocks, for a feature-matching loss."""
        maps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(x)
        return maps
