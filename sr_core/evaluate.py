"""Score an upscaling method on a set of HR images: PSNR and SSIM per image and on average, next to bicubic.

The conventions are the SR literature's: each HR image is mod-cropped to a multiple of the scale, its LR input
is made by :func:`sr_core.classical.downscale` (PIL's antialiased bicubic), the output is rounded to 8 bit,
and PSNR/SSIM are computed on the BT.601 Y channel with ``scale`` pixels of border removed
(:mod:`sr_core.metrics`). This module is the one implementation of "score a method on a folder": the CLI
``python -m sr_core.evaluate`` and the trainer's validation both call :func:`evaluate`.

    python -m sr_core.evaluate --method outputs/srresnet_x4/best --scale 4 --data ../shared/data/val --json r.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .classical import downscale, mod_crop
from .data import DIV2K_HUB_FILES, DIV2K_HUB_ID, ImageList, iter_validation, rgb_uint8
from .degradations import NAMED_DEGRADATIONS, check_named, degrade_for
from .errors import SRError
from .metrics import high_frequency_ratio, psnr, ssim
from .pipeline import upscale
from .progress import ProgressCallback

UpscaleFn = Callable[[Image.Image], Image.Image]
METRICS = ("psnr", "ssim")
SELF_ENSEMBLE_TAG = "(self-ensemble)"
"""Appended to a method's name in results scored with ``self_ensemble`` (EDSR's "+" models)."""


def _method_fn(method: str | os.PathLike | UpscaleFn, scale: int, device: str, precision: str,
               self_ensemble: bool = False) -> tuple[str, UpscaleFn]:  # fmt: skip
    if callable(method):
        return getattr(method, "__name__", "model"), method
    name = os.fspath(method)

    def run(lr: Image.Image) -> Image.Image:
        return upscale(lr, method=name, scale=scale, device=device, precision=precision, self_ensemble=self_ensemble)

    return (f"{name} {SELF_ENSEMBLE_TAG}" if self_ensemble else name), run


def score_image(
    name: str,
    hr: Image.Image,
    method: UpscaleFn,
    scale: int,
    *,
    baseline: UpscaleFn | None = None,
    y_channel: bool = True,
    degrade: str = "bicubic",
) -> dict[str, Any]:
    """One table row: ``{"name", "psnr", "ssim"}`` plus ``bicubic_psnr``/``bicubic_ssim`` with a baseline.

    The LR input is the bicubic downscale, then the named degradation ``degrade`` (fixed seed per image name).
    """
    hr = mod_crop(hr, scale)
    lr = make_eval_lr(hr, scale, degrade, name)
    target = rgb_uint8(hr)
    row: dict[str, Any] = {"name": name, "width": hr.width, "height": hr.height}
    for prefix, fn in (("", method), ("bicubic_", baseline)):
        if fn is None:
            continue
        out = fn(lr)
        if out.size != hr.size:
            raise SRError(
                f"{name}: the method returned {out.width}x{out.height} for a "
                f"{lr.width}x{lr.height} input at x{scale}; expected {hr.width}x{hr.height}"
            )
        scores = score_output(out, target, scale, y_channel=y_channel)
        row.update({f"{prefix}{k}": v for k, v in scores.items()})
    return row


def score_output(
    output: Image.Image, target: Any, scale: int, *, y_channel: bool = True, high_frequency: bool = False
) -> dict[str, float]:
    """PSNR and SSIM of one output against its HR target (``scale`` border pixels cropped), optionally with
    the high-frequency energy ratio (:func:`sr_core.metrics.high_frequency_ratio`, Y channel)."""
    sr, hr = rgb_uint8(output), target if isinstance(target, np.ndarray) else rgb_uint8(target)
    scores = {
        "psnr": psnr(sr, hr, crop_border=scale, y_channel=y_channel),
        "ssim": ssim(sr, hr, crop_border=scale, y_channel=y_channel),
    }
    if high_frequency:
        scores["hf_ratio"] = high_frequency_ratio(sr, hr, crop_border=scale)
    return scores


def make_eval_lr(hr: Image.Image, scale: int, degrade: str = "bicubic", key: str = "") -> Image.Image:
    """The evaluation LR of a (mod-cropped) HR image: PIL bicubic downscale, then the named degradation."""
    lr = downscale(hr, scale)
    return degrade_for(lr, degrade, key)


def summarize(
    rows: Sequence[dict[str, Any]],
    *,
    method: str,
    scale: int,
    y_channel: bool = True,
    degrade: str = "bicubic",
    self_ensemble: bool = False,
) -> dict[str, Any]:
    """Sorted rows plus their means and a statement of the convention used."""
    rows = sorted(rows, key=lambda r: r["name"])
    keys = [k for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim") if rows and k in rows[0]]
    mean = {k: float(sum(r[k] for r in rows) / len(rows)) for k in keys} if rows else {}
    return {
        "method": method,
        "scale": scale,
        "degrade": degrade,
        "self_ensemble": self_ensemble,
        "y_channel": y_channel,
        "num_images": len(rows),
        "convention": convention(scale, y_channel=y_channel, degrade=degrade, self_ensemble=self_ensemble),
        "images": list(rows),
        "mean": mean,
    }


def convention(
    scale: int, *, y_channel: bool = True, degrade: str | None = "bicubic", self_ensemble: bool = False
) -> str:
    """How scores are computed, in words; ``degrade=None`` leaves the LR degradation out."""
    channel = "Y channel (BT.601, MATLAB rgb2ycbcr)" if y_channel else "RGB"
    lr_note = "" if degrade in (None, "bicubic") else f", then {NAMED_DEGRADATIONS[degrade]} (degradation '{degrade}')"
    if self_ensemble:
        lr_note += "; the method's outputs averaged over the 8 flips and rotations of the LR (self-ensemble)"
    return (
        f"PSNR (dB) and SSIM on the {channel}, {scale}-pixel border cropped, output rounded to 8 bit; HR mod-cropped "
        f"to a multiple of {scale}, LR by PIL bicubic downscaling{lr_note}"
    )


def _as_pairs(
    data: Any, *, center_crop: int, max_images: int, cache_dir: str | os.PathLike | None
) -> tuple[Iterable[tuple[str, Image.Image]], int | None]:
    if isinstance(data, (str, os.PathLike)):
        files = DIV2K_HUB_FILES if os.fspath(data) == DIV2K_HUB_ID else None
        data = ImageList.from_source(data, split="validation", data_files=files, cache_dir=cache_dir)
    if isinstance(data, ImageList):
        total = len(data) if max_images <= 0 else min(max_images, len(data))
        return iter_validation(data, center_crop_size=center_crop, max_images=max_images), total
    return data, None


def evaluate(
    method: str | os.PathLike | UpscaleFn,
    scale: int,
    data: Any,
    *,
    baseline: str | None = "bicubic",
    center_crop: int = 0,
    max_images: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    y_channel: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    degrade: str = "bicubic",
    self_ensemble: bool = False,
) -> dict[str, Any]:
    """Score ``method`` (a method name, a save_pretrained() folder, or a callable PIL LR -> PIL SR) at ``scale``.

    ``data`` is a folder of HR images, an :class:`~sr_core.data.ImageList`, or an iterable of (name, PIL image).
    ``center_crop`` > 0 scores the central crop of that size; ``max_images`` > 0 scores the first images only.
    ``degrade`` names a fixed degradation of the LR (:data:`sr_core.degradations.NAMED_DEGRADATIONS`).
    ``self_ensemble`` scores a named method's 8-transform average (:mod:`sr_core.ensemble`); not the baseline's.
    Returns :func:`summarize`'s dict (per-image rows under "images", averages under "mean").
    """
    check_named(degrade)
    label, fn = _method_fn(method, scale, device, precision, self_ensemble)
    base = _method_fn(baseline, scale, device, precision)[1] if baseline else None
    pairs, total = _as_pairs(data, center_crop=center_crop, max_images=max_images, cache_dir=cache_dir)
    rows = []
    for i, (name, hr) in enumerate(pairs):
        rows.append(score_image(name, hr, fn, scale, baseline=base, y_channel=y_channel, degrade=degrade))
        if progress is not None:
            progress(i + 1, total or i + 1)
    if not rows and total is not None:
        raise SRError(f"No images to evaluate in {data}")
    return summarize(rows, method=label, scale=scale, y_channel=y_channel, degrade=degrade,
                     self_ensemble=self_ensemble and not callable(method))  # fmt: skip


def _fmt(value: float, digits: int) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _score_columns(result: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The score columns of a result's tables: (header names, row keys), bicubic's first when it was scored."""
    name = Path(result["method"]).name or result["method"]
    with_base = "bicubic_psnr" in result["mean"]
    header = (["bicubic PSNR", "bicubic SSIM"] if with_base else []) + [f"{name} PSNR", f"{name} SSIM"]
    return header, (["bicubic_psnr", "bicubic_ssim"] if with_base else []) + ["psnr", "ssim"]


def _cells(row: dict[str, Any], keys: list[str]) -> list[str]:
    return [_fmt(row[k], 2 if k.endswith("psnr") else 4) for k in keys]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def format_markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table (one row per image, then the mean) followed by the convention."""
    header, keys = _score_columns(result)
    rows = [[row["name"], *_cells(row, keys)] for row in result["images"]]
    rows.append([f"**mean ({result['num_images']})**", *_cells(result["mean"], keys)])
    return "\n".join(_table(["image", *header], rows)) + f"\n\nx{result['scale']}. {result['convention']}.\n"


def format_degradations(results: Sequence[dict[str, Any]]) -> str:
    """One method's results on several LR degradations as one markdown table: a row per degradation with its
    mean scores, next to bicubic and the gain over it when scored, then what each degradation is."""
    first = results[0]
    header, keys = _score_columns(first)
    with_base = "bicubic_psnr" in keys
    rows = []
    for result in results:
        m = result["mean"]
        gain = [f"{m['psnr'] - m['bicubic_psnr']:+.2f}"] if with_base else []
        rows.append([f"`{result['degrade']}`", *_cells(m, keys), *gain])
    header = [f"LR (x{first['scale']}, {first['num_images']} images)", *header] + (["gain (dB)"] if with_base else [])
    notes = "; ".join(f"`{r['degrade']}`: {NAMED_DEGRADATIONS[r['degrade']]}" for r in results)
    how = convention(first["scale"], y_channel=first["y_channel"], degrade=None, self_ensemble=first["self_ensemble"])
    return "\n".join(_table(header, rows)) + f"\n\nx{first['scale']}. {how}; then the named degradation ({notes}).\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sr_core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True, help="method name (see sr-upscale --list) or model folder")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--data", required=True, help="folder of HR images (or a hub dataset id)")
    parser.add_argument("--json", type=Path, help="also write the full result as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32 (default, exact scores), bf16 or fp16")
    parser.add_argument("--center-crop", type=int, default=0, help="score only a central crop of this size")
    parser.add_argument("--max-images", type=int, default=0, help="score only the first N images")
    parser.add_argument("--rgb", action="store_true", help="score on RGB instead of the Y channel")
    parser.add_argument("--no-baseline", action="store_true", help="do not score bicubic alongside")
    parser.add_argument(
        "--degrade",
        nargs="+",
        default=["bicubic"],
        choices=list(NAMED_DEGRADATIONS),
        help="degrade the bicubic LR with a named, fixed-seed degradation: "
        + "; ".join(f"{k}: {v}" for k, v in NAMED_DEGRADATIONS.items())
        + ". Several names: one table with a row per degradation (--json then holds a list of results)",
    )
    parser.add_argument(
        "--self-ensemble", action="store_true",
        help="score the average of the method's outputs over the 8 flips and rotations of each LR (8x the time)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    specs = list(dict.fromkeys(args.degrade))
    try:
        results = [
            evaluate(
                args.method,
                args.scale,
                args.data,
                baseline=None if args.no_baseline else "bicubic",
                center_crop=args.center_crop,
                max_images=args.max_images,
                device=args.device,
                precision=args.precision,
                y_channel=not args.rgb,
                degrade=spec,
                self_ensemble=args.self_ensemble,
            )
            for spec in specs
        ]
    except (SRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_markdown(results[0]) if len(results) == 1 else format_degradations(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        saved = results[0] if len(results) == 1 else results
        args.json.write_text(json.dumps(saved, indent=2, allow_nan=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
