"""SRResNet generator of the SRGAN paper (Ledig et al. 2017), for scales 2, 4 and 8."""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..rowstream import RowConv, RowDelay, RowGroups
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


def channels_last_prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.prelu``; without autograd, a channels_last input goes through its (pixels, channels) view, one fast
    kernel for every shape (on some channels_last shapes ``F.prelu`` is ~40x slower: 64x16x1024 bf16, measured)."""
    needs_grad = x.requires_grad or weight.requires_grad
    if needs_grad or x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
        return F.prelu(x, weight)
    n, c, h, w = x.shape
    return F.prelu(x.permute(0, 2, 3, 1).reshape(-1, c), weight).view(n, h, w, c).permute(0, 3, 1, 2)


class InferencePReLU(nn.Module):
    """An ``nn.PReLU``'s weight applied with :func:`channels_last_prelu` (fused inference copies)."""

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_last_prelu(x, self.weight)


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


def _can_add_into(skip: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`conv_add_into` can run: oneDNN on CPU, no autograd, channels_last, the weight's dtype."""
    return (
        skip.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and not torch.is_grad_enabled()
        and skip.dtype == x.dtype == weight.dtype
        and skip.is_contiguous(memory_format=torch.channels_last)
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def conv_add_into(skip: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  padding: tuple[int, int]) -> torch.Tensor:  # fmt: skip
    """``skip + F.conv2d(x, weight, bias, padding=padding)`` (stride 1, ungrouped) as one oneDNN convolution with a
    sum post-op, written into ``skip`` (one pass over the output instead of two: the pair runs ~1.3x faster in bf16
    on CPU); ``conv(x).add_(skip)`` where it cannot. Use the returned tensor."""
    if not _can_add_into(skip, x, weight):
        return F.conv2d(x, weight, bias, padding=padding).add_(skip)
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        skip, x, weight, bias, list(padding), [1, 1], [1, 1], 1, "add", None, None, [], None
    )


class FusedResidualBlock(nn.Module):
    """Inference form of :class:`ResidualBlock` (BatchNorm folded, no autograd): the skip is summed into the
    block's input, which is overwritten (:func:`conv_add_into`)."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.conv1, self.act, self.conv2 = _fused(block.conv1, block.bn1), block.act, _fused(block.conv2, block.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_add_into(x, self.act(self.conv1(x)), self.conv2.weight, self.conv2.bias, self.conv2.padding)


class UpsampleStage(nn.Module):
    """conv to 4x channels, pixel shuffle x2, PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


def subpixel_weight(weight: torch.Tensor, r: int) -> torch.Tensor:
    """For an odd KxK same-padding kernel ``weight`` (out, in, K, K): the kernel on the pixel-unshuffled input
    (factor ``r``) whose pixel-shuffled output equals the convolution of the shuffled input; padding = (taps - 1) / 2.

    One output channel per (output channel, sub-pixel), ceil(K/2r)*2+1 taps. A gather from ``weight``, so gradients
    flow to the original parameters: training and inference both use it, with the parameters unchanged.
    """
    out_c, in_c, k, k2 = weight.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"subpixel_weight needs an odd square kernel, got {tuple(weight.shape)}")
    flat = torch.cat([weight.flatten(2), weight.new_zeros(out_c, in_c, 1)], dim=2)  # last entry: a zero tap
    picked = flat[:, :, _subpixel_index(k, r, weight.device)]  # (out, in, r*r, r*r, taps, taps)
    taps = picked.shape[-1]
    return picked.permute(0, 2, 1, 3, 4, 5).reshape(out_c * r * r, in_c * r * r, taps, taps)


@torch.compiler.disable  # numpy bookkeeping, not tensor work: torch.compile steps around it (a graph break)
def _subpixel_index(k: int, r: int, device: torch.device) -> torch.Tensor:
    """:func:`_subpixel_taps` as a fresh tensor (never a cached one, which made under inference_mode would break
    autograd later in the same process)."""
    return torch.tensor(_subpixel_taps(k, r), device=device)


@functools.cache
def _subpixel_taps(k: int, r: int) -> np.ndarray:
    """Index into a flattened KxK kernel (K*K = the zero tap) for each (out sub-pixel, in sub-pixel, tap, tap)."""
    p = k // 2
    half = (p + r - 1) // r  # unshuffled taps each side: offsets -half..half cover -p..p at full resolution
    taps = 2 * half + 1
    index = np.full((r * r, r * r, taps, taps), k * k, dtype=np.int64)
    for q, s, a, b in itertools.product(range(r), repeat=4):  # output sub-pixel (q, s), input sub-pixel (a, b)
        for m, n in itertools.product(range(-half, half + 1), repeat=2):
            dy, dx = r * m + a - q, r * n + b - s
            if abs(dy) <= p and abs(dx) <= p:
                index[q * r + s, a * r + b, m + half, n + half] = (dy + p) * k + dx + p
    index.setflags(write=False)
    return index


def subpixel_tail(stage: UpsampleStage, exit_conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``exit_conv(stage(x))`` computed before the stage's pixel shuffle: PReLU commutes with the shuffle (weights
    repeated per sub-pixel) and the output convolution becomes :func:`subpixel_weight`'s, so only the 3-channel
    result is shuffled, never the 64-channel full-resolution features. Same function and parameters; on CPU the
    exit runs ~2.4x faster and the largest pixel shuffle disappears."""
    r = stage.shuffle.upscale_factor
    y = channels_last_prelu(stage.conv(x), stage.act.weight.repeat_interleave(r * r))
    weight = subpixel_weight(exit_conv.weight, r)
    bias = exit_conv.bias.repeat_interleave(r * r) if exit_conv.bias is not None else None
    return F.pixel_shuffle(F.conv2d(y, weight, bias, padding=(weight.shape[-1] - 1) // 2), r)


class ResidualBlockStream:
    """A :class:`FusedResidualBlock` as a :data:`~sr_core.rowstream.RowStreamer`. The skip rows due are read from
    the first conv's stacked input, which carries the rows the branch lags by, and the second conv sums into them
    there (:func:`conv_add_into`): no skip rows are held or copied."""

    def __init__(self, block: FusedResidualBlock) -> None:
        self.conv1, self.conv2 = RowConv(block.conv1, block.act), RowConv(block.conv2)
        self.rows_in = self.rows_out = 0

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        rows = self.conv1.stack(band, last)
        branch = self.conv2.stack(self.conv1.run(rows), last)
        if not self.conv2.gives_rows(branch):
            self.rows_in += band.shape[2]
            return self.conv2.run(branch)
        due = branch.shape[2] - 2 * self.conv2.pad
        carried = rows.shape[2] - band.shape[2] - (self.conv1.pad if last else 0)
        top = carried - (self.rows_in - self.rows_out)  # where input row number rows_out sits in ``rows``
        self.rows_in, self.rows_out = self.rows_in + band.shape[2], self.rows_out + due
        skip = rows[:, :, top : top + due]
        return conv_add_into(skip, branch, self.conv2.weight, self.conv2.bias, (0, self.conv2.pad))


class FeatureStream:
    """:meth:`SRResNet.features` of a fused copy as a :data:`~sr_core.rowstream.RowStreamer`: every layer row-streamed,
    the long skip's entry conv recomputed on input rows held back until the trunk's output reaches them."""

    def __init__(self, model: SRResNet) -> None:
        if not model.fused:
            raise ValueError("stream_features needs a fused inference copy (fuse_for_inference())")
        self.entry = RowConv(model.entry[0], model.entry[1])
        self.blocks = [ResidualBlockStream(b) for b in model.trunk]
        self.trunk_conv = RowConv(model.trunk_conv)
        self.skip_input = RowDelay(2 * len(model.trunk) + 1)
        self.skip_entry = RowConv(model.entry[0], model.entry[1])

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        h = self.entry(band, last)
        for block in self.blocks:
            h = block(h, last)
        return self.trunk_conv(h, last).add_(self.skip_entry(self.skip_input(band, last), last))


class ReconstructStream:
    """:meth:`SRResNet.reconstruct` of a fused copy as a :data:`~sr_core.rowstream.RowStreamer`: each upsampling
    conv streamed at its own resolution, the output conv before the last shuffle (as in :func:`subpixel_tail`), and
    the output passed on in whole input rows (``scale`` output rows each)."""

    def __init__(self, model: SRResNet) -> None:
        if not model.fused:
            raise ValueError("ReconstructStream needs a fused inference copy (fuse_for_inference())")
        *stages, last = model.upsampler
        self.stages = [(RowConv(s.conv), s.shuffle.upscale_factor, s.act) for s in stages]
        self.r = r = last.shuffle.upscale_factor
        prelu = functools.partial(channels_last_prelu, weight=last.act.weight.repeat_interleave(r * r))
        self.last = RowConv(last.conv, prelu)
        bias = model.exit.bias.repeat_interleave(r * r) if model.exit.bias is not None else None
        self.exit = RowConv.of_weight(subpixel_weight(model.exit.weight, r), bias)
        self.groups = RowGroups(model.scale)

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        h = band
        for conv, r, act in self.stages:
            h = act(F.pixel_shuffle(conv(h, last), r).contiguous(memory_format=torch.channels_last))
        h = F.pixel_shuffle(self.exit(self.last(h, last), last), self.r)
        return self.groups(h.contiguous(memory_format=torch.channels_last), last)


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
        it, residual skips added in place, PReLUs applied through channels_last views (:class:`InferencePReLU`)."""
        fused = copy.deepcopy(self).eval()
        fused.trunk = nn.Sequential(*(FusedResidualBlock(block) for block in fused.trunk))
        fused.trunk_conv, fused.trunk_bn = _fused(fused.trunk_conv, fused.trunk_bn), nn.Identity()
        for parent in list(fused.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.PReLU):
                    setattr(parent, name, InferencePReLU(child))
        fused.fused = True
        return fused

    def inference_stages(self) -> tuple[InferenceStage, ...]:
        """Body (features and residual trunk at input resolution: most of the compute, a wide receptive field) and
        tail (upsampler and output conv: most of the memory, a receptive field of a few input pixels)."""
        c = self.config
        stages = int(math.log2(c.scale))
        body_radius = 4 + 2 * c.num_blocks + 1
        tail_radius = math.ceil(sum(1 / 2**i for i in range(stages)) + 4 / c.scale) + 1
        body_elements = (3 if self.fused else 4) * c.channels  # block input and two activations (+ entry output)
        tail_elements = 9 * c.channels * 4 ** (stages - 1) + 2 * c.in_channels * c.scale**2
        body_stream: dict = {}
        tail_stream: dict = {}
        if self.fused:  # rows carried between bands: 2 per 3x3 conv and per block skip, the entry's input rows
            carried = (2 * (2 * c.num_blocks + 1) + 2 * c.num_blocks) * c.channels + (body_radius + 8) * c.in_channels
            body_stream = {"stream": functools.partial(FeatureStream, self),
                           "stream_elements_per_pixel": 4 * c.channels, "stream_state_per_column": carried,
                           "map_elements_per_pixel": c.channels}  # fmt: skip
            # the last stage's input, its conv output and activation, the conv's stacked input: 10 maps of its size
            tail_stream = {"stream": functools.partial(ReconstructStream, self),
                           "stream_elements_per_pixel": 10 * c.channels * 4 ** (stages - 1)}  # fmt: skip
        return (
            InferenceStage(self.features, 1, body_radius, body_elements, **body_stream),
            InferenceStage(self.reconstruct, c.scale, tail_radius, tail_elements, **tail_stream),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input-resolution features: the entry convolution plus the residual trunk. A fused inference copy
        recomputes the cheap entry convolution (~2% of the body) for the long skip instead of holding its output
        through the trunk: three feature maps alive at once instead of four, so larger windows fit a budget."""
        if self.fused:
            h = self.entry(x)
            for block in self.trunk:  # not self.trunk(h): a call's argument lives until it returns
                h = block(h)
            h = self.trunk_conv(h)
            return h.add_(self.entry(x))
        features = self.entry(x)
        return features + self.trunk_bn(self.trunk_conv(self.trunk(features)))

    def stream_features(self, bands: Iterable[tuple[torch.Tensor, bool]]) -> Iterator[torch.Tensor]:
        """:meth:`features` of an image fed as (row band, is_last) pairs, yielded as consecutive row chunks, each row
        computed once (:mod:`sr_core.rowstream`); equal to the whole-image features. Fused inference copies only."""
        streamer = FeatureStream(self)
        for band, last in bands:
            h = streamer(band, last)
            if h.shape[2]:
                yield h

    def reconstruct(self, features: torch.Tensor) -> torch.Tensor:
        """The upscaled image from :meth:`features` (the output conv runs before the last shuffle: subpixel_tail)."""
        *stages, last = self.upsampler
        for stage in stages:
            features = stage(features)
        return subpixel_tail(last, self.exit, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(self.features(x))
