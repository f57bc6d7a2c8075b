"""The one registry of upscaling methods: classical ones plus every model whose weights are present.

Shipped weights live in ``sr_core/weights/`` with ``manifest.json`` describing each file (name, architecture
config, scale, sha256, training recipe, evaluation figures). ``SR_STUDIO_WEIGHTS_DIR`` or a ``weights_dir``
argument points elsewhere. A missing or corrupt file means that model is not offered; the reason is logged.
Beyond the manifest, a folder written by ``save_pretrained()`` and a Hugging Face Hub id ``user/name`` (fetched
once into the Hub cache, then offline) work as model methods wherever a method name is taken.
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

from .atomic import write_json_atomic, write_text_atomic
from .classical import CLASSICAL_METHODS, SUPPORTED_SCALES
from .errors import UnknownMethodError, UnsupportedScaleError, WeightsError
from .hub import is_hub_id
from .models import (
    CARD_NAME,
    CONFIG_NAME,
    SRModel,
    build_model,
    get_architecture,
    load_into,
    load_pretrained,
    load_state_dict,
    model_folder,
    read_config,
)
from .models.base import LEGACY_ARCHITECTURE
from .models.card import CardEntry, front_matter, replace_front_matter
from .models.files import save_state_dict

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
    return ModelWeights(path=path, config=config, sha256=expected, mtime_ns=stat.st_mtime_ns)


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


def _folder_method(folder: Path, name: str, label: str, description: str) -> MethodInfo:
    """An ad-hoc model method for a folder holding config.json + model.safetensors (its one scale)."""
    config = read_config(folder)
    architecture = get_architecture(config.get("architecture", LEGACY_ARCHITECTURE))
    if not issubclass(architecture, SRModel):
        raise WeightsError(f"{name} holds a {architecture.architecture}, which is not an upscaler")
    try:
        scale = int(config["scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsError(f"{folder / CONFIG_NAME} is not a valid model config: no integer scale") from exc
    stamp = max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0)
    weights = ModelWeights(path=folder, config=config, mtime_ns=stamp)
    return MethodInfo(name, label, description, "model", (scale,), {scale: weights})


@functools.lru_cache(maxsize=32)
def _hub_method(repo_id: str, cache_dir: str) -> MethodInfo:
    """A Hub model as a method; its files are fetched (or found in the cache) once per process and cache."""
    folder = model_folder(repo_id, cache_dir=cache_dir)
    return _folder_method(folder, repo_id, repo_id, f"model {repo_id} from the Hugging Face Hub")


def hub_method(repo_id: str) -> MethodInfo:
    """The method of a Hugging Face Hub model ``user/name``; offline and not cached, an OfflineError naming it."""
    from huggingface_hub import constants

    return _hub_method(repo_id, str(constants.HF_HUB_CACHE))


def get_method(name: str, weights_dir: str | os.PathLike | None = None) -> MethodInfo:
    """Look a method up by name; a save_pretrained() folder or a Hub id ``user/name`` also works as a model method."""
    for method in available_methods(weights_dir):
        if method.name == name:
            return method
    path = Path(name)
    if (path / CONFIG_NAME).is_file():
        return _folder_method(path, str(path), path.name, f"model from {path}")
    if is_hub_id(name):
        return hub_method(name)
    names = ", ".join(m.name for m in available_methods(weights_dir))
    raise UnknownMethodError(
        f"Unknown method '{name}'. Available: {names} (or a folder saved by save_pretrained, or a Hub id user/name)"
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
    directory = Path(weights_dir)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config_dict()  # type: ignore[operator]
    scale = int(config["scale"])
    filename = f"{name}_x{scale}.safetensors"
    save_state_dict(model, directory / filename, dtype=dtype, metadata={"name": name})
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


def weights_front_matter(weights_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The Hub front matter of a weights folder's README: library, task, tags, licence, every model's metrics."""
    entries = []
    for entry in read_manifest(weights_dir)["models"]:
        cls = get_architecture(entry["config"].get("architecture", LEGACY_ARCHITECTURE))
        entries.append(
            CardEntry(
                card_data=cls._hub_mixin_info.model_card_data,
                name=f"SR Studio {entry.get('label', entry['name'])} x{entry['scale']}",
                scale=int(entry["scale"]),
                evaluation=entry.get("evaluation"),
                datasets=tuple((entry.get("training") or {}).get("datasets") or ()),
            )
        )
    return front_matter(entries)


def write_weights_card(weights_dir: str | os.PathLike | None = None) -> Path:
    """Refresh the front matter of the weights folder's README.md from manifest.json (the body is kept)."""
    path = Path(weights_dir or default_weights_dir()) / CARD_NAME
    body = path.read_text() if path.is_file() else "# SR Studio models\n\nSee manifest.json for each file.\n"
    return write_text_atomic(path, replace_front_matter(body, weights_front_matter(path.parent)))
