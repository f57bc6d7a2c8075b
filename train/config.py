"""Training configuration: nested dataclasses read from YAML, overridden by ``section.key=value`` arguments.

Every key a YAML file or an override may set is a field below; an unknown key or a value of the wrong type or
outside its allowed range is rejected with a :class:`ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sr_core.degradations import NAMED_DEGRADATIONS, DegradationConfig
from sr_core.hub import HUB_ID
from sr_core.losses import GAN_TYPES, GRID_REGION
from sr_core.models import generator_architectures

STAGES = ("srresnet", "srgan")
SCHEDULES = ("constant", "multistep", "cosine")
PIXEL_LOSSES = ("mse", "l1")
INHERIT = "inherit"
MIXED_PRECISION = (INHERIT, "no", "fp16", "bf16")
LAUNCHER_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"
"""Where ``accelerate launch --mixed_precision`` (or ``accelerate config``) leaves its value for Accelerator()."""
DEGRADATIONS = ("bicubic", "realistic")
SCALES = (2, 4, 8)
MIN_DISCRIMINATOR_PATCH = 32
_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the offending key."""


@dataclass
class DataConfig:
    """Where images come from and how training patches and validation images are made."""

    train_dir: str | None = None
    val_dir: str | None = None
    hub_id: str = "goodfellowliu/DIV2K"
    hub_train_files: str = "DIV2K_train_HR.zip"
    hub_val_files: str = "DIV2K_valid_HR.zip"
    cache_dir: str | None = None
    patch_size: int = 96
    batch_size: int = 16
    num_workers: int = 2
    subimage_size: int = 0
    subimage_step: int = 240
    subimage_dir: str | None = None
    val_center_crop: int = 0
    val_max_images: int = 0
    degradation: str = "bicubic"
    realistic: DegradationConfig = field(default_factory=DegradationConfig)
    val_degrade: str | list[str] = "bicubic"
    """A named degradation of the validation LR (sr_core.degradations), or a list of them: each is scored and
    the run's best is the one with the highest PSNR averaged over them."""

    def val_specs(self) -> list[str]:
        """``val_degrade`` as a list of named degradations."""
        return [self.val_degrade] if isinstance(self.val_degrade, str) else list(self.val_degrade)


@dataclass
class ModelConfig:
    """Generator architecture and sizes, discriminator width (the generator's are ignored with ``train.init_from``)."""

    architecture: str = "SRResNet"
    """A registered upscaler architecture (``sr_core.models.generator_architectures()``)."""
    scale: int = 4
    num_blocks: int = 16
    channels: int = 64
    d_channels: int = 64
    d_spectral_norm: bool = False
    """Spectral norm on every discriminator layer instead of BatchNorm (Real-ESRGAN's choice against artefacts)."""


@dataclass
class OptimConfig:
    """Stage, length, optimisers, learning-rate schedule, EMA and initialisation."""

    stage: str = "srresnet"
    steps: int = 100_000
    lr: float = 1e-4
    d_lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    precise_bn_batches: int = 50
    freeze_bn: bool = False
    init_from: str | None = None
    add_blocks: int = 0
    """Residual blocks appended to ``init_from``'s trunk, each starting as an identity (more capacity, the same
    function at step 0)."""
    add_blocks_lr_scale: float = 1.0
    """Learning-rate multiplier for the appended blocks, which start from nothing. With ``freeze_bn`` they start
    through a zero last conv and train at 1 (train.train.open_appended_blocks); otherwise through a zero BatchNorm
    scale, which stayed near zero in CPU fine-tunes at 1 and at 10 (3-8% of the others' in 800-1000 steps)."""


@dataclass
class LossConfig:
    """Generator loss: ``pixel_weight * pixel + content_weight * VGG + adversarial_weight * adversarial``
    ``+ feature_matching_weight * discriminator feature matching`` (a VGG-free perceptual term)
    ``+ artifact_weight * LDL artefact loss`` (needs train.ema_decay > 0: the EMA generator is its reference)
    ``+ grid_weight * grid loss`` (the dot grid at the upscaling period, ``sr_core.losses.grid_loss``)."""

    pixel: str = "mse"
    pixel_weight: float = 1.0
    content_weight: float = 0.0
    adversarial_weight: float = 0.0
    feature_matching_weight: float = 0.0
    gan_type: str = "vanilla"
    """vanilla (BCE, the SRGAN paper) | relativistic (ESRGAN's relativistic average) | hinge."""
    artifact_weight: float = 0.0
    artifact_kernel: int = 7
    grid_weight: float = 0.0
    vgg_weights: str | None = None
    vgg_layer: int = 36
    vgg_feature_scale: float = 1.0


@dataclass
class HubConfig:
    """Publishing: at the end of a run, ``best/`` (else ``last/``) is uploaded to this Hub model repo with its card."""

    push_to_hub: str | None = None
    """A Hub model id ``user/name`` (created if needed; token from ``hf auth login`` or HF_TOKEN), or null."""
    private: bool = False


@dataclass
class Config:
    """A whole training run. Top-level keys set the run; sections group data, model, optimiser, loss and hub."""

    output_dir: str = "outputs/run"
    seed: int = 42
    mixed_precision: str = INHERIT
    """``inherit`` takes ``accelerate launch --mixed_precision`` / ``accelerate config`` (else ``no``);
    ``no``, ``fp16`` or ``bf16`` set it here, over the launcher."""
    log_with: str = "tensorboard"
    log_every: int = 10
    validate_every: int = 1000
    checkpoint_every: int = 1000
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    hub: HubConfig = field(default_factory=HubConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def accelerator_mixed_precision(self) -> str | None:
        """What to pass to ``Accelerator(mixed_precision=...)``: None lets Accelerate read the launcher's value."""
        return None if self.mixed_precision == INHERIT else self.mixed_precision

    def mixed_precision_source(self) -> str:
        """Where the effective mixed precision comes from, for the start-up log line."""
        if self.mixed_precision != INHERIT:
            return "from the config"
        if os.environ.get(LAUNCHER_PRECISION_ENV):
            return "from the launcher / accelerate config"
        return "default: no launcher or accelerate config setting"

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every key (what trackers log as hyper-parameters)."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of ({_describe(typing.get_args(tp)[0])})"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    return str(tp)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML value to the field type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list like [1, 2], got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _YAML11_BOOL_WORDS:
            return value.lower() in ("yes", "on", "y")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, bool):
            raise ConfigError(
                f"{key}: expected a string, got {value!r} (YAML reads no/yes/off/on as booleans: quote it)"
            )
        if isinstance(value, (str, int, float)):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _apply_mapping(obj: Any, mapping: dict[str, Any], prefix: str = "") -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {mapping!r}")
    hints = _hints(type(obj))
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(f"{name}: unknown key; known keys here: {', '.join(hints)}")
        tp = hints[key]
        if _is_section(tp):
            _apply_mapping(getattr(obj, key), value, f"{name}.")
        else:
            setattr(obj, key, _coerce(name, value, tp))


def set_key(config: Config, dotted: str, value: Any) -> None:
    """Set ``section.key`` (or a top-level ``key``) on config, type-checked."""
    parts = dotted.split(".")
    obj: Any = config
    for i, part in enumerate(parts):
        hints = _hints(type(obj))
        name = ".".join(parts[: i + 1])
        if part not in hints:
            raise ConfigError(f"{name}: unknown key; known keys here: {', '.join(hints)}")
        tp = hints[part]
        if i == len(parts) - 1:
            if _is_section(tp):
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{name}: is a section; set one of its keys, e.g. {name}.{next(iter(_hints(tp)))}=..."
                    )
                _apply_mapping(getattr(obj, part), value, f"{name}.")
            else:
                setattr(obj, part, _coerce(name, value, tp))
        else:
            if not _is_section(tp):
                raise ConfigError(f"{name}: is not a section, so {dotted} is not a key")
            obj = getattr(obj, part)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is read as YAML (numbers, true/false, null, [lists])."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.steps=1000")
    key, raw = text.split("=", 1)
    key = key.strip().removeprefix("--")
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    if raw.strip().lower() in _YAML11_BOOL_WORDS:
        return key, raw.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot read value {raw!r}: {exc}") from exc
    return key, value


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


def _check_hub(hub: HubConfig) -> None:
    """``hub.push_to_hub`` is a Hub model id (the upload itself happens at the end of the run)."""
    repo = hub.push_to_hub
    ok = repo is None or bool(HUB_ID.fullmatch(repo))
    _check(ok, "hub.push_to_hub", f"must be a Hugging Face Hub model id user/name (or null), got {repo!r}")


def _check_stage(config: Config) -> None:
    """The loss terms and patch size each stage needs (pixel-only stage 1; a discriminator-sized patch in 2)."""
    t, d, lo = config.train, config.data, config.loss
    if t.stage == "srresnet":
        _check(lo.pixel_weight > 0, "loss.pixel_weight", "must be > 0 for stage srresnet")
        _check(
            lo.adversarial_weight == 0,
            "loss.adversarial_weight",
            "must be 0 for stage srresnet (use train.stage=srgan for adversarial training)",
        )
        _check(
            lo.feature_matching_weight == 0,
            "loss.feature_matching_weight",
            "must be 0 for stage srresnet (it needs the discriminator of stage srgan)",
        )
        _check(lo.artifact_weight == 0, "loss.artifact_weight", "must be 0 for stage srresnet (a GAN-stage loss)")
        _check(lo.grid_weight == 0, "loss.grid_weight", "must be 0 for stage srresnet (a GAN-stage loss)")
    else:
        _check(
            lo.pixel_weight + lo.content_weight + lo.adversarial_weight > 0,
            "loss.pixel_weight",
            "at least one of loss.pixel_weight, loss.content_weight, loss.adversarial_weight must be > 0",
        )
        _check(
            d.patch_size >= MIN_DISCRIMINATOR_PATCH,
            "data.patch_size",
            f"must be at least {MIN_DISCRIMINATOR_PATCH} for the discriminator (stage srgan)",
        )


def validate(config: Config) -> Config:
    """Check ranges and combinations; raise ConfigError naming the first bad key."""
    c, d, m, t, lo = config, config.data, config.model, config.train, config.loss
    _check(bool(c.output_dir), "output_dir", "must not be empty")
    _check(c.mixed_precision in MIXED_PRECISION, "mixed_precision", f"must be one of {MIXED_PRECISION}")
    _check(c.log_every >= 1, "log_every", "must be >= 1")
    _check(c.validate_every >= 0, "validate_every", "must be >= 0 (0 = no validation; best = last)")
    _check(c.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
    _check(c.seed >= 0, "seed", "must be >= 0")
    generators = generator_architectures()
    _check(m.architecture in generators, "model.architecture", f"must be one of {generators}")
    _check(m.scale in SCALES, "model.scale", f"must be one of {SCALES}")
    _check(m.num_blocks >= 1, "model.num_blocks", "must be >= 1")
    _check(m.channels >= 1, "model.channels", "must be >= 1")
    _check(m.d_channels >= 1, "model.d_channels", "must be >= 1")
    _check(
        d.patch_size >= m.scale and d.patch_size % m.scale == 0,
        "data.patch_size",
        f"must be a positive multiple of model.scale ({m.scale}), got {d.patch_size}",
    )
    _check(d.batch_size >= 1, "data.batch_size", "must be >= 1")
    _check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    _check(
        d.subimage_size == 0 or d.subimage_size >= d.patch_size,
        "data.subimage_size",
        f"must be 0 (off) or at least data.patch_size ({d.patch_size})",
    )
    _check(d.subimage_step >= 1, "data.subimage_step", "must be >= 1")
    _check(
        d.val_center_crop >= 0 and d.val_center_crop % m.scale == 0,
        "data.val_center_crop",
        f"must be 0 (whole images) or a multiple of model.scale ({m.scale})",
    )
    _check(d.val_max_images >= 0, "data.val_max_images", "must be >= 0 (0 = all)")
    _check(d.degradation in DEGRADATIONS, "data.degradation", f"must be one of {DEGRADATIONS}")
    specs = d.val_specs()
    _check(bool(specs), "data.val_degrade", "must name at least one degradation")
    unknown = [s for s in specs if s not in NAMED_DEGRADATIONS]
    _check(not unknown, "data.val_degrade", f"unknown {unknown}; each must be one of {tuple(NAMED_DEGRADATIONS)}")
    _check(len(set(specs)) == len(specs), "data.val_degrade", f"names a degradation twice: {specs}")
    try:
        d.realistic.validate()
    except ValueError as exc:
        raise ConfigError(f"data.realistic.{exc}") from exc
    _check(bool(d.train_dir) or bool(d.hub_id), "data.train_dir", "set a folder of images or data.hub_id")
    if c.validate_every > 0 and d.train_dir and not d.val_dir:
        raise ConfigError(
            "data.val_dir: required when data.train_dir is a local folder "
            "(or set validate_every=0 to train without validation)"
        )
    _check(t.stage in STAGES, "train.stage", f"must be one of {STAGES}")
    _check(t.steps >= 1, "train.steps", "must be >= 1")
    for key in ("lr", "d_lr"):
        value = getattr(t, key)
        _check(math.isfinite(value) and value > 0, f"train.{key}", "must be a positive number")
    _check(len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas), "train.betas", "must be two numbers in [0, 1)")
    _check(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
    _check(t.schedule in SCHEDULES, "train.schedule", f"must be one of {SCHEDULES}")
    _check(
        all(ms >= 1 for ms in t.milestones) and t.milestones == sorted(t.milestones),
        "train.milestones",
        "must be increasing positive step numbers",
    )
    _check(0 < t.gamma <= 1, "train.gamma", "must be in (0, 1]")
    _check(t.min_lr >= 0, "train.min_lr", "must be >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
    _check(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 = off)")
    _check(0 <= t.ema_decay < 1, "train.ema_decay", "must be in [0, 1) (0 = off)")
    _check(t.add_blocks >= 0, "train.add_blocks", "must be >= 0 (0 = the init_from model as it is)")
    _check(t.add_blocks_lr_scale > 0, "train.add_blocks_lr_scale", "must be > 0")
    _check(not t.add_blocks or t.init_from, "train.add_blocks", "needs train.init_from (a model to grow)")
    _check(t.precise_bn_batches >= 0, "train.precise_bn_batches", "must be >= 0 (0 = off)")
    _check(
        not (t.freeze_bn and t.precise_bn_batches),
        "train.precise_bn_batches",
        "must be 0 with train.freeze_bn=true (the weights are trained against the frozen statistics)",
    )
    _check(lo.pixel in PIXEL_LOSSES, "loss.pixel", f"must be one of {PIXEL_LOSSES}")
    for key in ("pixel_weight", "content_weight", "adversarial_weight", "feature_matching_weight", "artifact_weight",
                "grid_weight"):
        value = getattr(lo, key)
        _check(math.isfinite(value) and value >= 0, f"loss.{key}", "must be a number >= 0")
    _check(lo.gan_type in GAN_TYPES, "loss.gan_type", f"must be one of {GAN_TYPES}")
    _check(lo.artifact_kernel >= 3 and lo.artifact_kernel % 2 == 1, "loss.artifact_kernel", "must be odd and >= 3")
    _check(lo.grid_weight == 0 or config.data.patch_size >= GRID_REGION, "loss.grid_weight",
           f"needs data.patch_size >= {GRID_REGION} (the loss compares {GRID_REGION}-pixel blocks)")  # fmt: skip
    _check(
        lo.artifact_weight == 0 or t.ema_decay > 0,
        "loss.artifact_weight",
        "needs train.ema_decay > 0 (the artefact map compares against the EMA generator's output)",
    )
    _check(1 <= lo.vgg_layer <= 36, "loss.vgg_layer", "must be in 1..36 (36 = VGG54, after ReLU of conv5_4)")
    _check(lo.vgg_feature_scale > 0, "loss.vgg_feature_scale", "must be > 0")
    _check_hub(config.hub)
    _check_stage(config)
    return config


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file (if any), then each ``key=value`` override; validated."""
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from exc
        _apply_mapping(config, data)
    for text in overrides:
        key, value = parse_override(text)
        set_key(config, key, value)
    return validate(config)


def dump_config(config: Config) -> str:
    """The config as YAML (what ``output_dir/config.yaml`` holds; loadable by :func:`load_config`)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
