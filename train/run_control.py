"""What lets a training run be watched and stopped from outside: the stop request, progress records, previews.

A run stops gracefully when ``output_dir/STOP`` appears (any process, any OS) or on SIGTERM/SIGINT: the trainer
finishes the step, checkpoints it, exports ``last/`` and exits 0, so ``--resume`` continues. Progress goes to
``log.jsonl`` as ``{"step", "event": "progress", "total_steps", "elapsed_s", "patches_per_s", "eta_s"}`` records
(separate from the loss records, which stay identical between an interrupted and a whole run), and each
validation writes the first validation image's model output and bicubic baseline to ``output_dir/val_preview/``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from sr_core.classical import mod_crop
from sr_core.data import ImageList, center_crop
from sr_core.errors import SRError
from sr_core.evaluate import make_eval_lr
from sr_core.io import save_image

STOP_FILE = "STOP"
LAUNCHED_ENV = "SR_STUDIO_LAUNCHED_AT"
"""Set by a launcher (the app's Train tab) to the time it started the trainer, after removing any stale STOP file
itself: a STOP file the trainer then finds is a request made while it was starting, and is honoured."""
PREVIEW_DIR = "val_preview"
PREVIEW_FILES = ("bicubic.png", "sr.png")
PREVIEW_SIZE = 256
"""Side of the centre crop of the first validation image that the preview shows (HR pixels)."""

_signalled = threading.Event()


def _on_signal(signum: int, frame: Any) -> None:
    """First SIGINT/SIGTERM: ask for a stop at the next step; a second SIGINT aborts at once (the default)."""
    _signalled.set()
    if signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"{signal.Signals(signum).name}: stopping after this step (checkpoint, then exit)", flush=True)


@contextlib.contextmanager
def graceful_signals() -> Iterator[None]:
    """While inside, SIGTERM and SIGINT request a graceful stop instead of killing the run; restored after."""
    _signalled.clear()
    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread: signals keep their handlers, the STOP file still works
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def clear_stop(out: Path, is_main: bool) -> None:
    """Forget a stop asked for before this run started (a stale STOP file left by an earlier one), unless a
    launcher that cleared it already says when it started the run (:data:`LAUNCHED_ENV`)."""
    if is_main and not os.environ.get(LAUNCHED_ENV):
        (out / STOP_FILE).unlink(missing_ok=True)


def stop_requested(out: Path, accelerator: Any) -> bool:
    """Whether any process was asked to stop (STOP file or signal); every process gets the same answer."""
    wanted = _signalled.is_set() or (out / STOP_FILE).exists()
    if accelerator.num_processes == 1:
        return wanted
    flag = torch.tensor([1.0 if wanted else 0.0], device=accelerator.device)
    return bool(accelerator.gather(flag).max().item() > 0)


class Throughput:
    """Wall-clock speed between progress records: patches per second and the time left at that pace."""

    def __init__(
        self, *, total_steps: int, patches_per_step: int, start_step: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total_steps = total_steps
        self.patches_per_step = patches_per_step
        self.clock = clock
        self.started = self.last_time = clock()
        self.last_step = start_step

    def record(self, step: int) -> dict[str, Any]:
        """The ``progress`` log record at ``step`` (speed measured since the previous one)."""
        now = self.clock()
        seconds_per_step = (now - self.last_time) / max(step - self.last_step, 1)
        self.last_time, self.last_step = now, step
        return {
            "step": step,
            "event": "progress",
            "total_steps": self.total_steps,
            "elapsed_s": round(now - self.started, 3),
            "patches_per_s": round(self.patches_per_step / seconds_per_step, 3) if seconds_per_step > 0 else None,
            "eta_s": round(seconds_per_step * (self.total_steps - step), 1),
        }


def preview_pair(upscaler: Callable[[Image.Image], Image.Image], hr: Image.Image, scale: int, degrade: str) -> tuple:
    """(bicubic, model output) of a centre crop of ``hr``, made from the validation LR as validation makes it."""
    crop = mod_crop(center_crop(hr.convert("RGB"), PREVIEW_SIZE), scale)
    lr = make_eval_lr(crop, scale, degrade)
    return lr.resize(crop.size, Image.Resampling.BICUBIC), upscaler(lr)


def write_val_preview(
    upscaler: Callable[[Image.Image], Image.Image], images: ImageList, out: Path, *, scale: int, degrade: str
) -> dict[str, Any]:
    """Write the first validation image's bicubic and model output to ``val_preview/``; the log record's extra keys.

    A preview that cannot be made (an odd image, a full disk) is reported and skipped: it never stops the run."""
    folder = out / PREVIEW_DIR
    try:
        bicubic, sr = preview_pair(upscaler, Image.fromarray(images.rgb(0)), scale, degrade)
        for name, image in zip(PREVIEW_FILES, (bicubic, sr), strict=True):
            save_image(image, folder / name)
    except (SRError, OSError, ValueError) as exc:
        print(f"warning: no validation preview: {exc}", flush=True)
        return {}
    return {"preview": PREVIEW_DIR, "preview_image": images.name(0)}
