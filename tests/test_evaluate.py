"""sr_core.evaluate: the SR-literature protocol (mod-crop, PIL bicubic LR, Y channel, border) and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from sr_core.evaluate import evaluate, format_markdown, main


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as MATLAB's rgb2ycbcr computes it, on the 0..255 scale."""
    rgb = rgb.astype(np.float64) / 255
    return 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def reference_scores(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float]:
    a, b = y_channel(sr)[border:-border, border:-border], y_channel(hr)[border:-border, border:-border]
    mse = np.mean((a - b) ** 2)
    value = 10 * math.log10(255**2 / mse)
    s = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return value, s


@pytest.fixture
def hr_folder(tmp_path):
    rng = np.random.default_rng(5)
    directory = tmp_path / "hr"
    directory.mkdir()
    for i, (h, w) in enumerate([(50, 67), (64, 45)]):  # not multiples of 4: mod-crop is exercised
        y, x = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(x / 4 + i) * np.cos(y / 5) + rng.normal(0, 8, (h, w))
        img = np.stack([base, base * 0.8 + 20, 255 - base], axis=2)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(directory / f"p{i}.png")
    return directory


def nearest_upscaler(lr: Image.Image) -> Image.Image:
    return lr.resize((lr.width * 4, lr.height * 4), Image.Resampling.NEAREST)


def test_protocol_matches_an_independent_computation(hr_folder):
    result = evaluate(nearest_upscaler, 4, hr_folder)
    assert result["num_images"] == 2 and [r["name"] for r in result["images"]] == ["p0.png", "p1.png"]
    for row in result["images"]:
        full = np.asarray(Image.open(hr_folder / row["name"]).convert("RGB"))
        h, w = full.shape[0] // 4 * 4, full.shape[1] // 4 * 4
        assert (row["width"], row["height"]) == (w, h)
        hr = full[:h, :w]
        lr = Image.fromarray(hr).resize((w // 4, h // 4), Image.Resampling.BICUBIC)
        sr = np.asarray(lr.resize((w, h), Image.Resampling.NEAREST))
        expected_psnr, expected_ssim = reference_scores(sr, hr, 4)
        assert row["psnr"] == pytest.approx(expected_psnr, abs=1e-6)
        assert row["ssim"] == pytest.approx(expected_ssim, abs=2e-3)
        assert row["bicubic_psnr"] > row["psnr"]  # bicubic beats nearest on smooth content
    assert result["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in result["images"]]))
    assert "Y channel" in result["convention"]


def test_model_folder_is_scored_like_the_model_itself(hr_folder, tmp_path, tiny_srresnet):
    model = tiny_srresnet(scale=4)
    model.save_pretrained(tmp_path / "model")
    result = evaluate(str(tmp_path / "model"), 4, hr_folder, baseline=None)
    assert "bicubic_psnr" not in result["mean"]
    for row in result["images"]:
        full = np.asarray(Image.open(hr_folder / row["name"]).convert("RGB"))
        hr = full[: full.shape[0] // 4 * 4, : full.shape[1] // 4 * 4]
        lr = np.array(Image.fromarray(hr).resize((hr.shape[1] // 4, hr.shape[0] // 4), Image.Resampling.BICUBIC))
        with torch.no_grad():
            out = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)
        sr = (out[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        assert row["psnr"] == pytest.approx(reference_scores(sr, hr, 4)[0], abs=0.01)


def test_cli_prints_a_markdown_table_and_writes_json(hr_folder, tmp_path, capsys):
    target = tmp_path / "out" / "result.json"
    assert main(["--method", "bilinear", "--scale", "4", "--data", str(hr_folder), "--json", str(target)]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0] == "| image | bicubic PSNR | bicubic SSIM | bilinear PSNR | bilinear SSIM |"
    assert lines[2].startswith("| p0.png |") and lines[4].startswith("| **mean (2)** |")
    data = json.loads(target.read_text())
    assert data["method"] == "bilinear" and len(data["images"]) == 2
    mean_cells = lines[4].split("|")[2:6]
    assert float(mean_cells[0]) == pytest.approx(data["mean"]["bicubic_psnr"], abs=0.005)
    assert float(mean_cells[2]) == pytest.approx(data["mean"]["psnr"], abs=0.005)


def test_cli_reports_errors(hr_folder, tmp_path, capsys):
    assert main(["--method", "no-such-method", "--data", str(hr_folder)]) == 2
    assert "no-such-method" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--method", "bicubic", "--data", str(tmp_path / "empty")]) == 2
    assert "No images" in capsys.readouterr().err


def test_centre_crop_and_limit(hr_folder):
    result = evaluate("bicubic", 2, hr_folder, center_crop=32, max_images=1, baseline=None)
    assert result["num_images"] == 1 and (result["images"][0]["width"], result["images"][0]["height"]) == (32, 32)
    assert "| **mean (1)** |" in format_markdown(result)


def test_degrade_scores_the_named_degradation_of_the_bicubic_lr(hr_folder):
    """--degrade jpeg50: the LR is PIL bicubic, then a quality-50 JPEG, checked by building it independently."""
    import io

    result = evaluate(nearest_upscaler, 4, hr_folder, degrade="jpeg50")
    clean = evaluate(nearest_upscaler, 4, hr_folder)
    assert result["degrade"] == "jpeg50" and "JPEG quality 50" in result["convention"]
    for row, clean_row in zip(result["images"], clean["images"], strict=True):
        full = np.asarray(Image.open(hr_folder / row["name"]).convert("RGB"))
        hr = full[: full.shape[0] // 4 * 4, : full.shape[1] // 4 * 4]
        lr = Image.fromarray(hr).resize((hr.shape[1] // 4, hr.shape[0] // 4), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        lr.save(buffer, format="JPEG", quality=50)
        sr = np.asarray(Image.open(buffer).convert("RGB").resize((hr.shape[1], hr.shape[0]), Image.NEAREST))
        assert row["psnr"] == pytest.approx(reference_scores(sr, hr, 4)[0], abs=1e-6)
        assert row["bicubic_psnr"] < clean_row["bicubic_psnr"]


def test_degrade_is_reproducible_and_the_cli_takes_it(hr_folder, capsys):
    a = evaluate("bicubic", 4, hr_folder, degrade="noise10+jpeg75", baseline=None)
    b = evaluate("bicubic", 4, hr_folder, degrade="noise10+jpeg75", baseline=None)
    assert a["mean"] == b["mean"]
    with pytest.raises(ValueError, match="unknown degradation"):
        evaluate("bicubic", 4, hr_folder, degrade="jpeg10")
    assert main(["--method", "bilinear", "--data", str(hr_folder), "--degrade", "blur+jpeg60"]) == 0
    assert "Gaussian blur" in capsys.readouterr().out


def test_the_cli_scores_several_degradations_in_one_table(hr_folder, tmp_path, capsys):
    """A row per named degradation whose numbers are the single-degradation means; the JSON lists each result."""
    out = tmp_path / "r.json"
    specs = ["bicubic", "jpeg50", "blur+jpeg60"]
    assert main(["--method", "bilinear", "--data", str(hr_folder), "--degrade", *specs, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert [r["degrade"] for r in saved] == specs
    for spec, result in zip(specs, saved, strict=True):
        m = evaluate("bilinear", 4, hr_folder, degrade=spec)["mean"]
        assert result["mean"] == pytest.approx(m)
        row = f"| `{spec}` | {m['bicubic_psnr']:.2f} | {m['bicubic_ssim']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} | "
        assert row + f"{m['psnr'] - m['bicubic_psnr']:+.2f} |" in table
    assert "| LR (x4, 2 images) | bicubic PSNR | bicubic SSIM | bilinear PSNR | bilinear SSIM | gain (dB) |" in table
    assert "`jpeg50`: JPEG quality 50" in table and "Y channel" in table
    with pytest.raises(SystemExit) as exit_info:
        main(["--method", "bilinear", "--data", str(hr_folder), "--degrade", "jpeg50", "jpeg10"])
    assert exit_info.value.code == 2 and "invalid choice: 'jpeg10'" in capsys.readouterr().err


def test_compare_models_takes_degrade_and_draws_the_input(hr_folder, tmp_path, capsys):
    from train.compare_models import main as compare

    figure = tmp_path / "fig.png"
    code = compare(["--data", str(hr_folder), "--scale", "4", "--methods", "bicubic", "nearest",
                    "--degrade", "jpeg75", "--figure", str(figure), "--box", "0", "0", "32"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "LR jpeg75" in out and "| bicubic |" in out and "| nearest |" in out
    # Ground truth, the degraded input and two methods, each 32 px at 3x zoom with a gap of 6.
    assert Image.open(figure).width == 4 * 96 + 3 * 6
