"""Row streaming computes the same function as a whole-image forward: each conv, each skip, SRResNet's body, and the
streamed path of budget-sized staged inference (the output, its coverage and its progress)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sr_core.tiling as tiling
from sr_core.models.srresnet import ResidualBlockStream, channels_last_prelu
from sr_core.rowstream import RowConv, RowDelay, RowGroups, stack_rows
from sr_core.tiling import _stream_rows, iter_staged

CL = torch.channels_last


def bands_of(x: torch.Tensor, rows: int):
    height = x.shape[2]
    return [(x[:, :, top : top + rows].contiguous(memory_format=CL), top + rows >= height)
            for top in range(0, height, rows)]  # fmt: skip


def assert_pixel_progress(calls: list[tuple[int, int]], pixels: int) -> None:
    """Staged progress: one call per piece, input pixels done rising to all of them."""
    assert calls and all(total == pixels for _, total in calls)
    done = [d for d, _ in calls]
    assert done == sorted(set(done)) and done[-1] == pixels


def assembled(stages, x: torch.Tensor, scale: int, budget: int, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """The staged pieces pasted into one output, and how often each output pixel was written."""
    out = torch.full((1, 3, x.shape[2] * scale, x.shape[3] * scale), float("nan"))
    cover = torch.zeros(1, 1, *out.shape[2:])
    for t, piece in iter_staged(stages, x, budget=budget, element_size=4, **options):
        out[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] = piece
        cover[:, :, t.y0 * scale : t.y1 * scale, t.x0 * scale : t.x1 * scale] += 1
    return out, cover


def streamed(layer, x: torch.Tensor, rows: int) -> torch.Tensor:
    outs = [layer(band, last) for band, last in bands_of(x, rows)]
    return torch.cat(outs, 2)


@pytest.mark.parametrize("kernel", [3, 9])
@pytest.mark.parametrize("rows", [1, 2, 5, 17, 40, 100])
def test_row_conv_equals_the_padded_convolution(kernel, rows):
    torch.manual_seed(kernel + rows)
    conv = nn.Conv2d(4, 6, kernel, padding=kernel // 2)
    x = torch.randn(1, 4, 37, 23)
    with torch.no_grad():
        out = streamed(RowConv(conv, torch.tanh), x, rows)
        torch.testing.assert_close(out, torch.tanh(conv(x)))  # zero padding at top and bottom, once per row


def test_row_conv_lags_its_input_by_the_padding():
    layer = RowConv(nn.Conv2d(2, 2, 5, padding=2))
    with torch.no_grad():
        assert layer(torch.rand(1, 2, 10, 8).contiguous(memory_format=CL)).shape[2] == 8
        assert layer(torch.rand(1, 2, 10, 8).contiguous(memory_format=CL)).shape[2] == 10
        assert layer(torch.rand(1, 2, 10, 8).contiguous(memory_format=CL), last=True).shape[2] == 12


def test_row_conv_rejects_convolutions_it_cannot_stream():
    with pytest.raises(ValueError, match="same-padded"):
        RowConv(nn.Conv2d(2, 2, 3, stride=2, padding=1))


@pytest.mark.parametrize("rows", [1, 3, 8, 50])
def test_row_delay_holds_back_rows(rows):
    x = torch.arange(2 * 30 * 4, dtype=torch.float32).reshape(1, 2, 30, 4)
    delay = RowDelay(5)
    got = [delay(band, last) for band, last in bands_of(x, rows)]
    assert got[0].shape[2] == (30 if rows >= 30 else max(0, rows - 5))  # held back unless the band is the last
    torch.testing.assert_close(torch.cat(got, 2), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 2, 3, 8, 29, 60])
def test_streamed_residual_block_equals_the_block(tiny_srresnet, dtype, rows):
    """Skip rows taken from the first conv's stacked input, the sum fused into the second conv (channels_last, no
    autograd): against the unfused block (BatchNorm as its own layer) on the whole image, in float64."""
    model = tiny_srresnet(scale=4, num_blocks=1, channels=8).eval()
    block = model.trunk[0]
    stream = ResidualBlockStream(model.fuse_for_inference().to(dtype).trunk[0])
    x = torch.randn(1, 8, 29, 13, generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        expected = block.double()(x.double())
        out = torch.cat([stream(band, last) for band, last in bands_of(x.to(dtype), rows)], 2)
    assert out.shape == expected.shape
    assert (out.double() - expected).abs().max().item() < (1e-4 if dtype == torch.float32 else 0.1)


def test_stack_rows_keeps_channels_last():
    a, b = torch.rand(1, 3, 2, 5).contiguous(memory_format=CL), torch.rand(1, 3, 4, 5).contiguous(memory_format=CL)
    out = stack_rows([a, b])
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, torch.cat([a, b], 2))


@pytest.mark.parametrize("shape", [(1, 8, 16, 40), (2, 5, 3, 7), (1, 4, 1, 9)])
def test_channels_last_prelu_equals_prelu(shape):
    x = torch.randn(shape).contiguous(memory_format=CL)
    w = torch.randn(shape[1])
    out = channels_last_prelu(x, w)
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, F.prelu(x.contiguous(), w))


@pytest.mark.parametrize("rows", [1, 7, 16, 33, 200])
def test_srresnet_streamed_features_equal_whole_image_features(tiny_srresnet, rows):
    model = tiny_srresnet(scale=4, num_blocks=3, channels=8)
    fused = model.fuse_for_inference()
    x = torch.rand(1, 3, 45, 19, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model.eval().features(x)  # the unfused model: BatchNorm as a separate layer
        chunks = list(fused.stream_features(bands_of(x, rows)))
    assert all(c.shape[2] > 0 for c in chunks)
    torch.testing.assert_close(torch.cat(chunks, 2), whole, atol=1e-5, rtol=1e-5)


def test_only_fused_copies_stream(tiny_srresnet):
    model = tiny_srresnet()
    assert model.inference_stages()[0].stream is None
    with pytest.raises(ValueError, match="fused"):
        next(model.stream_features([(torch.rand(1, 3, 4, 4), True)]))


def test_staged_inference_streams_when_the_image_does_not_fit_one_window(tiny_srresnet):
    model = tiny_srresnet(scale=2, num_blocks=2, channels=8)
    fused = model.fuse_for_inference()
    stages, x = fused.inference_stages(), torch.rand(1, 3, 70, 31, generator=torch.Generator().manual_seed(2))
    budget = 120_000  # bytes at fp32: too small for the whole image, enough for bands of >= 16 rows
    assert _stream_rows(stages, 70, 31, budget, 4) >= 16
    assert _stream_rows(stages, 20, 31, budget, 4) == 0  # fits one window: no overlap to save
    calls = []
    out = torch.full((1, 3, 140, 62), float("nan"))
    cover = torch.zeros(1, 1, 140, 62)
    with torch.no_grad():
        pieces = iter_staged(stages, x, budget=budget, element_size=4, progress=lambda d, n: calls.append((d, n)))
        for t, piece in pieces:
            out[:, :, t.y0 * 2 : t.y1 * 2, t.x0 * 2 : t.x1 * 2] = piece
            cover[:, :, t.y0 * 2 : t.y1 * 2, t.x0 * 2 : t.x1 * 2] += 1
        whole = model.eval()(x)
    assert torch.equal(cover, torch.ones_like(cover))
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)
    assert_pixel_progress(calls, 70 * 31)


def test_whole_image_windows_stay_under_the_fresh_allocation_size(tiny_srresnet):
    stages = tiny_srresnet(scale=2, num_blocks=2, channels=8).fuse_for_inference().inference_stages()
    map_bytes = 20 * 31 * 8 * 4  # one 8-channel fp32 feature map of a 20x31 image
    assert _stream_rows(stages, 20, 31, 120_000, 4, fresh_allocation=None) == 0
    assert _stream_rows(stages, 20, 31, 120_000, 4, fresh_allocation=map_bytes + 1) == 0
    assert _stream_rows(stages, 20, 31, 120_000, 4, fresh_allocation=map_bytes) >= 16  # would be page-faulted anew


def test_fresh_allocation_size_is_glibcs_ceiling_only_with_its_default_settings(monkeypatch):
    from sr_core import devices

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "_glibc", lambda: True)
    monkeypatch.setattr(devices, "_freed_memory_kept", False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert devices.fresh_allocation_size(cpu) == devices.GLIBC_MMAP_CEILING == 32 << 20
    assert devices.fresh_allocation_size(torch.device("cuda")) is None  # CUDA's caching allocator recycles
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert devices.fresh_allocation_size(cpu) is None  # the user's own settings: no guess
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setattr(devices, "_freed_memory_kept", True)  # keep_freed_cpu_memory() succeeded
    assert devices.fresh_allocation_size(cpu) is None
    monkeypatch.setattr(devices, "_freed_memory_kept", False)
    monkeypatch.setattr(devices, "_glibc", lambda: False)
    assert devices.fresh_allocation_size(cpu) is None


def test_row_conv_of_a_bare_weight_equals_the_padded_convolution():
    torch.manual_seed(3)
    weight, bias = torch.randn(5, 4, 5, 5), torch.randn(5)
    x = torch.randn(1, 4, 21, 13)
    with torch.no_grad():
        out = streamed(RowConv.of_weight(weight, bias), x, 4)
        torch.testing.assert_close(out, F.conv2d(x, weight, bias, padding=2))
    with pytest.raises(ValueError, match="odd square"):
        RowConv.of_weight(torch.randn(2, 2, 4, 4))


@pytest.mark.parametrize("rows", [1, 3, 4, 11])
def test_row_groups_pass_whole_groups_and_everything_at_the_end(rows):
    x = torch.arange(26 * 3, dtype=torch.float32).reshape(1, 1, 26, 3)
    groups = RowGroups(4)
    outs = [groups(band, last) for band, last in bands_of(x, rows)]
    assert all(o.shape[2] % 4 == 0 for o in outs[:-1])
    torch.testing.assert_close(torch.cat(outs, 2), x)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("rows", [1, 2, 5, 40])
def test_srresnet_streamed_reconstruction_equals_the_whole_image_tail(tiny_srresnet, scale, rows):
    fused = tiny_srresnet(scale=scale, num_blocks=1, channels=8).fuse_for_inference()
    features = torch.randn(1, 8, 23, 17, generator=torch.Generator().manual_seed(scale)).contiguous(memory_format=CL)
    streamer = fused.inference_stages()[1].stream()
    with torch.no_grad():
        outs = [streamer(band, last) for band, last in bands_of(features, rows)]
        whole = fused.reconstruct(features)
    assert all(o.shape[2] % scale == 0 for o in outs)  # whole input rows only
    torch.testing.assert_close(torch.cat(outs, 2), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("budget", [1 << 30, 120_000, 40_000, 1])
@pytest.mark.parametrize(("tail_streams", "cache_sized"), [(True, True), (True, False), (False, True)])
def test_staged_pieces_cover_the_output_once_and_equal_the_whole_image(tiny_srresnet, monkeypatch, budget,
                                                                       tail_streams, cache_sized):  # fmt: skip
    """Windows or a streamed body (by budget), with the tail streamed in several strips and bands (cache-sized), in
    one strip (GPUs), or on tiles."""
    monkeypatch.setattr(tiling, "TAIL_STRIP_COLUMNS", 9)  # several strips, the last one narrower
    monkeypatch.setattr(tiling, "TAIL_BAND_ROWS", 3)
    model = tiny_srresnet(scale=2, num_blocks=2, channels=8)
    body, tail = model.fuse_for_inference().inference_stages()
    stages = (body, tail if tail_streams else dataclasses.replace(tail, stream=None))
    x = torch.rand(1, 3, 47, 31, generator=torch.Generator().manual_seed(4))
    calls = []
    with torch.no_grad():
        out, cover = assembled(stages, x, 2, budget, cache_sized=cache_sized,
                               progress=lambda d, n: calls.append((d, n)))  # fmt: skip
        whole = model.eval()(x)
    assert torch.equal(cover, torch.ones_like(cover))
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)
    assert_pixel_progress(calls, 47 * 31)


def test_without_cache_sizing_the_tail_streams_in_one_strip_per_window(tiny_srresnet, monkeypatch):
    monkeypatch.setattr(tiling, "TAIL_STRIP_COLUMNS", 9)
    stages = tiny_srresnet(scale=2, num_blocks=2, channels=8).fuse_for_inference().inference_stages()
    x = torch.rand(1, 3, 20, 31)
    with torch.no_grad():
        cached = list(iter_staged(stages, x, budget=1 << 30, element_size=4))
        uncached = list(iter_staged(stages, x, budget=1 << 30, element_size=4, cache_sized=False))
    assert {(t.x0, t.x1) for t, _ in uncached} == {(0, 31)}
    assert len({(t.x0, t.x1) for t, _ in cached}) == 4  # 31 columns in strips of at most 9


@pytest.mark.parametrize("panel_columns", [7, 16, 1000])
def test_wide_images_stream_in_column_panels_equal_to_the_whole_image(tiny_srresnet, monkeypatch, panel_columns):
    """A streamed body in column panels (cut with the receptive radius of context) gives the whole-image output,
    each output pixel once, and its bands are sized to the panel, not the image."""
    monkeypatch.setattr(tiling, "STREAM_PANEL_COLUMNS", panel_columns)
    monkeypatch.setattr(tiling, "TAIL_STRIP_COLUMNS", 9)
    model = tiny_srresnet(scale=2, num_blocks=2, channels=8)
    stages = model.fuse_for_inference().inference_stages()
    x = torch.rand(1, 3, 41, 60, generator=torch.Generator().manual_seed(5))
    budget = 250_000  # fp32: too small for one window of the whole image, enough for full-width bands
    panels = tiling._panels(stages, 60, cache_sized=True)
    assert len(panels) == -(-60 // panel_columns)
    assert [k for k, _ in panels][0][0] == 0 and [k for k, _ in panels][-1][1] == 60
    assert _stream_rows(stages, 41, 60, budget, 4) >= 16
    with torch.no_grad():
        out, cover = assembled(stages, x, 2, budget)
        whole = model.eval()(x)
    assert torch.equal(cover, torch.ones_like(cover))
    torch.testing.assert_close(out, whole, atol=1e-5, rtol=1e-5)
    assert len(tiling._panels(stages, 60, cache_sized=False)) == 1  # GPUs: one panel
