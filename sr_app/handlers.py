"""Plain request handlers behind the demo: upscale, metrics and compare-all, free of any Gradio import.

Every failure the user can cause (unreadable or oversized upload, unknown method, unsupported scale, a reference of
the wrong size) surfaces as an :class:`sr_core.errors.SRError` or ``ValueError`` whose message is a sentence meant
for the page; :mod:`sr_app.ui` turns those into ``gr.Error``.
"""

from __future__ import annotations

import logging
import math
import os
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
from sr_core.constants import APP_MAX_PIXELS as DEFAULT_MAX_PIXELS
from sr_core.constants import FAST_PNG_COMPRESSION
from sr_core.degradations import NAMED_DEGRADATIONS, check_named, degrade_for
from sr_core.errors import ImageTooLargeError, UnknownMethodError, UnsupportedScaleError
from sr_core.evaluate import make_eval_lr
from sr_core.io import load_image, save_image, to_uint8
from sr_core.metrics import psnr, ssim
from sr_core.outscale import OutscalePlan, check_outscale, output_size, plan_outscale, scale_tag, shrink_pair
from sr_core.pipeline import MIN_TILE_SIZE
from sr_core.registry import MethodInfo

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""Progress sink of the handlers: (fraction done in [0, 1], what is happening)."""

DEFAULT_MAX_OUTPUT_PIXELS = 36_000_000
DEFAULT_MAX_FILE_SIZE = "20mb"
OUTPUT_MAX_AGE_S = 3600.0


class AddedMethods:
    """Model methods added while the app runs (the Training tab's "Use in Upscale"), in the order added.

    Thread-safe: every request of an app instance reads the one set its :class:`AppConfig` holds."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        """Offer ``name`` (a save_pretrained() folder or Hub id) from now on; adding it again changes nothing."""
        with self._lock:
            if name not in self._names:
                self._names.append(name)

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._names)


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
    models: tuple[str, ...] = ()
    """Extra model methods of this app instance: Hugging Face Hub ids ``user/name`` or save_pretrained() folders."""
    added: AddedMethods = field(default_factory=AddedMethods, compare=False, repr=False)
    """Models added at run time (not a setting: starts empty for every app instance)."""

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
    plan: OutscalePlan | None = None
    """Set when an output scale was asked for; ``scale`` is then its metric border (the factor rounded up)."""

    @property
    def summary(self) -> str:
        """One Markdown line: method, sizes, time and device, plus any notes."""
        lw, lh = self.low_res.size
        w, h = self.result.size
        how = self.plan.describe() if self.plan else f"x{self.scale}"
        line = (
            f"**{self.method.label}** {how}: {lw}x{lh} -> {w}x{h} px in "
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
    """The methods this app offers: sr_core's registry for the weights folder, the configured extra models, then
    the models added while the app runs."""
    offered = sr_core.available_methods(config.weights_dir)
    names = {m.name for m in offered}
    extra = dict.fromkeys(m for m in (*config.models, *config.added.names()) if m not in names)
    return offered + [sr_core.get_method(m, config.weights_dir) for m in extra]


def find_method(name: str, config: AppConfig) -> MethodInfo:
    """Look up an offered method by name (only the configured models: other folders or Hub ids are not reachable)."""
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


def parse_scale(scale: object) -> int:
    """The scale as an int when it is a whole number (4, 4.0, "4"); else UnsupportedScaleError saying so.

    The one parser of every request's scale: True, 4.7, "4.7" and "abc" are refused rather than truncated."""
    problem = f"Scale must be a whole number such as 4, got {scale!r}."
    if isinstance(scale, bool):
        raise UnsupportedScaleError(problem)
    try:
        value = int(scale)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise UnsupportedScaleError(problem) from None
    if value != scale and not (isinstance(scale, str) and scale.strip() == str(value)):
        raise UnsupportedScaleError(problem)
    return value


def check_scale(info: MethodInfo, scale: object) -> int:
    """The scale as an int (see :func:`parse_scale`), or UnsupportedScaleError naming what the method supports."""
    value = parse_scale(scale)
    if value not in info.scales:
        supported = ", ".join(f"x{s}" for s in info.scales)
        raise UnsupportedScaleError(f"{info.label} supports scale {supported}, not x{value}. Pick another scale.")
    return value


def check_outscale_input(outscale: object) -> float | None:
    """None when no output scale is asked for (None, empty or 0), else the factor from 1 to 8 or an error."""
    if outscale is None or outscale == "" or (not isinstance(outscale, bool) and outscale == 0):
        return None
    return check_outscale(outscale)


def resolve_scale(info: MethodInfo, scale: object, outscale: object) -> tuple[int, OutscalePlan | None]:
    """(integer scale, plan): the method's own ``scale``, or with an output scale its plan and metric border."""
    factor = check_outscale_input(outscale)
    if factor is None:
        return check_scale(info, scale), None
    plan = plan_outscale(info, factor)
    return plan.metric_border, plan


def result_size(low_res: Image.Image, scale: int, plan: OutscalePlan | None = None) -> tuple[int, int]:
    """The size of the result: ``scale`` times the input, or the plan's exact output size."""
    if plan is not None:
        return output_size(low_res.size, plan.outscale)
    return low_res.width * scale, low_res.height * scale


def scale_label(scale: int, plan: OutscalePlan | None = None) -> str:
    """``x4`` or ``x3.5``: how results are named and described."""
    return f"x{scale_tag(plan.outscale) if plan else scale}"


def _check_tile_size(tile_size: object) -> int | None:
    if tile_size in (None, "", 0):
        return None
    try:
        value = int(tile_size)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"Tile size must be a whole number of pixels (0 = automatic), got {tile_size!r}.") from None
    if value == 0:
        return None
    if value < MIN_TILE_SIZE:
        raise ValueError(f"Tile size must be 0 (automatic) or at least {MIN_TILE_SIZE} pixels, got {value}.")
    return value


def _label(path: str | os.PathLike, name: str | None) -> str:
    return name or Path(path).name


def load_upload(path: str | os.PathLike, *, name: str | None, max_pixels: int, what: str = "image") -> Image.Image:
    """Load an uploaded file through sr_core's loader; errors name the file as the user called it."""
    label = _label(path, name)
    try:
        return load_image(path, max_pixels=max_pixels, name=label)
    except ImageTooLargeError as exc:
        known = exc.width is not None and exc.height is not None
        size = f" is {exc.width}x{exc.height} pixels, which" if known else ""
        raise ImageTooLargeError(
            f"The {what} {label}{size} is over this app's limit of {max_pixels:,} pixels. Please downsize or crop it.",
            width=exc.width,
            height=exc.height,
            limit=max_pixels,
        ) from exc


def _check_output_size(
    low_res: Image.Image, scale: int, config: AppConfig, plan: OutscalePlan | None = None
) -> None:
    w, h = result_size(low_res, scale, plan)
    if w * h > config.max_output_pixels:
        raise ImageTooLargeError(
            f"At {scale_label(scale, plan)} the {low_res.width}x{low_res.height} image would become {w}x{h} "
            f"({w * h:,} pixels), over this app's limit of {config.max_output_pixels:,} output pixels. "
            "Choose a smaller scale or a smaller image.",
            width=w,
            height=h,
            limit=config.max_output_pixels,
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


def match_reference(
    size: tuple[int, int], reference: Image.Image, scale: int, factor: str | None = None
) -> tuple[Image.Image, list[str]]:
    """The reference cropped to ``size`` when it is only a mod-crop larger; else a ValueError saying why.

    ``factor`` is how the message names the scale (e.g. ``"3.5"`` for an output scale; default ``scale``)."""
    factor = factor or str(scale)
    rw, rh = reference.size
    w, h = size
    if (rw, rh) == (w, h):
        return reference, []
    if 0 <= rw - w < scale and 0 <= rh - h < scale:
        cropped = reference.crop((0, 0, w, h))
        return cropped, [f"Reference cropped from {rw}x{rh} to {w}x{h} (mod-crop to a multiple of the scale)."]
    raise ValueError(
        f"The reference image is {rw}x{rh} pixels but the x{factor} result is {w}x{h} pixels. Upload the "
        f"high-resolution original whose size is {factor} times the input's size, or switch on 'Test on my image'."
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
    """Write a full-resolution PNG (fast level: the visitor waits for it) into a fresh folder of the output area
    (folders older than an hour go)."""
    base = _output_base(config)
    base.mkdir(parents=True, exist_ok=True)
    _prune_outputs(base)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "result"
    return save_image(image, base / uuid.uuid4().hex / f"{safe}.png", png_compression=FAST_PNG_COMPRESSION)


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
    plan: OutscalePlan | None = None,
) -> tuple[Image.Image, Image.Image | None]:
    """(low-res input, ground truth or None): in test mode the upload is the ground truth, shrunk by ``scale``
    (or the plan's output scale; PIL bicubic) and then degraded by the named ``degradation`` (JPEG, noise,
    blur), as evaluation does."""
    source = load_upload(image, name=image_name, max_pixels=config.max_pixels)
    if not test_on_my_image:
        return source, None
    factor = plan.outscale if plan else scale
    if min(source.size) < factor:
        raise ValueError(
            f"The image is {source.width}x{source.height} pixels, too small to shrink by "
            f"{scale_label(scale, plan)} for 'Test on my image'."
        )
    source = source.convert("RGB") if degradation != "bicubic" else source
    if plan is None:
        truth = mod_crop(source, scale)
        return make_eval_lr(truth, scale, degradation, _label(image, image_name)), truth
    truth, low = shrink_pair(source, plan.outscale)
    return degrade_for(low, degradation, _label(image, image_name)), truth


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


def load_reference(reference: str | os.PathLike, reference_name: str | None, config: AppConfig) -> Image.Image:
    """Load an uploaded reference (the high-resolution original) under the app's output pixel limit."""
    return load_upload(reference, name=reference_name, max_pixels=config.max_output_pixels, what="reference image")


@dataclass
class PreparedInputs:
    """A checked request, ready to upscale: the input, the truth to score against (or None), tiles and notes."""

    low_res: Image.Image
    truth: Image.Image | None
    tiles: int | None
    notes: list[str]


def prepare_request(
    image: str | os.PathLike,
    factor: int,
    plan: OutscalePlan | None,
    *,
    reference: str | os.PathLike | None,
    test_on_my_image: bool,
    tile_size: object,
    config: AppConfig,
    image_name: str | None,
    reference_name: str | None,
    test_degradation: object,
) -> PreparedInputs:
    """What one upscale and compare-all share once the scale is known: check the tile size and degradation, load
    the input (shrunk in test mode), and load the reference and check it against the result's size."""
    tiles = _check_tile_size(tile_size)
    degradation = check_degradation(test_degradation)
    low_res, truth = prepare_inputs(
        image, factor, test_on_my_image=test_on_my_image, config=config, image_name=image_name,
        degradation=degradation, plan=plan,
    )  # fmt: skip
    notes = _test_notes(test_on_my_image, degradation, reference is not None)
    if truth is None and reference is not None:
        truth = load_reference(reference, reference_name, config)
        match_reference(result_size(low_res, factor, plan), truth, factor, scale_label(factor, plan)[1:])
    return PreparedInputs(low_res, truth, tiles, notes)


def _compare_scale(offered: list[MethodInfo], scale: object, outscale: object) -> tuple[int, dict[str, OutscalePlan]]:
    """(integer scale, plan per method name) for compare-all: the parsed ``scale`` and no plans, or with an output
    scale every method's plan and the factor rounded up (its metric border)."""
    wanted = check_outscale_input(outscale)
    if wanted is None:
        return parse_scale(scale), {}
    return math.ceil(wanted), {m.name: plan_outscale(m, wanted) for m in offered}


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
    plan: OutscalePlan | None = None,
    self_ensemble: bool = False,
) -> tuple[Image.Image, float]:
    """Upscale with one method (by ``scale``, or by the plan's output scale); returns the result and seconds.
    ``self_ensemble`` averages a model over the 8 flips and rotations (:mod:`sr_core.ensemble`)."""
    _check_output_size(low_res, scale, config, plan)

    def on_tiles(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), f"{info.label}: {done / max(total, 1):.0%}")

    if progress is not None:
        progress(0.0, f"{info.label}: starting")
    start = time.perf_counter()
    run, factor = (sr_core.upscale, scale) if plan is None else (sr_core.upscale_by, plan.outscale)
    result = run(
        low_res,
        info.name,
        factor,
        tile_size=tile_size,
        device=config.device,
        progress=on_tiles,
        max_pixels=None,
        weights_dir=config.weights_dir,
        self_ensemble=self_ensemble,
    )
    return result, time.perf_counter() - start


def result_stem(stem: str, info: MethodInfo, scale: int, plan: OutscalePlan | None, self_ensemble: bool) -> str:
    """The download's name: the upload's stem, the method, the scale, and "ensemble" when a model ran with it."""
    suffix = "_ensemble" if self_ensemble and info.kind != "classical" else ""
    return f"{stem}_{info.name}_{scale_label(scale, plan)}{suffix}"


def ensemble_notes(self_ensemble: bool, infos: list[MethodInfo]) -> list[str]:
    """What the summary says when self-ensemble was asked for: which methods it ran on, or that none could."""
    if not self_ensemble:
        return []
    models = [m.label for m in infos if m.kind != "classical"]
    if not models:
        return ["Self-ensemble applies to models only; classical methods are symmetric already, so it changes nothing."]
    return [f"Self-ensemble: {', '.join(models)} averaged over the 8 flips and rotations (about 8x the time)."]


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
    outscale: object = None,
    self_ensemble: object = False,
) -> UpscaleOutcome:
    """Upscale an uploaded file and, when a reference exists (or in test mode), measure PSNR/SSIM.

    ``outscale`` (1-8, e.g. 3.5) replaces ``scale`` when given: the method runs at the nearest scale it supports
    at or above it and the result is resized to the exact size with Lanczos (see :mod:`sr_core.outscale`).
    ``self_ensemble`` averages a model's outputs over the 8 flips and rotations (8x the time, a little more PSNR).
    """
    config = config or AppConfig()
    if image is None:
        raise ValueError("Please upload an image first.")
    info = find_method(method, config)
    factor, plan = resolve_scale(info, scale, outscale)
    inputs = prepare_request(
        image, factor, plan, reference=reference, test_on_my_image=test_on_my_image, tile_size=tile_size,
        config=config, image_name=image_name, reference_name=reference_name, test_degradation=test_degradation,
    )  # fmt: skip
    low_res, truth = inputs.low_res, inputs.truth
    device = device_label(info, config)
    ensemble = bool(self_ensemble)
    result, seconds = run_method(
        low_res, info, factor, tile_size=inputs.tiles, config=config, progress=progress, plan=plan,
        self_ensemble=ensemble,
    )  # fmt: skip
    metrics = compute_metrics(result, truth, factor) if truth is not None else Metrics()
    stem = Path(_label(image, image_name)).stem
    png = save_result(result, result_stem(stem, info, factor, plan, ensemble), config)
    inputs.notes.extend(ensemble_notes(ensemble, [info]))
    before = display_copy(low_res).resize(result.size, Image.Resampling.NEAREST)
    return UpscaleOutcome(info, factor, low_res, result, before, png, seconds, device, metrics, inputs.notes, plan)


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
    return compute_metrics(result, load_reference(reference, reference_name, config), scale)


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
    outscale: object = None,
    self_ensemble: object = False,
) -> CompareOutcome:
    """Run every offered method that supports ``scale`` (every method, with an ``outscale``); rows of
    (label, PSNR, SSIM, seconds) and PNG paths. ``self_ensemble`` applies to the models, as in one upscale."""
    config = config or AppConfig()
    if image is None:
        raise ValueError("Please upload an image first.")
    offered = methods(config)
    factor, plans = _compare_scale(offered, scale, outscale)
    runnable = [m for m in offered if plans or factor in m.scales]
    skipped = [m.label for m in offered if m not in runnable]
    if not runnable:
        raise UnsupportedScaleError(f"No method supports x{factor}.")
    any_plan = next(iter(plans.values()), None)
    inputs = prepare_request(
        image, factor, any_plan, reference=reference, test_on_my_image=test_on_my_image, tile_size=tile_size,
        config=config, image_name=image_name, reference_name=reference_name, test_degradation=test_degradation,
    )  # fmt: skip
    low_res, truth, tiles, notes = inputs.low_res, inputs.truth, inputs.tiles, inputs.notes
    _check_output_size(low_res, factor, config, any_plan)
    ensemble = bool(self_ensemble)
    notes.extend(ensemble_notes(ensemble, runnable))
    stem = Path(_label(image, image_name)).stem
    rows: list[list[object]] = []
    gallery: list[tuple[str, str]] = []
    for index, info in enumerate(runnable):

        def step(fraction: float, desc: str, index: int = index) -> None:
            if progress is not None:
                progress((index + fraction) / len(runnable), desc)

        plan = plans.get(info.name)
        result, seconds = run_method(
            low_res, info, factor, tile_size=tiles, config=config, progress=step, plan=plan, self_ensemble=ensemble
        )
        metrics = compute_metrics(result, truth, factor) if truth is not None else Metrics()
        notes.extend(f"{info.label}: {n}" for n in metrics.notes if not n.startswith("Reference cropped"))
        rows.append([info.label, _round(metrics.psnr, 3), _round(metrics.ssim, 4), round(seconds, 3)])
        png = save_result(result, result_stem(stem, info, factor, plan, ensemble), config)
        caption = info.label if metrics.psnr is None else f"{info.label}: {metrics.psnr:.2f} dB"
        gallery.append((str(png), caption))
    if skipped:
        notes.append(f"Not available at x{factor}: {', '.join(skipped)}.")
    return CompareOutcome(rows, gallery, skipped, notes)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
