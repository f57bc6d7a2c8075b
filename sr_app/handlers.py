"""Plain request handlers behind the demo: upscale, metrics and compare-all, free of any Gradio import.

Every failure the user can cause (unreadable or oversized upload, unknown method, unsupported scale, a reference of
the wrong size) surfaces as an :class:`sr_core.errors.SRError` or ``ValueError`` whose message is a sentence meant
for the page; :mod:`sr_app.ui` turns those into ``gr.Error``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import sr_core
from sr_core.classical import mod_crop
from sr_core.degradations import NAMED_DEGRADATIONS, check_named
from sr_core.errors import ImageTooLargeError, UnknownMethodError, UnsupportedScaleError
from sr_core.evaluate import make_eval_lr
from sr_core.io import load_image, save_image, to_uint8
from sr_core.metrics import psnr, ssim
from sr_core.registry import MethodInfo

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Progress sink of the handlers: (fraction done in [0, 1], what is happening)."""

DEFAULT_MAX_PIXELS = 4_000_000
DEFAULT_MAX_OUTPUT_PIXELS = 36_000_000
DEFAULT_MAX_FILE_SIZE = "20mb"
OUTPUT_MAX_AGE_S = 3600.0


@dataclass(frozen=True)
class AppConfig:
    """Settings shared by every request: where weights live, which device, and the size limits."""

    device: str = "auto"
    weights_dir: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_output_pixels: int = DEFAULT_MAX_OUTPUT_PIXELS
    max_file_size: str | int = DEFAULT_MAX_FILE_SIZE
    concurrency_limit: int = 1
    queue_size: int = 32
    output_dir: str | None = None
    ratings_db: str | None = None
    rating_images: str | None = None

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_output_pixels < 1:
            raise ValueError("pixel limits must be positive")
        if self.concurrency_limit < 1:
            raise ValueError("the concurrency limit must be at least 1")


@dataclass
class Metrics:
    """PSNR (dB) and SSIM on the Y channel with ``scale`` border pixels cropped; None where not computable."""

    psnr: float | None = None
    ssim: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class UpscaleOutcome:
    """Everything the page shows for one upscale."""

    method: MethodInfo
    scale: int
    low_res: Image.Image
    result: Image.Image
    before: Image.Image
    png_path: Path
    seconds: float
    device: str
    metrics: Metrics
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One Markdown line: method, sizes, time and device, plus any notes."""
        lw, lh = self.low_res.size
        w, h = self.result.size
        line = (
            f"**{self.method.label}** x{self.scale}: {lw}x{lh} -> {w}x{h} px in "
            f"**{self.seconds:.3f} s** on **{self.device}**"
        )
        notes = [*self.notes, *self.metrics.notes]
        return line + "".join(f"  \n{n}" for n in notes)


@dataclass
class CompareOutcome:
    """One row per method that supports the scale, the result files, and the methods left out."""

    rows: list[list[object]]
    gallery: list[tuple[str, str]]
    skipped: list[str]
    notes: list[str] = field(default_factory=list)


HEADERS = ["method", "PSNR (dB)", "SSIM", "seconds"]


def methods(config: AppConfig) -> list[MethodInfo]:
    """The methods this app offers: sr_core's registry for the configured weights folder."""
    return sr_core.available_methods(config.weights_dir)


def find_method(name: str, config: AppConfig) -> MethodInfo:
    """Look up an offered method by name (ad-hoc model folders are deliberately not reachable from the web)."""
    offered = methods(config)
    for info in offered:
        if info.name == name:
            return info
    names = ", ".join(m.name for m in offered)
    raise UnknownMethodError(f"Unknown method '{name}'. Choose one of: {names}.")


def method_choices(config: AppConfig) -> list[tuple[str, str]]:
    """(label, name) pairs for the method selector."""
    return [(m.label, m.name) for m in methods(config)]


def method_markdown(info: MethodInfo) -> str:
    """One line describing a method and its scales."""
    scales = ", ".join(f"x{s}" for s in info.scales)
    kind = "learned model" if info.kind == "model" else "classical"
    return f"**{info.label}** ({kind}; {scales}): {info.description}"


def pick_scale(scales: tuple[int, ...], current: object) -> int:
    """Keep the current scale when the method supports it, else x4 if offered, else the closest one."""
    try:
        wanted = int(current)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        wanted = 4
    if wanted in scales:
        return wanted
    if 4 in scales:
        return 4
    return min(scales, key=lambda s: (abs(s - wanted), s))


def check_scale(info: MethodInfo, scale: object) -> int:
    """The scale as an int, or UnsupportedScaleError naming what the method supports."""
    if isinstance(scale, bool):
        raise UnsupportedScaleError(f"Scale must be a whole number such as 4, got {scale!r}.")
    try:
        value = int(scale)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise UnsupportedScaleError(f"Scale must be a whole number such as 4, got {scale!r}.") from None
    if value != scale and not (isinstance(scale, str) and scale.strip() == str(value)):
        raise UnsupportedScaleError(f"Scale must be a whole number such as 4, got {scale!r}.")
    if value not in info.scales:
        supported = ", ".join(f"x{s}" for s in info.scales)
        raise UnsupportedScaleError(f"{info.label} supports scale {supported}, not x{value}. Pick another scale.")
    return value


def _check_tile_size(tile_size: object) -> int | None:
    if tile_size in (None, "", 0):
        return None
    try:
        value = int(tile_size)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"Tile size must be a whole number of pixels (0 = automatic), got {tile_size!r}.") from None
    if value == 0:
        return None
    if value < 32:
        raise ValueError(f"Tile size must be 0 (automatic) or at least 32 pixels, got {value}.")
    return value


def _label(path: str | os.PathLike, name: str | None) -> str:
    return name or Path(path).name


def load_upload(path: str | os.PathLike, *, name: str | None, max_pixels: int, what: str = "image") -> Image.Image:
    """Load an uploaded file through sr_core's loader; errors name the file as the user called it."""
    label = _label(path, name)
    try:
        return load_image(path, max_pixels=max_pixels, name=label)
    except ImageTooLargeError as exc:
        found = re.search(r"(\d+x\d+) \(", str(exc))
        size = f" is {found.group(1)} pixels, which" if found else ""
        raise ImageTooLargeError(
            f"The {what} {label}{size} is over this app's limit of {max_pixels:,} pixels. Please downsize or crop it."
        ) from exc


def _check_output_size(low_res: Image.Image, scale: int, config: AppConfig) -> None:
    w, h = low_res.width * scale, low_res.height * scale
    if w * h > config.max_output_pixels:
        raise ImageTooLargeError(
            f"At x{scale} the {low_res.width}x{low_res.height} image would become {w}x{h} "
            f"({w * h:,} pixels), over this app's limit of {config.max_output_pixels:,} output pixels. "
            "Choose a smaller scale or a smaller image."
        )


def display_copy(image: Image.Image) -> Image.Image:
    """An 8-bit copy for the browser (16-bit grey scaled, grey+alpha as RGBA); RGB/RGBA/L unchanged."""
    if image.mode == "I;16":
        return Image.fromarray(to_uint8(image), "L")
    if image.mode == "LA":
        return image.convert("RGBA")
    return image


def _metric_arrays(result: Image.Image, reference: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    a, b = to_uint8(result), to_uint8(reference)
    if a.ndim != b.ndim:
        a, b = (np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x for x in (a, b))
    return a, b


def match_reference(size: tuple[int, int], reference: Image.Image, scale: int) -> tuple[Image.Image, list[str]]:
    """The reference cropped to ``size`` when it is only a mod-crop larger; else a ValueError saying why."""
    rw, rh = reference.size
    w, h = size
    if (rw, rh) == (w, h):
        return reference, []
    if 0 <= rw - w < scale and 0 <= rh - h < scale:
        cropped = reference.crop((0, 0, w, h))
        return cropped, [f"Reference cropped from {rw}x{rh} to {w}x{h} (mod-crop to a multiple of the scale)."]
    raise ValueError(
        f"The reference image is {rw}x{rh} pixels but the x{scale} result is {w}x{h} pixels. Upload the "
        f"high-resolution original whose size is {scale} times the input's size, or switch on 'Test on my image'."
    )


def compute_metrics(result: Image.Image, reference: Image.Image, scale: int) -> Metrics:
    """PSNR/SSIM of a result against a same-size reference, Y channel, ``scale`` border pixels cropped."""
    reference, notes = match_reference(result.size, reference, scale)
    a, b = _metric_arrays(result, reference)
    try:
        value = psnr(a, b, crop_border=scale, y_channel=True)
        structural = ssim(a, b, crop_border=scale, y_channel=True)
    except ValueError as exc:
        return Metrics(None, None, [*notes, f"Metrics not computed: {exc}."])
    if value == float("inf"):
        return Metrics(None, structural, [*notes, "The result is identical to the reference (PSNR is infinite)."])
    return Metrics(value, structural, notes)


_output_lock = threading.Lock()
_output_root: Path | None = None


def _output_base(config: AppConfig) -> Path:
    global _output_root
    if config.output_dir:
        return Path(config.output_dir)
    with _output_lock:
        if _output_root is None or not _output_root.is_dir():
            _output_root = Path(tempfile.mkdtemp(prefix="sr_studio_outputs_"))
        return _output_root


def _prune_outputs(base: Path, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
    cutoff = time.time() - max_age_s
    for entry in base.iterdir():
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def save_result(image: Image.Image, stem: str, config: AppConfig) -> Path:
    """Write a full-resolution PNG into a fresh folder of the output area (folders older than an hour go)."""
    base = _output_base(config)
    base.mkdir(parents=True, exist_ok=True)
    _prune_outputs(base)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "result"
    return save_image(image, base / uuid.uuid4().hex / f"{safe}.png")


def degradation_choices() -> list[tuple[str, str]]:
    """(label, name) pairs of the named degradations 'Test on my image' can apply after shrinking."""
    return [("clean bicubic" if k == "bicubic" else f"{k}: {v}", k) for k, v in NAMED_DEGRADATIONS.items()]


def check_degradation(name: object) -> str:
    """A known degradation name, or a ValueError that lists them (None and "" mean clean bicubic)."""
    if name in (None, ""):
        return "bicubic"
    try:
        return check_named(str(name))
    except ValueError as exc:
        raise ValueError(f"Unknown test degradation {name!r}; choose one of: {', '.join(NAMED_DEGRADATIONS)}.") from exc


def prepare_inputs(
    image: str | os.PathLike,
    scale: int,
    *,
    test_on_my_image: bool,
    config: AppConfig,
    image_name: str | None = None,
    degradation: str = "bicubic",
) -> tuple[Image.Image, Image.Image | None]:
    """(low-res input, ground truth or None): in test mode the upload is the ground truth, shrunk by ``scale``
    (PIL bicubic) and then degraded by the named ``degradation`` (JPEG, noise, blur), as evaluation does."""
    source = load_upload(image, name=image_name, max_pixels=config.max_pixels)
    if not test_on_my_image:
        return source, None
    if min(source.size) < scale:
        raise ValueError(
            f"The image is {source.width}x{source.height} pixels, too small to shrink by x{scale} for "
            "'Test on my image'."
        )
    truth = mod_crop(source.convert("RGB") if degradation != "bicubic" else source, scale)
    return make_eval_lr(truth, scale, degradation, _label(image, image_name)), truth


def _test_notes(test_on_my_image: bool, degradation: str, has_reference: bool) -> list[str]:
    notes = []
    if test_on_my_image and has_reference:
        notes.append("'Test on my image' is on, so the uploaded reference is not used.")
    if degradation != "bicubic":
        notes.append(
            f"Test input degraded with {degradation} ({NAMED_DEGRADATIONS[degradation]}) after shrinking."
            if test_on_my_image
            else "The test degradation applies only with 'Test on my image'; the upload was used as it is."
        )
    return notes


def device_label(info: MethodInfo, config: AppConfig) -> str:
    """Where a method runs: classical methods on the CPU, models on the configured device and precision."""
    if info.kind == "classical":
        return "cpu"
    device = sr_core.resolve_device(config.device)
    dtype = sr_core.resolve_precision("auto", device)
    return f"{device.type} ({str(dtype).removeprefix('torch.')})"


def run_method(
    low_res: Image.Image,
    info: MethodInfo,
    scale: int,
    *,
    tile_size: int | None,
    config: AppConfig,
    progress: Progress | None = None,
) -> tuple[Image.Image, float]:
    """Upscale with one method; returns the result and the seconds it took."""
    _check_output_size(low_res, scale, config)

    def on_tiles(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), f"{info.label}: tile {done}/{total}")

    if progress is not None:
        progress(0.0, f"{info.label}: starting")
    start = time.perf_counter()
    result = sr_core.upscale(
        low_res,
        info.name,
        scale,
        tile_size=tile_size,
        device=config.device,
        progress=on_tiles,
        max_pixels=None,
        weights_dir=config.weights_dir,
    )
    return result, time.perf_counter() - start


def upscale_image(
    image: str | os.PathLike | None,
    method: str,
    scale: object,
    *,
    reference: str | os.PathLike | None = None,
    test_on_my_image: bool = False,
    tile_size: object = None,
    config: AppConfig | None = None,
    progress: Progress | None = None,
    image_name: str | None = None,
    reference_name: str | None = None,
    test_degradation: object = "bicubic",
) -> UpscaleOutcome:
    """Upscale an uploaded file and, when a reference exists (or in test mode), measure PSNR/SSIM."""
    config = config or AppConfig()
    if image is None:
        raise ValueError("Please upload an image first.")
    info = find_method(method, config)
    factor = check_scale(info, scale)
    tiles = _check_tile_size(tile_size)
    degradation = check_degradation(test_degradation)
    low_res, truth = prepare_inputs(
        image, factor, test_on_my_image=test_on_my_image, config=config, image_name=image_name,
        degradation=degradation,
    )  # fmt: skip
    notes = _test_notes(test_on_my_image, degradation, reference is not None)
    if truth is None and reference is not None:
        truth = load_upload(reference, name=reference_name, max_pixels=config.max_output_pixels, what="reference image")
        match_reference((low_res.width * factor, low_res.height * factor), truth, factor)
    device = device_label(info, config)
    result, seconds = run_method(low_res, info, factor, tile_size=tiles, config=config, progress=progress)
    metrics = compute_metrics(result, truth, factor) if truth is not None else Metrics()
    stem = Path(_label(image, image_name)).stem
    png = save_result(result, f"{stem}_{info.name}_x{factor}", config)
    before = display_copy(low_res).resize(result.size, Image.Resampling.NEAREST)
    return UpscaleOutcome(info, factor, low_res, result, before, png, seconds, device, metrics, notes)


def rescore(
    png_path: str | os.PathLike,
    reference: str | os.PathLike | None,
    scale: int,
    *,
    config: AppConfig | None = None,
    reference_name: str | None = None,
) -> Metrics:
    """Metrics of an already computed result against a (new) reference, without upscaling again."""
    config = config or AppConfig()
    if reference is None:
        return Metrics()
    result = load_image(png_path, max_pixels=None)
    truth = load_upload(reference, name=reference_name, max_pixels=config.max_output_pixels, what="reference image")
    return compute_metrics(result, truth, scale)


def compare_methods(
    image: str | os.PathLike | None,
    scale: object,
    *,
    reference: str | os.PathLike | None = None,
    test_on_my_image: bool = False,
    tile_size: object = None,
    config: AppConfig | None = None,
    progress: Progress | None = None,
    image_name: str | None = None,
    reference_name: str | None = None,
    test_degradation: object = "bicubic",
) -> CompareOutcome:
    """Run every offered method that supports ``scale``; rows of (label, PSNR, SSIM, seconds) and PNG paths."""
    config = config or AppConfig()
    if image is None:
        raise ValueError("Please upload an image first.")
    offered = methods(config)
    try:
        factor = int(scale)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise UnsupportedScaleError(f"Scale must be a whole number such as 4, got {scale!r}.") from None
    runnable = [m for m in offered if factor in m.scales]
    skipped = [m.label for m in offered if factor not in m.scales]
    if not runnable:
        raise UnsupportedScaleError(f"No method supports x{factor}.")
    tiles = _check_tile_size(tile_size)
    degradation = check_degradation(test_degradation)
    low_res, truth = prepare_inputs(
        image, factor, test_on_my_image=test_on_my_image, config=config, image_name=image_name,
        degradation=degradation,
    )  # fmt: skip
    notes = _test_notes(test_on_my_image, degradation, reference is not None)
    if truth is None and reference is not None:
        truth = load_upload(reference, name=reference_name, max_pixels=config.max_output_pixels, what="reference image")
        match_reference((low_res.width * factor, low_res.height * factor), truth, factor)
    _check_output_size(low_res, factor, config)
    stem = Path(_label(image, image_name)).stem
    rows: list[list[object]] = []
    gallery: list[tuple[str, str]] = []
    for index, info in enumerate(runnable):

        def step(fraction: float, desc: str, index: int = index) -> None:
            if progress is not None:
                progress((index + fraction) / len(runnable), desc)

        result, seconds = run_method(low_res, info, factor, tile_size=tiles, config=config, progress=step)
        metrics = compute_metrics(result, truth, factor) if truth is not None else Metrics()
        notes.extend(f"{info.label}: {n}" for n in metrics.notes if not n.startswith("Reference cropped"))
        rows.append([info.label, _round(metrics.psnr, 3), _round(metrics.ssim, 4), round(seconds, 3)])
        png = save_result(result, f"{stem}_{info.name}_x{factor}", config)
        caption = info.label if metrics.psnr is None else f"{info.label}: {metrics.psnr:.2f} dB"
        gallery.append((str(png), caption))
    if skipped:
        notes.append(f"Not available at x{factor}: {', '.join(skipped)}.")
    return CompareOutcome(rows, gallery, skipped, notes)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
