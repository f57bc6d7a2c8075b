"""The model contract: one registry of architectures on ``huggingface_hub.PyTorchModelHubMixin``.

:class:`HubModel` is what every SR Studio network is: an ``nn.Module`` with the Hub mixin, a dataclass config, and
strict persistence (``config.json`` + ``model.safetensors`` + a model card ``README.md``; unknown config keys and
missing or unexpected tensors are :class:`~sr_core.errors.WeightsError`). :class:`SRModel` adds what every
upscaler (generator) fulfils: ``scale``, ``receptive_radius()`` and ``fuse_for_inference()``. An architecture is
one class decorated with :func:`register_architecture`; loading reads ``config.json``'s ``"architecture"`` to
pick it, from a folder or a Hugging Face Hub id alike.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from torch import nn

from ..atomic import write_json_atomic, write_text_atomic
from ..errors import WeightsError
from ..hub import push_folder
from ..rowstream import RowStreamer
from .card import CARD_TEMPLATE, LIBRARY_NAME, LICENSE, PIPELINE_TAG, ModelFacts, build_card
from .files import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_into,
    load_state_dict,
    model_folder,
    read_config,
    save_state_dict,
)

LEGACY_ARCHITECTURE = "SRResNet"
"""What a ``config.json`` without an ``"architecture"`` key (the earliest exports) describes."""

ARCHITECTURES: dict[str, type[HubModel]] = {}
"""Every registered architecture by name: the one place loading, the pipeline and the trainer look them up."""

M = TypeVar("M", bound="HubModel")


@dataclasses.dataclass(frozen=True)
class InferenceStage:
    """One step of an upscaler's forward that tiled inference may run on windows of its own.

    ``scale``: output pixels per input pixel (per side); ``radius``: input pixels of context each output pixel
    depends on (per side); ``elements_per_pixel``: peak live activation values per input pixel, from which tiling
    sizes its windows to a memory budget.

    A stage that can also run on row bands, each row computed once (:mod:`sr_core.rowstream`), sets ``stream``: it
    makes a fresh :data:`~sr_core.rowstream.RowStreamer` for one image, which holds ``stream_elements_per_pixel``
    values per pixel of a band and ``stream_state_per_column`` between bands.
    ``map_elements_per_pixel``: values per pixel of its largest single activation (0: unknown), from which tiling
    keeps each allocation under the size the allocator would hand out fresh every time.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    scale: int
    radius: int
    elements_per_pixel: int
    stream: Callable[[], RowStreamer] | None = None
    stream_elements_per_pixel: int = 0
    stream_state_per_column: int = 0
    map_elements_per_pixel: int = 0


def register_architecture(name: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: register an architecture under ``name`` (the ``"architecture"`` of its config.json)."""

    def register(cls: type[M]) -> type[M]:
        known = ARCHITECTURES.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"Architecture {name!r} is already registered by {known.__module__}.{known.__qualname__}")
        cls.architecture = name
        ARCHITECTURES[name] = cls
        return cls

    return register


def get_architecture(name: object) -> type[HubModel]:
    """The registered class of an architecture name, or a WeightsError listing the known ones."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise WeightsError(f"Unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def generator_architectures() -> list[str]:
    """Names of the registered upscaler architectures (SRModel subclasses)."""
    return sorted(name for name, cls in ARCHITECTURES.items() if issubclass(cls, SRModel))


class HubModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name=LIBRARY_NAME,
    license=LICENSE,
    tags=[LIBRARY_NAME],
    model_card_template=CARD_TEMPLATE,
):
    """An SR Studio network: Hub persistence (save_pretrained / from_pretrained / push_to_hub) and a dataclass config.

    Subclasses set ``config_class`` (a dataclass whose fields are the keyword-only ``__init__`` arguments) and are
    registered with :func:`register_architecture`.
    """

    architecture: ClassVar[str]
    config_class: ClassVar[type]
    config: Any
    fused: bool = False
    """True on the copies :meth:`SRModel.fuse_for_inference` returns, which have no BatchNorm left to save."""

    # ------------------------------------------------------------------ config

    def config_dict(self) -> dict[str, Any]:
        """What config.json holds: the architecture name and every config field."""
        return {"architecture": self.architecture, **dataclasses.asdict(self.config)}

    @classmethod
    def from_config_dict(cls: type[M], config: Mapping[str, Any]) -> M:
        """Build an untrained model from a config dict, refusing unknown keys and another architecture."""
        config = dict(config)
        arch = config.pop("architecture", cls.architecture)
        if arch != cls.architecture:
            raise WeightsError(f"Config describes a {arch}, not a {cls.architecture}")
        unknown = sorted(set(config) - {f.name for f in dataclasses.fields(cls.config_class)})
        if unknown:
            raise WeightsError(f"Unknown {cls.architecture} config keys: {unknown}")
        try:
            return cls(**config)
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"Invalid {cls.architecture} config {config}: {exc}") from exc

    # ------------------------------------------------------------------ saving

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        metadata: Mapping[str, str] | None = None,
        model_card_kwargs: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write model.safetensors (floats in ``dtype`` when given), config.json and a model card, each atomically.

        An existing README.md is kept (as the Hub mixin does). ``model_card_kwargs`` go to :func:`build_card`
        (``model_id``, ``title``, ``description``, ``training``, ``evaluation``, ``datasets``, ``base_model``).
        """
        if self.fused:
            raise WeightsError("This is a fused inference copy (BatchNorm folded away); save the original model")
        if config is not None and dict(config) != self.config_dict():
            raise WeightsError("save_pretrained(config=...) must equal the model's own config; it is not settable")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(directory, dtype=dtype, metadata=metadata)
        if not (directory / CARD_NAME).exists():
            write_text_atomic(directory / CARD_NAME, str(self.generate_model_card(**dict(model_card_kwargs or {}))))
        if push_to_hub:
            return self.push_to_hub(
                repo_id or directory.name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return None

    def _save_pretrained(
        self, save_directory: Path, *, dtype: torch.dtype | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        """The framework part of saving: weights and config.json (the card is the caller's)."""
        save_state_dict(self, Path(save_directory) / WEIGHTS_NAME, dtype=dtype, metadata=metadata)
        write_json_atomic(Path(save_directory) / CONFIG_NAME, self.config_dict())

    def card_facts(self) -> ModelFacts:
        """What the model card states about this network."""
        return ModelFacts(
            architecture=self.architecture,
            config=self.config_dict(),
            parameters=sum(p.numel() for p in self.parameters()),
            scale=getattr(self, "scale", None),
            card_data=self._hub_mixin_info.model_card_data,
            paper_url=self._hub_mixin_info.paper_url,
        )

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card: Hub front matter plus what the model is, how it was trained and how to use it."""
        if args:
            raise TypeError("generate_model_card takes keyword arguments only")
        return build_card(self.card_facts(), **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload SR Studio model",
        dtype: torch.dtype | None = None,
        model_card_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """Save into a temporary folder (card naming ``repo_id``) and upload it as one commit; returns its URL."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "model"
            self.save_pretrained(
                folder, dtype=dtype, model_card_kwargs={"model_id": repo_id, **(model_card_kwargs or {})}
            )
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls: type[M],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        force_download: bool = False,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        **model_kwargs: Any,
    ) -> M:
        """Load from a save_pretrained() folder or a Hub id ``user/name`` (fetched once into the Hub cache).

        The class comes from config.json: ``HubModel.from_pretrained`` loads any architecture, ``SRResNet``'s
        refuses a Discriminator. Returns the model in eval mode on ``map_location`` (default CPU).
        """
        folder = model_folder(
            pretrained_model_name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            force_download=force_download,
            local_files_only=local_files_only,
        )
        target = _class_for(cls, read_config(folder), str(pretrained_model_name_or_path))
        return super(HubModel, target).from_pretrained(str(folder), local_files_only=True, **model_kwargs)

    @classmethod
    def _from_pretrained(
        cls: type[M],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | os.PathLike | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: Mapping[str, Any] | None = None,
        map_location: str | torch.device = "cpu",
        **model_kwargs: Any,
    ) -> M:
        """Strict loading (the Hub mixin's hook): config keys checked, every tensor present with its shape."""
        folder = model_folder(
            model_id, revision=revision, token=token, cache_dir=cache_dir, force_download=force_download,
            local_files_only=local_files_only,
        )  # fmt: skip
        settings = {**(config if config is not None else read_config(folder)), **model_kwargs}
        settings.setdefault("architecture", LEGACY_ARCHITECTURE)
        model = cls.from_config_dict(settings)
        weights = folder / WEIGHTS_NAME
        load_into(model, load_state_dict(weights), str(weights))
        return model.to(map_location).eval()


def _class_for(requested: type[M], config: Mapping[str, Any], source: str) -> type[M]:
    """The registered class config.json names, which must be ``requested`` or a subclass of it."""
    target = get_architecture(config.get("architecture", LEGACY_ARCHITECTURE))
    if not issubclass(target, requested):
        raise WeightsError(
            f"{source} holds a {target.architecture} model; {requested.__name__}.from_pretrained cannot load it"
        )
    return target  # type: ignore[return-value]


class SRModel(HubModel, abc.ABC, pipeline_tag=PIPELINE_TAG, tags=["super-resolution"]):
    """An upscaler: maps RGB images in [0, 1] of shape (N, C, h, w) to (N, C, h*scale, w*scale)."""

    @property
    @abc.abstractmethod
    def scale(self) -> int:
        """The integer upscaling factor."""

    @abc.abstractmethod
    def receptive_radius(self) -> int:
        """Input pixels of context each output pixel depends on, per side; tiles padded by this are exact."""

    @abc.abstractmethod
    def fuse_for_inference(self) -> SRModel:
        """An eval-mode copy computing the same function faster (e.g. BatchNorm folded into its convolutions).

        The copy has ``fused = True`` and cannot be saved; the original is left untouched.
        """

    def inference_stages(self) -> tuple[InferenceStage, ...]:
        """The forward as consecutive stages, so tiling can give each its own window size (for a network whose
        cheap-per-pixel part has a wide receptive field and whose memory-heavy part a narrow one).

        The default is one stage, the whole forward, with a conservative memory estimate; architectures override it.
        """
        return (InferenceStage(self, self.scale, self.receptive_radius(), 256 * self.scale**2),)


def build_model(config: Mapping[str, Any]) -> HubModel:
    """Instantiate the architecture a config dict names (untrained)."""
    return get_architecture(config.get("architecture", LEGACY_ARCHITECTURE)).from_config_dict(config)


def load_pretrained(name_or_path: str | os.PathLike, **kwargs: Any) -> HubModel:
    """Load any SR Studio model from a save_pretrained() folder or a Hub id, its class chosen by config.json."""
    return HubModel.from_pretrained(name_or_path, **kwargs)
