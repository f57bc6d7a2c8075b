"""Cost of making LR training inputs: clean bicubic against the realistic pipeline, per stage and per loader setup.

    python bench/degradations.py                 # 96x96 HR patches at x4, the training default
    python bench/degradations.py --patch 128 --count 400

Prints milliseconds per patch for the bicubic LR, for the whole realistic pipeline (sr_core.degradations.degrade)
and for each of its stages, then patches/s of the trainer's PatchDataset through a DataLoader with 0 and 2
workers, bicubic and realistic, so the degradations' share of a training step can be read off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from sr_core import degradations as dg  # noqa: E402
from sr_core.data import ImageList, PatchDataset, make_lr  # noqa: E402


def test_patch(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    base = 128 + 70 * np.sin(x / 7) * np.cos(y / 5) + rng.normal(0, 10, (size, size))
    return np.clip(np.stack([base, base * 0.8 + 20, 255 - base], axis=2), 0, 255).astype(np.uint8)


def ms_per_call(fn, count: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count * 1000


def stage_rows(hr: np.ndarray, scale: int, count: int) -> list[tuple[str, float]]:
    config = dg.DegradationConfig()
    image = dg.to_float(hr)
    rng = np.random.default_rng(1)
    kernel = dg.gaussian_kernel(21, 2.0)
    lr_size = (hr.shape[1] // scale, hr.shape[0] // scale)
    seeds = iter(range(10**9))

    def pipeline() -> np.ndarray:
        return dg.degrade(hr, scale, config, np.random.default_rng(next(seeds)))

    return [
        ("bicubic LR (today's make_lr)", ms_per_call(lambda: make_lr(hr, scale), count)),
        ("realistic pipeline, whole", ms_per_call(pipeline, count)),
        ("  random kernel (draw)", ms_per_call(lambda: dg.random_kernel(rng, config, config.blur_sigma, 0.1), count)),
        ("  sinc kernel 21x21", ms_per_call(lambda: dg.sinc_kernel(21, 1.5), count)),
        ("  blur 21x21 (HR)", ms_per_call(lambda: dg.blur(image, kernel), count)),
        ("  resize (bicubic, to LR)", ms_per_call(lambda: dg.resize(image, lr_size, "bicubic"), count)),
        ("  gaussian noise (HR)", ms_per_call(lambda: dg.add_gaussian_noise(image, 10, rng), count)),
        ("  poisson noise (HR)", ms_per_call(lambda: dg.add_poisson_noise(image, 1.0, rng), count)),
        ("  JPEG encode+decode (HR)", ms_per_call(lambda: dg.jpeg(image, 75), count)),
    ]


def loader_rate(images: ImageList, patch: int, workers: int, degradation, batches: int) -> float:
    dataset = PatchDataset(
        images, patch_size=patch, scale=4, seed=0, length=(batches + 1) * 16, degradation=degradation
    )
    loader = iter(DataLoader(dataset, batch_size=16, num_workers=workers))
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * 16 / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patch", type=int, default=96, help="HR patch side")
    p.add_argument("--count", type=int, default=200, help="calls per timing")
    p.add_argument("--batches", type=int, default=15, help="batches of 16 per loader timing")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    hr = test_patch(args.patch)
    print(f"### LR synthesis, {args.patch}x{args.patch} HR patch at x4, one thread\n")
    print("| step | ms per patch |\n| --- | ---: |")
    for name, ms in stage_rows(hr, 4, args.count):
        print(f"| {name} | {ms:.2f} |")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(6):
            Image.fromarray(test_patch(320)[:, ::-1] if i % 2 else test_patch(320)).save(Path(tmp) / f"{i}.png")
        images = ImageList.from_source(tmp)
        print("\n### PatchDataset through a DataLoader (batch 16)\n")
        print("| LR | workers | patches/s |\n| --- | ---: | ---: |")
        for label, degradation in (("bicubic", None), ("realistic", dg.DegradationConfig())):
            for workers in (0, 2):
                rate = loader_rate(images, args.patch, workers, degradation, args.batches)
                print(f"| {label} | {workers} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
