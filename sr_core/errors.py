"""Exception types raised by sr_core; every user-facing failure is one of these, with a readable message."""

from __future__ import annotations


class SRError(Exception):
    """Base class of every error sr_core raises on purpose."""


class ImageLoadError(SRError):
    """An input could not be read as an image (not an image, empty, truncated, unsupported mode)."""


class ImageTooLargeError(ImageLoadError):
    """An image exceeds the configured pixel limit, or looks like a decompression bomb."""


class UnknownMethodError(SRError):
    """The requested upscaling method is not registered or its weights are unavailable."""


class UnsupportedScaleError(SRError):
    """The requested scale is not supported by the chosen method."""


class WeightsError(SRError):
    """Weights are missing, corrupt, do not match their config, or cannot be fetched."""


class OfflineError(SRError):
    """Something had to be downloaded but the network (hub, torchvision weights) is unreachable."""
