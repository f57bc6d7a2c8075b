"""Stopping a training run from outside (a STOP file or SIGTERM), its progress records and validation preview."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_helpers import log_records, loss_records, run_training

from train.checkpoint import MARKER
from train.run_control import LAUNCHED_ENV, PREVIEW_DIR, PREVIEW_FILES, STOP_FILE, Throughput
from train.train import EXIT_OK

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
# Plain runs: constant learning rate, no precise BN, no validation, no checkpoint but the one a stop writes.
RUN = ("train.precise_bn_batches=0", "train.schedule=constant", "train.warmup_steps=0", "validate_every=0",
       "checkpoint_every=1000")  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("val", 1)):
        (root / split).mkdir()
        for i in range(count):
            noise = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            Image.fromarray(noise).resize((64, 64), Image.Resampling.BICUBIC).save(root / split / f"img{i}.png")
    return root / "train", root / "val"


def run(folders, out: Path, *extra: str) -> int:
    return run_training(folders, out, *RUN, *extra)


def when_step(out: Path, step: int, action, timeout: float = 240) -> threading.Thread:
    """Run ``action`` from another thread once the trainer (running in this one) has logged ``step``."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (out / "log.jsonl").is_file() and any(r["step"] >= step for r in loss_records(out)):
                action()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def stopped_at(out: Path) -> int:
    last = log_records(out)[-1]
    assert last["event"] == "stopped", last
    return last["step"]


def test_stop_file_checkpoints_the_current_step_and_resume_continues_it(folders, tmp_path, capsys):
    out = tmp_path / "run"
    when_step(out, 2, lambda: (out / STOP_FILE).touch())
    assert run(folders, out, "train.steps=5000") == EXIT_OK
    step = stopped_at(out)
    assert 2 <= step < 5000
    assert f"stopped at step {step} of 5000" in capsys.readouterr().out
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == step
    assert json.loads((out / "last/training.json").read_text())["step"] == step
    assert not (out / STOP_FILE).exists()
    assert [r["step"] for r in loss_records(out)] == list(range(1, step + 1))

    assert run(folders, out, f"train.steps={step + 2}", "--resume") == EXIT_OK
    assert run(folders, tmp_path / "whole", f"train.steps={step + 2}") == EXIT_OK
    resumed, whole = loss_records(out), loss_records(tmp_path / "whole")
    assert [r["step"] for r in resumed] == list(range(1, step + 3))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in whole]  # the continuation is exact


def test_sigterm_stops_gracefully_with_a_checkpoint(folders, tmp_path, capsys):
    out = tmp_path / "run"
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    when_step(out, 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert run(folders, out, "train.steps=5000") == EXIT_OK
    step = stopped_at(out)
    output = capsys.readouterr().out
    assert "SIGTERM" in output and f"stopped at step {step}" in output
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == step
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored after the run


def test_a_stale_stop_file_is_removed_at_start(folders, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / STOP_FILE).touch()
    assert run(folders, out, "train.steps=2") == EXIT_OK
    assert [r["step"] for r in loss_records(out)] == [1, 2]
    assert not any(r.get("event") == "stopped" for r in log_records(out))
    assert not (out / STOP_FILE).exists()


def test_a_stop_asked_for_while_the_trainer_starts_is_kept(folders, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    monkeypatch.setenv(LAUNCHED_ENV, repr(time.time()))  # the app launched it, then Stop was pressed at once
    (out / STOP_FILE).touch()
    assert run(folders, out, "train.steps=50") == EXIT_OK
    assert stopped_at(out) == 1 and not (out / STOP_FILE).exists()


def test_progress_records_and_the_validation_preview(folders, tmp_path):
    out = tmp_path / "run"
    assert run(folders, out, "train.steps=4", "log_every=2", "validate_every=2") == EXIT_OK
    progress = [r for r in log_records(out) if r.get("event") == "progress"]
    assert [r["step"] for r in progress] == [2, 4]
    assert all(r["total_steps"] == 4 and r["patches_per_s"] > 0 and r["elapsed_s"] > 0 for r in progress)
    assert progress[-1]["eta_s"] == 0 and progress[0]["eta_s"] >= 0  # 2 steps to go at step 2: soon
    assert [r["step"] for r in loss_records(out)] == [2, 4]  # the loss records are unchanged by the progress records
    vals = [r for r in log_records(out) if "val_psnr" in r]
    assert [(v["step"], v["preview"], v["preview_image"]) for v in vals] == [
        (s, PREVIEW_DIR, "img0.png") for s in (2, 4)
    ]
    bicubic, sr = (Image.open(out / PREVIEW_DIR / name) for name in PREVIEW_FILES)
    assert bicubic.size == sr.size == (64, 64)
    assert not np.array_equal(np.asarray(bicubic), np.asarray(sr))


def test_throughput_is_patches_per_second_since_the_last_record_and_the_time_left_at_that_pace():
    ticks = iter([100.0, 102.0, 103.0])
    speed = Throughput(total_steps=10, patches_per_step=8, start_step=0, clock=lambda: next(ticks))
    assert speed.record(4) == {"step": 4, "event": "progress", "total_steps": 10, "elapsed_s": 2.0,
                               "patches_per_s": 16.0, "eta_s": 3.0}  # fmt: skip
    assert speed.record(8) == {"step": 8, "event": "progress", "total_steps": 10, "elapsed_s": 3.0,
                               "patches_per_s": 32.0, "eta_s": 0.5}  # fmt: skip
