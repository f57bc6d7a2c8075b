"""Neural network architectures, their registry and their persistence (Hub mixin: config.json + safetensors + card).

Every module of this package is imported here, so an architecture registered with
:func:`register_architecture` in a new file of this folder is known to loading, the pipeline and the trainer.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import (
    ARCHITECTURES,
    HubModel,
    SRModel,
    build_model,
    generator_architectures,
    get_architecture,
    load_pretrained,
    register_architecture,
)
from .discriminator import Discriminator, DiscriminatorConfig
from .files import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, load_into, load_state_dict, model_folder, read_config
from .srresnet import SRResNet, SRResNetConfig

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ARCHITECTURES",
    "CARD_NAME",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Discriminator",
    "DiscriminatorConfig",
    "HubModel",
    "SRModel",
    "SRResNet",
    "SRResNetConfig",
    "build_model",
    "generator_architectures",
    "get_architecture",
    "load_into",
    "load_pretrained",
    "load_state_dict",
    "model_folder",
    "read_config",
    "register_architecture",
]
