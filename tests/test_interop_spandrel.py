"""spandrel (chaiNNer, ComfyUI) loads SR Studio's SRResNet files: detection by key names, hyper-parameters from
shapes, output equal to sr_core's. Written in the shape of spandrel's own architecture tests (round trip with
detect and hyper-parameter checks; official files; inference on 16, 32 and 64 px images), for an upstream proposal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

spandrel = pytest.importorskip("spandrel")

import sr_core  # noqa: E402
from sr_core.inference import prepare_for_inference  # noqa: E402
from sr_core.interop import spandrel as ours  # noqa: E402
from sr_core.models import Discriminator, SRResNet  # noqa: E402
from sr_core.pipeline import model_forward_array  # noqa: E402
from sr_core.registry import PACKAGE_WEIGHTS_DIR, get_method, load_model, read_manifest  # noqa: E402

SHIPPED = read_manifest(PACKAGE_WEIGHTS_DIR)["models"]
TOLERANCE = 1e-4


def image(size: int, seed: int = 0) -> torch.Tensor:
    """A (1, 3, size, size) image in [0, 1]: smooth shapes plus noise, like a photo crop."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([torch.sin(6 * x) * 0.3 + 0.5, torch.cos(5 * y) * 0.3 + 0.5, (x + y) / 2])
    return (base + 0.05 * torch.randn(3, size, size, generator=g)).clamp(0, 1)[None]


def sr_core_float(model: SRResNet, x: torch.Tensor) -> np.ndarray:
    """What sr_core.upscale computes before rounding to 8 bit: the fused model, whole image, clamped."""
    fast = prepare_for_inference(model, torch.device("cpu"), torch.float32)
    rgb = x[0].permute(1, 2, 0).numpy()
    return model_forward_array(fast, rgb, model.scale, tile_size=10_000, overlap=0)


def spandrel_float(descriptor, x: torch.Tensor) -> np.ndarray:
    return descriptor(x)[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("scale", "num_blocks", "channels"), [(2, 1, 8), (4, 3, 16), (8, 2, 4), (4, 16, 64)])
def test_save_pretrained_folders_load_with_their_hyper_parameters(tmp_path, tiny_srresnet, scale, num_blocks, channels):
    model = tiny_srresnet(scale=scale, num_blocks=num_blocks, channels=channels)
    model.save_pretrained(tmp_path / "m")
    registry = spandrel.ArchRegistry()
    ours.install(registry)
    descriptor = spandrel.ModelLoader(registry=registry).load_from_file(tmp_path / "m" / "model.safetensors")
    assert descriptor.architecture.id == ours.ARCH_ID and descriptor.purpose == "SR"
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, 3, 3)
    assert descriptor.tags == [f"{channels}nf", f"{num_blocks}nb"]
    assert descriptor.model.config == model.config
    assert descriptor.supports_half and descriptor.supports_bfloat16
    x = image(16, seed=scale)
    difference = np.abs(spandrel_float(descriptor, x) - sr_core_float(model, x)).max()
    assert difference < TOLERANCE, f"max difference {difference:.2e}"


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e["file"])
def test_every_shipped_file_loads_and_matches_sr_core(entry):
    descriptor = spandrel.ModelLoader().load_from_file(PACKAGE_WEIGHTS_DIR / entry["file"])
    assert descriptor.architecture.id == ours.ARCH_ID and descriptor.scale == entry["scale"]
    model = load_model(get_method(entry["name"]), entry["scale"])
    for size in (16, 32, 64):
        x = image(size, seed=size)
        difference = np.abs(spandrel_float(descriptor, x) - sr_core_float(model, x)).max()
        print(f"{entry['file']} {size}px: max |spandrel - sr_core| = {difference:.2e}")
        assert difference < TOLERANCE, f"{entry['file']} at {size}px: max difference {difference:.2e}"
    lr = Image.fromarray((image(32)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    through_upscale = np.asarray(sr_core.upscale(lr, entry["name"], entry["scale"], precision="fp32"), np.int16)
    x = torch.from_numpy(np.asarray(lr, np.float32) / 255).permute(2, 0, 1)[None]
    through_spandrel = (spandrel_float(descriptor, x) * 255).round().astype(np.int16)
    assert np.abs(through_upscale - through_spandrel).max() <= 1


def test_detection_claims_our_keys_and_nothing_else(tiny_srresnet):
    our_keys = tiny_srresnet().state_dict()
    assert ours.ARCHITECTURE.detect(our_keys)
    claimed = [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures("detection") if a.detect(our_keys)]
    assert claimed == [ours.ARCH_ID]  # no earlier architecture takes our files, so the registry order is irrelevant
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.SwiftSRGAN import SwiftSRGAN

    others = [SwiftSRGAN(num_blocks=2), ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4)]
    for other in others + [Discriminator(channels=4, hidden=8)]:
        assert not ours.ARCHITECTURE.detect(other.state_dict()), type(other).__name__
    for missing in ours.DETECT_KEYS:
        assert not ours.ARCHITECTURE.detect({k: v for k, v in our_keys.items() if k != missing}), missing


def test_a_discriminator_file_is_not_mistaken_for_an_upscaler(tmp_path):
    Discriminator(channels=4, hidden=8).save_pretrained(tmp_path / "d")
    with pytest.raises(spandrel.UnsupportedModelError):
        spandrel.ModelLoader().load_from_file(tmp_path / "d" / "model.safetensors")


def test_installing_twice_changes_nothing():
    before = len(spandrel.MAIN_REGISTRY)
    ours.install()
    assert len(spandrel.MAIN_REGISTRY) == before and ours.ARCH_ID in spandrel.MAIN_REGISTRY
