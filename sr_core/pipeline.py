"""``upscale()``: the one entry point that runs any registered method on any supported image."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .classical import upscale_array
from .devices import resolve_device, resolve_precision
from .errors import UnsupportedScaleError
from .inference import prepare_for_inference, run_model
from .io import DEFAULT_MAX_PIXELS, from_array, load_image, to_array
from .models import SRModel
from .registry import MethodInfo, ModelWeights, get_method, load_model
from .tiling import ProgressCallback, iter_tiled

logger = logging.getLogger(__name__)

DEFAULT_TILE_SIZE = 256
MIN_TILE_SIZE = 32
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _prepared(weights: ModelWeights, method: MethodInfo, scale: int, device: str, dtype: torch.dtype) -> SRModel:
    return prepare_for_inference(load_model(method, scale), torch.device(device), dtype)


def model_forward_array(
    model: nn.Module,
    rgb: np.ndarray,
    scale: int,
    *,
    tile_size: int,
    overlap: int,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Run a prepared model over an HxWx3 float array in tiles; returns (H*s)x(W*s)x3 float32 in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    out = np.empty((rgb.shape[0] * scale, rgb.shape[1] * scale, 3), dtype=np.float32)
    for t, piece in iter_tiled(lambda w: run_model(model, w), x, scale, tile_size, overlap, progress):
        block = piece[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        out[t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = block
    return out


def _run_model_method(
    colour: np.ndarray,
    method: MethodInfo,
    scale: int,
    *,
    tile_size: int | None,
    tile_overlap: int | None,
    device: torch.device,
    dtype: torch.dtype,
    progress: ProgressCallback | None,
) -> np.ndarray:
    model = _prepared(method.variants[scale], method, scale, str(device), dtype)
    grey = colour.shape[2] == 1
    rgb = np.repeat(colour, 3, axis=2) if grey else colour
    overlap = model.receptive_radius() if tile_overlap is None else tile_overlap
    size = tile_size or DEFAULT_TILE_SIZE
    while True:
        try:
            out = model_forward_array(model, rgb, scale, tile_size=size, overlap=overlap, progress=progress)
            break
        except torch.cuda.OutOfMemoryError:
            if size // 2 < MIN_TILE_SIZE:
                raise
            torch.cuda.empty_cache()
            size //= 2
            logger.warning("Out of GPU memory; retrying with %dx%d tiles", size, size)
    return (out @ GREY_WEIGHTS)[..., None] if grey else out


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
) -> Image.Image:
    """Upscale an image (path, bytes, PIL image or array) by an integer scale with a registered method.

    Models run in tiles of ``tile_size`` input pixels with ``tile_overlap`` pixels of context (default: the
    model's receptive radius, which makes tiling exact); alpha is upscaled on its own with bicubic and
    re-attached; greyscale stays greyscale and 16-bit stays 16-bit. Returns a PIL image in the input's mode.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)):
        raise UnsupportedScaleError(f"scale must be an integer, got {scale!r}")
    info = get_method(method, weights_dir)
    info.check_scale(int(scale))
    if tile_size is not None and tile_size < MIN_TILE_SIZE:
        raise ValueError(f"tile size must be at least {MIN_TILE_SIZE} pixels, got {tile_size}")
    img = load_image(image, max_pixels=max_pixels)
    array = to_array(img)
    if info.kind == "classical":
        out = upscale_array(array, info.name, int(scale))
        if progress is not None:
            progress(1, 1)
        return from_array(out, img.mode)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    colour_channels = 1 if img.mode in ("L", "LA", "I;16") else 3
    colour = _run_model_method(
        array[..., :colour_channels],
        info,
        int(scale),
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        device=dev,
        dtype=dtype,
        progress=progress,
    )
    if array.shape[2] > colour_channels:
        alpha = upscale_array(array[..., colour_channels:], "bicubic", int(scale))
        colour = np.concatenate([colour, alpha], axis=2)
    return from_array(colour, img.mode)
