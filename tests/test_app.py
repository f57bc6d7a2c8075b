"""The running Gradio app, driven through gradio_client: sizes, lossless outputs, metrics, errors, compare."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
skimage_metrics = pytest.importorskip("skimage.metrics")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import sanitize_parameter_names  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "examples" / "astronaut.png"
MAX_PIXELS = 10_000


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma on 0..255 as MATLAB's rgb2ycbcr computes it (the SR literature's convention)."""
    x = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def reference_metrics(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[float, float]:
    """PSNR and SSIM (Wang et al. Gaussian window) on Y with a border crop, computed by scikit-image."""
    a = y_channel(sr)[border:-border, border:-border]
    b = y_channel(hr)[border:-border, border:-border]
    value = skimage_metrics.peak_signal_noise_ratio(b, a, data_range=255)
    structural = skimage_metrics.structural_similarity(
        b, a, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    return value, structural


def crop(box: tuple[int, int, int, int]) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").crop(box)


def pixels(path: str | os.PathLike) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A weights folder with a tiny x4 SRResNet registered as 'srresnet'."""
    import torch

    from sr_core.models import SRResNet
    from sr_core.registry import write_manifest_entry

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("weights")
    model = SRResNet(scale=4, num_blocks=1, channels=8).eval()
    write_manifest_entry(directory, model, name="srresnet", label="SRResNet", description="tiny test model")
    return directory


@pytest.fixture(scope="module")
def app(tmp_path_factory, weights):
    """The app served on a free port with a small pixel limit; yields (client, demo, config)."""
    from sr_app.handlers import AppConfig
    from sr_app.ui import build_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        config = AppConfig(
            weights_dir=str(weights),
            max_pixels=MAX_PIXELS,
            max_output_pixels=500_000,
            output_dir=str(tmp_path_factory.mktemp("outputs")),
        )
        demo = build_demo(config)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_port=None, max_file_size="2mb")
        client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
        try:
            yield client, demo, config
        finally:
            client.close()
            demo.close()


@pytest.fixture
def upload(tmp_path):
    def save(image: Image.Image, name: str = "input.png") -> str:
        path = tmp_path / name
        image.save(path)
        return str(path)

    return save


def call_upscale(client, image, method="bicubic", scale=4, reference=None, test=False, tile=0):
    ref = handle_file(reference) if reference else None
    return client.predict(handle_file(image), method, scale, ref, test, tile, api_name="/upscale")


def test_named_endpoints_are_published(app):
    client, _, _ = app
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/upscale", "/compare"} <= set(endpoints)
    assert [p["parameter_name"] for p in endpoints["/upscale"]["parameters"]] == [
        "image",
        "method",
        "scale",
        "reference",
        "test_on_my_image",
        "tile_size",
        "test_degradation",
        "outscale",
        "self_ensemble",
    ]


def test_heavy_events_share_one_limited_queue(app):
    _, demo, _ = app
    heavy = [fn for fn in demo.fns.values() if fn.concurrency_id == "sr_heavy"]
    names = {fn.api_name for fn in heavy}
    assert {"upscale", "compare"} <= names
    assert len(heavy) >= 3  # plus the live re-run and the example click
    assert {fn.concurrency_limit for fn in heavy} == {1}


def test_upscale_returns_scale_times_size_losslessly(app, upload):
    client, _, _ = app
    source = crop((200, 60, 240, 90))  # 40x30
    (before, after), png, psnr, ssim, summary = call_upscale(client, upload(source), "bicubic", 3)
    result = pixels(png)
    assert result.shape == (90, 120, 3)
    # Independent reference: PIL's 8-bit bicubic (same kernel, fixed point with rounding between passes).
    expected = np.asarray(source.resize((120, 90), Image.Resampling.BICUBIC)).astype(int)
    difference = np.abs(result.astype(int) - expected)
    assert difference.max() <= 2 and difference.mean() < 0.25
    # The slider is PNG: 'after' is the result exactly, 'before' the input blown up by pixel repetition.
    np.testing.assert_array_equal(pixels(after), result)
    np.testing.assert_array_equal(pixels(before), np.repeat(np.repeat(np.asarray(source), 3, 0), 3, 1))
    assert psnr is None and ssim is None
    assert "Bicubic" in summary and "cpu" in summary and " s" in summary


def test_model_method_upscales_in_tiles(app, upload):
    client, _, _ = app
    source = crop((200, 60, 280, 100))  # 80x40
    (_, after), png, _, _, summary = call_upscale(client, upload(source), "srresnet", 4, tile=32)
    assert pixels(png).shape == (160, 320, 3)
    np.testing.assert_array_equal(pixels(after), pixels(png))
    assert "SRResNet" in summary


def test_metrics_with_a_reference_match_scikit_image(app, upload):
    client, _, _ = app
    truth = crop((180, 40, 276, 112))  # 96x72
    low = truth.resize((24, 18), Image.Resampling.BICUBIC)
    _, png, psnr, ssim, _ = call_upscale(client, upload(low), "lanczos", 4, reference=upload(truth, "truth.png"))
    want_psnr, want_ssim = reference_metrics(pixels(png), np.asarray(truth), border=4)
    assert psnr == pytest.approx(want_psnr, abs=2e-3)
    assert ssim == pytest.approx(want_ssim, abs=1e-3)
    assert 15 < psnr < 40


def test_test_on_my_image_shrinks_then_compares(app, upload):
    client, _, _ = app
    truth = crop((180, 40, 278, 111))  # 98x71: mod-crop to 96x68 at x4
    (before, _), png, psnr, ssim, _ = call_upscale(client, upload(truth), "bicubic", 4, test=True)
    cropped = truth.crop((0, 0, 96, 68))
    low = np.asarray(cropped.resize((24, 17), Image.Resampling.BICUBIC))
    result = pixels(png)
    assert result.shape == (68, 96, 3)
    np.testing.assert_array_equal(pixels(before), np.repeat(np.repeat(low, 4, 0), 4, 1))
    want_psnr, want_ssim = reference_metrics(result, np.asarray(cropped), border=4)
    assert psnr == pytest.approx(want_psnr, abs=2e-3)
    assert ssim == pytest.approx(want_ssim, abs=1e-3)


def test_reference_one_mod_crop_larger_is_cropped(app, upload):
    client, _, _ = app
    truth = crop((180, 40, 279, 113))  # 99x73 -> result of a 24x18 input at x4 is 96x72
    low = truth.crop((0, 0, 96, 72)).resize((24, 18), Image.Resampling.BICUBIC)
    _, png, psnr, _, summary = call_upscale(client, upload(low), "bicubic", 4, reference=upload(truth, "t.png"))
    want_psnr, _ = reference_metrics(pixels(png), np.asarray(truth)[:72, :96], border=4)
    assert psnr == pytest.approx(want_psnr, abs=2e-3)
    assert "cropped from 99x73 to 96x72" in summary


def error_of(client, *args, **kwargs) -> str:
    with pytest.raises(AppError) as info:
        call_upscale(client, *args, **kwargs)
    return str(info.value)


def test_non_image_upload_is_a_clear_error(app, tmp_path):
    client, _, _ = app
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a picture")
    message = error_of(client, str(notes))
    assert "notes.txt" in message and "not an image" in message


def test_truncated_image_is_a_clear_error(app, tmp_path, upload):
    client, _, _ = app
    data = Path(upload(crop((0, 0, 64, 64)), "whole.png")).read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    message = error_of(client, str(broken))
    assert "broken.png" in message and ("truncated" in message or "corrupt" in message)


def test_too_many_pixels_is_a_clear_error(app, upload):
    client, _, _ = app
    message = error_of(client, upload(crop((0, 0, 120, 120)), "big.png"))
    assert "big.png" in message and "120x120" in message and f"{MAX_PIXELS:,}" in message


def test_output_over_the_limit_is_a_clear_error(app, upload):
    client, _, _ = app
    message = error_of(client, upload(crop((0, 0, 100, 100))), "nearest", 8)
    assert "800x800" in message and "smaller scale" in message


def test_mismatched_reference_is_a_clear_error(app, upload):
    client, _, _ = app
    message = error_of(
        client, upload(crop((0, 0, 40, 30))), "bicubic", 3, reference=upload(crop((0, 0, 50, 50)), "r.png")
    )
    assert "50x50" in message and "120x90" in message


def test_unsupported_scale_is_a_clear_error(app, upload):
    client, _, _ = app
    message = error_of(client, upload(crop((0, 0, 40, 30))), "srresnet", 3)
    assert "SRResNet supports scale x4, not x3" in message


def test_unknown_method_and_missing_image_are_clear_errors(app, upload):
    client, _, _ = app
    assert "Unknown method 'magic'" in error_of(client, upload(crop((0, 0, 40, 30))), "magic", 4)
    with pytest.raises(AppError, match="upload an image"):
        client.predict(None, "bicubic", 4, None, False, 0, api_name="/upscale")


def test_compare_covers_every_method(app, upload):
    import sr_core

    client, _, config = app
    truth = crop((180, 40, 276, 112))
    table, gallery = client.predict(handle_file(upload(truth)), 4, None, True, 0, api_name="/compare")
    offered = sr_core.available_methods(config.weights_dir)
    assert [row[0] for row in table["data"]] == [m.label for m in offered]
    assert "SRResNet" in [row[0] for row in table["data"]]
    assert table["headers"] == ["method", "PSNR (dB)", "SSIM", "seconds"]
    assert len(gallery) == len(offered)
    for row, item in zip(table["data"], gallery, strict=True):
        result = pixels(item["image"])
        assert result.shape == (72, 96, 3)
        want_psnr, want_ssim = reference_metrics(result, np.asarray(truth), border=4)
        assert row[1] == pytest.approx(want_psnr, abs=2e-3)
        assert row[2] == pytest.approx(want_ssim, abs=1e-3)
        assert row[3] >= 0


def test_compare_leaves_out_methods_without_the_scale(app, upload):
    client, _, _ = app
    table, gallery = client.predict(handle_file(upload(crop((0, 0, 40, 30)))), 3, None, False, 0, api_name="/compare")
    labels = [row[0] for row in table["data"]]
    assert "SRResNet" not in labels and "Bicubic" in labels
    assert all(row[1] is None and row[2] is None for row in table["data"])
    assert all(pixels(item["image"]).shape == (90, 120, 3) for item in gallery)


def test_api_types_defaults_and_output_names_are_readable(app):
    client, _, _ = app
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/upscale", "/compare", "/upscale_image"} <= set(endpoints)
    for name in ("/upscale", "/compare", "/upscale_image"):
        params = {p["parameter_name"]: p for p in endpoints[name]["parameters"]}
        assert params["scale"]["type"]["type"] == "number" and params["scale"]["python_type"]["type"] == "float"
        assert params["outscale"]["type"]["type"] == "number"
        assert [n for n, p in params.items() if not p["parameter_has_default"]] == ["image"]
        labels = [r["label"] for r in endpoints[name]["returns"]]
        names = [sanitize_parameter_names(label) for label in labels]
        assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n) and not re.fullmatch(r"value_\d+", n) for n in names), names
    returns = [sanitize_parameter_names(r["label"]) for r in endpoints["/upscale"]["returns"]]
    assert returns == ["before_and_after", "result_png", "psnr", "ssim", "summary"]
    assert [r["label"] for r in endpoints["/upscale_image"]["returns"]] == ["Upscaled image"]


def test_keyword_call_with_image_method_and_scale(app, upload):
    client, _, _ = app
    source = crop((200, 60, 240, 90))  # 40x30
    _, png, psnr, ssim, summary = client.predict(
        image=handle_file(upload(source)), method="bicubic", scale=4, api_name="/upscale"
    )
    expected = np.asarray(source.resize((160, 120), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(pixels(png).astype(int) - expected).max() <= 2
    assert psnr is None and ssim is None and "Bicubic** x4" in summary


def test_outscale_runs_the_model_at_its_scale_then_lanczos(app, upload):
    import sr_core

    client, _, config = app
    source = crop((200, 60, 240, 80))  # 40x20
    (before, after), png, _, _, summary = client.predict(
        image=handle_file(upload(source)), method="srresnet", outscale=3.5, api_name="/upscale"
    )
    result = pixels(png)
    assert result.shape == (70, 140, 3)
    native = sr_core.upscale(source, "srresnet", 4, weights_dir=config.weights_dir)
    expected = np.asarray(native.resize((140, 70), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(result.astype(int) - expected).max() <= 2
    np.testing.assert_array_equal(pixels(after), result)
    assert pixels(before).shape == result.shape
    assert "x4, then Lanczos to x3.5" in summary and "40x20 -> 140x70" in summary


def test_upscale_image_endpoint_returns_just_the_png(app, upload):
    client, _, _ = app
    source = crop((200, 60, 224, 78))  # 24x18
    path = client.predict(image=handle_file(upload(source)), method="lanczos", outscale=2.5, api_name="/upscale_image")
    assert Image.open(path).format == "PNG"
    expected = np.asarray(source.resize((60, 45), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(pixels(path).astype(int) - expected).max() <= 2
    with pytest.raises(AppError, match="from 1 to 8"):
        client.predict(image=handle_file(upload(source)), method="lanczos", outscale=12, api_name="/upscale_image")


def _flipped_average(source: Image.Image, weights_dir: str, scale: int) -> np.ndarray:
    """The 8 flips and rotations of ``source``, each upscaled on its own, turned back with numpy and averaged."""
    import sr_core

    rgb = np.asarray(source)
    total = np.zeros((rgb.shape[0] * scale, rgb.shape[1] * scale, 3))
    for flip in (False, True):
        for turns in range(4):
            moved = np.ascontiguousarray(np.rot90(rgb[:, ::-1] if flip else rgb, turns))
            out = np.rot90(np.asarray(sr_core.upscale(Image.fromarray(moved), "srresnet", scale,
                                                      weights_dir=weights_dir), dtype=np.float64), -turns)  # fmt: skip
            total += out[:, ::-1] if flip else out
    return total / 8


def test_self_ensemble_through_the_api(app, upload):
    """The checkbox's parameter reaches the model (the 8-transform average) and the summary; classical methods
    are unchanged by it."""
    client, _, config = app
    source = crop((200, 60, 224, 80))  # 24x20
    path = client.predict(image=handle_file(upload(source)), method="srresnet", scale=4, self_ensemble=True,
                          api_name="/upscale_image")  # fmt: skip
    result = pixels(path).astype(np.float64)
    expected = _flipped_average(source, config.weights_dir, 4)
    assert np.abs(result - expected).max() <= 4 and np.abs(result - expected).mean() < 0.5
    plain = pixels(client.predict(image=handle_file(upload(source)), method="srresnet", scale=4,
                                  api_name="/upscale_image")).astype(np.float64)  # fmt: skip
    assert np.abs(plain - expected).mean() > 2 * np.abs(result - expected).mean()
    _, png, _, _, summary = client.predict(image=handle_file(upload(source)), method="bicubic", scale=2,
                                           self_ensemble=True, api_name="/upscale")  # fmt: skip
    assert "models only" in summary
    expected_bicubic = np.asarray(source.resize((48, 40), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(pixels(png).astype(int) - expected_bicubic).max() <= 2


def test_test_on_my_image_at_a_fractional_scale(app, upload):
    from sr_core.outscale import shrink_pair

    client, _, _ = app
    truth = crop((180, 40, 278, 111))  # 98x71 -> input 28x20 -> result 98x70
    _, png, psnr, ssim, _ = client.predict(
        image=handle_file(upload(truth)), method="bicubic", outscale=3.5, test_on_my_image=True, api_name="/upscale"
    )
    cropped, low = shrink_pair(truth, 3.5)
    assert low.size == (28, 20) and cropped.size == (98, 70)
    result = pixels(png)
    expected = np.asarray(low.resize((98, 70), Image.Resampling.BICUBIC)).astype(int)
    assert result.shape == (70, 98, 3) and np.abs(result.astype(int) - expected).max() <= 2
    want_psnr, want_ssim = reference_metrics(result, np.asarray(cropped), border=4)
    assert psnr == pytest.approx(want_psnr, abs=2e-3)
    assert ssim == pytest.approx(want_ssim, abs=1e-3)


def test_compare_at_an_output_scale_runs_every_method(app, upload):
    import sr_core

    client, _, config = app
    table, gallery = client.predict(
        image=handle_file(upload(crop((0, 0, 40, 30)))), outscale=2.5, api_name="/compare"
    )
    assert [row[0] for row in table["data"]] == [m.label for m in sr_core.available_methods(config.weights_dir)]
    assert all(pixels(item["image"]).shape == (75, 100, 3) for item in gallery)
