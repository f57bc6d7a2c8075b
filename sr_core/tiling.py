"""Tiled inference: run a model on overlapping windows so large images fit in bounded memory, without seams.

Each tile is cut with ``overlap`` pixels of real context on every side and only its centre is kept. When the
overlap is at least the model's receptive radius the result equals a whole-image forward (to float rounding).

:func:`iter_staged` sizes the windows from a memory budget instead, and gives each of a model's
:class:`~sr_core.models.base.InferenceStage` steps its own windows: the body (cheap per pixel, wide receptive
field) runs on one large window, or, when the image needs more than one and the body can stream, over bands of
rows with no overlap recomputed (:mod:`sr_core.rowstream`), within column panels on wide images so the rows carried
between bands stay bounded; the upsampler (memory-heavy, narrow receptive field) streams over the body's output
rows in narrow column strips that stay in cache, or, when it cannot stream, runs on small tiles cut from the
body's output.
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
TAIL_STRIP_COLUMNS = 256
"""Input columns kept per strip when the tail streams: the strip's rows then stay in cache (measured at 1024x1024
x4: the tail at 3.1 us per input pixel in 256-column strips, 3.3-3.5 in 512-1024 columns, 4.0 in budget-sized
tiles once their overlap is counted)."""
TAIL_BAND_ROWS = 16
"""Most input rows per band of a streamed tail (fewer when the budget says so)."""
STREAM_PANEL_COLUMNS = 1024
"""Most kept input columns a streamed body runs on at once on cache-sized devices: wider images stream in column
panels with the body's and tail's receptive radius of overlap, so the rows carried between bands (about 13 KB per
input column for SRResNet x4) and with them the working memory stop growing with the width (measured at 2048x2048
x4: 51 MB beyond the output instead of 74, as at 1024x1024; the overlap costs 4% more time at 2048 columns)."""
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


def crop_window(x: torch.Tensor, t: Tile, top: int = 0, left: int = 0) -> torch.Tensor:
    """``t``'s window (with context) out of ``x``, whose first row and column are image row ``top``, column ``left``."""
    return x[:, :, t.y0 - t.pad_top - top : t.y1 + t.pad_bottom - top,
             t.x0 - t.pad_left - left : t.x1 + t.pad_right - left]  # fmt: skip


def kept_region(out: torch.Tensor, t: Tile, scale: int) -> torch.Tensor:
    """The part of a window's output (``scale`` x its input) that belongs to ``t`` itself, without the context."""
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
        yield t, kept_region(fn(crop_window(x, t)), t, scale)
        if progress is not None:
            progress(i + 1, len(tiles))


def _tail_budget(budget: int, cache_sized: bool) -> int:
    return min(budget // 4, TAIL_WINDOW_BYTES) if cache_sized else budget // 4


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


def _stream_rows(stages: Sequence[InferenceStage], height: int, width: int, budget: int, element_size: int,
                 fresh_allocation: int | None = None, cache_sized: bool = True) -> int:  # fmt: skip
    """Input rows per band for a streaming body, or 0 for windows: when the image fits one body window (no overlap
    to save) whose feature maps stay under ``fresh_allocation`` bytes (the size from which the allocator hands out
    fresh, page-faulted memory every time; measured with glibc's defaults at 512x512 x4: 8.5 us per input pixel in
    one window, 7.0 streamed), or when the budget holds fewer than :data:`MIN_STREAM_ROWS` full-width rows."""
    body = stages[0]
    if len(stages) != 2 or body.stream is None or body.scale != 1:
        return 0
    body_budget = (budget - _tail_budget(budget, cache_sized)) / element_size
    fits = height * width * body.elements_per_pixel <= body_budget
    map_bytes = height * width * body.map_elements_per_pixel * element_size
    if fits and (fresh_allocation is None or map_bytes < fresh_allocation):
        return 0
    band_width = max(fed[1] - fed[0] for _, fed in _panels(stages, width, cache_sized))
    rows = int((body_budget / band_width - body.stream_state_per_column) // body.stream_elements_per_pixel)
    return max(MIN_STREAM_ROWS, min(rows, STREAM_BAND_PIXELS // band_width)) if rows >= MIN_STREAM_ROWS else 0


def _panels(stages: Sequence[InferenceStage], width: int,
            cache_sized: bool) -> list[tuple[tuple[int, int], tuple[int, int]]]:  # fmt: skip
    """(kept columns, fed columns) of the panels a streamed body runs on: near-equal panels of at most
    :data:`STREAM_PANEL_COLUMNS` kept columns on cache-sized devices with a streaming tail (one panel otherwise),
    each fed with the body's and tail's receptive radius of columns of context wherever the image continues."""
    body, tail = stages
    count = math.ceil(width / STREAM_PANEL_COLUMNS) if cache_sized and tail.stream is not None else 1
    kept_width, context = _even_split(width, count), body.radius + tail.radius
    return [((k0, min(k0 + kept_width, width)), (max(0, k0 - context), min(width, k0 + kept_width + context)))
            for k0 in range(0, width, kept_width)]  # fmt: skip


class _StreamedTail:
    """The tail streamed over rows of features in column strips, :data:`TAIL_STRIP_COLUMNS` wide plus
    ``tail.radius`` columns of context each side: no row is computed twice, and each strip's bands stay in cache.
    Not ``cache_sized`` (GPUs): one strip, in bands as tall as ``budget`` allows.

    Fed feature rows span image columns ``columns`` (left, right) and start at image row ``first_row``; outputs are
    yielded for image rows ``rows`` (top, bottom) and columns ``kept`` (left, right), which the features must cover
    with ``tail.radius`` pixels of context wherever the image continues.
    """

    def __init__(self, tail: InferenceStage, columns: tuple[int, int], kept: tuple[int, int], first_row: int,
                 rows: tuple[int, int], budget: int, element_size: int, cache_sized: bool) -> None:  # fmt: skip
        left, right = kept
        strip_columns = TAIL_STRIP_COLUMNS if cache_sized else right - left
        width = _even_split(right - left, math.ceil((right - left) / strip_columns))
        self.strips = []  # (kept left, kept right, first fed column, end fed column, streamer)
        for x0 in range(left, right, width):
            x1 = min(x0 + width, right)
            before, after = _window(x0, x1, columns[0], columns[1], width, tail.radius)
            self.strips.append((x0, x1, x0 - before - columns[0], x1 + after - columns[0], tail.stream()))
        window = min(columns[1] - columns[0], width + 2 * tail.radius)
        per_row = window * tail.stream_elements_per_pixel * element_size
        fitting = max(1, budget // per_row)
        self.band_rows = min(TAIL_BAND_ROWS, fitting) if cache_sized else fitting
        self.next_row = [first_row] * len(self.strips)
        self.rows, self.left, self.scale = rows, columns[0], tail.scale

    def feed(self, features: torch.Tensor, last: bool) -> Iterator[tuple[Tile, torch.Tensor]]:
        """(tile, output) for the kept rows these feature rows complete; ``last``: no more rows follow."""
        count = features.shape[2]
        if count == 0 and not last:
            return
        s = self.scale
        for top in range(0, max(count, 1), self.band_rows):
            band, band_last = features[:, :, top : top + self.band_rows], last and top + self.band_rows >= count
            for i, (x0, x1, lo, hi, stream) in enumerate(self.strips):
                out = stream(band[:, :, :, lo:hi], band_last)
                first = self.next_row[i]
                self.next_row[i] += out.shape[2] // s
                y0, y1 = max(first, self.rows[0]), min(self.next_row[i], self.rows[1])
                if y1 > y0:
                    offset = x0 - self.left - lo
                    yield (Tile(y0, x0, y1, x1, 0, 0, 0, 0),
                           out[:, :, (y0 - first) * s : (y1 - first) * s, offset * s : (offset + x1 - x0) * s])


def _run_tail_tiles(tail: InferenceStage, tiles: list[Tile], features: torch.Tensor, top: int, left: int,
                    prepare: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[tuple[Tile, torch.Tensor]]:
    """The tail on ``tiles`` cut from ``features``, whose first row and column are image row ``top``, column
    ``left``."""
    for t in tiles:
        yield t, kept_region(tail.forward(prepare(crop_window(features, t, top, left))), t, tail.scale)


def _tail_pieces(tail: InferenceStage, features: torch.Tensor, outer: Tile, height: int, width: int,
                 tail_budget: int, element_size: int, prepare: Callable[[torch.Tensor], torch.Tensor],
                 cache_sized: bool) -> Iterator[tuple[Tile, torch.Tensor]]:  # fmt: skip
    """The tail's output over ``outer``'s kept part, from the body's ``features`` of its whole window: streamed in
    strips when the tail streams, else on budget-sized tiles."""
    fy, fx = outer.y0 - outer.pad_top, outer.x0 - outer.pad_left  # where the features start in the image
    region = (outer.y0, outer.x0, outer.y1, outer.x1)
    if tail.stream is None:
        tiles = _tail_tiles(tail, region, height, width, element_size, tail_budget)
        yield from _run_tail_tiles(tail, tiles, features, fy, fx, prepare)
        return
    top, bottom = max(fy, outer.y0 - tail.radius), min(fy + features.shape[2], outer.y1 + tail.radius)
    strips = _StreamedTail(tail, (fx, fx + features.shape[3]), (outer.x0, outer.x1), top, (outer.y0, outer.y1),
                           tail_budget, element_size, cache_sized)  # fmt: skip
    yield from strips.feed(features[:, :, top - fy : bottom - fy], True)


def _iter_streamed(
    stages: Sequence[InferenceStage],
    x: torch.Tensor,
    rows: int,
    tail_budget: int,
    element_size: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    cache_sized: bool,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """The body streamed over bands of ``rows`` input rows, its output rows fed on to the tail as they complete:
    when the tail streams, both in strips within column panels (see :func:`_panels`), else on tiles of each
    finished stretch of rows (with ``tail.radius`` rows of context held over from the stretch before)."""
    body, tail = stages
    _, _, height, width = x.shape
    if tail.stream is not None:
        for kept, (c0, c1) in _panels(stages, width, cache_sized):
            streamer = body.stream()
            strips = _StreamedTail(tail, (c0, c1), kept, 0, (0, height), tail_budget, element_size, cache_sized)
            for top in range(0, height, rows):
                last = top + rows >= height
                yield from strips.feed(streamer(prepare(x[:, :, top : top + rows, c0:c1]), last), last)
        return
    streamer = body.stream()
    bands = ((prepare(x[:, :, top : top + rows]), top + rows >= height) for top in range(0, height, rows))
    held, held_top, produced, done = None, 0, 0, 0  # held: feature rows [held_top, produced); done: rows output
    for band, last in bands:
        chunk = streamer(band, last)
        held = chunk if held is None else stack_rows([held, chunk])
        produced += chunk.shape[2]
        end = height if produced >= height else max(done, produced - tail.radius)
        if end > done:
            tiles = _tail_tiles(tail, (done, 0, end, width), height, width, element_size, tail_budget)
            yield from _run_tail_tiles(tail, tiles, held, held_top, 0, prepare)
            keep_from = max(0, end - tail.radius)
            held, held_top, done = stack_rows([held[:, :, keep_from - held_top :]]), keep_from, end
    if done < height:
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
    cache_sized: bool = True,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """Like :func:`iter_tiled` for a model given as stages, with windows sized to ``budget`` bytes of activations
    (``element_size`` bytes per value). ``prepare`` puts each window on the model's device, dtype and layout;
    ``fresh_allocation``: see :func:`_stream_rows` (``devices.fresh_allocation_size``); ``cache_sized``: the tail
    runs on cache-sized pieces (``devices.cache_sized_windows``).

    One stage runs as plain tiles (``progress`` per tile); two (a body at the input's resolution, then a tail) as
    described in the module docstring, with ``progress`` called per piece as (input pixels done, input pixels). The
    output equals the whole-image forward.
    """
    _, _, height, width = x.shape
    if len(stages) == 1:
        (only,) = stages
        tile = plan_for_budget(height, width, only.radius, only.elements_per_pixel * element_size, budget)
        yield from iter_tiled(lambda w: only.forward(prepare(w)), x, only.scale, tile, only.radius, progress)
        return
    if len(stages) != 2 or stages[0].scale != 1:
        raise ValueError("iter_staged runs one stage, or a body at the input's resolution followed by a tail")
    rows = _stream_rows(stages, height, width, budget, element_size, fresh_allocation, cache_sized)
    tail_budget = _tail_budget(budget, cache_sized)
    pieces = (_iter_streamed(stages, x, rows, tail_budget, element_size, prepare, cache_sized) if rows
              else _iter_windows(stages, x, budget, tail_budget, element_size, prepare, cache_sized))  # fmt: skip
    done = 0
    for t, piece in pieces:
        yield t, piece
        done += (t.y1 - t.y0) * (t.x1 - t.x0)
        if progress is not None:
            progress(done, height * width)


def _iter_windows(stages: Sequence[InferenceStage], x: torch.Tensor, budget: int, tail_budget: int,
                  element_size: int, prepare: Callable[[torch.Tensor], torch.Tensor],
                  cache_sized: bool) -> Iterator[tuple[Tile, torch.Tensor]]:  # fmt: skip
    """The body on budget-sized windows, the tail over each window's kept part."""
    body, tail = stages
    _, _, height, width = x.shape
    body_tile = plan_for_budget(height, width, body.radius + tail.radius, body.elements_per_pixel * element_size,
                                budget - tail_budget)  # fmt: skip
    for outer in plan_tiles(height, width, body_tile, body.radius + tail.radius):
        features = body.forward(prepare(crop_window(x, outer)))
        yield from _tail_pieces(tail, features, outer, height, width, tail_budget, element_size, prepare, cache_sized)
        del features
