"""A model's files: ``config.json`` + ``model.safetensors`` (+ ``README.md``), read strictly and written atomically.

Weights are only ever read with safetensors; nothing is unpickled. A model is named by a folder or by a Hugging Face
Hub id, whose files are fetched once into the Hub cache (:mod:`sr_core.hub`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..atomic import atomic_path
from ..errors import WeightsError
from ..hub import fetch_files, is_hub_id

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


def model_folder(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """The local folder holding a model: the folder itself, or a hub id's snapshot in the Hub cache (fetched once)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = os.fspath(name_or_path)
    if not is_hub_id(name):
        raise WeightsError(
            f"'{name}' is neither a folder written by save_pretrained() nor a Hugging Face Hub id 'user/name'"
        )
    return fetch_files(
        name,
        (CONFIG_NAME, WEIGHTS_NAME),
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a model folder as a dict; a missing or malformed file is a WeightsError."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"{folder} has no {CONFIG_NAME}; expected a folder written by save_pretrained()")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise WeightsError(f"{path} must hold a JSON object, not {type(config).__name__}")
    return config


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file into float32 tensors; any problem becomes a WeightsError naming the file."""
    if not Path(path).is_file():
        raise WeightsError(f"Weights file {path} is missing")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read weights file {path}: {exc}") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def _listed(keys: list[str]) -> str:
    return f"{keys[:5]}{'...' if len(keys) > 5 else ''}"


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly, turning key or shape mismatches into one readable WeightsError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [
            f"{label} {_listed(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        ]
        raise WeightsError(f"Weights in {source} do not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)


def save_state_dict(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a model's state dict as safetensors, atomically; floating tensors cast to ``dtype`` when given."""
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", **dict(metadata or {})})
    return Path(path)
