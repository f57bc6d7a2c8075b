"""Losses: pixel, VGG19 content (frozen, gradient reaches the generator), adversarial BCE, feature matching."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from sr_core.errors import OfflineError, WeightsError
from sr_core.losses import AdversarialLoss, PixelLoss, VGGContentLoss, feature_matching_loss
from sr_core.models import Discriminator, SRResNet


def test_pixel_losses_match_formulas():
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert PixelLoss("mse")(a, b).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-6)
    assert PixelLoss("l1")(a, b).item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)
    with pytest.raises(ValueError):
        PixelLoss("huber")


def test_adversarial_loss_is_binary_cross_entropy():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])

    def bce(logit: float, target: float) -> float:
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    adv = AdversarialLoss()
    expected_d = sum(bce(x, 1) for x in (2.0, -1.0)) / 2 + sum(bce(x, 0) for x in (0.5, -3.0)) / 2
    assert adv.discriminator_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-5)
    assert adv.generator_loss(fake).item() == pytest.approx((bce(0.5, 1) + bce(-3.0, 1)) / 2, rel=1e-5)


def test_content_loss_is_frozen_and_backpropagates_into_generator():
    torch.manual_seed(0)
    content = VGGContentLoss(weights="random")
    assert all(not p.requires_grad for p in content.parameters())
    assert content.features[-1].__class__.__name__ == "ReLU" and len(content.features) == 36
    gen = SRResNet(scale=2, num_blocks=1, channels=8)
    sr = gen(torch.rand(1, 3, 16, 16))
    loss = content(sr.clamp(0, 1), torch.rand(1, 3, 32, 32))
    loss.backward()
    grads = [p.grad for p in gen.parameters()]
    assert loss.item() > 0
    assert all(g is not None for g in grads) and sum(g.abs().sum().item() for g in grads) > 0
    content.train()
    assert not content.features.training


def test_content_loss_from_local_file(tmp_path):
    from torchvision.models import vgg19

    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in vgg19(weights=None).features.state_dict().items()}
    save_file(state, str(tmp_path / "vgg.safetensors"))
    loss = VGGContentLoss(weights=tmp_path / "vgg.safetensors")
    torch.testing.assert_close(loss.features[0].weight, state["features.0.weight"])
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x).item() == 0.0


def test_content_loss_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(tvm.VGG19_Weights.IMAGENET1K_V1.__class__, "get_state_dict", offline)
    with pytest.raises(OfflineError, match="content_weight: 0"):
        VGGContentLoss()


def test_content_loss_bad_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        VGGContentLoss(weights=tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="Cannot read"):
        VGGContentLoss(weights=tmp_path / "bad.pth")


def test_feature_matching_is_mean_l1_over_the_eight_conv_blocks():
    torch.manual_seed(0)
    d = Discriminator(channels=8, hidden=16).eval()  # eval: BatchNorm uses running statistics, batch-independent
    sr, hr = torch.rand(2, 3, 32, 32, requires_grad=True), torch.rand(2, 3, 32, 32)
    ends = [i + 1 for i, layer in enumerate(d.features) if isinstance(layer, torch.nn.LeakyReLU)]
    assert len(ends) == 8
    expected = sum((d.features[:end](sr) - d.features[:end](hr)).abs().mean() for end in ends) / len(ends)
    loss = feature_matching_loss(d, sr, hr)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_feature_matching_is_zero_for_identical_images_in_training_mode():
    torch.manual_seed(0)
    d = Discriminator(channels=8, hidden=16).train()
    x = torch.rand(3, 3, 40, 40)
    assert feature_matching_loss(d, x.clone(), x).item() == pytest.approx(0.0, abs=1e-7)
    hr = torch.rand(3, 3, 40, 40, requires_grad=True)
    feature_matching_loss(d, torch.rand(3, 3, 40, 40), hr).backward()
    assert hr.grad is None
