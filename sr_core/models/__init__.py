"""Neural network architectures and their persistence."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from ..errors import WeightsError
from .discriminator import Discriminator, DiscriminatorConfig
from .pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin
from .srresnet import SRResNet, SRResNetConfig

ARCHITECTURES: dict[str, type[PretrainedMixin]] = {"SRResNet": SRResNet, "Discriminator": Discriminator}


def build_model(config: dict) -> nn.Module:
    """Instantiate the architecture a config dict names (untrained)."""
    arch = config.get("architecture")
    if arch not in ARCHITECTURES:
        raise WeightsError(f"Unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch].from_config_dict(config)  # type: ignore[return-value]


def load_pretrained(name_or_path: str | os.PathLike, **kwargs) -> nn.Module:
    """Load any sr_core model from a save_pretrained() folder or hub id, choosing the class from config.json."""
    path = Path(name_or_path)
    arch = "SRResNet"
    if (path / CONFIG_NAME).is_file():
        try:
            arch = json.loads((path / CONFIG_NAME).read_text()).get("architecture", arch)
        except (OSError, json.JSONDecodeError) as exc:
            raise WeightsError(f"Cannot read {path / CONFIG_NAME}: {exc}") from exc
    if arch not in ARCHITECTURES:
        raise WeightsError(f"Unknown architecture {arch!r} in {name_or_path}")
    return ARCHITECTURES[arch].from_pretrained(name_or_path, **kwargs)  # type: ignore[return-value]


__all__ = [
    "ARCHITECTURES",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Discriminator",
    "DiscriminatorConfig",
    "PretrainedMixin",
    "SRResNet",
    "SRResNetConfig",
    "build_model",
    "load_pretrained",
]
