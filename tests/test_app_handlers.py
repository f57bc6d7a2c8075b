"""The app's plain handlers (no server): image modes, EXIF, reference matching, limits, outputs, tab hook."""

from __future__ import annotations

import importlib.util
import os
import re
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
skimage_metrics = pytest.importorskip("skimage.metrics")

from sr_app import handlers  # noqa: E402
from sr_app.handlers import AppConfig  # noqa: E402
from sr_core.errors import ImageTooLargeError, UnsupportedScaleError  # noqa: E402
from sr_core.registry import MethodInfo  # noqa: E402


@pytest.fixture
def config(tmp_path) -> AppConfig:
    return AppConfig(output_dir=str(tmp_path / "outputs"), max_pixels=20_000, max_output_pixels=200_000)


def gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 3 + y / 5)], axis=2)
    return np.round(rgb * 255).astype(np.uint8)


def test_16_bit_grey_stays_16_bit_in_the_download(tmp_path, config):
    values = (np.linspace(0, 65535, 24 * 18).reshape(18, 24)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    out = handlers.upscale_image(str(path), "bicubic", 2, config=config)
    saved = Image.open(out.png_path)
    assert saved.mode in ("I;16", "I") and saved.size == (48, 36)
    # Independent reference: PIL's float bicubic on the 16-bit values.
    plane = Image.fromarray(values.astype(np.float32)).resize((48, 36), Image.Resampling.BICUBIC)
    expected = np.clip(np.asarray(plane), 0, 65535)
    assert np.abs(np.asarray(saved).astype(np.float64) - expected).max() <= 1.0
    assert out.before.mode == "L" and out.before.size == (48, 36)


def test_alpha_is_kept(tmp_path, config):
    rgba = np.dstack([gradient(20, 16), np.full((16, 20), 77, np.uint8)])
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = handlers.upscale_image(str(path), "lanczos", 3, config=config)
    saved = Image.open(out.png_path)
    assert saved.mode == "RGBA" and saved.size == (60, 48)
    assert set(np.unique(np.asarray(saved)[..., 3])) == {77}
    assert out.before.mode == "RGBA"


def test_exif_orientation_is_applied(tmp_path, config):
    image = Image.fromarray(gradient(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), quality=95)
    out = handlers.upscale_image(str(path), "nearest", 2, config=config)
    assert out.result.size == (40, 80)


def test_grey_reference_against_colour_result(tmp_path, config):
    truth = Image.fromarray(gradient(48, 40)).convert("L")
    low = truth.resize((24, 20), Image.Resampling.BICUBIC).convert("RGB")
    low_path, truth_path = tmp_path / "low.png", tmp_path / "truth.png"
    low.save(low_path)
    truth.save(truth_path)
    out = handlers.upscale_image(str(low_path), "bicubic", 2, reference=str(truth_path), config=config)
    result = np.asarray(Image.open(out.png_path)).astype(np.float64) / 255
    y_result = 16 + 65.481 * result[..., 0] + 128.553 * result[..., 1] + 24.966 * result[..., 2]
    y_truth = 16 + 219 * np.asarray(truth).astype(np.float64) / 255
    want = skimage_metrics.peak_signal_noise_ratio(y_truth[2:-2, 2:-2], y_result[2:-2, 2:-2], data_range=255)
    assert out.metrics.psnr == pytest.approx(want, abs=1e-6)


def test_match_reference():
    ref = Image.new("RGB", (99, 73))
    same, notes = handlers.match_reference((99, 73), ref, 4)
    assert same.size == (99, 73) and notes == []
    cropped, notes = handlers.match_reference((96, 72), ref, 4)
    assert cropped.size == (96, 72) and "cropped" in notes[0]
    with pytest.raises(ValueError, match="99x73 pixels but the x2 result is 96x72"):
        handlers.match_reference((96, 72), ref, 2)
    with pytest.raises(ValueError, match="is 99x73"):
        handlers.match_reference((100, 72), ref, 4)


def test_identical_reference_reports_infinite_psnr_in_words():
    image = Image.fromarray(gradient(30, 30))
    metrics = handlers.compute_metrics(image, image.copy(), 2)
    assert metrics.psnr is None and metrics.ssim == pytest.approx(1.0)
    assert "identical" in metrics.notes[0]


def test_tiny_result_gives_a_note_not_a_failure():
    image = Image.fromarray(gradient(12, 12))
    metrics = handlers.compute_metrics(image, image.resize((12, 12), Image.Resampling.BOX).rotate(90), 4)
    assert metrics.psnr is None and metrics.ssim is None and "not computed" in metrics.notes[0]


def test_pick_and_check_scale():
    assert handlers.pick_scale((4,), 3) == 4
    assert handlers.pick_scale((2, 3), 8) == 3
    assert handlers.pick_scale((2, 3, 4, 5, 6, 7, 8), 5) == 5
    assert handlers.pick_scale((2, 8), None) == 2
    info = MethodInfo("m", "Model", "", "model", (2, 4))
    assert handlers.check_scale(info, 4) == 4
    assert handlers.check_scale(info, "2") == 2
    for bad in (3, True, 2.5, "x4", None):
        with pytest.raises(UnsupportedScaleError):
            handlers.check_scale(info, bad)


def test_tile_size_validation(tmp_path, config):
    path = tmp_path / "small.png"
    Image.fromarray(gradient(20, 20)).save(path)
    with pytest.raises(ValueError, match="at least 32"):
        handlers.upscale_image(str(path), "bicubic", 2, tile_size=16, config=config)
    assert handlers.upscale_image(str(path), "bicubic", 2, tile_size=0, config=config).result.size == (40, 40)


def test_limits(tmp_path, config):
    path = tmp_path / "wide.png"
    Image.fromarray(gradient(200, 101)).save(path)
    with pytest.raises(ImageTooLargeError, match=r"wide\.png is 200x101 pixels.*20,000"):
        handlers.upscale_image(str(path), "bicubic", 2, config=config)
    Image.fromarray(gradient(100, 100)).save(path)
    with pytest.raises(ImageTooLargeError, match="800x800"):
        handlers.upscale_image(str(path), "nearest", 8, config=config)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(gradient(3, 3)).save(tiny)
    with pytest.raises(ValueError, match="too small"):
        handlers.upscale_image(str(tiny), "bicubic", 4, test_on_my_image=True, config=config)


def test_missing_image_and_unknown_method(tmp_path, config):
    with pytest.raises(ValueError, match="upload an image"):
        handlers.upscale_image(None, "bicubic", 2, config=config)
    path = tmp_path / "a.png"
    Image.fromarray(gradient(20, 20)).save(path)
    with pytest.raises(Exception, match="Unknown method '/etc'"):
        handlers.upscale_image(str(path), "/etc", 2, config=config)


def test_rescore_uses_the_saved_result(tmp_path, config):
    truth = Image.fromarray(gradient(64, 48))
    low_path, truth_path = tmp_path / "low.png", tmp_path / "truth.png"
    truth.resize((32, 24), Image.Resampling.BICUBIC).save(low_path)
    truth.save(truth_path)
    out = handlers.upscale_image(str(low_path), "bilinear", 2, config=config)
    assert out.metrics.psnr is None
    again = handlers.rescore(out.png_path, str(truth_path), 2, config=config)
    direct = handlers.compute_metrics(Image.open(out.png_path), truth, 2)
    assert again.psnr == pytest.approx(direct.psnr) and again.ssim == pytest.approx(direct.ssim)
    assert handlers.rescore(out.png_path, None, 2, config=config).psnr is None


def test_old_outputs_are_pruned(config):
    first = handlers.save_result(Image.new("RGB", (4, 4)), "old", config)
    old = time.time() - handlers.OUTPUT_MAX_AGE_S - 10
    os.utime(first.parent, (old, old))
    second = handlers.save_result(Image.new("RGB", (4, 4)), "new/../x", config)
    assert not first.exists() and second.is_file()
    assert second.parent.parent == first.parent.parent and second.name == "new_.._x.png"


def test_gpu_decorator_is_a_no_op_without_spaces():
    from sr_app.ui import gpu

    def work() -> int:
        return 1

    if importlib.util.find_spec("spaces") is None:
        assert gpu(60)(work) is work


def test_extra_tab_hook(tmp_path, monkeypatch):
    import gradio as gr

    from sr_app.ui import build_demo, load_extra_tabs

    (tmp_path / "sr_studio_fake_rate.py").write_text(
        "import gradio as gr\n\n\ndef build_tab(config):\n"
        "    with gr.Tab('Rate'):\n        gr.Markdown('rate me', elem_id='rate-body')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_extra_tabs(["sr_studio_no_such_module"]) == []
    builders = load_extra_tabs(["sr_studio_fake_rate"])
    assert len(builders) == 1
    demo = build_demo(AppConfig(), extra_tabs=builders)
    assert isinstance(demo, gr.Blocks)
    labels = [c.get("props", {}).get("label") for c in demo.config["components"]]
    assert "Rate" in labels
    assert any(c.get("props", {}).get("elem_id") == "rate-body" for c in demo.config["components"])


def test_test_degradation_is_applied_to_the_shrunk_image(tmp_path, config):
    """Test mode with jpeg50: the LR is the bicubic shrink JPEG-encoded at quality 50 (rebuilt here with PIL)."""
    import io

    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(np.clip(gradient(96, 80) + rng.normal(0, 12, (80, 96, 3)), 0, 255).astype(np.uint8)).save(path)
    clean = handlers.upscale_image(str(path), "bicubic", 4, test_on_my_image=True, config=config)
    jpeg = handlers.upscale_image(
        str(path), "bicubic", 4, test_on_my_image=True, config=config, test_degradation="jpeg50"
    )
    shrunk = Image.open(path).convert("RGB").resize((24, 20), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    shrunk.save(buffer, format="JPEG", quality=50)
    np.testing.assert_array_equal(np.asarray(jpeg.low_res), np.asarray(Image.open(buffer).convert("RGB")))
    assert jpeg.metrics.psnr < clean.metrics.psnr
    assert any("jpeg50" in n for n in jpeg.notes)
    rows = handlers.compare_methods(
        str(path), 4, test_on_my_image=True, config=config, test_degradation="noise10+jpeg75"
    ).rows
    assert rows and all(r[1] is not None for r in rows)


def test_test_degradation_errors_and_notes(tmp_path, config):
    path = tmp_path / "g.png"
    Image.fromarray(gradient(40, 32)).save(path)
    with pytest.raises(ValueError, match="Unknown test degradation"):
        handlers.upscale_image(str(path), "bicubic", 2, test_on_my_image=True, config=config, test_degradation="x")
    out = handlers.upscale_image(str(path), "bicubic", 2, config=config, test_degradation="jpeg75")
    assert out.low_res.size == (40, 32) and any("only with 'Test on my image'" in n for n in out.notes)
    assert [name for _, name in handlers.degradation_choices()][0] == "bicubic"


@pytest.mark.parametrize("bad", [True, 4.7, "4.7", "abc", None])
def test_one_scale_parser_for_upscale_and_compare(tmp_path, config, bad):
    path = tmp_path / "g.png"
    Image.fromarray(gradient(24, 20)).save(path)
    sentence = rf"^Scale must be a whole number such as 4, got {re.escape(repr(bad))}\.$"
    with pytest.raises(UnsupportedScaleError, match=sentence):
        handlers.upscale_image(str(path), "bicubic", bad, config=config)
    with pytest.raises(UnsupportedScaleError, match=sentence):
        handlers.compare_methods(str(path), bad, config=config)


def test_whole_scales_are_accepted_by_upscale_and_compare(tmp_path, config):
    path = tmp_path / "g.png"
    Image.fromarray(gradient(24, 20)).save(path)
    for scale in (4, "4"):
        assert handlers.upscale_image(str(path), "bicubic", scale, config=config).result.size == (96, 80)
        rows = handlers.compare_methods(str(path), scale, config=config).rows
        labels = {m.label for m in handlers.methods(config) if 4 in m.scales}
        assert rows and {r[0] for r in rows} == labels
    # With an output scale the scale is not used (as for a single upscale): 2.5 is run as x3 metric border.
    out = handlers.compare_methods(str(path), "abc", config=config, outscale=2.5)
    assert out.rows and all(p.endswith("_x2.5.png") for p, _ in out.gallery)
    assert handlers.upscale_image(str(path), "bicubic", "abc", config=config, outscale=2.5).result.size == (60, 50)


def test_upload_limit_message_uses_the_error_fields(tmp_path, config, monkeypatch):
    def refuse(path, *, max_pixels, name):
        raise ImageTooLargeError("opaque wording with no size in it", width=5000, height=4000, limit=max_pixels)

    monkeypatch.setattr(handlers, "load_image", refuse)
    with pytest.raises(ImageTooLargeError) as info:
        handlers.load_upload(tmp_path / "big.png", name="holiday.jpg", max_pixels=config.max_pixels)
    assert str(info.value) == (
        "The image holiday.jpg is 5000x4000 pixels, which is over this app's limit of 20,000 pixels. "
        "Please downsize or crop it."
    )
    assert (info.value.width, info.value.height, info.value.limit) == (5000, 4000, 20_000)


def test_real_oversized_upload_keeps_its_size(tmp_path, config):
    path = tmp_path / "wide.png"
    Image.fromarray(gradient(200, 101)).save(path)
    with pytest.raises(ImageTooLargeError) as info:
        handlers.upscale_image(str(path), "bicubic", 2, config=config)
    assert (info.value.width, info.value.height, info.value.limit) == (200, 101, 20_000)


def test_tile_size_minimum_is_the_pipelines(tmp_path, config, monkeypatch):
    from sr_core.pipeline import MIN_TILE_SIZE

    path = tmp_path / "small.png"
    Image.fromarray(gradient(20, 20)).save(path)
    with pytest.raises(ValueError, match=f"at least {MIN_TILE_SIZE} pixels, got {MIN_TILE_SIZE - 1}"):
        handlers.upscale_image(str(path), "bicubic", 2, tile_size=MIN_TILE_SIZE - 1, config=config)
    assert handlers.upscale_image(str(path), "bicubic", 2, tile_size=MIN_TILE_SIZE, config=config).result
    monkeypatch.setattr(handlers, "MIN_TILE_SIZE", 64)  # follows the constant, not a copy of its value
    with pytest.raises(ValueError, match="at least 64 pixels, got 48"):
        handlers.upscale_image(str(path), "bicubic", 2, tile_size=48, config=config)


def test_wrong_size_reference_is_refused_alike_by_upscale_and_compare(tmp_path, config):
    low, ref = tmp_path / "low.png", tmp_path / "ref.png"
    Image.fromarray(gradient(20, 16)).save(low)
    Image.fromarray(gradient(50, 30)).save(ref)
    wanted = "The reference image is 50x30 pixels but the x2 result is 40x32 pixels"
    with pytest.raises(ValueError, match=wanted):
        handlers.upscale_image(str(low), "bicubic", 2, reference=str(ref), config=config)
    with pytest.raises(ValueError, match=wanted):
        handlers.compare_methods(str(low), 2, reference=str(ref), config=config)


def test_live_rerun_gate_uses_the_same_scale_parser():
    from sr_app.ui import _runnable

    info = MethodInfo("m", "Model", "", "model", (2, 4))
    assert _runnable(info, 4, None) and _runnable(info, "4", None) and _runnable(info, 3, 2.5)
    for bad in (True, 4.7, "4.7", "abc", 3):
        assert not _runnable(info, bad, None), bad
    assert not _runnable(None, 4, None) and not _runnable(info, 4, 9)


def test_a_model_added_while_the_app_runs_is_offered_with_its_own_scales(tmp_path, config):
    """The Training tab's "Use in Upscale" adds a model: the method list, its scales and the live re-run follow it."""
    from sr_app.training.export import offer_method
    from sr_app.ui import _live_fn, _Menu, _method_fn
    from sr_core.models import SRResNet

    SRResNet(scale=2, num_blocks=1, channels=8).save_pretrained(tmp_path / "my-run")
    menu = _Menu.of(config)
    info = offer_method(config, tmp_path / "my-run")
    assert menu.info(info.name) is not None and info.name not in menu.by_name  # added after the page was built
    offer_method(config, tmp_path / "my-run")
    assert [m.name for m in handlers.methods(config)].count(info.name) == 1

    radio, help_text = _method_fn(menu)(info.name, 4)
    assert radio.choices == [("x2", 2)] and radio.value == 2 and "x2" in help_text

    calls = []
    live = _live_fn(config, menu, lambda *args: calls.append(args) or ("ran",))
    image = tmp_path / "in.png"
    Image.fromarray(gradient(16, 12)).save(image)
    assert live(str(image), info.name, 2, None, False, 0, "bicubic", None, False, {"key": None, "png": ""}) == ("ran",)
    assert calls[0][1] == info.name
    assert AppConfig(output_dir=config.output_dir).added.names() == ()  # each app instance starts with none


def test_self_ensemble_in_one_upscale_and_in_compare_all(tmp_path, config):
    """Models run their 8-transform average (sr_core's, whose numbers tests/test_ensemble.py checks), the download
    says so, and compare-all applies it to the models only."""
    import sr_core

    path = tmp_path / "photo.png"
    Image.fromarray(gradient(24, 20)).save(path)
    out = handlers.upscale_image(str(path), "srresnet", 2, config=config, self_ensemble=True)
    expected = sr_core.upscale(Image.open(path), "srresnet", 2, self_ensemble=True)
    assert np.array_equal(np.asarray(Image.open(out.png_path)), np.asarray(expected))
    assert out.png_path.name == "photo_srresnet_x2_ensemble.png"
    assert "Self-ensemble: SRResNet" in out.summary
    plain = handlers.upscale_image(str(path), "srresnet", 2, config=config)
    assert not np.array_equal(np.asarray(Image.open(plain.png_path)), np.asarray(expected))
    assert plain.png_path.name == "photo_srresnet_x2.png" and "Self-ensemble" not in plain.summary

    compared = handlers.compare_methods(str(path), 2, config=config, self_ensemble=True)
    by_label = dict(compared.gallery[i][::-1] for i in range(len(compared.gallery)))
    ensembled = next(p for label, p in by_label.items() if label.startswith("SRResNet"))
    assert np.array_equal(np.asarray(Image.open(ensembled)), np.asarray(expected))
    bicubic = next(p for label, p in by_label.items() if label.startswith("Bicubic"))
    assert bicubic.endswith("photo_bicubic_x2.png")
    assert any(n.startswith("Self-ensemble:") and "Bicubic" not in n for n in compared.notes)
