"""save_pretrained / from_pretrained / push_to_hub for sr_core models: safetensors weights + config.json.

Weights are only ever read with safetensors; nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json_atomic
from ..errors import OfflineError, WeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

T = TypeVar("T", bound="PretrainedMixin")


def _offline_message(name: str, reason: object) -> str:
    return (
        f"Could not download '{name}' from the Hugging Face Hub ({reason}). This machine seems to be offline. "
        f"On a machine with network run `hf download {name} --local-dir DIR`, copy DIR here and pass its path "
        "instead of the hub id."
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file into float32 tensors; any problem becomes a WeightsError naming the file."""
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"Cannot read weights file {path}: {exc}") from exc
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict strictly, turning key or shape mismatches into one readable WeightsError."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shape {wrong[:5]}{'...' if len(wrong) > 5 else ''}")
        raise WeightsError(f"Weights in {source} do not match {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _resolve(
    name_or_path: str | os.PathLike,
    filename: str,
    revision: str | None,
    token: str | None,
    local_files_only: bool,
) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        found = path / filename
        if not found.is_file():
            raise WeightsError(f"{path} has no {filename}; expected a folder written by save_pretrained()")
        return found
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise WeightsError(
            f"'{name}' is neither a folder written by save_pretrained() nor a hub id 'user/name'"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(name, filename, revision=revision, token=token, local_files_only=local_files_only)
        )
    except LocalEntryNotFoundError as exc:
        raise OfflineError(_offline_message(name, "not in the local cache and no connection")) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        raise WeightsError(f"Hub repository '{name}' has no {filename}: {exc}") from exc
    except OSError as exc:
        raise OfflineError(_offline_message(name, exc)) from exc


class PretrainedMixin:
    """Adds Hugging Face style persistence to an nn.Module whose architecture is described by a dataclass config."""

    config_class: type
    architecture: str
    config: Any

    def config_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **dataclasses.asdict(self.config)}

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Path:
        """Write config.json and model.safetensors into save_directory, each atomically."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in self.state_dict().items()
        }  # type: ignore[attr-defined]
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", **(metadata or {})})
        write_json_atomic(directory / CONFIG_NAME, self.config_dict())
        return directory

    @classmethod
    def from_config_dict(cls: type[T], config: dict[str, Any]) -> T:
        """Build an untrained model from a config dict (the 'architecture' key is checked, then dropped)."""
        config = dict(config)
        arch = config.pop("architecture", cls.architecture)
        if arch != cls.architecture:
            raise WeightsError(f"Config describes a {arch}, not a {cls.architecture}")
        fields = {f.name for f in dataclasses.fields(cls.config_class)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise WeightsError(f"Unknown {cls.architecture} config keys: {unknown}")
        try:
            return cls(cls.config_class(**config))  # type: ignore[call-arg]
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"Invalid {cls.architecture} config {config}: {exc}") from exc

    @classmethod
    def from_pretrained(
        cls: type[T],
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | None = None,
        local_files_only: bool = False,
    ) -> T:
        """Load from a save_pretrained() folder or a hub id 'user/name'; returns the model in eval mode."""
        config_path = _resolve(name_or_path, CONFIG_NAME, revision, token, local_files_only)
        try:
            config = json.loads(config_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WeightsError(f"Cannot read {config_path}: {exc}") from exc
        model = cls.from_config_dict(config)
        weights_path = _resolve(name_or_path, WEIGHTS_NAME, revision, token, local_files_only)
        load_into(model, load_state_dict(weights_path), str(weights_path))  # type: ignore[arg-type]
        model.eval()  # type: ignore[attr-defined]
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        commit_message: str = "Upload SR Studio model",
    ) -> str:
        """Upload config + weights to a hub model repo (created if needed); returns the commit URL."""
        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api = HfApi(token=token)
            try:
                api.create_repo(repo_id, private=private, exist_ok=True)
                info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
            except OSError as exc:
                raise OfflineError(
                    f"Could not upload to the Hugging Face Hub repo '{repo_id}': {exc}"
                ) from exc
        return str(info)
