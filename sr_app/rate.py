"""The "Rate" tab: a blind mean opinion score (MOS) study run by SR Studio's visitors.

Each visitor (an anonymous random id per browser visit, kept in ``gr.State`` on the server) is shown one
upscaled test image at a time, never told the method, scores it from 1 (bad) to 5 (excellent) and gets the next
item they have not seen. Scores go to the SQLite store of :mod:`sr_app.mos`; the results view shows the MOS, 95%
confidence interval and number of ratings per method, and exports every rating as CSV.

The app adds the tab through :func:`build_tab` (``sr_app.ui.EXTRA_TAB_MODULES``), which turns the app's config
into a :class:`RateConfig`: ``--ratings-db`` / ``--rating-images``, else ``SR_STUDIO_RATINGS_DB`` /
``SR_STUDIO_RATING_IMAGES``, else ``./ratings.db`` and the bundled ``examples/``, at x4 with the ground-truth
control.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from sr_core.errors import SRError

from .handlers import AppConfig
from .mos import (
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
from .ui import EXAMPLES_DIR

logger = logging.getLogger(__name__)

ENV_DB = "SR_STUDIO_RATINGS_DB"
ENV_IMAGES = "SR_STUDIO_RATING_IMAGES"
RATE_QUEUE = "sr_rate"
RATE_CONCURRENCY = 8
"""Rating events served at once (they only read a cached PNG and write one row)."""
QUEUE = {"concurrency_id": RATE_QUEUE, "concurrency_limit": RATE_CONCURRENCY}
PRIVATE = {"api_visibility": "private", **QUEUE}
UNDOCUMENTED = {"api_visibility": "undocumented"}
"""The study's named endpoints stay callable by gradio_client but are left out of the API page and of the MCP
tools (``python app.py --mcp``): an assistant must not be able to submit ratings and skew the study."""

RESULT_HEADERS = ["Method", "Scale", "Ratings", "MOS", "95% CI low", "95% CI high", "± (95%)", "Std"]
RESULT_TYPES = ["str", "str", "number", "number", "number", "number", "number", "number"]

INTRO = """### Rate image quality
Help us measure how good each upscaling method looks to people. You will see one enlarged photo at a time; the
method that made it is not shown. Score its overall quality from **1 (bad)** to **5 (excellent)**, as you would
judge a photo, and the next one appears. Each image is shown to you only once; stop whenever you like, every
score counts. Scores are stored anonymously (a random id for this visit, no personal data)."""

RESULTS_TEXT = (
    "Mean opinion score (MOS) with its 95% confidence interval (Student's t) and the number of "
    "ratings; *ground-truth* is the original photo, shown as a control."
)
START_TEXT = "Press **Start rating** to see the first image."
UNAVAILABLE_TEXT = "The rating study is not available on this server: {reason}"

Visit = dict[str, Any]
"""Per-browser-visit state: ``visitor`` id, ``token``/``item`` of the image on screen (None when none), and
``done`` once every item has been rated."""
Screen = tuple[Any, str, Visit]
"""What a visitor event returns: (image path or None, status text, the visit's new state)."""


@dataclass(frozen=True)
class RateConfig:
    """The Rate tab's settings in one typed place: the ratings database, the test images, the study design
    (scales, ground-truth control) and where upscaling runs."""

    ratings_db: Path = Path(DEFAULT_DB)
    rating_images: Path = EXAMPLES_DIR
    scales: tuple[int, ...] = DEFAULT_SCALES
    control: bool = True
    device: str = "auto"
    weights_dir: str | None = None

    @classmethod
    def from_app(cls, config: AppConfig, environ: Mapping[str, str] | None = None) -> RateConfig:
        """The settings the app's flags give (``--ratings-db``, ``--rating-images``, ``--device``,
        ``--weights-dir``), falling back to ``$SR_STUDIO_RATINGS_DB`` / ``$SR_STUDIO_RATING_IMAGES``, then the
        defaults. ``environ`` defaults to ``os.environ``."""
        env = os.environ if environ is None else environ
        return cls(
            ratings_db=Path(config.ratings_db or env.get(ENV_DB) or DEFAULT_DB),
            rating_images=Path(config.rating_images or env.get(ENV_IMAGES) or EXAMPLES_DIR),
            device=config.device or "auto",
            weights_dir=config.weights_dir,
        )


def open_study(settings: RateConfig) -> Study:
    """The study ``settings`` describe (its database is created if missing; SRError without test images)."""
    return Study.from_folder(
        settings.ratings_db,
        settings.rating_images,
        scales=settings.scales,
        control=settings.control,
        device=settings.device,
        weights_dir=settings.weights_dir,
    )


def _prerender(study: Study) -> None:
    try:
        made = study.prepare()
        logger.info("Rating study ready: %d items, %d rendered now, database %s", study.total, made, study.store.path)
    except Exception:
        logger.exception("Rating study: pre-rendering failed; items will be rendered when first shown")


def _unavailable_tab(reason: BaseException) -> None:
    """A Rate tab that says why there is no study, instead of breaking the app."""
    with gr.Tab("Rate", id="rate"):
        gr.Markdown(INTRO)
        gr.Markdown(UNAVAILABLE_TEXT.format(reason=reason), elem_id="rate-status")


def build_tab(config: AppConfig) -> None:
    """Add the Rate tab for the app's ``config`` (the hook ``sr_app.ui.build_demo`` calls inside its ``gr.Tabs``).

    Renders are prepared in a background thread. If the study cannot be set up (no test images, database not
    writable) the tab says why instead of breaking the app.
    """
    try:
        study = open_study(RateConfig.from_app(config))
    except (SRError, OSError) as exc:
        logger.error("Rating study unavailable: %s", exc)
        _unavailable_tab(exc)
        return
    threading.Thread(target=_prerender, args=(study,), name="sr-rate-prerender", daemon=True).start()
    add_rate_tab(study)


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


def new_visit(visit: Visit | None) -> Visit:
    """A copy of the visit's state, or a fresh visit with a new anonymous visitor id."""
    return dict(visit) if visit else {"visitor": uuid.uuid4().hex, "token": None, "item": None, "done": False}


def controls(visit: Visit) -> list[Any]:
    """Button updates: scores enabled while an image waits, *Start rating* shown until the visitor is done."""
    waiting = bool(visit.get("token"))
    start_visible = not waiting and not visit.get("done")
    return [*(gr.Button(interactive=waiting) for _ in SCORE_LABELS), gr.Button(visible=start_visible)]


class RateActions:
    """The Rate tab's event handlers for one study: each takes the visit's state and returns the new screen."""

    def __init__(self, study: Study) -> None:
        self.study = study

    def present(self, visit: Visit, shown: Shown | None) -> Screen:
        """The screen for ``shown`` (the thanks text when None: every item is rated)."""
        visitor = visit["visitor"]
        if shown is None:
            return None, _thanks_text(self.study, visitor), {**visit, "token": None, "item": None, "done": True}
        image = str(self.study.render(shown.item_id))
        return image, _progress_text(self.study, visitor), {**visit, "token": shown.token, "item": shown.item_id}

    def start(self, visit: Visit | None) -> Screen:
        """Show the image waiting for a score, or draw the next unseen one."""
        visit = new_visit(visit)
        try:
            if visit["token"]:
                return self.present(visit, Shown(visit["token"], visit["visitor"], visit["item"]))
            return self.present(visit, self.study.next_item(visit["visitor"], previous=visit["item"]))
        except RatingError as exc:
            raise _rating_error(exc) from exc
        except (SRError, OSError) as exc:
            raise _failure(exc) from exc

    def rate(self, score: Any, visit: Visit | None) -> Screen:
        """Store ``score`` for the image on screen and show the next one."""
        visit = new_visit(visit)
        if not visit["token"]:
            if visit.get("done"):
                raise _error("You have already rated every image of this study. Thank you!")
            raise _error("No image is waiting for a score: press Start rating first.")
        shown = Shown(visit["token"], visit["visitor"], visit["item"])
        try:
            self.study.rate(shown, score)
        except RatingError as exc:
            raise _rating_error(exc) from exc
        try:
            return self.present(visit, self.study.next_item(visit["visitor"], previous=shown.item_id))
        except (SRError, OSError) as exc:
            raise _failure(exc) from exc

    def ui_start(self, visit: Visit | None) -> tuple[Any, ...]:
        """:meth:`start` plus the button updates the page needs."""
        image, status, visit = self.start(visit)
        return (image, status, visit, *controls(visit))

    def ui_rater(self, score: int) -> Callable[[Visit | None], tuple[Any, ...]]:
        """The click handler of the button for ``score``: :meth:`rate` plus the button updates."""

        def ui_rate(visit: Visit | None) -> tuple[Any, ...]:
            image, status, visit = self.rate(score, visit)
            return (image, status, visit, *controls(visit))

        return ui_rate

    def export_csv(self) -> str:
        """Every rating written to a fresh temporary CSV file; returns its path."""
        folder = Path(tempfile.mkdtemp(prefix="sr_studio_ratings_"))
        try:
            self.study.store.write_csv(folder / "ratings.csv")
        except SRError as exc:
            raise _error(str(exc)) from exc
        return str(folder / "ratings.csv")

    def results(self) -> list[list[Any]]:
        """The results table of all visitors so far."""
        return results_rows(self.study)


@dataclass(frozen=True)
class RateView:
    """The Rate tab's components that events read or update."""

    tab: gr.Tab
    visit: gr.State
    picture: gr.Image
    status: gr.Markdown
    score_buttons: list[gr.Button]
    start_button: gr.Button
    api_score: gr.Number
    api_start: gr.Button
    api_rate: gr.Button
    results_box: gr.Accordion
    table: gr.Dataframe
    refresh_button: gr.Button
    export_button: gr.Button
    csv_file: gr.File

    @property
    def screen(self) -> list[Any]:
        """Outputs of a visitor event: image, status, state, then the score and start buttons."""
        return [self.picture, self.status, self.visit, *self.score_buttons, self.start_button]


def _rating_panel() -> tuple[gr.Image, gr.Markdown, list[gr.Button], gr.Button]:
    """The image to rate beside the status text, the five score buttons and *Start rating*."""
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
    return picture, status, score_buttons, start_button


def _results_panel() -> tuple[gr.Accordion, gr.Dataframe, gr.Button, gr.Button, gr.File]:
    """The closed *Results* accordion: the MOS table, a refresh button and the CSV export."""
    with gr.Accordion("Results: MOS per method, all visitors", open=False) as results_box:
        gr.Markdown(RESULTS_TEXT)
        table = gr.Dataframe(headers=RESULT_HEADERS, datatype=RESULT_TYPES, interactive=False, elem_id="rate-results")
        with gr.Row():
            refresh_button = gr.Button("Refresh results", elem_id="rate-refresh")
            export_button = gr.Button("Export all ratings (CSV)", elem_id="rate-export")
        csv_file = gr.File(label="Ratings (CSV)", interactive=False, height=120, elem_id="rate-csv")
    return results_box, table, refresh_button, export_button, csv_file


def _layout() -> RateView:
    """Lay out the tab (inside the Blocks being built); hidden buttons carry the ``/rate*`` API endpoints."""
    with gr.Tab("Rate", id="rate") as tab:
        gr.Markdown(INTRO)
        visit = gr.State(None)
        picture, status, score_buttons, start_button = _rating_panel()
        api_score = gr.Number(visible=False, precision=None, label="Score (1-5)")
        api_start = gr.Button(visible=False)
        api_rate = gr.Button(visible=False)
        results_box, table, refresh_button, export_button, csv_file = _results_panel()
    return RateView(
        tab=tab,
        visit=visit,
        picture=picture,
        status=status,
        score_buttons=score_buttons,
        start_button=start_button,
        api_score=api_score,
        api_start=api_start,
        api_rate=api_rate,
        results_box=results_box,
        table=table,
        refresh_button=refresh_button,
        export_button=export_button,
        csv_file=csv_file,
    )


def _wire_page(view: RateView, actions: RateActions) -> None:
    """The visitor's events: opening the tab or *Start rating* shows an image, a score button rates it."""
    view.tab.select(actions.ui_start, [view.visit], view.screen, **PRIVATE)
    view.start_button.click(actions.ui_start, [view.visit], view.screen, **PRIVATE)
    for value, button in zip(SCORE_LABELS, view.score_buttons, strict=True):
        button.click(actions.ui_rater(value), [view.visit], view.screen, **PRIVATE)


def _wire_api(view: RateView, actions: RateActions) -> None:
    """The named endpoints ``/rate_start``, ``/rate``, ``/rate_results``, ``/rate_csv``; the results on expand."""
    view.api_start.click(
        actions.start,
        [view.visit],
        [view.picture, view.status, view.visit],
        api_name="rate_start",
        api_description="Show the image to rate (the current one, or the next unseen); returns (image, status). "
        "The image is None once every item is rated.",
        **QUEUE,
        **UNDOCUMENTED,
    )
    view.api_rate.click(
        actions.rate,
        [view.api_score, view.visit],
        [view.picture, view.status, view.visit],
        api_name="rate",
        api_description="Score the image on screen from 1 (bad) to 5 (excellent) and get the next one; returns "
        "(image, status).",
        **QUEUE,
        **UNDOCUMENTED,
    )
    view.refresh_button.click(
        actions.results, None, view.table, api_name="rate_results", api_description="MOS per method.", **UNDOCUMENTED
    )
    view.results_box.expand(actions.results, None, view.table, api_visibility="private")
    view.export_button.click(
        actions.export_csv, None, view.csv_file, api_name="rate_csv", api_description="All ratings as CSV.",
        **UNDOCUMENTED,
    )


def add_rate_tab(study: Study) -> None:
    """Add the Rate tab for ``study`` to the Blocks being built (call inside ``gr.Tabs()``)."""
    # Renders are served straight from the cache folder: Gradio's own copy of an in-memory image is rewritten in
    # place, so two visitors shown the same item at once could download a truncated file.
    gr.set_static_paths([study.cache_dir])
    view = _layout()
    actions = RateActions(study)
    _wire_page(view, actions)
    _wire_api(view, actions)
