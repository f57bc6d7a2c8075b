"""SRResNet generator of the SRGAN paper (Ledig et al. 2017), for scales 2, 4 and 8."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .base import InferenceStage, SRModel, register_architecture

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


class FusedResidualBlock(nn.Module):
    """Inference form of :class:`ResidualBlock` (BatchNorm folded, skip added in place, no autograd)."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.conv1, self.act, self.conv2 = _fused(block.conv1, block.bn1), block.act, _fused(block.conv2, block.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x))).add_(x)


class UpsampleStage(nn.Module):
    """conv to 4x channels, pixel shuffle x2, PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class SubPixelExit(nn.Module):
    """The last upsampling stage and the output convolution, computed before the last pixel shuffle.

    PReLU commutes with the shuffle (its weights repeated per sub-pixel), and a KxK convolution on the shuffled
    image equals a convolution of about K/2 on the unshuffled one with one output channel per (colour, sub-pixel):
    so only the small 3-channel result is shuffled, never the 64-channel full-resolution features. Same function,
    about a third less time for the upsampler on CPU.
    """

    def __init__(self, stage: UpsampleStage, exit_conv: nn.Conv2d) -> None:
        super().__init__()
        r = stage.shuffle.upscale_factor
        self.conv = stage.conv
        w = stage.act.weight
        self.act = nn.PReLU(stage.conv.out_channels, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            self.act.weight.copy_(stage.act.weight.repeat_interleave(r * r))
        self.exit = subpixel_conv(exit_conv, r)
        self.shuffle = nn.PixelShuffle(r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.exit(self.act(self.conv(x))))


def subpixel_conv(conv: nn.Conv2d, r: int) -> nn.Conv2d:
    """The convolution on a pixel-unshuffled (factor ``r``) input whose pixel-shuffled output equals ``conv`` applied
    to the shuffled input (odd square kernel, stride 1, same padding)."""
    out_c, in_c, k, _ = conv.weight.shape
    if conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1) or conv.padding != (k // 2, k // 2):
        raise ValueError(f"subpixel_conv needs an odd square same-padding stride-1 convolution, got {conv}")
    p = k // 2
    half = (p + r - 1) // r  # unshuffled taps each side: offsets -half..half cover -p..p at full resolution
    taps = 2 * half + 1
    weight = conv.weight.new_zeros(out_c * r * r, in_c * r * r, taps, taps)
    for q in range(r):  # output sub-pixel row, column
        for s in range(r):
            for a in range(r):  # input sub-pixel row, column
                for b in range(r):
                    for m in range(-half, half + 1):
                        for n in range(-half, half + 1):
                            dy, dx = r * m + a - q, r * n + b - s
                            if abs(dy) <= p and abs(dx) <= p:
                                weight[q * r + s :: r * r, a * r + b :: r * r, m + half, n + half] = conv.weight[
                                    :, :, dy + p, dx + p
                                ]
    w = conv.weight
    folded = nn.Conv2d(in_c * r * r, out_c * r * r, taps, padding=half, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        folded.weight.copy_(weight)
        folded.bias.copy_(conv.bias.repeat_interleave(r * r))  # type: ignore[union-attr]
    return folded


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
        """An eval-mode copy computing the same function faster: every BatchNorm folded into the convolution before
        it, residual skips added in place, and the output convolution moved before the last pixel shuffle."""
        fused = copy.deepcopy(self).eval()
        fused.trunk = nn.Sequential(*(FusedResidualBlock(block) for block in fused.trunk))
        fused.trunk_conv, fused.trunk_bn = _fused(fused.trunk_conv, fused.trunk_bn), nn.Identity()
        *stages, last = fused.upsampler
        fused.upsampler = nn.Sequential(*stages, SubPixelExit(last, fused.exit))
        fused.exit = nn.Identity()  # type: ignore[assignment]
        fused.fused = True
        return fused

    def inference_stages(self) -> tuple[InferenceStage, ...]:
        """Body (features and residual trunk at input resolution: most of the compute, a wide receptive field) and
        tail (upsampler and output conv: most of the memory, a receptive field of a few input pixels)."""
        c = self.config
        stages = int(math.log2(c.scale))
        body_radius = 4 + 2 * c.num_blocks + 1
        tail_radius = math.ceil(sum(1 / 2**i for i in range(stages)) + 4 / c.scale) + 1
        body_elements = 4 * c.channels  # measured peak: 3.9 (features, block input, two activations)
        tail_elements = 9 * c.channels * 4 ** (stages - 1) + 2 * c.in_channels * c.scale**2
        return (
            InferenceStage(self.features, 1, body_radius, body_elements),
            InferenceStage(self.reconstruct, c.scale, tail_radius, tail_elements),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input-resolution features: the entry convolution plus the residual trunk."""
        features = self.entry(x)
        return features + self.trunk_bn(self.trunk_conv(self.trunk(features)))

    def reconstruct(self, features: torch.Tensor) -> torch.Tensor:
        """The upscaled image from :meth:`features`."""
        return self.exit(self.upsampler(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(self.features(x))
