"""Regenerate the bundled sample photos from scikit-image's public-domain / CC0 data (run once, by hand)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).resolve().parent
MAX_SIDE = 256

# name -> (loader, crop box (left, top, right, bottom) or None)
SOURCES = {
    "astronaut": (data.astronaut, None),
    "coffee": (data.coffee, (100, 0, 500, 400)),
    "chelsea": (data.chelsea, (50, 0, 350, 300)),
    "rocket": (data.rocket, (120, 0, 520, 400)),
}


def main() -> None:
    for name, (loader, box) in SOURCES.items():
        image = Image.fromarray(np.asarray(loader()))
        if box is not None:
            image = image.crop(box)
        scale = MAX_SIDE / max(image.size)
        if scale < 1:
            size = (round(image.width * scale), round(image.height * scale))
            image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        image.save(HERE / f"{name}.png", optimize=True)
        print(f"{name}.png {image.size}")


if __name__ == "__main__":
    main()
