"""Where training lives: the trainer's files in the repository, and folders confined to ``--training-root``."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO / "train" / "train.py"
CONFIG_DIR = REPO / "train" / "configs"


class PathError(ValueError):
    """A folder that may not be used; the message is one sentence for the page."""


def resolve_root(root: str | os.PathLike) -> Path:
    """The training root as an absolute, symlink-free path, created when missing."""
    path = Path(root).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"cannot use the training root {root}: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise PathError(f"the training root {root} is not a folder")
    return path


def _outside_link(folder: Path, root: Path) -> Path | None:
    """The first entry under ``folder`` that is a link leading outside ``root``, if any."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            entry = Path(dirpath, name)
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                return entry
    return None


def folder_inside(root: Path, text: str | None, what: str) -> Path:
    """The existing folder ``text`` (relative to ``root``, or absolute) when it and every link in it stay inside.

    Paths outside the root are refused before anything is checked there, so the answer says nothing about them."""
    if not text or not str(text).strip():
        raise PathError(f"Enter the {what} folder: a folder under the training root {root}.")
    candidate = Path(str(text).strip()).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise PathError(f"The {what} folder {text} is outside the training root {root}; only folders under it work.")
    if not resolved.is_dir():
        raise PathError(f"The {what} folder {text} does not exist under the training root {root}.")
    link = _outside_link(resolved, root)
    if link is not None:
        raise PathError(f"The {what} folder {text} holds {link.name}, a link to outside the training root; refused.")
    return resolved


def config_files() -> dict[str, Path]:
    """The shipped training configs by name (``srresnet_x4`` ...), in the order the page lists them."""
    files = {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}
    first = [n for n in ("srresnet_x4", "srresnet_x2", "srgan_x4", "srgan_x2") if n in files]
    return {name: files[name] for name in [*first, *sorted(set(files) - set(first))]}
