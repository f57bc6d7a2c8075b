"""Tiled inference: run a model on overlapping windows so large images fit in bounded memory, without seams.

Each tile is cut with ``overlap`` pixels of real context on every side and only its centre is kept. When the
overlap is at least the model's receptive radius the result equals a whole-image forward (to float rounding).

:func:`iter_staged` sizes the windows from a memory budget instead, and gives each of a model's
:class:`~sr_core.models.base.InferenceStage` steps its own windows: the body (cheap per pixel, wide receptive
field) runs on one large window, or, when the image needs more than one and the body can stream, over bands of
rows with no overlap recomputed (:mod:`sr_core.rowstream`); the upsampler (memory-heavy, narrow receptive field) on
small cache-friendly tiles cut from the body's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .progress import ProgressCallback
from .rowstream import stack_rows

if TYPE_CHECKING:
    from .models.base import InferenceStage

MIN_PLANNED_TILE = 16
"""No budget plans tiles smaller than this (per side): below it, overlap would dominate the work."""
TAIL_WINDOW_BYTES = 32 << 20
"""Working memory for one window of the last stage: small enough to stay in cache, large enough to amortise."""
MIN_STREAM_ROWS = 16
"""Fewest input rows per band when a body streams (see :func:`_stream_rows`); below it, windows are used."""
STREAM_BAND_PIXELS = 32 * 1024
"""Input pixels per streamed band when the budget allows more: a band's activations then stay in cache (measured
at 1024x1024 x4: 3.0 us per pixel for the body at 32 rows, 3.4 at 64, 4.5 at 128)."""
TALL_WINDOW_PENALTY = 0.25
"""Extra cost per doubling of a window's height over its width (see :func:`_shape_cost`)."""


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


def _window(start: int, end: int, lo: int, hi: int, tile_size: int, overlap: int) -> tuple[int, int]:
    """Context before and after [start, end) within [lo, hi): ``overlap`` each side, shifted inwards at the bounds
    so every window has the same length (one shape for all tiles keeps oneDNN/cuDNN from building a kernel per
    shape)."""
    length = min(hi - lo, tile_size + 2 * overlap)
    first = max(lo, min(start - overlap, hi - length))
    return start - first, first + length - end


def _plan(
    region: tuple[int, int, int, int], bounds: tuple[int, int, int, int], tile: tuple[int, int], overlap: int
) -> list[Tile]:
    """Tiles over ``region`` (y0, x0, y1, x1) whose context windows stay inside ``bounds`` (same layout)."""
    ry0, rx0, ry1, rx1 = region
    by0, bx0, by1, bx1 = bounds
    tiles = []
    for y0 in range(ry0, ry1, tile[0]):
        for x0 in range(rx0, rx1, tile[1]):
            y1, x1 = min(y0 + tile[0], ry1), min(x0 + tile[1], rx1)
            top, bottom = _window(y0, y1, by0, by1, tile[0], overlap)
            left, right = _window(x0, x1, bx0, bx1, tile[1], overlap)
            tiles.append(Tile(y0, x0, y1, x1, top, left, bottom, right))
    return tiles


def plan_tiles(height: int, width: int, tile_size: int | tuple[int, int], overlap: int) -> list[Tile]:
    """Split an HxW image into tiles of ``tile_size`` (a side, or (height, width); last row/column smaller),
    each with at least ``overlap`` pixels of context wherever the image continues."""
    tile = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    if min(tile) < 1:
        raise ValueError(f"tile size must be positive, got {tile_size}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    return _plan((0, 0, height, width), (0, 0, height, width), (tile[0], tile[1]), overlap)


def _even_split(length: int, count: int) -> int:
    """The tile length that cuts ``length`` into ``count`` near-equal parts."""
    return math.ceil(length / count)


def _shape_cost(height: int, width: int) -> float:
    """Relative cost per pixel of a window shape: channels-last convolutions run along rows, so windows taller than
    wide are slower per pixel (measured: 1024x287 about 1.4x a 287x1024 one); +25% per doubling of height/width."""
    return 1.0 + TALL_WINDOW_PENALTY * max(0.0, math.log2(height / width))


def plan_for_budget(height: int, width: int, overlap: int, bytes_per_pixel: float, budget: int) -> tuple[int, int]:
    """(tile height, tile width) for an HxW input whose windows (tile plus ``overlap`` context) each fit ``budget``
    bytes at ``bytes_per_pixel``, chosen to compute the fewest window pixels in all (tall windows counted dearer,
    see :func:`_shape_cost`); the whole image when it fits.

    A budget too small for any window still runs, in tiles of :data:`MIN_PLANNED_TILE` pixels.
    """
    smallest = (min(height, MIN_PLANNED_TILE), min(width, MIN_PLANNED_TILE))
    max_area = max(1.0, budget / bytes_per_pixel)
    if height * width <= max_area:
        return height, width
    best: tuple[float, tuple[int, int]] | None = None
    for rows in range(1, math.ceil(height / smallest[0]) + 1):
        tile_h = _even_split(height, rows)
        window_h = min(height, tile_h + 2 * overlap)
        if best is not None and rows * window_h * width >= best[0]:
            break  # even one full-width column per row costs more from here on
        max_window_w = int(max_area // window_h)
        tile_w = width if max_window_w >= width else max_window_w - 2 * overlap
        if tile_w >= smallest[1]:
            tile_w = _even_split(width, math.ceil(width / tile_w))
            window_w = min(width, tile_w + 2 * overlap)
            cost = rows * math.ceil(width / tile_w) * window_h * window_w * _shape_cost(window_h, window_w)
            if best is None or cost < best[0]:
                best = (cost, (tile_h, tile_w))
    return best[1] if best is not None else smallest


def _crop(x: torch.Tensor, t: Tile, top: int = 0, left: int = 0) -> torch.Tensor:
    """``t``'s window (with context) out of ``x``, whose first row and column are image row ``top``, column ``left``."""
    return x[:, :, t.y0 - t.pad_top - top : t.y1 + t.pad_bottom - top,
             t.x0 - t.pad_left - left : t.x1 + t.pad_right - left]  # fmt: skip


def _kept(out: torch.Tensor, t: Tile, scale: int) -> torch.Tensor:
    top, left = t.pad_top * scale, t.pad_left * scale
    return out[:, :, top : top + (t.y1 - t.y0) * scale, left : left + (t.x1 - t.x0) * scale]


def iter_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile_size: int | tuple[int, int],
    overlap: int,
    progress: ProgressCallback | None = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Yield (tile, output for the tile's kept region) for a (1, C, H, W) input, calling progress per tile."""
    _, _, height, width = x.shape
    tiles = plan_tiles(height, width, tile_size, overlap)
    for i, t in enumerate(tiles):
        yield t, _kept(fn(_crop(x, t)), t, scale)
        if progress is not None:
            progress(i + 1, len(tiles))


def _tail_budget(budget: int) -> int:
    return min(budget // 4, TAIL_WINDOW_BYTES)


def _tail_tiles(tail: InferenceStage, region: tuple[int, int, int, int], height: int, width: int, element_size: int,
                tail_budget: int) -> list[Tile]:  # fmt: skip
    """Tail tiles over ``region`` (y0, x0, y1, x1) of an HxW image, drawing on the body's output within tail.radius
    of it (all of it exact there)."""
    y0, x0, y1, x1 = region
    r = tail.radius
    bounds = (max(0, y0 - r), max(0, x0 - r), min(height, y1 + r), min(width, x1 + r))
    tile = plan_for_budget(bounds[2] - bounds[0], bounds[3] - bounds[1], r, tail.elements_per_pixel * element_size,
                           tail_budget)  # fmt: skip
    return _plan(region, bounds, tile, r)


def _staged_plan(
    stages: Sequence[InferenceStage], height: int, width: int, budget: int, element_size: int
) -> list[tuple[Tile, list[Tile]]]:
    """Body windows over the image, each with the tail tiles (in image coordinates) that cover its kept part."""
    body, tail = stages
    tail_budget = _tail_budget(budget)
    context = body.radius + tail.radius
    body_tile = plan_for_budget(height, width, context, body.elements_per_pixel * element_size, budget - tail_budget)
    return [(outer, _tail_tiles(tail, (outer.y0, outer.x0, outer.y1, outer.x1), height, width, element_size,
                                tail_budget))
            for outer in plan_tiles(height, width, body_tile, context)]  # fmt: skip


def _stream_rows(stages: Sequence[InferenceStage], height: int, width: int, budget: int, element_size: int,
                 fresh_allocation: int | None = None) -> int:  # fmt: skip
    """Input rows per band for a streaming body, or 0 for windows: when the image fits one body window (no overlap
    to save) whose feature maps stay under ``fresh_allocation`` bytes (the size from which the allocator hands out
    fresh, page-faulted memory every time; measured with glibc's defaults at 512x512 x4: 8.5 us per input pixel in
    one window, 7.0 streamed), or when the budget holds fewer than :data:`MIN_STREAM_ROWS` full-width rows."""
    body = stages[0]
    if len(stages) != 2 or body.stream is None or body.scale != 1:
        return 0
    body_budget = (budget - _tail_budget(budget)) / element_size
    fits = height * width * body.elements_per_pixel <= body_budget
    map_bytes = height * width * body.map_elements_per_pixel * element_size
    if fits and (fresh_allocation is None or map_bytes < fresh_allocation):
        return 0
    rows = int((body_budget / width - body.stream_state_per_column) // body.stream_elements_per_pixel)
    return max(MIN_STREAM_ROWS, min(rows, STREAM_BAND_PIXELS // width)) if rows >= MIN_STREAM_ROWS else 0


def _stream_plan(stages: Sequence[InferenceStage], height: int, width: int, rows: int, tail_budget: int,
                 element_size: int) -> list[list[Tile]]:  # fmt: skip
    """Tail tiles for each stretch of feature rows that is complete (tail context included) after a band: the
    streamed body's output lags its input by its radius."""
    body, tail = stages
    plan, done = [], 0
    for top in range(0, height, rows):
        produced = height if top + rows >= height else max(0, top + rows - body.radius)
        end = height if produced >= height else produced - tail.radius
        if end > done:
            plan.append(_tail_tiles(tail, (done, 0, end, width), height, width, element_size, tail_budget))
            done = end
    return plan


def _iter_streamed(
    stages: Sequence[InferenceStage],
    x: torch.Tensor,
    rows: int,
    tail_budget: int,
    element_size: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    progress: ProgressCallback | None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """The body streamed over bands of ``rows`` input rows; the tail on tiles of each stretch of finished feature
    rows, with ``tail.radius`` rows of context held over from the stretch before."""
    body, tail = stages
    _, _, height, width = x.shape
    plan = _stream_plan(stages, height, width, rows, tail_budget, element_size)
    total, done = sum(len(stretch) for stretch in plan), 0
    bands = ((prepare(x[:, :, top : top + rows]), top + rows >= height) for top in range(0, height, rows))
    held, held_top, produced = None, 0, 0  # held: feature rows [held_top, produced)
    stretches = iter(plan)
    stretch = next(stretches, None)
    for chunk in body.stream(bands):
        held = chunk if held is None else stack_rows([held, chunk])
        produced += chunk.shape[2]
        while stretch is not None and min(height, stretch[-1].y1 + tail.radius) <= produced:
            for t in stretch:
                yield t, _kept(tail.forward(prepare(_crop(held, t, held_top))), t, tail.scale)
                done += 1
                if progress is not None:
                    progress(done, total)
            keep_from = max(0, stretch[-1].y1 - tail.radius)
            held, held_top = stack_rows([held[:, :, keep_from - held_top :]]), keep_from
            stretch = next(stretches, None)
    if stretch is not None:
        raise RuntimeError(f"the streamed body stopped at row {produced} of {height}")


def iter_staged(
    stages: Sequence[InferenceStage],
    x: torch.Tensor,
    *,
    budget: int,
    element_size: int,
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    progress: ProgressCallback | None = None,
    fresh_allocation: int | None = None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Like :func:`iter_tiled` for a model given as stages, with windows sized to ``budget`` bytes of activations
    (``element_size`` bytes per value). ``prepare`` puts each window on the model's device, dtype and layout;
    ``fresh_allocation``: see :func:`_stream_rows` (``devices.fresh_allocation_size``).

    One stage runs as plain tiles; two (a body at the input's resolution, then a tail) as described in the module
    docstring. The output equals the whole-image forward.
    """
    _, _, height, width = x.shape
    rows = _stream_rows(stages, height, width, budget, element_size, fresh_allocation)
    if rows:
        yield from _iter_streamed(stages, x, rows, _tail_budget(budget), element_size, prepare, progress)
        return
    if len(stages) == 1:
        (only,) = stages
        tile = plan_for_budget(height, width, only.radius, only.elements_per_pixel * element_size, budget)
        yield from iter_tiled(lambda w: only.forward(prepare(w)), x, only.scale, tile, only.radius, progress)
        return
    if len(stages) != 2 or stages[0].scale != 1:
        raise ValueError("iter_staged runs one stage, or a body at the input's resolution followed by a tail")
    tail = stages[1]
    plan = _staged_plan(stages, height, width, budget, element_size)
    total, done = sum(len(inner) for _, inner in plan), 0
    for outer, inner in plan:
        features = stages[0].forward(prepare(_crop(x, outer)))
        fy, fx = outer.y0 - outer.pad_top, outer.x0 - outer.pad_left  # where the features start in the image
        for t in inner:
            yield t, _kept(tail.forward(prepare(_crop(features, t, fy, fx))), t, tail.scale)
            done += 1
            if progress is not None:
                progress(done, total)
        del features
