"""SRResNet and Discriminator: architecture per the SRGAN paper, persistence as safetensors + config."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sr_core.errors import OfflineError, WeightsError
from sr_core.models import Discriminator, SRResNet, load_pretrained


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_output_shape_and_upsampling_stages(scale):
    model = SRResNet(scale=scale, num_blocks=2, channels=8)
    shuffles = [m for m in model.modules() if isinstance(m, nn.PixelShuffle)]
    assert len(shuffles) == {2: 1, 4: 2, 8: 3}[scale]
    assert model(torch.rand(2, 3, 7, 5)).shape == (2, 3, 7 * scale, 5 * scale)


def test_srresnet_paper_defaults():
    model = SRResNet()
    assert (model.config.scale, model.config.num_blocks, model.config.channels) == (4, 16, 64)
    assert len(model.trunk) == 16
    assert model.entry[0].kernel_size == (9, 9) and model.exit.kernel_size == (9, 9)
    block = model.trunk[0]
    assert isinstance(block.bn1, nn.BatchNorm2d) and isinstance(block.act, nn.PReLU)
    # Parameter count of the paper's SRResNet x4 (about 1.55M).
    assert 1.5e6 < sum(p.numel() for p in model.parameters()) < 1.6e6


def test_srresnet_key_names_do_not_look_like_compact():
    keys = SRResNet(num_blocks=1, channels=4).state_dict()
    assert not any(k.startswith("body.") for k in keys)


def test_srresnet_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        SRResNet(scale=3)


@pytest.mark.parametrize("size", [(32, 32), (96, 96), (40, 57), (128, 200)])
def test_discriminator_any_size_at_least_32(size):
    d = Discriminator(channels=8, hidden=16)
    assert d(torch.rand(3, 3, *size)).shape == (3, 1)


def test_discriminator_paper_layout_and_small_input_error():
    d = Discriminator()
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 7
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    with pytest.raises(ValueError, match="at least 32x32"):
        d(torch.rand(1, 3, 31, 64))


def test_save_and_load_pretrained_roundtrip(tmp_path, tiny_srresnet):
    model = tiny_srresnet(scale=2)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config == {
        "architecture": "SRResNet",
        "scale": 2,
        "num_blocks": 2,
        "channels": 8,
        "in_channels": 3,
    }
    loaded = SRResNet.from_pretrained(tmp_path / "m")
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert isinstance(load_pretrained(tmp_path / "m"), SRResNet)


def test_discriminator_roundtrip_and_fp16_storage(tmp_path):
    d = Discriminator(channels=4, hidden=8).eval()
    d.save_pretrained(tmp_path / "d", dtype=torch.float16)
    loaded = load_pretrained(tmp_path / "d")
    assert isinstance(loaded, Discriminator)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(d(x), loaded(x), atol=1e-2, rtol=1e-2)


def test_weights_file_is_never_unpickled(tmp_path, tiny_srresnet):
    tiny_srresnet().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(WeightsError, match="Cannot read weights"):
        SRResNet.from_pretrained(tmp_path / "m")


def test_mismatched_weights_are_reported(tmp_path, tiny_srresnet):
    tiny_srresnet(channels=8).save_pretrained(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    cfg.write_text(cfg.read_text().replace('"channels": 8', '"channels": 4'))
    with pytest.raises(WeightsError, match="do not match"):
        SRResNet.from_pretrained(tmp_path / "m")


def test_hub_id_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="hf download"):
        SRResNet.from_pretrained("sr-studio/does-not-exist")


def test_not_a_folder_nor_hub_id():
    with pytest.raises(WeightsError, match="neither a folder"):
        SRResNet.from_pretrained("/no/such/dir/at/all")
