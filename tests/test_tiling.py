"""Tiled inference equals a whole-image forward; budget-sized staged windows too; the fused copy keeps the function."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from sr_core.inference import prepare_for_inference
from sr_core.models.srresnet import subpixel_weight
from sr_core.tiling import iter_staged, iter_tiled, plan_for_budget, plan_tiles


def tiled_forward(fn, x, scale, tile_size, overlap, progress=None):
    """The tiles of iter_tiled pasted into one output (the assembly every caller does)."""
    out = torch.full((1, 3, x.shape[2] * scale, x.shape[3] * scale), float("nan"))
    for t, piece in iter_tiled(fn, x, scale, tile_size, overlap, progress):
        out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = piece
    return out


def staged_forward(model, x, budget):
    out = torch.full((1, 3, x.shape[2] * model.scale, x.shape[3] * model.scale), float("nan"))
    for t, piece in iter_staged(model.inference_stages(), x, budget=budget, element_size=4):
        out[:, :, t.y0 * model.scale : t.y1 * model.scale, t.x0 * model.scale : t.x1 * model.scale] = piece
    return out


@pytest.mark.parametrize("tile_size", [3, 16, 23, 64, 1000])
def test_tiled_equals_untiled_for_any_tile_size(tiny_srresnet, tile_size):
    model = tiny_srresnet(scale=2, num_blocks=2, channels=8)
    x = torch.rand(1, 3, 29, 25, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_forward(model, x, 2, tile_size, model.receptive_radius())
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1e-4


def test_receptive_radius_is_sufficient_and_tight(tiny_srresnet):
    model = tiny_srresnet(scale=4, num_blocks=1, channels=4)
    x = torch.rand(1, 3, 60, 60)
    radius = model.receptive_radius()
    with torch.no_grad():
        base = model(x)
        bumped = x.clone()
        bumped[:, :, 30, 30] += 1.0
        diff = (model(bumped) - base).abs().sum(dim=(0, 1))
    rows = torch.nonzero(diff.sum(dim=1) > 0).flatten()
    reach_lr = max(30 * 4 - rows.min().item(), rows.max().item() - 30 * 4) / 4
    assert reach_lr <= radius <= reach_lr + 3


def test_too_small_overlap_shows_seams(tiny_srresnet):
    model = tiny_srresnet(scale=2)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert (tiled_forward(model, x, 2, 8, 0) - model(x)).abs().max().item() > 1e-3


def test_plan_tiles_covers_every_pixel_once():
    tiles = plan_tiles(50, 33, 16, 5)
    covered = torch.zeros(50, 33, dtype=torch.int32)
    for t in tiles:
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert torch.all(covered == 1)
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 0, 1)


def test_progress_called_per_tile(tiny_srresnet):
    model = tiny_srresnet(scale=2)
    calls = []
    with torch.no_grad():
        tiled_forward(model, torch.rand(1, 3, 20, 30), 2, 10, 4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(1, 7)]


def test_folded_batchnorm_matches_eval_model(tiny_srresnet):
    model = tiny_srresnet(scale=4, num_blocks=3)
    folded = model.fuse_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original keeps its layers
    x = torch.rand(2, 3, 12, 9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)
    fast = prepare_for_inference(model, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), model(x).detach(),
                                   atol=1e-5, rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("budget", [1 << 30, 300_000, 60_000, 1])
def test_staged_windows_equal_the_whole_image_forward(tiny_srresnet, scale, budget):
    model = tiny_srresnet(scale=scale, num_blocks=2, channels=8)
    fused = model.fuse_for_inference()
    x = torch.rand(1, 3, 53, 38, generator=torch.Generator().manual_seed(scale))
    with torch.no_grad():
        whole = model(x)
        staged = staged_forward(fused, x, budget)
    assert not torch.isnan(staged).any()  # every output pixel written
    assert (staged - whole).abs().max().item() < 1e-4


def test_stage_radii_cover_each_stage_reach(tiny_srresnet):
    model = tiny_srresnet(scale=4, num_blocks=2, channels=4)
    body, tail = model.inference_stages()
    assert body.scale == 1 and tail.scale == 4 and body.radius + tail.radius >= model.receptive_radius()
    with torch.no_grad():
        for fn, channels, radius, scale in ((body.forward, 3, body.radius, 1), (tail.forward, 4, tail.radius, 4)):
            base = torch.rand(1, channels, 40, 40)
            bumped = base.clone()
            bumped[:, :, 20, 20] += 1.0
            diff = (fn(bumped) - fn(base)).abs().sum(dim=(0, 1))
            rows = torch.nonzero(diff.sum(dim=1) > 0).flatten()
            reach = max(20 * scale - rows.min().item(), rows.max().item() - 20 * scale) / scale
            assert reach <= radius <= reach + 2


def test_budget_plan_fits_the_budget_and_whole_image_when_it_fits():
    assert plan_for_budget(100, 80, 10, 4.0, 100 * 80 * 4) == (100, 80)
    for height, width, budget in ((512, 512, 50_000_000), (1024, 768, 20_000_000), (37, 900, 1_000_000)):
        tile = plan_for_budget(height, width, 10, 100.0, budget)
        tiles = plan_tiles(height, width, tile, 10)
        covered = torch.zeros(height, width, dtype=torch.int32)
        for t in tiles:
            window = (t.y1 + t.pad_bottom - t.y0 + t.pad_top) * (t.x1 + t.pad_right - t.x0 + t.pad_left)
            assert window * 100.0 <= budget
            covered[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert torch.all(covered == 1)
        # near-equal tiles: no thin last row or column of windows that would be mostly overlap
        assert {t.y1 - t.y0 for t in tiles} <= {tile[0], tile[0] - 1} or len({t.y0 for t in tiles}) == 1
    assert plan_for_budget(300, 300, 10, 100.0, 1) == (16, 16)  # never below the smallest planned tile


def test_budget_plan_computes_little_more_than_the_image():
    """With room for a third of the image per window, the plan should not compute much more than the image."""
    height = width = 1024
    tile = plan_for_budget(height, width, 41, 1.0, height * width // 3)
    tiles = plan_tiles(height, width, tile, 41)
    computed = sum((t.y1 + t.pad_bottom - t.y0 + t.pad_top) * (t.x1 + t.pad_right - t.x0 + t.pad_left) for t in tiles)
    assert computed / (height * width) < 1.35


@pytest.mark.parametrize("kernel", [1, 3, 5, 9])
@pytest.mark.parametrize("r", [2, 3])
def test_subpixel_weight_equals_conv_after_pixel_shuffle_with_the_same_gradients(kernel, r):
    torch.manual_seed(kernel * r)
    weight = torch.randn(3, 4, kernel, kernel, dtype=torch.float64, requires_grad=True)
    x = torch.rand(2, 4 * r * r, 7, 6, dtype=torch.float64)
    expected = F.conv2d(F.pixel_shuffle(x, r), weight, padding=kernel // 2)
    folded = subpixel_weight(weight, r)
    assert folded.shape[-1] == 2 * math.ceil((kernel // 2) / r) + 1
    got = F.pixel_shuffle(F.conv2d(x, folded, padding=(folded.shape[-1] - 1) // 2), r)
    torch.testing.assert_close(got, expected)
    (grad_expected,) = torch.autograd.grad((expected * expected.detach()).sum(), weight)
    (grad_got,) = torch.autograd.grad((got * expected.detach()).sum(), weight)
    torch.testing.assert_close(grad_got, grad_expected)
    with pytest.raises(ValueError, match="odd square"):
        subpixel_weight(torch.zeros(3, 4, 2, 2), r)


def test_srresnet_forward_equals_the_textbook_layer_order(tiny_srresnet):
    """upsampler then exit conv, as the paper draws it, against the model's sub-pixel tail (values and gradients)."""
    model = tiny_srresnet(scale=4, num_blocks=1, channels=8).double().train()
    x = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    textbook = model.exit(model.upsampler(model.features(x)))
    ours = model(x)
    torch.testing.assert_close(ours, textbook)
    params = [p for p in model.parameters()]
    g_ours = torch.autograd.grad(ours.square().sum(), params)
    g_book = torch.autograd.grad(model.exit(model.upsampler(model.features(x))).square().sum(), params)
    for a, b in zip(g_ours, g_book, strict=True):
        torch.testing.assert_close(a, b)


def test_staged_progress_counts_input_pixels_per_piece(tiny_srresnet):
    model = tiny_srresnet(scale=2).fuse_for_inference()
    calls = []
    with torch.no_grad():
        pieces = list(iter_staged(model.inference_stages(), torch.rand(1, 3, 40, 50), budget=200_000, element_size=4,
                                  progress=lambda d, t: calls.append((d, t))))  # fmt: skip
    done = [d for d, _ in calls]
    assert len(calls) == len(pieces) > 1 and {t for _, t in calls} == {40 * 50}
    assert done == sorted(set(done)) and done[-1] == 40 * 50
    assert done == list(itertools.accumulate((t.y1 - t.y0) * (t.x1 - t.x0) for t, _ in pieces))


def test_training_works_after_inference_in_the_same_process(tiny_srresnet):
    """The sub-pixel kernel index is cached; one first built under inference_mode must not poison autograd."""
    model = tiny_srresnet(scale=2, num_blocks=1, channels=4)
    with torch.inference_mode():
        model(torch.rand(1, 3, 8, 8))
    model.train()
    model(torch.rand(2, 3, 8, 8)).square().mean().backward()
    assert model.exit.weight.grad is not None and model.exit.weight.grad.abs().sum() > 0


def test_srresnet_traces_under_torch_compile(tiny_srresnet):
    """torch.compile (dynamo; the eager backend, so no C++ build) runs the model, gradients included: the sub-pixel
    kernel index is numpy bookkeeping it must step around, not trace (it failed on ``ndarray.setflags``)."""
    torch._dynamo.reset()
    model = tiny_srresnet(scale=4, num_blocks=1, channels=4).double()
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64)
    expected = model(x)
    got = torch.compile(model, backend="eager")(x)
    torch.testing.assert_close(got, expected)
    got.square().sum().backward()
    assert model.exit.weight.grad is not None and model.exit.weight.grad.abs().sum() > 0
