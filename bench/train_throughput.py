"""Training throughput: HR patches per second of the data pipeline alone, stage 1 and stage 2 steps.

    python bench/train_throughput.py                          # full-size models, CPU (and CUDA when present)
    python bench/train_throughput.py --num-blocks 4 --channels 32 --batch-size 4 --steps 2   # quick look

The model steps run the trainer's own ``Trainer.step`` on synthetic uint8 batches (so they measure compute only);
stage 2 includes the discriminator and the VGG19 content loss (random VGG weights: same cost as ImageNet ones).
The data row decodes real images, crops, augments and makes LR exactly as training does, so comparing it with
the model rows shows whether loading is the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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


def bench_stage(stage: str, device: str, args: argparse.Namespace) -> tuple[float, float]:
    """(patches/s, ms/step) of ``Trainer.step`` for a stage on a device."""
    overrides = [
        f"train.stage={stage}", f"model.scale={args.scale}", f"model.num_blocks={args.num_blocks}",
        f"model.channels={args.channels}", f"model.d_channels={args.d_channels}", f"data.patch_size={args.patch_size}",
        f"data.batch_size={args.batch_size}", "data.train_dir=unused", "validate_every=0",
        f"mixed_precision={args.mixed_precision}",
    ]  # fmt: skip
    if stage == "srgan":
        overrides += ["loss.pixel_weight=0", "loss.content_weight=1", "loss.vgg_weights=random",
                      "loss.adversarial_weight=0.001", "loss.vgg_feature_scale=0.0784"]  # fmt: skip
    config = load_config(None, overrides)
    try:
        trainer = Trainer(config, Accelerator(cpu=device == "cpu", mixed_precision=args.mixed_precision))
        trainer.prepare()
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
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return args.batch_size / seconds, seconds * 1000


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
    args = parser.parse_args(argv)
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
