"""The Train tab: start, watch, stop, resume and use training runs from the browser (``app.py --enable-training``).

The tab module is not even imported, and no component or endpoint exists, unless training is enabled: visitors of
a public demo cannot spend its compute. Runs live in their own folders under ``--training-root``; the trainer runs as a
subprocess (``accelerate launch train/train.py``) that keeps going when the page is closed.

This package imports no Gradio: ``sr_app.cli`` reads :func:`env_enabled` and :func:`training_problem` at start-up,
and :func:`training_tabs` loads the tab itself only when it is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .paths import TRAIN_SCRIPT, PathError, resolve_root

ENABLE_ENV = "SR_STUDIO_ENABLE_TRAINING"
ROOT_ENV = "SR_STUDIO_TRAINING_ROOT"
DEFAULT_ROOT = "runs"
_TRUE = {"1", "true", "yes", "on"}

__all__ = ["DEFAULT_ROOT", "ENABLE_ENV", "ROOT_ENV", "env_enabled", "default_root", "training_problem", "training_tabs"]


def env_enabled() -> bool:
    """Whether ``SR_STUDIO_ENABLE_TRAINING`` asks for the Train tab (1, true, yes or on)."""
    return os.environ.get(ENABLE_ENV, "").strip().lower() in _TRUE


def default_root() -> str:
    """The training root when ``--training-root`` is not given: ``$SR_STUDIO_TRAINING_ROOT`` or ``./runs``."""
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT


def training_problem(enabled: bool, root: str) -> str | None:
    """Why the Train tab cannot be offered (no trainer, an unusable root), in one sentence; None when it can."""
    if not enabled:
        return None
    if not TRAIN_SCRIPT.is_file():
        return f"--enable-training needs the trainer {TRAIN_SCRIPT}, which is not part of this installation"
    try:
        resolve_root(root)
    except PathError as exc:
        return str(exc)
    return None


def training_tabs(enabled: bool, root: str) -> list[Callable[[Any], None]]:
    """The Train tab's builder when ``enabled`` (for ``build_demo(extra_tabs=...)``), else nothing at all."""
    if not enabled:
        return []
    from .tab import tab_builder

    return [tab_builder(resolve_root(root))]
