"""The items of a blind rating study and how they are picked, rendered and cached.

An item is (test image, method, scale): the image is shrunk by ``scale`` (bicubic,
``sr_core.classical.downscale``) and upscaled back by the method, so it can be judged against the original,
which is itself offered as the control method :data:`~sr_app.mos.store.GROUND_TRUTH`. Renders are written
once as lossless PNG into a cache folder under a name derived from the item id (the test image's content hash
included), so an item always shows the same pixels, rating is instant, and the file name tells nothing about
the method.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sr_core.classical import downscale, mod_crop
from sr_core.constants import APP_MAX_PIXELS, IMAGE_SUFFIXES
from sr_core.errors import SRError
from sr_core.io import load_image, save_image, to_uint8
from sr_core.pipeline import upscale
from sr_core.registry import MethodInfo, available_methods

from .store import GROUND_TRUTH, AlreadyShownError, Item, Rating, RatingStore, Shown, check_text

logger = logging.getLogger(__name__)

DEFAULT_SCALES: tuple[int, ...] = (4,)


@dataclass(frozen=True)
class StudyItem:
    """An item of the study and the high-resolution file it is made from."""

    item: Item
    source: Path

    @property
    def item_id(self) -> str:
        return self.item.item_id


def find_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (suffixes in ``sr_core.constants.IMAGE_SUFFIXES``), by name."""
    directory = Path(folder)
    if not directory.is_dir():
        raise SRError(f"{directory}: no such folder of test images")
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_key(path: str | os.PathLike) -> str:
    """``<stem>-<first 8 hex digits of the file's SHA-256>``: a changed file makes new items."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return f"{path.stem}-{digest}"


def build_items(
    images: Sequence[str | os.PathLike],
    methods: Sequence[str],
    scales: Sequence[int] = DEFAULT_SCALES,
    *,
    control: bool = True,
) -> list[StudyItem]:
    """Every (image, method, scale), plus the ground-truth control per (image, scale) when ``control``.

    Item ids read ``<image key>:<method>:x<scale>``.
    """
    items: list[StudyItem] = []
    names = [*methods, GROUND_TRUTH] if control else list(methods)
    if not names:
        raise SRError("a rating study needs at least one method")
    for source in images:
        path = Path(source)
        try:
            key = image_key(path)
        except OSError as exc:
            raise SRError(f"{path}: cannot read the test image ({exc.strerror or exc})") from exc
        for scale in scales:
            for name in names:
                items.append(StudyItem(Item(f"{key}:{name}:x{scale}", key, name, int(scale)), path))
    return items


def offered_methods(
    scales: Sequence[int], names: Sequence[str] | None = None, weights_dir: str | os.PathLike | None = None
) -> list[str]:
    """Registered methods that support every scale in ``scales`` (restricted to ``names`` when given)."""
    infos: list[MethodInfo] = available_methods(weights_dir)
    by_name = {m.name: m for m in infos}
    if names is not None:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise SRError(f"unknown method(s) for the rating study: {', '.join(unknown)}")
        infos = [by_name[n] for n in names]
    return [m.name for m in infos if all(s in m.scales for s in scales)]


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else Image.fromarray(to_uint8(image)).convert("RGB")


class Study:
    """A rating study: the item catalogue, its render cache and the ratings store.

    Safe to use from many threads: the store opens a connection per call and renders are serialised by a lock.
    """

    def __init__(
        self,
        store: RatingStore,
        items: Sequence[StudyItem],
        cache_dir: str | os.PathLike,
        *,
        device: str = "auto",
        weights_dir: str | os.PathLike | None = None,
        max_pixels: int = APP_MAX_PIXELS,
        seed: int | None = None,
    ) -> None:
        if not items:
            raise SRError("a rating study needs at least one item")
        self.store = store
        self.items: dict[str, StudyItem] = {}
        for entry in items:
            if entry.item_id in self.items:
                raise SRError(f"duplicate item {entry.item_id!r} in the rating study")
            self.items[entry.item_id] = entry
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.weights_dir = weights_dir
        self.max_pixels = max_pixels
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._broken: set[str] = set()
        store.register_items(entry.item for entry in items)

    @classmethod
    def from_folder(
        cls,
        db_path: str | os.PathLike,
        images_dir: str | os.PathLike,
        *,
        methods: Sequence[str] | None = None,
        scales: Sequence[int] = DEFAULT_SCALES,
        control: bool = True,
        cache_dir: str | os.PathLike | None = None,
        device: str = "auto",
        weights_dir: str | os.PathLike | None = None,
        max_pixels: int = APP_MAX_PIXELS,
        seed: int | None = None,
    ) -> Study:
        """A study of every image in ``images_dir`` x ``methods`` x ``scales``, stored in ``db_path``.

        ``methods`` defaults to every registered method that supports the scales; renders go to ``cache_dir``
        (default: ``<db stem>_images`` next to the database).
        """
        images = find_images(images_dir)
        if not images:
            raise SRError(f"{images_dir}: no test images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        names = offered_methods(scales, methods, weights_dir)
        store = RatingStore(db_path)
        cache = Path(cache_dir) if cache_dir is not None else store.path.with_name(f"{store.path.stem}_images")
        items = build_items(images, names, scales, control=control)
        return cls(store, items, cache, device=device, weights_dir=weights_dir, max_pixels=max_pixels, seed=seed)

    @property
    def total(self) -> int:
        """Number of items in the study (what one visitor can rate at most)."""
        return len(self.items)

    def cache_path(self, item_id: str) -> Path:
        """Where the render of ``item_id`` is cached: an opaque name that does not reveal the method."""
        return self.cache_dir / f"{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:24]}.png"

    def _make(self, entry: StudyItem) -> Image.Image:
        scale = entry.item.scale
        truth = mod_crop(_rgb(load_image(entry.source, max_pixels=self.max_pixels)), scale)
        if entry.item.method == GROUND_TRUTH:
            return truth
        low = downscale(truth, scale)
        result = upscale(
            low, entry.item.method, scale, device=self.device, weights_dir=self.weights_dir, max_pixels=None
        )
        if result.size != truth.size:
            raise SRError(f"{entry.item_id}: render is {result.size}, expected {truth.size}")
        return _rgb(result)

    def render(self, item_id: str) -> Path:
        """The cached PNG of ``item_id``, rendered first if missing."""
        entry = self.items.get(item_id)
        if entry is None:
            raise SRError(f"unknown item {item_id!r}")
        path = self.cache_path(item_id)
        if path.is_file():
            return path
        with self._render_lock:
            if not path.is_file():
                save_image(self._make(entry), path)
        return path

    def image(self, item_id: str) -> Image.Image:
        """The pixels shown for ``item_id`` (decoded from the cached PNG)."""
        with Image.open(self.render(item_id)) as img:
            img.load()
            return img.copy()

    def prepare(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Render every missing item now (failures are logged and the item left out); returns renders made."""
        made = 0
        ids = list(self.items)
        for done, item_id in enumerate(ids, 1):
            if not self.cache_path(item_id).is_file() and item_id not in self._broken:
                try:
                    self.render(item_id)
                    made += 1
                except Exception:
                    logger.exception("Rating study: cannot render %s; it is left out", item_id)
                    self._broken.add(item_id)
            if progress is not None:
                progress(done, len(ids))
        return made

    def next_item(self, visitor_id: str, *, previous: str | None = None) -> Shown | None:
        """Pick an item this visitor has not seen, record it as shown, and return it; None when all are done.

        The method is drawn uniformly from those with unseen items, then the image, avoiding the image of
        ``previous`` (an item id) when another is possible.
        """
        check_text(visitor_id, "visitor id")
        previous_image = self.items[previous].item.image if previous in self.items else None
        while True:
            seen = self.store.seen(visitor_id)
            unseen = [e for i, e in self.items.items() if i not in seen and i not in self._broken]
            if not unseen:
                return None
            with self._random_lock:
                method = self._random.choice(sorted({e.item.method for e in unseen}))
                candidates = [e for e in unseen if e.item.method == method]
                fresh = [e for e in candidates if e.item.image != previous_image]
                choice = self._random.choice(fresh or candidates)
            try:
                self.render(choice.item_id)
            except Exception:
                logger.exception("Rating study: cannot render %s; it is left out", choice.item_id)
                self._broken.add(choice.item_id)
                continue
            try:
                return self.store.show(visitor_id, choice.item_id)
            except AlreadyShownError:
                continue

    def rate(self, shown: Shown, score: object) -> Rating:
        """Store the visitor's score for the item they were shown."""
        return self.store.add_rating(shown.visitor_id, shown.item_id, score, token=shown.token)

    def shown_count(self, visitor_id: str) -> int:
        """How many items of this study the visitor has been shown (including the one on screen)."""
        return len(self.store.seen(visitor_id) & self.items.keys())
