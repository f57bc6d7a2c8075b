"""Any output factor from 1 to 8 (Real-ESRGAN's ``--outscale``), by one rule shared by the CLI and the app.

A model (and the Fourier method, which needs an integer scale) runs at the smallest scale it supports at or above
the factor, or at its largest one when none is that big, and a Lanczos resize then gives the exact size. The
PIL-kernel classical methods (nearest, bilinear, bicubic, lanczos) resize straight to the exact size instead.
The output size is the input size times the factor, rounded half up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from .classical import resize_array
from .errors import UnsupportedScaleError
from .io import DEFAULT_MAX_PIXELS, from_array, load_image, to_array
from .pipeline import MIN_TILE_SIZE, upscale
from .progress import ProgressCallback
from .registry import MethodInfo, get_method

MIN_OUTSCALE = 1.0
MAX_OUTSCALE = 8.0
DIRECT_METHODS = frozenset({"nearest", "bilinear", "bicubic", "lanczos"})
"""Classical methods that resize straight to any size (the others run at an integer scale, then Lanczos)."""
FINAL_RESIZE = "lanczos"


def check_outscale(value: object) -> float:
    """``value`` as a float factor in [1, 8], or UnsupportedScaleError saying what is accepted."""
    problem = f"Output scale must be a number from {MIN_OUTSCALE:g} to {MAX_OUTSCALE:g} (e.g. 3.5), got {value!r}."
    if isinstance(value, bool):
        raise UnsupportedScaleError(problem)
    try:
        factor = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnsupportedScaleError(problem) from None
    if not math.isfinite(factor) or not MIN_OUTSCALE <= factor <= MAX_OUTSCALE:
        raise UnsupportedScaleError(problem)
    return factor


def scale_tag(factor: float) -> str:
    """The factor as it appears in file names and messages: ``4`` for 4.0, ``3.5`` for 3.5."""
    return f"{factor:g}"


def output_size(size: tuple[int, int], outscale: float) -> tuple[int, int]:
    """(width, height) times ``outscale``, rounded half up, at least one pixel each."""
    width, height = size
    return max(1, math.floor(width * outscale + 0.5)), max(1, math.floor(height * outscale + 0.5))


@dataclass(frozen=True)
class OutscalePlan:
    """How ``method`` reaches ``outscale``: it runs at ``native`` (None: one direct resize), then Lanczos."""

    method: MethodInfo
    outscale: float
    native: int | None

    @property
    def needs_resize(self) -> bool:
        """Whether a Lanczos resize follows the method's own output."""
        return self.native is not None and self.native != self.outscale

    @property
    def metric_border(self) -> int:
        """Border pixels cropped before PSNR/SSIM: the factor rounded up, as for integer scales."""
        return math.ceil(self.outscale)

    def describe(self) -> str:
        """A short phrase for summaries, e.g. ``x4, then Lanczos to x3.5``."""
        target = f"x{scale_tag(self.outscale)}"
        if self.native is None:
            return f"{target} (one {self.method.name} resize)"
        if not self.needs_resize:
            return target
        return f"x{self.native}, then Lanczos to {target}"


def plan_outscale(method: MethodInfo, outscale: object) -> OutscalePlan:
    """The plan for ``method`` at ``outscale`` by the module's rule (validates the factor)."""
    factor = check_outscale(outscale)
    if method.kind == "classical" and method.name in DIRECT_METHODS:
        return OutscalePlan(method, factor, None)
    at_or_above = [s for s in method.scales if s >= factor]
    native = min(at_or_above) if at_or_above else max(method.scales)
    return OutscalePlan(method, factor, native)


def resize_to(image: Image.Image, size: tuple[int, int], method: str = FINAL_RESIZE) -> Image.Image:
    """``image`` resized to ``size`` (Lanczos by default) in its own mode, 16-bit and alpha included."""
    if image.size == tuple(size):
        return image
    return from_array(resize_array(to_array(image), size, method), image.mode)


def upscale_by(
    image: Any,
    method: str = "bicubic",
    outscale: float = 4.0,
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
    """Upscale ``image`` by any factor from 1 to 8 (see the module docstring); options as in ``upscale()``."""
    info = get_method(method, weights_dir)
    plan = plan_outscale(info, outscale)
    if tile_size is not None and tile_size < MIN_TILE_SIZE:
        raise ValueError(f"tile size must be at least {MIN_TILE_SIZE} pixels, got {tile_size}")
    source = load_image(image, max_pixels=max_pixels)
    size = output_size(source.size, plan.outscale)
    if plan.native is None:
        result = resize_to(source, size, info.name)
        if progress is not None:
            progress(1, 1)
        return result.copy() if result is image else result
    native = upscale(
        source,
        info.name,
        plan.native,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        device=device,
        precision=precision,
        progress=progress,
        max_pixels=None,
        weights_dir=weights_dir,
        memory_budget=memory_budget,
        self_ensemble=self_ensemble,
    )
    return resize_to(native, size)


def shrink_pair(image: Image.Image, outscale: object) -> tuple[Image.Image, Image.Image]:
    """(ground truth, low-res input) for testing at ``outscale``: the fractional counterpart of mod-crop + downscale.

    The input is ``floor(size / outscale)`` pixels, the truth is ``image`` cropped (right and bottom) to that times
    ``outscale`` (rounded as :func:`output_size` does), and the input is PIL's antialiased bicubic resize of the
    truth. At an integer factor this is exactly :func:`sr_core.classical.downscale` of the mod-cropped image.
    """
    factor = check_outscale(outscale)
    low = (math.floor(image.width / factor), math.floor(image.height / factor))
    if min(low) < 1:
        raise ValueError(f"a {image.width}x{image.height} image is smaller than the output scale {scale_tag(factor)}")
    truth = image.crop((0, 0, *output_size(low, factor)))
    return truth, truth.resize(low, Image.Resampling.BICUBIC)
