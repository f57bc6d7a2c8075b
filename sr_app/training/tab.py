"""The Train tab's layout: data, recipe, the buttons and the live view (wired in :mod:`sr_app.training.events`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr

from sr_core.constants import IMAGE_SUFFIXES
from train.config import MIXED_PRECISION

from ..handlers import AppConfig
from .data import DEFAULT_SHARE, HELD_OUT, SOURCES, UPLOAD, VAL_SOURCES
from .paths import config_files
from .recipe import INIT_CONFIG, form_values
from .service import Training
from .view import COLOURS, METRIC_SERIES

DEFAULT_CONFIG = "srresnet_x4"
POLL_S = 2.0
INTRO = """### Train a model
Choose the images and a recipe, then **Start**: the trainer runs on this server (`accelerate launch train/train.py`)
in its own folder under the training root, and keeps going when this page is closed. The live view follows it;
**Stop** saves a checkpoint that **Resume** continues from. When it is done, **Use in Upscale** adds its model to the
Upscale tab's methods, and **Download model** gives its `save_pretrained()` folder as a zip."""


@dataclass
class TrainView:
    """Every component the Train tab's events read or write."""

    source: gr.Radio
    uploads: gr.File
    folder: gr.Textbox
    val_source: gr.Radio
    val_share: gr.Slider
    val_uploads: gr.File
    val_folder: gr.Textbox
    config: gr.Dropdown
    init: gr.Dropdown
    steps: gr.Number
    batch_size: gr.Number
    patch_size: gr.Number
    lr: gr.Number
    mixed_precision: gr.Dropdown
    validate_every: gr.Number
    log_every: gr.Number
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    resume_steps: gr.Number
    message: gr.Markdown
    run: gr.Dropdown
    status: gr.Markdown
    progress: gr.HTML
    loss_plot: gr.LinePlot
    psnr_plot: gr.LinePlot
    ssim_plot: gr.LinePlot
    preview: gr.ImageSlider
    log: gr.Textbox
    use: gr.Button
    download: gr.Button
    model_file: gr.File
    timer: gr.Timer
    seen: gr.State
    api_status: gr.Button
    status_json: gr.JSON
    method_name: gr.Textbox
    """``/train_use``'s second output: the name of the method it added."""
    run_id: gr.Textbox
    """``/train_start`` and ``/train_resume``'s second output: the run's id."""

    def inputs_of_start(self) -> list[Any]:
        """The inputs of ``/train_start``, in its API order (data, then recipe)."""
        names = [
            "source",
            "uploads",
            "folder",
            "val_source",
            "val_share",
            "val_uploads",
            "val_folder",
            "config",
            "init",
            "steps",
            "batch_size",
            "patch_size",
            "lr",
            "mixed_precision",
            "validate_every",
            "log_every",
        ]
        return [getattr(self, name) for name in names]  # fmt: skip

    @property
    def live(self) -> list[Any]:
        """The outputs of a refresh of the live view."""
        return [self.status, self.progress, self.loss_plot, self.psnr_plot, self.ssim_plot, self.preview, self.seen,
                self.log]  # fmt: skip


_UPLOAD_TYPES = sorted({*IMAGE_SUFFIXES, ".zip"})


def _data_column(root: Path) -> dict[str, Any]:
    """Where the training and validation images come from."""
    gr.Markdown("#### Data")
    c: dict[str, Any] = {}
    c["source"] = gr.Radio([(v, k) for k, v in SOURCES.items()], value=UPLOAD, label="Training images",
                           elem_id="train-source")  # fmt: skip
    c["uploads"] = gr.File(label="Images, or a zip of images", file_count="multiple", file_types=_UPLOAD_TYPES,
                           type="filepath", elem_id="train-uploads")  # fmt: skip
    c["folder"] = gr.Textbox(label=f"Folder under {root}", placeholder="e.g. photos/train", visible=False,
                             elem_id="train-folder")  # fmt: skip
    c["val_source"] = gr.Radio([(v, k) for k, v in VAL_SOURCES.items()], value=HELD_OUT, label="Validation images",
                               elem_id="train-val-source")  # fmt: skip
    c["val_share"] = gr.Slider(1, 50, value=DEFAULT_SHARE, step=1, label="Held-out share (%)",
                               elem_id="train-val-share")  # fmt: skip
    c["val_uploads"] = gr.File(label="Validation images, or a zip", file_count="multiple", file_types=_UPLOAD_TYPES,
                               type="filepath", visible=False, elem_id="train-val-uploads")  # fmt: skip
    c["val_folder"] = gr.Textbox(label=f"Validation folder under {root}", visible=False, elem_id="train-val-folder")
    return c


def _recipe_column(training: Training) -> dict[str, Any]:
    """The shipped config, the starting weights and the values the page may change; the three buttons."""
    gr.Markdown("#### Recipe (everything else comes from the config file)")
    start = form_values(DEFAULT_CONFIG)
    c: dict[str, Any] = {}
    c["config"] = gr.Dropdown(list(config_files()), value=DEFAULT_CONFIG, label="Config", elem_id="train-config")
    # Both selectors gain choices while the app runs (new runs); the handlers check every value themselves.
    c["init"] = gr.Dropdown(training.init_choices(), value=INIT_CONFIG, label="Starting weights",
                            allow_custom_value=True, elem_id="train-init")  # fmt: skip
    with gr.Row():
        c["steps"] = gr.Number(start["steps"], label="Steps", precision=0, elem_id="train-steps")
        c["batch_size"] = gr.Number(start["batch_size"], label="Batch size", precision=0, elem_id="train-batch")
        c["patch_size"] = gr.Number(start["patch_size"], label="Patch size (HR px)", precision=0, elem_id="train-patch")
    with gr.Row():
        c["lr"] = gr.Number(start["lr"], label="Learning rate", elem_id="train-lr")
        c["mixed_precision"] = gr.Dropdown(list(MIXED_PRECISION), value=start["mixed_precision"],
                                           label="Mixed precision", elem_id="train-precision")  # fmt: skip
    with gr.Accordion("How often", open=False):
        c["validate_every"] = gr.Number(0, label="Validate every (steps; 0 = about 10 times)", precision=0,
                                        elem_id="train-validate-every")  # fmt: skip
        c["log_every"] = gr.Number(0, label="Log every (steps; 0 = about 100 times)", precision=0,
                                   elem_id="train-log-every")  # fmt: skip
    with gr.Row():
        c["start"] = gr.Button("Start", variant="primary", elem_id="train-start")
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="train-stop")
        c["resume"] = gr.Button("Resume", elem_id="train-resume")
    c["resume_steps"] = gr.Number(0, label="Resume until step (0 = the run's own total; more trains a run further)",
                                  precision=0, elem_id="train-resume-steps")  # fmt: skip
    c["message"] = gr.Markdown(elem_id="train-message")
    return c


def _plot(title: str, y_title: str, color: str, elem_id: str, legend: list[str]) -> gr.LinePlot:
    return gr.LinePlot(x="step", y="value", color=color, title=title, x_title="step", y_title=y_title, height=260,
                       color_map=COLOURS, colors_in_legend=legend, elem_id=elem_id)  # fmt: skip


def _live_view(runs: list[tuple[str, str]]) -> dict[str, Any]:
    """The run being watched, its progress, curves, preview and output, and what to do with its model."""
    gr.Markdown("#### Live view")
    c: dict[str, Any] = {}
    with gr.Row():
        c["run"] = gr.Dropdown(runs, value="", label="Run", scale=1, allow_custom_value=True, elem_id="train-run")
        c["status"] = gr.Markdown(elem_id="train-status")
    c["progress"] = gr.HTML(elem_id="train-progress")
    with gr.Row():
        c["loss_plot"] = _plot("Training loss", "loss", "term", "train-loss", [])
        c["psnr_plot"] = _plot("Validation PSNR", "dB", "series", "train-psnr", list(METRIC_SERIES))
        c["ssim_plot"] = _plot("Validation SSIM", "SSIM", "series", "train-ssim", list(METRIC_SERIES))
    with gr.Row():
        c["preview"] = gr.ImageSlider(label="Latest validation image: bicubic (left) | model (right)", type="pil",
                                      format="png", interactive=False, elem_id="train-preview")  # fmt: skip
        c["log"] = gr.Textbox(label="Trainer output (last lines)", lines=12, max_lines=12, interactive=False,
                              elem_id="train-log")  # fmt: skip
    with gr.Row():
        c["use"] = gr.Button("Use in Upscale", elem_id="train-use")
        c["download"] = gr.Button("Download model", elem_id="train-download-button")
    c["model_file"] = gr.File(label="Model folder (zip)", interactive=False, height=100, elem_id="train-download")
    return c


def layout(training: Training, runs: list[tuple[str, str]]) -> TrainView:
    """Lay out the tab inside the Blocks being built."""
    with gr.Tab("Train", id="train"):
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column():
                data = _data_column(training.root)
            with gr.Column():
                recipe = _recipe_column(training)
        live = _live_view(runs)
        hidden = {"timer": gr.Timer(POLL_S), "seen": gr.State(None), "api_status": gr.Button(visible=False),
                  "status_json": gr.JSON(visible=False), "method_name": gr.Textbox(visible=False),
                  "run_id": gr.Textbox(visible=False)}  # fmt: skip
    parts = {**data, **recipe, **live, **hidden}
    return TrainView(**{f.name: parts[f.name] for f in fields(TrainView)})


def tab_builder(root: Path) -> Callable[[AppConfig], None]:
    """The ``build_tab(config)`` of the Train tab for training root ``root``."""

    def build_tab(config: AppConfig) -> None:
        from .events import wire

        training = Training(config, root)
        wire(layout(training, run_choices(training)), training)

    return build_tab


def run_choices(training: Training) -> list[tuple[str, str]]:
    """The run selector's choices: the newest run (the default), then every run by id."""
    from .runs import list_runs

    return [("Newest run", "")] + [(run, run) for run in list_runs(training.root)]
