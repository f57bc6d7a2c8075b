"""``sr-upscale`` (also ``python -m sr_core``): upscale files and folders on one process or many (accelerate launch).

Options follow Real-ESRGAN's inference script where they overlap: ``--outscale`` for any factor from 1 to 8,
``--ext``, ``--suffix``, ``--tile``. Usage errors exit with 2 before any file is read or written; files that
cannot be upscaled are reported by name, skipped, and make the exit code 1.
"""

from __future__ import annotations

import argparse
import string
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .constants import FAST_PNG_COMPRESSION, IMAGE_SUFFIXES
from .devices import CPU_MEMORY_BUDGET, PRECISIONS, keep_freed_cpu_memory
from .errors import SRError
from .hub import is_hub_id
from .outscale import MAX_OUTSCALE, MIN_OUTSCALE, check_outscale, plan_outscale, scale_tag
from .pipeline import MIN_TILE_SIZE

EXTENSIONS = ("auto", "png", "jpg", "webp")
KEPT_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}
"""What ``--ext auto`` keeps; any other input format is written as PNG."""
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
DEFAULT_SCALE = 4
DEFAULT_SUFFIX = "{method}_x{scale}"
DEFAULT_OUTDIR = "results"
DEFAULT_QUALITY = 95
DEFAULT_PNG_COMPRESSION = FAST_PNG_COMPRESSION


def _outscale(text: str) -> float:
    try:
        return check_outscale(text)
    except SRError:
        raise argparse.ArgumentTypeError(
            f"expected a number from {MIN_OUTSCALE:g} to {MAX_OUTSCALE:g} such as 3.5, got {text!r}"
        ) from None


def _bounded_int(text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
    return value


def _quality(text: str) -> int:
    return _bounded_int(text, 1, 100)


def _png_compression(text: str) -> int:
    return _bounded_int(text, 0, 9)


def _megabytes(text: str) -> int:
    return _bounded_int(text, 16, 1 << 20)


def build_parser() -> argparse.ArgumentParser:
    """The command's options (``--help`` describes each)."""
    p = argparse.ArgumentParser(
        prog="sr-upscale",
        description="Upscale images with classical methods, SRResNet or SRGAN. Folders are scanned for images; "
        "under `accelerate launch` the inputs are split across processes.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders")
    p.add_argument(
        "-o", "--output", dest="outdir", metavar="OUTDIR", default=DEFAULT_OUTDIR,
        help="folder for the results, created when missing (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--method", default="bicubic",
        help="method name (see --list-methods), a save_pretrained() folder, or a Hugging Face Hub id user/name "
        "(fetched once into the Hugging Face cache, then used offline)",
    )  # fmt: skip
    factor = p.add_mutually_exclusive_group()
    factor.add_argument(
        "--scale", type=int, default=None, help=f"a scale the method supports natively (default {DEFAULT_SCALE})"
    )
    factor.add_argument(
        "--outscale", type=_outscale, default=None, metavar="FLOAT",
        help="any final factor from 1 to 8 (e.g. 3.5): a model runs at the nearest scale it supports at or above "
        "it, then a Lanczos resize gives the exact size; classical methods resize straight to it",
    )  # fmt: skip
    p.add_argument(
        "--ext", choices=EXTENSIONS, default="png",
        help="output format: auto keeps the input's format (PNG, JPEG or WebP; others become PNG); an image with "
        "alpha is always written as PNG (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--quality", type=_quality, default=DEFAULT_QUALITY, help="JPEG/WebP quality, 1-100 (default: %(default)s)"
    )
    p.add_argument(
        "--png-compression", type=_png_compression, default=DEFAULT_PNG_COMPRESSION, metavar="0-9",
        help="zlib level for PNG outputs: 1 is fastest (run-length matching, on several threads), 9 smallest "
        "(default: %(default)s, as OpenCV writes)",
    )  # fmt: skip
    p.add_argument(
        "--suffix", default=DEFAULT_SUFFIX,
        help="appended to each output's name after an underscore; {method} and {scale} are filled in, an empty "
        "suffix keeps the input's name (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--tile", type=int, default=None, metavar="N",
        help=f"tile size in input pixels for models, at least {MIN_TILE_SIZE} (default: automatic)",
    )  # fmt: skip
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        metavar="N",
        help="context pixels around each tile (default: the model's receptive radius, seamless)",
    )
    p.add_argument(
        "--memory-budget", type=_megabytes, default=None, metavar="MB",
        help=f"working memory for model windows in MB, at least 16 (default: {CPU_MEMORY_BUDGET >> 20} on CPU, half "
        "the free GPU memory); the image runs in one window when it fits",
    )  # fmt: skip
    p.add_argument(
        "--self-ensemble", action="store_true",
        help="models only: average the outputs for the 8 flips and rotations of each image (8x the time, about "
        "+0.05 dB PSNR)",
    )  # fmt: skip
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--recursive", action="store_true", help="also scan sub-folders")
    p.add_argument("--list-methods", action="store_true", help="list the available methods and exit")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    return p


def list_methods(weights_dir: str | None) -> str:
    """The table ``--list-methods`` prints: name, kind, scales, description."""
    from .registry import available_methods

    rows = [("method", "kind", "scales", "description")]
    rows += [
        (m.name, m.kind, ",".join(str(s) for s in m.scales), m.description) for m in available_methods(weights_dir)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with options argparse cannot check on its own (tile sizes, the suffix), or None."""
    if args.tile is not None and args.tile < MIN_TILE_SIZE:
        return (
            f"--tile must be at least {MIN_TILE_SIZE} input pixels, got {args.tile} (leave it out for automatic tiles)"
        )
    if args.tile_overlap is not None and args.tile_overlap < 0:
        return f"--tile-overlap must be 0 or more pixels, got {args.tile_overlap}"
    fields = template_fields(args.suffix)
    if fields is None or not fields <= {"method", "scale"}:
        return f"--suffix {args.suffix!r} may only use the placeholders {{method}} and {{scale}}"
    if "/" in args.suffix or "\\" in args.suffix:
        return f"--suffix {args.suffix!r} must not contain a path separator"
    return None


def template_fields(template: str) -> set[str] | None:
    """The placeholder names of a ``str.format`` template; None when it is malformed or uses format specs."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return None
    if any(name is not None and (spec or conversion) for _, name, spec, conversion in parsed):
        return None
    return {name for _, name, _, _ in parsed if name is not None}


def collect_inputs(inputs: Iterable[str], recursive: bool) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for every named file and every image inside named folders."""
    found: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for f in sorted(path.glob(pattern)):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((f, f.relative_to(path)))
        else:
            found.append((path, Path(path.name)))
    return found


def has_alpha(path: Path) -> bool:
    """Whether the image file's header declares transparency (False when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in ALPHA_MODES or "transparency" in image.info
    except Exception:  # unreadable files fail later, with a proper message
        return False


def output_extension(source: Path, ext: str) -> str:
    """The output suffix for ``source`` under ``--ext``: alpha forces PNG, ``auto`` keeps PNG/JPEG/WebP."""
    chosen = KEPT_FORMATS.get(source.suffix.lower(), "png") if ext == "auto" else ext
    if chosen != "png" and has_alpha(source):
        return ".png"
    return f".{chosen}"


def output_path(outdir: Path, relative: Path, suffix: str, extension: str, taken: set[Path], inputs: set[Path]) -> Path:
    """A path under outdir with ``extension`` that no input and no earlier output of this run uses."""
    stem = f"{relative.stem}_{suffix}" if suffix else relative.stem
    base = outdir / relative.parent / stem
    candidate, n = base.with_name(base.name + extension), 1
    while candidate.resolve() in taken or candidate.resolve() in inputs:
        candidate = base.with_name(f"{base.name}-{n}{extension}")
        n += 1
    taken.add(candidate.resolve())
    return candidate


def method_tag(method: str) -> str:
    """How a method appears in output names: a model folder's or Hub id's last part, else the method name."""
    return Path(method).name if Path(method).is_dir() or is_hub_id(method) else method


def quiet_hub_logging() -> None:
    """Keep huggingface_hub's retry warnings off the terminal; its failures reach the user as one sentence."""
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def failure_message(source: Path, exc: BaseException) -> str:
    """The error text naming ``source`` once (sr_core's messages usually name the file already)."""
    message = str(exc).strip() or type(exc).__name__
    return message if str(source) in message else f"{source}: {message}"


def _upscale_files(
    jobs: list[tuple[Path, Path]], method: str, factor: float, args: argparse.Namespace, options: dict, bar: Any
) -> list[tuple[Path, str]]:
    """Upscale (source, destination) pairs with decode and encode overlapping the model; returns the failures."""
    from .io import load_image, save_image
    from .outscale import upscale_by
    from .overlap import run_overlapped
    from .pipeline import upscale

    failures: list[tuple[Path, str]] = []

    def compute(job: tuple[Path, Path], image: Any) -> Any:
        bar.set_postfix_str(job[0].name)
        if args.outscale is None:
            return upscale(image, method, int(factor), **options)
        return upscale_by(image, method, factor, **options)

    def encode(job: tuple[Path, Path], result: Any) -> None:
        save_image(result, job[1], quality=args.quality, png_compression=args.png_compression)

    def finished(job: tuple[Path, Path], error: BaseException | None) -> None:
        bar.update(1)
        if error is not None:
            failures.append((job[0], failure_message(job[0], error)))
            bar.write(f"error: {failures[-1][1]}", file=sys.stderr)

    run_overlapped(jobs, lambda job: load_image(job[0]), compute, encode, finished, (SRError, OSError, ValueError))
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns 0 (all written), 1 (some files failed) or 2 (usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_methods:
        print(list_methods(args.weights_dir))
        return 0
    if not args.inputs:
        parser.error("INPUT... is required (or use --list-methods)")
    problem = usage_problem(args)
    if problem:
        print(f"sr-upscale: error: {problem}", file=sys.stderr)
        return 2

    from accelerate import PartialState
    from tqdm import tqdm

    from .registry import get_method

    quiet_hub_logging()
    keep_freed_cpu_memory()
    try:
        method = get_method(args.method, args.weights_dir)
        if args.outscale is None:
            scale = DEFAULT_SCALE if args.scale is None else args.scale
            method.check_scale(scale)
            factor, how = float(scale), f"x{scale}"
        else:
            factor, how = args.outscale, plan_outscale(method, args.outscale).describe()
    except SRError as exc:
        print(f"sr-upscale: error: {exc}", file=sys.stderr)
        return 2

    import torch

    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    device = state.device if state.num_processes > 1 and args.device == "auto" else args.device
    outdir = Path(args.outdir)
    jobs = collect_inputs(args.inputs, args.recursive)
    if not jobs:
        print("sr-upscale: error: no image files found in the inputs", file=sys.stderr)
        return 2
    inputs = {f.resolve() for f, _ in jobs}
    taken: set[Path] = set()
    tag = method_tag(args.method)
    suffix = args.suffix.format(method=tag, scale=scale_tag(factor))
    planned = []
    for src, rel in jobs:
        extension = output_extension(src, args.ext)
        if args.ext not in ("auto", "png") and extension == ".png" and state.is_main_process:
            print(f"note: {src} has an alpha channel, so it is written as PNG", file=sys.stderr)
        planned.append((src, output_path(outdir, rel, suffix, extension, taken, inputs)))

    options = {
        "tile_size": args.tile,
        "tile_overlap": args.tile_overlap,
        "memory_budget": None if args.memory_budget is None else args.memory_budget << 20,
        "self_ensemble": args.self_ensemble,
        "device": device,
        "precision": args.precision,
        "weights_dir": args.weights_dir,
        "max_pixels": None,  # checked once, when the file is decoded
    }
    start = time.perf_counter()
    with state.split_between_processes(planned) as mine:
        bar = tqdm(
            total=len(mine),
            unit="img",
            desc=f"{method.label} {how}",
            position=state.process_index,
            disable=not sys.stderr.isatty() and state.num_processes > 1,
            file=sys.stderr,
        )
        failures = _upscale_files(mine, method.name, factor, args, options, bar)
        bar.close()
        done = len(mine) - len(failures)
    elapsed = time.perf_counter() - start
    rank = f"[process {state.process_index}] " if state.num_processes > 1 else ""
    print(
        f"{rank}{done} image(s) written to {outdir} in {elapsed:.1f}s; {len(failures)} failed",
        file=sys.stderr,
    )
    for _, message in failures:
        print(f"{rank}  failed: {message}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
