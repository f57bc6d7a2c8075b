"""PNG encode benchmark: ``sr_core.png.write_png`` against Pillow at level 1 on SRResNet x4 outputs, in one run.

Pillow is given its fastest settings (level 1, zlib's run-length strategy, its adaptive per-row filter); write_png
is timed on one thread and on the default thread count, from an array and from the PIL image (read in row blocks,
as ``save_image`` calls it). Prints milliseconds (best of --repeat, the runs
interleaved), CPU milliseconds, file sizes and the ratios.

    python bench/png_encode.py [--sizes 256 512] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import time
import zlib

import numpy as np
from inference import photo
from PIL import Image


def _time(fn) -> tuple[float, float, int]:
    """Wall and CPU milliseconds of one ``fn(buffer)`` and the bytes it wrote."""
    buffer = io.BytesIO()
    wall, cpu = time.perf_counter(), time.process_time()
    fn(buffer)
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3, buffer.tell()


def main() -> None:
    import sr_core
    from sr_core.png import thread_count, write_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="LR sizes (outputs are 4x)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("| output | encoder | ms | CPU ms | MB | wall vs Pillow | CPU vs Pillow | size vs Pillow |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        output = sr_core.upscale(Image.fromarray(photo(size)), "srresnet", 4)
        pixels = np.asarray(output)
        threads = thread_count(pixels.nbytes)
        encoders = {
            "Pillow level 1 (RLE)": lambda f, im=output: im.save(f, format="PNG", compress_level=1,
                                                                compress_type=zlib.Z_RLE),
            "write_png, 1 thread": lambda f, a=pixels: write_png(f, a, threads=1),
            f"write_png, default ({threads} threads)": lambda f, a=pixels: write_png(f, a),
            "write_png, from the PIL image (as save_image)": lambda f, im=output: write_png(f, im),
        }  # fmt: skip
        runs = {name: [] for name in encoders}
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every encoder alike
            for name, fn in encoders.items():
                runs[name].append(_time(fn))
        results = {name: (min(r[0] for r in rs), min(r[1] for r in rs), rs[-1][2]) for name, rs in runs.items()}
        base_wall, base_cpu, base_size = results["Pillow level 1 (RLE)"]
        for name, (wall, cpu, nbytes) in results.items():
            print(f"| {size * 4}x{size * 4} | {name} | {wall:.1f} | {cpu:.1f} | {nbytes / 1e6:.2f} | "
                  f"{wall / base_wall:.2f}x | {cpu / base_cpu:.2f}x | {nbytes / base_size:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
