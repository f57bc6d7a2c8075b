"""Mixed precision: the config's default inherits `accelerate launch --mixed_precision` / `accelerate config`, an
explicit value wins, and the start-up line says which it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_helpers import ROOT, run_training, tiny_args

from train.config import INHERIT, LAUNCHER_PRECISION_ENV, ConfigError, load_config
from train.train import EXIT_OK

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
CONFIGS = sorted((ROOT / "train" / "configs").glob("*.yaml"))
# Two steps without validation (no val_dir), precise BN or warm-up.
RUN = ("validate_every=0", "train.steps=2", "train.precise_bn_batches=0", "train.warmup_steps=0", "checkpoint_every=2")


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    y, x = np.mgrid[0:48, 0:48] / 48.0
    for i in range(3):
        rgb = np.stack([np.sin(2 * np.pi * (x + i / 3)), np.cos(2 * np.pi * y), x * y], axis=2)
        Image.fromarray(((rgb + 1) * 127.5).clip(0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def start_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("stage srresnet:")]
    assert len(lines) == 1, output[-3000:]
    return lines[0]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_inherit_the_launchers_precision(path):
    assert load_config(path).mixed_precision == INHERIT


def test_default_inherits_and_explicit_values_stay_valid():
    assert load_config().mixed_precision == INHERIT
    for value in ("no", "fp16", "bf16"):
        config = load_config(overrides=[f"mixed_precision={value}"])
        assert config.accelerator_mixed_precision() == value
        assert config.mixed_precision_source() == "from the config"
    assert load_config().accelerator_mixed_precision() is None
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(overrides=["mixed_precision=fp8"])


def test_inherit_takes_the_launchers_value(train_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LAUNCHER_PRECISION_ENV, "bf16")
    assert run_training((train_dir, None), tmp_path / "run", *RUN) == EXIT_OK
    line = start_line(capsys.readouterr().out)
    assert "mixed precision bf16 (from the launcher / accelerate config)" in line


def test_explicit_config_value_beats_the_launcher(train_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LAUNCHER_PRECISION_ENV, "bf16")
    assert run_training((train_dir, None), tmp_path / "run", *RUN, "mixed_precision=no") == EXIT_OK
    assert "mixed precision no (from the config)" in start_line(capsys.readouterr().out)


def test_without_a_launcher_it_is_fp32_and_says_so(train_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(LAUNCHER_PRECISION_ENV, raising=False)
    assert run_training((train_dir, None), tmp_path / "run", *RUN) == EXIT_OK
    assert "mixed precision no (default: no launcher" in start_line(capsys.readouterr().out)


@pytest.mark.slow
def test_accelerate_launch_mixed_precision_bf16_is_used(train_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
        "--dynamo_backend", "no", "--mixed_precision", "bf16",
        str(ROOT / "train/train.py"), *tiny_args((train_dir, None), tmp_path / "run", *RUN),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "mixed precision bf16 (from the launcher / accelerate config)" in start_line(proc.stdout)
