"""What the trainer tests share: the command line of a tiny in-process run (a one-block SRResNet with 8 channels on
32-pixel patches), the records of its ``log.jsonl``, and the app with the Train tab for the tab's tests."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accelerate.state import AcceleratorState, GradientState

from train.train import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ("data.patch_size=32", "data.batch_size=2", "data.num_workers=0", "model.num_blocks=1", "model.channels=8",
        "model.d_channels=8", "log_with=none", "log_every=1")  # fmt: skip


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide state, so that the next run builds its Accelerator afresh."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def tiny_args(folders: tuple[Path, Path | None], out: Path, *overrides: str) -> list[str]:
    """``train/train.py`` arguments for a tiny x4 run on (train, val) folders (val None: no val_dir given) into
    ``out``; ``overrides`` come last, so they win."""
    train_dir, val_dir = folders
    return [
        "--config", str(ROOT / "train/configs/srresnet_x4.yaml"), f"output_dir={out}", f"data.train_dir={train_dir}",
        *([f"data.val_dir={val_dir}"] if val_dir is not None else []), f"data.cache_dir={out.parent / 'hf-cache'}",
        *TINY, *overrides,
    ]  # fmt: skip


def run_training(folders: tuple[Path, Path | None], out: Path, *overrides: str) -> int:
    """One tiny run in this process (see :func:`tiny_args`); its exit code."""
    try:
        return main(tiny_args(folders, out, *overrides))
    finally:
        reset_accelerate_state()


def log_records(out: Path) -> list[dict]:
    """Every record of the run's ``log.jsonl``."""
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def loss_records(out: Path) -> list[dict]:
    """The training-loss records of ``log.jsonl`` (not validation, progress or stop events)."""
    return [r for r in log_records(out) if "loss" in r]


@contextlib.contextmanager
def train_tab_app(base: Path) -> Iterator[tuple[str, Any]]:
    """The app with the Train tab on ``base/root``, launched; yields (its URL, its AppConfig).

    Its ``srresnet`` method (the runs' starting weights) is a tiny one-block SRResNet. On the way out a run that a
    failed test left going is stopped (it would outlive the tests otherwise), then the app is closed.
    """
    import torch

    from sr_app.handlers import AppConfig
    from sr_app.training import training_tabs
    from sr_app.ui import build_demo
    from sr_core.models import SRResNet
    from sr_core.registry import write_manifest_entry

    torch.manual_seed(0)
    write_manifest_entry(base / "weights", SRResNet(scale=4, num_blocks=1, channels=8).eval(), name="srresnet",
                         label="SRResNet", description="tiny test model")  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(base / "gradio"))
        config = AppConfig(weights_dir=str(base / "weights"), output_dir=str(base / "outputs"), device="cpu")
        demo = build_demo(config, extra_tabs=training_tabs(True, str(base / "root")))
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
        try:
            yield url, config
        finally:
            stop_leftover_run((base / "root").resolve())
            demo.close()


def stop_leftover_run(root: Path, timeout: float = 60) -> None:
    """Ask the active run under the training ``root``, if any, to stop, and wait for it to end."""
    from sr_app.training.launcher import RunManager

    manager = RunManager(root)
    run = manager.active()
    if run:
        manager.stop(run)
    deadline = time.monotonic() + timeout
    while run and manager.alive(run) and time.monotonic() < deadline:
        time.sleep(0.2)
