"""The Rate tab of the running app, driven through gradio_client: blind items, no repeats, concurrent raters,
refused bad submissions, persistence across a restart, the results table and CSV export."""

from __future__ import annotations

import csv
import os
import random
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gradio = pytest.importorskip("gradio")
pytest.importorskip("gradio_client")

from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from sr_app.mos import DEFAULT_DB, GROUND_TRUTH, RatingStore, Study, offered_methods  # noqa: E402

METHODS = ["nearest", "bicubic"]
HIDDEN_WORDS = ("nearest", "bicubic", "neighbour", "ground", "truth", "control", "photo_")


@pytest.fixture(autouse=True)
def gradio_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture
def photos(tmp_path) -> Path:
    """Three tiny noise photos: with two methods and the control, nine items."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(folder / f"photo_{k}.png")
    return folder


def serve(study: Study):
    """The full SR Studio demo with the Rate tab added through build_demo's extra_tabs hook."""
    from sr_app.handlers import AppConfig
    from sr_app.rate import add_rate_tab
    from sr_app.ui import build_demo

    demo = build_demo(AppConfig(device="cpu"), extra_tabs=[lambda config: add_rate_tab(study)])
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    return demo, url


@pytest.fixture
def app(tmp_path, photos):
    study = Study.from_folder(tmp_path / "ratings.db", photos, methods=METHODS, device="cpu", seed=0)
    demo, url = serve(study)
    yield study, url
    demo.close()


def newest_shown(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT item_id FROM shown ORDER BY rowid DESC LIMIT 1").fetchone()[0]
    finally:
        conn.close()


def rate_everything(url: str, scores: random.Random) -> list[tuple[str | None, str, int]]:
    """One visitor rates until thanked; returns (image path, status, score given) per image."""
    client = Client(url, verbose=False)
    try:
        seen = []
        image, status = client.predict(api_name="/rate_start")
        while image is not None:
            score = scores.randint(1, 5)
            seen.append((image, status, score))
            image, status = client.predict(score, api_name="/rate")
        assert "Thank you" in status
        return seen
    finally:
        client.close()


def test_visitor_sees_each_item_once_blind_and_pixel_exact(app, photos):
    study, url = app
    client = Client(url, verbose=False)
    shown_items = []
    # The study's endpoints are callable but not advertised (so not offered as MCP tools either).
    assert not any(name.startswith("/rate") for name in client.view_api(print_info=False, return_format="dict")[
        "named_endpoints"])  # fmt: skip
    image, status = client.predict(api_name="/rate_start")
    again, _ = client.predict(api_name="/rate_start")  # a second start shows the same image, not a new one
    assert Path(again).read_bytes() == Path(image).read_bytes()
    while image is not None:
        item_id = newest_shown(study.store.path)
        shown_items.append(item_id)
        assert f"{len(shown_items)} of 9" in status
        for text in (Path(image).name, status):
            assert not any(word in text.lower() for word in HIDDEN_WORDS), text
        entry = study.items[item_id]
        pixels = np.asarray(Image.open(image))
        truth = np.asarray(Image.open(entry.source).convert("RGB"))
        low = np.asarray(Image.fromarray(truth).resize((5, 4), Image.Resampling.BICUBIC))
        assert Image.open(image).format == "PNG"
        if entry.item.method == GROUND_TRUTH:
            np.testing.assert_array_equal(pixels, truth)
        elif entry.item.method == "nearest":
            np.testing.assert_array_equal(pixels, np.kron(low, np.ones((4, 4, 1), dtype=np.uint8)))
        else:
            assert pixels.shape == truth.shape
        image, status = client.predict(3, api_name="/rate")
    client.close()
    assert sorted(shown_items) == sorted(study.items)
    assert "Thank you" in status and "9" in status
    assert study.store.count() == 9


@pytest.mark.slow
def test_ten_concurrent_raters_lose_no_rating(app):
    study, url = app
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def rater(k: int) -> None:
        try:
            results[k] = rate_everything(url, random.Random(k))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert errors == []
    submitted = [score for k in range(10) for _, _, score in results[k]]
    assert len(submitted) == 10 * study.total == 90
    ratings = study.store.ratings()
    assert len(ratings) == len(submitted)
    assert sorted(r.score for r in ratings) == sorted(submitted)
    per_visitor: dict[str, list[str]] = {}
    for r in ratings:
        per_visitor.setdefault(r.visitor_id, []).append(r.item_id)
    assert len(per_visitor) == 10
    assert all(sorted(items) == sorted(study.items) for items in per_visitor.values())


def test_bad_submissions_are_refused_through_the_app(app):
    study, url = app
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="Start rating"):
        client.predict(4, api_name="/rate")
    image, _ = client.predict(api_name="/rate_start")
    for bad in (0, 6, 2.5, -3):
        with pytest.raises(AppError, match="whole number from 1"):
            client.predict(bad, api_name="/rate")
        assert study.store.count() == 0
    same, _ = client.predict(api_name="/rate_start")
    assert Path(same).read_bytes() == Path(image).read_bytes()
    for _ in range(study.total):
        image, status = client.predict(5, api_name="/rate")
    assert image is None and "Thank you" in status
    assert study.store.count() == study.total
    with pytest.raises(AppError, match="already rated every image"):
        client.predict(5, api_name="/rate")
    assert study.store.count() == study.total
    client.close()


def test_simultaneous_submissions_of_one_visit_never_double_count(app):
    """Three scores sent at once for the image on screen: each stored rating is one the visitor was shown; the
    replays are refused with a message that does not name the method."""
    study, url = app
    client = Client(url, verbose=False)
    client.predict(api_name="/rate_start")
    accepted, refused = 0, []
    for _ in range(2):
        for job in [client.submit(score, api_name="/rate") for score in (2, 3, 4)]:
            try:
                job.result()
                accepted += 1
            except AppError as exc:
                refused.append(str(exc))
    client.close()
    assert accepted + len(refused) == 6
    assert study.store.count() == accepted
    ratings = study.store.ratings()
    assert len({r.item_id for r in ratings}) == len(ratings) and len({r.visitor_id for r in ratings}) == 1
    for message in refused:
        assert "already been scored" in message
        assert not any(word in message.lower() for word in HIDDEN_WORDS)


def test_ratings_survive_a_restart_and_show_in_results_and_csv(tmp_path, photos):
    db = tmp_path / "ratings.db"
    study = Study.from_folder(db, photos, methods=METHODS, device="cpu", seed=0)
    demo, url = serve(study)
    try:
        given = rate_everything(url, random.Random(7))
    finally:
        demo.close()

    restarted = Study.from_folder(db, photos, methods=METHODS, device="cpu", seed=1)
    demo, url = serve(restarted)
    try:
        client = Client(url, verbose=False)
        table = client.predict(api_name="/rate_results")
        csv_path = client.predict(api_name="/rate_csv")
        client.close()
    finally:
        demo.close()
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {"nearest", "bicubic", f"{GROUND_TRUTH} (control)"}
    assert sum(row[2] for row in rows.values()) == len(given) == 9
    assert all(row[1] == "x4" and row[2] == 3 for row in rows.values())
    stored = RatingStore(db, create=False).method_scores()
    for score in stored:
        name = f"{score.method} (control)" if score.method == GROUND_TRUTH else score.method
        assert rows[name][3] == pytest.approx(round(score.summary.mean, 3))
        by_hand = [g for (_, _, g), r in zip(given, RatingStore(db).ratings(), strict=True) if r.method == score.method]
        assert rows[name][3] == pytest.approx(round(sum(by_hand) / 3, 3))
    with open(csv_path, newline="") as fh:
        records = list(csv.DictReader(fh))
    assert [int(r["score"]) for r in records] == [g for _, _, g in given]


def test_build_tab_hook_uses_environment_settings(tmp_path, photos, monkeypatch):
    """The real hook: build_demo(extra_tabs=load_extra_tabs()) finds sr_app.rate and reads its settings."""
    from sr_app.handlers import AppConfig
    from sr_app.ui import build_demo, load_extra_tabs

    monkeypatch.setenv("SR_STUDIO_RATINGS_DB", str(tmp_path / "hook" / "votes.db"))
    monkeypatch.setenv("SR_STUDIO_RATING_IMAGES", str(photos))
    demo = build_demo(AppConfig(device="cpu"), extra_tabs=load_extra_tabs())
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1")
    try:
        client = Client(url, verbose=False)
        image, status = client.predict(api_name="/rate_start")
        expected = 3 * (len(offered_methods((4,))) + 1)  # 3 photos x (every method at x4 + the control)
        assert image is not None and f"1 of {expected}" in status
        client.predict(4, api_name="/rate")
        client.close()
    finally:
        demo.close()
    assert RatingStore(tmp_path / "hook" / "votes.db", create=False).count() == 1

    monkeypatch.setenv("SR_STUDIO_RATING_IMAGES", str(tmp_path / "no-such-folder"))
    demo = build_demo(AppConfig(device="cpu"), extra_tabs=load_extra_tabs())
    assert "rate_start" not in {fn.api_name for fn in demo.fns.values()}


def test_rate_settings_come_from_the_app_flags_then_the_environment_then_defaults():
    """RateConfig reads only what AppConfig has (the --ratings-db / --rating-images flags, device, weights)."""
    from sr_app.handlers import AppConfig
    from sr_app.rate import ENV_DB, ENV_IMAGES, RateConfig
    from sr_app.ui import EXAMPLES_DIR

    env = {ENV_DB: "env/votes.db", ENV_IMAGES: "env/photos"}
    flags = AppConfig(device="cpu", weights_dir="w", ratings_db="flag/votes.db", rating_images="flag/photos")
    assert RateConfig.from_app(flags, env) == RateConfig(
        ratings_db=Path("flag/votes.db"), rating_images=Path("flag/photos"), device="cpu", weights_dir="w"
    )
    from_env = RateConfig.from_app(AppConfig(), env)
    assert (from_env.ratings_db, from_env.rating_images, from_env.device) == (
        Path("env/votes.db"),
        Path("env/photos"),
        "auto",
    )
    defaults = RateConfig.from_app(AppConfig(), {ENV_DB: "", ENV_IMAGES: ""})
    assert (defaults.ratings_db, defaults.rating_images) == (Path(DEFAULT_DB), EXAMPLES_DIR)
    assert (defaults.scales, defaults.control, defaults.weights_dir) == ((4,), True, None)


def test_build_tab_hook_uses_the_app_flags(tmp_path, photos, monkeypatch):
    """The flags beat the environment: the study is stored where --ratings-db says."""
    from sr_app.handlers import AppConfig
    from sr_app.ui import build_demo, load_extra_tabs

    monkeypatch.setattr("sr_app.rate._prerender", lambda study: None)  # no renders left running at exit
    monkeypatch.setenv("SR_STUDIO_RATINGS_DB", str(tmp_path / "env.db"))
    monkeypatch.setenv("SR_STUDIO_RATING_IMAGES", str(tmp_path / "no-such-folder"))
    config = AppConfig(device="cpu", ratings_db=str(tmp_path / "flag.db"), rating_images=str(photos))
    demo = build_demo(config, extra_tabs=load_extra_tabs())
    assert "rate_start" in {fn.api_name for fn in demo.fns.values()}
    assert (tmp_path / "flag.db").is_file() and not (tmp_path / "env.db").exists()
    assert len(RatingStore(tmp_path / "flag.db").items()) == 3 * (len(offered_methods((4,))) + 1)


def test_unused_tab_builder_is_gone():
    import sr_app.rate

    assert not hasattr(sr_app.rate, "tab_builder")


CHROMIUM = Path(os.environ.get("SR_STUDIO_CHROMIUM", "/usr/bin/chromium"))


@pytest.mark.slow
@pytest.mark.browser
def test_rating_in_a_real_browser(app):
    """Open the Rate tab as a visitor would: an image appears at once, a score shows the next, nothing names it."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    study, url = app
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("tab", name="Rate").click()
            page.wait_for_selector("#rate-image img")
            assert "1 of 9" in page.inner_text("#rate-status")
            assert page.get_attribute("#rate-image img", "alt") == "Image to rate"
            first = page.get_attribute("#rate-image img", "src")
            assert not any(word in first.rsplit("/", 1)[-1] for word in HIDDEN_WORDS)
            page.click("#rate-4")
            page.wait_for_function("() => document.querySelector('#rate-status').innerText.includes('2 of 9')")
            assert page.get_attribute("#rate-image img", "src") != first
            visible = page.inner_text("#rate-image") + page.inner_text("#rate-status")
            assert not any(word in visible.lower() for word in HIDDEN_WORDS)
        finally:
            browser.close()
    ratings = study.store.ratings()
    assert [(r.score, r.item_id in study.items) for r in ratings] == [(4, True)]
