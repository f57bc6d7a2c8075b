"""Values that the library, the command line and the app must agree on, each defined once."""

from __future__ import annotations

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".tga"}
)
"""File suffixes (lower case) taken as images when a folder is read: the formats Pillow decodes that photos come in."""

DEFAULT_MAX_PIXELS: int = 100_000_000
"""The library's pixel limit per image: any real photo passes, a decompression bomb is refused before decoding."""

APP_MAX_PIXELS: int = 4_000_000
"""The web app's limit per upload and per rating-study image: keeps a shared server quick for every visitor."""

FAST_PNG_COMPRESSION: int = 1
"""zlib level for PNGs written on a user's clock (``sr-upscale``'s default, the app's downloads): the fastest, as
OpenCV (and so Real-ESRGAN's script) writes, through sr_core.png on several threads; on a 1024x1024 SR output of a
photo about 7x faster than Pillow's default 6 at 1.6% more bytes."""
