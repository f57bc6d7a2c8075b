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
