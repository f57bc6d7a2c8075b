"""Tiled inference: run a model on overlapping tiles so large images fit in bounded memory, without seams.

Each tile is cut with ``overlap`` pixels of real context on every side and only its centre is kept. When the
overlap is at least the model's receptive radius the result equals a whole-image forward (to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .progress import ProgressCallback


@dataclass(frozen=True)
class Tile:
    """One tile: the input window to run (with context) and the part of it that is kept."""

    y0: int
    x0: int
    y1: int
    x1: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int


def _window(start: int, end: int, size: int, tile_size: int, overlap: int) -> tuple[int, int]:
    """Context before and after [start, end): ``overlap`` each side, shifted inwards at the image borders so every
    window has the same length (one shape for all tiles keeps oneDNN/cuDNN from building a kernel per shape)."""
    length = min(size, tile_size + 2 * overlap)
    first = max(0, min(start - overlap, size - length))
    return start - first, first + length - end


def plan_tiles(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Split an HxW image into tile_size squares (last row/column smaller), each with at least ``overlap`` pixels
    of context wherever the image continues."""
    if tile_size < 1:
        raise ValueError(f"tile size must be positive, got {tile_size}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    tiles = []
    for y0 in range(0, height, tile_size):
        for x0 in range(0, width, tile_size):
            y1, x1 = min(y0 + tile_size, height), min(x0 + tile_size, width)
            top, bottom = _window(y0, y1, height, tile_size, overlap)
            left, right = _window(x0, x1, width, tile_size, overlap)
            tiles.append(Tile(y0, x0, y1, x1, top, left, bottom, right))
    return tiles


def iter_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile_size: int,
    overlap: int,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Yield (tile, output for the tile's kept region) for a (1, C, H, W) input, calling progress per tile."""
    _, _, height, width = x.shape
    tiles = plan_tiles(height, width, tile_size, overlap)
    for i, t in enumerate(tiles):
        window = x[:, :, t.y0 - t.pad_top : t.y1 + t.pad_bottom, t.x0 - t.pad_left : t.x1 + t.pad_right]
        out = fn(window)
        h, w = (t.y1 - t.y0) * scale, (t.x1 - t.x0) * scale
        top, left = t.pad_top * scale, t.pad_left * scale
        yield t, out[:, :, top : top + h, left : left + w]
        if progress is not None:
            progress(i + 1, len(tiles))


def tiled_forward(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile_size: int,
    overlap: int,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Whole output (1, C_out, H*scale, W*scale) as float32 on CPU, assembled from tiles."""
    out: torch.Tensor | None = None
    for t, piece in iter_tiled(fn, x, scale, tile_size, overlap, progress):
        if out is None:
            out = torch.empty(
                (1, piece.shape[1], x.shape[2] * scale, x.shape[3] * scale), dtype=torch.float32
            )
        out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = piece.float().cpu()
    assert out is not None
    return out
