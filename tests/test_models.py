"""SRResNet and Discriminator: architecture per the SRGAN paper, persistence on huggingface_hub's mixin
(safetensors + config.json + a model card), strict loading, the architecture registry."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from huggingface_hub import PyTorchModelHubMixin
from safetensors.torch import load_file, save_file
from torch import nn

from sr_core.errors import OfflineError, WeightsError
from sr_core.models import (
    Discriminator,
    HubModel,
    SRModel,
    SRResNet,
    build_model,
    get_architecture,
    load_pretrained,
    register_architecture,
)
from sr_core.models import base as models_base


def front_matter(path) -> dict:
    """The YAML front matter of a README, read with PyYAML alone (not through huggingface_hub)."""
    text = path.read_text()
    assert text.startswith("---\n"), text[:80]
    return yaml.safe_load(text.split("---\n", 2)[1])


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
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "model.safetensors"]
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


def test_hub_id_offline_gives_clear_error(hub_cache):
    with pytest.raises(OfflineError, match="hf download sr-studio/does-not-exist"):
        SRResNet.from_pretrained("sr-studio/does-not-exist")


def test_not_a_folder_nor_hub_id():
    with pytest.raises(WeightsError, match="neither a folder"):
        SRResNet.from_pretrained("/no/such/dir/at/all")


def test_every_model_is_a_hub_mixin_model_and_generators_fulfil_the_contract():
    assert PyTorchModelHubMixin in SRResNet.__mro__ and PyTorchModelHubMixin in Discriminator.__mro__
    assert issubclass(SRResNet, SRModel) and not issubclass(Discriminator, SRModel)
    assert get_architecture("SRResNet") is SRResNet and get_architecture("Discriminator") is Discriminator
    model = SRResNet(scale=2, num_blocks=1, channels=4)
    assert model.scale == 2 and model.receptive_radius() > 0
    with pytest.raises(TypeError):
        SRModel()  # the contract is abstract


def test_save_pretrained_writes_a_hub_model_card(tmp_path, tiny_srresnet):
    evaluation = {"psnr": 27.5, "ssim": 0.76, "bicubic_psnr": 26.2, "bicubic_ssim": 0.72, "num_images": 3}
    tiny_srresnet(scale=4).save_pretrained(
        tmp_path / "m",
        model_card_kwargs={"model_id": "someone/tiny", "evaluation": evaluation, "datasets": ["some/dataset"],
                           "training": {"stage": "srresnet", "steps": 4, "command": "python train/train.py"}},
    )  # fmt: skip
    meta = front_matter(tmp_path / "m" / "README.md")
    assert meta["library_name"] == "sr-studio" and meta["pipeline_tag"] == "image-to-image"
    assert meta["license"] == "apache-2.0" and meta["datasets"] == ["some/dataset"]
    assert {"super-resolution", "sr-studio", "srresnet"} <= set(meta["tags"])
    (entry,) = meta["model-index"]
    metrics = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert metrics == {"psnr": 27.5, "ssim": 0.76}
    assert entry["results"][0]["task"]["type"] == "image-to-image"
    body = (tmp_path / "m" / "README.md").read_text()
    for usage in ("sr-upscale photo.png --method someone/tiny --scale 4", "python app.py --model someone/tiny",
                  'method="someone/tiny"', "26.20", "python train/train.py"):  # fmt: skip
        assert usage in body


def test_card_without_metrics_has_no_model_index_and_is_kept_on_resave(tmp_path, tiny_srresnet):
    Discriminator(channels=4, hidden=8).save_pretrained(tmp_path / "d")
    meta = front_matter(tmp_path / "d" / "README.md")
    assert meta["library_name"] == "sr-studio" and "model-index" not in meta and "pipeline_tag" not in meta
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "README.md").write_text("my own card\n")
    tiny_srresnet().save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "README.md").read_text() == "my own card\n"


def test_old_save_pretrained_folders_still_load(tmp_path, tiny_srresnet):
    """Folders written before the Hub mixin: config.json (even without "architecture") + model.safetensors only."""
    model = tiny_srresnet(scale=2)
    for name, config in (("with-arch", {"architecture": "SRResNet"}), ("legacy", {})):
        folder = tmp_path / name
        folder.mkdir()
        config.update({"scale": 2, "num_blocks": 2, "channels": 8, "in_channels": 3})
        (folder / "config.json").write_text(json.dumps(config))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
        loaded = load_pretrained(folder)
        x = torch.rand(1, 3, 6, 5)
        with torch.no_grad():
            assert isinstance(loaded, SRResNet) and torch.equal(loaded(x), model(x)), name


def test_unknown_config_keys_and_missing_or_unexpected_tensors_are_errors(tmp_path, tiny_srresnet):
    tiny_srresnet().save_pretrained(tmp_path / "m")
    config_path, weights_path = tmp_path / "m" / "config.json", tmp_path / "m" / "model.safetensors"
    good_config = config_path.read_text()
    config_path.write_text(json.dumps({**json.loads(good_config), "depth": 3}))
    with pytest.raises(WeightsError, match=r"Unknown SRResNet config keys: \['depth'\]"):
        load_pretrained(tmp_path / "m")
    config_path.write_text(good_config)
    state = load_file(str(weights_path))
    state["extra.weight"] = state.pop("exit.weight")
    save_file(state, str(weights_path))
    with pytest.raises(WeightsError, match=r"missing \['exit.weight'\]; unexpected \['extra.weight'\]"):
        load_pretrained(tmp_path / "m")


def test_discriminator_loads_from_a_hub_cache_folder(hub_cache):
    d = Discriminator(channels=4, hidden=8).eval()
    hub_cache(d, "someone/tiny-discriminator")
    loaded = load_pretrained("someone/tiny-discriminator")
    assert isinstance(loaded, Discriminator) and loaded.config == d.config
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), d(x))
    with pytest.raises(WeightsError, match="holds a Discriminator model; SRResNet.from_pretrained cannot load it"):
        SRResNet.from_pretrained("someone/tiny-discriminator")


def test_fused_copy_computes_the_same_and_cannot_be_saved(tmp_path, tiny_srresnet):
    model = tiny_srresnet()
    fused = model.fuse_for_inference()
    assert isinstance(fused, SRResNet) and fused.fused and not model.fused
    with pytest.raises(WeightsError, match="fused inference copy"):
        fused.save_pretrained(tmp_path / "f")


def test_a_new_architecture_is_one_registered_class(tmp_path, monkeypatch):
    monkeypatch.setattr(models_base, "ARCHITECTURES", dict(models_base.ARCHITECTURES))

    @dataclass
    class NearestConfig:
        scale: int
        in_channels: int

    @register_architecture("TinyNearest")
    class TinyNearest(SRModel, tags=["tiny-nearest"]):
        config_class = NearestConfig

        def __init__(self, *, scale: int = 2, in_channels: int = 3) -> None:
            super().__init__()
            self.config = NearestConfig(scale=scale, in_channels=in_channels)
            self.gain = nn.Parameter(torch.ones(1))

        @property
        def scale(self) -> int:
            return self.config.scale

        def receptive_radius(self) -> int:
            return 0

        def fuse_for_inference(self) -> TinyNearest:
            return self

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest") * self.gain

    assert isinstance(build_model({"architecture": "TinyNearest", "scale": 3}), TinyNearest)
    TinyNearest(scale=3).save_pretrained(tmp_path / "t")
    loaded = HubModel.from_pretrained(tmp_path / "t")
    assert isinstance(loaded, TinyNearest) and loaded.scale == 3
    assert "tiny-nearest" in front_matter(tmp_path / "t" / "README.md")["tags"]
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("SRResNet")(TinyNearest)


def test_spectral_norm_discriminator_bounds_every_layer_and_has_no_batchnorm(tmp_path):
    from sr_core.models import Discriminator

    torch.manual_seed(0)
    d = Discriminator(channels=8, hidden=16, spectral_norm=True).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for _ in range(30):  # power iterations run in training mode
            d(x)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 10
    for layer in layers:  # the normalised weight, reshaped as spectral_norm does: largest singular value ~1
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item()
        assert 0.9 < sigma < 1.05
    d.save_pretrained(tmp_path / "d")
    again = Discriminator.from_pretrained(tmp_path / "d")
    assert again.config.spectral_norm
    torch.testing.assert_close(again.eval()(x), d.eval()(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv_add_into_sums_into_the_skip_as_conv_then_add(dtype):
    """The fused oneDNN sum (inference, channels_last) against F.conv2d + skip in float64; the skip is overwritten."""
    from sr_core.models.srresnet import conv_add_into

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1).to(dtype)
    x = torch.randn(1, 8, 12, 10).to(dtype).contiguous(memory_format=torch.channels_last)
    skip = torch.randn(1, 8, 12, 10).to(dtype).contiguous(memory_format=torch.channels_last)
    w, b = conv.weight.double(), conv.bias.double()
    expected = nn.functional.conv2d(x.double(), w, b, padding=1) + skip.double()
    with torch.inference_mode():
        out = conv_add_into(skip, x, conv.weight, conv.bias, (1, 1))
    assert out.data_ptr() == skip.data_ptr()
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    assert (out.double() - expected).abs().max().item() < tolerance
    with torch.no_grad():  # NCHW: the plain conv then add, the skip left as it was
        plain = skip.contiguous()
        before = plain.clone()
        out = conv_add_into(plain, x.contiguous(), conv.weight, conv.bias, (1, 1))
    assert torch.equal(plain, before)
    reference = nn.functional.conv2d(x.double(), w, b, padding=1) + before.double()
    assert (out.double() - reference).abs().max().item() < tolerance
