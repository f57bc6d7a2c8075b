"""Classical (non-learned) upscalers and the project's one downscaler.

All upscalers are pixel-centre aligned like PIL: output sample ``k`` of an upscale by ``s`` sits at input
coordinate ``(k + 0.5) / s - 0.5``. The interpolating kernels run through PIL on mode "F" (float32) images, one
channel at a time, so 16-bit data keeps its precision.

``fourier`` is band-limited (trigonometric) interpolation by spectral zero-padding. Zero-padding treats the image
as periodic, so the jump between opposite borders would ring into the picture; the image is therefore split
with Moisan's (2011) periodic-plus-smooth decomposition, the periodic part is upscaled spectrally and the smooth
part with bicubic. Every sampled image is some band-limited periodic signal, so no linear method can both keep
the exact trigonometric interpolation of genuinely periodic content and suppress the seams of photographs; the
two halves of the smooth component are therefore weighted per channel (see ``_seam_split``): weight 0 for
spectrally sparse periodic content (exact), about 1 for photographs, exactly the seam-free split for ramps.

``downscale`` is how low-resolution inputs are made everywhere in the project (training pairs, benchmarks, the
demo): crop to a multiple of the scale, then PIL's antialiased bicubic resize.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from sr_core.errors import UnknownMethodError, UnsupportedScaleError

__all__ = [
    "CLASSICAL_METHODS",
    "SUPPORTED_SCALES",
    "downscale",
    "mod_crop",
    "resize_array",
    "upscale_array",
]

CLASSICAL_METHODS: dict[str, str] = {
    "nearest": "Nearest neighbour: every pixel becomes a scale x scale block; blocky but exact.",
    "bilinear": "Bilinear interpolation: smooth, soft edges.",
    "bicubic": "Bicubic interpolation (Keys, a = -0.5): the usual baseline of SR papers.",
    "lanczos": "Lanczos-3 windowed sinc: sharper than bicubic, slight ringing at edges.",
    "fourier": "Band-limited Fourier (zero-padding) interpolation, with the border seams taken out first.",
}

SUPPORTED_SCALES: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)

_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# Odd (point) reflection padding for the smooth component: wide enough for the bicubic support of 2 input
# pixels around output samples that lie up to half a pixel outside the image.
_SMOOTH_PAD = 3
_SEAM_IRLS_STEPS = 8


def _check_method(method: str) -> None:
    if method not in CLASSICAL_METHODS:
        valid = ", ".join(CLASSICAL_METHODS)
        raise UnknownMethodError(f"unknown classical method {method!r}; valid methods: {valid}")


def _check_scale(scale: int) -> int:
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, np.integer)) or scale not in SUPPORTED_SCALES:
        supported = ", ".join(str(s) for s in SUPPORTED_SCALES)
        raise UnsupportedScaleError(f"unsupported scale {scale!r}; supported scales: {supported}")
    return int(scale)


def _as_float_image(array: np.ndarray) -> np.ndarray:
    """Return HxWxC float64 in [0, 1]; uint8 and uint16 are scaled, floats are taken as [0, 1]."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise ValueError(f"expected an HxWxC array with C in 1..4, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"cannot upscale an empty array of shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float64) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float64)
    raise ValueError(f"unsupported array dtype {array.dtype}; expected float in [0, 1], uint8 or uint16")


def _pil_resize_plane(
    plane: np.ndarray,
    size: tuple[int, int],
    resample: Image.Resampling,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Resize one 2-D plane through a PIL mode "F" image; ``size`` and ``box`` are PIL's (width, height) order."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(image.resize(size, resample, box=box), dtype=np.float64)


def _spectral_upscale_axis(plane: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Trigonometric interpolation along one axis, sampled at ``(k + 0.5) / scale - 0.5``.

    The rfft spectrum is zero-padded to the output length with the linear phase of the half-pixel shift
    ``(1 - scale) / 2`` output samples; an even length's Nyquist coefficient is split half/half between the
    +N/2 and -N/2 bins (the -N/2 half is implied by irfft's Hermitian symmetry), which keeps the result real.
    """
    n = plane.shape[axis]
    m = n * scale
    spectrum = np.fft.rfft(plane, axis=axis)
    k = np.arange(spectrum.shape[axis])
    weights = scale * np.exp(2j * np.pi * k * ((1 - scale) / 2) / m)
    if n % 2 == 0:
        weights[n // 2] *= 0.5
    shape = [1] * plane.ndim
    shape[axis] = -1
    padded_shape = list(spectrum.shape)
    padded_shape[axis] = m // 2 + 1
    padded = np.zeros(padded_shape, dtype=spectrum.dtype)
    index = [slice(None)] * plane.ndim
    index[axis] = slice(0, spectrum.shape[axis])
    padded[tuple(index)] = spectrum * weights.reshape(shape)
    return np.fft.irfft(padded, n=m, axis=axis)


def _spectral_upscale(plane: np.ndarray, scale: int) -> np.ndarray:
    """Band-limited periodic interpolation of a 2-D plane (exact for trigonometric polynomials below Nyquist)."""
    return _spectral_upscale_axis(_spectral_upscale_axis(plane, scale, axis=0), scale, axis=1)


def _smooth_components(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moisan's smooth component, split into the parts driven by the top/bottom and by the left/right jumps.

    Each part solves a periodic Poisson problem whose source is the jump between opposite borders; subtracting
    their sum leaves the periodic component, whose periodic extension has no seam. Returned as rfft2 spectra.
    """
    height, width = plane.shape
    rows_jump = np.zeros_like(plane)
    rows_jump[0, :] += plane[-1, :] - plane[0, :]
    rows_jump[-1, :] += plane[0, :] - plane[-1, :]
    cols_jump = np.zeros_like(plane)
    cols_jump[:, 0] += plane[:, -1] - plane[:, 0]
    cols_jump[:, -1] += plane[:, 0] - plane[:, -1]
    q = np.arange(height)[:, None]
    r = np.arange(width // 2 + 1)[None, :]
    denominator = 2.0 * np.cos(2.0 * np.pi * q / height) + 2.0 * np.cos(2.0 * np.pi * r / width) - 4.0
    denominator[0, 0] = 1.0
    parts = []
    for jump in (rows_jump, cols_jump):
        spectrum = np.fft.rfft2(jump) / denominator
        spectrum[0, 0] = 0.0
        parts.append(spectrum)
    return parts[0], parts[1]


def _upper_band_weights(height: int, width: int) -> np.ndarray:
    """Parseval multiplicity of the rfft2 bins in the upper half band (|f| >= N/4 on either axis), 0 elsewhere."""
    q = np.arange(height)[:, None]
    r = np.arange(width // 2 + 1)[None, :]
    upper = (4 * np.minimum(q, height - q) >= height) | (4 * r >= width)
    multiplicity = np.where((r == 0) | (2 * r == width), 1.0, 2.0)
    return upper * multiplicity


def _seam_weights(u: np.ndarray, s1: np.ndarray, s2: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Weights (w1, w2) minimising the band's L1 norm of ``u - w1 s1 - w2 s2`` (spectra), by IRLS.

    Started from the least-squares solution; w = 0 is kept whenever it is at least as good, so that a sparse
    spectrum (a sum of sinusoids) keeps its exact trigonometric interpolation.
    """
    mask = band > 0
    m, u, s1, s2 = band[mask], u[mask], s1[mask], s2[mask]
    products = {
        "11": (s1.real**2 + s1.imag**2) * m,
        "22": (s2.real**2 + s2.imag**2) * m,
        "12": (s1.real * s2.real + s1.imag * s2.imag) * m,
        "1u": (s1.real * u.real + s1.imag * u.imag) * m,
        "2u": (s2.real * u.real + s2.imag * u.imag) * m,
    }

    def solve(reweight: np.ndarray) -> np.ndarray:
        d = {key: float(np.dot(value, reweight)) for key, value in products.items()}
        gram = np.array([[d["11"], d["12"]], [d["12"], d["22"]]])
        if not gram.any():
            return np.zeros(2)
        return np.linalg.lstsq(gram, np.array([d["1u"], d["2u"]]), rcond=1e-12)[0]

    def residual_modulus(w: np.ndarray) -> np.ndarray:
        return np.abs(u - w[0] * s1 - w[1] * s2)

    floor = 1e-12 * max(float(np.abs(part).max(initial=0.0)) for part in (u, s1, s2)) + np.finfo(np.float64).tiny
    weights = solve(np.ones_like(m))
    for _ in range(_SEAM_IRLS_STEPS):
        reweight = 1.0 / np.maximum(residual_modulus(weights), floor)
        weights = solve(reweight / reweight.max(initial=1.0))
    if not np.isfinite(weights).all() or np.dot(m, np.abs(u)) <= np.dot(m, residual_modulus(weights)):
        return np.zeros(2)
    return weights


def _seam_split(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``plane`` into (periodic part, smooth part) for Fourier upscaling.

    The smooth part is ``w1 * s1 + w2 * s2``, the two halves of Moisan's smooth component weighted to minimise
    the L1 norm of the periodic part's upper half band. In photographs and ramps the seams are what fills that
    band with a broadband tail, so the weights come out near 1 (Moisan's decomposition; exactly what removes
    the seams of a linear ramp). A sparse spectrum such as a sum of sinusoids periodic on the grid keeps weights
    0: its upscale is then exact trigonometric interpolation.
    """
    s1, s2 = _smooth_components(plane)
    weights = _seam_weights(np.fft.rfft2(plane), s1, s2, _upper_band_weights(*plane.shape))
    if not weights.any():
        return plane, np.zeros_like(plane)
    smooth = np.fft.irfft2(weights[0] * s1 + weights[1] * s2, s=plane.shape)
    return plane - smooth, smooth


def _bicubic_linear_exact(plane: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic upscale after odd-reflection padding, so linear functions are reproduced up to the borders."""
    height, width = plane.shape
    padded = np.pad(plane, _SMOOTH_PAD, mode="reflect", reflect_type="odd")
    box = (_SMOOTH_PAD, _SMOOTH_PAD, _SMOOTH_PAD + width, _SMOOTH_PAD + height)
    return _pil_resize_plane(padded, (width * scale, height * scale), Image.Resampling.BICUBIC, box=box)


def _fourier_plane(plane: np.ndarray, scale: int) -> np.ndarray:
    periodic, smooth = _seam_split(plane)
    result = _spectral_upscale(periodic, scale)
    if smooth.any():
        result += _bicubic_linear_exact(smooth, scale)
    return result


def upscale_array(array: np.ndarray, method: str, scale: int) -> np.ndarray:
    """Upscale an HxWxC image (C in 1..4, float in [0, 1]) by an integer factor with a classical method.

    Returns float32 (H*scale)x(W*scale)xC clipped to [0, 1] (HxW input gives HxW output). uint8 and uint16
    inputs are accepted and scaled to [0, 1]. Every channel, alpha included, is interpolated independently.
    """
    _check_method(method)
    scale = _check_scale(scale)
    squeeze = np.ndim(array) == 2
    image = _as_float_image(array)
    height, width, channels = image.shape
    out = np.empty((height * scale, width * scale, channels), dtype=np.float32)
    for c in range(channels):
        plane = image[:, :, c]
        if method == "fourier":
            result = _fourier_plane(plane, scale)
        else:
            result = _pil_resize_plane(plane, (width * scale, height * scale), _PIL_FILTERS[method])
        np.clip(result, 0.0, 1.0, out=out[:, :, c], casting="unsafe")
    return out[:, :, 0] if squeeze else out


def resize_array(array: np.ndarray, size: tuple[int, int], method: str = "lanczos") -> np.ndarray:
    """Resize an HxWxC float image in [0, 1] to ``size`` = (width, height) with a PIL kernel, any factor.

    The fractional-scale counterpart of :func:`upscale_array` for ``nearest``, ``bilinear``, ``bicubic`` and
    ``lanczos`` (``fourier`` needs an integer scale). Channels are resized independently on float32 planes, so
    16-bit data and alpha keep their precision; the result is float32 clipped to [0, 1].
    """
    if method not in _PIL_FILTERS:
        valid = ", ".join(_PIL_FILTERS)
        raise UnknownMethodError(f"{method!r} cannot resize to an arbitrary size; use one of: {valid}")
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"target size must be at least 1x1, got {width}x{height}")
    squeeze = np.ndim(array) == 2
    image = _as_float_image(array)
    out = np.empty((height, width, image.shape[2]), dtype=np.float32)
    for c in range(image.shape[2]):
        result = _pil_resize_plane(image[:, :, c], (width, height), _PIL_FILTERS[method])
        np.clip(result, 0.0, 1.0, out=out[:, :, c], casting="unsafe")
    return out[:, :, 0] if squeeze else out


def mod_crop(image: Image.Image, scale: int) -> Image.Image:
    """Crop the right and bottom edges so that width and height are multiples of ``scale``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    width, height = image.size
    new_width, new_height = width - width % scale, height - height % scale
    if new_width == 0 or new_height == 0:
        raise ValueError(f"a {width}x{height} image is smaller than the scale {scale}")
    if (new_width, new_height) == (width, height):
        return image.copy()
    return image.crop((0, 0, new_width, new_height))


def downscale(image: Image.Image, scale: int) -> Image.Image:
    """Make the low-resolution input of an SR pair: mod-crop, then PIL's antialiased bicubic resize by 1/scale.

    Palette and bilevel images are converted to RGB(A) or L first, since PIL would otherwise fall back to
    nearest-neighbour resampling for them.
    """
    scale = _check_scale(scale)
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA" if image.mode == "PA" or "transparency" in image.info else "RGB")
    cropped = mod_crop(image, scale)
    width, height = cropped.size
    return cropped.resize((width // scale, height // scale), Image.Resampling.BICUBIC)
