"""The Train tab's events: the named ``/train_*`` endpoints, the polling live view and the form's own updates."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from sr_core.errors import SRError
from train.config import INHERIT, ConfigError

from .. import handlers
from .data import DEFAULT_SHARE, FOLDER, HELD_OUT, UPLOAD, DataChoice
from .paths import PathError
from .recipe import INIT_CONFIG, Recipe, form_values, whole
from .runs import RunError, news_marks, read_log, tail
from .service import Training
from .tab import DEFAULT_CONFIG, TrainView, run_choices
from .uploads import UploadError
from .view import drawn_series, loss_frame, metric_frame, preview, progress_html, status_markdown

logger = logging.getLogger(__name__)

TRAIN_QUEUE = "sr_train"
ONE_AT_A_TIME = {"concurrency_id": TRAIN_QUEUE, "concurrency_limit": 1}
PRIVATE = {"api_visibility": "private"}
TAIL_LINES = 10
_REFUSALS = (RunError, UploadError, PathError, ConfigError, SRError)


def _sentence(text: str) -> str:
    text = " ".join(str(text).split()) or "That did not work."
    return text if text.endswith((".", "!", "?")) else text + "."


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Any refusal or failure inside as the one-sentence ``gr.Error`` the page shows."""
    try:
        yield
    except gr.Error:
        raise
    except _REFUSALS as exc:
        raise gr.Error(_sentence(str(exc)), print_exception=False) from exc
    except OSError as exc:
        logger.exception("Training request failed")
        message = _sentence(f"The server could not do that: {exc.strerror or exc}")
        raise gr.Error(message, print_exception=False) from exc


def _upscale_method() -> gr.Dropdown | None:
    """The Upscale tab's method selector in the Blocks being built (so that a run's model can be added to it)."""
    root = Context.root_block
    blocks = root.blocks.values() if root is not None else []
    return next((b for b in blocks if isinstance(b, gr.Dropdown) and b.elem_id == "method"), None)


class Actions:
    """The tab's event handlers for one app instance."""

    def __init__(self, training: Training) -> None:
        self.training = training

    def start(
        self,
        source: str = UPLOAD,
        uploads: Any = None,
        folder: str | None = None,
        val_source: str = HELD_OUT,
        val_share: float = DEFAULT_SHARE,
        val_uploads: Any = None,
        val_folder: str | None = None,
        config: str = DEFAULT_CONFIG,
        init: str = INIT_CONFIG,
        steps: Any = None,
        batch_size: Any = None,
        patch_size: Any = None,
        lr: Any = None,
        mixed_precision: str = INHERIT,
        validate_every: Any = 0,
        log_every: Any = 0,
    ) -> tuple[str, str]:
        """Start a run; returns (message, run id). Values left out (None) are the config's."""
        data = DataChoice(
            source, uploads or (), folder or "", val_source, val_share, val_uploads or (), val_folder or ""
        )
        recipe = Recipe(config, init, steps, batch_size, patch_size, lr, mixed_precision, validate_every, log_every)
        with _reported():
            run_id = self.training.start(data, recipe)
        return f"Started run **{run_id}**.", run_id

    def stop(self, run: str | None = "") -> str:
        """Ask the run going now to stop after its step (it saves a checkpoint first)."""
        with _reported():
            run_id = self.training.stop(run or None)
        return f"Stopping run **{run_id}** after its current step (it saves a checkpoint first)."

    def resume(self, run: str | None = "", steps: Any = 0) -> tuple[str, str]:
        """Continue the selected run (default: the newest) from its checkpoint, to its own total or, when ``steps``
        is more than 0, to that step; returns (message, run id)."""
        with _reported():
            total = _whole_or_zero(steps, "Resume until step")
            run_id = self.training.resume(run or None, total or None)
        return f"Resumed run **{run_id}** from its checkpoint.", run_id

    def status(self, run: str | None = "") -> dict[str, Any]:
        """The selected run's state: run, state, step, total_steps, patches_per_s, eta_s, message, latest scores."""
        with _reported():
            state = self.training.status(run or None)
        return state.as_dict() if state is not None else {"run": None, "state": "none"}

    def use(self, run: str | None = "") -> tuple[str, str]:
        """Offer the run's best model as a method of this app (the Upscale tab's and ``/upscale``'s ``method``);
        returns (message, the method's name)."""
        with _reported():
            info = self.training.use(run or None)
        return f"Added **{info.label}** to the Upscale tab's methods.", info.name

    def methods(self, selected: str | None = None) -> Any:
        """The Upscale tab's method choices now (with the runs added to it), ``selected`` picked when given."""
        choices = handlers.method_choices(self.training.config)
        return gr.update(choices=choices) if not selected else gr.update(choices=choices, value=selected)

    def select_run(self, run_id: str) -> Any:
        """The run selector, refreshed, showing ``run_id``."""
        return self._runs(run_id or None)

    def download(self, run: str | None = "") -> str:
        """A zip of the run's model folder."""
        with _reported():
            return str(self.training.download(run or None))

    def refresh(self, run: str | None, seen: dict[str, Any] | None) -> tuple[Any, ...]:
        """The live view of the selected run: status, progress bar, plots, preview, output, and what it showed."""
        try:
            state = self.training.status(run or None)
        except RunError:
            state = None
        if state is None:
            empty = (loss_frame([]), metric_frame([], "psnr"), metric_frame([], "ssim"))
            return status_markdown(None), progress_html(None), *empty, None, None, ""
        folder = self.training.root / state.run_id
        texts = (status_markdown(state), progress_html(state))
        return (*texts, *_news(folder, seen), tail(folder, TAIL_LINES))

    def refresh_all(self, run: str | None) -> tuple[Any, ...]:
        """The whole live view of the selected run (after the selection changed)."""
        return self.refresh(run, None)

    def on_load(self) -> tuple[Any, Any]:
        """On opening the page: the current runs and starting weights (both change while the app runs)."""
        return self._runs(None), gr.update(choices=self.training.init_choices())

    def _runs(self, value: str | None) -> Any:
        choices = run_choices(self.training)
        return gr.update(choices=choices) if value is None else gr.update(choices=choices, value=value)


def _whole_or_zero(value: Any, label: str) -> int:
    """A whole number from the page, 0 when empty; ConfigError otherwise (as the recipe's numbers)."""
    return 0 if value in (None, "") else whole(value, label)


def _news(folder: Path, seen: dict[str, Any] | None) -> tuple[Any, ...]:
    """(loss plot, PSNR plot, SSIM plot, preview, marks): each part only when it has news since ``seen``, the marks
    of the last refresh (a browser redrawing three plots every poll falls behind on a busy machine)."""
    records = read_log(folder)
    marks = news_marks(folder, records)
    news = {key: seen is None or marks["run"] != seen.get("run") or marks[key] != seen.get(key) for key in marks}
    loss = loss_frame(records)
    marks["legend"] = drawn_series(loss)
    if seen is None or marks["legend"] != seen.get("legend"):
        # Gradio redraws a plot whose legend changes from the data it held before: send the data again next time.
        loss, marks["loss"] = gr.update(value=loss, colors_in_legend=marks["legend"]), None
    elif not news["loss"]:
        loss = gr.skip()
    scores = (metric_frame(records, "psnr"), metric_frame(records, "ssim")) if news["val"] else (gr.skip(),) * 2
    picture = preview(folder) if news["preview"] else gr.skip()
    return loss, *scores, picture, marks


def _visible(field_for: dict[str, int], count: int) -> Callable[[str], tuple[Any, ...]]:
    """A handler showing, of ``count`` components, the one ``field_for`` names for the chosen value."""

    def show(value: str) -> tuple[Any, ...]:
        return tuple(gr.update(visible=field_for.get(value) == i) for i in range(count))

    return show


def _config_values(name: str) -> tuple[Any, ...]:
    """On a new config: its steps, batch size, patch size, learning rate and mixed precision."""
    try:
        values = form_values(name)
    except ConfigError:
        return tuple(gr.skip() for _ in range(5))
    return values["steps"], values["batch_size"], values["patch_size"], values["lr"], values["mixed_precision"]


def _wire_buttons(view: TrainView, actions: Actions) -> None:
    """The named endpoints behind Start, Stop, Resume, Use in Upscale and Download model."""
    started = view.start.click(actions.start, view.inputs_of_start(), [view.message, view.run_id],
                               api_name="train_start", **ONE_AT_A_TIME)  # fmt: skip
    started.success(actions.select_run, view.run_id, view.run, **PRIVATE)
    view.stop.click(actions.stop, [view.run], [view.message], api_name="train_stop", **ONE_AT_A_TIME)
    resumed = view.resume.click(actions.resume, [view.run, view.resume_steps], [view.message, view.run_id],
                                api_name="train_resume", **ONE_AT_A_TIME)  # fmt: skip
    resumed.success(actions.select_run, view.run_id, view.run, **PRIVATE)
    used = view.use.click(actions.use, [view.run], [view.message, view.method_name], api_name="train_use",
                          **ONE_AT_A_TIME)  # fmt: skip
    upscale_method = _upscale_method()
    if upscale_method is not None:
        used.success(actions.methods, view.method_name, upscale_method, **PRIVATE)
    view.download.click(actions.download, [view.run], [view.model_file], api_name="train_download", **ONE_AT_A_TIME)
    view.api_status.click(actions.status, [view.run], [view.status_json], api_name="train_status", queue=False)
    if upscale_method is not None and Context.root_block is not None:
        Context.root_block.load(actions.methods, None, upscale_method, **PRIVATE)


def _wire_live(view: TrainView, actions: Actions) -> None:
    """The polling live view, the page-load refresh and the form's own updates (all private)."""
    live = {"show_progress": "hidden", "concurrency_limit": None, **PRIVATE}
    view.timer.tick(actions.refresh, [view.run, view.seen], view.live, **live)
    view.run.change(actions.refresh_all, [view.run], view.live, **live)
    if Context.root_block is not None:
        Context.root_block.load(actions.on_load, None, [view.run, view.init], **PRIVATE)
    source = _visible({UPLOAD: 0, FOLDER: 1}, 2)
    view.source.change(source, view.source, [view.uploads, view.folder], queue=False, **PRIVATE)
    val_source = _visible({"held_out": 0, UPLOAD: 1, FOLDER: 2}, 3)
    view.val_source.change(val_source, view.val_source, [view.val_share, view.val_uploads, view.val_folder],
                           queue=False, **PRIVATE)  # fmt: skip
    view.config.change(_config_values, view.config, [view.steps, view.batch_size, view.patch_size, view.lr,
                       view.mixed_precision], queue=False, **PRIVATE)  # fmt: skip


def wire(view: TrainView, training: Training) -> None:
    """Connect the tab's events."""
    actions = Actions(training)
    _wire_buttons(view, actions)
    _wire_live(view, actions)
