"""SR Studio's super-resolution library: models, losses, classical upscalers, metrics, I/O and tiled inference.

Start with ``available_methods()`` and ``upscale(image, method=..., scale=...)``; ``upscale_by(image, method=...,
outscale=3.5)`` reaches any factor from 1 to 8. A method is a registered name, a ``save_pretrained()`` folder or a
Hugging Face Hub id ``user/name`` (fetched once into the Hugging Face cache, then offline).
"""

from __future__ import annotations

from .devices import resolve_device, resolve_precision
from .errors import (
    ImageLoadError,
    ImageTooLargeError,
    OfflineError,
    SRError,
    UnknownMethodError,
    UnsupportedScaleError,
    WeightsError,
)
from .io import load_image, save_image
from .outscale import upscale_by
from .pipeline import upscale
from .registry import MethodInfo, available_methods, get_method

__version__ = "0.1.0"

__all__ = [
    "ImageLoadError",
    "ImageTooLargeError",
    "MethodInfo",
    "OfflineError",
    "SRError",
    "UnknownMethodError",
    "UnsupportedScaleError",
    "WeightsError",
    "__version__",
    "available_methods",
    "get_method",
    "load_image",
    "resolve_device",
    "resolve_precision",
    "save_image",
    "upscale",
    "upscale_by",
]
