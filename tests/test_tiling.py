"""Tiled inference equals a whole-image forward; BatchNorm folding keeps the function."""

from __future__ import annotations

import pytest
import torch

from sr_core.inference import prepare_for_inference, run_model
from sr_core.tiling import plan_tiles, tiled_forward


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
    torch.testing.assert_close(run_model(fast, x), model(x).detach(), atol=1e-5, rtol=1e-4)
