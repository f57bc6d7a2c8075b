"""The weights shipped in sr_core/weights: intact (sha256), offered, and better than bicubic where they should be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_core
from sr_core.classical import downscale, mod_crop
from sr_core.metrics import high_frequency_ratio, psnr
from sr_core.registry import PACKAGE_WEIGHTS_DIR, read_manifest, sha256_file

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = read_manifest(PACKAGE_WEIGHTS_DIR)["models"]
SAMPLE = ROOT / "examples" / "astronaut.png"


def _id(entry: dict) -> str:
    return f"{entry['name']}_x{entry['scale']}"


def _sample(scale: int) -> tuple[Image.Image, np.ndarray]:
    hr = mod_crop(Image.open(SAMPLE).convert("RGB"), scale)
    return downscale(hr, scale), np.asarray(hr)


def test_expected_models_are_shipped():
    shipped = {_id(e) for e in ENTRIES}
    assert "srresnet_x4" in shipped


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_shipped_model_is_intact_and_offered(entry):
    path = PACKAGE_WEIGHTS_DIR / entry["file"]
    assert sha256_file(path) == entry["sha256"]
    offered = {m.name: m for m in sr_core.available_methods()}
    assert entry["name"] in offered and entry["scale"] in offered[entry["name"]].scales
    for key in ("training", "evaluation"):
        assert key in entry, f"manifest entry {_id(entry)} lacks '{key}'"
    assert entry["evaluation"]["psnr"] > 0 and entry["training"]["command"]


@pytest.mark.parametrize("entry", ENTRIES, ids=_id)
def test_shipped_model_quality_on_a_bundled_image(entry):
    scale = entry["scale"]
    lr, hr = _sample(scale)
    out = sr_core.upscale(lr, entry["name"], scale)
    assert out.size == (hr.shape[1], hr.shape[0]) and out.mode == "RGB"
    bicubic = np.asarray(sr_core.upscale(lr, "bicubic", scale))
    ours = np.asarray(out)
    if entry["name"] == "srresnet":
        assert psnr(ours, hr, crop_border=scale) > psnr(bicubic, hr, crop_border=scale)
    else:  # the GAN trades PSNR for detail: it must restore more high frequencies than bicubic does
        assert high_frequency_ratio(ours, hr, crop_border=scale) > high_frequency_ratio(bicubic, hr, crop_border=scale)
