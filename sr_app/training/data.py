"""Where a run's images come from (uploads, a folder under the training root, or the config's hub dataset), as
trainer overrides; uploaded and held-out images are written into the run's ``data/`` folder."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import folder_inside
from .uploads import UploadError, collect_uploads, hold_out, link_folder

UPLOAD, FOLDER, HUB = "upload", "folder", "hub"
HELD_OUT = "held_out"
SOURCES = {UPLOAD: "Upload images or a zip", FOLDER: "A folder under the training root",
           HUB: "The config's hub dataset"}  # fmt: skip
VAL_SOURCES = {HELD_OUT: "A held-out share of the training images", UPLOAD: "Upload validation images or a zip",
               FOLDER: "A validation folder under the training root"}  # fmt: skip
DEFAULT_SHARE = 10.0
"""Percent of the training images held out for validation."""


@dataclass(frozen=True)
class DataChoice:
    """The page's data fields."""

    source: str = UPLOAD
    uploads: Sequence[str] = ()
    folder: str = ""
    val_source: str = HELD_OUT
    val_share: float = DEFAULT_SHARE  # percent
    val_uploads: Sequence[str] = ()
    val_folder: str = ""


def _paths(files: Any) -> list[str]:
    """Upload paths from the page or the API (None, one path, or a list of paths or file dicts)."""
    if not files:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    return [str(f["path"] if isinstance(f, dict) else f) for f in items]


def check_choice(choice: DataChoice) -> None:
    """Refuse missing or unknown fields before anything is copied."""
    if choice.source not in SOURCES:
        raise UploadError(f"Unknown data source {choice.source!r}; choose one of {', '.join(SOURCES)}.")
    if choice.val_source not in VAL_SOURCES:
        raise UploadError(f"Unknown validation source {choice.val_source!r}; choose one of {', '.join(VAL_SOURCES)}.")
    if choice.source == UPLOAD and not _paths(choice.uploads):
        raise UploadError("Upload some training images (several files, or a zip) first.")
    if choice.val_source == UPLOAD and not _paths(choice.val_uploads):
        raise UploadError("Upload validation images (several files, or a zip), or choose another validation source.")


def _validation(choice: DataChoice, root: Path, train: Path | None, data: Path) -> Path | None:
    """The validation folder: held out of ``train`` (None for the hub: its own validation split), uploaded, or given."""
    if choice.val_source == FOLDER:
        return folder_inside(root, choice.val_folder, "validation")
    if choice.val_source == UPLOAD:
        if not collect_uploads(_paths(choice.val_uploads), data / "val"):
            raise UploadError("The validation upload holds no images.")
        return data / "val"
    if train is None:
        return None
    share = float(choice.val_share if choice.val_share is not None else DEFAULT_SHARE)
    hold_out(train, data / "val", share / 100)
    return data / "val"


def _training(choice: DataChoice, root: Path, data: Path) -> Path | None:
    """The training folder of the chosen source (the run's own copy for uploads and held-out splits); None for the
    hub dataset."""
    if choice.source == HUB:
        return None
    if choice.source == UPLOAD:
        if not collect_uploads(_paths(choice.uploads), data / "train"):
            raise UploadError("The upload holds no images (accepted: image files, or a zip of them).")
        return data / "train"
    folder = folder_inside(root, choice.folder, "training")
    if choice.val_source != HELD_OUT:
        return folder
    if not link_folder(folder, data / "train"):
        raise UploadError(f"The folder {choice.folder} holds no images.")
    return data / "train"


def prepare(choice: DataChoice, root: Path, run: Path) -> list[str]:
    """Put the chosen images in place for the run in ``run``; the trainer's ``data.*`` overrides.

    On any failure the run's ``data/`` folder is removed again (uploads themselves are never touched)."""
    check_choice(choice)
    data = run / "data"
    try:
        train = _training(choice, root, data)
        val = _validation(choice, root, train, data)
    except BaseException:
        shutil.rmtree(data, ignore_errors=True)
        raise
    items = [f"data.train_dir={quoted(train)}"] if train else []
    items += [f"data.val_dir={quoted(val)}"] if val else []
    if train:
        items.append(f"data.cache_dir={quoted(root / '.cache')}")
    return items


def quoted(path: Path) -> str:
    """A path as an override value the trainer's YAML reading keeps as it is (spaces, colons, # and all)."""
    return json.dumps(str(path))
