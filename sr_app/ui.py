"""The Gradio Blocks of SR Studio: ``build_demo(config)`` returns the app without launching anything.

Heavy events (upscale, compare, live re-runs) share one queue concurrency id with a small limit so that a small
server serves users in turn. Input images reach the handlers untouched (``preprocess=False``: Gradio's own image
decoding would crash on non-images before any clear message could be given), so sr_core's loader applies EXIF,
modes and pixel limits in one place. Every output image is PNG: the slider's default WebP would smear exactly the
detail being judged.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from sr_core.errors import SRError

from . import handlers
from .handlers import AppConfig

logger = logging.getLogger(__name__)

HEAVY_QUEUE = "sr_heavy"
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXTRA_TAB_MODULES: tuple[str, ...] = ("sr_app.rate",)
"""Modules that may add a tab: each one found must define ``build_tab(config: AppConfig) -> None``."""

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
#           test_degradation="jpeg75", outscale=3.5 (any factor 1-8; replaces scale)
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
    image: str | None, method: str, scale: object, test: bool, tile: object, degradation: object, outscale: object
) -> list[Any]:
    return [image, method, str(scale), bool(test), str(tile or 0), str(degradation or "bicubic"), str(outscale or "")]


def _runnable(info: Any, scale: object, outscale: object) -> bool:
    """Whether the live re-run may start: a known method and a scale (or output scale) it can reach."""
    if info is None:
        return False
    try:
        if handlers.check_outscale_input(outscale) is not None:
            return True
        return int(scale) in info.scales  # type: ignore[call-overload]
    except (TypeError, ValueError, SRError):
        return False


def build_demo(config: AppConfig | None = None, *, extra_tabs: Sequence[TabBuilder] = ()) -> gr.Blocks:
    """Build the SR Studio Blocks (not launched). ``extra_tabs`` add tabs after the built-in ones."""
    config = config or AppConfig()
    offered = handlers.methods(config)
    by_name = {m.name: m for m in offered}
    default = "bicubic" if "bicubic" in by_name else offered[0].name
    all_scales = sorted({s for m in offered for s in m.scales})

    def scale_choices(name: str) -> list[tuple[str, int]]:
        info = by_name.get(name)
        return [(f"x{s}", s) for s in (info.scales if info else all_scales)]

    def upscale(
        image: Any,
        method: str = default,
        scale: Any = 4,
        reference: Any = None,
        test_on_my_image: bool = False,
        tile_size: Any = 0,
        test_degradation: Any = "bicubic",
        outscale: Any = None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        try:
            image_path, image_name = _file(image)
            reference_path, reference_name = _file(reference)
            out = handlers.upscale_image(
                image_path,
                method,
                scale,
                reference=reference_path,
                test_on_my_image=bool(test_on_my_image),
                tile_size=tile_size,
                config=config,
                progress=_progress_sink(progress),
                image_name=image_name,
                reference_name=reference_name,
                test_degradation=test_degradation,
                outscale=outscale,
            )
        except Exception as exc:
            raise _user_error(exc) from exc
        state = {
            "key": _key(image_path, method, scale, test_on_my_image, tile_size, test_degradation, outscale),
            "reference": reference_path,
            "png": str(out.png_path),
            "scale": out.scale,
            "head": out.summary.split("  \n")[0],
            "notes": out.notes,
        }
        return (
            (out.before, str(out.png_path)),
            str(out.png_path),
            _fmt(out.metrics.psnr, 3),
            _fmt(out.metrics.ssim, 4),
            out.summary,
            state,
        )

    def live_update(
        image: Any,
        method: str,
        scale: Any,
        reference: Any,
        test_on_my_image: bool,
        tile_size: Any,
        test_degradation: Any,
        outscale: Any,
        last: dict | None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        skip = tuple(gr.skip() for _ in range(6))
        if image is None or not last or not _runnable(by_name.get(method), scale, outscale):
            return skip
        image_path, _ = _file(image)
        reference_path, reference_name = _file(reference)
        key = _key(image_path, method, scale, test_on_my_image, tile_size, test_degradation, outscale)
        if last["key"] != key or not Path(last["png"]).is_file():
            return upscale(
                image, method, scale, reference, test_on_my_image, tile_size, test_degradation, outscale, progress
            )
        if last["reference"] == reference_path or test_on_my_image:
            return skip
        try:
            metrics = handlers.rescore(
                last["png"], reference_path, last["scale"], config=config, reference_name=reference_name
            )
        except Exception as exc:
            raise _user_error(exc) from exc
        summary = last["head"] + "".join(f"  \n{n}" for n in [*last["notes"], *metrics.notes])
        state = {**last, "reference": reference_path}
        return (gr.skip(), gr.skip(), _fmt(metrics.psnr, 3), _fmt(metrics.ssim, 4), summary, state)

    def compare(
        image: Any,
        scale: Any = 4,
        reference: Any = None,
        test_on_my_image: bool = False,
        tile_size: Any = 0,
        test_degradation: Any = "bicubic",
        outscale: Any = None,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple[Any, ...]:
        try:
            image_path, image_name = _file(image)
            reference_path, reference_name = _file(reference)
            out = handlers.compare_methods(
                image_path,
                scale,
                reference=reference_path,
                test_on_my_image=bool(test_on_my_image),
                tile_size=tile_size,
                config=config,
                progress=_progress_sink(progress),
                image_name=image_name,
                reference_name=reference_name,
                test_degradation=test_degradation,
                outscale=outscale,
            )
        except Exception as exc:
            raise _user_error(exc) from exc
        for note in out.notes:
            gr.Info(note)
        return out.rows, out.gallery

    def upscale_image(
        image: Any,
        method: str = default,
        scale: float = 4,
        outscale: float | None = None,
        tile_size: int = 0,
        progress: gr.Progress = gr.Progress(),
    ) -> str:
        """Upscale an image with a super-resolution model or a classical method and return the upscaled PNG.

        Args:
            image: the image to upscale.
            method: a learned model ("srresnet", "srgan"; when bundled) or a classical method such as "bicubic".
            scale: a scale the method supports natively (the models: 2 or 4; classical methods: 2 to 8).
            outscale: optional, any factor from 1 to 8 such as 3.5, used instead of scale (model, then Lanczos).
            tile_size: tile size in input pixels for models (0 = automatic).
        """  # one line per argument: Gradio's docstring parser reads the first line only
        try:
            image_path, image_name = _file(image)
            out = handlers.upscale_image(
                image_path,
                method,
                scale,
                tile_size=tile_size,
                config=config,
                progress=_progress_sink(progress),
                image_name=image_name,
                outscale=outscale,
            )
        except Exception as exc:
            raise _user_error(exc) from exc
        return str(out.png_path)

    def on_method(name: str, scale: Any) -> tuple[Any, Any]:
        info = by_name.get(name)
        if info is None:
            return gr.skip(), gr.skip()
        value = handlers.pick_scale(info.scales, scale)
        return gr.Radio(choices=scale_choices(name), value=value), handlers.method_markdown(info)

    with gr.Blocks(title="SR Studio", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(INTRO)
        last = gr.State(None)
        with gr.Tabs():
            with gr.Tab("Upscale", id="upscale"):
                with gr.Row():
                    with gr.Column(scale=2):
                        image = gr.Image(
                            label="Image",
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            format="png",
                            elem_id="input-image",
                        )
                        method = gr.Dropdown(
                            choices=[(m.label, m.name) for m in offered],
                            value=default,
                            label="Method",
                            elem_id="method",
                        )
                        method_help = gr.Markdown(handlers.method_markdown(by_name[default]), elem_id="method-help")
                        scale = numeric_in_api(
                            gr.Radio(
                                choices=scale_choices(default),
                                value=handlers.pick_scale(by_name[default].scales, 4),
                                label="Scale",
                                elem_id="scale",
                            ),
                            "a scale the method supports natively, e.g. 4 (the models: 2 or 4; classical: 2-8)",
                        )
                        outscale = gr.Number(
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
                        reference = gr.Image(
                            label="Reference (high-resolution original, optional)",
                            type="filepath",
                            image_mode=None,
                            sources=["upload", "clipboard"],
                            format="png",
                            elem_id="reference-image",
                        )
                        with gr.Accordion("Advanced", open=False):
                            tile = gr.Slider(
                                0,
                                1024,
                                value=0,
                                step=32,
                                label="Tile size (input pixels)",
                                info="Models run in tiles of this size to bound memory; 0 = automatic.",
                                elem_id="tile-size",
                            )
                        with gr.Row():
                            run_button = gr.Button("Upscale", variant="primary", elem_id="run")
                            compare_button = gr.Button("Compare all methods", elem_id="compare")
                    with gr.Column(scale=3):
                        slider = gr.ImageSlider(
                            label="Before and after",
                            format="png",
                            type="pil",
                            interactive=False,
                            elem_id="slider",
                        )
                        with gr.Row():
                            psnr = gr.Number(
                                label="PSNR",
                                info="dB, Y channel",
                                placeholder="needs a reference",
                                interactive=False,
                                elem_id="psnr",
                            )
                            ssim = gr.Number(
                                label="SSIM",
                                info="Y channel",
                                placeholder="needs a reference",
                                interactive=False,
                                elem_id="ssim",
                            )
                        summary = gr.Markdown(label="Summary", elem_id="summary")
                        download = gr.File(label="Result PNG", interactive=False, elem_id="download")
                        # The single-image endpoint behind /upscale_image and the MCP tool (MCP clients get an
                        # image only from a single image output, not from the slider); never shown.
                        mcp_trigger = gr.Button(visible=False, elem_id="mcp-trigger")
                        upscaled = gr.Image(
                            label="Upscaled image", type="filepath", format="png", visible=False, interactive=False
                        )
                examples = _examples(image, test_mode)
                with gr.Accordion("Compare all methods", open=True):
                    table = gr.Dataframe(
                        label="Comparison",
                        headers=handlers.HEADERS,
                        datatype=["str", "number", "number", "number"],
                        interactive=False,
                        elem_id="compare-table",
                    )
                    gallery = gr.Gallery(label="Results", format="png", columns=3, elem_id="compare-gallery")
            with gr.Tab("Methods & API", id="about"):
                gr.Markdown("### Methods\n" + "\n".join(f"- {handlers.method_markdown(m)}" for m in offered))
                gr.Markdown(API_HELP)
            for build_tab in extra_tabs:
                build_tab(config)

        upscale_inputs = [image, method, scale, reference, test_mode, tile, degradation, outscale]
        upscale_outputs = [slider, download, psnr, ssim, summary, last]
        heavy = {"concurrency_id": HEAVY_QUEUE, "concurrency_limit": config.concurrency_limit}
        run_upscale_gpu = gpu(120)(upscale)
        run_button.click(
            run_upscale_gpu,
            upscale_inputs,
            upscale_outputs,
            api_name="upscale",
            preprocess=False,
            api_description="Upscale an image; returns (before/after pair, full-resolution PNG, PSNR, SSIM, summary).",
            **heavy,
        )
        mcp_trigger.click(
            gpu(120)(upscale_image),
            [image, method, scale, outscale, tile],
            [upscaled],
            api_name="upscale_image",
            preprocess=False,
            **heavy,
        )
        compare_button.click(
            gpu(300)(compare),
            [image, scale, reference, test_mode, tile, degradation, outscale],
            [table, gallery],
            api_name="compare",
            preprocess=False,
            api_description="Run every method that supports the scale; returns a table of "
            "(method, PSNR, SSIM, seconds) and the results.",
            **heavy,
        )
        method.change(on_method, [method, scale], [scale, method_help], queue=False, api_visibility="private")
        gr.on(
            [method.change, scale.change, reference.change, test_mode.change, degradation.change, outscale.submit],
            gpu(120)(live_update),
            [*upscale_inputs, last],
            upscale_outputs,
            preprocess=False,
            trigger_mode="always_last",
            api_visibility="private",
            **heavy,
        )
        if examples is not None:
            examples.load_input_event.then(
                run_upscale_gpu, upscale_inputs, upscale_outputs, preprocess=False, api_visibility="private", **heavy
            )
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
