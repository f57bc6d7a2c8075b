"""``python app.py``: parse the options, build the demo and serve it until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .handlers import DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_OUTPUT_PIXELS, DEFAULT_MAX_PIXELS, AppConfig

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MCP_PATH = "gradio_api/mcp/"
MCP_MISSING = 'error: --mcp needs Gradio\'s MCP extra, which is not installed: pip install "gradio[mcp]"'


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The launcher's options; host and port default to GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set."""
    parser = argparse.ArgumentParser(prog="app.py", description="SR Studio: image super-resolution demo (Gradio).")
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME") or DEFAULT_HOST,
        help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port",
        type=_positive_int,
        default=int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT),
        help="port to listen on (default: %(default)s)",
    )
    parser.add_argument("--share", action="store_true", help="also ask Gradio for a public share link")
    parser.add_argument(
        "--mcp",
        action="store_true",
        help=f"also serve the upscaler as MCP tools at /{MCP_PATH} (needs the extra: pip install \"gradio[mcp]\")",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where models run (default: auto = CUDA when available)",
    )
    parser.add_argument(
        "--weights-dir", default=None, help="folder with manifest.json and model weights (default: sr_core/weights)"
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="USER/NAME",
        help="also offer this model: a Hugging Face Hub id (fetched once into the Hugging Face cache, then used "
        "offline) or a save_pretrained() folder; repeatable",
    )
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="largest upload accepted, in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--max-output-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_OUTPUT_PIXELS,
        help="largest result produced, in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--max-file-size",
        default=DEFAULT_MAX_FILE_SIZE,
        help="largest upload accepted, e.g. 20mb (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=1,
        help="upscale/compare requests run at once; others wait in the queue (default: 1)",
    )
    parser.add_argument(
        "--queue-size",
        type=_positive_int,
        default=32,
        help="requests that may wait in the queue (default: %(default)s)",
    )
    parser.add_argument(
        "--ratings-db",
        default=None,
        help="SQLite file for the Rate tab's scores (default: $SR_STUDIO_RATINGS_DB or ./ratings.db)",
    )
    parser.add_argument(
        "--rating-images",
        default=None,
        help="folder of high-resolution test images for the Rate tab (default: examples/)",
    )
    from .training import default_root, env_enabled

    parser.add_argument(
        "--enable-training",
        action="store_true",
        default=env_enabled(),
        help="add the Train tab, which runs the trainer on this server (default: off, or on when "
        "SR_STUDIO_ENABLE_TRAINING=1); keep it off for a public demo",
    )
    parser.add_argument(
        "--training-root",
        default=default_root(),
        help="folder of the Train tab's runs; no data folder outside it is accepted "
        "(default: $SR_STUDIO_TRAINING_ROOT or %(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> AppConfig:
    """The AppConfig the parsed options describe."""
    return AppConfig(
        device=args.device,
        weights_dir=args.weights_dir,
        max_pixels=args.max_pixels,
        max_output_pixels=args.max_output_pixels,
        max_file_size=args.max_file_size,
        concurrency_limit=args.concurrency,
        queue_size=args.queue_size,
        ratings_db=args.ratings_db,
        rating_images=args.rating_images,
        models=tuple(dict.fromkeys(args.model)),
    )


def model_problem(models: Sequence[str], weights_dir: str | None) -> str | None:
    """Fetch (or find in the cache) each ``--model`` once; the first one that cannot be offered, in one sentence."""
    from sr_core.errors import SRError
    from sr_core.hub import is_hub_id
    from sr_core.models import CONFIG_NAME
    from sr_core.registry import get_method

    for model in models:
        if not (is_hub_id(model) or (Path(model) / CONFIG_NAME).is_file()):
            return f"--model {model!r} is neither a Hugging Face Hub id user/name nor a save_pretrained() folder"
        try:
            get_method(model, weights_dir)
        except SRError as exc:
            return str(exc)
    return None


def mcp_available() -> bool:
    """Whether Gradio's MCP server can start here (the ``mcp`` package of ``gradio[mcp]`` imports)."""
    try:
        import mcp.server  # noqa: F401
    except Exception:  # not installed, or broken by an incompatible pydantic
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.mcp and not mcp_available():
        print(MCP_MISSING, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("sr_app", "sr_core"):
        logging.getLogger(name).setLevel(logging.INFO)
    import sr_core

    try:
        sr_core.resolve_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from sr_core.cli import quiet_hub_logging
    from sr_core.devices import keep_freed_cpu_memory

    quiet_hub_logging()
    keep_freed_cpu_memory()
    from .training import training_problem, training_tabs

    problem = model_problem(args.model, args.weights_dir) or training_problem(args.enable_training, args.training_root)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .ui import build_demo, load_extra_tabs

    tabs = [*load_extra_tabs(), *training_tabs(args.enable_training, args.training_root)]
    demo = build_demo(config_from_args(args), extra_tabs=tabs)
    chatter = io.StringIO()  # Gradio prints a multi-line notice when no share link can be made; we say it in one.
    try:
        with contextlib.redirect_stdout(chatter):
            _, local_url, share_url = demo.launch(
                server_name=args.host,
                server_port=args.port,
                share=args.share,
                max_file_size=args.max_file_size,
                prevent_thread_lock=True,
                quiet=True,
                footer_links=["api", "gradio"],
                mcp_server=args.mcp,
            )
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        logger.debug("Gradio said during launch: %s", chatter.getvalue())
    print(f"SR Studio is running at {local_url}  (Ctrl+C to stop)", flush=True)
    if args.mcp:
        if not getattr(demo, "mcp_server", False):
            print(f"error: the MCP server did not start: {getattr(demo, 'mcp_error', None)}", file=sys.stderr)
            demo.close()
            return 1
        print(f"MCP server (streamable HTTP): {local_url}{MCP_PATH}  (SSE: {local_url}{MCP_PATH}sse)", flush=True)
    if args.share:
        if share_url:
            print(f"Public share link: {share_url}", flush=True)
        else:
            print(f"No share link could be created (offline?); still serving locally at {local_url}", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
