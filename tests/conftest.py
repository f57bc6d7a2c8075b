"""Shared fixtures: tiny models registered in a temporary weights folder, small test images."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running stats and affine parameters, as a trained model has."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture
def fresh_accelerate_state():
    """Forget Accelerate's process-wide state after the test (the trainer tests build an Accelerator per run)."""
    yield
    from train_helpers import reset_accelerate_state

    reset_accelerate_state()


@pytest.fixture
def tiny_srresnet():
    from sr_core.models import SRResNet

    def make(scale: int = 4, num_blocks: int = 2, channels: int = 8, seed: int = 0) -> SRResNet:
        torch.manual_seed(seed)
        return randomise_batchnorm(SRResNet(scale=scale, num_blocks=num_blocks, channels=channels), seed)

    return make


@pytest.fixture
def weights_dir(tmp_path, tiny_srresnet):
    """A weights folder holding tiny 'srresnet' models at x2 and x4, registered in its manifest."""
    from sr_core.registry import write_manifest_entry

    directory = tmp_path / "weights"
    for scale in (2, 4):
        write_manifest_entry(
            directory,
            tiny_srresnet(scale=scale),
            name="srresnet",
            label="SRResNet",
            description="tiny test model",
        )
    return directory


@pytest.fixture
def smooth_rgb() -> np.ndarray:
    """A smooth 37x29 uint8 RGB test image (odd size on purpose)."""
    y, x = np.mgrid[0:37, 0:29].astype(np.float32)
    img = np.stack([np.sin(x / 5) * 0.5 + 0.5, np.cos(y / 7) * 0.5 + 0.5, (x + y) / (37 + 29)], axis=2)
    return (img * 255).round().astype(np.uint8)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache in tmp_path; ``put(model, "user/name")`` lays a model out in it as the Hub would.

    The layout is huggingface_hub's: ``models--user--name/blobs/<sha256>``, ``snapshots/<commit>/<file>`` linking to
    the blob, ``refs/main`` naming the commit. HF_HUB_CACHE and HF_HUB_OFFLINE are set for subprocesses and (as
    huggingface_hub reads them at import) patched into its constants for this process.
    """
    import hashlib
    import tempfile
    from pathlib import Path

    from huggingface_hub import constants

    from sr_core import registry

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    registry._hub_method.cache_clear()

    def put(model, repo_id: str, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (repo / "blobs").mkdir()
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, model_card_kwargs={"model_id": repo_id})
            for file in Path(tmp).iterdir():
                data = file.read_bytes()
                blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
                blob.write_bytes(data)
                (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
        return snapshot

    yield put
    registry._hub_method.cache_clear()
