"""sr-upscale: files and folders, bad inputs named and skipped, exit codes, never overwriting inputs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_core
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
    result = run_cli(*inputs, "-o", str(tmp_path / "out"), "--method", "bicubic", "--scale", "2", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "broken.png" in result.stderr and "notes.txt" in result.stderr
    named = [line for line in result.stderr.splitlines() if "broken.png" in line or "notes.txt" in line]
    assert named and all(line.count("broken.png") + line.count("notes.txt") == 1 for line in named), named
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


def photo(folder: Path, name: str = "photo.png", size: tuple[int, int] = (20, 16), mode: str = "RGB") -> Path:
    """A crop of a bundled photo (smooth enough for 8-bit references), saved under ``name``."""
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.open(ROOT / "examples" / "astronaut.png").convert(mode).crop((200, 60, 200 + size[0], 60 + size[1]))
    image.save(folder / name)
    return folder / name


def test_outscale_with_a_model_writes_a_jpeg_of_exactly_that_size(tmp_path, weights_dir):
    src = photo(tmp_path / "in")  # 20x16
    args = [str(src), "-o", str(tmp_path / "out"), "--method", "srresnet", "--weights-dir", str(weights_dir)]
    assert main([*args, "--outscale", "3.5", "--ext", "jpg"]) == 0
    out = Image.open(tmp_path / "out" / "photo_srresnet_x3.5.jpg")
    assert out.format == "JPEG" and out.size == (70, 56)
    # Lossless: the x4 model output resized by PIL's Lanczos is the reference.
    assert main([*args, "--outscale", "3.5"]) == 0
    result = np.asarray(Image.open(tmp_path / "out" / "photo_srresnet_x3.5.png")).astype(int)
    native = sr_core.upscale(src, "srresnet", 4, weights_dir=weights_dir)
    expected = np.asarray(native.resize((70, 56), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(result - expected).max() <= 2


def test_outscale_with_a_classical_method_resizes_straight_to_the_size(tmp_path):
    src = photo(tmp_path / "in", size=(21, 17))
    assert main([str(src), "-o", str(tmp_path / "out"), "--method", "bicubic", "--outscale", "2.5"]) == 0
    result = np.asarray(Image.open(tmp_path / "out" / "photo_bicubic_x2.5.png")).astype(int)
    expected = np.asarray(Image.open(src).resize((53, 43), Image.Resampling.BICUBIC)).astype(int)
    assert result.shape == (43, 53, 3) and np.abs(result - expected).max() <= 2


def test_ext_auto_keeps_the_format_and_alpha_forces_png(tmp_path, capsys):
    folder = tmp_path / "in"
    photo(folder, "a.jpg")
    photo(folder, "b.webp")
    photo(folder, "c.png")
    photo(folder, "d.bmp")
    photo(folder, "e.png", mode="RGBA")
    assert main([str(folder), "-o", str(tmp_path / "auto"), "--scale", "2", "--ext", "auto"]) == 0
    formats = {p.name: Image.open(p).format for p in (tmp_path / "auto").iterdir()}
    assert formats == {
        "a_bicubic_x2.jpg": "JPEG",
        "b_bicubic_x2.webp": "WEBP",
        "c_bicubic_x2.png": "PNG",
        "d_bicubic_x2.png": "PNG",
        "e_bicubic_x2.png": "PNG",
    }
    capsys.readouterr()
    assert main([str(folder / "e.png"), "-o", str(tmp_path / "jpg"), "--ext", "jpg"]) == 0
    assert [p.name for p in (tmp_path / "jpg").iterdir()] == ["e_bicubic_x4.png"]
    assert Image.open(tmp_path / "jpg" / "e_bicubic_x4.png").mode == "RGBA"
    assert "alpha" in capsys.readouterr().err


@pytest.mark.parametrize("ext, fmt", [("jpg", "JPEG"), ("webp", "WEBP")])
def test_quality_sets_the_lossy_quality(tmp_path, ext, fmt):
    src = photo(tmp_path / "in", size=(64, 48))
    sizes = {}
    for quality in (20, 95):
        out = tmp_path / f"q{quality}"
        assert main([str(src), "-o", str(out), "--scale", "2", "--ext", ext, "--quality", str(quality)]) == 0
        written = out / f"photo_bicubic_x2.{ext}"
        assert Image.open(written).format == fmt
        sizes[quality] = written.stat().st_size
    assert sizes[20] < sizes[95] * 0.7
    # Independent check: PIL writing the same upscale at quality 20 gives the same bytes for JPEG.
    if ext == "jpg":
        ref = tmp_path / "ref.jpg"
        sr_core.upscale(src, "bicubic", 2).save(ref, quality=20)
        assert ref.read_bytes() == (tmp_path / "q20" / "photo_bicubic_x2.jpg").read_bytes()


def test_suffix_template_and_empty_suffix(tmp_path):
    src = photo(tmp_path / "in")
    assert main([str(src), "-o", str(tmp_path / "out"), "--outscale", "1.5", "--suffix", "{method}-{scale}x"]) == 0
    assert main([str(src), "-o", str(tmp_path / "out"), "--scale", "2", "--suffix", "upscaled"]) == 0
    assert main([str(src), "-o", str(tmp_path / "out"), "--scale", "2", "--suffix", ""]) == 0
    assert main([str(src), "-o", str(src.parent), "--scale", "2", "--suffix", ""]) == 0  # never over the input
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo.png",
        "photo_bicubic-1.5x.png",
        "photo_upscaled.png",
    ]
    assert Image.open(tmp_path / "out" / "photo_bicubic-1.5x.png").size == (30, 24)
    assert Image.open(src).size == (20, 16) and (src.parent / "photo-1.png").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tile", "0"], "--tile must be at least 32"),
        (["--tile", "16", "--method", "srresnet"], "--tile must be at least 32"),
        (["--tile-overlap", "-1"], "--tile-overlap"),
        (["--suffix", "{name}"], "placeholders"),
        (["--suffix", "{scale:>3}"], "placeholders"),
        (["--suffix", "a/b"], "path separator"),
        (["--method", "srresnet", "--scale", "3"], "not x3"),
    ],
)
def test_usage_errors_exit_2_before_any_file_is_touched(tmp_path, weights_dir, capsys, extra, message):
    src = photo(tmp_path / "in")
    out = tmp_path / "out"
    assert main([str(src), "-o", str(out), "--weights-dir", str(weights_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "extra", [["--scale", "2", "--outscale", "3"], ["--outscale", "9"], ["--outscale", "0.5"], ["--quality", "0"]]
)
def test_option_values_argparse_refuses_exit_2(tmp_path, extra):
    with pytest.raises(SystemExit) as info:
        main([str(photo(tmp_path / "in")), "-o", str(tmp_path / "out"), *extra])
    assert info.value.code == 2 and not (tmp_path / "out").exists()


def test_python_m_sr_core_is_the_same_command_with_a_version(tmp_path):
    photo(tmp_path, "p.png")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    version = subprocess.run(
        [sys.executable, "-m", "sr_core", "--version"], env=env, capture_output=True, text=True, timeout=300
    )
    assert version.returncode == 0 and version.stdout.strip() == f"sr-upscale {sr_core.__version__}"
    project = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert project and sr_core.__version__ == project.group(1)
    tile = subprocess.run(
        [sys.executable, "-m", "sr_core", "p.png", "--tile", "0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tile.returncode == 2 and "--tile" in tile.stderr and not (tmp_path / "results").exists()
    run = subprocess.run(
        [sys.executable, "-m", "sr_core", "p.png", "--outscale", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "results" / "p_bicubic_x2.png").size == (40, 32)  # default folder: ./results


def test_png_compression_and_memory_budget_flags(tmp_path):
    make_inputs(tmp_path / "in")
    src = str(tmp_path / "in" / "photo.png")
    for level in ("0", "9"):
        assert main([src, "-o", str(tmp_path / level), "--method", "bicubic", "--png-compression", level]) == 0
    fast, small = (tmp_path / "0" / "photo_bicubic_x4.png"), (tmp_path / "9" / "photo_bicubic_x4.png")
    assert np.array_equal(np.asarray(Image.open(fast)), np.asarray(Image.open(small)))
    assert small.stat().st_size < fast.stat().st_size
    assert main([src, "-o", str(tmp_path / "b"), "--method", "bicubic", "--memory-budget", "16"]) == 0
    for flag, value in (("--png-compression", "10"), ("--memory-budget", "8")):
        result = run_cli(src, "-o", str(tmp_path / "x"), flag, value, cwd=tmp_path)
        assert result.returncode == 2 and "expected a whole number from" in result.stderr
        assert not (tmp_path / "x").exists()
