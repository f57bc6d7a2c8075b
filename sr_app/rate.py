"""The "Rate" tab: a blind mean opinion score (MOS) study run by SR Studio's visitors.

Each visitor (an anonymous random id per browser visit, kept in ``gr.State`` on the server) is shown one
upscaled test image at a time, never told the method, scores it from 1 (bad) to 5 (excellent) and gets the next
item they have not seen. Scores go to the SQLite store of :mod:`sr_core.mos`; the results view shows the MOS, 95%
confidence interval and number of ratings per method, and exports every rating as CSV.

The app adds the tab through :func:`build_tab` (``sr_app.ui.EXTRA_TAB_MODULES``). Settings come from the app
config when it has them (``ratings_db``, ``rating_images``, ``rating_scales``, ``rating_control``), else from
``SR_STUDIO_RATINGS_DB`` / ``SR_STUDIO_RATING_IMAGES``, else the defaults: ``./ratings.db`` and the bundled
``examples/`` at x4 with the ground-truth control.

API (for ``gradio_client``): ``/rate_start`` () -> (image, status) shows the current or next image;
``/rate`` (score) -> (image, status) stores the score of the image on screen and shows the next;
``/rate_results`` () -> table; ``/rate_csv`` () -> CSV file. The image is None once every item is rated.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from sr_core.errors import SRError
from sr_core.mos import (
    DEFAULT_DB,
    DEFAULT_SCALES,
    GROUND_TRUTH,
    SCORE_LABELS,
    BadScoreError,
    RatingError,
    ReplayedRatingError,
    Shown,
    Study,
)

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
ENV_DB = "SR_STUDIO_RATINGS_DB"
ENV_IMAGES = "SR_STUDIO_RATING_IMAGES"
RATE_QUEUE = "sr_rate"
RATE_CONCURRENCY = 8
"""Rating events served at once (they only read a cached PNG and write one row)."""

RESULT_HEADERS = ["Method", "Scale", "Ratings", "MOS", "95% CI low", "95% CI high", "± (95%)", "Std"]

INTRO = """### Rate image quality
Help us measure how good each upscaling method looks to people. You will see one enlarged photo at a time; the
method that made it is not shown. Score its overall quality from **1 (bad)** to **5 (excellent)**, as you would
judge a photo, and the next one appears. Each image is shown to you only once; stop whenever you like, every
score counts. Scores are stored anonymously (a random id for this visit, no personal data)."""

START_TEXT = "Press **Start rating** to see the first image."
UNAVAILABLE_TEXT = "The rating study is not available on this server: {reason}"

Visit = dict[str, Any]
"""Per-browser-visit state: ``visitor`` id, ``token``/``item`` of the image on screen (None when none), and
``done`` once every item has been rated."""


def _setting(config: Any, name: str, env: str | None = None) -> Any:
    value = getattr(config, name, None)
    if value is None and env is not None:
        value = os.environ.get(env) or None
    return value


def study_from_config(config: Any) -> Study:
    """The study the app config (or the environment, or the defaults) describes."""
    db = _setting(config, "ratings_db", ENV_DB) or DEFAULT_DB
    images = _setting(config, "rating_images", ENV_IMAGES) or EXAMPLES_DIR
    scales = tuple(_setting(config, "rating_scales") or DEFAULT_SCALES)
    control = _setting(config, "rating_control")
    return Study.from_folder(
        db,
        images,
        scales=scales,
        control=True if control is None else bool(control),
        device=getattr(config, "device", "auto") or "auto",
        weights_dir=getattr(config, "weights_dir", None),
    )


def _prerender(study: Study) -> None:
    try:
        made = study.prepare()
        logger.info("Rating study ready: %d items, %d rendered now, database %s", study.total, made, study.store.path)
    except Exception:
        logger.exception("Rating study: pre-rendering failed; items will be rendered when first shown")


def build_tab(config: Any) -> None:
    """Add the Rate tab for ``config`` (the hook ``sr_app.ui.build_demo`` calls inside its ``gr.Tabs``).

    Renders are prepared in a background thread. If the study cannot be set up (no test images, database not
    writable) the tab says why instead of breaking the app.
    """
    try:
        study = study_from_config(config)
    except (SRError, OSError) as exc:
        logger.error("Rating study unavailable: %s", exc)
        with gr.Tab("Rate", id="rate"):
            gr.Markdown(INTRO)
            gr.Markdown(UNAVAILABLE_TEXT.format(reason=exc), elem_id="rate-status")
        return
    threading.Thread(target=_prerender, args=(study,), name="sr-rate-prerender", daemon=True).start()
    add_rate_tab(study)


def tab_builder(study: Study) -> Callable[[Any], None]:
    """A tab builder for ``build_demo(extra_tabs=[...])`` that uses a ready-made ``study``."""

    def build(config: Any) -> None:
        add_rate_tab(study)

    return build


def _progress_text(study: Study, visitor: str) -> str:
    return (
        f"Image **{study.shown_count(visitor)} of {study.total}**. How good is the quality of this image? "
        "Score it from **1 (bad)** to **5 (excellent)**."
    )


def _thanks_text(study: Study, visitor: str) -> str:
    rated = study.shown_count(visitor)
    if rated == 0:
        return "There is nothing to rate right now. Thank you for stopping by!"
    return (
        f"**Thank you!** You have rated all {rated} images of this study. Open *Results* below to see the "
        "scores of every visitor so far."
    )


def _error(message: str) -> gr.Error:
    return gr.Error(message, print_exception=False)


def _rating_error(exc: RatingError) -> gr.Error:
    """A refused score as the visitor may read it: never the item id, which names the method."""
    if isinstance(exc, BadScoreError):
        return _error(str(exc).rstrip(".") + ".")
    if isinstance(exc, ReplayedRatingError):
        return _error("This image has already been scored; press Start rating to continue.")
    return _error("This image is not waiting for your score; press Start rating to continue.")


def _failure(exc: BaseException) -> gr.Error:
    logger.error("Rating study: %s", exc)
    return _error("The next image could not be prepared; please try again in a moment.")


def results_rows(study: Study) -> list[list[Any]]:
    """The results table: one row per (method, scale), best MOS first; None where n = 1 gives no spread."""

    def r(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    rows = []
    for row in study.store.method_scores():
        s = row.summary
        name = f"{row.method} (control)" if row.method == GROUND_TRUTH else row.method
        rows.append([name, f"x{row.scale}", s.n, r(s.mean), r(s.ci_low), r(s.ci_high), r(s.half_width), r(s.std)])
    return rows


def add_rate_tab(study: Study) -> None:
    """Add the Rate tab for ``study`` to the Blocks being built (call inside ``gr.Tabs()``)."""

    def new_visit(visit: Visit | None) -> Visit:
        return dict(visit) if visit else {"visitor": uuid.uuid4().hex, "token": None, "item": None, "done": False}

    def present(visit: Visit, shown: Shown | None) -> tuple[Any, str, Visit]:
        visitor = visit["visitor"]
        if shown is None:
            return None, _thanks_text(study, visitor), {**visit, "token": None, "item": None, "done": True}
        image = str(study.render(shown.item_id))
        return image, _progress_text(study, visitor), {**visit, "token": shown.token, "item": shown.item_id}

    def start(visit: Visit | None) -> tuple[Any, str, Visit]:
        visit = new_visit(visit)
        try:
            if visit["token"]:
                return present(visit, Shown(visit["token"], visit["visitor"], visit["item"]))
            return present(visit, study.next_item(visit["visitor"], previous=visit["item"]))
        except RatingError as exc:
            raise _rating_error(exc) from exc
        except (SRError, OSError) as exc:
            raise _failure(exc) from exc

    def rate(score: Any, visit: Visit | None) -> tuple[Any, str, Visit]:
        visit = new_visit(visit)
        if not visit["token"]:
            if visit.get("done"):
                raise _error("You have already rated every image of this study. Thank you!")
            raise _error("No image is waiting for a score: press Start rating first.")
        shown = Shown(visit["token"], visit["visitor"], visit["item"])
        try:
            study.rate(shown, score)
        except RatingError as exc:
            raise _rating_error(exc) from exc
        try:
            return present(visit, study.next_item(visit["visitor"], previous=shown.item_id))
        except (SRError, OSError) as exc:
            raise _failure(exc) from exc

    def controls(visit: Visit) -> list[Any]:
        waiting = bool(visit.get("token"))
        start_visible = not waiting and not visit.get("done")
        return [*(gr.Button(interactive=waiting) for _ in SCORE_LABELS), gr.Button(visible=start_visible)]

    def ui_start(visit: Visit | None) -> tuple[Any, ...]:
        image, status, visit = start(visit)
        return (image, status, visit, *controls(visit))

    def ui_rater(score: int) -> Callable[[Visit | None], tuple[Any, ...]]:
        def ui_rate(visit: Visit | None) -> tuple[Any, ...]:
            image, status, visit = rate(score, visit)
            return (image, status, visit, *controls(visit))

        return ui_rate

    def export_csv() -> str:
        folder = Path(tempfile.mkdtemp(prefix="sr_studio_ratings_"))
        try:
            study.store.write_csv(folder / "ratings.csv")
        except SRError as exc:
            raise _error(str(exc)) from exc
        return str(folder / "ratings.csv")

    def results() -> list[list[Any]]:
        return results_rows(study)

    # Renders are served straight from the cache folder: Gradio's own copy of an in-memory image is rewritten in
    # place, so two visitors shown the same item at once could download a truncated file.
    gr.set_static_paths([study.cache_dir])
    with gr.Tab("Rate", id="rate") as tab:
        gr.Markdown(INTRO)
        visit = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                picture = gr.Image(
                    label="Image to rate",
                    type="filepath",
                    format="png",
                    interactive=False,
                    buttons=["fullscreen"],
                    alt_text="Image to rate",
                    elem_id="rate-image",
                )
            with gr.Column(scale=2):
                status = gr.Markdown(START_TEXT, label="Status", elem_id="rate-status")
                score_buttons = [
                    gr.Button(f"{value} · {label}", interactive=False, elem_id=f"rate-{value}")
                    for value, label in SCORE_LABELS.items()
                ]
                start_button = gr.Button("Start rating", variant="primary", elem_id="rate-start")
        api_score = gr.Number(visible=False, precision=None, label="Score (1-5)")
        api_start = gr.Button(visible=False)
        api_rate = gr.Button(visible=False)
        with gr.Accordion("Results: MOS per method, all visitors", open=False) as results_box:
            gr.Markdown(
                "Mean opinion score (MOS) with its 95% confidence interval (Student's t) and the number of "
                "ratings; *ground-truth* is the original photo, shown as a control."
            )
            table = gr.Dataframe(
                headers=RESULT_HEADERS,
                datatype=["str", "str", "number", "number", "number", "number", "number", "number"],
                interactive=False,
                elem_id="rate-results",
            )
            with gr.Row():
                refresh_button = gr.Button("Refresh results", elem_id="rate-refresh")
                export_button = gr.Button("Export all ratings (CSV)", elem_id="rate-export")
            csv_file = gr.File(label="Ratings (CSV)", interactive=False, height=120, elem_id="rate-csv")

    queue = {"concurrency_id": RATE_QUEUE, "concurrency_limit": RATE_CONCURRENCY}
    ui_outputs = [picture, status, visit, *score_buttons, start_button]
    private = {"api_visibility": "private", **queue}
    tab.select(ui_start, [visit], ui_outputs, **private)
    start_button.click(ui_start, [visit], ui_outputs, **private)
    for value, button in zip(SCORE_LABELS, score_buttons, strict=True):
        button.click(ui_rater(value), [visit], ui_outputs, **private)
    api_start.click(
        start,
        [visit],
        [picture, status, visit],
        api_name="rate_start",
        api_description="Show the image to rate (the current one, or the next unseen); returns (image, status). "
        "The image is None once every item is rated.",
        **queue,
    )
    api_rate.click(
        rate,
        [api_score, visit],
        [picture, status, visit],
        api_name="rate",
        api_description="Score the image on screen from 1 (bad) to 5 (excellent) and get the next one; returns "
        "(image, status).",
        **queue,
    )
    refresh_button.click(results, None, table, api_name="rate_results", api_description="MOS per method.")
    results_box.expand(results, None, table, api_visibility="private")
    export_button.click(export_csv, None, csv_file, api_name="rate_csv", api_description="All ratings as CSV.")
