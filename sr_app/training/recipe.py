"""The recipe of a run: a shipped config plus the few values the page sets, as trainer overrides.

Everything the page does not set comes from the config file. Values are checked by the trainer's own config
parser (``train.config.load_config``), so a bad one gets the message the command line would give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.config import MIXED_PRECISION, Config, ConfigError, load_config

from .paths import config_files

INIT_CONFIG, INIT_NONE, RUN_PREFIX = "config", "none", "run:"


@dataclass(frozen=True)
class Recipe:
    """What the page sets; 0 for ``validate_every``/``log_every`` means "about 10 / 100 times per run"."""

    config: str
    init: str = INIT_CONFIG
    steps: Any = None
    batch_size: Any = None
    patch_size: Any = None
    lr: Any = None
    mixed_precision: str = "inherit"
    validate_every: Any = 0
    log_every: Any = 0


def config_path(name: str) -> Path:
    """The file of the shipped config ``name``; ConfigError naming the choices when there is none."""
    files = config_files()
    if name not in files:
        raise ConfigError(f"There is no training config {name!r}; choose one of {', '.join(files)}.")
    return files[name]


def defaults(name: str) -> Config:
    """The shipped config ``name`` as the trainer reads it."""
    return load_config(config_path(name))


def whole(value: Any, label: str) -> int:
    """A whole number from the page (12, 12.0, "12"); ConfigError for anything else."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a whole number, got {value!r}.") from None
    if not math.isfinite(number) or number != int(number):
        raise ConfigError(f"{label} must be a whole number, got {value!r}.")
    return int(number)


def _auto(value: Any, label: str, configured: int, steps: int, times: int) -> int:
    """``value``, or for 0 the configured interval shortened so that it happens about ``times`` times."""
    number = whole(value if value not in (None, "") else 0, label)
    if number != 0 or configured == 0:
        return number
    return max(1, min(configured, steps // times))


def _number_text(value: Any, label: str) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"{label} must be a number, got {value!r}.") from None


def overrides(recipe: Recipe, init_from: str | None) -> list[str]:
    """The trainer overrides for ``recipe`` (``init_from``: the resolved starting weights, or None for the config's).

    A value left empty (None) keeps the config's."""
    base = defaults(recipe.config)
    if recipe.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"Mixed precision must be one of {', '.join(MIXED_PRECISION)}.")
    steps = base.train.steps if _empty(recipe.steps) else whole(recipe.steps, "Steps")
    values = {
        "train.steps": steps,
        "data.batch_size": None if _empty(recipe.batch_size) else whole(recipe.batch_size, "Batch size"),
        "data.patch_size": None if _empty(recipe.patch_size) else whole(recipe.patch_size, "Patch size"),
        "train.lr": None if _empty(recipe.lr) else _number_text(recipe.lr, "Learning rate"),
        "mixed_precision": recipe.mixed_precision,
        "validate_every": _auto(recipe.validate_every, "Validate every", base.validate_every, steps, 10),
        "log_every": _auto(recipe.log_every, "Log every", base.log_every, steps, 100),
        "train.init_from": init_from,
    }
    return [f"{key}={value}" for key, value in values.items() if value is not None]


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check(name: str, items: list[str]) -> Config:
    """The full config the trainer will run, or the trainer's ConfigError for the first bad value."""
    return load_config(config_path(name), items)


def form_values(name: str) -> dict[str, Any]:
    """The values the page shows for config ``name`` before the user changes them."""
    c = defaults(name)
    return {
        "steps": c.train.steps, "batch_size": c.data.batch_size, "patch_size": c.data.patch_size,
        "lr": c.train.lr, "mixed_precision": c.mixed_precision,
    }  # fmt: skip
