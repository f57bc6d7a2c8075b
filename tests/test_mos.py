"""MOS study: statistics (sr_core.stats) against hand computation and SciPy; the web study's SQLite store, item
rendering and report CLI (sr_app.mos); where each lives, and the forwarding ``python -m sr_core.mos``."""

from __future__ import annotations

import ast
import csv
import io
import math
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_core.stats
from sr_app.mos import (
    CSV_FIELDS,
    GROUND_TRUTH,
    BadScoreError,
    Item,
    NotShownError,
    RatingError,
    RatingStore,
    ReplayedRatingError,
    Shown,
    Study,
    UnknownItemError,
    find_images,
    summarize_scores,
    t_quantile,
)
from sr_app.mos.cli import main as mos_main
from sr_core.constants import APP_MAX_PIXELS, DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

REPO = Path(__file__).resolve().parent.parent

# Hand computation of the example used below (numbers written out, checked against SciPy as well):
#   method "alpha": scores 4, 5, 3, 4, 4  -> n = 5, mean = 20 / 5 = 4.0
#       squared deviations 0 + 1 + 1 + 0 + 0 = 2 -> s^2 = 2 / 4 = 0.5 -> s = 0.7071068
#       SE = s / sqrt(5) = 0.3162278; t(0.975, 4) = 2.7764451 -> half width = 0.8779890
#       95% CI = [3.1220110, 4.8779890]
#   method "beta": scores 2, 3, 1, 2, 2, 3, 1, 2 -> n = 8, mean = 16 / 8 = 2.0
#       squared deviations 0 + 1 + 1 + 0 + 0 + 1 + 1 + 0 = 4 -> s^2 = 4 / 7 = 0.5714286 -> s = 0.7559289
#       SE = s / sqrt(8) = 0.2672612; t(0.975, 7) = 2.3646243 -> half width = 0.6319724
#       95% CI = [1.3680276, 2.6319724]
#   method "gamma": one score, 5 -> MOS 5.0, no std and no interval.
HAND = {
    "alpha": ([4, 5, 3, 4, 4], 4.0, 0.7071068, 3.1220110, 4.8779890),
    "beta": ([2, 3, 1, 2, 2, 3, 1, 2], 2.0, 0.7559289, 1.3680276, 2.6319724),
}


def make_store(path: Path, methods: tuple[str, ...] = ("alpha", "beta", "gamma"), images: int = 10) -> RatingStore:
    store = RatingStore(path)
    store.register_items(Item(f"img{i}:{m}:x4", f"img{i}", m, 4) for m in methods for i in range(images))
    return store


def rate(store: RatingStore, visitor: str, item_id: str, score: object):
    shown = store.show(visitor, item_id)
    return store.add_rating(visitor, item_id, score, token=shown.token)


def fill_hand_example(store: RatingStore) -> None:
    for method, (scores, *_rest) in HAND.items():
        for i, score in enumerate(scores):
            rate(store, f"visitor-{i}", f"img{i}:{method}:x4", score)
    rate(store, "visitor-0", "img0:gamma:x4", 5)


# ------------------------------------------------------------------------------------------------ statistics


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 10, 29, 100, 1999, 2000, 10_000, 1_000_000])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.975, 0.995, 0.9999, 0.025])
def test_t_quantile_matches_scipy(df, p):
    stats = pytest.importorskip("scipy.stats")
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=1e-9, rel=1e-9)


def test_t_quantile_known_table_values():
    # Printed tables of Student's t, two-sided 95%: 12.706, 4.303, 2.776, 2.228, 1.960 (df = 1, 2, 4, 10, inf).
    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 4, 10, 10**9)] == [12.706, 4.303, 2.776, 2.228, 1.96]
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_quantile(0.9, 0)


def test_summary_matches_hand_computation_and_scipy():
    stats = pytest.importorskip("scipy.stats")
    for scores, mean, std, low, high in HAND.values():
        s = summarize_scores(scores)
        assert s.n == len(scores)
        assert (s.mean, s.std, s.ci_low, s.ci_high) == pytest.approx((mean, std, low, high), abs=1e-6)
        n = len(scores)
        ref_low, ref_high = stats.t.interval(0.95, n - 1, loc=np.mean(scores), scale=stats.sem(scores))
        assert (s.ci_low, s.ci_high) == pytest.approx((ref_low, ref_high), abs=1e-9)
        assert s.std == pytest.approx(np.std(scores, ddof=1), abs=1e-12)
    single = summarize_scores([5])
    assert (single.n, single.mean, single.std, single.ci_low, single.ci_high) == (1, 5.0, None, None, None)
    with pytest.raises(ValueError):
        summarize_scores([])


# ------------------------------------------------------------------------------------------------ store


def test_scores_round_trip_through_the_database(tmp_path):
    store = make_store(tmp_path / "r.db")
    before = datetime.now(timezone.utc)
    submitted = [("v1", "img0:alpha:x4", 1), ("v1", "img1:beta:x4", 5), ("v2", "img0:alpha:x4", 3)]
    for visitor, item_id, score in submitted:
        rate(store, visitor, item_id, score)
    after = datetime.now(timezone.utc)

    raw = sqlite3.connect(tmp_path / "r.db")
    try:
        rows = raw.execute("SELECT item_id, method, scale, score, visitor_id, created_at FROM ratings ORDER BY id")
        rows = rows.fetchall()
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    assert [(r[0], r[3], r[4]) for r in rows] == [(i, s, v) for v, i, s in submitted]
    assert [(r[1], r[2]) for r in rows] == [("alpha", 4), ("beta", 4), ("alpha", 4)]
    for row in rows:
        created = datetime.fromisoformat(row[5])
        assert created.utcoffset() == timedelta(0)
        assert before <= created <= after

    text = store.csv_text()
    records = list(csv.DictReader(io.StringIO(text)))
    assert tuple(records[0]) == CSV_FIELDS
    assert [(r["visitor_id"], r["item_id"], int(r["score"])) for r in records] == submitted
    assert [r["image"] for r in records] == ["img0", "img1", "img0"]


def test_mos_and_ci_match_hand_computed_example(tmp_path):
    store = make_store(tmp_path / "r.db")
    fill_hand_example(store)
    by_method = {row.method: row.summary for row in store.method_scores()}
    assert set(by_method) == {"alpha", "beta", "gamma"}
    for method, (scores, mean, std, low, high) in HAND.items():
        s = by_method[method]
        assert s.n == len(scores)
        assert (s.mean, s.std, s.ci_low, s.ci_high) == pytest.approx((mean, std, low, high), abs=1e-6)
    assert (by_method["gamma"].n, by_method["gamma"].mean, by_method["gamma"].ci_low) == (1, 5.0, None)
    assert [row.method for row in store.method_scores()] == ["gamma", "alpha", "beta"]


def bad_submissions(store: RatingStore) -> tuple[list[tuple[type[Exception], tuple]], Shown]:
    """(expected error, add_rating arguments) for each kind of bad submission, and the showing left unrated."""
    pending = store.show("v1", "img5:alpha:x4")
    other = store.show("v2", "img6:alpha:x4")
    done = store.show("v1", "img7:alpha:x4")
    store.add_rating("v1", "img7:alpha:x4", 4, token=done.token)
    cases: list[tuple[type[Exception], tuple]] = [
        (BadScoreError, ("v1", "img5:alpha:x4", score, pending.token))
        for score in (0, 6, -1, 3.5, "4", True, None, float("nan"), 10**20)
    ]
    cases += [
        (UnknownItemError, ("v1", "img5:nosuch:x4", 3, pending.token)),
        (NotShownError, ("v1", "img5:alpha:x4", 3, "forged-token")),
        (NotShownError, ("v1", "img6:alpha:x4", 3, other.token)),
        (NotShownError, ("v1", "img8:alpha:x4", 3, pending.token)),
        (NotShownError, ("v3", "img5:alpha:x4", 3, pending.token)),
        (ReplayedRatingError, ("v1", "img7:alpha:x4", 4, done.token)),
        (ReplayedRatingError, ("v1", "img7:alpha:x4", 2, done.token)),
        (RatingError, ("", "img5:alpha:x4", 3, pending.token)),
        (RatingError, ("v1", "img5:alpha:x4", 3, "")),
    ]
    return cases, pending


def test_bad_submissions_are_refused_without_touching_the_data(tmp_path):
    store = make_store(tmp_path / "r.db")
    fill_hand_example(store)
    cases, pending = bad_submissions(store)
    before_rows = store.ratings()
    before_count = store.count()
    for error, (visitor, item_id, score, token) in cases:
        with pytest.raises(error):
            store.add_rating(visitor, item_id, score, token=token)
        assert store.count() == before_count
    assert store.ratings() == before_rows
    with pytest.raises(UnknownItemError):
        store.show("v1", "img0:nosuch:x4")
    with pytest.raises(RatingError):
        store.show("v1", "img5:alpha:x4")
    # The pending item can still be rated properly after all the refused attempts, exactly once.
    stored = store.add_rating("v1", "img5:alpha:x4", 2.0, token=pending.token)
    assert (stored.score, type(stored.score)) == (2, int)
    assert store.count() == before_count + 1
    with pytest.raises(ReplayedRatingError):
        store.add_rating("v1", "img5:alpha:x4", 3, token=pending.token)


def test_concurrent_writers_lose_nothing(tmp_path):
    store = make_store(tmp_path / "r.db", methods=("alpha", "beta"), images=15)
    ids = [item.item_id for item in store.items()]
    errors: list[BaseException] = []

    def rater(k: int) -> None:
        own = RatingStore(tmp_path / "r.db")
        try:
            for j, item_id in enumerate(ids):
                rate(own, f"visitor-{k}", item_id, 1 + (j + k) % 5)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rater, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 10 * len(ids)
    expected = sum(1 + (j + k) % 5 for k in range(10) for j in range(len(ids)))
    assert sum(r.score for r in store.ratings()) == expected


def test_ratings_survive_closing_and_reopening(tmp_path):
    path = tmp_path / "sub" / "r.db"
    store = make_store(path)
    fill_hand_example(store)
    count, scores, csv_text = store.count(), store.method_scores(), store.csv_text()
    del store
    reopened = RatingStore(path, create=False)
    assert reopened.count() == count == 14
    assert reopened.method_scores() == scores
    assert reopened.csv_text() == csv_text
    make_store(path)  # registering the same items again must not disturb anything
    assert RatingStore(path).count() == count


def test_store_refuses_unusable_paths(tmp_path):
    from sr_core.errors import SRError

    with pytest.raises(SRError):
        RatingStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(SRError):
        RatingStore(tmp_path)
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SRError):
        RatingStore(tmp_path / "junk.db")


# ------------------------------------------------------------------------------------------------ study


@pytest.fixture
def photos(tmp_path) -> Path:
    """Two small noise photos (odd sizes, so mod-cropping matters)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"one": (18, 21), "two": (16, 13)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_study_shows_each_item_once_with_the_expected_pixels(tmp_path, photos):
    study = Study.from_folder(tmp_path / "r.db", photos, methods=["nearest", "bicubic"], seed=3)
    assert study.total == 2 * 3
    assert {e.item.method for e in study.items.values()} == {"nearest", "bicubic", GROUND_TRUTH}
    seen = []
    previous = None
    while (shown := study.next_item("v1", previous=previous)) is not None:
        seen.append(shown.item_id)
        entry = study.items[shown.item_id]
        pixels = np.asarray(study.image(shown.item_id))
        hr = np.asarray(Image.open(entry.source).convert("RGB"))
        h, w = hr.shape[0] // 4 * 4, hr.shape[1] // 4 * 4
        truth = hr[:h, :w]
        low = np.asarray(Image.fromarray(truth).resize((w // 4, h // 4), Image.Resampling.BICUBIC))
        assert pixels.shape == truth.shape
        if entry.item.method == GROUND_TRUTH:
            np.testing.assert_array_equal(pixels, truth)
        elif entry.item.method == "nearest":
            np.testing.assert_array_equal(pixels, np.kron(low, np.ones((4, 4, 1), dtype=np.uint8)))
        else:
            pil_bicubic = np.asarray(Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC))
            assert np.abs(pixels.astype(int) - pil_bicubic.astype(int)).mean() < 3
        name = study.cache_path(shown.item_id).name
        assert not any(m in name for m in ("nearest", "bicubic", "ground", "truth", "one", "two"))
        study.rate(shown, 3)
        previous = shown.item_id
    assert sorted(seen) == sorted(study.items)
    assert study.store.count() == study.total
    first = study.next_item("v2")
    assert first is not None and first.item_id in study.items


def test_renders_are_lossless_and_reproducible(tmp_path, photos):
    study = Study.from_folder(tmp_path / "r.db", photos, methods=["lanczos"], control=False)
    assert study.prepare() == study.total == 2
    first = {i: np.asarray(Image.open(study.cache_path(i))) for i in study.items}
    for i in study.items:
        assert Image.open(study.cache_path(i)).format == "PNG"
        study.cache_path(i).unlink()
    again = Study.from_folder(tmp_path / "r.db", photos, methods=["lanczos"], control=False)
    assert again.prepare() == 2
    for i in study.items:
        np.testing.assert_array_equal(np.asarray(again.image(i)), first[i])
    # A changed test image is a new item: old ratings keep their own id.
    Image.new("RGB", (12, 12), (9, 9, 9)).save(photos / "one.png")
    changed = Study.from_folder(tmp_path / "r.db", photos, methods=["lanczos"], control=False)
    assert set(changed.items) != set(study.items)
    assert len(changed.store.items()) == 3


# ------------------------------------------------------------------------------------------------ CLI


def parse_markdown_table(text: str) -> dict[str, list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


@pytest.mark.parametrize("module", ["sr_app.mos", "sr_core.mos"])
def test_report_cli_prints_mos_table_and_writes_csv(tmp_path, module):
    """The study's own command, and its former name, which forwards to it."""
    store = make_store(tmp_path / "r.db")
    fill_hand_example(store)
    out_csv = tmp_path / "out" / "all.csv"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", module, "report", "--db", str(tmp_path / "r.db"), "--csv", str(out_csv)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "14 ratings from 8 visitors" in proc.stdout
    table = parse_markdown_table(proc.stdout)
    assert set(table) == {"alpha", "beta", "gamma"}
    # columns: scale, n, MOS, 95% CI, ±, std
    assert table["alpha"] == ["x4", "5", "4.000", "[3.122, 4.878]", "0.878", "0.707"]
    assert table["beta"] == ["x4", "8", "2.000", "[1.368, 2.632]", "0.632", "0.756"]
    assert table["gamma"] == ["x4", "1", "5.000", "n/a", "n/a", "n/a"]
    with open(out_csv, newline="") as fh:
        records = list(csv.DictReader(fh))
    assert len(records) == 14
    assert sorted(int(r["score"]) for r in records if r["method"] == "beta") == sorted(HAND["beta"][0])


def test_report_cli_csv_to_stdout_and_errors(tmp_path, capsys):
    store = make_store(tmp_path / "r.db")
    assert mos_main(["report", "--db", str(tmp_path / "r.db")]) == 0
    assert "No ratings yet" in capsys.readouterr().out
    rate(store, "v", "img0:alpha:x4", 4)
    assert mos_main(["report", "--db", str(tmp_path / "r.db"), "--csv", "-"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == ",".join(CSV_FIELDS) and len(lines) == 2 and lines[1].split(",")[5] == "4"
    assert mos_main(["report", "--db", str(tmp_path / "nope.db")]) == 2
    assert "no ratings database" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()
    assert math.isfinite(store.method_scores()[0].summary.mean)


def test_old_command_name_forwards_in_process(tmp_path, capsys):
    import sr_core.mos

    make_store(tmp_path / "r.db")
    assert sr_core.mos.main(["report", "--db", str(tmp_path / "r.db")]) == 0
    assert "No ratings yet" in capsys.readouterr().out
    assert sr_core.mos.main(["report", "--db", str(tmp_path / "nope.db")]) == 2
    with pytest.raises(SystemExit):
        sr_core.mos.main(["--help"])
    assert "python -m sr_core.mos" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ layout


def test_library_keeps_the_statistics_and_the_app_holds_the_study():
    """sr_core has the MOS statistics but no store, study or tokens; importing it never imports the app."""
    import sr_app.mos

    code = (
        "import sys, importlib.util\n"
        "import sr_core, sr_core.mos, sr_core.stats, sr_core.constants, sr_core.io\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sr_app', 'gradio')))\n"
        "print([n for n in ('store', 'study', 'cli', 'stats') if importlib.util.find_spec('sr_core.mos.' + n)])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "[]"]
    assert sr_app.mos.summarize_scores is sr_core.stats.summarize_scores
    assert sr_app.mos.t_quantile is sr_core.stats.t_quantile
    assert sr_app.mos.RatingStore.__module__ == "sr_app.mos.store"


def test_dead_code_is_gone():
    assert not hasattr(RatingStore, "pending")
    assert not hasattr(sr_core.stats, "t_cdf")
    assert not hasattr(sr_core.stats, "regularized_beta")


# ------------------------------------------------------------------------------------------------ constants


def test_study_takes_every_image_format_the_cli_takes(tmp_path):
    """One suffix list: the study reads every format ``sr-upscale`` reads from a folder, and decodes it."""
    from sr_core.cli import IMAGE_SUFFIXES as CLI_SUFFIXES

    assert set(IMAGE_SUFFIXES) == set(CLI_SUFFIXES)
    assert {".gif", ".ppm", ".pgm", ".tga"} <= IMAGE_SUFFIXES
    rng = np.random.default_rng(2)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    for suffix in sorted(IMAGE_SUFFIXES):
        image = rgb.convert("L") if suffix == ".pgm" else rgb
        image.save(tmp_path / f"photo{suffix.replace('.', '_')}{suffix.upper()}")
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_images(tmp_path)
    assert sorted(p.suffix.lower() for p in found) == sorted(IMAGE_SUFFIXES)

    study = Study.from_folder(tmp_path / "r.db", tmp_path, methods=["nearest"], control=True)
    gif = next(p for p in found if p.suffix == ".GIF")
    truth = next(e for e in study.items.values() if e.source == gif and e.item.method == GROUND_TRUTH)
    expected = np.asarray(Image.open(gif).convert("RGB"))[:12, :16]
    np.testing.assert_array_equal(np.asarray(study.image(truth.item_id)), expected)


def test_pixel_limits_are_defined_once_with_the_app_limit_for_the_study(tmp_path):
    import sr_core.io

    assert (DEFAULT_MAX_PIXELS, APP_MAX_PIXELS) == (100_000_000, 4_000_000)
    assert sr_core.io.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
    assert "DEFAULT_MAX_PIXELS" not in {
        target.id
        for node in ast.walk(ast.parse((REPO / "sr_core" / "io.py").read_text(encoding="utf-8")))
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    study = Study.from_folder(tmp_path / "r.db", tmp_path, methods=["nearest"])
    assert study.max_pixels == APP_MAX_PIXELS
