"""Realistic degradations of HR images into LR inputs, and the named fixed degradations used for evaluation.

:func:`degrade` is a "high-order" pipeline in the spirit of Real-ESRGAN (Wang et al. 2021): two rounds of
blur -> random resize -> noise -> JPEG, then a resize to the target LR size with a final sinc filter and JPEG in
random order. Every random choice is drawn from the ``numpy.random.Generator`` passed in, so a (seed, image)
pair always gives the same LR. The ranges are data (:class:`DegradationConfig`, filled from the training YAML);
its defaults are Real-ESRGAN's published ones.

:func:`degrade_named` applies one of :data:`NAMED_DEGRADATIONS` (``bicubic``, ``jpeg50``, ``noise10+jpeg75``, ...)
to an LR image with a fixed seed: the evaluation protocol for degraded inputs (bicubic x4 first, then this).

Images are float32 HxWx3 arrays in [0, 1] between stages; the pipeline takes and returns uint8.
"""

from __future__ import annotations

import dataclasses
import io
import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .classical import downscale

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
_PIL_FILTERS = {"area": Image.BOX, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass
class DegradationConfig:
    """Ranges and probabilities of the two-round pipeline (defaults: Real-ESRGAN x4plus).

    Ranges are ``[low, high]`` drawn uniformly; probabilities are in [0, 1]. ``*_prob`` keys without a round
    suffix apply to round 1, ``*2`` keys to round 2; ``resize_mode_prob`` weighs the filters of every resize.
    Noise sigmas are on the 0-255 scale.
    """

    clean_prob: float = 0.0
    kernel_sizes: list[int] = field(default_factory=lambda: [7, 21])
    kernel_list: list[str] = field(default_factory=lambda: list(KERNEL_TYPES))
    kernel_prob: list[float] = field(default_factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])
    blur_prob: float = 1.0
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])
    sinc_prob: float = 0.1
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    resize_mode_prob: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # area, bilinear, bicubic
    gaussian_noise_prob: float = 0.5
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    gray_noise_prob: float = 0.4
    noise_prob: float = 1.0
    jpeg_range: list[float] = field(default_factory=lambda: [30.0, 95.0])
    jpeg_prob: float = 1.0

    second_order_prob: float = 1.0
    second_blur_prob: float = 0.8
    blur_sigma2: list[float] = field(default_factory=lambda: [0.2, 1.5])
    sinc_prob2: float = 0.1
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range2: list[float] = field(default_factory=lambda: [0.3, 1.2])
    gaussian_noise_prob2: float = 0.5
    noise_range2: list[float] = field(default_factory=lambda: [1.0, 25.0])
    poisson_scale_range2: list[float] = field(default_factory=lambda: [0.05, 2.5])
    gray_noise_prob2: float = 0.4
    noise_prob2: float = 1.0

    final_sinc_prob: float = 0.8
    jpeg_range2: list[float] = field(default_factory=lambda: [30.0, 95.0])
    final_jpeg_prob: float = 1.0

    def validate(self) -> DegradationConfig:
        """Raise ValueError naming the first key that is out of range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and isinstance(value, float):
                _require(0.0 <= value <= 1.0, f.name, f"must be in [0, 1], got {value}")
            elif f.name in ("resize_prob", "resize_prob2", "kernel_prob", "resize_mode_prob"):
                continue
            elif isinstance(value, list) and f.name != "kernel_list":
                _require(len(value) == 2 and value[0] <= value[1], f.name, f"must be [low, high], got {value}")
                _require(value[0] >= 0, f.name, f"must not be negative, got {value}")
        for key in ("resize_prob", "resize_prob2"):
            probs = getattr(self, key)
            _require(len(probs) == 3 and min(probs) >= 0 and sum(probs) > 0, key, "must be 3 weights (up, down, keep)")
        modes = self.resize_mode_prob
        _require(
            len(modes) == len(RESIZE_MODES) and min(modes) >= 0 and sum(modes) > 0,
            "resize_mode_prob",
            f"must be {len(RESIZE_MODES)} weights ({', '.join(RESIZE_MODES)})",
        )
        unknown = [k for k in self.kernel_list if k not in KERNEL_TYPES]
        _require(not unknown, "kernel_list", f"unknown kernel types {unknown}; known: {', '.join(KERNEL_TYPES)}")
        _require(
            len(self.kernel_prob) == len(self.kernel_list) and min(self.kernel_prob, default=0) >= 0
            and sum(self.kernel_prob) > 0,
            "kernel_prob",
            "must give one non-negative weight per kernel_list entry",
        )  # fmt: skip
        lo, hi = self.kernel_sizes
        _require(lo >= 3 and lo % 2 == 1 and hi % 2 == 1, "kernel_sizes", "must be odd sizes >= 3")
        for key in ("jpeg_range", "jpeg_range2"):
            _require(getattr(self, key)[0] >= 1 and getattr(self, key)[1] <= 100, key, "qualities must be in 1..100")
        for key in ("resize_range", "resize_range2"):
            _require(getattr(self, key)[0] > 0, key, "scales must be > 0")
        return self


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ValueError(f"{key}: {message}")


# --------------------------------------------------------------------------------------------- kernels


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    return np.meshgrid(r, r, indexing="xy")


def _inverse_covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    cov = rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T
    return np.linalg.inv(cov)


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    x, y = _grid(size)
    inv = _inverse_covariance(sigma_x, sigma_y, theta)
    return inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """A size x size (an)isotropic Gaussian rotated by ``theta``, summing to 1."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalised(np.exp(-0.5 * q))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """exp(-0.5 q^beta): beta < 1 gives heavier tails, beta > 1 a flatter top (beta = 1 is the Gaussian)."""
    return _normalised(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """1 / (1 + q^beta): a flat top with slowly decaying tails (Real-ESRGAN's plateau kernel)."""
    return _normalised(1.0 / (1.0 + _quadratic_form(size, sigma_x, sigma_y, theta) ** beta))


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
_GAUSS_LEGENDRE = ((_NODES + 1) * (math.pi / 2), _WEIGHTS)


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """J1(x) = (1/pi) integral_0^pi cos(t - x sin t) dt, by Gauss-Legendre quadrature (no scipy needed)."""
    t, weights = _GAUSS_LEGENDRE
    values = np.cos(t[None, :] - np.asarray(x, dtype=np.float64).reshape(-1, 1) * np.sin(t[None, :]))
    return ((values @ weights) * 0.5).reshape(np.shape(x))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The 2-D circular low-pass (jinc) filter with cut-off ``cutoff`` rad/pixel: it adds ringing and overshoot."""
    x, y = _grid(size)
    r = np.hypot(x, y)
    safe = np.where(r == 0, 1.0, r)
    kernel = np.where(r == 0, cutoff**2 / (4 * math.pi), cutoff * bessel_j1(cutoff * safe) / (2 * math.pi * safe))
    return _normalised(kernel)


def _uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _beta(rng: np.random.Generator, bounds: list[float]) -> float:
    """Half the draws below 1 and half above, as in Real-ESRGAN (bounds straddle 1)."""
    if bounds[0] < 1 < bounds[1] and rng.random() < 0.5:
        return float(rng.uniform(bounds[0], 1.0))
    return float(rng.uniform(max(bounds[0], 1.0) if bounds[1] > 1 else bounds[0], bounds[1]))


def _kernel_size(rng: np.random.Generator, sizes: list[int]) -> int:
    return int(rng.choice(np.arange(sizes[0], sizes[1] + 1, 2)))


def _sinc_cutoff(rng: np.random.Generator, size: int) -> float:
    return float(rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi))


def random_kernel(
    rng: np.random.Generator, config: DegradationConfig, sigma: list[float], sinc_prob: float
) -> np.ndarray:
    """One blur kernel as Real-ESRGAN draws it: sinc with ``sinc_prob``, else a type from ``kernel_list``."""
    size = _kernel_size(rng, config.kernel_sizes)
    if rng.random() < sinc_prob:
        return sinc_kernel(size, _sinc_cutoff(rng, size))
    probs = np.asarray(config.kernel_prob, dtype=np.float64)
    kind = config.kernel_list[int(rng.choice(len(probs), p=probs / probs.sum()))]
    sigma_x = _uniform(rng, sigma)
    isotropic = kind.endswith("iso") and not kind.endswith("aniso")
    sigma_y, theta = (sigma_x, 0.0) if isotropic else (_uniform(rng, sigma), float(rng.uniform(-math.pi, math.pi)))
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _beta(rng, config.betag_range))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _beta(rng, config.betap_range))
    return gaussian_kernel(size, sigma_x, sigma_y, theta)


# --------------------------------------------------------------------------------------------- stages


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float32 in [0, 1]."""
    return image.astype(np.float32) / 255.0


def to_uint8_rounded(image: np.ndarray) -> np.ndarray:
    """float in [0, 1] -> uint8, clipped and rounded (what saving the image would do)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with ``kernel`` (reflect padding, so the size and the borders' brightness hold).

    Done as an FFT product of the padded image: for the 7-21 pixel kernels here, about twice as fast on the CPU
    as a direct depthwise convolution.
    """
    size = kernel.shape[0]
    pad = size // 2
    height, width = image.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < min(height, width) else "replicate")[0]
    shape = x.shape[-2:]
    product = torch.fft.rfft2(x) * torch.fft.rfft2(torch.from_numpy(kernel), s=shape)
    out = torch.fft.irfft2(product, s=shape)[:, size - 1 : size - 1 + height, size - 1 : size - 1 + width]
    return out.numpy().transpose(1, 2, 0)


def resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a float image to ``size`` = (width, height) with PIL ("area" = box filter), channel by channel."""
    channels = [
        np.asarray(Image.fromarray(image[:, :, c]).resize(size, _PIL_FILTERS[mode])) for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2)


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Zero-mean Gaussian noise of ``sigma`` on the 0-255 scale; ``gray`` uses one field for all channels."""
    shape = image.shape[:2] + (1,) if gray else image.shape
    noise = rng.standard_normal(shape).astype(np.float32) * (sigma / 255.0)
    return image + noise


def add_poisson_noise(image: np.ndarray, scale: float, rng: np.random.Generator, gray: bool = False) -> np.ndarray:
    """Shot noise: Poisson counts at 2^ceil(log2(#grey levels)) levels, the deviation scaled by ``scale``."""
    source = image.mean(axis=2, keepdims=True) if gray else image
    source = np.clip(source, 0.0, 1.0)
    unique = int(np.count_nonzero(np.bincount(to_uint8_rounded(source).ravel(), minlength=256)))
    levels = 2 ** math.ceil(math.log2(max(unique, 2)))
    noisy = rng.poisson(source * levels).astype(np.float32) / levels
    return image + (noisy - source) * scale


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as baseline JPEG with PIL (4:2:0 chroma subsampling, as cameras and browsers do)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8_rounded(image)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return to_float(np.asarray(Image.open(buffer).convert("RGB")))


# --------------------------------------------------------------------------------------------- pipeline


def _resize_mode(rng: np.random.Generator, weights: list[float]) -> str:
    """One of :data:`RESIZE_MODES`, drawn by ``weights`` (Real-ESRGAN draws them evenly)."""
    p = np.asarray(weights, dtype=np.float64)
    return RESIZE_MODES[int(rng.choice(len(RESIZE_MODES), p=p / p.sum()))]


def _random_resize(
    image: np.ndarray, rng: np.random.Generator, probs: list[float], bounds: list[float], base: tuple[int, int],
    mode_weights: list[float],
) -> np.ndarray:  # fmt: skip
    """Up, down or keep (by ``probs``) relative to ``base`` = (width, height), with a random filter.

    Up draws the factor from [max(low, 1), high], down from [low, min(high, 1)]: Real-ESRGAN's rule for ranges
    that straddle 1, and a fixed factor for a range like [0.25, 0.25]."""
    p = np.asarray(probs, dtype=np.float64)
    direction = int(rng.choice(3, p=p / p.sum()))
    if direction == 0:
        factor = float(rng.uniform(max(bounds[0], 1.0), max(bounds[1], 1.0)))
    elif direction == 1:
        factor = float(rng.uniform(min(bounds[0], 1.0), min(bounds[1], 1.0)))
    else:
        factor = 1.0
    mode = _resize_mode(rng, mode_weights)
    size = (max(1, round(base[0] * factor)), max(1, round(base[1] * factor)))
    return resize(image, size, mode)


def _random_noise(
    image: np.ndarray, rng: np.random.Generator, gaussian_prob: float, sigma: list[float], poisson: list[float],
    gray_prob: float,
) -> np.ndarray:  # fmt: skip
    gray = bool(rng.random() < gray_prob)
    if rng.random() < gaussian_prob:
        return add_gaussian_noise(image, _uniform(rng, sigma), rng, gray)
    return add_poisson_noise(image, _uniform(rng, poisson), rng, gray)


def _random_jpeg(image: np.ndarray, rng: np.random.Generator, bounds: list[float]) -> np.ndarray:
    return jpeg(np.clip(image, 0.0, 1.0), int(rng.integers(int(bounds[0]), int(bounds[1]) + 1)))


def _first_round(image: np.ndarray, rng: np.random.Generator, c: DegradationConfig) -> np.ndarray:
    height, width = image.shape[:2]
    if rng.random() < c.blur_prob:
        image = blur(image, random_kernel(rng, c, c.blur_sigma, c.sinc_prob))
    image = _random_resize(image, rng, c.resize_prob, c.resize_range, (width, height), c.resize_mode_prob)
    if rng.random() < c.noise_prob:
        image = _random_noise(
            image, rng, c.gaussian_noise_prob, c.noise_range, c.poisson_scale_range, c.gray_noise_prob
        )
    if rng.random() < c.jpeg_prob:
        image = _random_jpeg(image, rng, c.jpeg_range)
    return image


def _second_round(image: np.ndarray, rng: np.random.Generator, c: DegradationConfig, lr: tuple[int, int]) -> np.ndarray:
    if rng.random() < c.second_blur_prob:
        image = blur(image, random_kernel(rng, c, c.blur_sigma2, c.sinc_prob2))
    image = _random_resize(image, rng, c.resize_prob2, c.resize_range2, lr, c.resize_mode_prob)
    if rng.random() < c.noise_prob2:
        image = _random_noise(
            image, rng, c.gaussian_noise_prob2, c.noise_range2, c.poisson_scale_range2, c.gray_noise_prob2
        )
    return image


def _final_step(image: np.ndarray, rng: np.random.Generator, c: DegradationConfig, lr: tuple[int, int]) -> np.ndarray:
    """Resize to the LR size, sinc and JPEG; in either order (resize+sinc then JPEG, or JPEG then resize+sinc)."""
    size = _kernel_size(rng, c.kernel_sizes)
    kernel = sinc_kernel(size, _sinc_cutoff(rng, size)) if rng.random() < c.final_sinc_prob else None
    mode = _resize_mode(rng, c.resize_mode_prob)
    use_jpeg = bool(rng.random() < c.final_jpeg_prob)
    quality = int(rng.integers(int(c.jpeg_range2[0]), int(c.jpeg_range2[1]) + 1))

    def resize_and_sinc(x: np.ndarray) -> np.ndarray:
        x = resize(x, lr, mode)
        return blur(x, kernel) if kernel is not None else x

    def compress(x: np.ndarray) -> np.ndarray:
        return jpeg(np.clip(x, 0.0, 1.0), quality) if use_jpeg else x

    if rng.random() < 0.5:
        return compress(resize_and_sinc(image))
    return resize_and_sinc(compress(image))


def degrade(hr: np.ndarray, scale: int, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """uint8 HxWx3 HR -> uint8 (H/scale)x(W/scale)x3 LR through the two-round pipeline (H, W multiples of scale)."""
    height, width = hr.shape[:2]
    if height % scale or width % scale:
        raise ValueError(f"the HR size {width}x{height} is not a multiple of the scale {scale}")
    lr_size = (width // scale, height // scale)
    if rng.random() < config.clean_prob:
        return np.asarray(downscale(Image.fromarray(hr), scale))
    image = _first_round(to_float(hr), rng, config)
    if rng.random() < config.second_order_prob:
        image = _second_round(image, rng, config, lr_size)
    return to_uint8_rounded(_final_step(image, rng, config, lr_size))


# --------------------------------------------------------------------------------------------- named specs

NAMED_DEGRADATIONS: dict[str, str] = {
    "bicubic": "none (clean bicubic downscale, the classic protocol)",
    "jpeg50": "JPEG quality 50",
    "jpeg75": "JPEG quality 75",
    "noise10+jpeg75": "Gaussian noise sigma 10/255 (colour), then JPEG quality 75",
    "blur+jpeg60": "Gaussian blur sigma 1.0 px, then JPEG quality 60",
}
NAMED_BLUR_SIGMA = 1.0


def check_named(spec: str) -> str:
    """``spec`` if it is a known named degradation, else ValueError listing the names."""
    if spec not in NAMED_DEGRADATIONS:
        raise ValueError(f"unknown degradation {spec!r}; choose one of: {', '.join(NAMED_DEGRADATIONS)}")
    return spec


def spec_seed(spec: str, key: str) -> int:
    """The fixed seed of a named degradation for one image (stable across runs, platforms and processes)."""
    return zlib.crc32(f"{spec}|{key}".encode())


def degrade_for(lr: Image.Image, spec: str, key: str) -> Image.Image:
    """:func:`degrade_named` with the seed fixed by ``key`` (an image name): the evaluation protocol's LR."""
    return degrade_named(lr, spec, seed=spec_seed(spec, key))


def degrade_named(lr: Image.Image, spec: str, *, seed: int = 0) -> Image.Image:
    """Apply the named degradation ``spec`` to an RGB LR image; ``seed`` fixes the noise."""
    check_named(spec)
    if spec == "bicubic":
        return lr
    image = to_float(np.asarray(lr.convert("RGB")))
    rng = np.random.default_rng(seed)
    if spec.startswith("noise10"):
        image = add_gaussian_noise(image, 10.0, rng)
    if spec.startswith("blur"):
        size = 2 * math.ceil(3 * NAMED_BLUR_SIGMA) + 1
        image = blur(image, gaussian_kernel(size, NAMED_BLUR_SIGMA))
    quality = int(spec.rsplit("jpeg", 1)[1])
    return Image.fromarray(to_uint8_rounded(jpeg(np.clip(image, 0.0, 1.0), quality)))
