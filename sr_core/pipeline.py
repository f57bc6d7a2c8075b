"""``upscale()``: the one entry point that runs any registered method on any supported image."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from .classical import upscale_array
from .devices import (
    MIN_MEMORY_BUDGET,
    cache_sized_windows,
    default_memory_budget,
    fresh_allocation_size,
    resolve_device,
    resolve_precision,
)
from .ensemble import iter_self_ensemble
from .errors import UnsupportedScaleError
from .inference import prepare_for_inference
from .io import DEFAULT_MAX_PIXELS, from_array, load_image, pixel_peak, to_array, to_pixels
from .models import SRModel
from .progress import ProgressCallback
from .registry import MethodInfo, ModelWeights, get_method, load_model
from .tiling import Tile, iter_staged, iter_tiled

logger = logging.getLogger(__name__)

MIN_TILE_SIZE = 32
ALPHA_STRIP_ROWS = 256
ALPHA_MARGIN = 4  # input rows of context per side: more than bicubic's support, so strips are exact
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _prepared(weights: ModelWeights, method: MethodInfo, scale: int, device: str, dtype: torch.dtype) -> SRModel:
    return prepare_for_inference(load_model(method, scale), torch.device(device), dtype)


@torch.inference_mode()
def iter_model_tiles(
    model: SRModel,
    x: torch.Tensor | ImageWindows,
    *,
    peak: float = 1.0,
    tile_size: int | None = None,
    overlap: int | None = None,
    memory_budget: int | None = None,
    progress: ProgressCallback | None = None,
    self_ensemble: bool = False,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """(tile, float32 output of its kept region) over a (1, 3, H, W) input for a prepared model.

    ``x`` holds floats in [0, 1], or integer pixels up to ``peak`` (converted window by window, so no float copy
    of a large image is ever made; an :class:`ImageWindows` reads them from the image window by window). With
    ``tile_size`` the whole forward runs on tiles of that size with ``overlap`` context (default: the receptive
    radius); without, windows follow the model's inference stages and ``memory_budget`` bytes (default: the
    device's, see :func:`~sr_core.devices.default_memory_budget`). ``self_ensemble`` averages the outputs over the
    8 flips and rotations of the input (:mod:`sr_core.ensemble`: 8x the time, about +0.05 dB).
    """
    param = next(model.parameters())
    budget = default_memory_budget(param.device) if memory_budget is None else memory_budget

    if self_ensemble:
        def one_pass(window: torch.Tensor) -> Iterator[tuple[Tile, torch.Tensor]]:
            return _model_pieces(model, window, peak, tile_size, overlap, budget, None)

        pieces = iter_self_ensemble(one_pass, x, model.scale, model.receptive_radius(), budget, progress)
    else:
        pieces = _model_pieces(model, x, peak, tile_size, overlap, budget, progress)
    for tile, piece in pieces:
        yield tile, piece.float()


def _model_pieces(
    model: SRModel,
    x: torch.Tensor | ImageWindows,
    peak: float,
    tile_size: int | None,
    overlap: int | None,
    budget: int,
    progress: ProgressCallback | None,
) -> Iterator[tuple[Tile, torch.Tensor]]:
    """One forward pass of :func:`iter_model_tiles` (explicit tiles, or the model's stages within ``budget``)."""
    param = next(model.parameters())

    def prepare(window: torch.Tensor) -> torch.Tensor:
        if not window.is_floating_point():
            window = window.to(torch.float32) / peak
        return window.to(device=param.device, dtype=param.dtype, memory_format=torch.channels_last)

    if tile_size is not None:
        radius = model.receptive_radius() if overlap is None else overlap
        return iter_tiled(lambda w: model(prepare(w)), x, model.scale, tile_size, radius, progress)
    return iter_staged(model.inference_stages(), x, budget=budget, element_size=param.element_size(),
                       prepare=prepare, progress=progress, fresh_allocation=fresh_allocation_size(param.device),
                       cache_sized=cache_sized_windows(param.device))  # fmt: skip


def _as_input(pixels: np.ndarray) -> torch.Tensor:
    """An HxWxC array as a (1, 3, H, W) tensor view (greyscale broadcast to three channels), no copy; read-only
    arrays (PIL's) are fine, the tensor is only read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    return x.expand(1, 3, *x.shape[2:]) if x.shape[1] == 1 else x


class ImageWindows:
    """A PIL image in a canonical mode, sliced like the (1, 3, H, W) integer tensor of its first ``channels``
    channels (greyscale broadcast to three): ``windows[:, :, rows, columns]`` reads only that window of pixels, so
    the model's input is never copied whole (at 2048x2048 a full copy would be 12 MB, 24 at its peak)."""

    def __init__(self, image: Image.Image, channels: int) -> None:
        self.image, self.channels = image, channels
        self.shape = torch.Size((1, 3, image.height, image.width))

    def __getitem__(self, key: tuple[slice, ...]) -> torch.Tensor:
        rows, columns = (*key[2:], slice(None), slice(None))[:2]
        y0, y1, _ = rows.indices(self.image.height)
        x0, x1, _ = columns.indices(self.image.width)
        if y1 <= y0 or x1 <= x0:
            dtype = torch.uint16 if self.image.mode == "I;16" else torch.uint8
            return torch.zeros(1, 3, max(0, y1 - y0), max(0, x1 - x0), dtype=dtype)
        return _as_input(to_pixels(self.image.crop((x0, y0, x1, y1)))[..., : self.channels])


def _as_rgb(piece: torch.Tensor) -> np.ndarray:
    return piece[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def model_forward_array(
    model: SRModel, rgb: np.ndarray, scale: int, *, progress: ProgressCallback | None = None, **tiling: Any
) -> np.ndarray:
    """Run a prepared model over an HxWx3 float array; returns (H*s)x(W*s)x3 float32 in [0, 1].

    ``tiling``: the keyword arguments of :func:`iter_model_tiles`. For small images (validation, tests); images
    of any size go through :func:`upscale`, which never holds a float copy of the output.
    """
    out = np.empty((rgb.shape[0] * scale, rgb.shape[1] * scale, 3), dtype=np.float32)
    for t, piece in iter_model_tiles(model, _as_input(np.asarray(rgb, np.float32)), progress=progress, **tiling):
        out[t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = _as_rgb(piece)
    return out


def _model_image(colour: ImageWindows, mode: str, model: SRModel, progress: ProgressCallback | None,
                 **tiling: Any) -> Image.Image:  # fmt: skip
    """The model's output for an image's colour channels (1 or 3) as a ``mode`` image, quantised tile by tile."""
    scale = model.scale
    grey = colour.channels == 1
    out = Image.new(mode, (colour.shape[3] * scale, colour.shape[2] * scale))
    pieces = iter_model_tiles(model, colour, peak=pixel_peak(mode), progress=progress, **tiling)
    for t, piece in pieces:
        rgb = _as_rgb(piece)
        out.paste(from_array(rgb @ GREY_WEIGHTS if grey else rgb, mode), (t.x0 * scale, t.y0 * scale))
    return out


def _run_model_method(
    colour: ImageWindows,
    mode: str,
    method: MethodInfo,
    scale: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    progress: ProgressCallback | None,
    tile_size: int | None,
    tile_overlap: int | None,
    memory_budget: int | None,
    self_ensemble: bool,
) -> Image.Image:
    """The model's output image; on a CUDA out-of-memory error, retried with half the tile size or budget."""
    model = _prepared(method.variants[scale], method, scale, str(device), dtype)
    budget = default_memory_budget(device) if memory_budget is None else memory_budget
    while True:
        try:
            return _model_image(colour, mode, model, progress, tile_size=tile_size, overlap=tile_overlap,
                                memory_budget=budget, self_ensemble=self_ensemble)  # fmt: skip
        except torch.cuda.OutOfMemoryError:
            if (tile_size or MIN_TILE_SIZE * 2) // 2 < MIN_TILE_SIZE or budget < MIN_MEMORY_BUDGET:
                raise
            torch.cuda.empty_cache()
            tile_size, budget = (tile_size // 2 if tile_size else None), budget // 2
            logger.warning("Out of GPU memory; retrying with %s", f"{tile_size}x{tile_size} tiles" if tile_size
                           else f"a {budget >> 20} MiB memory budget")  # fmt: skip


def _attach_alpha(colour: Image.Image, alpha: np.ndarray, scale: int) -> Image.Image:
    """``colour`` with ``alpha`` (HxW 8-bit) upscaled by bicubic as its alpha channel, in row strips."""
    mode = "LA" if colour.mode == "L" else "RGBA"
    plane = Image.new("L", colour.size)
    height = alpha.shape[0]
    for top in range(0, height, ALPHA_STRIP_ROWS):
        bottom = min(height, top + ALPHA_STRIP_ROWS)
        lo, hi = max(0, top - ALPHA_MARGIN), min(height, bottom + ALPHA_MARGIN)
        strip = upscale_array(alpha[lo:hi].astype(np.float32) / np.float32(255.0), "bicubic", scale)[
            (top - lo) * scale : (bottom - lo) * scale
        ]
        plane.paste(from_array(strip, "L"), (0, top * scale))
    colour.putalpha(plane)
    return colour if colour.mode == mode else colour.convert(mode)


def upscale(
    image: Any,
    method: str = "bicubic",
    scale: int = 4,
    *,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: ProgressCallback | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    weights_dir: str | os.PathLike | None = None,
    memory_budget: int | None = None,
    self_ensemble: bool = False,
) -> Image.Image:
    """Upscale an image (path, bytes, PIL image or array) by an integer scale with a registered method.

    Models run on windows sized so their activations fit ``memory_budget`` bytes (default:
    ``devices.CPU_MEMORY_BUDGET`` on CPU, half the free memory on CUDA), the whole image in one pass when it fits;
    an explicit ``tile_size`` (input pixels, with ``tile_overlap`` pixels of context, default the model's receptive
    radius) wins. Either way the output equals a whole-image forward and is written tile by tile into the 8- or
    16-bit result. ``self_ensemble`` runs a model on the 8 flips and rotations of the image and averages the results
    (8x the time, about +0.05 dB PSNR; classical methods are symmetric already and ignore it). Alpha is upscaled
    on its own with bicubic and re-attached; greyscale stays greyscale and 16-bit stays 16-bit. Returns a PIL image
    in the input's mode.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)):
        raise UnsupportedScaleError(f"scale must be an integer, got {scale!r}")
    info = get_method(method, weights_dir)
    info.check_scale(int(scale))
    if tile_size is not None and tile_size < MIN_TILE_SIZE:
        raise ValueError(f"tile size must be at least {MIN_TILE_SIZE} pixels, got {tile_size}")
    img = load_image(image, max_pixels=max_pixels, copy=False)
    if info.kind == "classical":
        out = upscale_array(to_array(img), info.name, int(scale))
        if progress is not None:
            progress(1, 1)
        return from_array(out, img.mode)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    colour_mode = {"LA": "L", "RGBA": "RGB"}.get(img.mode, img.mode)
    colour_channels = 1 if colour_mode in ("L", "I;16") else 3
    out = _run_model_method(
        ImageWindows(img, colour_channels),
        colour_mode,
        info,
        int(scale),
        device=dev,
        dtype=dtype,
        progress=progress,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        memory_budget=memory_budget,
        self_ensemble=self_ensemble,
    )
    if colour_mode != img.mode:
        return _attach_alpha(out, np.asarray(img.getchannel("A")), int(scale))
    return out
