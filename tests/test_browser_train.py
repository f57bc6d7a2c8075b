"""The Train tab in a real Chromium, as a new user would try it: upload a dozen images, start a run, watch the
progress bar and the curves move, stop, resume, let it finish, "Use in Upscale", then upscale with the new model.

The run is a real ``accelerate launch train/train.py`` from a tiny SRResNet (the app's ``srresnet`` here). The
screenshot taken during the run goes to test-artifacts/train_tab.png, and to docs/train_tab.png when that file is
missing or ``SR_STUDIO_UPDATE_DOCS=1`` is set.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from browser_env import ARTIFACTS, PHOTO, REPO, launch_chromium, require_browser
from PIL import Image
from train_helpers import train_tab_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 240_000
sync_api = require_browser()

DOCS_SHOT = REPO / "docs" / "train_tab.png"
STEPS = 5000
"""Long enough to be stopped on any machine; the resumed run is given a nearer end."""


def photo_crops(folder: Path) -> list[Path]:
    """A dozen 128x128 crops of the bundled example photos."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = []
    for photo in sorted((REPO / "examples").glob("*.png")):
        image = Image.open(photo).convert("RGB")
        for i, (x, y) in enumerate([(0, 0), (128, 64), (64, 128)]):
            crops.append(folder / f"{photo.stem}_{i}.png")
            image.crop((x, y, x + 128, y + 128)).save(crops[-1])
    return crops[:12]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser_train")
    with train_tab_app(base) as (url, _):
        yield url, photo_crops(base / "photos")


@pytest.fixture
def page(served):
    url, _ = served
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        try:
            yield page
        finally:
            browser.close()


PSNR_PLOT_REACHES = """n => {
    const label = document.querySelector('#train-psnr [aria-roledescription=axis]')?.getAttribute('aria-label') || '';
    const end = label.match(/to ([0-9.]+)$/);
    return end !== null && Number(end[1]) >= n;
}"""
"""Whether the PSNR plot's x axis (as Vega describes it) reaches step n: the curve is drawn that far."""


def bar(page, key: str) -> str:
    return page.get_attribute("#train-progress .train-progress", f"data-{key}") or ""


def wait_for_state(page, state: str) -> None:
    page.wait_for_function(
        "s => document.querySelector('#train-progress .train-progress')?.dataset.state === s", arg=state
    )


def wait_for_step(page, step: int) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('#train-progress .train-progress')?.dataset.step || 0) >= n", arg=step
    )


def choose(page, elem_id: str, label: str) -> None:
    page.click(f"#{elem_id} input[role=combobox]")
    page.get_by_role("option", name=label, exact=True).click()


def fill_recipe(page) -> None:
    choose(page, "train-init", "SRResNet (this app's model)")
    for elem_id, value in (("train-steps", STEPS), ("train-batch", 2), ("train-patch", 32), ("train-lr", 0.001)):
        page.fill(f"#{elem_id} input", str(value))
    page.get_by_text("How often").click()
    page.fill("#train-validate-every input", "40")
    page.fill("#train-log-every input", "2")


def save_screenshot(page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "train_tab.png"), full_page=True)
    if not DOCS_SHOT.exists() or os.environ.get("SR_STUDIO_UPDATE_DOCS") == "1":
        shutil.copyfile(ARTIFACTS / "train_tab.png", DOCS_SHOT)


def message(page, text: str) -> None:
    page.wait_for_function("t => (document.querySelector('#train-message')?.innerText || '').includes(t)", arg=text)


def test_train_watch_stop_resume_finish_and_upscale_with_the_new_model(page, served):
    _, crops = served
    page.get_by_role("tab", name="Train").click()
    page.set_input_files("#train-uploads input[type=file]", [str(p) for p in crops])
    page.wait_for_function("() => (document.querySelector('#train-uploads')?.innerText || '').includes('rocket_2')")
    fill_recipe(page)
    page.click("#train-start")
    message(page, "Started run")
    run_id = page.inner_text("#train-message").split("run", 1)[1].strip(" .")

    wait_for_step(page, 10)
    first = int(bar(page, "step"))
    wait_for_step(page, max(85, first + 1))  # the bar moves; two validations (steps 40 and 80) are drawn
    assert int(bar(page, "step")) > first and bar(page, "state") == "running"
    assert "patches/s" in page.inner_text("#train-progress") and "ETA" in page.inner_text("#train-progress")
    for plot in ("train-loss", "train-psnr", "train-ssim"):
        page.wait_for_selector(f"#{plot} svg.marks g.mark-line path", state="attached")
    page.wait_for_selector('#train-preview [data-testid="imageslider-image"]')
    assert page.locator('#train-preview [data-testid="imageslider-image"]').count() == 2
    validated = int(re.search(r"Validation at step (\d+)", page.inner_text("#train-status")).group(1))
    page.wait_for_function(PSNR_PLOT_REACHES, arg=0.9 * validated)  # the plot is drawn up to the status line
    save_screenshot(page)

    page.reload()  # closing the page does not stop the run; opening it again shows it
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function("t => (document.querySelector('#train-status')?.innerText || '').includes(t)", arg=run_id)
    wait_for_state(page, "running")

    page.click("#train-stop")
    wait_for_state(page, "stopped")
    stopped = int(bar(page, "step"))
    assert stopped < STEPS and "Resume continues" in page.inner_text("#train-status")
    page.fill("#train-resume-steps input", str(stopped + 45))
    page.click("#train-resume")
    message(page, "Resumed run")
    wait_for_state(page, "finished")
    assert int(bar(page, "step")) == stopped + 45 and run_id in page.inner_text("#train-status")

    page.click("#train-use")
    message(page, "to the Upscale tab's methods")
    page.get_by_role("tab", name="Upscale").click()
    page.set_input_files("#input-image input[type=file]", str(PHOTO))
    page.wait_for_selector("#input-image img")
    choose(page, "method", run_id)
    page.click("#run")
    page.wait_for_function("() => (document.querySelector('#summary')?.innerText || '').includes('1024x1024 px')")
    assert f"{run_id} x4: 256x256 -> 1024x1024" in page.inner_text("#summary")
    assert page.locator('#slider [data-testid="imageslider-image"]').count() == 2
