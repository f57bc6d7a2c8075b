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


REAL_MODELS = [e for e in ENTRIES if e["name"].startswith("real-")]


def _degraded_sample(spec: str) -> tuple[Image.Image, np.ndarray]:
    from sr_core.evaluate import make_eval_lr

    hr = mod_crop(Image.open(SAMPLE).convert("RGB"), 4)
    return make_eval_lr(hr, 4, spec, SAMPLE.name), np.asarray(hr)


def test_real_photo_models_are_shipped_and_labelled_for_photos():
    names = {e["name"] for e in REAL_MODELS}
    assert {"real-srresnet", "real-srgan"} <= names
    offered = {m.name: m for m in sr_core.available_methods()}
    for name in ("real-srresnet", "real-srgan"):
        assert "photo" in (offered[name].label + offered[name].description).lower()
    for entry in REAL_MODELS:
        assert set(entry["evaluation"]["degraded"]) >= {"jpeg50", "jpeg75", "noise10+jpeg75", "blur+jpeg60"}
        assert entry["training"]["config"]["data"]["degradation"] == "realistic"


@pytest.mark.parametrize("spec", ["jpeg75", "noise10+jpeg75"])
def test_real_srresnet_beats_bicubic_and_srresnet_on_a_degraded_input(spec):
    lr, hr = _degraded_sample(spec)
    scores = {m: psnr(np.asarray(sr_core.upscale(lr, m, 4)), hr, crop_border=4) for m in ("bicubic", "srresnet")}
    real = psnr(np.asarray(sr_core.upscale(lr, "real-srresnet", 4)), hr, crop_border=4)
    assert real > scores["bicubic"] and real > scores["srresnet"]
