"""Inference benchmark: output megapixels/s and peak memory of every method at x4 on a 512x512 input.

For SRResNet it also times the plain eager fp32 forward of the same weights (whole image, BatchNorm unfolded,
the textbook way) and reports sr_core's speed-up and its PSNR difference against the ground truth. Each
measurement runs in a fresh process so peak RSS belongs to that method alone.

    python bench/inference.py [--repeat 2] [--skip-large] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _test_image(size: int) -> np.ndarray:
    """A natural photo from examples/ when present (tiled to size), else a deterministic textured pattern."""
    from PIL import Image

    candidates = sorted((ROOT / "examples").glob("*.png"))
    if candidates:
        img = Image.open(candidates[0]).convert("RGB")
        arr = np.asarray(img)
        reps = (size // arr.shape[0] + 1, size // arr.shape[1] + 1, 1)
        return np.tile(arr, reps)[:size, :size]
    y, x = np.mgrid[0:size, 0:size] / size
    pattern = np.stack([np.sin(40 * x * y), np.cos(25 * x), np.sin(30 * y + 5 * x)], axis=2) * 0.5 + 0.5
    return (pattern * 255).astype(np.uint8)


def _srresnet(scale: int):
    """Shipped SRResNet weights when present, else a randomly initialised paper-size model (flagged)."""
    import torch

    from sr_core.registry import available_methods, load_model

    for m in available_methods():
        if m.name == "srresnet" and scale in m.scales:
            return load_model(m, scale), "shipped"
    from sr_core.models import SRResNet

    torch.manual_seed(0)
    return SRResNet(scale=scale).eval(), "random-init"


def _run(task: dict, queue: mp.Queue) -> None:
    import torch

    if task.get("threads"):
        torch.set_num_threads(task["threads"])
    from PIL import Image

    import sr_core
    from sr_core.metrics import psnr

    kind, scale = task["kind"], task["scale"]
    lr = Image.fromarray(_test_image(task["size"]))
    base_rss = _peak_rss_mb()
    result: dict = {"kind": kind, "method": task.get("method", "srresnet")}
    if kind == "classical":
        times = []
        for _ in range(task["repeat"]):
            t0 = time.perf_counter()
            sr_core.upscale(lr, task["method"], scale)
            times.append(time.perf_counter() - t0)
    else:
        model, source = _srresnet(scale)
        result["weights"] = source
        x = torch.from_numpy(np.asarray(lr, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        times = []
        if kind == "eager":
            with torch.no_grad():
                for _ in range(task["repeat"]):
                    t0 = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - t0)
        else:
            precision = task["precision"]
            tmp = Path(task["tmpdir"]) / "model"
            model.save_pretrained(tmp)
            method = str(tmp)
            sr_core.upscale(lr.crop((0, 0, 32, 32)), method, scale, precision=precision)
            for _ in range(task["repeat"]):
                t0 = time.perf_counter()
                sr_core.upscale(lr, method, scale, precision=precision, tile_size=task.get("tile"))
                times.append(time.perf_counter() - t0)
            result["dtype"] = str(sr_core.resolve_precision(precision, torch.device("cpu"))).removeprefix("torch.")
        if task.get("fidelity"):
            hr = Image.fromarray(_test_image(task["size"]))
            from sr_core.classical import downscale

            small = downscale(hr, scale)
            gt = np.asarray(hr.crop((0, 0, small.width * scale, small.height * scale)))
            if kind == "eager":
                xs = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255).permute(2, 0, 1)[None]
                with torch.no_grad():
                    y = model(xs).clamp(0, 1)[0].permute(1, 2, 0).numpy()
                out = (y * 255 + 0.5).astype(np.uint8)
            else:
                out = np.asarray(sr_core.upscale(small, str(Path(task["tmpdir"]) / "model"), scale,
                                                 precision=task["precision"]))
            result["psnr"] = psnr(out, gt, crop_border=scale)
    best = min(times)
    out_mp = (task["size"] * scale) ** 2 / 1e6
    result.update(seconds=best, mp_per_s=out_mp / best, peak_rss_mb=_peak_rss_mb(), base_rss_mb=base_rss)
    queue.put(result)


def measure(task: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(task, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per method (best is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 2048x2048 x4 memory check")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from sr_core.classical import CLASSICAL_METHODS
    from sr_core.devices import cpu_has_fast_bf16

    rows = []
    common = {"size": args.size, "scale": args.scale, "repeat": args.repeat, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmpdir:
        for name in CLASSICAL_METHODS:
            rows.append(measure({**common, "kind": "classical", "method": name}))
        eager = measure({**common, "kind": "eager", "fidelity": True, "tmpdir": tmpdir})
        rows.append(eager)
        for precision in ("fp32", "auto"):
            r = measure({**common, "kind": "sr_core", "precision": precision, "fidelity": True, "tmpdir": tmpdir})
            r["method"] = f"srresnet sr_core {precision} ({r['dtype']})"
            r["speedup"] = eager["seconds"] / r["seconds"]
            r["psnr_delta"] = r["psnr"] - eager["psnr"]
            rows.append(r)
        eager["method"] = "srresnet eager fp32"
        large = None
        if not args.skip_large:
            large = measure({**common, "size": 2048, "repeat": 1, "kind": "sr_core", "precision": "auto",
                             "tmpdir": tmpdir})

    print(f"\nInference benchmark: {args.size}x{args.size} input, x{args.scale}, CPU fast bf16: {cpu_has_fast_bf16()}")
    print(f"SRResNet weights: {eager.get('weights')}")
    print(f"| {'method':<34} | {'seconds':>8} | {'out MP/s':>8} | {'peak RSS MB':>11} | {'speed-up':>8} | "
          f"{'PSNR dB':>8} | {'dPSNR':>7} |")
    print("|" + "|".join("-" * w for w in (36, 10, 10, 13, 10, 10, 9)) + "|")
    for r in rows:
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else ""
        p = f"{r['psnr']:.3f}" if "psnr" in r else ""
        d = f"{r['psnr_delta']:+.3f}" if "psnr_delta" in r else ""
        print(f"| {r['method']:<34} | {r['seconds']:8.3f} | {r['mp_per_s']:8.2f} | {r['peak_rss_mb']:11.0f} | "
              f"{speed:>8} | {p:>8} | {d:>7} |")
    if large:
        print(f"\n2048x2048 x4 SRResNet ({large['dtype']}): {large['seconds']:.1f} s, "
              f"peak RSS {large['peak_rss_mb']:.0f} MB (target < 3072 MB)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "large": large}, indent=2))


if __name__ == "__main__":
    main()
