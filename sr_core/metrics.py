"""Image quality metrics with the conventions of the super-resolution literature.

PSNR and SSIM are computed on the 0..255 scale, by default on the luma (Y) channel of ITU-R BT.601 exactly as
MATLAB's ``rgb2ycbcr`` produces it, with an optional border crop (usually the scale factor). SSIM follows the
reference MATLAB implementation of Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, population
variances, 'valid' filtering and the mean of the SSIM map.

Accepted inputs are numpy arrays or PIL images, HxW or HxWxC with C in 1..4:

* uint8 is used as is (0..255);
* uint16 is scaled by 255/65535;
* floating point is taken as [0, 1] (the project's convention) and scaled by 255.

A fourth (alpha) channel is ignored, and so is the second channel of grey+alpha.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["psnr", "rgb_to_y", "ssim"]

_SSIM_RADIUS = 5
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
_SSIM_MIN_SIZE = 2 * _SSIM_RADIUS + 1
_SSIM_STRIP_ROWS = 32

_PIL_MODES_AS_IS = {"L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "F"}


def _as_array(image: Any) -> np.ndarray:
    """Return the image as an ndarray; PIL palette, bilevel and other modes become L or RGB(A) first."""
    if isinstance(image, Image.Image):
        if image.mode not in _PIL_MODES_AS_IS:
            if image.mode == "1":
                image = image.convert("L")
            elif image.mode in ("P", "PA"):
                has_alpha = image.mode == "PA" or "transparency" in image.info
                image = image.convert("RGBA" if has_alpha else "RGB")
            else:
                image = image.convert("RGB")
        return np.asarray(image)
    return np.asarray(image)


def _to_255(array: np.ndarray) -> np.ndarray:
    """Convert a uint8/uint16/float array to float64 on the 0..255 scale."""
    if array.dtype == np.uint8:
        return array.astype(np.float64)
    if array.dtype == np.uint16:
        return array.astype(np.float64) * (255.0 / 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64) * 255.0
    raise ValueError(f"unsupported image dtype {array.dtype}; expected uint8, uint16 or float in [0, 1]")


def _colour_planes(array: np.ndarray) -> np.ndarray:
    """Return HxWxC float64 on 0..255 with C = 1 (grey) or 3 (RGB); alpha dropped."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image with C in 1..4, got shape {array.shape}")
    channels = 1 if array.shape[2] in (1, 2) else 3
    return _to_255(array[:, :, :channels])


def _rgb255_to_y(rgb: np.ndarray) -> np.ndarray:
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def rgb_to_y(image: Any) -> np.ndarray:
    """Return the BT.601 luma of an RGB image as float64 HxW on the 0..255 scale (range [16, 235]).

    Matches MATLAB ``rgb2ycbcr``: Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]. Unrounded,
    as the SR literature's PSNR/SSIM code uses it. A fourth (alpha) channel is ignored.
    """
    array = _as_array(image)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"rgb_to_y needs an HxWx3 or HxWx4 image, got shape {array.shape}")
    return _rgb255_to_y(_to_255(array[:, :, :3]))


def _prepare_pair(sr: Any, hr: Any, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate, convert and crop both images to matching HxWxC float64 planes on the 0..255 scale."""
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    sr_array, hr_array = _as_array(sr), _as_array(hr)
    a, b = _colour_planes(sr_array), _colour_planes(hr_array)
    if a.shape != b.shape:
        raise ValueError(
            f"image shapes differ: sr has shape {sr_array.shape}, hr has shape {hr_array.shape}; "
            "the metrics need images of the same size and channel count"
        )
    if y_channel and a.shape[2] == 3:
        a, b = _rgb255_to_y(a)[:, :, None], _rgb255_to_y(b)[:, :, None]
    if crop_border:
        height, width = a.shape[:2]
        if 2 * crop_border >= min(height, width):
            raise ValueError(
                f"crop_border={crop_border} removes the whole {height}x{width} image (shape {sr_array.shape})"
            )
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(sr: Any, hr: Any, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB, data range 255; ``inf`` for identical images.

    With ``y_channel`` RGB images are compared on BT.601 luma, grey images on their grey values; otherwise the
    mean squared error is taken over all RGB values. ``crop_border`` pixels are removed on every side first.
    """
    a, b = _prepare_pair(sr, hr, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def _gaussian_taps() -> np.ndarray:
    x = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-(x**2) / (2.0 * _SSIM_SIGMA**2))
    return taps / taps.sum()


def _valid_filter(planes: np.ndarray, taps: np.ndarray, axis: int) -> np.ndarray:
    """'Valid' correlation of a symmetric odd-length kernel along one axis, folding mirrored taps first."""
    radius = len(taps) // 2
    length = planes.shape[axis] - 2 * radius

    def window(start: int) -> np.ndarray:
        index = [slice(None)] * planes.ndim
        index[axis] = slice(start, start + length)
        return planes[tuple(index)]

    out = taps[radius] * window(radius)
    pair = np.empty_like(out)
    for i in range(radius):
        np.add(window(i), window(2 * radius - i), out=pair)
        pair *= taps[i]
        out += pair
    return out


def _ssim_plane(x: np.ndarray, y: np.ndarray, taps: np.ndarray) -> float:
    """Mean SSIM map of two float64 planes, computed in row strips so the working set stays in cache."""
    radius = len(taps) // 2
    out_height, out_width = x.shape[0] - 2 * radius, x.shape[1] - 2 * radius
    total = 0.0
    for top in range(0, out_height, _SSIM_STRIP_ROWS):
        bottom = min(top + _SSIM_STRIP_ROWS, out_height) + 2 * radius
        xs, ys = x[top:bottom], y[top:bottom]
        stack = np.stack([xs, ys, xs * xs, ys * ys, xs * ys])
        mu_x, mu_y, e_xx, e_yy, e_xy = _valid_filter(_valid_filter(stack, taps, axis=2), taps, axis=1)
        mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
        numerator = (2.0 * mu_xy + _SSIM_C1) * (2.0 * (e_xy - mu_xy) + _SSIM_C2)
        denominator = (mu_xx + mu_yy + _SSIM_C1) * ((e_xx - mu_xx) + (e_yy - mu_yy) + _SSIM_C2)
        total += float(np.sum(numerator / denominator))
    return total / (out_height * out_width)


def ssim(sr: Any, hr: Any, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004, MATLAB reference), mean of the 'valid' SSIM map.

    With ``y_channel`` RGB images are compared on BT.601 luma, grey images on their grey values; otherwise
    SSIM is computed per RGB channel and averaged. Images smaller than 11x11 after cropping raise ValueError.
    """
    a, b = _prepare_pair(sr, hr, crop_border, y_channel)
    height, width = a.shape[:2]
    if height < _SSIM_MIN_SIZE or width < _SSIM_MIN_SIZE:
        raise ValueError(
            f"SSIM needs at least {_SSIM_MIN_SIZE}x{_SSIM_MIN_SIZE} pixels after cropping "
            f"{crop_border} border pixels, got {height}x{width}"
        )
    taps = _gaussian_taps()
    scores = [_ssim_plane(a[:, :, c], b[:, :, c], taps) for c in range(a.shape[2])]
    return float(np.mean(scores))


def _high_frequency_energy(plane: np.ndarray, cutoff: float) -> float:
    """Spectral energy above ``cutoff`` (fraction of the Nyquist radius) of a Hann-windowed, mean-free plane."""
    h, w = plane.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    spectrum = np.abs(np.fft.fft2((plane - plane.mean()) * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2) / 0.5
    return float(spectrum[radius > cutoff].sum())


def high_frequency_ratio(sr: Any, hr: Any, *, cutoff: float = 0.5, crop_border: int = 0,
                         y_channel: bool = True) -> float:
    """Energy of ``sr`` above ``cutoff`` x Nyquist divided by that of ``hr`` (1.0 = as much fine detail as HR).

    PSNR rewards blur; this ratio shows how much high-frequency content an upscaler restores (below 1: smoother
    than the ground truth, above 1: more, e.g. hallucinated texture or noise). Y channel by default.
    """
    if not 0.0 < cutoff < math.sqrt(2):
        raise ValueError(f"cutoff must be in (0, sqrt(2)), got {cutoff}")
    a, b = _prepare_pair(sr, hr, crop_border, y_channel)
    sr_energy = sum(_high_frequency_energy(a[:, :, c], cutoff) for c in range(a.shape[2]))
    hr_energy = sum(_high_frequency_energy(b[:, :, c], cutoff) for c in range(b.shape[2]))
    if hr_energy == 0.0:
        raise ValueError("the reference has no energy above the cutoff frequency; the ratio is undefined")
    return sr_energy / hr_energy
