"""A run's model for use: a snapshot of ``best/`` named after the run, offered as a method, or zipped to download."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from sr_core.errors import SRError
from sr_core.models import CONFIG_NAME, WEIGHTS_NAME
from sr_core.registry import MethodInfo, get_method

from ..handlers import AppConfig
from .runs import RunError

EXPORT_DIR = "export"


def model_source(folder: Path) -> Path:
    """``best/`` (the best validation score), else ``last/``; RunError while the run has exported neither."""
    for name in ("best", "last"):
        if (folder / name / WEIGHTS_NAME).is_file() and (folder / name / CONFIG_NAME).is_file():
            return folder / name
    raise RunError(f"Run {folder.name} has no model yet: it exports one at its first validation or checkpoint.")


def snapshot(folder: Path) -> Path:
    """Copy the run's model to ``export/<run id>/`` (replacing an older copy) and return that folder."""
    source = model_source(folder)
    target = folder / EXPORT_DIR / folder.name
    tmp = target.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for attempt in range(3):  # the trainer may swap in a new best/ while it is copied
        try:
            shutil.copytree(source, tmp)
            break
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if attempt == 2:
                raise
    old = target.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def offer_method(config: AppConfig, model: Path) -> MethodInfo:
    """Make the model folder ``model`` one of this app's methods (``AppConfig.added``); returns its method."""
    try:
        info = get_method(str(model), config.weights_dir)
    except SRError as exc:
        raise RunError(f"The run's model cannot be used: {exc}") from exc
    config.added.add(info.name)
    return info


def zip_model(folder: Path) -> Path:
    """A zip of the run's model folder (a fresh snapshot) in a temporary folder, for the browser to download."""
    model = snapshot(folder)
    target = Path(tempfile.mkdtemp(prefix="sr_studio_model_")) / f"{folder.name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(model))
    return target
