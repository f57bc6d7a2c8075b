"""Train SRResNet (stage 1, pixel loss) or SRGAN (stage 2, pixel + VGG content + adversarial) with Accelerate.

    accelerate launch train/train.py --config train/configs/srresnet_x4.yaml data.train_dir=DIR data.val_dir=DIR
    accelerate launch train/train.py --config train/configs/srgan_x4.yaml          # starts from stage 1's best
    accelerate launch train/train.py --config ... --resume                          # continue output_dir's run

Any config key can be overridden as ``section.key=value`` (``train.steps=1000``, ``loss.content_weight=0``);
``python train/train.py ...`` runs on one device. Outputs in ``output_dir``: ``best/`` and ``last/`` generators
(``save_pretrained`` folders usable as ``sr_core.upscale(img, method="<output_dir>/best")``, each with a
``training.json``), ``checkpoints/last`` (full state for ``--resume``), ``config.yaml``, ``log.jsonl`` and
TensorBoard logs under ``logs/``.
A file ``output_dir/STOP``, SIGTERM or Ctrl+C stops the run after the current step: it checkpoints, exports
``last/``, logs ``{"event": "stopped"}`` and exits 0 (see ``train/run_control.py``); ``--resume`` continues.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run by path (`python train/train.py`): see train/__init__.py
    _ROOT = Path(__file__).resolve().parents[1]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT / "train"]
    sys.path.insert(0, str(_ROOT))

import argparse
import bisect
import copy
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, gather_object, set_seed
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sr_core.atomic import write_json_atomic
from sr_core.data import ImageList, PatchDataset, default_subimage_dir, prepare_subimages
from sr_core.devices import keep_freed_cpu_memory
from sr_core.errors import OfflineError, SRError, UnknownMethodError
from sr_core.evaluate import evaluate, summarize
from sr_core.hub import push_folder
from sr_core.inference import prepare_for_inference
from sr_core.io import from_array, to_array
from sr_core.losses import (
    AdversarialLoss,
    PixelLoss,
    VGGContentLoss,
    artifact_loss,
    feature_matching_loss,
    grid_loss,
)
from sr_core.models import WEIGHTS_NAME, Discriminator, SRModel, build_model, load_pretrained
from sr_core.pipeline import model_forward_array
from sr_core.registry import get_method, load_model
from train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint, swap_in
from train.config import Config, ConfigError, HubConfig, OptimConfig, dump_config, load_config
from train.ema import EMA
from train.precise_bn import calibration_batches, recalibrated
from train.run_control import (
    STOP_FILE,
    Throughput,
    clear_stop,
    graceful_signals,
    stop_requested,
    write_val_preview,
)

EXIT_OK, EXIT_CONFIG, EXIT_DIVERGED = 0, 2, 3
TRAINING_INFO = "training.json"


class DivergedError(RuntimeError):
    """A loss became NaN or infinite; the run stops without saving."""


@dataclass
class TrainState:
    """Counters saved with every checkpoint (registered with ``accelerator.register_for_checkpointing``)."""

    step: int = 0
    best_psnr: float = -math.inf
    best_step: int = 0
    last_val: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.best_psnr = float(state["best_psnr"])
        self.best_step = int(state["best_step"])
        self.last_val = dict(state.get("last_val", {}))


def lr_factor(config: Config) -> Callable[[int], float]:
    """Multiplier of the base learning rate after ``n`` optimiser steps (warm-up times the schedule)."""
    t = config.train
    min_ratio = t.min_lr / t.lr

    def factor(n: int) -> float:
        warm = min(1.0, (n + 1) / t.warmup_steps) if t.warmup_steps else 1.0
        if t.schedule == "multistep":
            return warm * t.gamma ** bisect.bisect_right(t.milestones, n)
        if t.schedule == "cosine":
            progress = min(n, t.steps) / t.steps
            return warm * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
        return warm

    return factor


def _shipped_generator(name: str, scale: int) -> nn.Module | None:
    """A copy of the registered model method ``name`` at ``scale`` (or its largest scale), or None."""
    try:
        method = get_method(name)
    except UnknownMethodError:  # a hub id that cannot be fetched says so itself (OfflineError, WeightsError)
        return None
    if method.kind != "model":
        return None
    return copy.deepcopy(load_model(method, scale if scale in method.scales else max(method.scales)))


def build_generator(config: Config) -> SRModel:
    """A fresh ``model.architecture`` from ``model.*`` (through the architecture registry), or ``train.init_from``:
    a save_pretrained folder, a shipped method or a Hub id ``user/name``."""
    m, init = config.model, config.train.init_from
    if not init:
        sizes = {"scale": m.scale, "num_blocks": m.num_blocks, "channels": m.channels}
        return build_model({"architecture": m.architecture, **sizes})  # type: ignore[return-value]
    model = load_pretrained(init) if Path(init).is_dir() else _shipped_generator(init, m.scale)
    if model is None:
        raise ConfigError(
            f"train.init_from: {init} is neither a folder nor a shipped model method (sr-upscale --list) nor a "
            "Hub id; train stage 1 first (its output_dir/best), or set train.init_from=null"
        )
    if not isinstance(model, SRModel):
        raise ConfigError(f"train.init_from: {init} holds a {type(model).__name__}, not an upscaler (generator)")
    changes = {"scale": m.scale} if model.scale != m.scale else {}
    if config.train.add_blocks:
        changes["num_blocks"] = _num_blocks(model, init) + config.train.add_blocks
    model = transferred(model, **changes) if changes else model
    if config.train.add_blocks and config.train.freeze_bn:
        open_appended_blocks(model, config.train.add_blocks)
    return model


def open_appended_blocks(model: SRModel, count: int) -> None:
    """Under frozen BatchNorm, start the last ``count`` residual blocks as identities through a zero last conv (its
    BatchNorm scale one) instead of a zero BatchNorm scale.

    A zero scale leaves both convs without gradient, a saddle Adam barely leaves (scales at 1-8% of the others'
    after 800-1000 steps); a zero conv gets a gradient on every weight from the first step (at 30-90% of the
    others' output scale after 600). Batch statistics would rescale a zero conv's first tiny output to unit
    variance, so without frozen BatchNorm the zero scale stays.
    """
    for block in model.trunk[-count:]:  # type: ignore[index]
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
        nn.init.ones_(block.bn2.weight)


def _num_blocks(model: SRModel, init: str) -> int:
    blocks = model.config_dict().get("num_blocks")
    if not isinstance(blocks, int):
        raise ConfigError(f"train.add_blocks: {init} ({type(model).__name__}) has no residual trunk to grow")
    return blocks


def generator_param_groups(generator: nn.Module, t: OptimConfig) -> list[dict[str, Any]]:
    """Adam's parameter groups: everything at ``train.lr``, the blocks ``train.add_blocks`` appended at
    ``train.lr * train.add_blocks_lr_scale``."""
    grown = list(generator.trunk[-t.add_blocks :].parameters()) if t.add_blocks else []  # type: ignore[index]
    grown_ids = {id(p) for p in grown}
    groups: list[dict[str, Any]] = [{"params": [p for p in generator.parameters() if id(p) not in grown_ids]}]
    if grown:
        groups.append({"params": grown, "lr": t.lr * t.add_blocks_lr_scale})
    return groups


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: it normalises with its stored statistics and stops updating them.

    For fine-tuning on a new input distribution with small, mixed batches (real-photo degradations), where batch
    statistics swing from batch to batch; the affine parameters still train.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def transferred(source: SRModel, **changes: int) -> SRModel:
    """A new model like ``source`` with ``changes`` to its config (``scale``, ``num_blocks``), starting from every
    layer of ``source`` that keeps its name and shape.

    Another scale keeps the feature extractor, the residual trunk, the upsampling stages both models have and the
    output conv (as EDSR/MDSR pre-train x2 to start x4); extra upsampling stages start fresh. More blocks append
    residual blocks to the trunk that start as identities (their last BatchNorm scale is zero; under frozen
    BatchNorm :func:`build_generator` starts them from a zero conv instead, :func:`open_appended_blocks`), so the
    deeper model computes exactly what ``source`` did and only gains capacity as it trains.
    """
    target = build_model({**source.config_dict(), **changes})
    own = target.state_dict()
    shared = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(shared, strict=False)
    return target  # type: ignore[return-value]


class Trainer:
    """Models, losses, optimisers and schedulers of one stage, and the training step itself."""

    def __init__(self, config: Config, accelerator: Accelerator) -> None:
        self.config = config
        self.accelerator = accelerator
        if accelerator.device.type == "cpu":
            keep_freed_cpu_memory()  # activations reused, not page-faulted anew each step (bench/train_throughput.py)
        t, lo = config.train, config.loss
        self.gan = t.stage == "srgan"
        self.content = None
        if lo.content_weight > 0:
            try:
                self.content = VGGContentLoss(
                    weights=lo.vgg_weights or "imagenet", layer_index=lo.vgg_layer, feature_scale=lo.vgg_feature_scale
                ).to(accelerator.device)
            except OfflineError as exc:
                raise OfflineError(
                    f"{exc} As trainer overrides: loss.vgg_weights=/path/to/vgg19-dcbb9e9d.pth, or "
                    "loss.content_weight=0 (with loss.pixel_weight=1 and, as a VGG-free perceptual term, "
                    "loss.feature_matching_weight=0.05)."
                ) from exc
        self.pixel = PixelLoss(lo.pixel)
        self.adversarial = AdversarialLoss(lo.gan_type)
        self.calibration: list[torch.Tensor] = []
        self.updates = 0
        self._exported: tuple[int, nn.Module] | None = None
        self.generator: nn.Module = build_generator(config).train()
        if t.freeze_bn:
            freeze_batchnorm_statistics(self.generator)
        self.optimizer_g = torch.optim.Adam(
            generator_param_groups(self.generator, t), lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay
        )
        self.scheduler_g = torch.optim.lr_scheduler.LambdaLR(self.optimizer_g, lr_factor(config))
        self.discriminator: nn.Module | None = None
        if self.gan:
            self.discriminator = Discriminator(
                channels=config.model.d_channels, spectral_norm=config.model.d_spectral_norm
            ).train()
            self.optimizer_d = torch.optim.Adam(
                self.discriminator.parameters(), lr=t.d_lr, betas=tuple(t.betas), weight_decay=t.weight_decay
            )
            self.scheduler_d = torch.optim.lr_scheduler.LambdaLR(self.optimizer_d, lr_factor(config))
        self.terms = ["loss", "pixel", "content"] + (
            ["adversarial", "feature", "artifact", "grid", "d_loss", "d_hr", "d_sr"] if self.gan else []
        )
        self.ema: EMA | None = None
        self.baseline_cache: dict[str, dict[str, dict[str, float]]] = {}
        """Per named degradation, per validation image: its bicubic PSNR and SSIM."""

    def prepare(self, loader: DataLoader | None = None) -> DataLoader | None:
        """Hand everything to ``accelerator.prepare`` (device, DDP, mixed precision); set up the EMA copy."""
        acc = self.accelerator
        self.generator.to(memory_format=torch.channels_last)  # faster convolutions, bf16 on CPU most of all
        if self.gan:
            self.discriminator.to(memory_format=torch.channels_last)
        objects: list[Any] = [self.generator, self.optimizer_g, self.scheduler_g]
        if self.gan:
            objects += [self.discriminator, self.optimizer_d, self.scheduler_d]
        if loader is not None:
            objects.append(loader)
        prepared = acc.prepare(*objects)
        self.generator, self.optimizer_g, self.scheduler_g = prepared[:3]
        if self.gan:
            self.discriminator, self.optimizer_d, self.scheduler_d = prepared[3:6]
        if self.config.train.ema_decay > 0:
            self.ema = EMA(acc.unwrap_model(self.generator), self.config.train.ema_decay)
        return prepared[-1] if loader is not None else None

    def checkpoint_objects(self) -> list[Any]:
        return [self.ema] if self.ema is not None else []

    def export_model(self) -> nn.Module:
        """The generator that is validated and exported: the EMA copy when enabled, with precise BN statistics.

        The recalibrated copy is cached until the next optimisation step, so validation and export agree.
        """
        source = self.ema.shadow if self.ema is not None else self.accelerator.unwrap_model(self.generator)
        if not self.calibration:
            return source
        if self._exported is None or self._exported[0] != self.updates:
            self._exported = (self.updates, recalibrated(source, self.calibration, self.accelerator.device))
        return self._exported[1]

    def learning_rates(self) -> dict[str, float]:
        rates = {"lr": self.optimizer_g.param_groups[0]["lr"]}
        if self.gan:
            rates["lr_d"] = self.optimizer_d.param_groups[0]["lr"]
        return rates

    def _generator_loss(
        self,
        sr: torch.Tensor,
        hr: torch.Tensor,
        lr: torch.Tensor,
        discriminator: nn.Module | None = None,
        real_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The weighted generator loss and its terms; in stage srgan ``discriminator`` (frozen) and its constant
        ``real_logits`` on ``hr`` are given."""
        lo = self.config.loss
        zero = sr.new_zeros(())
        pixel = self.pixel(sr, hr)
        if self.content is not None:
            with self.accelerator.autocast():
                content = self.content(sr, hr).float()
        else:
            content = zero
        if discriminator is None:
            total = lo.pixel_weight * pixel + lo.content_weight * content
            return total, [total, pixel, content]
        adversarial = self.adversarial.generator_loss(discriminator(sr), real_logits)
        feature = artifact = grid = zero
        if lo.feature_matching_weight > 0:
            with self.accelerator.autocast():
                feature = feature_matching_loss(discriminator, sr, hr)
        if lo.artifact_weight > 0:
            with torch.no_grad(), self.accelerator.autocast():
                sr_ema = self.ema.shadow(lr)
            artifact = artifact_loss(sr, hr, sr_ema, lo.artifact_kernel)
        if lo.grid_weight > 0:
            grid = grid_loss(sr, hr, self.config.model.scale)
        total = (
            lo.pixel_weight * pixel
            + lo.content_weight * content
            + lo.adversarial_weight * adversarial
            + lo.feature_matching_weight * feature
            + lo.artifact_weight * artifact
            + lo.grid_weight * grid
        )
        return total, [total, pixel, content, adversarial, feature, artifact, grid]

    def _check_finite(self, values: torch.Tensor, losses: int) -> torch.Tensor:
        """All-process mean of the step's values; raises DivergedError (on every process) if a loss is not finite."""
        gathered = self.accelerator.gather(values.detach().float()[None]).reshape(-1, values.numel())
        if not bool(torch.isfinite(gathered[:, :losses]).all()):
            raise DivergedError(
                ", ".join(f"{n}={v:.4g}" for n, v in zip(self.terms, gathered.mean(0).tolist(), strict=True))
            )
        return gathered.mean(0)

    def _clip(self, model: nn.Module) -> None:
        if self.config.train.grad_clip > 0:
            self.accelerator.clip_grad_norm_(model.parameters(), self.config.train.grad_clip)

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimisation step on a batch of uint8 ``lr``/``hr`` tensors; returns the mean of ``self.terms``."""
        acc = self.accelerator
        self.updates += 1
        lr = batch["lr"].to(acc.device, non_blocking=True).float().div_(255)
        lr = lr.contiguous(memory_format=torch.channels_last)
        hr = batch["hr"].to(acc.device, non_blocking=True).float().div_(255)
        sr = self.generator(lr)
        if not self.gan:
            loss, terms = self._generator_loss(sr, hr, lr)
            values = self._check_finite(torch.stack(terms), losses=3)
            acc.backward(loss)
            self._clip(self.generator)
            self.optimizer_g.step()
            self.scheduler_g.step()
            self.optimizer_g.zero_grad(set_to_none=True)
        else:
            real_logits = self.discriminator(hr)  # one forward for D's loss and (constant) the relativistic G loss
            d_plain = acc.unwrap_model(self.discriminator)
            d_plain.requires_grad_(False)
            g_loss, terms = self._generator_loss(sr, hr, lr, d_plain, real_logits.detach())
            d_plain.requires_grad_(True)
            fake_logits = self.discriminator(sr.detach())
            d_loss = self.adversarial.discriminator_loss(real_logits, fake_logits)
            probs = [
                torch.sigmoid(real_logits.detach().float()).mean(),
                torch.sigmoid(fake_logits.detach().float()).mean(),
            ]
            values = self._check_finite(torch.stack([*terms, d_loss, *probs]), losses=len(terms) + 1)
            acc.backward(g_loss)
            self._clip(self.generator)
            self.optimizer_g.step()
            self.scheduler_g.step()
            self.optimizer_g.zero_grad(set_to_none=True)
            acc.backward(d_loss)
            self._clip(self.discriminator)
            self.optimizer_d.step()
            self.scheduler_d.step()
            self.optimizer_d.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(acc.unwrap_model(self.generator))
        return values


def _source_key(config: Config, split: str) -> str:
    d = config.data
    folder = d.train_dir if split == "train" else d.val_dir
    return (
        str(Path(folder).resolve())
        if folder
        else f"{d.hub_id}:{d.hub_train_files if split == 'train' else d.hub_val_files}"
    )


def load_images(config: Config, split: str) -> ImageList:
    """Training or validation images from the configured folder, or from the hub dataset (DIV2K by default)."""
    d = config.data
    folder = d.train_dir if split == "train" else d.val_dir
    if folder:
        return ImageList.from_source(folder, cache_dir=d.cache_dir)
    files = {"train": d.hub_train_files, "validation": d.hub_val_files}
    return ImageList.from_source(d.hub_id, split=split, data_files=files, cache_dir=d.cache_dir)


def training_images(config: Config, accelerator: Accelerator) -> ImageList:
    """The training images, cut into cached sub-images first when ``data.subimage_size`` > 0."""
    d = config.data
    images = load_images(config, "train")
    if d.subimage_size <= 0:
        return images
    target = (
        Path(d.subimage_dir)
        if d.subimage_dir
        else default_subimage_dir(_source_key(config, "train"), d.subimage_size, d.subimage_step, d.cache_dir)
    )
    if accelerator.is_main_process:
        bar = tqdm(total=len(images), desc="sub-images", disable=not accelerator.is_main_process)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        prepare_subimages(images, target, size=d.subimage_size, step=d.subimage_step, progress=progress)
        bar.close()
    return ImageList.from_source(target, cache_dir=d.cache_dir)


def make_upscaler(model: nn.Module, device: torch.device) -> Callable[[Image.Image], Image.Image]:
    """PIL LR -> PIL SR through the product's inference path (BatchNorm folded, tiled), in float32."""
    net = prepare_for_inference(model, device, torch.float32)
    scale = model.scale  # type: ignore[attr-defined]

    def upscaler(lr: Image.Image) -> Image.Image:
        out = model_forward_array(net, to_array(lr)[..., :3], scale)
        return from_array(out, "RGB")

    return upscaler


def validate(trainer: Trainer, images: ImageList) -> dict[str, Any]:
    """PSNR/SSIM of the exported generator on the validation images, split over processes, then gathered.

    One :func:`summarize` per named degradation in ``data.val_degrade`` (under ``"specs"``); ``"mean"`` averages
    their means, so a run validated on several LR degradations keeps the best model over all of them. The bicubic
    scores are computed at the first validation and reused afterwards.
    """
    upscaler = make_upscaler(trainer.export_model(), trainer.accelerator.device)
    specs = trainer.config.data.val_specs()
    results = {spec: _validate_spec(trainer, images, upscaler, spec) for spec in specs}
    if len(specs) == 1:
        return results[specs[0]]
    first = results[specs[0]]
    mean = {k: sum(r["mean"][k] for r in results.values()) / len(results) for k in first["mean"]}
    return {"num_images": first["num_images"], "degrade": "+".join(specs), "mean": mean,
            "specs": {spec: r["mean"] for spec, r in results.items()}}  # fmt: skip


def _validate_spec(
    trainer: Trainer, images: ImageList, upscaler: Callable[[Image.Image], Image.Image], spec: str
) -> dict[str, Any]:
    """:func:`sr_core.evaluate.evaluate` of ``upscaler`` on one named LR degradation, split over processes."""
    acc, d = trainer.accelerator, trainer.config.data
    count = len(images) if d.val_max_images <= 0 else min(d.val_max_images, len(images))
    scale, cache = trainer.config.model.scale, trainer.baseline_cache.setdefault(spec, {})
    with acc.split_between_processes(list(range(count))) as mine:
        rows = []
        if mine:
            rows = evaluate(
                upscaler,
                scale,
                images.subset(mine),
                center_crop=d.val_center_crop,
                baseline=None if cache else "bicubic",
                degrade=spec,
            )["images"]
        if cache:
            for row in rows:
                row.update(cache[row["name"]])
        else:
            cache.update({row["name"]: {k: row[k] for k in ("bicubic_psnr", "bicubic_ssim")} for row in rows})
    return summarize(gather_object(rows), method="validation", scale=scale, degrade=spec)


def card_kwargs(config: Config, info: dict[str, Any]) -> dict[str, Any]:
    """What an exported generator's model card states: how it was trained and, when measured on it, its scores."""
    d, t = config.data, config.train
    training = {
        "stage": t.stage,
        "steps": info["step"],
        "init_from": t.init_from,
        "data": d.train_dir or f"{d.hub_id} ({d.hub_train_files})",
        "ema_decay": t.ema_decay or None,
        "config": config.to_dict(),
    }
    val, specs = info.get("val") or {}, d.val_specs()
    evaluation = None
    if "psnr" in val and val.get("step") == info["step"]:
        evaluation = {
            **{k: val[k] for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim") if k in val},
            "data": d.val_dir or f"{d.hub_id} ({d.hub_val_files})",
            "dataset_id": None if d.val_dir else d.hub_id,
            "convention": f"validation at step {info['step']} (sr_core.evaluate conventions, "
            f"LR {' / '.join(specs)}{', scores averaged' if len(specs) > 1 else ''})",
        }
    return {
        "model_id": config.hub.push_to_hub,
        "training": training,
        "evaluation": evaluation,
        "datasets": None if d.train_dir else [d.hub_id],
    }


def export_generator(model: nn.Module, directory: Path, info: dict[str, Any], config: Config) -> None:
    """save_pretrained (with its model card) into a temporary folder plus ``training.json``, then swap it in."""
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, model_card_kwargs=card_kwargs(config, info))  # type: ignore[operator]
    write_json_atomic(tmp / TRAINING_INFO, info)
    swap_in(tmp, directory)


def publish(out: Path, hub: HubConfig) -> str:
    """Upload ``best/`` (else ``last/``) with its card to ``hub.push_to_hub``: one line either way, export kept."""
    folder = out / "best" if (out / "best" / WEIGHTS_NAME).is_file() else out / "last"
    try:
        url = push_folder(folder, hub.push_to_hub, private=hub.private, commit_message=f"SR Studio run: {folder.name}/")
    except SRError as exc:
        return f"warning: not published: {exc} The run itself succeeded; its export stays in {folder}."
    return f"published {folder} to the Hugging Face Hub as {hub.push_to_hub}: {url}"


def _append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _log_step(line: str) -> int | None:
    """The step of one log line, or None for a torn or foreign line (a crash in the middle of an append)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return int(record.get("step", 0)) if isinstance(record, dict) else None


def _truncate_log(path: Path, step: int) -> None:
    """Drop records after ``step`` (written by a run that died after its last checkpoint) and torn lines."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if (s := _log_step(line)) is not None and s <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _hparams(config: Config) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.flat().items()}


def _val_line(step: int, metrics: dict[str, Any], best: bool) -> str:
    m, specs = metrics["mean"], metrics.get("specs")
    where = f", LR {metrics['degrade']}" if metrics.get("degrade", "bicubic") != "bicubic" and not specs else ""
    line = (
        f"step {step}: val PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} "
        f"(bicubic {m['bicubic_psnr']:.2f} / {m['bicubic_ssim']:.4f}, {metrics['num_images']} images{where})"
    )
    if specs:
        gains = ", ".join(f"{spec} {v['psnr']:.2f} ({v['psnr'] - v['bicubic_psnr']:+.2f})" for spec, v in specs.items())
        line += f" averaged over {len(specs)} LR degradations: {gains}"
    return line + (" - new best" if best else "")


def _stop(trainer: Trainer, step: int, info: Callable[[str], dict[str, Any]], *, saved: bool) -> int:
    """Honour a stop request: checkpoint this step (unless just done), export ``last/``, log it, exit 0."""
    acc, config = trainer.accelerator, trainer.config
    out = Path(config.output_dir)
    if not saved:
        save_checkpoint(acc, out / "checkpoints", step, {"stage": config.train.stage})
        if acc.is_main_process:
            export_generator(trainer.export_model(), out / "last", info("last"), config)
    if acc.is_main_process:
        _append_log(out / "log.jsonl", {"step": step, "event": "stopped"})
        (out / STOP_FILE).unlink(missing_ok=True)
    acc.print(f"stopped at step {step} of {config.train.steps} on request; checkpoint saved, continue with --resume")
    return EXIT_OK


def train(config: Config, *, resume: bool = False, resume_from: str | None = None, loose: bool = False) -> int:
    """Run (or resume) the configured stage; returns a process exit code (0 ok, 2 bad setup, 3 diverged)."""
    out = Path(config.output_dir)
    accelerator = Accelerator(
        mixed_precision=config.accelerator_mixed_precision(),  # None: the launcher's / accelerate config's value
        log_with=None if config.log_with in ("none", "") else config.log_with,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        step_scheduler_with_optimizer=False,
    )
    try:
        with graceful_signals():
            clear_stop(out, accelerator.is_main_process)
            return _run(config, accelerator, resume=resume, resume_from=resume_from, loose=loose)
    except (SRError, ConfigError) as exc:
        accelerator.print(f"error: {exc}")
        return EXIT_CONFIG
    finally:
        accelerator.end_training()


def _run(config: Config, acc: Accelerator, *, resume: bool, resume_from: str | None, loose: bool = False) -> int:
    """One run, top to bottom: seed, models, data, resume, outputs, then the loop until the last step or a stop."""
    t = config.train
    set_seed(config.seed)
    if acc.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    trainer = Trainer(config, acc)
    train_images, val_images = _read_images(config, acc)
    dataset = _patch_dataset(config, acc, train_images)
    trainer.calibration = _calibration_batches(config, dataset)
    loader = trainer.prepare(_loader(config, acc, dataset))
    state = TrainState()
    acc.register_for_checkpointing(state, *trainer.checkpoint_objects())
    resumed = bool(resume or resume_from)
    if resumed:
        _resume(trainer, state, resume_from or Path(config.output_dir) / "checkpoints", loose)
    _prepare_output(config, acc, state.step, resumed)
    acc.init_trackers(Path(config.output_dir).name or "sr_training", config=_hparams(config))
    acc.print(_start_line(config, acc, train_images, dataset))
    if state.step >= t.steps:
        acc.print(f"nothing to do: already at step {state.step} of {t.steps}")
        return EXIT_OK
    loop = _Loop.begin(trainer, state, val_images)
    for batch in acc.skip_first_batches(loader, state.step) if state.step else loader:
        rates = trainer.learning_rates()
        try:
            values = trainer.step(batch)
        except DivergedError as exc:
            return loop.diverged(exc)
        state.step += 1
        step = state.step
        loop.log_losses(step, values, rates)
        if config.validate_every and (step % config.validate_every == 0 or step == t.steps):
            loop.validate(step)
        saved = step % config.checkpoint_every == 0 or step == t.steps
        if saved:
            loop.checkpoint(step)
        loop.bar.update(1)
        if step >= t.steps:
            break
        if stop_requested(Path(config.output_dir), acc):
            loop.bar.close()
            return _stop(trainer, step, loop.info, saved=saved)
    return loop.finish()


def _read_images(config: Config, acc: Accelerator) -> tuple[ImageList, ImageList | None]:
    """The training images and the readable validation images (None when validation is off)."""
    with acc.main_process_first():
        train_images = training_images(config, acc)
        val_images = load_images(config, "validation") if config.validate_every > 0 else None
    if val_images is None:
        return train_images, None
    val_images, unreadable = val_images.readable()
    if unreadable:
        acc.print(f"warning: skipping {len(unreadable)} unreadable validation image(s): {'; '.join(unreadable)}")
    if not len(val_images):
        raise ConfigError("data.val_dir: none of the validation images is readable")
    return train_images, val_images


def _patch_dataset(config: Config, acc: Accelerator, images: ImageList) -> PatchDataset:
    """Every (HR, LR) patch pair of the run, one per sample of every step of every process, in a fixed order."""
    d = config.data
    return PatchDataset(
        images,
        patch_size=d.patch_size,
        scale=config.model.scale,
        seed=config.seed,
        length=config.train.steps * d.batch_size * acc.num_processes,
        degradation=d.realistic if d.degradation == "realistic" else None,
    )


def _calibration_batches(config: Config, dataset: PatchDataset) -> list[torch.Tensor]:
    """The fixed LR batches that precise BN recomputes the statistics on (none when it is off)."""
    t, d = config.train, config.data
    if t.precise_bn_batches <= 0:
        return []
    calibration_set = dataset.sibling(seed=config.seed + 7919, length=t.precise_bn_batches * d.batch_size)
    return calibration_batches(calibration_set, t.precise_bn_batches, d.batch_size)


def _loader(config: Config, acc: Accelerator, dataset: PatchDataset) -> DataLoader:
    """Batches in the dataset's order (not shuffled: the order is the dataset's seeded one, so a resume can skip)."""
    d = config.data
    return DataLoader(
        dataset,
        batch_size=d.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=d.num_workers,
        pin_memory=acc.device.type == "cuda",
        persistent_workers=False,
    )


def _resume(trainer: Trainer, state: TrainState, source: str | Path, loose: bool) -> None:
    """Load the newest usable checkpoint under ``source`` into the trainer and ``state``, saying what differs."""
    acc, t = trainer.accelerator, trainer.config.train
    found, warnings = load_checkpoint(acc, source, loose=loose)
    for warning in warnings:
        acc.print(f"warning: {warning}")
    marker = json.loads((found / "checkpoint.json").read_text())
    if marker.get("num_processes", acc.num_processes) != acc.num_processes:
        acc.print(
            f"warning: checkpoint written by {marker['num_processes']} processes, resuming with "
            f"{acc.num_processes}: the patch order will differ from an uninterrupted run"
        )
    if trainer.scheduler_g.scheduler.base_lrs[0] != t.lr:
        acc.print(
            f"note: train.lr={t.lr} differs from the checkpoint's {trainer.scheduler_g.scheduler.base_lrs[0]}; "
            "a resumed run keeps the checkpoint's optimiser and schedule state"
        )
    acc.print(f"resumed from {found} at step {state.step}")


def _prepare_output(config: Config, acc: Accelerator, step: int, resumed: bool) -> None:
    """The output folder with this run's ``config.yaml``; the log cut back to ``step`` on resume, else started anew."""
    if not acc.is_main_process:
        return
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config))
    if resumed:
        _truncate_log(out / "log.jsonl", step)
    else:
        (out / "log.jsonl").unlink(missing_ok=True)


def _start_line(config: Config, acc: Accelerator, images: ImageList, dataset: PatchDataset) -> str:
    t, d = config.train, config.data
    return (
        f"stage {t.stage}: x{config.model.scale}, {len(images)} training images "
        f"({dataset.skipped} too small, {len(dataset.unreadable)} unreadable, skipped), "
        f"batch {d.batch_size} x {acc.num_processes} process(es), {t.steps} steps, device {acc.device}, "
        f"mixed precision {acc.mixed_precision} ({config.mixed_precision_source()})"
    )


@dataclass
class _Loop:
    """What the training loop keeps beside :class:`TrainState` (progress bar, throughput, running loss sums); its
    methods are the loop's periodic steps (log, validate, checkpoint) and its ends (divergence, the summary)."""

    trainer: Trainer
    state: TrainState
    val_images: ImageList | None
    bar: Any
    speed: Throughput
    running: torch.Tensor
    postfix: dict[str, str]
    count: int = 0

    @classmethod
    def begin(cls, trainer: Trainer, state: TrainState, val_images: ImageList | None) -> _Loop:
        acc, t, d = trainer.accelerator, trainer.config.train, trainer.config.data
        speed = Throughput(
            total_steps=t.steps, patches_per_step=d.batch_size * acc.num_processes, start_step=state.step
        )
        bar = tqdm(total=t.steps, initial=state.step, desc=t.stage, dynamic_ncols=True, disable=not acc.is_main_process)
        running = torch.zeros(len(trainer.terms), device=acc.device)
        postfix = {"loss": "-", "val_psnr": f"{state.last_val['psnr']:.2f}" if "psnr" in state.last_val else "-"}
        return cls(trainer, state, val_images, bar, speed, running, postfix)

    @property
    def out(self) -> Path:
        return Path(self.trainer.config.output_dir)

    def info(self, kind: str) -> dict[str, Any]:
        """The ``training.json`` of an export (``best`` or ``last``) at the current step."""
        config, state = self.trainer.config, self.state
        return {
            "kind": kind,
            "step": state.step,
            "stage": config.train.stage,
            "scale": config.model.scale,
            "ema_decay": config.train.ema_decay,
            "val": state.last_val,
            "best_step": state.best_step,
            "best_psnr": state.best_psnr if math.isfinite(state.best_psnr) else None,
        }

    def log_losses(self, step: int, values: torch.Tensor, rates: dict[str, float]) -> None:
        """Add the step's loss terms; every ``log_every`` steps (and at the last) log their mean and the speed."""
        acc, config = self.trainer.accelerator, self.trainer.config
        self.running += values
        self.count += 1
        if step % config.log_every != 0 and step != config.train.steps:
            return
        terms = (self.running / self.count).tolist()
        record = {"step": step, **dict(zip(self.trainer.terms, terms, strict=True)), **rates}
        self.running.zero_()
        self.count = 0
        acc.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
        if acc.is_main_process:
            _append_log(self.out / "log.jsonl", record)
            _append_log(self.out / "log.jsonl", self.speed.record(step))
        self.postfix["loss"] = f"{record['loss']:.4g}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def validate(self, step: int) -> None:
        """Score the exported generator, log it with a preview, and export ``best/`` when it is the best so far."""
        trainer, state = self.trainer, self.state
        acc, config = trainer.accelerator, trainer.config
        metrics = validate(trainer, self.val_images)
        best = metrics["mean"]["psnr"] > state.best_psnr
        state.last_val = {"step": step, **metrics["mean"]}
        if best:
            state.best_psnr, state.best_step = metrics["mean"]["psnr"], step
        per_spec = [(spec, k, v) for spec, values in metrics.get("specs", {}).items() for k, v in values.items()]
        tracked = {f"val/{k}": v for k, v in metrics["mean"].items()}
        acc.log({**tracked, **{f"val/{spec}/{k}": v for spec, k, v in per_spec}}, step=step)
        if acc.is_main_process:
            upscaler = make_upscaler(trainer.export_model(), acc.device)
            preview = write_val_preview(
                upscaler, self.val_images, self.out, scale=config.model.scale, degrade=config.data.val_specs()[0]
            )
            scores = {f"val_{k}": v for k, v in metrics["mean"].items()}
            scores.update({f"val_{k}_{spec}": v for spec, k, v in per_spec})
            _append_log(self.out / "log.jsonl", {"step": step, **scores, **preview})
            if best:
                export_generator(trainer.export_model(), self.out / "best", self.info("best"), config)
            self.bar.write(_val_line(step, metrics, best))
        self.postfix["val_psnr"] = f"{metrics['mean']['psnr']:.2f}"
        self.bar.set_postfix(self.postfix, refresh=False)

    def checkpoint(self, step: int) -> None:
        """Save the full state for ``--resume`` and export ``last/``."""
        acc, config = self.trainer.accelerator, self.trainer.config
        save_checkpoint(acc, self.out / "checkpoints", step, {"stage": config.train.stage})
        if acc.is_main_process:
            export_generator(self.trainer.export_model(), self.out / "last", self.info("last"), config)

    def diverged(self, exc: DivergedError) -> int:
        """Stop without saving after a NaN or infinite loss, naming the last good checkpoint."""
        self.bar.close()
        last = find_checkpoint(self.out / "checkpoints")
        self.trainer.accelerator.print(
            f"error: a loss became NaN or infinite at step {self.state.step + 1} ({exc}). Stopping without "
            f"saving; the last good checkpoint is {last or 'none (nothing saved yet)'}. Try a lower "
            "train.lr, train.grad_clip > 0, or mixed_precision=no, then --resume."
        )
        return EXIT_DIVERGED

    def finish(self) -> int:
        """The closing summary line, and the upload when ``hub.push_to_hub`` is set."""
        acc, config, state = self.trainer.accelerator, self.trainer.config, self.state
        self.bar.close()
        summary = f"done: step {state.step}; generator exported to {self.out / 'last'}"
        if state.best_step:
            summary += f", best (val PSNR {state.best_psnr:.2f} dB at step {state.best_step}) in {self.out / 'best'}"
        acc.print(summary)
        if config.hub.push_to_hub and acc.is_main_process:
            acc.print(publish(self.out, config.hub))
        return EXIT_OK


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(
        prog="train/train.py",
        description=__doc__.split("\n\n")[0],
        epilog="Overrides: section.key=value, e.g. train.steps=1000 data.train_dir=../shared/data/train "
        "loss.content_weight=0 mixed_precision=bf16 (values are read as YAML).",
    )
    parser.add_argument("--config", help="YAML file (train/configs/*.yaml); keys not in it keep their defaults")
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints/last")
    parser.add_argument("--resume-from", metavar="DIR", help="continue from this checkpoint (or run) folder")
    parser.add_argument(
        "--resume-loose",
        action="store_true",
        help="resume even when the checkpoint's random-number state cannot be restored (not an exact continuation)",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    config_path = args.config
    if config_path is None and (args.resume or args.resume_from):
        outputs = [o.split("=", 1)[1] for o in args.overrides if o.startswith("output_dir=")]
        run_dir = Path(outputs[-1]) if outputs else (Path(args.resume_from).parent.parent if args.resume_from else None)
        if run_dir is not None and (run_dir / "config.yaml").is_file():
            config_path = str(run_dir / "config.yaml")
    return args, load_config(config_path, args.overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        args, config = parse_args(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return train(config, resume=args.resume, resume_from=args.resume_from, loose=args.resume_loose)


if __name__ == "__main__":
    sys.exit(main())
