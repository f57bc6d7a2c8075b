"""Geometric self-ensemble: the 8 transforms, equality with an independent whole-image reference at any window
size, and the flag through upscale(), sr-upscale and evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import sr_core
from sr_core.cli import main
from sr_core.ensemble import DIHEDRAL, transform, untransform
from sr_core.evaluate import evaluate
from sr_core.registry import get_method, load_model


def _numpy_transform(a: np.ndarray, flip: bool, turns: int) -> np.ndarray:
    """The same symmetry on an HxWxC array, written with numpy's own flips and rotations."""
    return np.rot90(a[:, ::-1] if flip else a, turns, axes=(0, 1))


def test_the_eight_transforms_are_distinct_and_undone():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    seen = set()
    for flip, turns in DIHEDRAL:
        moved = transform(x, flip, turns)
        expected = _numpy_transform(x.numpy().transpose(2, 3, 0, 1), flip, turns).transpose(2, 3, 0, 1)
        assert np.array_equal(moved.numpy(), expected), (flip, turns)
        assert torch.equal(untransform(moved, flip, turns), x)
        seen.add(moved.numpy().tobytes() + bytes(moved.shape))
    assert len(DIHEDRAL) == len(seen) == 8


def _reference_ensemble(weights_dir, rgb: np.ndarray, scale: int) -> np.ndarray:
    """Mean over the 8 numpy symmetries of the plain float64 whole-image forward, turned back, then clipped and
    rounded to 8 bit."""
    model = load_model(get_method("srresnet", weights_dir), scale).double().eval()
    total = np.zeros((rgb.shape[0] * scale, rgb.shape[1] * scale, 3))
    for flip, turns in DIHEDRAL:
        moved = np.ascontiguousarray(_numpy_transform(rgb.astype(np.float64) / 255, flip, turns))
        with torch.no_grad():
            out = model(torch.from_numpy(moved).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        back = np.rot90(out, -turns, axes=(0, 1))
        total += back[:, ::-1] if flip else back
    return np.floor(np.clip(total / 8, 0, 1) * 255 + 0.5).astype(np.int16)


@pytest.mark.parametrize("budget", [1, 1 << 30])
def test_upscale_self_ensemble_equals_the_whole_image_reference(weights_dir, budget):
    """A budget of 1 byte cuts the image into many small windows; the result is still the whole-image ensemble."""
    rgb = np.random.default_rng(3).integers(0, 256, (41, 30, 3), dtype=np.uint8)
    out = sr_core.upscale(Image.fromarray(rgb), "srresnet", 2, memory_budget=budget, precision="fp32",
                          self_ensemble=True, weights_dir=weights_dir)  # fmt: skip
    reference = _reference_ensemble(weights_dir, rgb, 2)
    diff = np.abs(np.asarray(out, dtype=np.int16) - reference)
    assert diff.max() <= 1 and diff.mean() < 0.01
    plain = sr_core.upscale(Image.fromarray(rgb), "srresnet", 2, precision="fp32", weights_dir=weights_dir)
    assert np.abs(np.asarray(plain, dtype=np.int16) - reference).mean() > 0.5  # the ensemble is not the model


def test_self_ensemble_with_explicit_tiles_and_grey_input(weights_dir):
    rgb = np.random.default_rng(4).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    tiled = sr_core.upscale(Image.fromarray(rgb), "srresnet", 4, tile_size=32, precision="fp32", self_ensemble=True,
                            weights_dir=weights_dir)  # fmt: skip
    assert np.abs(np.asarray(tiled, dtype=np.int16) - _reference_ensemble(weights_dir, rgb, 4)).max() <= 1
    grey = sr_core.upscale(Image.fromarray(rgb[..., 0]), "srresnet", 4, self_ensemble=True, weights_dir=weights_dir)
    assert grey.mode == "L" and grey.size == (29 * 4, 37 * 4)


def test_progress_counts_the_eight_passes_of_each_window(weights_dir):
    calls = []
    img = Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 20, 3), dtype=np.uint8))
    sr_core.upscale(img, "srresnet", 2, self_ensemble=True, progress=lambda d, t: calls.append((d, t)),
                    weights_dir=weights_dir)  # fmt: skip
    assert calls == [(i, 8) for i in range(1, 9)]


def test_classical_methods_are_unchanged_by_self_ensemble(smooth_rgb):
    img = Image.fromarray(smooth_rgb)
    assert np.array_equal(np.asarray(sr_core.upscale(img, "bicubic", 3, self_ensemble=True)),
                          np.asarray(sr_core.upscale(img, "bicubic", 3)))  # fmt: skip


def test_cli_flag_writes_the_ensemble(tmp_path, weights_dir):
    rgb = np.random.default_rng(6).integers(0, 256, (21, 17, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "a.png")
    code = main([str(tmp_path / "in" / "a.png"), "-o", str(tmp_path / "out"), "--method", "srresnet", "--scale",
                 "2", "--precision", "fp32", "--self-ensemble", "--weights-dir", str(weights_dir)])  # fmt: skip
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "a_srresnet_x2.png"), dtype=np.int16)
    assert np.abs(written - _reference_ensemble(weights_dir, rgb, 2)).max() <= 1


def test_evaluate_labels_and_scores_the_ensemble(weights_dir, monkeypatch):
    monkeypatch.setattr("sr_core.registry.default_weights_dir", lambda: weights_dir)
    rng = np.random.default_rng(7)
    pairs = [(f"im{i}", Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))) for i in range(2)]
    plain = evaluate("srresnet", 2, pairs, device="cpu")
    ensemble = evaluate("srresnet", 2, pairs, device="cpu", self_ensemble=True)
    assert ensemble["method"] == "srresnet (self-ensemble)" and ensemble["self_ensemble"] is True
    assert plain["self_ensemble"] is False and "self-ensemble" in ensemble["convention"]
    assert ensemble["mean"]["bicubic_psnr"] == plain["mean"]["bicubic_psnr"]
    assert ensemble["mean"]["psnr"] != plain["mean"]["psnr"]
