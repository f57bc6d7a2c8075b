"""``sr-upscale``: upscale files and folders from the command line, on one process or many (accelerate launch)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from .devices import PRECISIONS
from .errors import SRError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".tga"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sr-upscale",
        description="Upscale images with classical methods, SRResNet or SRGAN. Folders are scanned for images; "
        "under `accelerate launch` the inputs are split across processes.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files and/or folders")
    p.add_argument("-o", "--output", dest="outdir", metavar="OUTDIR", help="folder for the results (created)")
    p.add_argument("--method", default="bicubic", help="method name (see --list-methods) or a model folder")
    p.add_argument("--scale", type=int, default=4, help="integer scale factor (default 4)")
    p.add_argument("--tile", type=int, default=None, metavar="N", help="tile size in input pixels for models")
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        metavar="N",
        help="context pixels around each tile (default: the model's receptive radius, seamless)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--recursive", action="store_true", help="also scan sub-folders")
    p.add_argument("--list-methods", action="store_true", help="list the available methods and exit")
    p.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    return p


def list_methods(weights_dir: str | None) -> str:
    from .registry import available_methods

    rows = [("method", "kind", "scales", "description")]
    rows += [
        (m.name, m.kind, ",".join(str(s) for s in m.scales), m.description)
        for m in available_methods(weights_dir)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows)


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


def output_path(
    outdir: Path, relative: Path, method: str, scale: int, taken: set[Path], inputs: set[Path]
) -> Path:
    """A PNG path under outdir that no input and no earlier output of this run uses."""
    tag = Path(method).name if Path(method).is_dir() else method
    base = outdir / relative.parent / f"{relative.stem}_{tag}_x{scale}"
    candidate, n = base.with_suffix(".png"), 1
    while candidate.resolve() in taken or candidate.resolve() in inputs:
        candidate = base.with_name(f"{base.name}-{n}").with_suffix(".png")
        n += 1
    taken.add(candidate.resolve())
    return candidate


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_methods:
        print(list_methods(args.weights_dir))
        return 0
    if not args.inputs or not args.outdir:
        parser.error("INPUT... and -o OUTDIR are required (or use --list-methods)")

    from accelerate import PartialState
    from tqdm import tqdm

    from .io import save_image
    from .pipeline import upscale
    from .registry import get_method

    try:
        method = get_method(args.method, args.weights_dir)
        method.check_scale(args.scale)
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
    planned = [(f, output_path(outdir, rel, args.method, args.scale, taken, inputs)) for f, rel in jobs]

    failures: list[tuple[Path, str]] = []
    start = time.perf_counter()
    with state.split_between_processes(planned) as mine:
        bar = tqdm(
            mine,
            unit="img",
            desc=f"{method.label} x{args.scale}",
            position=state.process_index,
            disable=not sys.stderr.isatty() and state.num_processes > 1,
            file=sys.stderr,
        )
        for src, dst in bar:
            bar.set_postfix_str(src.name)
            try:
                result = upscale(
                    src,
                    method.name,
                    args.scale,
                    tile_size=args.tile,
                    tile_overlap=args.tile_overlap,
                    device=device,
                    precision=args.precision,
                    weights_dir=args.weights_dir,
                )
                save_image(result, dst)
            except (SRError, OSError, ValueError) as exc:
                failures.append((src, str(exc)))
                tqdm.write(f"error: {src}: {exc}", file=sys.stderr)
        done = len(mine) - len(failures)
    elapsed = time.perf_counter() - start
    rank = f"[process {state.process_index}] " if state.num_processes > 1 else ""
    print(
        f"{rank}{done} image(s) written to {outdir} in {elapsed:.1f}s; {len(failures)} failed",
        file=sys.stderr,
    )
    for src, message in failures:
        print(f"{rank}  failed: {src}: {message}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
