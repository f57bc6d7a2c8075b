"""The trainer end to end on a tiny generated image folder with a tiny generator (CPU, seconds per run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from PIL import Image
from safetensors.torch import load_file, save_file
from train_helpers import ROOT, loss_records, reset_accelerate_state, run_training, tiny_args

from sr_core.degradations import NAMED_DEGRADATIONS
from train.checkpoint import MARKER, find_checkpoint
from train.config import ConfigError, load_config
from train.ema import EMA
from train.train import EXIT_CONFIG, EXIT_DIVERGED, EXIT_OK, Trainer, main

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
RUN = ("validate_every=2", "checkpoint_every=2")  # this file's runs validate and checkpoint every 2 steps


def smooth_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A random smooth RGB image: a few low-frequency sinusoids per channel."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    channels = []
    for _ in range(3):
        value = np.full((size, size), 0.5)
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.5, 3, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
            value += rng.uniform(0.05, 0.15) * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
        channels.append(value)
    return (np.clip(np.stack(channels, axis=2), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        (root / split).mkdir()
        for i in range(count):
            Image.fromarray(smooth_image(rng)).save(root / split / f"img{i}.png")
    return root / "train", root / "val"


def run(folders, out: Path, *extra: str) -> int:
    return run_training(folders, out, *RUN, *extra)


def srgan_args(stage1: Path, *extra: str) -> list[str]:
    return ["train.stage=srgan", f"train.init_from={stage1 / 'best'}", "loss.pixel_weight=1",
            "loss.adversarial_weight=0.001", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def stage1_run(image_folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1") / "run"
    assert run(image_folders, out, "train.steps=4", "data.num_workers=1") == EXIT_OK
    reset_accelerate_state()
    return out


# --------------------------------------------------------------------------------------------- config


def test_config_files_load_and_x2_variants():
    for name, scale, stage in (("srresnet_x4", 4, "srresnet"), ("srresnet_x2", 2, "srresnet"),
                               ("srgan_x4", 4, "srgan"), ("srgan_x2", 2, "srgan")):  # fmt: skip
        config = load_config(ROOT / "train/configs" / f"{name}.yaml")
        assert (config.model.scale, config.train.stage) == (scale, stage)
        assert config.output_dir == f"outputs/{name}"
    gan = load_config(ROOT / "train/configs/srgan_x4.yaml")
    assert gan.train.init_from == "outputs/srresnet_x4/best"
    assert gan.loss.vgg_feature_scale == pytest.approx(1 / 12.75)


def test_real_photo_configs_use_the_realistic_degradations():
    real = load_config(ROOT / "train/configs/real_srresnet_x4.yaml")
    assert (real.data.degradation, real.train.stage, real.train.init_from) == ("realistic", "srresnet", "srresnet")
    assert real.data.realistic.clean_prob == pytest.approx(0.1) and real.data.realistic.noise_range2 == [1.0, 15.0]
    assert real.data.realistic.kernel_list[0] == "iso"  # unset keys keep Real-ESRGAN's defaults
    assert sorted(real.data.val_specs()) == sorted(NAMED_DEGRADATIONS)  # best/ is judged on every named input
    gan = load_config(ROOT / "train/configs/real_srgan_x4.yaml")
    assert (gan.train.stage, gan.train.init_from, gan.data.degradation) == ("srgan", "real-srresnet", "realistic")
    assert gan.data.realistic == real.data.realistic
    assert load_config(ROOT / "train/configs/srresnet_x4.yaml").data.degradation == "bicubic"


def test_overrides_are_typed():
    config = load_config(None, ["train.steps=1000", "train.lr=2e-4", "train.milestones=[10, 20]",
                                "data.train_dir=/x", "data.val_dir=null", "validate_every=0"])  # fmt: skip
    assert config.train.steps == 1000 and isinstance(config.train.steps, int)
    assert config.train.lr == 2e-4 and config.train.milestones == [10, 20]
    assert config.data.train_dir == "/x" and config.data.val_dir is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.stepz=5", "train.stepz"),
        ("bogus=1", "bogus"),
        ("train.steps=abc", "train.steps"),
        ("train.steps=0", "train.steps"),
        ("train.stage=esrgan", "train.stage"),
        ("loss.pixel=huber", "loss.pixel"),
        ("mixed_precision=fp8", "mixed_precision"),
        ("data.patch_size=30", "data.patch_size"),
        ("train.betas=[0.9]", "train.betas"),
        ("train.ema_decay=1.5", "train.ema_decay"),
        ("loss.feature_matching_weight=0.1", "loss.feature_matching_weight"),
        ("loss.feature_matching_weight=-1", "loss.feature_matching_weight"),
        ("train.steps", "train.steps"),
        ("data.degradation=real", "data.degradation"),
        ("data.val_degrade=jpeg10", "data.val_degrade"),
        ("data.val_degrade=[jpeg75, jpeg10]", "data.val_degrade"),
        ("data.val_degrade=[jpeg75, jpeg75]", "data.val_degrade"),
        ("data.val_degrade=[]", "data.val_degrade"),
        ("data.realistic.noise_range=[9, 1]", "data.realistic.noise_range"),
        ("data.realistic.jpeg_prob=2", "data.realistic.jpeg_prob"),
        ("data.realistic.bogus=1", "data.realistic.bogus"),
        ("train.freeze_bn=true", "train.precise_bn_batches"),
        ("train.add_blocks=-1", "train.add_blocks"),
        ("train.add_blocks=2", "train.add_blocks"),
        ("train.add_blocks_lr_scale=0", "train.add_blocks_lr_scale"),
        ("model.architecture=Discriminator", "model.architecture"),
        ("hub.push_to_hub=not-a-hub-id", "hub.push_to_hub"),
        ("hub.private=maybe", "hub.private"),
    ],
)
def test_bad_override_is_rejected_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}"):
        load_config(ROOT / "train/configs/srresnet_x4.yaml", [override])


def test_bad_yaml_key_is_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  patch_size: 48\n  patch_sise: 96\n")
    with pytest.raises(ConfigError, match="data.patch_sise: unknown key"):
        load_config(bad)
    assert main(["--config", str(bad)]) == EXIT_CONFIG
    assert "data.patch_sise" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- stage 1


def test_stage1_end_to_end(stage1_run, image_folders):
    import sr_core
    from sr_core.evaluate import evaluate
    from sr_core.models import SRResNet, load_pretrained

    out = stage1_run
    records = loss_records(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["loss"] == r["pixel"] for r in records)
    vals = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if "val_psnr" in x]
    assert [v["step"] for v in vals] == [2, 4]
    for name in ("best", "last"):
        model = load_pretrained(out / name)
        assert isinstance(model, SRResNet) and model.config.num_blocks == 1 and model.scale == 4
    info = json.loads((out / "last/training.json").read_text())
    assert info["step"] == 4 and info["val"]["step"] == 4
    best = json.loads((out / "best/training.json").read_text())
    assert best["step"] == best["best_step"] and best["val"]["psnr"] == pytest.approx(best["best_psnr"])
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 4
    lr = Image.new("RGB", (10, 7), (120, 30, 200))
    assert sr_core.upscale(lr, method=str(out / "best"), scale=4).size == (40, 28)
    # The exported model scores the same through sr_core.evaluate as during validation.
    result = evaluate(str(out / "last"), 4, image_folders[1])
    assert result["mean"]["psnr"] == pytest.approx(info["val"]["psnr"], abs=0.02)
    assert load_config(out / "config.yaml").train.steps == 4


def test_realistic_degradation_run_trains_and_validates_on_degraded_lr(image_folders, tmp_path, capsys):
    out = tmp_path / "real"
    code = run(image_folders, out, "train.steps=2", "data.degradation=realistic", "data.val_degrade=jpeg75",
               "train.precise_bn_batches=1", "data.realistic.noise_range=[5, 10]")  # fmt: skip
    assert code == EXIT_OK
    assert "LR jpeg75" in capsys.readouterr().out
    assert len(loss_records(out)) == 2 and (out / "best" / "model.safetensors").is_file()


def test_validation_on_several_degradations_scores_each_and_keeps_the_best_of_their_mean(
    image_folders, tmp_path, capsys
):
    from sr_core.evaluate import evaluate

    out = tmp_path / "specs"
    assert run(image_folders, out, "train.steps=4", "data.val_degrade=[bicubic, noise10+jpeg75]") == EXIT_OK
    assert "averaged over 2 LR degradations: bicubic" in capsys.readouterr().out
    vals = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if "val_psnr" in x]
    assert [v["step"] for v in vals] == [2, 4]
    last = vals[-1]
    # Each degradation is scored as sr_core.evaluate scores the exported model on it; the run's PSNR is their mean.
    for spec in ("bicubic", "noise10+jpeg75"):
        result = evaluate(str(out / "last"), 4, image_folders[1], degrade=spec)["mean"]
        assert last[f"val_psnr_{spec}"] == pytest.approx(result["psnr"], abs=0.02)
        assert last[f"val_bicubic_psnr_{spec}"] == pytest.approx(result["bicubic_psnr"], abs=1e-9)
    assert last["val_psnr_noise10+jpeg75"] < last["val_psnr_bicubic"]
    assert last["val_psnr"] == pytest.approx((last["val_psnr_bicubic"] + last["val_psnr_noise10+jpeg75"]) / 2)
    best = json.loads((out / "best/training.json").read_text())
    assert best["best_psnr"] == pytest.approx(max(v["val_psnr"] for v in vals))
    assert "bicubic / noise10+jpeg75, scores averaged" in (out / "best/README.md").read_text()


def test_freeze_bn_keeps_the_statistics_and_trains_the_rest(image_folders, tmp_path):
    out = tmp_path / "frozen"
    code = run(image_folders, out, "train.steps=2", "train.freeze_bn=true", "train.precise_bn_batches=0",
               "validate_every=0")  # fmt: skip
    assert code == EXIT_OK
    last = load_file(out / "checkpoints/last/model.safetensors")
    stats = [k for k in last if k.endswith(("running_mean", "running_var"))]
    # A fresh BatchNorm holds mean 0 / var 1: frozen, the statistics never moved ...
    assert stats and all(torch.equal(last[k], torch.zeros_like(last[k])) for k in stats if k.endswith("mean"))
    assert all(torch.equal(last[k], torch.ones_like(last[k])) for k in stats if k.endswith("var"))
    # ... while the BatchNorm scales (initialised to 1) were trained.
    scales = [k for k in last if k.replace("weight", "running_var") in last and k.endswith(".weight")]
    assert scales and any(not torch.equal(last[k], torch.ones_like(last[k])) for k in scales)


def test_init_from_a_shipped_method_name(tmp_path, weights_dir, monkeypatch):
    from train.train import build_generator

    monkeypatch.setenv("SR_STUDIO_WEIGHTS_DIR", str(weights_dir))
    model = build_generator(load_config(None, ["train.init_from=srresnet", "data.train_dir=x", "data.val_dir=y"]))
    assert model.scale == 4 and model.config.channels == 8  # the tiny x4 model of the weights fixture
    with pytest.raises(ConfigError, match="neither a folder nor a shipped model"):
        build_generator(load_config(None, ["train.init_from=nope", "data.train_dir=x", "data.val_dir=y"]))


def test_add_blocks_grows_the_trunk_and_keeps_the_function(tmp_path, weights_dir, monkeypatch):
    from train.train import build_generator

    monkeypatch.setenv("SR_STUDIO_WEIGHTS_DIR", str(weights_dir))
    overrides = ["train.init_from=srresnet", "data.train_dir=x", "data.val_dir=y"]
    source = build_generator(load_config(None, overrides)).eval()
    grown = build_generator(load_config(None, [*overrides, "train.add_blocks=3"])).eval()
    assert grown.config.num_blocks == source.config.num_blocks + 3
    old = source.state_dict()
    assert all(torch.equal(v, old[k]) for k, v in grown.state_dict().items() if k in old)
    new_keys = {k.split(".")[1] for k in grown.state_dict() if k.startswith("trunk.") and k not in old}
    assert len(new_keys) == 3
    x = torch.rand(2, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(grown(x), source(x), rtol=0, atol=1e-6)
    grown.train()(x).sum().backward()  # the new blocks learn: their last BatchNorm scale gets a gradient
    last_new = grown.trunk[-1].bn2.weight
    assert last_new.grad is not None and last_new.grad.abs().sum() > 0


def test_appended_blocks_under_frozen_batchnorm_start_from_a_zero_conv(weights_dir, monkeypatch):
    from train.train import build_generator, freeze_batchnorm_statistics

    monkeypatch.setenv("SR_STUDIO_WEIGHTS_DIR", str(weights_dir))
    frozen = ["train.freeze_bn=true", "train.precise_bn_batches=0"]
    overrides = ["train.init_from=srresnet", *frozen, "data.train_dir=x", "data.val_dir=y"]
    source = build_generator(load_config(None, overrides)).eval()
    grown = build_generator(load_config(None, [*overrides, "train.add_blocks=2"])).train()
    freeze_batchnorm_statistics(grown)
    x = torch.rand(2, 3, 12, 10)
    out = grown(x)
    with torch.no_grad():
        torch.testing.assert_close(out, source(x), rtol=0, atol=1e-6)
    out.sum().backward()
    for block in grown.trunk[-2:]:
        assert torch.count_nonzero(block.conv2.weight) == 0 and torch.equal(block.bn2.weight, torch.ones(8))
        assert torch.count_nonzero(block.conv2.weight.grad) > 0.9 * block.conv2.weight.numel()  # every weight learns
        assert torch.count_nonzero(block.conv1.weight.grad) == 0  # until the zero conv has moved


def test_appended_blocks_get_their_own_learning_rate(image_folders, tmp_path, weights_dir, monkeypatch):
    from safetensors.torch import load_file

    from train.train import build_generator, generator_param_groups

    monkeypatch.setenv("SR_STUDIO_WEIGHTS_DIR", str(weights_dir))
    grow = ["train.init_from=srresnet", "train.add_blocks=2", "train.add_blocks_lr_scale=10"]
    config = load_config(None, [*grow, "train.lr=3e-4", "data.train_dir=x", "data.val_dir=y"])
    model = build_generator(config)
    base, grown = torch.optim.Adam(generator_param_groups(model, config.train), lr=config.train.lr).param_groups
    assert base["lr"] == pytest.approx(3e-4) and grown["lr"] == pytest.approx(3e-3)
    appended = {id(p) for p in model.trunk[-2:].parameters()}
    assert {id(p) for p in grown["params"]} == appended
    assert not appended & {id(p) for p in base["params"]}
    assert len(base["params"]) + len(grown["params"]) == len(list(model.parameters()))
    # A whole run: the exported model is the grown one, and the appended blocks moved away from identities.
    out = tmp_path / "run"
    assert run(image_folders, out, "train.steps=3", *grow) == EXIT_OK
    exported = json.loads((out / "best" / "config.json").read_text())
    assert exported["num_blocks"] == model.config.num_blocks
    state = load_file(out / "last" / "model.safetensors")
    assert state[f"trunk.{model.config.num_blocks - 1}.bn2.weight"].abs().sum() > 0


def test_resume_continues_exactly(image_folders, tmp_path):
    extra = ["train.schedule=multistep", "train.milestones=[4]", "train.gamma=0.5", "train.ema_decay=0.9",
             "train.lr=1e-3", "train.warmup_steps=0"]  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(image_folders, whole, "train.steps=6", *extra) == EXIT_OK
    assert run(image_folders, parts, "train.steps=3", *extra) == EXIT_OK
    assert run(image_folders, parts, "train.steps=6", "--resume", *extra) == EXIT_OK
    a, b = loss_records(whole), loss_records(parts)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert a == b  # losses and learning rates, float for float
    assert [r["lr"] for r in a] == pytest.approx([1e-3] * 4 + [5e-4] * 2)
    for rel in ("last/model.safetensors", "checkpoints/last/model.safetensors"):
        wa, wb = load_file(whole / rel), load_file(parts / rel)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ema_a = torch.load(whole / "checkpoints/last/custom_checkpoint_1.pkl", weights_only=False)
    ema_b = torch.load(parts / "checkpoints/last/custom_checkpoint_1.pkl", weights_only=False)
    assert all(torch.equal(ema_a["shadow"][k], ema_b["shadow"][k]) for k in ema_a["shadow"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(image_folders, tmp_path, capsys):
    out = tmp_path / "run"
    # Step 1 is computed with sane initial weights; its absurd update makes step 2 overflow.
    code = run(image_folders, out, "train.steps=4", "train.lr=1e30", "checkpoint_every=1", "validate_every=0")
    assert code == EXIT_DIVERGED
    message = capsys.readouterr().out
    assert "NaN or infinite at step 2" in message and str(out / "checkpoints" / "last") in message
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 1
    assert json.loads((out / "last/training.json").read_text())["step"] == 1
    assert [r["step"] for r in loss_records(out)] == [1]


def test_killed_during_save_leaves_a_loadable_last(image_folders, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run(image_folders, out, "train.steps=2") == EXIT_OK
    before = load_file(out / "checkpoints/last/model.safetensors")
    original = Accelerator.save_state

    def dies_half_way(self, output_dir=None, **kwargs):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(Accelerator, "save_state", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        run(image_folders, out, "train.steps=4", "--resume")
    monkeypatch.setattr(Accelerator, "save_state", original)
    assert find_checkpoint(out) == out / "checkpoints/last"
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 2
    after = load_file(out / "checkpoints/last/model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Killed between the two renames of the swap: only "prev" is left, and it is used.
    os.replace(out / "checkpoints/last", out / "checkpoints/prev")
    assert find_checkpoint(out) == out / "checkpoints/prev"
    assert run(image_folders, out, "train.steps=4", "--resume") == EXIT_OK
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 4
    assert not list((out / "checkpoints").glob(".tmp-*"))
    assert json.loads((out / "checkpoints/prev" / MARKER).read_text())["step"] == 2  # the one before last


# --------------------------------------------------------------------------------------------- faults


@pytest.fixture
def two_checkpoints(image_folders, tmp_path) -> Path:
    """A run at step 4 with checkpoints/last (step 4) and checkpoints/prev (step 2)."""
    out = tmp_path / "run"
    assert run(image_folders, out, "train.steps=4", "validate_every=0") == EXIT_OK
    assert json.loads((out / "checkpoints/prev" / MARKER).read_text())["step"] == 2
    return out


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate-model", "flip-optimizer", "garbage-rng"])
def test_damaged_last_checkpoint_falls_back_to_prev(image_folders, two_checkpoints, capsys, damage):
    out, last = two_checkpoints, two_checkpoints / "checkpoints/last"
    if damage == "truncate-model":
        (last / "model.safetensors").write_bytes((last / "model.safetensors").read_bytes()[:100])
    elif damage == "flip-optimizer":
        _flip_byte(last / "optimizer.bin", 200)
    else:
        (last / "random_states_0.pkl").write_bytes(b"not a pickle")
    capsys.readouterr()
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume") == EXIT_OK
    text = capsys.readouterr().out
    assert "warning:" in text and "resumed from the older" in text and "at step 2" in text
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 6
    assert [r["step"] for r in loss_records(out)] == [1, 2, 3, 4, 5, 6]


def test_no_usable_checkpoint_is_one_sentence_and_exit_2(image_folders, two_checkpoints, capsys):
    out = two_checkpoints
    for name in ("last", "prev"):
        _flip_byte(out / "checkpoints" / name / "model.safetensors", 5)
    capsys.readouterr()
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume") == EXIT_CONFIG
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no usable checkpoint" in lines[0] and "model.safetensors" in lines[0]


def test_unrestorable_rng_state_is_an_error_unless_resume_loose(image_folders, two_checkpoints, capsys):
    out = two_checkpoints
    shutil.rmtree(out / "checkpoints/prev")
    last = out / "checkpoints/last"
    (last / "random_states_0.pkl").write_bytes(b"garbage")
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume") == EXIT_CONFIG
    assert "--resume-loose" in capsys.readouterr().out
    # An old-format checkpoint without checksums: the restore itself is checked.
    marker = json.loads((last / MARKER).read_text())
    marker.pop("files")
    (last / MARKER).write_text(json.dumps(marker))
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume") == EXIT_CONFIG
    assert "random-number state cannot be restored" in capsys.readouterr().out
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume", "--resume-loose") == EXIT_OK
    assert "random-number state not restored" in capsys.readouterr().out


def test_torn_log_line_is_dropped_on_resume(image_folders, two_checkpoints):
    out = two_checkpoints
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.')
    assert run(image_folders, out, "train.steps=6", "validate_every=0", "--resume") == EXIT_OK
    assert [r["step"] for r in loss_records(out)] == [1, 2, 3, 4, 5, 6]


def test_unreadable_training_images_are_listed_once_and_skipped(image_folders, tmp_path, caplog, capsys):
    train_dir = tmp_path / "train"
    shutil.copytree(image_folders[0], train_dir)
    (train_dir / "notes.png").write_text("this is text, not an image")
    good = (train_dir / "img0.png").read_bytes()
    (train_dir / "cut.png").write_bytes(good[: len(good) // 2])
    val_dir = tmp_path / "val"
    shutil.copytree(image_folders[1], val_dir)
    (val_dir / "bad.png").write_bytes(b"\x89PNG broken")
    with caplog.at_level("WARNING"):
        code = run((train_dir, val_dir), tmp_path / "run", "train.steps=2", "train.precise_bn_batches=1")
    assert code == EXIT_OK
    warnings = [r.getMessage() for r in caplog.records if "unreadable training image" in r.getMessage()]
    assert len(warnings) == 1 and "notes.png" in warnings[0] and "cut.png" in warnings[0]
    assert "2 unreadable, skipped" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- stage 2


def test_srgan_without_content_loss(stage1_run, image_folders, tmp_path):
    out = tmp_path / "gan"
    assert run(image_folders, out, *srgan_args(stage1_run, "loss.content_weight=0", "train.steps=2")) == EXIT_OK
    records = loss_records(out)
    assert len(records) == 2
    for r in records:
        assert 0 < r["d_hr"] < 1 and 0 < r["d_sr"] < 1 and r["d_loss"] > 0 and r["content"] == 0
        assert r["loss"] == pytest.approx(r["pixel"] + 0.001 * r["adversarial"], rel=1e-5)
    names = {p.name for p in (out / "checkpoints/last").iterdir()}
    assert {"model.safetensors", "model_1.safetensors", "optimizer.bin", "optimizer_1.bin"} <= names
    assert load_file(out / "checkpoints/last/model_1.safetensors")["head.3.weight"].shape == (1, 1024)


def test_srgan_with_feature_matching(stage1_run, image_folders, tmp_path):
    out = tmp_path / "gan_fm"
    extra = ("loss.content_weight=0", "loss.feature_matching_weight=0.5", "train.steps=2")
    assert run(image_folders, out, *srgan_args(stage1_run, *extra)) == EXIT_OK
    for r in loss_records(out):
        assert r["feature"] > 0
        expected = r["pixel"] + 0.001 * r["adversarial"] + 0.5 * r["feature"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5)


def test_srgan_relativistic_with_the_ldl_artifact_loss(stage1_run, image_folders, tmp_path):
    out = tmp_path / "gan_ldl"
    extra = ("loss.content_weight=0", "loss.gan_type=relativistic", "loss.artifact_weight=1", "train.ema_decay=0.9",
             "loss.grid_weight=2", "train.steps=2")  # fmt: skip
    assert run(image_folders, out, *srgan_args(stage1_run, *extra)) == EXIT_OK
    for r in loss_records(out):
        assert r["artifact"] >= 0 and r["grid"] > 0 and r["d_loss"] > 0
        expected = r["pixel"] + 0.001 * r["adversarial"] + r["artifact"] + 2 * r["grid"]
        assert r["loss"] == pytest.approx(expected, rel=1e-5)


def test_srgan_with_a_spectral_norm_discriminator_trains_and_resumes(stage1_run, image_folders, tmp_path):
    out = tmp_path / "gan_sn"
    extra = ("loss.content_weight=0", "loss.feature_matching_weight=0.5", "model.d_spectral_norm=true",
             "checkpoint_every=2")  # fmt: skip
    assert run(image_folders, out, *srgan_args(stage1_run, *extra, "train.steps=2")) == EXIT_OK
    assert run(image_folders, out, *srgan_args(stage1_run, *extra, "train.steps=3"), "--resume") == EXIT_OK
    records = loss_records(out)
    assert [r["step"] for r in records][-1] == 3
    assert all(r["d_loss"] > 0 and r["feature"] > 0 for r in records)


def test_gan_loss_options_are_checked():
    base = ["train.stage=srgan", "data.train_dir=x", "data.val_dir=y"]
    with pytest.raises(ConfigError, match="loss.gan_type"):
        load_config(None, [*base, "loss.gan_type=wgan"])
    with pytest.raises(ConfigError, match="train.ema_decay > 0"):
        load_config(None, [*base, "loss.artifact_weight=1"])
    with pytest.raises(ConfigError, match="loss.artifact_kernel"):
        load_config(None, [*base, "loss.artifact_weight=1", "train.ema_decay=0.99", "loss.artifact_kernel=4"])
    with pytest.raises(ConfigError, match="loss.artifact_weight"):
        load_config(None, ["data.train_dir=x", "data.val_dir=y", "loss.artifact_weight=1", "train.ema_decay=0.99"])
    with pytest.raises(ConfigError, match="loss.grid_weight"):
        load_config(None, [*base, "loss.grid_weight=1", "data.patch_size=24"])
    with pytest.raises(ConfigError, match="loss.grid_weight"):
        load_config(None, ["data.train_dir=x", "data.val_dir=y", "loss.grid_weight=1"])


@pytest.fixture(scope="module")
def random_vgg_file(tmp_path_factory) -> Path:
    from torchvision.models import vgg19

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.safetensors"
    save_file({f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}, str(path))
    return path


def test_srgan_with_vgg_content_loss(stage1_run, image_folders, tmp_path, random_vgg_file):
    out = tmp_path / "gan"
    args = srgan_args(stage1_run, "loss.content_weight=1", f"loss.vgg_weights={random_vgg_file}", "train.steps=2")
    assert run(image_folders, out, *args) == EXIT_OK
    for r in loss_records(out):
        assert r["content"] > 0
        assert r["loss"] == pytest.approx(r["pixel"] + r["content"] + 0.001 * r["adversarial"], rel=1e-5)


def test_content_loss_gradient_reaches_the_generator(stage1_run, random_vgg_file):
    config = load_config(None, ["train.stage=srgan", f"train.init_from={stage1_run / 'best'}", "data.train_dir=x",
                                "validate_every=0", "loss.pixel_weight=0", "loss.adversarial_weight=0",
                                "loss.content_weight=1", f"loss.vgg_weights={random_vgg_file}", "train.lr=1e-3",
                                "model.d_channels=8"])  # fmt: skip
    trainer = Trainer(config, Accelerator(cpu=True))
    trainer.prepare()
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    rng = np.random.default_rng(1)
    hr = torch.from_numpy(np.stack([smooth_image(rng, 32).transpose(2, 0, 1) for _ in range(2)]))
    lr = torch.nn.functional.avg_pool2d(hr.float(), 4).round().to(torch.uint8)
    values = trainer.step({"lr": lr, "hr": hr})
    assert values[2] > 0 and values[3] > 0  # content and adversarial are computed...
    changed = [k for k, v in trainer.generator.named_parameters() if not torch.equal(v.detach(), before[k])]
    # ...but only the content term has a weight, so its gradient alone moved every generator weight.
    # Biases of convolutions feeding a BatchNorm have no gradient in training mode (BN removes the mean).
    before_bn = ("conv1.bias", "conv2.bias", "trunk_conv.bias")
    unchanged = [k for k, _ in trainer.generator.named_parameters() if k not in changed and not k.endswith(before_bn)]
    assert not unchanged, unchanged
    assert len(changed) > 0.8 * len(list(trainer.generator.parameters()))


def test_srgan_stops_at_start_up_without_vgg_weights(stage1_run, image_folders, tmp_path, monkeypatch, capsys):
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(tvm.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    out = tmp_path / "gan"
    assert run(image_folders, out, *srgan_args(stage1_run, "loss.content_weight=1", "train.steps=2")) == EXIT_CONFIG
    message = capsys.readouterr().out
    assert "loss.content_weight=0" in message and "vgg19" in message.lower()
    assert not (out / "checkpoints").exists()


def test_ema_moves_towards_the_weights():
    model = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    # ema = 0.9 * ema + 0.1 * param (the reversed formula would give 0.9 and track only the live weights).
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.1))
    ema.update(model)
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.19))


def test_ema_averages_parameters_takes_buffers_and_resumes_from_its_state_dict():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    ema = EMA(model, decay=0.8)
    assert not ema.shadow.training and not any(p.requires_grad for p in ema.shadow.parameters())
    reference = {k: v.double().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(5):
        optimizer.zero_grad()
        model(torch.rand(2, 3, 6, 6)).square().mean().backward()
        optimizer.step()
        if step == 2:  # a resumed run: a fresh EMA (other decay) loads the checkpointed state, then goes on
            state = ema.state_dict()
            assert set(state) == {"decay", "shadow"} and set(state["shadow"]) == set(model.state_dict())
            ema = EMA(model, decay=0.5)
            ema.load_state_dict(state)
        ema.update(model)
        for k, p in model.named_parameters():
            reference[k] = 0.8 * reference[k] + 0.2 * p.detach().double()
    for k, v in ema.shadow.named_parameters():
        torch.testing.assert_close(v.double(), reference[k], rtol=1e-6, atol=1e-7)
    # Buffers are the live model's (running statistics, batch count), not averaged.
    for k, b in ema.shadow.named_buffers():
        assert torch.equal(b, model.get_buffer(k)), k
    assert ema.shadow[1].num_batches_tracked.item() == 5


@pytest.mark.slow
def test_two_process_cpu_run_writes_the_same_checkpoint_format(image_folders, stage1_run, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           str(ROOT / "train/train.py"), *tiny_args(image_folders, out, *RUN, "train.steps=4")]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x 2 process(es)" in proc.stdout
    single = {p.name for p in (stage1_run / "checkpoints/last").iterdir()}
    double = {p.name for p in (out / "checkpoints/last").iterdir()}
    assert double == single | {"random_states_1.pkl"}
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["num_processes"] == 2
    assert [r["step"] for r in loss_records(out)] == [1, 2, 3, 4]
    # Stage 2 under DDP (discriminator forwarded twice per step, the generator step through the unwrapped D).
    gan = tmp_path / "ddp-gan"
    cmd[cmd.index(str(ROOT / "train/train.py")) + 1 :] = tiny_args(
        image_folders, gan, *RUN, *srgan_args(out, "loss.content_weight=0", "train.steps=2")
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"model_1.safetensors", "random_states_1.pkl"} <= {p.name for p in (gan / "checkpoints/last").iterdir()}
    assert all(0 < r["d_hr"] < 1 for r in loss_records(gan))
    # A single process can pick the two-process checkpoint up.
    assert run(image_folders, out, "train.steps=5", "--resume") == EXIT_OK
    assert json.loads((out / "checkpoints/last" / MARKER).read_text())["step"] == 5


def test_init_from_another_scale_copies_the_scale_independent_layers():
    from sr_core.models import SRResNet
    from train.train import transferred

    torch.manual_seed(0)
    x4 = SRResNet(scale=4, num_blocks=2, channels=8)
    x2 = transferred(x4, scale=2)
    assert x2.scale == 2 and len(x2.upsampler) == 1
    src, dst = x4.state_dict(), x2.state_dict()
    for key in dst:
        assert torch.equal(dst[key], src[key]), key  # every x2 layer exists in x4 with the same shape
    x8 = transferred(x4, scale=8)
    fresh = [k for k in x8.state_dict() if k.startswith("upsampler.2.")]
    assert fresh and all(k not in src for k in fresh)
    assert x8(torch.rand(1, 3, 5, 5)).shape == (1, 3, 40, 40)


def test_precise_bn_holds_the_exact_statistics_of_the_calibration_patches():
    from torch import nn

    from train.precise_bn import recalibrated

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    batches = [torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8) for _ in range(3)]
    with torch.no_grad():
        feats = torch.cat([model[0](b.float() / 255) for b in batches])  # (15, 4, 8, 8)
    calibrated = recalibrated(model, batches, torch.device("cpu"))
    bn = calibrated[1]
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    # BatchNorm keeps the unbiased variance of each batch; the cumulative average is their mean.
    per_batch = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats.split(5)])
    torch.testing.assert_close(bn.running_var, per_batch.mean(0), atol=1e-5, rtol=1e-5)
    assert not calibrated.training and model[1].running_mean.abs().sum() == 0  # the original is untouched


# --------------------------------------------------------------------------------------------- hub


def front_matter(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text().split("---\n", 2)[1])


def test_exported_generators_carry_a_model_card_with_their_validation_scores(stage1_run):
    best = json.loads((stage1_run / "best" / "training.json").read_text())
    meta = front_matter(stage1_run / "best" / "README.md")
    assert meta["library_name"] == "sr-studio" and meta["pipeline_tag"] == "image-to-image"
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["psnr"] == pytest.approx(best["val"]["psnr"])
    assert metrics["ssim"] == pytest.approx(best["val"]["ssim"])
    body = (stage1_run / "best" / "README.md").read_text()
    assert f"| optimiser steps | {best['step']} |" in body and "| stage | srresnet |" in body


def test_push_to_hub_offline_keeps_the_export_and_exits_0(image_folders, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(image_folders, out, "train.steps=2", "hub.push_to_hub=test-user/tiny-run") == EXIT_OK
    lines = [line for line in capsys.readouterr().out.splitlines() if "not published" in line]
    assert len(lines) == 1 and "test-user/tiny-run" in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert f"export stays in {out / 'best'}" in lines[0] and (out / "best" / "model.safetensors").is_file()
    card = (out / "best" / "README.md").read_text()
    assert "--method test-user/tiny-run" in card  # the card names the repo it is published to


@pytest.mark.slow
def test_push_to_hub_with_an_unreachable_hub_is_one_message_not_a_traceback(image_folders, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: the upload fails at the network call itself
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_TOKEN": "hf_test_token_not_a_secret",
    }
    out = tmp_path / "run"
    args = tiny_args(
        image_folders, out, *RUN, "train.steps=2", "hub.push_to_hub=test-user/tiny-run", "hub.private=true"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "train" / "train.py"), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = [line for line in result.stdout.splitlines() if "not published" in line]
    assert "test-user/tiny-run" in line and "cannot be reached" in line and "hf upload test-user/tiny-run" in line
    assert (out / "best" / "model.safetensors").is_file()


def test_average_weights_writes_the_weighted_mean_of_two_models(tmp_path):
    from sr_core.models import SRResNet, load_pretrained
    from train.average_weights import main as average_main

    torch.manual_seed(0)
    a, b = SRResNet(scale=4, num_blocks=2, channels=8), SRResNet(scale=4, num_blocks=2, channels=8)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    out = tmp_path / "soup"
    assert average_main([str(tmp_path / "a"), str(tmp_path / "b"), "--weights", "3", "1", "--out", str(out)]) == 0
    soup, sa, sb = load_pretrained(out).state_dict(), a.state_dict(), b.state_dict()
    for key, value in soup.items():
        expected = 0.75 * sa[key] + 0.25 * sb[key] if sa[key].is_floating_point() else sa[key]
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    # Models of different configs cannot be averaged: a clear error, exit 2, nothing written.
    SRResNet(scale=4, num_blocks=3, channels=8).save_pretrained(tmp_path / "c")
    bad = tmp_path / "bad"
    assert average_main([str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(bad)]) == 2
    assert not bad.exists()
