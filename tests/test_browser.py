"""A real Chromium (Debian's /usr/bin/chromium) driving the app as a user would: upload, method, run, slider, PSNR.

Screenshots and the click-to-result timings go to test-artifacts/ (git-ignored). When sr_core ships model weights
the app offers them as on a fresh clone; otherwise a tiny SRResNet is registered so a model method is exercised.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from browser_env import ARTIFACTS, PHOTO, launch_chromium, require_browser
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 180_000
sync_api = require_browser()


def _weights_dir(tmp_path_factory) -> str | None:
    """None (the shipped weights) when sr_core bundles a model, else a folder with a tiny SRResNet."""
    import sr_core

    if any(m.kind == "model" for m in sr_core.available_methods()):
        return None
    import torch

    from sr_core.models import SRResNet
    from sr_core.registry import write_manifest_entry

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("weights")
    model = SRResNet(scale=4, num_blocks=1, channels=8).eval()
    write_manifest_entry(directory, model, name="srresnet", label="SRResNet", description="tiny test model")
    return str(directory)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from sr_app.handlers import AppConfig
    from sr_app.ui import build_demo

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        config = AppConfig(weights_dir=_weights_dir(tmp_path_factory))
        demo = build_demo(config)
        _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, max_file_size="20mb")
        try:
            yield url, config
        finally:
            demo.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, served):
    url, _ = served
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#input-image input[type=file]", state="attached")
    try:
        yield page
    finally:
        context.close()


def upload(page, path: Path) -> None:
    page.set_input_files("#input-image input[type=file]", str(path))
    page.wait_for_selector("#input-image img")


def choose_method(page, label: str) -> None:
    page.click("#method input[role=combobox]")
    page.get_by_role("option", name=label, exact=True).click()
    page.wait_for_function("label => document.querySelector('#method input[role=combobox]').value === label", arg=label)


def number(page, elem_id: str) -> str:
    return page.input_value(f"#{elem_id} input")


def wait_for_summary(page, label: str) -> None:
    page.wait_for_function("label => (document.querySelector('#summary')?.innerText || '').includes(label)", arg=label)
    page.wait_for_selector('#slider [data-testid="imageslider-image"]')


def test_upload_method_slider_psnr(page, tmp_path):
    upload(page, PHOTO)
    choose_method(page, "Lanczos")
    page.check("#test-on-my-image input[type=checkbox]")
    page.click("#run")
    page.wait_for_selector('#slider [data-testid="imageslider-image"]')
    page.wait_for_function("() => document.querySelector('#psnr input').value !== ''")
    psnr = float(number(page, "psnr"))
    ssim = float(number(page, "ssim"))
    assert 18 < psnr < 40 and 0.3 < ssim < 1
    assert "Lanczos" in page.inner_text("#summary")
    images = page.locator('#slider [data-testid="imageslider-image"]')
    assert images.count() == 2
    assert page.locator('#slider [data-testid="slider"]').count() >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app_screenshot.png"), full_page=True)

    # Metrics follow the method live once a result exists: no second click needed. The old value is read before
    # the switch: a fast method's re-run can finish before the dropdown settles.
    lanczos_psnr = number(page, "psnr")
    choose_method(page, "Nearest neighbour")
    page.wait_for_function(
        "old => { const v = document.querySelector('#psnr input').value; return v !== '' && v !== old; }",
        arg=lanczos_psnr,
    )
    wait_for_summary(page, "Nearest neighbour")
    assert float(number(page, "psnr")) < psnr  # pixel repetition is worse than Lanczos on a photo


def test_self_ensemble_checkbox_reruns_the_model_live(page, tmp_path):
    """Ticking "Self-ensemble" under Advanced re-runs the shown model with it, no second click needed."""
    small = tmp_path / "small.png"
    Image.open(PHOTO).convert("RGB").crop((0, 0, 48, 40)).save(small)
    upload(page, small)
    choose_method(page, "SRResNet")
    page.click("#run")
    wait_for_summary(page, "SRResNet")
    assert "Self-ensemble" not in page.inner_text("#summary")
    page.get_by_text("Advanced").click()
    page.check("#self-ensemble input[type=checkbox]")
    wait_for_summary(page, "Self-ensemble: SRResNet")
    assert "small_srresnet_x4_ensemble" in page.inner_text("#download")


def test_example_runs_in_one_click_then_compare_fills_the_table(page, served):
    import sr_core

    _, config = served
    page.get_by_role("button", name="coffee", exact=True).click()
    wait_for_summary(page, "Bicubic")
    page.wait_for_function("() => document.querySelector('#psnr input').value !== ''")
    assert page.is_checked("#test-on-my-image input[type=checkbox]")
    assert 15 < float(number(page, "psnr")) < 45
    page.click("#compare")
    offered = [m.label for m in sr_core.available_methods(config.weights_dir) if 4 in m.scales]
    page.wait_for_function("n => document.querySelectorAll('#compare-gallery img').length >= n", arg=len(offered))
    table_text = page.inner_text("#compare-table")
    assert all(label in table_text for label in offered)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare_screenshot.png"), full_page=True)


def test_bad_upload_shows_a_sentence_not_a_trace(page, tmp_path):
    big = tmp_path / "huge.png"
    Image.new("RGB", (2100, 2100), (90, 120, 150)).save(big)
    upload(page, big)
    page.click("#run")
    toast = page.locator(".toast-body").first
    toast.wait_for()
    text = toast.inner_text()
    assert "huge.png" in text and "limit" in text
    assert "Traceback" not in page.content()


def test_click_to_result_time_per_method(browser, served):
    """For a 256x256 upload at x4 (1024x1024 out), time from the click to the shown result, per method."""
    import sr_core

    url, config = served
    assert Image.open(PHOTO).size == (256, 256)
    timings = {}
    for method in sr_core.available_methods(config.weights_dir):
        if 4 not in method.scales:
            continue
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(url)
            page.wait_for_selector("#input-image input[type=file]", state="attached")
            upload(page, PHOTO)
            choose_method(page, method.label)
            page.get_by_test_id("x4-radio-label").click()
            start = time.perf_counter()
            page.click("#run")
            wait_for_summary(page, method.label)
            timings[method.name] = round(time.perf_counter() - start, 3)
            assert "1024x1024" in page.inner_text("#summary")
        finally:
            context.close()
    assert {"bicubic", "nearest"} <= set(timings)
    assert any(m.kind == "model" and m.name in timings for m in sr_core.available_methods(config.weights_dir))
    ARTIFACTS.mkdir(exist_ok=True)
    record = {"upload": "256x256", "scale": 4, "seconds_click_to_result": timings}
    (ARTIFACTS / "click_to_result.json").write_text(json.dumps(record, indent=2) + "\n")
    print("click-to-result seconds:", timings)
    assert all(np.isfinite(list(timings.values())))
