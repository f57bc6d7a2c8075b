"""What the live view shows, made from a run's files: the progress bar, the curves, the preview, the status line."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from train.run_control import PREVIEW_DIR, PREVIEW_FILES

from .runs import RunState

LOSS_TERMS = ("loss", "pixel", "content", "adversarial", "feature", "artifact", "d_loss")
"""Loss terms drawn (the discriminator's D(HR)/D(SR) are probabilities, not losses, and are left out)."""
NO_RUN = "No training run yet: choose data and a recipe, then **Start**."
METRIC_SERIES = ("model", "bicubic")
COLOURS = {"loss": "#f97316", "pixel": "#2563eb", "content": "#16a34a", "adversarial": "#dc2626",
           "feature": "#9333ea", "artifact": "#ca8a04", "d_loss": "#0891b2", "model": "#f97316",
           "bicubic": "#6b7280"}  # fmt: skip


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def progress_html(state: RunState | None) -> str:
    """A progress bar with the step, patches/s and the time left."""
    if state is None:
        return '<div id="train-bar-empty">No run yet.</div>'
    total = max(state.total_steps, 1)
    percent = min(100.0, 100.0 * state.step / total)
    speed = f"{state.patches_per_s:.1f} patches/s" if state.patches_per_s else "- patches/s"
    eta = _duration(state.eta_s) if state.running else "-"
    text = f"step {state.step} / {state.total_steps} · {speed} · ETA {eta} · {state.state}"
    return (
        f'<div class="train-progress" data-step="{state.step}" data-total="{state.total_steps}" '
        f'data-state="{state.state}" style="border:1px solid #bbb;border-radius:6px;overflow:hidden;height:22px">'
        f'<div style="width:{percent:.1f}%;height:100%;background:#f97316"></div></div>'
        f'<div class="train-progress-text">{html.escape(text)}</div>'
    )


def status_markdown(state: RunState | None) -> str:
    """One line: which run, its state, and what to do next."""
    if state is None:
        return NO_RUN
    latest = state.latest
    scores = ""
    if "val_psnr" in latest:
        scores = (
            f" Validation at step {latest['val_step']}: PSNR {latest['val_psnr']:.2f} dB "
            f"(bicubic {latest.get('val_bicubic_psnr', float('nan')):.2f}), SSIM {latest.get('val_ssim', 0):.4f}."
        )
    return f"**Run {state.run_id}**: {state.state}. {state.message}{scores}".strip()


def loss_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Long-form (step, value, term) rows of the loss terms that are not zero throughout (stage 1 has no content
    or adversarial term), plus :func:`_frame`'s placeholder rows."""
    rows = [(r["step"], float(r[t]), t) for r in records if "loss" in r for t in LOSS_TERMS if t in r]
    drawn = {t for _, value, t in rows if value != 0}
    return _frame([row for row in rows if row[2] in drawn], "term", LOSS_TERMS)


def metric_frame(records: list[dict[str, Any]], metric: str) -> pd.DataFrame:
    """Long-form (step, value, series) rows of validation ``metric`` (psnr or ssim): the model against bicubic."""
    rows = []
    for r in records:
        for key, series in ((f"val_{metric}", "model"), (f"val_bicubic_{metric}", "bicubic")):
            if key in r:
                rows.append((r["step"], float(r[key]), series))
    return _frame(rows, "series", METRIC_SERIES)


def drawn_series(frame: pd.DataFrame) -> list[str]:
    """The series of ``frame`` (its third column) with a value other than zero: the ones the legend names."""
    values = frame["value"].fillna(0)
    return [str(name) for name in dict.fromkeys(frame.iloc[:, 2]) if (values[frame.iloc[:, 2] == name] != 0).any()]


def _frame(rows: list[tuple[int, float, str]], color: str, series: tuple[str, ...]) -> pd.DataFrame:
    """(step, value, ``color``) rows with fixed column types, plus one empty (NaN) row per possible series.

    Gradio's plot takes its colour domain from the first data it draws and keeps it, drawing series it meets later
    without a colour (invisibly); the empty rows put every series in that domain from the start. Vega-Lite skips
    rows without a value, so they draw nothing."""
    placeholders = [(0, math.nan, name) for name in series]
    frame = pd.DataFrame([*placeholders, *rows], columns=["step", "value", color])
    return frame.astype({"step": "int64", "value": "float64", color: "string"})


def preview(folder: Path) -> tuple[Image.Image, Image.Image] | None:
    """The latest validation preview as (bicubic, model) images, or None before the first validation."""
    try:
        pair = tuple(Image.open(folder / PREVIEW_DIR / name) for name in PREVIEW_FILES)
        for image in pair:
            image.load()
    except OSError:
        return None
    return pair[0], pair[1]
