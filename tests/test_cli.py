"""sr-upscale: files and folders, bad inputs named and skipped, exit codes, never overwriting inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def make_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)).save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(folder / "grey.jpg")
    good = (folder / "photo.png").read_bytes()
    (folder / "broken.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("not an image")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "sr_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bicubic_x4_writes_4x_image(tmp_path):
    make_inputs(tmp_path / "in")
    code = main(
        [
            str(tmp_path / "in" / "photo.png"),
            "-o",
            str(tmp_path / "out"),
            "--method",
            "bicubic",
            "--scale",
            "4",
        ]
    )
    assert code == 0
    out = Image.open(tmp_path / "out" / "photo_bicubic_x4.png")
    assert out.size == (68, 84)


def test_bad_files_named_skipped_and_exit_nonzero(tmp_path):
    make_inputs(tmp_path / "in")
    inputs = [str(tmp_path / "in" / n) for n in ("photo.png", "broken.png", "notes.txt", "grey.jpg")]
    result = run_cli(
        *inputs, "-o", str(tmp_path / "out"), "--method", "bicubic", "--scale", "2", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.png" in result.stderr and "notes.txt" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "grey_bicubic_x2.png",
        "photo_bicubic_x2.png",
    ]
    assert Image.open(tmp_path / "out" / "grey_bicubic_x2.png").mode == "L"


def test_folder_input_and_never_overwrites_inputs(tmp_path):
    folder = tmp_path / "in"
    make_inputs(folder)
    shutil.copy(folder / "photo.png", folder / "photo_bicubic_x2.png")
    before = (folder / "photo_bicubic_x2.png").read_bytes()
    code = main([str(folder), "-o", str(folder), "--method", "bicubic", "--scale", "2"])
    assert code == 1  # broken.png is picked up from the folder (notes.txt is not an image suffix)
    assert (folder / "photo_bicubic_x2.png").read_bytes() == before
    assert (folder / "photo_bicubic_x2-1.png").is_file()


def test_model_method_from_weights_dir(tmp_path, weights_dir):
    make_inputs(tmp_path / "in")
    code = main(
        [
            str(tmp_path / "in" / "photo.png"),
            "-o",
            str(tmp_path / "out"),
            "--method",
            "srresnet",
            "--scale",
            "2",
            "--tile",
            "32",
            "--weights-dir",
            str(weights_dir),
        ]
    )
    assert code == 0
    assert Image.open(tmp_path / "out" / "photo_srresnet_x2.png").size == (34, 42)


def test_list_methods_and_usage_errors(tmp_path, weights_dir, capsys):
    assert main(["--list-methods", "--weights-dir", str(weights_dir)]) == 0
    listed = capsys.readouterr().out
    for name in ("nearest", "bilinear", "bicubic", "lanczos", "fourier", "srresnet"):
        assert name in listed
    assert main([str(tmp_path), "-o", str(tmp_path / "o"), "--method", "nope"]) == 2
    assert main([str(tmp_path), "-o", str(tmp_path / "o"), "--method", "bicubic", "--scale", "9"]) == 2
    with pytest.raises(SystemExit):
        main([])


@pytest.mark.slow
def test_accelerate_launch_splits_inputs_across_processes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        Image.new("RGB", (8 + i, 8), (i * 30, 0, 0)).save(folder / f"img{i}.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        # On a CPU-only machine `--cpu` alone starts one process; --multi_gpu starts torchrun-style workers and
        # sr-upscale's PartialState falls back to the gloo backend.
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "-m",
            "sr_core.cli",
            str(folder),
            "-o",
            str(tmp_path / "out"),
            "--scale",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    assert "[process 0] 3 image(s)" in result.stderr and "[process 1] 3 image(s)" in result.stderr
