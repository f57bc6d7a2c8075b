"""Exception types raised by sr_core; every user-facing failure is one of these, with a readable message."""

from __future__ import annotations


class SRError(Exception):
    """Base class of every error sr_core raises on purpose."""


class ImageLoadError(SRError):
    """An input could not be read as an image (not an image, empty, truncated, unsupported mode)."""


class ImageTooLargeError(ImageLoadError):
    """An image exceeds the configured pixel limit, or looks like a decompression bomb.

    ``width`` and ``height`` are the image's size where it is known, ``limit`` the pixel limit it broke (None: no
    limit, or not known), so that callers can word their own message without parsing this one.
    """

    def __init__(
        self, message: str = "", *, width: int | None = None, height: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.width = width
        self.height = height
        self.limit = limit


class UnknownMethodError(SRError):
    """The requested upscaling method is not registered or its weights are unavailable."""


class UnsupportedScaleError(SRError):
    """The requested scale is not supported by the chosen method."""


class WeightsError(SRError):
    """Weights are missing, corrupt, do not match their config, or cannot be fetched."""


class OfflineError(SRError):
    """Something had to be downloaded but the network (hub, torchvision weights) is unreachable."""
