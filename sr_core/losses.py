"""Training losses: pixel (MSE/L1), VGG19 content, adversarial (vanilla, relativistic or hinge), discriminator
feature matching, and the artefact-map loss of LDL (Liang et al. 2022)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import OfflineError, WeightsError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_HELP = (
    "VGG19 ImageNet weights are needed for the content loss but could not be obtained ({reason}). "
    f"On a machine with network download {VGG19_URL}, copy it here and either pass its path "
    "(training config `vgg_weights: /path/to/"
    + VGG19_FILENAME
    + "`, or VGGContentLoss(weights=path)) or put it "
    "in $TORCH_HOME/hub/checkpoints/ (default ~/.cache/torch/hub/checkpoints/). To train without it set "
    "`content_weight: 0`."
)


class PixelLoss(nn.Module):
    """Mean squared or mean absolute error between SR and HR images."""

    def __init__(self, kind: str = "mse") -> None:
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"pixel loss must be 'mse' or 'l1', got {kind!r}")
        self.kind = kind

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(sr, hr) if self.kind == "mse" else F.l1_loss(sr, hr)


def _vgg_state_from_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"VGG19 weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is reported the same way
        raise WeightsError(f"Cannot read VGG19 weights from {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}


def load_vgg19_features(
    weights: str | os.PathLike | None = "imagenet", layer_index: int = 36
) -> nn.Sequential:
    """VGG19 ``features[:layer_index]`` with weights from torchvision ('imagenet'), a local file, or 'random'."""
    from torchvision.models import VGG19_Weights, vgg19

    if weights == "random":
        return vgg19(weights=None).features[:layer_index]
    features = vgg19(weights=None).features
    if weights in (None, "imagenet"):
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        cached = hub_dir / VGG19_FILENAME
        if cached.is_file():
            state = _vgg_state_from_file(cached)
        else:
            try:
                full = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
            except OSError as exc:
                raise OfflineError(OFFLINE_HELP.format(reason=exc)) from exc
            state = {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}
    else:
        state = _vgg_state_from_file(Path(weights))
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"VGG19 weights do not match torchvision's vgg19: {exc}") from exc
    return features[:layer_index]


class VGGContentLoss(nn.Module):
    """MSE between frozen VGG19 feature maps of SR and HR (inputs in [0, 1], ImageNet-normalised inside).

    ``layer_index=36`` keeps features up to the ReLU after conv5_4, the SRGAN paper's VGG54. ``feature_scale``
    multiplies the features before the MSE (the paper used 1/12.75).
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = "imagenet",
        layer_index: int = 36,
        feature_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.features = load_vgg19_features(weights, layer_index).eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.feature_scale = feature_scale
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGContentLoss:
        super().train(mode)
        self.features.eval()
        return self

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std) * self.feature_scale

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self._embed(hr)
        return F.mse_loss(self._embed(sr), target)


GAN_TYPES = ("vanilla", "relativistic", "hinge")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AdversarialLoss(nn.Module):
    """The adversarial objective of both players, on raw discriminator logits.

    ``vanilla``: binary cross-entropy, real -> 1 and fake -> 0 (the SRGAN paper). ``relativistic``: the relativistic
    average GAN of ESRGAN (Wang et al. 2018): each side's logits are judged against the other side's mean, and the
    generator's loss uses the real logits too, so it learns from real images as well as from fakes. ``hinge``:
    ``relu(1 - real) + relu(1 + fake)`` for the discriminator and ``-fake`` for the generator.
    """

    def __init__(self, kind: str = "vanilla") -> None:
        super().__init__()
        if kind not in GAN_TYPES:
            raise ValueError(f"GAN loss must be one of {GAN_TYPES}, got {kind!r}")
        self.kind = kind

    @property
    def needs_real_logits(self) -> bool:
        """Whether :meth:`generator_loss` needs the discriminator's logits on real images."""
        return self.kind == "relativistic"

    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real_logits, fake_logits = real_logits.float(), fake_logits.float()
        if self.kind == "hinge":
            return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        if self.kind == "relativistic":
            real_vs_fake = real_logits - fake_logits.mean()
            fake_vs_real = fake_logits - real_logits.mean()
            return (_bce(real_vs_fake, 1.0) + _bce(fake_vs_real, 0.0)) / 2
        return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)

    def generator_loss(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        fake_logits = fake_logits.float()
        if self.kind == "hinge":
            return -fake_logits.mean()
        if self.kind == "relativistic":
            if real_logits is None:
                raise ValueError("the relativistic generator loss needs the discriminator's logits on real images")
            real_logits = real_logits.detach().float()
            return (_bce(real_logits - fake_logits.mean(), 0.0) + _bce(fake_logits - real_logits.mean(), 1.0)) / 2
        return _bce(fake_logits, 1.0)

    def forward(self, fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator_loss(fake_logits, real_logits)


def local_variance(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Unbiased variance of each ``kernel`` x ``kernel`` neighbourhood of a (N, 1, H, W) map (reflect borders)."""
    pad = kernel // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, kernel, stride=1)
    mean_sq = F.avg_pool2d(padded * padded, kernel, stride=1)
    n = kernel * kernel
    return (mean_sq - mean * mean).clamp_min(0) * (n / (n - 1))


def artifact_map(sr: torch.Tensor, hr: torch.Tensor, sr_ema: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """LDL's refined artefact map (N, 1, H, W): where the residual |HR - SR| is locally noisy (its local variance,
    times the patch's residual variance to the 1/5) and worse than the EMA generator's there; zero elsewhere.

    Artefacts (halos, ringing, false stripes) are noisy, unstable residuals; realistic texture the EMA model also
    produces is left alone. Constant: no gradient flows through the map.
    """
    with torch.no_grad():
        residual = (hr - sr).abs().sum(1, keepdim=True).float()
        residual_ema = (hr - sr_ema).abs().sum(1, keepdim=True).float()
        patch_weight = residual.var(dim=(1, 2, 3), keepdim=True) ** 0.2
        weight = patch_weight * local_variance(residual, kernel)
        return weight.masked_fill(residual < residual_ema, 0.0)


def artifact_loss(sr: torch.Tensor, hr: torch.Tensor, sr_ema: torch.Tensor, kernel: int = 7) -> torch.Tensor:
    """L1 between SR and HR weighted by :func:`artifact_map`: pushes the generator off its artefacts only."""
    weight = artifact_map(sr, hr, sr_ema, kernel)
    return F.l1_loss(weight * sr.float(), weight * hr.float())


def periodic_pattern(x: torch.Tensor, period: int, region: int) -> torch.Tensor:
    """(N, C, period**2, H // region, W // region): the mean of each of the period x period pixel phases over each
    ``region`` x ``region`` block (a multiple of ``period``), less the block's mean: what repeats every ``period``
    pixels there. Texture that does not repeat at that period averages out."""
    if region % period or min(x.shape[-2:]) < region:
        raise ValueError(f"region {region} must be a multiple of the period {period} and fit the {tuple(x.shape[-2:])} "
                         "image")  # fmt: skip
    h, w = x.shape[-2] - x.shape[-2] % region, x.shape[-1] - x.shape[-1] % region
    phases = F.avg_pool2d(F.pixel_unshuffle(x[..., :h, :w].float(), period), region // period)
    phases = phases.unflatten(1, (x.shape[1], period * period))
    return phases - phases.mean(dim=2, keepdim=True)


GRID_REGION = 32
"""Pixels per side of the blocks :func:`grid_loss` compares: local enough for a grid in one part of a patch."""


def grid_loss(sr: torch.Tensor, hr: torch.Tensor, period: int, region: int = GRID_REGION) -> torch.Tensor:
    """L1 between the :func:`periodic_pattern` of SR and of HR: penalises a fixed grid of dots at the upsampler's
    period (what sub-pixel generators paint under an adversarial loss), and leaves texture that does not repeat
    at that period to the other losses."""
    return F.l1_loss(periodic_pattern(sr, period, region), periodic_pattern(hr, period, region).detach())


def feature_matching_loss(discriminator: nn.Module, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the discriminator's feature maps of SR and HR, averaged over its conv blocks.

    A learned perceptual loss (Wang et al. 2018, pix2pixHD) that needs no pretrained network: SR and HR go
    through the discriminator as one batch, so BatchNorm normalises both alike; HR features are constants.
    """
    maps = discriminator.feature_maps(torch.cat([sr, hr.detach()]))
    n = sr.shape[0]
    return torch.stack([F.l1_loss(m[:n].float(), m[n:].detach().float()) for m in maps]).mean()
