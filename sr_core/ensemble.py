"""Geometric self-ensemble (Lim et al. 2017, "EDSR+"): the mean of a model's outputs over the 8 flips and
rotations of its input, each turned back. About +0.05 dB PSNR at x4 for 8x the compute.

The image runs in windows (the whole image when it fits the budget) with the model's receptive radius of context,
so the result equals the whole-image ensemble and memory stays bounded at any image size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .progress import ProgressCallback
from .tiling import Tile, crop_window, kept_region, plan_for_budget, plan_tiles

DIHEDRAL: tuple[tuple[bool, int], ...] = tuple((flip, turns) for flip in (False, True) for turns in range(4))
"""The 8 symmetries of the square as (mirror left-right first, then this many 90-degree turns)."""
BUFFERS_PER_PIXEL = 2
"""Float output buffers per output pixel of a window: the running sum and one transform's output."""

WindowPass = Callable[[torch.Tensor], Iterator[tuple[Tile, torch.Tensor]]]
"""Runs the model over one (1, C, h, w) window: (tile, float output of its kept region) pieces."""


def transform(x: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    """``x`` (N, C, H, W) mirrored left-right when ``flip``, then turned ``turns`` x 90 degrees anticlockwise."""
    y = torch.flip(x, dims=(3,)) if flip else x
    return torch.rot90(y, turns, dims=(2, 3)).contiguous()


def untransform(y: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    """The inverse of :func:`transform`: turned back, then mirrored back."""
    z = torch.rot90(y, -turns, dims=(2, 3))
    return torch.flip(z, dims=(3,)) if flip else z


def window_budget_tile(height: int, width: int, radius: int, scale: int, channels: int, budget: int) -> tuple[int, int]:
    """(tile height, tile width) of input so that one window's float output buffers fit ``budget`` bytes."""
    bytes_per_pixel = BUFFERS_PER_PIXEL * channels * 4 * scale * scale
    return plan_for_budget(height, width, radius, bytes_per_pixel, budget)


def _assemble(pieces: Iterator[tuple[Tile, torch.Tensor]], shape: tuple[int, ...], scale: int) -> torch.Tensor:
    out = torch.empty(shape, dtype=torch.float32)
    for t, piece in pieces:
        out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = piece.float().cpu()
    return out


def ensemble_window(run: WindowPass, window: torch.Tensor, scale: int,
                    progress: Callable[[], None] | None = None) -> torch.Tensor:  # fmt: skip
    """The float32 (1, C, h*s, w*s) mean over :data:`DIHEDRAL` of the model's turned-back outputs for ``window``."""
    n, c, h, w = window.shape
    total = torch.zeros((n, c, h * scale, w * scale), dtype=torch.float32)
    for flip, turns in DIHEDRAL:
        moved = transform(window, flip, turns)
        out = _assemble(run(moved), (n, c, moved.shape[2] * scale, moved.shape[3] * scale), scale)
        total += untransform(out, flip, turns)
        del out
        if progress is not None:
            progress()
    return total.div_(len(DIHEDRAL))


def iter_self_ensemble(
    run: WindowPass,
    x: torch.Tensor,
    scale: int,
    radius: int,
    budget: int,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """(tile, float32 ensemble output of its kept region) over a (1, C, H, W) input (or anything sliced like one).

    Windows carry ``radius`` pixels of context (the model's receptive radius: the result then equals the
    whole-image ensemble) and are sized so their float buffers fit ``budget`` bytes; ``progress`` is called once
    per model pass as (passes done, passes).
    """
    _, channels, height, width = x.shape
    tile = window_budget_tile(height, width, radius, scale, channels, budget)
    tiles = plan_tiles(height, width, tile, radius)
    done = [0]
    passes = len(tiles) * len(DIHEDRAL)

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], passes)

    for t in tiles:
        yield t, kept_region(ensemble_window(run, crop_window(x, t), scale, step), t, scale)
