"""Ship a trained generator: copy a run's ``best/`` into ``sr_core/weights`` with its manifest entry and card.

The entry records the architecture config, the sha256, how the model was trained (command, config, data, steps,
wall time, hardware) and its evaluation on a validation folder next to bicubic. Weights are stored as fp16 when
that keeps the validation PSNR within 0.05 dB of fp32, else as fp32. The folder's model card (``README.md``) gets
its Hub front matter rewritten from the manifest (library, task, tags, licence, datasets, every model's PSNR/SSIM
as ``model-index``); its body is kept. ``--hub-folder DIR`` also writes a save_pretrained() folder with a card of
its own, ready for ``hf upload USER/NAME DIR``.

    python train/export_weights.py --run runs/srresnet_x4 --name srresnet --label SRResNet \
        --description "..." --eval-data ../shared/data/val --command "accelerate launch train/train.py ..."
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by path (`python train/export_weights.py`): see train/__init__.py
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "train"]
    sys.path.insert(0, str(_ROOT))

import argparse
import json
import os
import platform
import tempfile

import torch
import yaml

from sr_core.degradations import NAMED_DEGRADATIONS
from sr_core.evaluate import evaluate
from sr_core.models import load_pretrained
from sr_core.registry import PACKAGE_WEIGHTS_DIR, write_manifest_entry, write_weights_card

FP16_TOLERANCE_DB = 0.05


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}"


def _scores(result: dict) -> dict[str, float]:
    """The rounded mean PSNR/SSIM of an evaluation, with bicubic's."""
    return {k: round(v, 3 if k.endswith("psnr") else 4) for k, v in result["mean"].items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="training output_dir (uses its best/ generator)")
    p.add_argument("--which", default="best", choices=["best", "last"])
    p.add_argument("--name", required=True, help="method name offered to users, e.g. srresnet or srgan")
    p.add_argument("--label", required=True)
    p.add_argument("--description", required=True)
    p.add_argument("--eval-data", required=True, help="folder of HR validation images")
    p.add_argument("--command", required=True, help="the training command(s) that produced the run")
    p.add_argument("--data", default="../shared/data/train: T91 + 190 BSD200 training images (281 HR PNGs)")
    p.add_argument("--wall-hours", type=float, required=True, help="training wall time in hours")
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="optimiser steps along the whole lineage when the run started from another (train.init_from); "
        "default: the run's own step",
    )
    p.add_argument("--notes", default="")
    p.add_argument(
        "--degrade",
        nargs="*",
        default=[],
        choices=[k for k in NAMED_DEGRADATIONS if k != "bicubic"],
        help="also evaluate on these named degradations of the LR (recorded under evaluation.degraded)",
    )
    p.add_argument("--weights-dir", type=Path, default=PACKAGE_WEIGHTS_DIR)
    p.add_argument(
        "--dataset", action="append", default=[], metavar="HUB_ID",
        help="a Hub dataset id the model was trained on, for the card's front matter (repeatable)",
    )  # fmt: skip
    p.add_argument("--hub-folder", type=Path, default=None, help="also write a save_pretrained() folder with its card")
    p.add_argument("--hub-id", default=None, help="the Hub id that --hub-folder's card names in its usage examples")
    args = p.parse_args(argv)

    source = args.run / args.which
    model = load_pretrained(source)
    scale = model.config.scale
    info = json.loads((source / "training.json").read_text()) if (source / "training.json").is_file() else {}
    config = yaml.safe_load((args.run / "config.yaml").read_text()) if (args.run / "config.yaml").is_file() else {}

    fp32 = evaluate(source, scale, args.eval_data, precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, dtype=torch.float16)
        fp16 = evaluate(tmp, scale, args.eval_data, baseline=None, precision="fp32")
    delta = fp16["mean"]["psnr"] - fp32["mean"]["psnr"]
    dtype = torch.float16 if abs(delta) <= FP16_TOLERANCE_DB else torch.float32

    evaluation = {
        "data": str(args.eval_data),
        "num_images": fp32["num_images"],
        "convention": fp32["convention"],
        "psnr": round(fp32["mean"]["psnr"], 3),
        "ssim": round(fp32["mean"]["ssim"], 4),
        "bicubic_psnr": round(fp32["mean"]["bicubic_psnr"], 3),
        "bicubic_ssim": round(fp32["mean"]["bicubic_ssim"], 4),
        "fp16_storage_psnr_delta": round(delta, 4),
    }
    if args.degrade:
        evaluation["degraded"] = {
            spec: _scores(evaluate(source, scale, args.eval_data, degrade=spec)) for spec in args.degrade
        }
    training = {
        "command": args.command,
        "config": config,
        "data": args.data,
        "steps": args.total_steps if args.total_steps is not None else info.get("step"),
        "stage": info.get("stage"),
        "ema_decay": info.get("ema_decay"),
        "val_at_export": info.get("val"),
        "wall_time_hours": args.wall_hours,
        "hardware": hardware(),
        "notes": args.notes,
        "datasets": args.dataset or None,
    }
    entry = write_manifest_entry(
        args.weights_dir,
        model,
        name=args.name,
        label=args.label,
        description=args.description,
        dtype=dtype,
        extra={"training": training, "evaluation": evaluation},
    )
    card = write_weights_card(args.weights_dir)
    if args.hub_folder is not None:
        card_kwargs = {
            "model_id": args.hub_id, "title": f"SR Studio {args.label} x{scale}", "description": args.description,
            "training": training, "evaluation": evaluation, "datasets": args.dataset or None,
        }  # fmt: skip
        model.save_pretrained(args.hub_folder, dtype=dtype, model_card_kwargs=card_kwargs)
    print(json.dumps({k: entry[k] for k in ("name", "scale", "file", "sha256", "dtype")}, indent=2))
    print(json.dumps(evaluation, indent=2))
    print(f"model card front matter refreshed: {card}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
