"""Inference benchmark: SRResNet x4 through ``sr_core.upscale`` against the plain eager fp32 forward, on this machine.

Prints, from one run:
  1. speed at 128, 256, 512 and 1024 input: the eager fp32 forward of the same weights (whole image, BatchNorm
     unfolded: the textbook way), sr_core (auto precision, memory-budget windows or streamed row bands, freed memory
     kept for reuse with --keep-freed, as sr-upscale and the app run) and sr_core with the earlier fixed
     256-pixel tiles, interleaved; the speed-up and the PSNR difference against ground truth;
  2. the CPU's bf16 (or fp32) convolution peak, from the model's dominant 64->64 3x3 convolution alone (the better of
     a measurement before and one after the speed rows), and the share of it sr_core's model time reaches (useful
     convolution FLOPs / time); the model's convolutions alone, each timed by itself, and the speed-up over eager
     they would allow with no other work (the ceiling on this CPU);
  3. peak RSS of a fresh process upscaling 512, 1024 and 2048 input at x4, and its live peak (glibc set to map and
     unmap every allocation over 128 KiB, so free heap memory is not counted), against the output's own bytes; the
     upscale's own live peak (over the process with its input loaded) and its working memory beyond the output;
  4. folder throughput: ``sr-upscale`` on a folder of images against the model-only times (the median of --repeat
     interleaved rounds);
  5. on CUDA (when present): output megapixels/s, bf16 and channels_last, with and without torch.compile;
  6. graph compilers on this CPU: the fused inference copy's whole-image forward (what sr_core runs in each window)
     eager, through torch.compile (inductor) and through oneDNN Graph (TorchScript trace + freeze with oneDNN fusion,
     under bf16 autocast where the CPU has fast bf16), interleaved, with their speed against eager and the largest
     output difference: the evidence for keeping them out of ``upscale()``.

    python bench/inference.py [--sizes 128 256 512 1024] [--repeat 3] [--skip-rss] [--skip-folder]
                              [--skip-compilers] [--compiler-size 256] [--keep-freed] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCALE = 4
CONV_BOUND_BAND = (32, 512)
"""Rows x columns each convolution is timed on for the conv-bound ceiling: a band as the streamed body runs."""


def _status_mb(field: str) -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's peak across exec)."""
    peak = _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak


def _reset_peak_rss() -> float:
    """Restart the peak (VmHWM) from the current RSS where Linux allows it; returns the current RSS in MB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    current = _status_mb("VmRSS")
    return _peak_rss_mb() if current is None else current


def photo(size: int) -> np.ndarray:
    """A size x size RGB test photo: the example images mirrored and tiled (natural content at any size)."""
    from PIL import Image

    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((ROOT / "examples").glob("*.png"))]
    if not tiles:
        raise SystemExit("bench/inference.py needs the example photos in examples/ (python examples/make_examples.py)")
    row = np.concatenate([tiles[i % len(tiles)] for i in range(4)], axis=1)
    block = np.concatenate([row, row[::-1, ::-1]], axis=0)
    reps = (size // block.shape[0] + 1, size // block.shape[1] + 1, 1)
    return np.ascontiguousarray(np.tile(block, reps)[:size, :size])


def _srresnet():
    from sr_core.registry import get_method, load_model

    return load_model(get_method("srresnet"), SCALE).eval()


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ----------------------------------------------------------------------------------------------- 1. speed


def _variants(model, lr, x) -> tuple[dict, dict]:
    """The timed variants for one input (each storing its 8-bit output) and the dict they store into."""
    import torch

    import sr_core

    outputs: dict[str, np.ndarray] = {}

    def eager() -> None:
        with torch.inference_mode():
            y = model(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        outputs["eager"] = np.floor(y * 255 + 0.5).astype(np.uint8)

    def ours() -> None:
        outputs["sr_core"] = np.asarray(sr_core.upscale(lr, "srresnet", SCALE))

    def fixed_tiles() -> None:
        outputs["tile256"] = np.asarray(sr_core.upscale(lr, "srresnet", SCALE, tile_size=256))

    return {"eager": eager, "sr_core": ours, "tile256": fixed_tiles}, outputs


def speed_rows(sizes: list[int], repeat: int) -> list[dict]:
    """Eager fp32 against sr_core at each size, interleaved in this process; PSNR against the HR photo."""
    import torch
    from PIL import Image

    import sr_core
    from sr_core.classical import downscale
    from sr_core.metrics import psnr

    model = _srresnet()
    sr_core.upscale(Image.fromarray(photo(48)), "srresnet", SCALE)  # load and prepare once
    rows = []
    for size in sizes:
        hr = Image.fromarray(photo(size * SCALE))
        lr = downscale(hr, SCALE)
        x = torch.from_numpy(np.asarray(lr, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
        runs, outputs = _variants(model, lr, x)
        times: dict[str, list[float]] = {k: [] for k in runs}
        runs["sr_core"]()
        runs["tile256"]()  # warm the window shapes of this size
        for _ in range(1 if size >= 1024 else repeat):  # interleaved, so drift hits every variant alike
            for name, fn in runs.items():
                times[name].append(_best(fn, 1))
        gt = np.asarray(hr)
        row = {"size": size, **{f"{k}_s": min(v) for k, v in times.items()}}
        row.update({f"{k}_psnr": psnr(outputs[k], gt, crop_border=SCALE) for k in runs})
        row["speedup"] = row["eager_s"] / row["sr_core_s"]
        row["tile256_speedup"] = row["eager_s"] / row["tile256_s"]
        row["dpsnr"] = row["sr_core_psnr"] - row["eager_psnr"]
        rows.append(row)
        print(f"  {size}: eager {row['eager_s']:.3f}s, sr_core {row['sr_core_s']:.3f}s ({row['speedup']:.2f}x)",
              file=sys.stderr, flush=True)  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------- 2. conv peak


def conv_flops_per_pixel() -> float:
    """Useful convolution FLOPs of the SRResNet x4 forward per input pixel (2 x multiply-adds, from hooks)."""
    import torch

    model, flops = _srresnet(), [0.0]

    def count(module, inputs, output) -> None:
        w = module.weight
        flops[0] += 2.0 * output.numel() * w.shape[1] * w.shape[2] * w.shape[3] / module.groups

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():  # the paper's layer order, every conv a module call (the model's own forward
        model.exit(model.upsampler(model.features(torch.rand(1, 3, 32, 32))))  # runs the exit conv functionally)
    for h in hooks:
        h.remove()
    return flops[0] / (32 * 32)


def conv_peak_gflops(dtype_name: str, repeat: int) -> float:
    """Best GFLOP/s of one 64->64 3x3 convolution on a 1x64x256x256 channels_last input: the body's building block."""
    import torch
    import torch.nn.functional as F

    dtype = getattr(torch, dtype_name)
    x = torch.rand(1, 64, 256, 256).to(dtype).contiguous(memory_format=torch.channels_last)
    w, b = torch.rand(64, 64, 3, 3).to(dtype), torch.rand(64).to(dtype)
    with torch.inference_mode():
        for _ in range(3):
            F.conv2d(x, w, b, padding=1)
        seconds = _best(lambda: F.conv2d(x, w, b, padding=1), 5 * repeat)
    return 2.0 * 256 * 256 * 64 * 64 * 9 / seconds / 1e9


def _model_convolutions() -> list[tuple]:
    """(weight, bias, resolution factor) of every convolution sr_core's fused SRResNet x4 runs, in order, recorded
    from one whole-image forward of it (so the entry conv recomputed for the long skip and the sub-pixel output conv
    are counted as the model runs them)."""
    import torch
    import torch.nn.functional as F

    fused, side, calls = _srresnet().fuse_for_inference(), 32, []
    conv2d = F.conv2d

    def record(x, weight, bias=None, *args, **kwargs):
        calls.append((weight, bias, x.shape[-1] // side))
        return conv2d(x, weight, bias, *args, **kwargs)

    F.conv2d = record
    try:
        with torch.inference_mode():
            fused(torch.rand(1, 3, side, side))
    finally:
        F.conv2d = conv2d
    return calls


def conv_bound_seconds_per_pixel(dtype_name: str, repeat: int) -> float:
    """Seconds per input pixel of the model's convolutions alone, each timed on its own on a cache-sized band
    (CONV_BOUND_BAND rows x columns at its resolution, channels_last, ``dtype``): what sr_core would take with no
    other work at all (activations, adds, copies, streaming, output), so eager time / this is the speed-up ceiling
    on this CPU."""
    import torch
    import torch.nn.functional as F

    dtype, (rows, cols) = getattr(torch, dtype_name), CONV_BOUND_BAND
    seconds: dict[tuple, float] = {}
    total = 0.0
    with torch.inference_mode():
        for weight, bias, res in _model_convolutions():
            out_c, in_c, k, _ = weight.shape
            key = (out_c, in_c, k, bias is not None)
            if key not in seconds:
                w = weight.to(dtype)
                b = None if bias is None else bias.to(dtype)
                x = torch.rand(1, in_c, rows + k - 1, cols).to(dtype).contiguous(memory_format=torch.channels_last)
                run = lambda x=x, w=w, b=b, k=k: F.conv2d(x, w, b, padding=(0, k // 2))  # noqa: E731
                run()
                seconds[key] = _best(run, 5 * repeat) / (rows * cols)
            total += seconds[key] * res * res
    return total


# -------------------------------------------------------------------------------------------- 3. memory


def _rss_worker(size: int, keep_freed: bool, queue: mp.Queue) -> None:
    from PIL import Image

    import sr_core
    from sr_core.devices import keep_freed_cpu_memory

    if keep_freed:
        keep_freed_cpu_memory()

    lr = Image.fromarray(photo(size))
    sr_core.upscale(lr.crop((0, 0, 48, 48)), "srresnet", SCALE)
    before = _reset_peak_rss()
    start = time.perf_counter()
    out = sr_core.upscale(lr, "srresnet", SCALE)
    seconds = time.perf_counter() - start
    output_mb = out.width * out.height * (4 if len(out.getbands()) >= 3 else 1) / 2**20  # PIL holds RGB in 4 bytes
    queue.put({"size": size, "seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "runtime_rss_mb": before,
               "output_mb": output_mb})  # fmt: skip


EXACT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)}
"""glibc settings under which RSS is live memory: every allocation over 128 KiB is its own mapping, unmapped when
freed (slower: fresh pages each time), so no free heap memory is counted."""


def _rss_process(size: int, keep_freed: bool, env: dict[str, str]) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # a spawned child reads glibc's variables at start-up
    try:
        proc = ctx.Process(target=_rss_worker, args=(size, keep_freed, queue))
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    row = queue.get()
    proc.join()
    return row


def rss_rows(sizes: list[int], keep_freed: bool) -> list[dict]:
    """Peak RSS of a fresh process per size (so each figure belongs to that upscale alone), and the live peak (the
    same upscale under :data:`EXACT_MALLOC`)."""
    rows = []
    for size in sizes:
        row = _rss_process(size, keep_freed, {})
        live = _rss_process(size, False, EXACT_MALLOC)
        row["live_peak_mb"], row["live_before_mb"] = live["peak_rss_mb"], live["runtime_rss_mb"]
        row["working_mb"] = row["live_peak_mb"] - row["live_before_mb"] - row["output_mb"]
        rows.append(row)
        print(f"  rss {size}: {row['peak_rss_mb']:.0f} MB (live {row['live_peak_mb']:.0f} MB)", file=sys.stderr,
              flush=True)  # fmt: skip
    return rows


# -------------------------------------------------------------------------------------------- 4. folder


def folder_row(count: int, size: int, repeat: int) -> dict:
    """``sr-upscale`` on folders of ``count`` and ``2 * count`` PNGs of size x size: the extra time per image (so
    process start-up, model loading and warm-up cancel out) against the mean upscale() time of the same images.
    ``repeat`` rounds of (model-only pass, small folder, large folder), interleaved so a slow spell of a shared
    machine hits both sides of a round; the median round's ratio is the result."""
    from PIL import Image

    import sr_core

    with tempfile.TemporaryDirectory() as tmp:
        big = photo(size * 2)
        images = []
        for i in range(2 * count):
            y, x = (i * 37) % size, (i * 53) % size
            images.append(Image.fromarray(np.ascontiguousarray(big[y : y + size, x : x + size])))
            for name in ("small", "large") if i < count else ("large",):
                Path(tmp, name).mkdir(exist_ok=True)
                images[-1].save(Path(tmp, name, f"img{i:02d}.png"))
        sr_core.upscale(images[0], "srresnet", SCALE)
        cli = [sys.executable, "-m", "sr_core", "--method", "srresnet", "--scale", str(SCALE)]
        rounds = []
        for index in range(repeat):
            model_only = [_best(lambda im=im: sr_core.upscale(im, "srresnet", SCALE), 1) for im in images]
            walls = {}
            for name in ("small", "large"):
                start = time.perf_counter()
                subprocess.run([*cli, str(Path(tmp, name)), "-o", str(Path(tmp, f"out_{name}_{index}"))], check=True,
                               capture_output=True)  # fmt: skip
                walls[name] = time.perf_counter() - start
            per_image = (walls["large"] - walls["small"]) / count
            model_mean = sum(model_only) / len(model_only)
            rounds.append({"cli_small_s": walls["small"], "cli_large_s": walls["large"], "per_image_s": per_image,
                           "model_only_per_image_s": model_mean, "ratio": per_image / model_mean})  # fmt: skip
    median = sorted(rounds, key=lambda r: r["ratio"])[(len(rounds) - 1) // 2]
    return {"images": count, "size": size, **median, "images_per_s": 1 / median["per_image_s"],
            "ratios": [r["ratio"] for r in rounds]}  # fmt: skip


# ---------------------------------------------------------------------------------------------- 5. CUDA


def cuda_rows(repeat: int) -> list[dict]:
    """Output MP/s on CUDA: sr_core (bf16 or fp16, channels_last, budget windows) and torch.compile of the body."""
    import torch

    if not torch.cuda.is_available():
        return []
    from PIL import Image

    import sr_core

    rows = []
    for size in (512, 1024, 2048):
        lr = Image.fromarray(photo(size))
        sr_core.upscale(lr, "srresnet", SCALE, device="cuda")
        torch.cuda.synchronize()
        seconds = _best(lambda lr=lr: sr_core.upscale(lr, "srresnet", SCALE, device="cuda"), repeat)
        rows.append({"size": size, "seconds": seconds, "mp_per_s": (size * SCALE) ** 2 / 1e6 / seconds,
                     "device": torch.cuda.get_device_name()})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------- 6. graph compilers


def _compiled_variants(size: int) -> dict:
    """name -> (build, run) for each way of running the fused model's forward on one ``size``-pixel input."""
    import warnings

    import torch

    from sr_core.devices import cpu_has_fast_bf16
    from sr_core.inference import prepare_for_inference

    dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    model = _srresnet()
    fused = prepare_for_inference(model, torch.device("cpu"), dtype)
    x = torch.from_numpy(photo(size).astype(np.float32) / 255).permute(2, 0, 1)[None]
    x = x.contiguous(memory_format=torch.channels_last)
    xd = x.to(dtype)

    def autocast():
        return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)

    def onednn_graph():
        torch.jit.enable_onednn_fusion(True)
        plain = model.to(memory_format=torch.channels_last)
        with warnings.catch_warnings(), torch.no_grad(), autocast():
            warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
            frozen = torch.jit.freeze(torch.jit.trace(plain, x, check_trace=False))

        def run():
            with torch.no_grad(), autocast():
                return frozen(x)

        return run

    def inductor():  # on the unfused model: inductor's freezing folds BatchNorm and prepacks oneDNN weights itself
        plain = copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last)
        compiled = torch.compile(plain)

        def run():
            with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
                return compiled(xd)

        return run

    def eager():
        def run():
            with torch.inference_mode():
                return fused(xd)

        return run

    return {"eager": eager, "torch.compile": inductor, "oneDNN Graph": onednn_graph}


def compiler_rows(size: int, repeat: int) -> list[dict]:
    """Each variant's build time, best forward time (interleaved) and largest difference from eager's output."""
    runs, rows = {}, {}
    for name, build in _compiled_variants(size).items():
        start = time.perf_counter()
        try:
            run = build()
            out = run().float()  # the first call compiles
            run()
        except Exception as error:  # a compiler missing or failing here is a result to print, not a crash
            message = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
            rows[name] = {"name": name, "size": size, "error": message}
            continue
        rows[name] = {"name": name, "size": size, "build_s": time.perf_counter() - start, "times": []}
        runs[name] = (run, out)
    for _ in range(repeat):
        for name, (run, _) in runs.items():
            rows[name]["times"].append(_best(run, 1))
    reference = runs["eager"][1]
    for name, (_, out) in runs.items():
        rows[name].update(seconds=min(rows[name].pop("times")), max_diff=float((out - reference).abs().max()))
    for name in runs:
        rows[name]["speed_vs_eager"] = rows["eager"]["seconds"] / rows[name]["seconds"]
    print(f"  compilers at {size}: " + ", ".join(f"{k} {r.get('seconds', float('nan')):.3f}s" for k, r in rows.items()),
          file=sys.stderr, flush=True)  # fmt: skip
    return list(rows.values())


# --------------------------------------------------------------------------------------------- report


def report(args: argparse.Namespace, results: dict) -> None:
    import torch

    from sr_core.devices import cpu_has_fast_bf16

    print(f"\nSRResNet x{SCALE} inference, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU fast bf16: {cpu_has_fast_bf16()}")  # fmt: skip
    kept = "freed memory kept for reuse (--keep-freed: keep_freed_cpu_memory(), as sr-upscale and the app run)"
    print("allocator: " + (kept if results["keep_freed"] else "glibc defaults (the library's own)"))
    print(
        "\n| input | eager fp32 s | sr_core s | speed-up | tile=256 s | speed-up | PSNR eager | PSNR sr_core | dPSNR |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["speed"]:
        print(
            f"| {r['size']} | {r['eager_s']:.3f} | {r['sr_core_s']:.3f} | {r['speedup']:.2f}x | {r['tile256_s']:.3f} "
            f"| {r['tile256_speedup']:.2f}x | {r['eager_psnr']:.3f} | {r['sr_core_psnr']:.3f} | {r['dpsnr']:+.3f} |"
        )
    peak, flops = results["conv_peak_gflops"], results["flops_per_pixel"]
    print(
        f"\nconv peak ({results['dtype']}, 64->64 3x3, 256x256, channels_last): {peak:.0f} GFLOP/s; "
        f"model: {flops / 1e6:.2f} MFLOP per input pixel"
    )
    for r in results["speed"]:
        achieved = flops * r["size"] ** 2 / r["sr_core_s"] / 1e9
        print(f"  {r['size']}: {achieved:.0f} GFLOP/s useful = {100 * achieved / peak:.0f}% of the conv peak")
    bound = results["conv_bound_s_per_pixel"]
    print(
        f"\nconvolutions alone (each timed by itself on a {CONV_BOUND_BAND[0]}x{CONV_BOUND_BAND[1]} band): "
        f"{bound * 1e6:.2f} us per input pixel = {flops / bound / 1e9:.0f} GFLOP/s useful "
        f"({100 * flops / bound / 1e9 / peak:.0f}% of the peak: sub-pixel zeros, 3- and 12-channel convs)"
    )
    for r in results["speed"]:
        ceiling = r["eager_s"] / (bound * r["size"] ** 2)
        print(f"  {r['size']}: speed-up ceiling {ceiling:.2f}x (sr_core {r['speedup']:.2f}x, "
              f"{100 * bound * r['size'] ** 2 / r['sr_core_s']:.0f}% of its time in convolutions)")  # fmt: skip
    if results.get("rss"):
        print(
            "\n| input | seconds | peak RSS MB | live peak MB | before MB (live) | output MB (as PIL holds it) "
            "| working MB |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["rss"]:
            print(
                f"| {r['size']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['live_peak_mb']:.0f} | "
                f"{r['runtime_rss_mb']:.0f} ({r['live_before_mb']:.0f}) | {r['output_mb']:.0f} | "
                f"{r['working_mb']:.0f} |"
            )
        print(
            "(before: the process with the input image loaded, just before the upscale; working: the upscale's live "
            "peak over that and its output)"
        )
        rss = results["rss"]
        for first, last in [*zip(rss, rss[1:], strict=False), (rss[0], rss[-1])]:
            out_growth = last["output_mb"] - first["output_mb"]
            growth, live = (last[k] - first[k] for k in ("peak_rss_mb", "live_peak_mb"))
            own = (last["live_peak_mb"] - last["live_before_mb"]) - (first["live_peak_mb"] - first["live_before_mb"])
            print(
                f"from {first['size']} to {last['size']} input the output grows {out_growth:.0f} MB; peak RSS "
                f"{growth:.0f} MB (ratio {growth / out_growth:.2f}), live peak {live:.0f} MB "
                f"({live / out_growth:.2f}), the upscale's own live peak {own:.0f} MB ({own / out_growth:.2f})"
            )
    if results.get("folder"):
        f = results["folder"]
        print(
            f"\nfolder of {f['size']}x{f['size']} PNGs (median round): sr-upscale {f['cli_small_s']:.1f}s for "
            f"{f['images']}, "
            f"{f['cli_large_s']:.1f}s for {2 * f['images']}: {f['per_image_s']:.3f}s per extra image "
            f"({f['images_per_s']:.2f} images/s) against {f['model_only_per_image_s']:.3f}s model-only; "
            f"folder / model-only = {f['ratio']:.2f} (the median of {len(f['ratios'])} rounds: "
            f"{', '.join(f'{r:.2f}' for r in f['ratios'])})"
        )
    for r in results.get("cuda", []):
        print(f"CUDA {r['device']}: {r['size']} input x{SCALE}: {r['seconds']:.3f}s, {r['mp_per_s']:.1f} output MP/s")
    if results.get("compilers"):
        rows = results["compilers"]
        print(f"\ngraph compilers, fused model forward on one {rows[0]['size']}x{rows[0]['size']} input "
              f"(what upscale() runs per window):")  # fmt: skip
        print("\n| variant | first call s (build) | forward s | speed vs eager | max output diff |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            if "error" in r:
                print(f"| {r['name']} | failed: {r['error']} | | | |")
            else:
                print(f"| {r['name']} | {r['build_s']:.1f} | {r['seconds']:.3f} | {r['speed_vs_eager']:.2f}x | "
                      f"{r['max_diff']:.4f} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved timed runs per variant (best is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak-memory processes (2048 input: ~1 min)")
    parser.add_argument("--skip-folder", action="store_true", help="skip the folder throughput run")
    parser.add_argument("--skip-compilers", action="store_true",
                        help="skip the torch.compile / oneDNN Graph comparison (about a minute)")  # fmt: skip
    parser.add_argument("--compiler-size", type=int, default=256, help="input size of the compiler comparison")
    parser.add_argument("--folder-images", type=int, default=8)
    parser.add_argument("--folder-size", type=int, default=256)
    parser.add_argument("--keep-freed", action="store_true",
                        help="call keep_freed_cpu_memory() first, as sr-upscale and the app do (default: glibc's "
                             "settings, the library's own default; the eager baseline gains more from it)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch

    from sr_core.devices import cpu_has_fast_bf16, keep_freed_cpu_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed = args.keep_freed and keep_freed_cpu_memory()
    dtype = "bfloat16" if cpu_has_fast_bf16() else "float32"
    # the conv peak before and after the speed rows, the better kept: a slow spell of a shared machine during one
    # measurement must not flatter the model's share of it
    peak_before = conv_peak_gflops(dtype, args.repeat)
    results: dict = {"keep_freed": keep_freed, "speed": speed_rows(args.sizes, args.repeat)}
    peak = max(peak_before, conv_peak_gflops(dtype, args.repeat))
    results.update(conv_peak_gflops=peak, dtype=dtype, flops_per_pixel=conv_flops_per_pixel(),
                   conv_bound_s_per_pixel=conv_bound_seconds_per_pixel(dtype, args.repeat))  # fmt: skip
    if not args.skip_rss:
        results["rss"] = rss_rows([512, 1024, 2048], keep_freed)
    if not args.skip_folder:
        results["folder"] = folder_row(args.folder_images, args.folder_size, args.repeat)
    results["cuda"] = cuda_rows(args.repeat)
    if not args.skip_compilers:
        results["compilers"] = compiler_rows(args.compiler_size, args.repeat)
    report(args, results)


if __name__ == "__main__":
    main()
