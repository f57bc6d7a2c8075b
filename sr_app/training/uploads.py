"""Training images into a run's ``data/`` folder: uploaded files, zips (extracted safely), folders (linked).

Every image lands flat in the target folder under a numbered, sanitised name, so nothing a zip or an upload names
can point anywhere else. A held-out share then moves to ``data/val``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sr_core.constants import IMAGE_SUFFIXES

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadError(ValueError):
    """Uploaded data that cannot be used; the message is one sentence naming the file."""


@dataclass(frozen=True)
class Limits:
    """How much one run's data may hold (a zip's own claims are checked while it is read)."""

    max_files: int = 20_000
    max_total_bytes: int = 8 << 30
    max_file_bytes: int = 512 << 20


class _Budget:
    """Counts files and bytes written against :class:`Limits`."""

    def __init__(self, limits: Limits) -> None:
        self.limits, self.files, self.bytes = limits, 0, 0

    def take(self, size: int, name: str) -> int:
        """Account for one more file of ``size`` bytes (refused when over a limit); returns its number."""
        lim = self.limits
        if size > lim.max_file_bytes:
            raise UploadError(f"{name} is larger than {lim.max_file_bytes >> 20} MB, this app's limit per image.")
        self.files, self.bytes = self.files + 1, self.bytes + size
        if self.files > lim.max_files:
            raise UploadError(f"The data holds more than {lim.max_files} images, this app's limit per run.")
        if self.bytes > lim.max_total_bytes:
            raise UploadError(f"The data is larger than {lim.max_total_bytes >> 30} GB, this app's limit per run.")
        return self.files


def is_image_name(name: str) -> bool:
    """An image by its suffix (sr_core's list), and not a hidden or macOS resource-fork file such as ``._a.png``."""
    base = PurePosixPath(name).name
    return not base.startswith(".") and PurePosixPath(base).suffix.lower() in IMAGE_SUFFIXES


def _target_name(folder: Path, name: str, number: int) -> Path:
    """The numbered, sanitised file name in ``folder`` of the ``number``-th image, originally called ``name``."""
    base = PurePosixPath(name.replace("\\", "/")).name
    stem, suffix = PurePosixPath(base).stem, PurePosixPath(base).suffix.lower()
    return folder / f"{number:05d}_{_UNSAFE.sub('_', stem)[:80] or 'image'}{suffix}"


def _unsafe_member(name: str) -> bool:
    """A zip member name that is absolute, has a drive or climbs out with ``..``."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name) is not None


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, folder: Path, budget: _Budget, label: str) -> None:
    """Stream one member into ``folder``, never writing more than its header and the limits allow."""
    target = _target_name(folder, info.filename, budget.take(info.file_size, label))
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget.limits.max_file_bytes:
                raise UploadError(f"{label} is larger than its zip entry says; refusing the zip.")
            sink.write(chunk)


def extract_zip(path: Path, folder: Path, budget: _Budget, shown: str) -> int:
    """The images of the zip ``path`` into ``folder``; other files are skipped. Returns how many were written."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if not i.is_dir()]
            for info in members:
                if _unsafe_member(info.filename):
                    raise UploadError(f"{shown} holds an unsafe path {info.filename!r}; refusing the zip.")
            images = [i for i in members if is_image_name(i.filename) and "__MACOSX" not in i.filename]
            for info in images:
                label = f"{shown}: {info.filename}"
                _copy_member(archive, info, folder, budget, label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise UploadError(f"{shown} is not a readable zip file ({exc}).") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, or an unsupported compression
        raise UploadError(f"{shown} cannot be extracted: {exc}.") from exc
    return len(images)


def collect_uploads(files: Sequence[str | os.PathLike], folder: Path, limits: Limits = Limits()) -> int:
    """Uploaded images and zips of images into ``folder``; returns the number of images written."""
    folder.mkdir(parents=True, exist_ok=True)
    budget, count = _Budget(limits), 0
    for item in files:
        path = Path(item)
        shown = path.name
        if path.suffix.lower() == ".zip":
            count += extract_zip(path, folder, budget, shown)
        elif is_image_name(path.name):
            shutil.copyfile(path, _target_name(folder, path.name, budget.take(path.stat().st_size, shown)))
            count += 1
        else:
            allowed = ", ".join(sorted(IMAGE_SUFFIXES))
            raise UploadError(f"{shown} is neither an image ({allowed}) nor a .zip of images.")
    return count


def _images_under(source: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if is_image_name(name):
                yield Path(dirpath, name)


def link_folder(source: Path, folder: Path, limits: Limits = Limits()) -> int:
    """The images under ``source`` into ``folder`` as hard links (copies where links cannot be made)."""
    folder.mkdir(parents=True, exist_ok=True)
    budget, count = _Budget(limits), 0
    for path in _images_under(source):
        target = _target_name(folder, path.name, budget.take(path.stat().st_size, path.name))
        try:
            os.link(path, target)
        except OSError:
            shutil.copyfile(path, target)
        count += 1
    return count


def hold_out(train: Path, val: Path, share: float, seed: int = 0) -> tuple[int, int]:
    """Move a random ``share`` of the images in ``train`` (at least one, never all) to ``val``; (train, val) counts."""
    files = sorted(p for p in train.iterdir() if p.is_file())
    if len(files) < 2:
        raise UploadError(f"A held-out validation share needs at least 2 images; the data has {len(files)}.")
    if not 0 < share < 1:
        raise UploadError(f"The held-out share must be between 0 and 100%, got {share:.0%}.")
    count = min(len(files) - 1, max(1, round(len(files) * share)))
    val.mkdir(parents=True, exist_ok=True)
    for path in random.Random(seed).sample(files, count):
        path.rename(val / path.name)
    return len(files) - count, count
