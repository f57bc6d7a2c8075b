"""sr_core.degradations: the realistic pipeline (determinism, sizes, ranges) and each stage against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, special

from sr_core import degradations as dg
from sr_core.degradations import DegradationConfig, degrade, degrade_named


@pytest.fixture
def photo() -> np.ndarray:
    """A 96x96 uint8 image with edges, texture and smooth areas."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:96].astype(np.float64)
    base = 120 + 80 * np.sin(x / 6) * np.cos(y / 9) + 40 * (x > 50) + rng.normal(0, 6, (96, 96))
    img = np.stack([base, 0.7 * base + 30, 255 - base], axis=2)
    return np.clip(img, 0, 255).astype(np.uint8)


def blockiness(gray: np.ndarray) -> float:
    """Mean jump across 8-pixel column boundaries over the mean jump inside blocks (1 = no block structure)."""
    d = np.abs(np.diff(gray.astype(np.float64), axis=1))
    at_boundary = d[:, 7::8].mean()
    inside = np.delete(d, np.s_[7::8], axis=1).mean()
    return at_boundary / inside


# ------------------------------------------------------------------------------------------ pipeline


def test_same_seed_same_lr_and_different_seed_different_lr(photo):
    config = DegradationConfig()
    a = degrade(photo, 4, config, np.random.default_rng([7, 1]))
    b = degrade(photo, 4, config, np.random.default_rng([7, 1]))
    c = degrade(photo, 4, config, np.random.default_rng([7, 2]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("scale", [2, 4])
def test_output_size_type_and_range_over_many_draws(photo, scale):
    config = DegradationConfig()
    outputs = [degrade(photo, scale, config, np.random.default_rng(i)) for i in range(25)]
    for lr in outputs:
        assert lr.shape == (96 // scale, 96 // scale, 3) and lr.dtype == np.uint8
    # The draws really differ (blur, noise, JPEG): the spread of the LR means is non-trivial.
    assert np.std([lr.astype(float).std() for lr in outputs]) > 0.5


def test_degraded_lr_stays_close_to_the_clean_one_on_average(photo):
    """The pipeline degrades the image, it does not replace it: mean colour is preserved within a few levels."""
    clean = np.asarray(Image.fromarray(photo).resize((24, 24), Image.BICUBIC)).astype(float)
    lrs = [degrade(photo, 4, DegradationConfig(), np.random.default_rng(i)).astype(float) for i in range(20)]
    assert abs(np.mean(lrs) - clean.mean()) < 6
    assert np.mean([np.corrcoef(lr.ravel(), clean.ravel())[0, 1] for lr in lrs]) > 0.6


def test_clean_prob_one_gives_the_bicubic_downscale(photo):
    from sr_core.data import make_lr

    lr = degrade(photo, 4, DegradationConfig(clean_prob=1.0), np.random.default_rng(0))
    np.testing.assert_array_equal(lr, make_lr(photo, 4))


def test_a_fixed_down_range_resizes_straight_to_that_factor(photo):
    image = dg.to_float(photo)
    for seed in range(5):
        out = dg._random_resize(
            image, np.random.default_rng(seed), [0.0, 1.0, 0.0], [0.25, 0.25], (96, 96), [1.0, 1.0, 1.0]
        )
        assert out.shape == (24, 24, 3)


def test_resize_mode_weights_pick_the_filter(photo):
    image = dg.to_float(photo[:96, :96])
    red = Image.fromarray(image[:, :, 0])
    for mode, pil_filter in (("area", Image.BOX), ("bicubic", Image.BICUBIC)):
        weights = [1.0 if m == mode else 0.0 for m in dg.RESIZE_MODES]
        for seed in range(4):
            rng = np.random.default_rng(seed)
            out = dg._random_resize(image, rng, [0.0, 1.0, 0.0], [0.25, 0.25], (96, 96), weights)
            np.testing.assert_array_equal(out[:, :, 0], np.asarray(red.resize((24, 24), pil_filter)))
    draws = [dg._resize_mode(np.random.default_rng(s), [1.0, 0.0, 3.0]) for s in range(400)]
    assert "bilinear" not in draws and 0.65 < draws.count("bicubic") / len(draws) < 0.85


def test_size_not_a_multiple_of_the_scale_is_refused(photo):
    with pytest.raises(ValueError, match="multiple of the scale"):
        degrade(photo[:95], 4, DegradationConfig(), np.random.default_rng(0))


def test_config_validation_names_the_key():
    with pytest.raises(ValueError, match="noise_range"):
        DegradationConfig(noise_range=[5.0, 1.0]).validate()
    with pytest.raises(ValueError, match="gaussian_noise_prob"):
        DegradationConfig(gaussian_noise_prob=1.5).validate()
    with pytest.raises(ValueError, match="kernel_list"):
        DegradationConfig(kernel_list=["box"], kernel_prob=[1.0]).validate()
    with pytest.raises(ValueError, match="jpeg_range"):
        DegradationConfig(jpeg_range=[0.0, 120.0]).validate()
    with pytest.raises(ValueError, match="resize_mode_prob"):
        DegradationConfig(resize_mode_prob=[0.0, 0.0, 0.0]).validate()
    DegradationConfig().validate()


# ------------------------------------------------------------------------------------------ kernels


def test_every_random_kernel_sums_to_one_and_is_odd_sized():
    config = DegradationConfig(sinc_prob=0.3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = dg.random_kernel(rng, config, config.blur_sigma, config.sinc_prob)
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and 7 <= k.shape[0] <= 21
        assert abs(float(k.sum()) - 1.0) < 1e-5 and np.isfinite(k).all()


def test_isotropic_gaussian_is_the_outer_product_of_1d_gaussians():
    r = np.arange(15) - 7
    g = np.exp(-(r**2) / (2 * 1.7**2))
    expected = np.outer(g, g) / np.outer(g, g).sum()
    np.testing.assert_allclose(dg.gaussian_kernel(15, 1.7), expected, atol=1e-7)


def test_anisotropic_gaussian_has_the_asked_covariance():
    sx, sy, theta = 2.0, 0.8, 0.6
    k = dg.gaussian_kernel(41, sx, sy, theta).astype(np.float64)
    x, y = np.meshgrid(np.arange(41) - 20, np.arange(41) - 20, indexing="xy")
    cov = np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    np.testing.assert_allclose(cov, rot @ np.diag([sx**2, sy**2]) @ rot.T, atol=1e-3)


def test_generalized_gaussian_with_beta_one_is_the_gaussian_and_plateau_is_flatter():
    np.testing.assert_allclose(
        dg.generalized_gaussian_kernel(15, 1.5, 1.5, 0.0, 1.0), dg.gaussian_kernel(15, 1.5), atol=1e-7
    )
    gauss, plateau = dg.gaussian_kernel(21, 2.0), dg.plateau_kernel(21, 2.0, 2.0, 0.0, 2.0)
    # Heavier tails: a larger share of the mass far from the centre.
    assert plateau[0, 10] / plateau[10, 10] > gauss[0, 10] / gauss[10, 10]


def test_bessel_j1_matches_scipy():
    x = np.linspace(0, 40, 401)
    np.testing.assert_allclose(dg.bessel_j1(x), special.j1(x), atol=1e-10)


def test_sinc_kernel_passes_low_and_stops_high_frequencies():
    k = dg.sinc_kernel(21, math.pi / 3)
    response = np.abs(np.fft.fftshift(np.fft.fft2(k, s=(128, 128))))
    freqs = np.fft.fftshift(np.fft.fftfreq(128)) * 2 * math.pi
    fx, fy = np.meshgrid(freqs, freqs, indexing="xy")
    radius = np.hypot(fx, fy)
    assert response[radius < math.pi / 6].min() > 0.85
    assert response[(radius > math.pi / 2) & (radius < math.pi)].mean() < 0.1
    assert abs(float(k.sum()) - 1.0) < 1e-6


# ------------------------------------------------------------------------------------------ stages


def test_blur_matches_scipy_convolution_with_reflect_borders():
    rng = np.random.default_rng(1)
    image = rng.random((30, 41, 3)).astype(np.float32)
    kernel = dg.gaussian_kernel(9, 1.8, 0.9, 0.4)
    kernel[0, 3] += 0.02  # make it non-symmetric, so a flipped kernel would be caught
    kernel /= kernel.sum()
    out = dg.blur(image, kernel)
    for c in range(3):
        expected = ndimage.convolve(image[:, :, c].astype(np.float64), kernel.astype(np.float64), mode="mirror")
        np.testing.assert_allclose(out[:, :, c], expected, atol=1e-5)


def test_blur_keeps_a_constant_image():
    image = np.full((20, 20, 3), 0.4, np.float32)
    np.testing.assert_allclose(dg.blur(image, dg.sinc_kernel(21, 1.0)), image, atol=1e-5)


def test_gaussian_noise_has_the_asked_sigma_and_gray_noise_is_shared():
    image = np.full((256, 256, 3), 0.5, np.float32)
    noisy = dg.add_gaussian_noise(image, 10.0, np.random.default_rng(0))
    assert abs((noisy - image).std() * 255 - 10.0) < 0.2 and abs((noisy - image).mean()) < 1e-3
    gray = dg.add_gaussian_noise(image, 10.0, np.random.default_rng(0), gray=True)
    np.testing.assert_array_equal(gray[:, :, 0], gray[:, :, 2])


def test_poisson_noise_variance_follows_the_signal():
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :, None].repeat(200, 0).repeat(3, 2)
    noisy = dg.add_poisson_noise(ramp, 1.0, np.random.default_rng(0))
    levels = 256  # 256 distinct 8-bit values -> 2^8 Poisson levels
    deviation = noisy - ramp
    for lo, hi in [(20, 60), (180, 240)]:
        mean = ramp[:, lo:hi].mean()
        assert abs(deviation[:, lo:hi].var() - mean / levels) < 0.15 * mean / levels
    assert deviation[:, 180:240].var() > 3 * deviation[:, 20:60].var()


def test_jpeg_produces_8x8_block_artefacts_and_resize_gives_the_size():
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:128, 0:128]
    smooth = (0.5 + 0.3 * np.sin(x / 11.0) * np.cos(y / 13.0))[:, :, None].repeat(3, axis=2)
    image = np.clip(smooth + rng.normal(0, 0.03, smooth.shape), 0, 1).astype(np.float32)
    gray_before = dg.to_uint8_rounded(image)[:, :, 1]
    gray_after = dg.to_uint8_rounded(dg.jpeg(image, 10))[:, :, 1]
    assert abs(blockiness(gray_before) - 1.0) < 0.1
    assert blockiness(gray_after) > 1.5
    assert dg.resize(image, (50, 30), "area").shape == (30, 50, 3)


# ------------------------------------------------------------------------------------------ named specs


def test_named_degradations_are_fixed_and_distinct(photo):
    lr = Image.fromarray(photo)
    assert degrade_named(lr, "bicubic") is lr
    outs = {}
    for spec in ("jpeg50", "jpeg75", "noise10+jpeg75", "blur+jpeg60"):
        a, b = degrade_named(lr, spec, seed=3), degrade_named(lr, spec, seed=3)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert a.size == lr.size and a.mode == "RGB"
        outs[spec] = np.asarray(a).astype(float)
    clean = photo.astype(float)
    errors = {k: np.abs(v - clean).mean() for k, v in outs.items()}
    assert errors["jpeg50"] > errors["jpeg75"] > 0
    assert errors["noise10+jpeg75"] > errors["jpeg75"]
    assert outs["blur+jpeg60"].std() < clean.std()  # blur removes contrast
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade_named(lr, "jpeg")


def test_patch_dataset_with_degradation_is_deterministic(tmp_path, photo):
    from sr_core.data import ImageList, PatchDataset

    for i in range(2):
        Image.fromarray(np.roll(photo, 10 * i, axis=1)).save(tmp_path / f"im{i}.png")
    images = ImageList.from_source(tmp_path)
    kwargs = dict(patch_size=48, scale=4, seed=5, length=8, degradation=DegradationConfig())
    a, b = PatchDataset(images, **kwargs), PatchDataset(images, **kwargs)
    clean = PatchDataset(images, patch_size=48, scale=4, seed=5, length=8)
    for i in range(4):
        assert a[i]["lr"].shape == (3, 12, 12) and a[i]["hr"].shape == (3, 48, 48)
        assert (a[i]["lr"] == b[i]["lr"]).all() and (a[i]["hr"] == clean[i]["hr"]).all()
    assert any((a[i]["lr"] != clean[i]["lr"]).any() for i in range(4))
