"""Classical upscalers and the downscaler, checked against PIL, numpy and analytic functions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sr_core.classical import CLASSICAL_METHODS, SUPPORTED_SCALES, downscale, mod_crop, upscale_array
from sr_core.errors import UnknownMethodError, UnsupportedScaleError

SIZES = [(7, 5), (1, 9), (9, 1), (13, 11), (1, 1), (2, 2)]


def sample_positions(n: int, scale: int) -> np.ndarray:
    """Input coordinates of the output samples of a pixel-centre aligned upscale."""
    return (np.arange(n * scale) + 0.5) / scale - 0.5


def output_grid(height: int, width: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(sample_positions(height, scale), sample_positions(width, scale), indexing="ij")


def trig_interp_1d(samples: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Plain periodic trigonometric interpolation by direct summation (the 'naive FFT' upscale)."""
    n = len(samples)
    coefficients = np.fft.fft(samples) / n
    k = np.fft.fftfreq(n, 1.0 / n)
    terms = coefficients[None, :] * np.exp(2j * np.pi * positions[:, None] * k[None, :] / n)
    if n % 2 == 0:
        nyquist = coefficients[n // 2]
        terms[:, n // 2] = nyquist * np.cos(np.pi * positions)
    return terms.sum(axis=1).real


def naive_fourier(image: np.ndarray, scale: int) -> np.ndarray:
    height, width = image.shape
    rows = np.stack([trig_interp_1d(image[:, j], sample_positions(height, scale)) for j in range(width)], 1)
    return np.stack([trig_interp_1d(row, sample_positions(width, scale)) for row in rows])


def test_registry() -> None:
    assert list(CLASSICAL_METHODS) == ["nearest", "bilinear", "bicubic", "lanczos", "fourier"]
    assert all(isinstance(text, str) and text for text in CLASSICAL_METHODS.values())
    assert SUPPORTED_SCALES == (2, 3, 4, 5, 6, 7, 8)


@pytest.mark.parametrize("method", list(CLASSICAL_METHODS))
@pytest.mark.parametrize("size", SIZES)
def test_shapes_and_range_every_scale(method: str, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(size[0] * 31 + size[1])
    height, width = size
    for channels in (1, 3, 4):
        image = rng.random((height, width, channels), dtype=np.float32)
        for scale in SUPPORTED_SCALES:
            out = upscale_array(image, method, scale)
            assert out.shape == (height * scale, width * scale, channels)
            assert out.dtype == np.float32
            assert np.isfinite(out).all()
            assert out.min() >= 0.0 and out.max() <= 1.0


def test_two_dimensional_input_gives_two_dimensional_output() -> None:
    image = np.linspace(0, 1, 35, dtype=np.float32).reshape(7, 5)
    out = upscale_array(image, "bicubic", 3)
    assert out.shape == (21, 15)
    np.testing.assert_array_equal(out, upscale_array(image[:, :, None], "bicubic", 3)[:, :, 0])


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_nearest_equals_repeat(scale: int) -> None:
    image = np.random.default_rng(scale).random((13, 11, 3), dtype=np.float32)
    expected = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    np.testing.assert_array_equal(upscale_array(image, "nearest", scale), expected)


@pytest.mark.parametrize(
    ("method", "resample"),
    [
        ("bicubic", Image.Resampling.BICUBIC),
        ("bilinear", Image.Resampling.BILINEAR),
        ("lanczos", Image.Resampling.LANCZOS),
    ],
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_matches_pil_uint8_rgb_resize(method: str, resample: Image.Resampling, scale: int) -> None:
    """PIL's uint8 path clips and rounds between its two passes, so the values stay clear of 0 and 255."""
    image = np.random.default_rng(scale).integers(48, 209, (13, 11, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((11 * scale, 13 * scale), resample), dtype=np.int32)
    ours = np.round(upscale_array(image.astype(np.float32) / 255.0, method, scale) * 255.0).astype(np.int32)
    assert np.abs(ours - expected).max() <= 1


def test_integer_inputs_are_scaled_to_unit_range() -> None:
    image8 = np.random.default_rng(3).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    as_float = upscale_array(image8.astype(np.float32) / 255.0, "bicubic", 2)
    np.testing.assert_allclose(upscale_array(image8, "bicubic", 2), as_float, atol=1e-6)
    image16 = image8.astype(np.uint16) * 257
    np.testing.assert_allclose(upscale_array(image16, "bicubic", 2), as_float, atol=1e-6)


def test_sixteen_bit_precision_survives() -> None:
    """A 16-bit ramp through bilinear matches numpy's linear interpolation far below one 8-bit level."""
    values = np.array([0, 1, 3, 6, 10, 15, 21, 28, 36], dtype=np.uint16) * 1000 + 7
    scale = 4
    out = upscale_array(values[None, :, None], "bilinear", scale)[0, :, 0]
    expected = np.interp(sample_positions(len(values), scale), np.arange(len(values)), values / 65535.0)
    assert np.abs(out - expected).max() < 1e-6


def periodic_signal(y: np.ndarray, x: np.ndarray, height: int, width: int) -> np.ndarray:
    """A few sinusoids periodic on a height x width grid, including high frequencies and a diagonal wave."""
    fx_high, fy_high = (width - 1) // 2, (height - 1) // 2
    return (
        0.5
        + 0.12 * np.sin(2 * np.pi * 2 * x / width + 0.3)
        + 0.1 * np.cos(2 * np.pi * 3 * y / height + 1.0)
        + 0.08 * np.sin(2 * np.pi * (1 * x / width + 2 * y / height) + 0.7)
        + 0.06 * np.cos(2 * np.pi * fx_high * x / width + 0.4)
        + 0.05 * np.sin(2 * np.pi * fy_high * y / height - 0.2)
    )


@pytest.mark.parametrize("size", [(24, 32), (17, 23), (20, 15)])
@pytest.mark.parametrize("scale", [2, 3, 4, 7])
def test_fourier_is_exact_for_band_limited_periodic_images(size: tuple[int, int], scale: int) -> None:
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = periodic_signal(y, x, height, width)
    assert image.min() > 0.0 and image.max() < 1.0
    out = upscale_array(image[:, :, None].astype(np.float32), "fourier", scale)[:, :, 0]
    expected = periodic_signal(*output_grid(height, width, scale), height, width)
    assert np.abs(out - expected).max() < 1e-4


@pytest.mark.parametrize("axis", [0, 1])
def test_fourier_nyquist_split_is_real_and_exact(axis: int) -> None:
    """A checkerboard along one axis of even length interpolates to the real cosine cos(pi t)."""
    height, width, scale = 10, 16, 3
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    coordinate = y if axis == 0 else x
    image = 0.5 + 0.3 * np.cos(np.pi * coordinate) + 0.1 * np.sin(2 * np.pi * 2 * x / width)
    out = upscale_array(image[:, :, None], "fourier", scale)[:, :, 0]
    assert np.isrealobj(out) and np.isfinite(out).all()
    out_y, out_x = output_grid(height, width, scale)
    out_coordinate = out_y if axis == 0 else out_x
    expected = 0.5 + 0.3 * np.cos(np.pi * out_coordinate) + 0.1 * np.sin(2 * np.pi * 2 * out_x / width)
    assert np.abs(out - expected).max() < 1e-4


@pytest.mark.parametrize("scale", [2, 4])
def test_fourier_keeps_border_ringing_off_a_ramp(scale: int) -> None:
    height, width = 24, 32

    def ramp(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return 0.1 + 0.5 * x / (width - 1) + 0.3 * y / (height - 1)

    image = ramp(*np.mgrid[0:height, 0:width].astype(np.float64))
    expected = ramp(*output_grid(height, width, scale))
    naive_error = np.abs(naive_fourier(image, scale) - expected)
    error = np.abs(upscale_array(image[:, :, None], "fourier", scale)[:, :, 0] - expected)
    border = np.ones_like(expected, dtype=bool)
    border[2 * scale : -2 * scale, 2 * scale : -2 * scale] = False
    assert naive_error[border].max() > 0.15
    assert error.max() < 1e-4


def test_fourier_smooth_non_periodic_image() -> None:
    height, width, scale = 33, 41, 3

    def blob(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (
            0.3
            + 0.4 * np.exp(-((x - 0.7 * width) ** 2 + (y - 0.2 * height) ** 2) / (2 * 8.0**2))
            + 0.2 * (x / width) ** 2
        )

    image = blob(*np.mgrid[0:height, 0:width].astype(np.float64))
    expected = blob(*output_grid(height, width, scale))
    naive_error = np.abs(naive_fourier(image, scale) - expected).max()
    error = np.abs(upscale_array(image[:, :, None], "fourier", scale)[:, :, 0] - expected).max()
    assert naive_error > 0.05
    assert error < 0.01


def test_unknown_method_lists_valid_names() -> None:
    with pytest.raises(UnknownMethodError) as info:
        upscale_array(np.zeros((4, 4, 3), np.float32), "cubic-spline", 2)
    for name in CLASSICAL_METHODS:
        assert name in str(info.value)


@pytest.mark.parametrize("scale", [1, 9, 0, -2, 2.0, True, "2"])
def test_unsupported_scale_names_supported_scales(scale: object) -> None:
    with pytest.raises(UnsupportedScaleError) as info:
        upscale_array(np.zeros((4, 4, 3), np.float32), "bicubic", scale)  # type: ignore[arg-type]
    assert "2, 3, 4, 5, 6, 7, 8" in str(info.value)


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0, 1)])
def test_empty_array_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="empty"):
        upscale_array(np.zeros(shape, np.float32), "bicubic", 2)


@pytest.mark.parametrize("shape", [(4, 4, 5), (4, 4, 0), (2, 4, 4, 3)])
def test_bad_channel_layout_is_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        upscale_array(np.zeros(shape, np.float32), "nearest", 2)


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [((13, 11), 4, (12, 8)), ((12, 8), 4, (12, 8)), ((50, 37), 3, (48, 36)), ((9, 9), 8, (8, 8))],
)
def test_mod_crop_sizes(size: tuple[int, int], scale: int, expected: tuple[int, int]) -> None:
    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    cropped = mod_crop(Image.fromarray(array), scale)
    assert cropped.size == expected
    np.testing.assert_array_equal(np.asarray(cropped), array[: expected[1], : expected[0]])


def test_mod_crop_rejects_image_smaller_than_scale() -> None:
    with pytest.raises(ValueError):
        mod_crop(Image.new("RGB", (3, 10)), 4)


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_downscale_is_pil_bicubic_of_mod_cropped_image(scale: int) -> None:
    array = np.random.default_rng(scale).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    width, height = 50 - 50 % scale, 37 - 37 % scale
    expected = image.crop((0, 0, width, height)).resize((width // scale, height // scale), Image.Resampling.BICUBIC)
    result = downscale(image, scale)
    assert result.size == (50 // scale, 37 // scale)
    np.testing.assert_array_equal(np.asarray(result), np.asarray(expected))


def test_downscale_resamples_palette_images_as_rgb() -> None:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    palette = rgb.quantize(16)
    result = downscale(palette, 2)
    assert result.mode == "RGB"
    np.testing.assert_array_equal(
        np.asarray(result), np.asarray(palette.convert("RGB").resize((12, 12), Image.Resampling.BICUBIC))
    )


def test_downscale_validates_scale() -> None:
    with pytest.raises(UnsupportedScaleError):
        downscale(Image.new("RGB", (32, 32)), 10)
