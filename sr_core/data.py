"""Training and validation data for super-resolution, read through the ``datasets`` library.

A *source* is either a local folder of images (loaded with the ``imagefolder`` builder, sub-folders included)
or a dataset id on the Hugging Face Hub. The default is DIV2K from ``goodfellowliu/DIV2K``, a plain repository
of the official zips: with ``data_files`` naming the HR zips the folder builder unpacks them, one split each
(``DIV2K_HUB_FILES``). Loading-script datasets such as ``eugenesiow/Div2k`` no longer load with ``datasets``.

Training samples (:class:`PatchDataset`) are random HR crops with a random flip and 90-degree rotation; the
LR input is made from the augmented crop by :func:`sr_core.classical.downscale` (PIL's antialiased bicubic),
the same function evaluation uses, or by the realistic pipeline of :mod:`sr_core.degradations`. Sample ``i``
depends only on ``(seed, i)``, so a run resumed at step ``s`` or split over several processes sees exactly the
patches an uninterrupted single run would.

Images whose shorter side is below the patch size are skipped (counted in ``PatchDataset.skipped``); colour
modes are normalised to RGB by :func:`rgb_uint8` (grey is replicated, alpha dropped, 16-bit scaled to 8-bit).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .atomic import write_json_atomic
from .classical import downscale
from .degradations import DegradationConfig, degrade
from .errors import ImageLoadError, OfflineError, SRError
from .io import load_image, save_image, to_uint8
from .progress import ProgressCallback

logger = logging.getLogger(__name__)

DIV2K_HUB_ID = "goodfellowliu/DIV2K"
DIV2K_HUB_FILES = {"train": "DIV2K_train_HR.zip", "validation": "DIV2K_valid_HR.zip"}
HUB_TIMEOUT_S = 10.0
SUBIMAGE_MARKER = ".subimages.json"



def _offline_message(repo_id: str, reason: object) -> str:
    return (
        f"Could not load the dataset '{repo_id}' from the Hugging Face Hub ({reason}). Pass a local folder of "
        "images instead (training: data.train_dir=/path/to/train_images data.val_dir=/path/to/val_images); "
        "if the dataset is already in the local cache, set HF_HUB_OFFLINE=1 to use it without network."
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_DATASETS_OFFLINE", ""), os.environ.get("HF_HUB_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def check_hub_dataset(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> None:
    """Fail fast (one request, ``timeout`` seconds) when the hub cannot be reached, instead of long retries."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().dataset_info(repo_id, timeout=timeout)
    except RepositoryNotFoundError as exc:
        raise SRError(
            f"'{repo_id}' is neither a local folder nor a dataset on the Hugging Face Hub (or it is private)"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any transport failure means: offline
        raise OfflineError(_offline_message(repo_id, f"{type(exc).__name__}: {exc}")) from exc


def _image_column(dataset: Any) -> str:
    import datasets

    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    raise SRError(f"The dataset has no image column (columns: {list(dataset.features)})")


def load_image_dataset(
    source: str | os.PathLike,
    *,
    split: str = "train",
    data_files: str | dict[str, str] | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """A ``datasets.Dataset`` of one split whose image column is left undecoded (path or bytes).

    A local folder becomes a single split of all its images (``split`` is ignored); a hub id is loaded with
    ``data_files`` (for DIV2K, :data:`DIV2K_HUB_FILES`). Offline, a hub id fails within seconds with an
    :class:`OfflineError` saying to pass a local folder.
    """
    import datasets

    path = Path(source)
    cache = str(cache_dir) if cache_dir is not None else None
    if path.is_dir():
        try:
            ds = datasets.load_dataset("imagefolder", data_dir=str(path), split="train", cache_dir=cache)
        except (FileNotFoundError, ValueError) as exc:
            raise SRError(f"No images found in {path}: {exc}") from exc
    elif path.exists() or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1:
        raise SRError(f"{source} is not a folder of images (and does not look like a hub dataset id 'user/name')")
    else:
        repo_id = str(source)
        if not _hub_offline():
            check_hub_dataset(repo_id)
        try:
            ds = datasets.load_dataset(repo_id, data_files=data_files, split=split, cache_dir=cache)
        except ConnectionError as exc:
            raise OfflineError(_offline_message(repo_id, exc)) from exc
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise SRError(f"Cannot load split '{split}' of '{repo_id}' with data_files={data_files}: {exc}") from exc
    column = _image_column(ds)
    return ds.cast_column(column, datasets.Image(decode=False))


def rgb_uint8(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB for any image :func:`sr_core.io.load_image` returns (grey replicated, alpha dropped)."""
    array = to_uint8(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


class ImageList(Sequence):
    """Random access to the images of a dataset (undecoded column), decoding each with ``sr_core.io``."""

    def __init__(self, dataset: Any, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.column = _image_column(dataset)
        self.indices = list(range(len(dataset))) if indices is None else list(indices)

    @classmethod
    def from_source(
        cls,
        source: str | os.PathLike,
        *,
        split: str = "train",
        data_files: str | dict[str, str] | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> ImageList:
        """Load a folder or hub id (see :func:`load_image_dataset`), sorted by file name."""
        images = cls(load_image_dataset(source, split=split, data_files=data_files, cache_dir=cache_dir))
        return images.subset(sorted(range(len(images)), key=images.name))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Image.Image:  # type: ignore[override]
        return self.open(i)

    def _record(self, i: int) -> dict[str, Any]:
        return self.dataset[self.indices[i]][self.column]

    def name(self, i: int) -> str:
        path = self._record(i).get("path")
        return Path(path).name if path else f"image_{self.indices[i]:05d}"

    def _source(self, i: int) -> Any:
        record = self._record(i)
        return record["bytes"] if record.get("bytes") else record["path"]

    def open(self, i: int) -> Image.Image:
        """The decoded, upright image (ImageLoadError names the file if it is broken)."""
        return load_image(self._source(i), name=self.name(i))

    def rgb(self, i: int) -> np.ndarray:
        return rgb_uint8(self.open(i))

    def size(self, i: int) -> tuple[int, int]:
        """(width, height) from the header only, without decoding the pixels."""
        import io

        source = self._source(i)
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return img.size

    def probe(self, i: int) -> tuple[int, int]:
        """(width, height) after checking the file's structure (PNG chunk checksums, truncation) without a decode.

        Raises ImageLoadError naming the file when it is not a readable image.
        """
        import io

        source = self._source(i)
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                size = img.size
                img.verify()
        except Image.UnidentifiedImageError as exc:
            raise ImageLoadError(f"{self.name(i)}: not an image file") from exc
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
            raise ImageLoadError(f"{self.name(i)}: not a readable image ({type(exc).__name__}: {exc})") from exc
        return size

    def readable(self) -> tuple[ImageList, list[str]]:
        """This list without the files :meth:`probe` rejects, and one message per rejected file."""
        keep, problems = [], []
        for i in range(len(self)):
            try:
                self.probe(i)
                keep.append(i)
            except ImageLoadError as exc:
                problems.append(str(exc))
        return self.subset(keep), problems

    def subset(self, positions: Sequence[int]) -> ImageList:
        """The images at the given positions of this list, in that order."""
        return ImageList(self.dataset, [self.indices[p] for p in positions])


def augment(patch: np.ndarray, hflip: bool, rotations: int) -> np.ndarray:
    """Horizontal flip then ``rotations`` x 90 degrees counter-clockwise: the 8 symmetries of the square."""
    if hflip:
        patch = patch[:, ::-1]
    return np.ascontiguousarray(np.rot90(patch, rotations, axes=(0, 1)))


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR input for an HR uint8 patch: :func:`sr_core.classical.downscale` (PIL antialiased bicubic)."""
    return np.asarray(downscale(Image.fromarray(hr), scale))


class PatchDataset(torch.utils.data.Dataset):
    """Training pairs: item ``i`` is ``{"lr": uint8 3xhxw, "hr": uint8 3xHxW}`` drawn with RNG seeded by (seed, i).

    ``length`` is the number of samples a run consumes (steps x batch x processes); it can be larger than the
    number of images, every item being an independent draw of image, crop position, flip and rotation.
    """

    def __init__(
        self,
        images: ImageList,
        *,
        patch_size: int,
        scale: int,
        seed: int,
        length: int,
        augment: bool = True,
        degradation: DegradationConfig | None = None,
    ) -> None:
        if patch_size % scale:
            raise ValueError(f"patch size {patch_size} is not a multiple of the scale {scale}")
        self.images = images
        self.patch_size = patch_size
        self.scale = scale
        self.seed = seed
        self.length = length
        self.augment = augment
        self.degradation = degradation
        self.unreadable: list[str] = []
        self.usable = []
        for i in range(len(images)):
            try:
                if min(images.probe(i)) >= patch_size:
                    self.usable.append(i)
            except ImageLoadError as exc:
                self.unreadable.append(str(exc))
        if self.unreadable:
            logger.warning(
                "Skipping %d unreadable training image(s): %s", len(self.unreadable), "; ".join(self.unreadable)
            )
        self.skipped = len(images) - len(self.usable) - len(self.unreadable)
        if self.skipped:
            logger.warning(
                "Skipping %d of %d images smaller than the %dx%d patch",
                self.skipped,
                len(images),
                patch_size,
                patch_size,
            )
        if not self.usable:
            raise SRError(
                f"None of the {len(images)} training images is readable and at least {patch_size}x{patch_size} pixels"
            )
        self._failed: set[int] = set()

    def __len__(self) -> int:
        return self.length

    def sibling(self, *, seed: int, length: int) -> PatchDataset:
        """The same images and settings with another seed and length, without probing the files again."""
        other = copy.copy(self)
        other.seed, other.length, other._failed = seed, length, set()
        return other

    def _draw_image(self, rng: np.random.Generator) -> np.ndarray:
        """A random usable image; one that fails to decode (truncated past its header) is logged once and
        replaced by another draw from the same generator, so the run goes on and stays deterministic."""
        for _ in range(len(self.usable)):
            position = self.usable[int(rng.integers(len(self.usable)))]
            try:
                return self.images.rgb(position)
            except ImageLoadError as exc:
                if position not in self._failed:
                    self._failed.add(position)
                    logger.warning("Skipping a training image that fails to decode: %s", exc)
        raise SRError("The training images fail to decode; check the data folder")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        image = self._draw_image(rng)
        p = self.patch_size
        top = int(rng.integers(image.shape[0] - p + 1))
        left = int(rng.integers(image.shape[1] - p + 1))
        hr = image[top : top + p, left : left + p]
        if self.augment:
            hr = augment(hr, bool(rng.integers(2)), int(rng.integers(4)))
        hr = np.ascontiguousarray(hr)
        lr = make_lr(hr, self.scale) if self.degradation is None else degrade(hr, self.scale, self.degradation, rng)
        return {
            "lr": torch.from_numpy(lr.transpose(2, 0, 1).copy()),
            "hr": torch.from_numpy(hr.transpose(2, 0, 1).copy()),
        }


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central size x size window (each side kept whole where the image is smaller)."""
    width, height = image.size
    w, h = min(size, width), min(size, height)
    left, top = (width - w) // 2, (height - h) // 2
    return image.crop((left, top, left + w, top + h))


def iter_validation(
    images: ImageList, *, center_crop_size: int = 0, max_images: int = 0
) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB HR image) pairs, optionally centre-cropped; evaluation mod-crops and downscales them."""
    count = len(images) if max_images <= 0 else min(max_images, len(images))
    for i in range(count):
        image = Image.fromarray(images.rgb(i))
        yield images.name(i), center_crop(image, center_crop_size) if center_crop_size else image


def _positions(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def subimage_boxes(width: int, height: int, size: int, step: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes (left, top, right, bottom) of size x size covering the image with stride ``step``.

    As in the DIV2K preparation scripts, a last row/column flush with the edge is added so no pixel is lost;
    an image smaller than ``size`` in a dimension is kept whole in that dimension.
    """
    return [
        (x, y, min(x + size, width), min(y + size, height))
        for y in _positions(height, size, step)
        for x in _positions(width, size, step)
    ]


def default_subimage_dir(source_key: str, size: int, step: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where sub-images of a source are cached: ``<cache>/subimages/<name>-<hash>`` (one per source and size)."""
    base = Path(cache_dir) if cache_dir else Path(os.environ.get("SR_STUDIO_CACHE", "~/.cache/sr_studio"))
    digest = hashlib.sha256(f"{source_key}|{size}|{step}".encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(source_key).name)[:40] or "images"
    return base.expanduser() / "subimages" / f"{slug}-{size}-{step}-{digest}"


def prepare_subimages(
    images: ImageList,
    out_dir: str | os.PathLike,
    *,
    size: int = 480,
    step: int = 240,
    progress: ProgressCallback | None = None,
) -> Path:
    """Cut every image into overlapping size x size PNG sub-images under ``out_dir`` (done once, then reused).

    Decoding a 480x480 PNG is an order of magnitude cheaper than a 2K one, so random patches are drawn from
    these. A marker file records the parameters; a folder with a matching marker is returned as is, and an
    interrupted preparation is resumed (each file is written under a temporary name and renamed).
    """
    out = Path(out_dir)
    marker = out / SUBIMAGE_MARKER
    params = {"size": size, "step": step, "images": len(images)}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()).get("params") == params:
                return out
        except (OSError, json.JSONDecodeError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for i in range(len(images)):
        stem = Path(images.name(i)).stem
        image = Image.fromarray(images.rgb(i))
        for k, box in enumerate(subimage_boxes(image.width, image.height, size, step)):
            target = out / f"{stem}_s{k:03d}.png"
            count += 1
            if not target.is_file():
                save_image(image.crop(box), target, png_compression=1)
        if progress is not None:
            progress(i + 1, len(images))
    write_json_atomic(marker, {"params": params, "subimages": count})
    return out
