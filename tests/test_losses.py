"""Losses: pixel, VGG19 content (frozen, gradient reaches the generator), adversarial BCE, feature matching."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from sr_core.errors import OfflineError, WeightsError
from sr_core.losses import (
    AdversarialLoss,
    PixelLoss,
    VGGContentLoss,
    artifact_loss,
    artifact_map,
    feature_matching_loss,
    local_variance,
)
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


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def test_relativistic_average_loss_judges_each_side_against_the_others_mean():
    real, fake = [2.0, -1.0, 0.5], [0.5, -3.0, 1.0]
    mean_real, mean_fake = sum(real) / 3, sum(fake) / 3
    adv = AdversarialLoss("relativistic")
    r, f = torch.tensor(real)[:, None], torch.tensor(fake)[:, None]
    d = (sum(_bce(x - mean_fake, 1) for x in real) / 3 + sum(_bce(x - mean_real, 0) for x in fake) / 3) / 2
    g = (sum(_bce(x - mean_fake, 0) for x in real) / 3 + sum(_bce(x - mean_real, 1) for x in fake) / 3) / 2
    assert adv.discriminator_loss(r, f).item() == pytest.approx(d, rel=1e-5)
    assert adv.generator_loss(f, r).item() == pytest.approx(g, rel=1e-5)
    assert adv.needs_real_logits and not AdversarialLoss().needs_real_logits
    with pytest.raises(ValueError, match="logits on real images"):
        adv.generator_loss(f)
    fake_param = f.clone().requires_grad_(True)
    real_param = r.clone().requires_grad_(True)
    adv.generator_loss(fake_param, real_param).backward()
    assert fake_param.grad is not None and real_param.grad is None  # real logits are constants for the generator


def test_hinge_loss_matches_its_formula_and_unknown_kinds_are_refused():
    real, fake = [2.0, 0.5, -1.0], [0.5, -3.0, -0.2]
    adv = AdversarialLoss("hinge")
    expected = sum(max(0.0, 1 - x) for x in real) / 3 + sum(max(0.0, 1 + x) for x in fake) / 3
    r, f = torch.tensor(real)[:, None], torch.tensor(fake)[:, None]
    assert adv.discriminator_loss(r, f).item() == pytest.approx(expected, rel=1e-6)
    assert adv.generator_loss(f).item() == pytest.approx(-sum(fake) / 3, rel=1e-6)
    with pytest.raises(ValueError, match="GAN loss must be one of"):
        AdversarialLoss("wasserstein")


def test_local_variance_matches_the_variance_of_each_neighbourhood():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 11, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3), mode="reflect")
    patches = padded.unfold(2, 7, 1).unfold(3, 7, 1)  # (N, 1, H, W, 7, 7)
    expected = patches.reshape(*patches.shape[:4], 49).var(dim=-1, unbiased=True)
    torch.testing.assert_close(local_variance(x, 7), expected)


def test_artifact_map_marks_noisy_residuals_worse_than_the_ema_models_only():
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    sr_ema = hr + 0.05
    sr = hr.clone()
    sr[:, :, :, 8:] += 0.3 * torch.randn(1, 3, 16, 8, dtype=torch.float64)  # noisy artefacts in the right half
    weight = artifact_map(sr, hr, sr_ema)
    residual = (hr - sr).abs().sum(1, keepdim=True)
    expected = residual.var() ** 0.2 * local_variance(residual, 7)
    expected[residual < (hr - sr_ema).abs().sum(1, keepdim=True)] = 0
    torch.testing.assert_close(weight.double(), expected, rtol=1e-5, atol=1e-7)
    assert weight[..., :6].abs().max() == 0 and weight[..., 10:].min() > 0  # SR exact on the left: no artefact
    sr.requires_grad_(True)
    loss = artifact_loss(sr, hr, sr_ema)
    loss.backward()
    assert loss.item() > 0 and sr.grad[..., :6].abs().max() == 0 and sr.grad[..., 10:].abs().sum() > 0


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


def test_grid_loss_sees_a_dot_grid_at_the_period_and_not_texture_of_the_same_energy():
    from sr_core.losses import grid_loss, periodic_pattern

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 96, 96, generator=g)
    dots = torch.zeros(1, 1, 96, 96)
    dots[..., ::4, ::4] = 0.1  # one bright pixel in every 4x4 cell, as sub-pixel generators paint them
    noise = torch.randn(2, 3, 96, 96, generator=g)
    noise = noise * (dots - dots.mean()).square().mean().sqrt() / noise.std()  # the grid's energy, no period
    assert grid_loss(hr, hr, 4).item() == 0.0
    with_grid, with_noise = grid_loss(hr + dots, hr, 4).item(), grid_loss(hr + noise, hr, 4).item()
    assert with_grid > 5 * with_noise
    # the grid's pattern, computed independently: each phase's mean offset from the cell mean
    expected = torch.full((16,), -0.1 / 16)
    expected[0] += 0.1
    torch.testing.assert_close(periodic_pattern(dots, 4, 32)[0, 0, :, 0, 0], expected)
    sr = (hr + dots).requires_grad_(True)
    grid_loss(sr, hr, 4).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of the period"):
        grid_loss(hr, hr, 4, region=30)
