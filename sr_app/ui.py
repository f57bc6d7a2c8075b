"""The Gradio Blocks of SR Studio: ``build_demo(config)`` returns the app without launching anything.

Heavy events (upscale, compare, live re-runs) share one queue concurrency id with a small limit so that a small
server serves users in turn. Input images reach the handlers untouched (``preprocess=False``: Gradio's own image
decoding would crash on non-images before any clear message could be given), so sr_core's loader applies EXIF,
modes and pixel limits in one place. Every output image is PNG: the slider's default WebP would smear exactly the
detail being judged.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from sr_core.errors import SRError
from sr_core.registry import MethodInfo

from . import handlers
from .handlers import AppConfig

logger = logging.getLogger(__name__)

HEAVY_QUEUE = "sr_heavy"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXTRA_TAB_MODULES: tuple[str, ...] = ("sr_app.rate",)
"""Modules that may add a tab: each one found must define ``build_tab(config: AppConfig) -> None``."""

_T = TypeVar("_T")

TabBuilder = Callable[[AppConfig], None]
"""Adds one tab: called inside the app's ``gr.Tabs()``, it opens its own ``with gr.Tab(...)``."""

INTRO = """# SR Studio: image super-resolution
Upload a photo, pick a method and a scale, and drag the slider to compare the enlarged input (nearest neighbour,
left) with the result (right). Add the high-resolution original as a reference, or switch on **Test on my
image**, to get PSNR and SSIM."""

API_HELP = """### Use it from Python
```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")  # or the Space id, "USER/NAME"
before_and_after, result_png, psnr, ssim, summary = client.predict(
    image=handle_file("photo.png"), method="bicubic", scale=4, api_name="/upscale"
)
# optional: reference=handle_file("original.png"), test_on_my_image=True, tile_size=256,
#           test_degradation="jpeg75", outscale=3.5 (any factor 1-8; replaces scale),
#           self_ensemble=True (models: the 8 flips and rotations averaged, about 8x the time)
upscaled = client.predict(image=handle_file("photo.png"), method="srresnet", outscale=3.5,
                          api_name="/upscale_image")  # just the upscaled PNG (also the MCP tool)
comparison, results = client.predict(
    image=handle_file("photo.png"), scale=4, test_on_my_image=True, api_name="/compare"
)
```
The test degradation (`bicubic`, `jpeg50`, `jpeg75`, `noise10+jpeg75`, `blur+jpeg60`) is applied to the shrunk
image in test mode; it shows why the real-world models (for photos) exist. With `outscale` a model runs at the
nearest scale it supports at or above it and Lanczos gives the exact size; classical methods resize straight to it.
`result_png` is the full-resolution result; `before_and_after` holds the pair; `psnr`/`ssim` are `None` without a
reference. PSNR/SSIM are measured on the Y channel (BT.601) with `scale` border pixels cropped (an output scale
rounded up)."""


def numeric_in_api(radio: gr.Radio, description: str) -> gr.Radio:
    """Make the API describe a Radio of numbers as a number: Gradio's Radio always advertises strings.

    (Set on the instance: a Component subclass would make Gradio write a ``.pyi`` file next to this module.)
    """
    radio.api_info_as_input = lambda: {"type": "number", "description": description}  # type: ignore[method-assign]
    return radio


def gpu(duration: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``spaces.GPU(duration=...)`` when the ``spaces`` package (ZeroGPU) is importable, else no change."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def load_extra_tabs(modules: Sequence[str] = EXTRA_TAB_MODULES) -> list[TabBuilder]:
    """The ``build_tab`` functions of the optional tab modules that are present."""
    builders = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            builders.append(importlib.import_module(name).build_tab)
    return builders


def _file(payload: Any) -> tuple[str | None, str | None]:
    """(server path, original file name) of an image payload received without preprocessing."""
    if payload is None:
        return None, None
    if isinstance(payload, str):
        return payload, None
    if isinstance(payload, dict):
        path = payload.get("path")
        if not path:
            raise gr.Error("The image did not arrive as a file; please upload it again.", print_exception=False)
        return path, payload.get("orig_name")
    raise gr.Error("The image did not arrive as a file; please upload it again.", print_exception=False)


def _user_error(exc: BaseException) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, (SRError, ValueError)):
        message = str(exc).strip() or type(exc).__name__
        return gr.Error(message if message.endswith(".") else message + ".", print_exception=False)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return gr.Error(
            "Ran out of memory. Try a smaller image, a smaller scale or a smaller tile size.", print_exception=False
        )
    logger.exception("Unexpected failure while handling a request")
    return gr.Error(
        f"Something went wrong ({type(exc).__name__}); the details are in the server log.", print_exception=False
    )


def _progress_sink(progress: gr.Progress) -> handlers.Progress:
    def sink(fraction: float, desc: str) -> None:
        progress(fraction, desc=desc)

    return sink


def _fmt(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _key(
    image: str | None,
    method: str,
    scale: object,
    test: bool,
    tile: object,
    degradation: object,
    outscale: object,
    ensemble: object = False,
) -> list[Any]:
    return [image, method, str(scale), bool(test), str(tile or 0), str(degradation or "bicubic"), str(outscale or ""),
            bool(ensemble)]  # fmt: skip


def _runnable(info: Any, scale: object, outscale: object) -> bool:
    """Whether the live re-run may start: a known method and a scale (or output scale) it can reach."""
    if info is None:
        return False
    try:
        if handlers.check_outscale_input(outscale) is not None:
            return True
        handlers.check_scale(info, scale)
    except (TypeError, ValueError, SRError):
        return False
    return True


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Raise any failure inside as the ``gr.Error`` the page shows (see :func:`_user_error`)."""
    try:
        yield
    except Exception as exc:
        raise _user_error(exc) from exc


def _run_request(
    handler: Callable[..., _T],
    image: Any,
    *args: Any,
    config: AppConfig,
    progress: gr.Progress,
    reference: Any = None,
    test_on_my_image: object = False,
    **options: Any,
) -> _T:
    """``handler(image path, *args, ...)`` for an upload (and reference) received as payloads; failures as gr.Error.

    ``options`` are passed on as they are (tile_size, test_degradation, outscale, self_ensemble)."""
    with _reported():
        image_path, image_name = _file(image)
        reference_path, reference_name = _file(reference)
        return handler(
            image_path, *args, reference=reference_path, test_on_my_image=bool(test_on_my_image), config=config,
            progress=_progress_sink(progress), image_name=image_name, reference_name=reference_name, **options,
        )  # fmt: skip


@dataclass(frozen=True)
class _Menu:
    """The methods on offer when the page was built, looked up by name, and the one selected at first; methods
    added while the app runs (the Training tab's "Use in Upscale") are found through ``config``."""

    offered: list[MethodInfo]
    by_name: dict[str, MethodInfo]
    default: str
    config: AppConfig

    @classmethod
    def of(cls, config: AppConfig) -> _Menu:
        """The menu of ``config``'s methods (bicubic selected at first when offered)."""
        offered = handlers.methods(config)
        by_name = {m.name: m for m in offered}
        return cls(offered, by_name, "bicubic" if "bicubic" in by_name else offered[0].name, config)

    def info(self, name: object) -> MethodInfo | None:
        """The offered method called ``name``, including one added since the page was built; None if unknown."""
        if not isinstance(name, str):
            return None
        return self.by_name.get(name) or next((m for m in handlers.methods(self.config) if m.name == name), None)

    def scale_choices(self, name: str) -> list[tuple[str, int]]:
        """(label, scale) pairs of method ``name`` (every offered scale for an unknown name)."""
        info = self.info(name)
        scales = info.scales if info else sorted({s for m in self.offered for s in m.scales})
        return [(f"x{s}", s) for s in scales]


# ----------------------------------------------------------------------------------------------- event handlers


def _upscale_state(out: handlers.UpscaleOutcome, key: list[Any], reference_path: str | None) -> dict[str, Any]:
    """What a live re-run needs to know about the last upscale (to skip it, or only rescore it)."""
    return {
        "key": key,
        "reference": reference_path,
        "png": str(out.png_path),
        "scale": out.scale,
        "head": out.summary.split("  \n")[0],
        "notes": out.notes,
    }


def _upscale_fn(config: AppConfig, menu: _Menu) -> Callable[..., tuple[Any, ...]]:
    """The /upscale event: (before/after pair, PNG, PSNR, SSIM, summary, state for live re-runs)."""

    def upscale(
        image: Any,
        method: str = menu.default,
        scale: Any = 4,
        reference: Any = None,
        test_on_my_image: bool = False,
        tile_size: Any = 0,
        test_degradation: Any = "bicubic",
        outscale: Any = None,
        self_ensemble: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        out = _run_request(
            handlers.upscale_image, image, method, scale, config=config, progress=progress, reference=reference,
            test_on_my_image=test_on_my_image, tile_size=tile_size, test_degradation=test_degradation,
            outscale=outscale, self_ensemble=self_ensemble,
        )  # fmt: skip
        key = _key(_file(image)[0], method, scale, test_on_my_image, tile_size, test_degradation, outscale,
                   self_ensemble)  # fmt: skip
        state = _upscale_state(out, key, _file(reference)[0])
        pair = (out.before, str(out.png_path))
        return pair, str(out.png_path), _fmt(out.metrics.psnr, 3), _fmt(out.metrics.ssim, 4), out.summary, state

    return upscale


def _live_fn(config: AppConfig, menu: _Menu, upscale: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """The live re-run: upscale again when an input changed, only rescore when just the reference did."""

    def live_update(
        image: Any,
        method: str,
        scale: Any,
        reference: Any,
        test_on_my_image: bool,
        tile_size: Any,
        test_degradation: Any,
        outscale: Any,
        self_ensemble: bool,
        last: dict | None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        skip = tuple(gr.skip() for _ in range(6))
        if image is None or not last or not _runnable(menu.info(method), scale, outscale):
            return skip
        image_path, _ = _file(image)
        reference_path, reference_name = _file(reference)
        key = _key(image_path, method, scale, test_on_my_image, tile_size, test_degradation, outscale, self_ensemble)
        if last["key"] != key or not Path(last["png"]).is_file():
            return upscale(
                image, method, scale, reference, test_on_my_image, tile_size, test_degradation, outscale,
                self_ensemble, progress,
            )  # fmt: skip
        if last["reference"] == reference_path or test_on_my_image:
            return skip
        with _reported():
            metrics = handlers.rescore(
                last["png"], reference_path, last["scale"], config=config, reference_name=reference_name
            )
        summary = last["head"] + "".join(f"  \n{n}" for n in [*last["notes"], *metrics.notes])
        state = {**last, "reference": reference_path}
        return (gr.skip(), gr.skip(), _fmt(metrics.psnr, 3), _fmt(metrics.ssim, 4), summary, state)

    return live_update


def _compare_fn(config: AppConfig) -> Callable[..., tuple[Any, ...]]:
    """The /compare event: (table of every method that supports the scale, gallery of their results)."""

    def compare(
        image: Any,
        scale: Any = 4,
        reference: Any = None,
        test_on_my_image: bool = False,
        tile_size: Any = 0,
        test_degradation: Any = "bicubic",
        outscale: Any = None,
        self_ensemble: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        out = _run_request(
            handlers.compare_methods, image, scale, config=config, progress=progress, reference=reference,
            test_on_my_image=test_on_my_image, tile_size=tile_size, test_degradation=test_degradation,
            outscale=outscale, self_ensemble=self_ensemble,
        )  # fmt: skip
        for note in out.notes:
            gr.Info(note)
        return out.rows, out.gallery

    return compare


def _single_image_fn(config: AppConfig, menu: _Menu) -> Callable[..., str]:
    """The /upscale_image event and MCP tool: just the upscaled PNG (Gradio reads its docstring for the API)."""

    def upscale_image(
        image: Any,
        method: str = menu.default,
        scale: float = 4,
        outscale: float | None = None,
        tile_size: int = 0,
        self_ensemble: bool = False,
        progress: gr.Progress = gr.Progress(),
    ) -> str:
        """Upscale an image with a super-resolution model or a classical method and return the upscaled PNG.

        Args:
            image: the image to upscale.
            method: a learned model ("srresnet", "srgan"; when bundled) or a classical method such as "bicubic".
            scale: a scale the method supports natively (the models: 2 or 4; classical methods: 2 to 8).
            outscale: optional, any factor from 1 to 8 such as 3.5, used instead of scale (model, then Lanczos).
            tile_size: tile size in input pixels for models (0 = automatic).
            self_ensemble: models only: average over the 8 flips and rotations (about 8x the time, a little sharper).
        """  # one line per argument: Gradio's docstring parser reads the first line only
        out = _run_request(
            handlers.upscale_image, image, method, scale, config=config, progress=progress, tile_size=tile_size,
            outscale=outscale, self_ensemble=self_ensemble,
        )  # fmt: skip
        return str(out.png_path)

    return upscale_image


def _method_fn(menu: _Menu) -> Callable[[str, Any], tuple[Any, Any]]:
    """On a new method: its scales (keeping the current one where possible) and its description."""

    def on_method(name: str, scale: Any) -> tuple[Any, Any]:
        info = menu.info(name)
        if info is None:
            return gr.skip(), gr.skip()
        value = handlers.pick_scale(info.scales, scale)
        return gr.Radio(choices=menu.scale_choices(name), value=value), handlers.method_markdown(info)

    return on_method


# ------------------------------------------------------------------------------------------------------- layout


@dataclass
class _Inputs:
    """The left column of the Upscale tab."""

    image: gr.Image
    method: gr.Dropdown
    method_help: gr.Markdown
    scale: gr.Radio
    outscale: gr.Number
    test_mode: gr.Checkbox
    degradation: gr.Dropdown
    reference: gr.Image
    tile: gr.Slider
    ensemble: gr.Checkbox
    run_button: gr.Button
    compare_button: gr.Button

    @property
    def upscale(self) -> list[Any]:
        """The inputs of /upscale and of the live re-run, in their API order."""
        return [self.image, self.method, self.scale, self.reference, self.test_mode, self.tile, self.degradation,
                self.outscale, self.ensemble]  # fmt: skip


@dataclass
class _Outputs:
    """The right column of the Upscale tab (the hidden single-image output included)."""

    slider: gr.ImageSlider
    psnr: gr.Number
    ssim: gr.Number
    summary: gr.Markdown
    download: gr.File
    mcp_trigger: gr.Button
    upscaled: gr.Image


@dataclass
class _Page:
    """Every component the events of the Upscale tab read or write."""

    last: gr.State
    inputs: _Inputs
    outputs: _Outputs
    examples: gr.Examples | None
    table: gr.Dataframe
    gallery: gr.Gallery

    @property
    def upscale_outputs(self) -> list[Any]:
        """The outputs of /upscale and of the live re-run."""
        out = self.outputs
        return [out.slider, out.download, out.psnr, out.ssim, out.summary, self.last]


def _image_input(label: str, elem_id: str) -> gr.Image:
    """An upload that reaches the handlers untouched (any mode, no EXIF rotation) for sr_core's loader."""
    return gr.Image(
        label=label,
        type="filepath",
        image_mode=None,
        sources=["upload", "clipboard"],
        format="png",
        elem_id=elem_id,
    )


def _method_inputs(menu: _Menu) -> tuple[gr.Dropdown, gr.Markdown, gr.Radio]:
    """The method selector, its description and the scale choice."""
    method = gr.Dropdown(
        choices=[(m.label, m.name) for m in menu.offered],
        value=menu.default,
        label="Method",
        elem_id="method",
    )
    method_help = gr.Markdown(handlers.method_markdown(menu.by_name[menu.default]), elem_id="method-help")
    scale = numeric_in_api(
        gr.Radio(
            choices=menu.scale_choices(menu.default),
            value=handlers.pick_scale(menu.by_name[menu.default].scales, 4),
            label="Scale",
            elem_id="scale",
        ),
        "a scale the method supports natively, e.g. 4 (the models: 2 or 4; classical: 2-8)",
    )
    return method, method_help, scale


def _outscale_input() -> gr.Number:
    """The optional output scale (any factor from 1 to 8) that replaces the scale."""
    return gr.Number(
        value=None,
        minimum=1,
        maximum=8,
        step=0.5,
        label="Output scale (optional)",
        placeholder="e.g. 3.5",
        elem_id="outscale",
        info="Any factor from 1 to 8, used instead of Scale: a model runs at the nearest scale "
        "it supports at or above it, then Lanczos resizes to the exact size; classical methods "
        "resize straight to it.",
    )


def _test_inputs() -> tuple[gr.Checkbox, gr.Dropdown]:
    """'Test on my image' and the degradation applied to the shrunk image in that mode."""
    test_mode = gr.Checkbox(
        label="Test on my image",
        elem_id="test-on-my-image",
        info="Treat the upload as the ground truth: shrink it by the scale (bicubic), upscale "
        "it back with the method, and measure PSNR/SSIM against the original.",
    )
    degradation = gr.Dropdown(
        choices=handlers.degradation_choices(),
        value="bicubic",
        label="Test degradation",
        elem_id="test-degradation",
        info="With 'Test on my image': what happens to the shrunk image before upscaling. "
        "Photos from phones and the web are JPEGs, often noisy: the real-world models are "
        "trained for that, the others only for clean bicubic.",
    )
    return test_mode, degradation


def _tile_slider() -> gr.Slider:
    """The models' tile size (0 = automatic)."""
    return gr.Slider(
        0,
        1024,
        value=0,
        step=32,
        label="Tile size (input pixels)",
        info="Models run in tiles of this size to bound memory; 0 = automatic.",
        elem_id="tile-size",
    )


def _ensemble_checkbox() -> gr.Checkbox:
    """Self-ensemble for models (EDSR's "+"): off by default, since it costs about 8x the time."""
    return gr.Checkbox(
        value=False,
        label="Self-ensemble (models)",
        info="Average the model over the 8 flips and rotations of the image: about 8x the time, +0.05 dB PSNR.",
        elem_id="self-ensemble",
    )


def _input_column(menu: _Menu) -> _Inputs:
    """Lay out the upload, method, scale, test options, reference, advanced options and the two buttons."""
    image = _image_input("Image", "input-image")
    method, method_help, scale = _method_inputs(menu)
    outscale = _outscale_input()
    test_mode, degradation = _test_inputs()
    reference = _image_input("Reference (high-resolution original, optional)", "reference-image")
    with gr.Accordion("Advanced", open=False):
        tile = _tile_slider()
        ensemble = _ensemble_checkbox()
    with gr.Row():
        run_button = gr.Button("Upscale", variant="primary", elem_id="run")
        compare_button = gr.Button("Compare all methods", elem_id="compare")
    return _Inputs(
        image, method, method_help, scale, outscale, test_mode, degradation, reference, tile, ensemble, run_button,
        compare_button,
    )  # fmt: skip


def _metric_number(label: str, info: str, elem_id: str) -> gr.Number:
    """A read-only PSNR or SSIM box (empty without a reference)."""
    return gr.Number(label=label, info=info, placeholder="needs a reference", interactive=False, elem_id=elem_id)


def _output_column() -> _Outputs:
    """Lay out the before/after slider, the metrics, the summary, the download and the hidden single-image output."""
    slider = gr.ImageSlider(label="Before and after", format="png", type="pil", interactive=False, elem_id="slider")
    with gr.Row():
        psnr = _metric_number("PSNR", "dB, Y channel", "psnr")
        ssim = _metric_number("SSIM", "Y channel", "ssim")
    summary = gr.Markdown(label="Summary", elem_id="summary")
    download = gr.File(label="Result PNG", interactive=False, elem_id="download")
    # The single-image endpoint behind /upscale_image and the MCP tool (MCP clients get an image only from a single
    # image output, not from the slider); never shown.
    mcp_trigger = gr.Button(visible=False, elem_id="mcp-trigger")
    upscaled = gr.Image(label="Upscaled image", type="filepath", format="png", visible=False, interactive=False)
    return _Outputs(slider, psnr, ssim, summary, download, mcp_trigger, upscaled)


def _compare_panel() -> tuple[gr.Dataframe, gr.Gallery]:
    """Lay out the compare-all table and gallery."""
    with gr.Accordion("Compare all methods", open=True):
        table = gr.Dataframe(
            label="Comparison",
            headers=handlers.HEADERS,
            datatype=["str", "number", "number", "number"],
            interactive=False,
            elem_id="compare-table",
        )
        gallery = gr.Gallery(label="Results", format="png", columns=3, elem_id="compare-gallery")
    return table, gallery


def _upscale_tab(menu: _Menu, last: gr.State) -> _Page:
    """Lay out the Upscale tab: inputs left, results right, examples, then compare-all."""
    with gr.Tab("Upscale", id="upscale"):
        with gr.Row():
            with gr.Column(scale=2):
                inputs = _input_column(menu)
            with gr.Column(scale=3):
                outputs = _output_column()
        examples = _examples(inputs.image, inputs.test_mode)
        table, gallery = _compare_panel()
    return _Page(last, inputs, outputs, examples, table, gallery)


def _about_tab(menu: _Menu) -> None:
    """Lay out the Methods & API tab."""
    with gr.Tab("Methods & API", id="about"):
        gr.Markdown("### Methods\n" + "\n".join(f"- {handlers.method_markdown(m)}" for m in menu.offered))
        gr.Markdown(API_HELP)


# ------------------------------------------------------------------------------------------------------- wiring


def _wire_requests(page: _Page, config: AppConfig, menu: _Menu, upscale: Callable[..., Any], heavy: dict) -> None:
    """Connect the Upscale and Compare buttons and the hidden single-image trigger (the three public endpoints)."""
    inputs = page.inputs
    inputs.run_button.click(
        upscale,
        inputs.upscale,
        page.upscale_outputs,
        api_name="upscale",
        preprocess=False,
        api_description="Upscale an image; returns (before/after pair, full-resolution PNG, PSNR, SSIM, summary).",
        **heavy,
    )
    page.outputs.mcp_trigger.click(
        gpu(120)(_single_image_fn(config, menu)),
        [inputs.image, inputs.method, inputs.scale, inputs.outscale, inputs.tile, inputs.ensemble],
        [page.outputs.upscaled],
        api_name="upscale_image",
        preprocess=False,
        **heavy,
    )
    inputs.compare_button.click(
        gpu(300)(_compare_fn(config)),
        [inputs.image, inputs.scale, inputs.reference, inputs.test_mode, inputs.tile, inputs.degradation,
         inputs.outscale, inputs.ensemble],
        [page.table, page.gallery],
        api_name="compare",
        preprocess=False,
        api_description="Run every method that supports the scale; returns a table of "
        "(method, PSNR, SSIM, seconds) and the results.",
        **heavy,
    )  # fmt: skip


def _wire_live(
    page: _Page, live: Callable[..., Any], on_method: Callable[..., Any], upscale: Callable[..., Any], heavy: dict
) -> None:
    """Connect the private events: scales follow the method, changed inputs re-run, examples run once loaded."""
    inputs = page.inputs
    inputs.method.change(
        on_method, [inputs.method, inputs.scale], [inputs.scale, inputs.method_help], queue=False,
        api_visibility="private",
    )  # fmt: skip
    gr.on(
        [inputs.method.change, inputs.scale.change, inputs.reference.change, inputs.test_mode.change,
         inputs.degradation.change, inputs.outscale.submit, inputs.ensemble.change],
        live,
        [*inputs.upscale, page.last],
        page.upscale_outputs,
        preprocess=False,
        trigger_mode="always_last",
        api_visibility="private",
        **heavy,
    )  # fmt: skip
    if page.examples is not None:
        page.examples.load_input_event.then(
            upscale, inputs.upscale, page.upscale_outputs, preprocess=False, api_visibility="private", **heavy
        )  # fmt: skip


def build_demo(config: AppConfig | None = None, *, extra_tabs: Sequence[TabBuilder] = ()) -> gr.Blocks:
    """Build the SR Studio Blocks (not launched). ``extra_tabs`` add tabs after the built-in ones."""
    config = config or AppConfig()
    menu = _Menu.of(config)
    with gr.Blocks(title="SR Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        last = gr.State(None)
        with gr.Tabs():
            page = _upscale_tab(menu, last)
            _about_tab(menu)
            for build_tab in extra_tabs:
                build_tab(config)
        heavy = {"concurrency_id": HEAVY_QUEUE, "concurrency_limit": config.concurrency_limit}
        raw_upscale = _upscale_fn(config, menu)
        upscale = gpu(120)(raw_upscale)  # one wrapped function for the button and the examples
        _wire_requests(page, config, menu, upscale, heavy)
        _wire_live(page, gpu(120)(_live_fn(config, menu, raw_upscale)), _method_fn(menu), upscale, heavy)
    demo.queue(max_size=config.queue_size)
    return demo


def example_files(directory: Path = EXAMPLES_DIR) -> list[Path]:
    """The bundled sample photos, sorted by name."""
    return sorted(p for p in directory.glob("*.png") if p.is_file()) if directory.is_dir() else []


def _examples(image: gr.Image, test_mode: gr.Checkbox) -> gr.Examples | None:
    files = example_files()
    if not files:
        return None
    return gr.Examples(
        examples=[[str(p), True] for p in files],
        inputs=[image, test_mode],
        cache_examples=False,
        label="Examples (public domain / CC0; used as ground truth, so PSNR/SSIM show)",
        example_labels=[p.stem.replace("_", " ") for p in files],
    )
