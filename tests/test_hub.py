"""Hub ids as methods: fetched once into the Hugging Face cache, then offline; clear errors without it.

Nothing here touches the network: the models are laid out in a temporary Hub cache (``hub_cache`` fixture) exactly
as huggingface_hub stores downloads, and HF_HUB_OFFLINE is on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sr_core
from sr_core.errors import OfflineError, UnknownMethodError, WeightsError
from sr_core.hub import is_hub_id, push_folder
from sr_core.models import Discriminator

ROOT = Path(__file__).resolve().parents[1]
MISSING = "some-user/some-model"


def noise_image(width: int = 13, height: int = 11, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sr_core.cli", *args],
        cwd=cwd,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hub_ids_are_told_from_names_and_paths(tmp_path, monkeypatch):
    assert is_hub_id("user/name") and is_hub_id("sr-studio/SRResNet_x4.v2")
    assert not any(is_hub_id(n) for n in ("srresnet", "/abs/path", "./rel/x", "a/b/c", "user/", "../x", "u/.."))
    (tmp_path / "user" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("user/name")  # an existing folder wins


def test_a_hub_model_is_a_method_and_upscales_like_its_folder(hub_cache, tiny_srresnet, tmp_path):
    model = tiny_srresnet(scale=2)
    hub_cache(model, "someone/tiny-x2")
    model.save_pretrained(tmp_path / "local")
    info = sr_core.get_method("someone/tiny-x2")
    assert (info.name, info.kind, info.scales) == ("someone/tiny-x2", "model", (2,))
    img = noise_image()
    from_hub = np.asarray(sr_core.upscale(img, method="someone/tiny-x2", scale=2))
    from_folder = np.asarray(sr_core.upscale(img, method=str(tmp_path / "local"), scale=2))
    assert from_hub.shape == (22, 26, 3) and np.array_equal(from_hub, from_folder)


def test_offline_without_the_cache_is_one_sentence_naming_the_id(hub_cache):
    with pytest.raises(OfflineError) as info:
        sr_core.upscale(noise_image(), method=MISSING, scale=4)
    message = str(info.value)
    assert MISSING in message and f"hf download {MISSING}" in message and "local folder" in message
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message


def test_a_discriminator_on_the_hub_is_not_an_upscaler(hub_cache):
    hub_cache(Discriminator(channels=4, hidden=8), "someone/disc")
    with pytest.raises(WeightsError, match="someone/disc holds a Discriminator, which is not an upscaler"):
        sr_core.get_method("someone/disc")


def test_other_unknown_names_still_list_the_methods():
    with pytest.raises(UnknownMethodError, match="bicubic.*Hub id user/name"):
        sr_core.get_method("waifu2x")


def test_cli_offline_exits_2_with_one_sentence_then_upscales_once_cached(hub_cache, tiny_srresnet, tmp_path):
    noise_image().save(tmp_path / "x.png")
    env = {"HF_HUB_CACHE": os.environ["HF_HUB_CACHE"], "HF_HUB_OFFLINE": "1"}
    missing = run_cli("x.png", "--method", MISSING, env=env, cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert MISSING in line and "hf download" in line and not (tmp_path / "results").exists()
    hub_cache(tiny_srresnet(scale=4), "some-user/tiny-x4")
    found = run_cli("x.png", "--method", "some-user/tiny-x4", "--scale", "4", env=env, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert Image.open(tmp_path / "results" / "x_tiny-x4_x4.png").size == (52, 44)


def test_model_push_offline_is_a_clear_error(hub_cache, tiny_srresnet, tmp_path):
    with pytest.raises(OfflineError, match="'someone/tiny'.*HF_HUB_OFFLINE.*hf upload someone/tiny"):
        tiny_srresnet().push_to_hub("someone/tiny")
    (tmp_path / "f").mkdir()
    with pytest.raises(OfflineError, match="hf upload someone/tiny"):
        push_folder(tmp_path / "f", "someone/tiny")


def test_hub_weights_never_unpickled(hub_cache, tiny_srresnet):
    snapshot = hub_cache(tiny_srresnet(), "someone/broken")
    blob = (snapshot / "model.safetensors").resolve()
    blob.write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(WeightsError, match="Cannot read weights"):
        sr_core.upscale(noise_image(), method="someone/broken", scale=4)
