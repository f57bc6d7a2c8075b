"""Model-card figures: PSNR/SSIM and high-frequency energy per method on a validation folder, plus one image of
side-by-side crops (HR, bicubic, and each model) so the difference can be seen.

    python train/compare_models.py --data path/to/val_hr --scale 4 --methods bicubic srresnet srgan \
        --figure sr_core/weights/side_by_side_x4.png [--image NAME --box X Y SIZE] [--degrade jpeg75]

The high-frequency ratio is the output's spectral energy above half the Nyquist frequency divided by the ground
truth's (Y channel, border cropped): 1.0 means as much fine detail as the original.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by path (`python train/compare_models.py`): see train/__init__.py
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "train"]
    sys.path.insert(0, str(_ROOT))

import argparse

import numpy as np
from PIL import Image, ImageDraw

from sr_core import upscale
from sr_core.classical import mod_crop
from sr_core.data import ImageList, rgb_uint8
from sr_core.degradations import NAMED_DEGRADATIONS
from sr_core.evaluate import make_eval_lr, score_output

LABEL_HEIGHT = 22


def side_by_side(crops: list[tuple[str, Image.Image]], zoom: int) -> Image.Image:
    """Crops in one row, each enlarged by nearest neighbour (so pixels show) and labelled underneath."""
    w, h = crops[0][1].width * zoom, crops[0][1].height * zoom
    gap = 6
    sheet = Image.new("RGB", (len(crops) * (w + gap) - gap, h + LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, crop) in enumerate(crops):
        sheet.paste(crop.resize((w, h), Image.NEAREST), (i * (w + gap), 0))
        draw.text((i * (w + gap) + 4, h + 5), label, fill="black")
    return sheet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--methods", nargs="+", default=["bicubic", "srresnet", "srgan"])
    p.add_argument("--figure", type=Path, help="write the side-by-side crops here (PNG)")
    p.add_argument("--image", help="validation image (name) for the figure; default: the first")
    p.add_argument(
        "--box",
        type=int,
        nargs=3,
        metavar=("X", "Y", "SIZE"),
        default=None,
        help="crop of the HR image for the figure (default: a centred 96x96)",
    )
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument(
        "--degrade",
        default="bicubic",
        choices=list(NAMED_DEGRADATIONS),
        help="named degradation of the bicubic LR, as in python -m sr_core.evaluate --degrade",
    )
    args = p.parse_args(argv)

    images = ImageList.from_source(args.data, split="validation")
    rows: dict[str, list[tuple[float, float, float]]] = {m: [] for m in args.methods}
    figure_crops: list[tuple[str, Image.Image]] = []
    for i in range(len(images)):
        name = images.name(i)
        hr = mod_crop(Image.fromarray(images.rgb(i)), args.scale)
        lr = make_eval_lr(hr, args.scale, args.degrade, name)
        target = rgb_uint8(hr)
        chosen = name == args.image if args.image else i == 0
        if chosen:
            x, y, size = args.box or ((hr.width - 96) // 2, (hr.height - 96) // 2, 96)
            box = (x, y, x + size, y + size)
            figure_crops.append(("ground truth (HR)", hr.crop(box)))
            if args.degrade != "bicubic":
                lr_box = tuple(v // args.scale for v in box)
                figure_crops.append((f"input ({args.degrade}), nearest", lr.crop(lr_box)))
        for method in args.methods:
            out = upscale(lr, method=method, scale=args.scale, precision="fp32")
            scores = score_output(out, target, args.scale, high_frequency=True)
            rows[method].append((scores["psnr"], scores["ssim"], scores["hf_ratio"]))
            if chosen:
                figure_crops.append((f"{method} x{args.scale}", out.crop(box)))
    where = "" if args.degrade == "bicubic" else f", LR {args.degrade}"
    title = f"method (x{args.scale}, {len(images)} images{where})"
    print(f"| {title} | PSNR (dB, Y) | SSIM (Y) | high-frequency energy ratio |")
    print("| --- | ---: | ---: | ---: |")
    for method, values in rows.items():
        mean = np.mean(np.array(values), axis=0)
        print(f"| {method} | {mean[0]:.2f} | {mean[1]:.4f} | {mean[2]:.3f} |")
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        side_by_side(figure_crops, args.zoom).save(args.figure, optimize=True)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
