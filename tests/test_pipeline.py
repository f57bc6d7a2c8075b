"""sr_core.upscale: every method and scale, image modes (alpha, grey, 16-bit), tiling, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import sr_core
from sr_core.errors import ImageLoadError, ImageTooLargeError, UnknownMethodError, UnsupportedScaleError
from sr_core.inference import prepare_for_inference
from sr_core.pipeline import model_forward_array


@pytest.mark.parametrize("size", [(7, 5), (1, 9), (13, 11)])
def test_every_method_and_scale_on_odd_sizes(weights_dir, size):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    for method in sr_core.available_methods(weights_dir):
        for scale in method.scales:
            out = sr_core.upscale(img, method.name, scale, weights_dir=weights_dir)
            assert out.size == (size[0] * scale, size[1] * scale) and out.mode == "RGB", (method.name, scale)


def test_bicubic_matches_pillow(smooth_rgb):
    img = Image.fromarray(smooth_rgb)
    ours = np.asarray(sr_core.upscale(img, "bicubic", 4), dtype=np.int16)
    pil = np.asarray(img.resize((img.width * 4, img.height * 4), Image.BICUBIC), dtype=np.int16)
    assert np.abs(ours - pil).max() <= 1


@pytest.mark.parametrize("method", ["bicubic", "srresnet"])
def test_modes_round_trip(weights_dir, method, tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(10) < 5, 0, 255)[None, :]
    cases = {
        "RGB": Image.fromarray(rgba[..., :3]),
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "L": Image.fromarray(rgba[..., 0]),
        "LA": Image.fromarray(np.ascontiguousarray(rgba[..., [0, 3]]), "LA"),
        "I;16": Image.fromarray(rgba[..., 0].astype(np.uint16) * 257 + 3),
    }
    for mode, img in cases.items():
        out = sr_core.upscale(img, method, 2, weights_dir=weights_dir)
        assert out.mode == mode and out.size == (20, 24), (method, mode)
        if "A" in mode:
            alpha = np.asarray(out.getchannel("A"))
            assert alpha[:, :8].max() <= 3 and alpha[:, 12:].min() >= 252
        path = tmp_path / f"{method}_{mode.replace(';', '')}.png"
        sr_core.save_image(out, path)
        again = sr_core.load_image(path)
        assert again.mode == mode
        if mode == "I;16":
            assert np.asarray(again).dtype == np.uint16
            assert np.array_equal(np.asarray(again), np.asarray(out))


def test_grey_model_output_is_grey_of_rgb_output(weights_dir, smooth_rgb):
    grey = Image.fromarray(smooth_rgb[..., 1])
    out_grey = np.asarray(sr_core.upscale(grey, "srresnet", 4, weights_dir=weights_dir), dtype=np.float32)
    rgb_in = Image.merge("RGB", [grey] * 3)
    out_rgb = np.asarray(sr_core.upscale(rgb_in, "srresnet", 4, weights_dir=weights_dir), dtype=np.float32)
    expected = out_rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(out_grey - expected).max() <= 1.0


@pytest.mark.parametrize("tile", [32, 48, 100])
def test_model_tiling_is_seamless_through_pipeline(tiny_srresnet, tile):
    model = tiny_srresnet(scale=2)
    fast = prepare_for_inference(model, torch.device("cpu"), torch.float32)
    rgb = np.random.default_rng(2).random((70, 90, 3), dtype=np.float32)
    whole = model_forward_array(fast, rgb, 2, tile_size=1000, overlap=0)
    tiled = model_forward_array(fast, rgb, 2, tile_size=tile, overlap=model.receptive_radius())
    assert np.abs(whole - tiled).max() < 1e-4


def test_bf16_close_to_fp32(weights_dir, smooth_rgb):
    img = Image.fromarray(smooth_rgb)
    a = np.asarray(sr_core.upscale(img, "srresnet", 4, precision="fp32", weights_dir=weights_dir), np.float32)
    b = np.asarray(sr_core.upscale(img, "srresnet", 4, precision="bf16", weights_dir=weights_dir), np.float32)
    assert np.abs(a - b).mean() < 2.0


def test_progress_per_tile(weights_dir, smooth_rgb):
    calls = []
    sr_core.upscale(
        Image.fromarray(smooth_rgb),
        "srresnet",
        2,
        tile_size=32,
        weights_dir=weights_dir,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 2), (2, 2)]


def test_errors_are_sr_errors(weights_dir, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), "red").save(buf, "PNG")
    data = buf.getvalue()
    with pytest.raises(ImageLoadError):
        sr_core.upscale(data[: len(data) // 2], "bicubic", 2)
    with pytest.raises(ImageLoadError):
        sr_core.upscale(b"hello, not an image", "bicubic", 2)
    with pytest.raises(ImageTooLargeError):
        sr_core.upscale(data, "bicubic", 2, max_pixels=100)
    with pytest.raises(UnknownMethodError):
        sr_core.upscale(data, "magic", 2)
    with pytest.raises(UnsupportedScaleError):
        sr_core.upscale(data, "srresnet", 3, weights_dir=weights_dir)
    with pytest.raises(UnsupportedScaleError):
        sr_core.upscale(data, "bicubic", 2.5)


def _reference_x2(weights_dir, rgb: np.ndarray) -> np.ndarray:
    """The weights' plain whole-image forward in float64 (BatchNorm unfolded), rounded to 8 bit: an independent
    reference for every windowing of the product path."""
    from sr_core.registry import get_method, load_model

    model = load_model(get_method("srresnet", weights_dir), 2).double().eval()
    x = torch.from_numpy(rgb.astype(np.float64) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.floor(y * 255 + 0.5).astype(np.int16)


@pytest.mark.parametrize("budget", [1, 200_000, 1 << 30])
def test_memory_budget_windows_match_the_whole_image_forward(weights_dir, budget):
    rgb = np.random.default_rng(5).integers(0, 256, (70, 45, 3), dtype=np.uint8)
    out = sr_core.upscale(Image.fromarray(rgb), "srresnet", 2, memory_budget=budget, precision="fp32",
                          weights_dir=weights_dir)  # fmt: skip
    diff = np.abs(np.asarray(out, dtype=np.int16) - _reference_x2(weights_dir, rgb))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_alpha_grey_and_16_bit_through_small_windows(weights_dir):
    """Tall RGBA (alpha in several row strips), L and I;16 inputs: small windows give what large ones give, and
    alpha is exactly the bicubic upscale of the alpha plane alone."""
    rng = np.random.default_rng(6)
    rgba = rng.integers(0, 256, (300, 24, 4), dtype=np.uint8)
    cases = [Image.fromarray(rgba, "RGBA"), Image.fromarray(rgba[..., 1]),
             Image.fromarray(rgba[..., 2].astype(np.uint16) * 257)]  # fmt: skip
    for img in cases:
        small = sr_core.upscale(img, "srresnet", 2, memory_budget=1, precision="fp32", weights_dir=weights_dir)
        large = sr_core.upscale(img, "srresnet", 2, memory_budget=1 << 30, precision="fp32", weights_dir=weights_dir)
        assert small.mode == large.mode == img.mode
        a, b = np.asarray(small, dtype=np.int64), np.asarray(large, dtype=np.int64)
        assert np.abs(a - b).max() <= (257 if img.mode == "I;16" else 1), img.mode
    alpha = np.asarray(sr_core.upscale(cases[0], "srresnet", 2, memory_budget=1, weights_dir=weights_dir))[..., 3]
    expected = np.asarray(sr_core.upscale(Image.fromarray(rgba[..., 3]), "bicubic", 2))
    assert np.array_equal(alpha, expected)


def test_model_output_is_quantised_tile_by_tile(weights_dir):
    """No float copy of the whole output is made: numpy's peak allocation stays a fraction of it."""
    import tracemalloc

    img = Image.fromarray(np.random.default_rng(7).integers(0, 256, (480, 480, 3), dtype=np.uint8))
    sr_core.upscale(img.crop((0, 0, 20, 20)), "srresnet", 4, weights_dir=weights_dir)
    float_output_bytes = 1920 * 1920 * 3 * 4
    tracemalloc.start()
    try:
        out = sr_core.upscale(img, "srresnet", 4, memory_budget=4 << 20, weights_dir=weights_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.size == (1920, 1920)
    assert peak < float_output_bytes / 8, peak
