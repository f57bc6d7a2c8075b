"""Training throughput: HR patches per second of the data pipeline alone, stage 1 and stage 2 steps.

    python bench/train_throughput.py                          # full-size models, CPU (and CUDA when present)
    python bench/train_throughput.py --num-blocks 4 --channels 32 --batch-size 4 --steps 2   # quick look
    python bench/train_throughput.py --recipes --mixed-precision bf16   # earlier recipe against today's

``--recipes`` runs stage 1 under the earlier best recipe (bf16 autocast, channels_last, the upsampler then the
9x9 output conv as the paper draws it, glibc's default allocator behaviour) and today's (the same plus the output
conv moved before the last pixel shuffle, ``subpixel_tail``, and ``keep_freed_cpu_memory``), each in its own
process, interleaved in pairs; it prints both rates, their ratio, the loss of each after the same patches from the
same start, and the top operators of today's step.

The model steps run the trainer's own ``Trainer.step`` on synthetic uint8 batches (so they measure compute only);
stage 2 includes the discriminator and the VGG19 content loss (random VGG weights: same cost as ImageNet ones).
The data row decodes real images, crops, augments and makes LR exactly as training does, so comparing it with
the model rows shows whether loading is the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from sr_core.data import ImageList, PatchDataset  # noqa: E402
from train.config import load_config  # noqa: E402
from train.train import Trainer  # noqa: E402

DEFAULT_DATA = _ROOT.parent / "shared" / "data" / "train"


def synthetic_folder(directory: Path, count: int = 8) -> Path:
    """A few 480x320 natural-ish images (smooth shapes plus noise) for when no data folder is given."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:320, 0:480].astype(np.float32)
    for i in range(count):
        planes = [128 + 80 * np.sin(x / rng.uniform(5, 40)) * np.cos(y / rng.uniform(5, 40)) for _ in range(3)]
        img = np.stack(planes, axis=2) + rng.normal(0, 10, (320, 480, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(directory / f"synthetic_{i}.png")
    return directory


def bench_data(folder: Path, patch: int, scale: int, batch: int, workers: int, batches: int) -> float:
    """Patches per second delivered by the training DataLoader (after its first batch)."""
    images = ImageList.from_source(folder)
    dataset = PatchDataset(images, patch_size=patch, scale=scale, seed=0, length=(batches + 1) * batch)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = sum(b["hr"].shape[0] for b in iterator)
    return count / (time.perf_counter() - start)


@contextlib.contextmanager
def fresh_accelerate() -> Iterator[None]:
    """Reset Accelerate's process-wide state afterwards, so the next Trainer in this process starts clean."""
    try:
        yield
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def make_trainer(stage: str, device: str, args: argparse.Namespace, extra: Sequence[str] = ()) -> Trainer:
    """A prepared ``Trainer`` for a stage at the benchmark's sizes (``extra``: more config overrides)."""
    overrides = [
        f"train.stage={stage}", f"model.scale={args.scale}", f"model.num_blocks={args.num_blocks}",
        f"model.channels={args.channels}", f"model.d_channels={args.d_channels}", f"data.patch_size={args.patch_size}",
        f"data.batch_size={args.batch_size}", "data.train_dir=unused", "validate_every=0",
        f"mixed_precision={args.mixed_precision}",
    ]  # fmt: skip
    if stage == "srgan":
        overrides += ["loss.pixel_weight=0", "loss.content_weight=1", "loss.vgg_weights=random",
                      "loss.adversarial_weight=0.001", "loss.vgg_feature_scale=0.0784"]  # fmt: skip
    config = load_config(None, [*overrides, *extra])
    trainer = Trainer(config, Accelerator(cpu=device == "cpu", mixed_precision=args.mixed_precision))
    trainer.prepare()
    return trainer


def bench_stage(stage: str, device: str, args: argparse.Namespace) -> tuple[float, float]:
    """(patches/s, ms/step) of ``Trainer.step`` for a stage on a device."""
    with fresh_accelerate():
        trainer = make_trainer(stage, device, args)
        rng = torch.Generator().manual_seed(0)
        lr_side = args.patch_size // args.scale
        batch = {
            "hr": torch.randint(0, 256, (args.batch_size, 3, args.patch_size, args.patch_size), generator=rng,
                                dtype=torch.uint8),
            "lr": torch.randint(0, 256, (args.batch_size, 3, lr_side, lr_side), generator=rng, dtype=torch.uint8),
        }  # fmt: skip
        batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
        for _ in range(args.warmup):
            trainer.step(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step(batch)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / args.steps
    return args.batch_size / seconds, seconds * 1000


def textbook_reconstruct(self, features: torch.Tensor) -> torch.Tensor:
    """SRResNet's upsampler, then its output conv at full resolution: the earlier recipe's layer order."""
    return self.exit(self.upsampler(features))


def recipe_worker(args: argparse.Namespace) -> dict:
    """Stage-1 patches/s and the loss curve of a short run from a fixed start, under ``args.worker``'s recipe."""
    from sr_core.models import SRResNet

    if args.worker == "earlier":
        SRResNet.reconstruct = textbook_reconstruct  # type: ignore[method-assign]
    rate, ms = bench_stage("srresnet", "cpu", args)
    losses = loss_curve(args)
    result = {"recipe": args.worker, "patches_per_s": rate, "ms_per_step": ms, "losses": losses}
    if args.worker == "today":
        result["profile"] = profile_step(args)
    return result


def _smooth_batches(args: argparse.Namespace, count: int) -> list[dict]:
    """Fixed, learnable batches (smooth patterns, LR by area downscaling), the same in every process."""
    rng = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        hr = torch.nn.functional.interpolate(torch.rand(args.batch_size, 3, 12, 12, generator=rng),
                                             size=args.patch_size, mode="bicubic").clamp(0, 1)  # fmt: skip
        lr = torch.nn.functional.avg_pool2d(hr, args.scale)
        batches.append({"hr": (hr * 255).round().to(torch.uint8), "lr": (lr * 255).round().to(torch.uint8)})
    return batches


def loss_curve(args: argparse.Namespace) -> list[float]:
    """The pixel loss of ``args.loss_steps`` steps from seed 0 on the fixed batches."""
    with fresh_accelerate():
        torch.manual_seed(0)
        trainer = make_trainer("srresnet", "cpu", args, ["train.lr=2e-4"])
        batches = _smooth_batches(args, 4)
        return [float(trainer.step(batches[i % len(batches)])[0]) for i in range(args.loss_steps)]


def profile_step(args: argparse.Namespace) -> list[tuple[str, float]]:
    """(operator, share of self CPU time) of the top operators over two stage-1 steps."""
    from torch.profiler import profile

    with fresh_accelerate():
        trainer = make_trainer("srresnet", "cpu", args, ["train.lr=2e-4"])
        batch = _smooth_batches(args, 1)[0]
        trainer.step(batch)
        with profile() as prof:
            for _ in range(2):
                trainer.step(batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:8]]


def compare_recipes(args: argparse.Namespace, argv: list[str]) -> None:
    """Earlier and today's recipes in their own processes, interleaved; prints the table, ratio, losses, profile."""
    import statistics
    import subprocess

    results: dict[str, list[dict]] = {"earlier": [], "today": []}
    for _ in range(args.pairs):
        for recipe in ("earlier", "today"):
            env = dict(__import__("os").environ)
            if recipe == "earlier":
                env["SR_STUDIO_NO_MALLOC_TUNING"] = "1"
            out = subprocess.run([sys.executable, __file__, *argv, "--worker", recipe], env=env, check=True,
                                 capture_output=True, text=True).stdout  # fmt: skip
            results[recipe].append(json.loads(out.strip().splitlines()[-1]))
    pairs = zip(results["earlier"], results["today"], strict=True)
    ratios = [today["patches_per_s"] / earlier["patches_per_s"] for earlier, today in pairs]
    print("\n| stage 1 recipe | patches/s (median) | each pair | loss after the same patches |")
    print("| --- | ---: | --- | ---: |")
    for recipe, label in (("earlier", "earlier best: bf16 + channels_last"),
                          ("today", "today: + sub-pixel output conv + freed-memory reuse")):  # fmt: skip
        rates = [r["patches_per_s"] for r in results[recipe]]
        tail = results[recipe][0]["losses"][-5:]
        print(
            f"| {label} | {statistics.median(rates):.1f} | {', '.join(f'{r:.1f}' for r in rates)} | "
            f"{sum(tail) / len(tail):.5f} |"
        )
    print(
        f"\ntoday / earlier: {statistics.median(ratios):.2f}x (median of {len(ratios)} pairs: "
        f"{', '.join(f'{r:.2f}' for r in ratios)})"
    )
    print("today's step, top operators by self CPU time:")
    for name, share in results["today"][0]["profile"]:
        print(f"  {100 * share:5.1f}%  {name}")
    if args.json:
        args.json.write_text(json.dumps({"recipes": results, "ratios": ratios}, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = CPU, plus CUDA when available")  # fmt: skip
    parser.add_argument("--stages", default="data,srresnet,srgan", help="comma-separated subset to run")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--num-blocks", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--d-channels", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--data", type=Path, help=f"image folder for the data row (default {DEFAULT_DATA})")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try")
    parser.add_argument("--data-batches", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--recipes", action="store_true", help="compare the earlier and today's stage-1 recipes")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved process pairs for --recipes")
    parser.add_argument("--loss-steps", type=int, default=30, help="steps of the equal-loss check for --recipes")
    parser.add_argument("--worker", choices=["earlier", "today"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(recipe_worker(args)))
        return 0
    if args.recipes:
        raw = list(sys.argv[1:] if argv is None else argv)
        compare_recipes(args, [a for a in raw if a not in ("--recipes",)])
        return 0
    stages = args.stages.split(",")
    devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else [args.device]
    devices = ["cpu" if d == "auto" else d for d in devices]
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(f"| {row['what']} | {row['device']} | {row['patches_per_s']:.1f} | {row.get('ms_per_step', '')} |",
              flush=True)  # fmt: skip

    print(f"x{args.scale}, HR patch {args.patch_size}, batch {args.batch_size}, SRResNet {args.num_blocks} blocks x "
          f"{args.channels} ch, D {args.d_channels} ch, mixed precision {args.mixed_precision}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)\n")  # fmt: skip
    print("| what | device | patches/s | ms/step |\n| --- | --- | ---: | ---: |")
    if "data" in stages:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.data or (DEFAULT_DATA if DEFAULT_DATA.is_dir() else synthetic_folder(Path(tmp)))
            for workers in args.workers:
                rate = bench_data(folder, args.patch_size, args.scale, args.batch_size, workers, args.data_batches)
                emit({"what": f"data pipeline ({workers} workers)", "device": "cpu", "patches_per_s": rate})
    for stage in ("srresnet", "srgan"):
        if stage not in stages:
            continue
        for device in devices:
            rate, ms = bench_stage(stage, device, args)
            label = "stage 1 SRResNet step" if stage == "srresnet" else "stage 2 SRGAN step (G + D + VGG)"
            emit({"what": label, "device": device, "patches_per_s": rate, "ms_per_step": f"{ms:.0f}"})
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
