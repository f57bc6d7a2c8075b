"""The one registry of upscaling methods: classical ones plus every model whose weights are present.

Shipped weights live in ``sr_core/weights/`` with ``manifest.json`` describing each file (name, architecture
config, scale, sha256, training recipe, evaluation figures). ``SR_STUDIO_WEIGHTS_DIR`` or a ``weights_dir``
argument points elsewhere. A missing or corrupt file means that model is not offered; the reason is logged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from .atomic import atomic_path, write_json_atomic
from .classical import CLASSICAL_METHODS, SUPPORTED_SCALES
from .errors import UnknownMethodError, UnsupportedScaleError, WeightsError
from .models import CONFIG_NAME, build_model, load_pretrained
from .models.pretrained import load_into, load_state_dict

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
PACKAGE_WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelWeights:
    """One weights file of the manifest: a model at one scale."""

    path: Path
    config: Mapping[str, Any] = field(compare=False, hash=False)
    sha256: str | None = None
    mtime_ns: int = 0
    entry: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class MethodInfo:
    """An offered upscaling method; ``variants`` maps scale to weights for model methods."""

    name: str
    label: str
    description: str
    kind: Literal["classical", "model"]
    scales: tuple[int, ...]
    variants: Mapping[int, ModelWeights] = field(default_factory=dict, compare=False, hash=False)

    def check_scale(self, scale: int) -> None:
        if scale not in self.scales:
            raise UnsupportedScaleError(
                f"{self.label} supports scale {', '.join(f'x{s}' for s in self.scales)}, not x{scale}"
            )


CLASSICAL_LABELS = {
    "nearest": "Nearest neighbour",
    "bilinear": "Bilinear",
    "bicubic": "Bicubic",
    "lanczos": "Lanczos",
    "fourier": "Fourier (spectral)",
}


def default_weights_dir() -> Path:
    return Path(os.environ.get("SR_STUDIO_WEIGHTS_DIR") or PACKAGE_WEIGHTS_DIR)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: Path, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def read_manifest(weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest as a dict ({'format': 1, 'models': []} when there is none)."""
    path = Path(weights_dir or default_weights_dir()) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "models": []}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"Cannot read weights manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise WeightsError(f"Weights manifest {path} has no 'models' list")
    return manifest


_warned: set[str] = set()


def _warn_once(message: str, *args: object) -> None:
    """Log a registry problem once per process, not on every method lookup."""
    text = message % args
    if text not in _warned:
        _warned.add(text)
        logger.warning(text)


def _verified_weights(weights_dir: Path, entry: Mapping[str, Any]) -> ModelWeights | None:
    name = entry.get("name", "?")
    try:
        path = weights_dir / entry["file"]
        config, scale = dict(entry["config"]), int(entry["scale"])
    except (KeyError, TypeError, ValueError):
        _warn_once("Manifest entry %r lacks file/config/scale; not offered", name)
        return None
    if int(config.get("scale", scale)) != scale:
        _warn_once("Manifest entry %s: scale %s disagrees with its config; not offered", name, scale)
        return None
    if not path.is_file():
        _warn_once("Weights for %s x%d are missing (%s); not offered", name, scale, path)
        return None
    stat = path.stat()
    expected = entry.get("sha256")
    if expected and _cached_sha256(path, stat.st_mtime_ns, stat.st_size) != expected:
        _warn_once("Weights for %s x%d (%s) fail their sha256 check; not offered", name, scale, path)
        return None
    return ModelWeights(
        path=path, config=config, sha256=expected, mtime_ns=stat.st_mtime_ns, entry=dict(entry)
    )


def available_methods(weights_dir: str | os.PathLike | None = None) -> list[MethodInfo]:
    """Classical methods first, then each model whose weights are present and intact, with its scales."""
    methods = [
        MethodInfo(name, CLASSICAL_LABELS[name], desc, "classical", SUPPORTED_SCALES)
        for name, desc in CLASSICAL_METHODS.items()
    ]
    directory = Path(weights_dir or default_weights_dir())
    try:
        manifest = read_manifest(directory)
    except WeightsError as exc:
        _warn_once("%s; no model methods offered", exc)
        return methods
    grouped: dict[str, dict[int, ModelWeights]] = {}
    meta: dict[str, Mapping[str, Any]] = {}
    for entry in manifest["models"]:
        weights = _verified_weights(directory, entry)
        if weights is not None:
            grouped.setdefault(entry["name"], {})[int(entry["scale"])] = weights
            meta.setdefault(entry["name"], entry)
    for name, variants in grouped.items():
        entry = meta[name]
        methods.append(
            MethodInfo(
                name,
                entry.get("label", name),
                entry.get("description", ""),
                "model",
                tuple(sorted(variants)),
                variants,
            )
        )
    return methods


def get_method(name: str, weights_dir: str | os.PathLike | None = None) -> MethodInfo:
    """Look a method up by name; a folder written by save_pretrained() also works as an ad-hoc model method."""
    for method in available_methods(weights_dir):
        if method.name == name:
            return method
    path = Path(name)
    if (path / CONFIG_NAME).is_file():
        try:
            config = json.loads((path / CONFIG_NAME).read_text())
            scale = int(config["scale"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path / CONFIG_NAME} is not a valid model config: {exc}") from exc
        stamp = max((f.stat().st_mtime_ns for f in path.iterdir() if f.is_file()), default=0)
        weights = ModelWeights(path=path, config=config, mtime_ns=stamp)
        return MethodInfo(str(path), path.name, f"model from {path}", "model", (scale,), {scale: weights})
    names = ", ".join(m.name for m in available_methods(weights_dir))
    raise UnknownMethodError(
        f"Unknown method '{name}'. Available: {names} (or a folder saved by save_pretrained)"
    )


@functools.lru_cache(maxsize=8)
def _load_model_cached(weights: ModelWeights) -> nn.Module:
    if weights.path.is_dir():
        return load_pretrained(weights.path)
    model = build_model(dict(weights.config))
    load_into(model, load_state_dict(weights.path), str(weights.path))
    return model.eval()


def load_model(method: MethodInfo, scale: int) -> nn.Module:
    """The trained model behind a model method at a scale (float32, eval mode, cached per process)."""
    method.check_scale(scale)
    if method.kind != "model":
        raise UnknownMethodError(f"{method.label} is a classical method, not a model")
    return _load_model_cached(method.variants[scale])


def write_manifest_entry(
    weights_dir: str | os.PathLike,
    model: nn.Module,
    *,
    name: str,
    label: str | None = None,
    description: str = "",
    dtype: torch.dtype = torch.float32,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Save a model's weights as ``<name>_x<scale>.safetensors`` in weights_dir and record it in the manifest.

    An existing entry with the same name and scale is replaced. Returns the new entry.
    """
    from safetensors.torch import save_file

    directory = Path(weights_dir)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config_dict()  # type: ignore[operator]
    scale = int(config["scale"])
    filename = f"{name}_x{scale}.safetensors"
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(directory / filename) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "name": name})
    entry = {
        "name": name,
        "label": label or name,
        "description": description,
        "scale": scale,
        "file": filename,
        "sha256": sha256_file(directory / filename),
        "dtype": str(dtype).removeprefix("torch."),
        "config": config,
        **dict(extra or {}),
    }
    manifest = read_manifest(directory)
    manifest["models"] = [m for m in manifest["models"] if (m.get("name"), m.get("scale")) != (name, scale)]
    manifest["models"].append(entry)
    manifest["models"].sort(key=lambda m: (m.get("name", ""), m.get("scale", 0)))
    manifest["format"] = MANIFEST_FORMAT
    write_json_atomic(directory / MANIFEST_NAME, manifest)
    return entry
