"""Any factor from 1 to 8 (sr_core.outscale): the rule, exact sizes, and agreement with PIL's own resizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr_core.classical import downscale, mod_crop, resize_array
from sr_core.errors import UnknownMethodError, UnsupportedScaleError
from sr_core.outscale import check_outscale, output_size, plan_outscale, scale_tag, shrink_pair, upscale_by
from sr_core.pipeline import upscale
from sr_core.registry import MethodInfo, get_method

PHOTO = Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"


def noise(height: int, width: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    values = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(values[..., 0] if channels == 1 else values, mode)


def smooth(height: int, width: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rgb = np.stack([np.sin(6 * x), np.cos(5 * y), np.sin(4 * (x + y))], axis=2)
    return Image.fromarray(((rgb + 1) * 127.5).round().astype(np.uint8))


MODEL = MethodInfo("m", "Model", "", "model", (2, 4))


@pytest.mark.parametrize(
    "factor, native", [(1, 2), (1.5, 2), (2, 2), (2.5, 4), (3.5, 4), (4, 4), (6, 4), (8, 4)]
)
def test_a_model_runs_at_the_nearest_scale_at_or_above(factor, native):
    plan = plan_outscale(MODEL, factor)
    assert plan.native == native and plan.outscale == factor
    assert plan.needs_resize == (native != factor)
    assert plan.metric_border == int(np.ceil(factor))


def test_classical_kernels_go_straight_and_fourier_uses_an_integer_scale():
    for name in ("nearest", "bilinear", "bicubic", "lanczos"):
        plan = plan_outscale(get_method(name), 3.5)
        assert plan.native is None and not plan.needs_resize
    assert plan_outscale(get_method("fourier"), 3.5).native == 4
    assert plan_outscale(get_method("fourier"), 1).native == 2
    assert plan_outscale(MODEL, 3.5).describe() == "x4, then Lanczos to x3.5"
    assert plan_outscale(MODEL, 4).describe() == "x4"


@pytest.mark.parametrize("bad", [0.5, 8.5, float("nan"), float("inf"), True, "x4", None, "-2"])
def test_factors_outside_1_to_8_are_refused(bad):
    with pytest.raises(UnsupportedScaleError, match="from 1 to 8"):
        check_outscale(bad)


def test_sizes_round_half_up_and_tags_read_naturally():
    assert output_size((21, 17), 3.5) == (74, 60)  # 73.5 -> 74, 59.5 -> 60
    assert output_size((20, 16), 3.5) == (70, 56)
    assert output_size((3, 1), 1.2) == (4, 1)
    assert check_outscale("3.5") == 3.5
    assert (scale_tag(4.0), scale_tag(3.5), scale_tag(1.25)) == ("4", "3.5", "1.25")


@pytest.mark.parametrize(
    "method, kernel", [("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)]
)
def test_classical_fractional_scale_matches_pillow(method, kernel):
    source = Image.open(PHOTO).convert("RGB").crop((200, 60, 221, 77))  # 21x17 of a photo
    out = upscale_by(source, method, 2.5)
    assert out.size == (53, 43) and out.mode == "RGB"  # 52.5 and 42.5 round up
    # Independent reference: PIL's own 8-bit resize straight to the size (fixed point, clipped between its two
    # passes, so a level or two apart on a photo; on pure noise the clipping makes them differ more).
    expected = np.asarray(source.resize((53, 43), kernel)).astype(int)
    difference = np.abs(np.asarray(out).astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.3


def test_a_model_at_a_fractional_scale_is_its_native_result_resized_with_lanczos(weights_dir):
    source = smooth(20, 16)
    out = upscale_by(source, "srresnet", 3.5, weights_dir=weights_dir)
    assert out.size == (56, 70)
    native = upscale(source, "srresnet", 4, weights_dir=weights_dir)
    expected = np.asarray(native.resize((56, 70), Image.Resampling.LANCZOS)).astype(int)
    difference = np.abs(np.asarray(out).astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.3
    # x1.5 runs the x2 model and shrinks its result.
    small = upscale_by(source, "srresnet", 1.5, weights_dir=weights_dir)
    x2 = upscale(source, "srresnet", 2, weights_dir=weights_dir)
    reference = np.asarray(x2.resize((24, 30), Image.Resampling.LANCZOS)).astype(int)
    assert small.size == (24, 30) and np.abs(np.asarray(small).astype(int) - reference).max() <= 2


def test_an_integer_factor_the_method_has_is_exactly_upscale(weights_dir):
    source = smooth(13, 11)
    for method in ("srresnet", "bicubic", "fourier"):
        expected = np.asarray(upscale(source, method, 4, weights_dir=weights_dir))
        np.testing.assert_array_equal(np.asarray(upscale_by(source, method, 4, weights_dir=weights_dir)), expected)


def test_modes_are_kept(weights_dir):
    rgba = upscale_by(noise(9, 7, "RGBA"), "srresnet", 3, weights_dir=weights_dir)
    assert rgba.mode == "RGBA" and rgba.size == (21, 27)
    grey16 = Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300)
    assert grey16.mode == "I;16"
    out = upscale_by(grey16, "bicubic", 1.5)
    assert out.mode == "I;16" and out.size == (12, 9)
    assert np.asarray(out).max() > 255  # still 16-bit data, not squeezed to 8 bit
    assert upscale_by(noise(5, 5, "L"), "nearest", 1).size == (5, 5)


def test_bad_tile_size_and_fourier_resize_are_refused(weights_dir):
    with pytest.raises(ValueError, match="at least 32"):
        upscale_by(smooth(8, 8), "srresnet", 3, tile_size=8, weights_dir=weights_dir)
    with pytest.raises(UnknownMethodError):
        resize_array(np.zeros((4, 4, 3), np.float32), (8, 8), "fourier")


def test_shrink_pair_is_mod_crop_and_downscale_at_integer_factors_and_consistent_otherwise():
    image = smooth(47, 38)
    truth, low = shrink_pair(image, 4)
    np.testing.assert_array_equal(np.asarray(truth), np.asarray(mod_crop(image, 4)))
    np.testing.assert_array_equal(np.asarray(low), np.asarray(downscale(image, 4)))
    truth, low = shrink_pair(image, 3.5)
    assert low.size == (10, 13) and truth.size == output_size(low.size, 3.5) == (35, 46)
    np.testing.assert_array_equal(np.asarray(truth), np.asarray(image)[:46, :35])
    with pytest.raises(ValueError, match="smaller"):
        shrink_pair(smooth(3, 3), 4)
