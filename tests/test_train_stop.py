"""Stopping a training run from outside (a STOP file or SIGTERM), its progress records and validation preview."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from accelerate.state import AcceleratorState, GradientState
from PIL import Image

from train.checkpoint import MARKER
from train.run_control import PREVIEW_DIR, PREVIEW_FILES, STOP_FILE
from train.train import EXIT_OK, main

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def tiny_args(folders: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    train_dir, val_dir = folders
    return [
        "--config", str(ROOT / "train/configs/srresnet_x4.yaml"),
        f"output_dir={out}", f"data.train_dir={train_dir}", f"data.val_dir={val_dir}",
        f"data.cache_dir={out.parent / 'hf-cache'}", "data.patch_size=32", "data.batch_size=2",
        "data.num_workers=0", "model.num_blocks=1", "model.channels=8", "train.precise_bn_batches=0",
        "train.schedule=constant", "train.warmup_steps=0", "log_with=none", "log_every=1", "validate_every=0",
        "checkpoint_every=1000", *extra,
    ]  # fmt: skip


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[dict]:
    return [r for r in records(out) if "loss" in r]


def launch(folders, out: Path) -> subprocess.Popen:
    """The trainer as its own process (a long run, so that it is still going when asked to stop)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "train/train.py"), *tiny_args(folders, out, "train.steps=5000")]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_step(out: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "log.jsonl").is_file() and any(r["step"] >= step for r in losses(out)):
            return
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no step {step} within {timeout} s")


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == EXIT_OK, output[-3000:]
    return output


def stopped_at(out: Path) -> int:
    last = records(out)[-1]
    assert last["event"] == "stopped", last
    return last["step"]


def run(folders, out: Path, *extra: str) -> int:
    try:
        return main(tiny_args(folders, out, *extra))
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


@pytest.mark.slow
def test_stop_file_checkpoints_the_current_step_and_resume_continues_it(folders, tmp_path):
    out = tmp_path / "run"
    proc = launch(folders, out)
    wait_for_step(out, proc, 2)
    (out / STOP_FILE).touch()
    output = finish(proc)
    step = stopped_at(out)
    assert 2 <= step < 5000
    assert f"stopped at step {step} of 5000" in output and "Traceback" not in output
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == step
    assert json.loads((out / "last/training.json").read_text())["step"] == step
    assert not (out / STOP_FILE).exists()
    assert [r["step"] for r in losses(out)] == list(range(1, step + 1))

    assert run(folders, out, f"train.steps={step + 2}", "--resume") == EXIT_OK
    assert run(folders, tmp_path / "whole", f"train.steps={step + 2}") == EXIT_OK
    resumed, whole = losses(out), losses(tmp_path / "whole")
    assert [r["step"] for r in resumed] == list(range(1, step + 3))
    for a, b in zip(resumed[step:], whole[step:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.slow
def test_sigterm_stops_gracefully_with_a_checkpoint(folders, tmp_path):
    out = tmp_path / "run"
    proc = launch(folders, out)
    wait_for_step(out, proc, 1)
    proc.send_signal(signal.SIGTERM)
    output = finish(proc)
    step = stopped_at(out)
    assert "SIGTERM" in output and f"stopped at step {step}" in output
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == step


def test_a_stale_stop_file_is_removed_at_start(folders, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / STOP_FILE).touch()
    assert run(folders, out, "train.steps=2") == EXIT_OK
    assert [r["step"] for r in losses(out)] == [1, 2]
    assert not any(r.get("event") == "stopped" for r in records(out))
    assert not (out / STOP_FILE).exists()


def test_progress_records_and_the_validation_preview(folders, tmp_path):
    out = tmp_path / "run"
    assert run(folders, out, "train.steps=4", "log_every=2", "validate_every=2") == EXIT_OK
    progress = [r for r in records(out) if r.get("event") == "progress"]
    assert [r["step"] for r in progress] == [2, 4]
    assert all(r["total_steps"] == 4 and r["patches_per_s"] > 0 and r["elapsed_s"] > 0 for r in progress)
    assert progress[-1]["eta_s"] == 0 and progress[0]["eta_s"] > 0
    assert [r["step"] for r in losses(out)] == [2, 4]  # the loss records are unchanged by the progress records
    vals = [r for r in records(out) if "val_psnr" in r]
    assert [(v["step"], v["preview"], v["preview_image"]) for v in vals] == [(s, PREVIEW_DIR, "img0.png") for s in (2, 4)]
    bicubic, sr = (Image.open(out / PREVIEW_DIR / name) for name in PREVIEW_FILES)
    assert bicubic.size == sr.size == (64, 64)
    assert not np.array_equal(np.asarray(bicubic), np.asarray(sr))
