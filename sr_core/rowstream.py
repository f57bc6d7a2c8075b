"""Exact row streaming: a convolutional network run on successive bands of image rows, layer by layer.

Each same-padded convolution keeps the last ``2 * padding`` rows of its input for the next band and stands in
for the zero padding at the top and bottom with zero rows, so every output row is computed once from the same
values a whole-image forward would see (no overlap recomputed, unlike windows). Outputs lag inputs by the
receptive radius; :class:`RowDelay` holds a skip connection's rows until the branch catches up. Bands are
(N, C, rows, W) channels_last tensors.

A network (or a stage of one) streams as a :data:`RowStreamer`: a stateful callable fed (band, is_last) that returns
the output rows now complete, possibly none; fed every row of an image once, it returns them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

RowStreamer: TypeAlias = Callable[[torch.Tensor, bool], torch.Tensor]
"""(band, is_last) -> the output rows now complete (see the module docstring)."""


def stack_rows(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate channels_last bands along the rows: copies through the NHWC view, where each band is one
    contiguous block (``torch.cat`` and ``copy_`` on the NCHW view are ~10-30x slower for bf16 channels_last)."""
    last = parts[-1]
    n, c, _, w = last.shape
    out = torch.empty(n, c, sum(p.shape[2] for p in parts), w, dtype=last.dtype, device=last.device,
                      memory_format=torch.channels_last)  # fmt: skip
    rows, top = out.permute(0, 2, 3, 1), 0
    for p in parts:
        rows[:, top : top + p.shape[2]].copy_(p.permute(0, 2, 3, 1))
        top += p.shape[2]
    return out


def _zero_rows(like: torch.Tensor, count: int, channels: int | None = None) -> torch.Tensor:
    n, c, _, w = like.shape
    c = c if channels is None else channels
    return torch.empty(n, c, count, w, dtype=like.dtype, device=like.device, memory_format=torch.channels_last).zero_()


class RowConv:
    """``conv`` (square kernel, stride 1, same padding), then ``activation``, applied band by band.

    Output rows lag input rows by the padding ``p``: the first band gives ``rows - p`` rows, the last (``last=True``)
    ``rows + p``; in all, as many rows as went in.
    """

    def __init__(self, conv: nn.Conv2d, activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if conv.stride != (1, 1) or conv.padding[0] != conv.padding[1] or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("RowConv needs a same-padded, stride-1, undilated, ungrouped convolution")
        if conv.kernel_size != (2 * conv.padding[0] + 1,) * 2:
            raise ValueError(f"RowConv needs a square kernel of side 2 * padding + 1, got {conv.kernel_size}")
        self._setup(conv.weight, conv.bias, activation)

    @classmethod
    def of_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> RowConv:  # fmt: skip
        """The streamed ``F.conv2d(x, weight, bias, padding=k // 2)`` of an odd square (out, in, k, k) kernel."""
        k = weight.shape[-1]
        if weight.dim() != 4 or weight.shape[-2] != k or k % 2 == 0:
            raise ValueError(f"RowConv needs an odd square kernel, got {tuple(weight.shape)}")
        layer = cls.__new__(cls)
        layer._setup(weight, bias, activation)
        return layer

    def _setup(self, weight: torch.Tensor, bias: torch.Tensor | None,
               activation: Callable[[torch.Tensor], torch.Tensor] | None) -> None:  # fmt: skip
        self.weight, self.bias, self.pad = weight, bias, weight.shape[-1] // 2
        self.activation = activation
        self._carry: torch.Tensor | None = None

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        return self.run(self.stack(band, last))

    def stack(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        """The rows this band's output is computed from: the carried rows (zero rows above the image), the band, and
        zero rows below the image at the last band; a new tensor (the carry for the next band is a copy of its
        tail), unless it is too short to give a row, when it becomes the carry itself."""
        carry = _zero_rows(band, self.pad) if self._carry is None else self._carry
        parts = [carry, band, _zero_rows(band, self.pad)] if last else [carry, band]
        rows = stack_rows(parts)
        if not self.gives_rows(rows):
            self._carry = rows
        else:
            self._carry = None if last else stack_rows([rows[:, :, rows.shape[2] - 2 * self.pad :]])  # not a view
        return rows

    def gives_rows(self, rows: torch.Tensor) -> bool:
        """Whether stacked ``rows`` are enough for an output row."""
        return rows.shape[2] >= 2 * self.pad + 1

    def run(self, rows: torch.Tensor) -> torch.Tensor:
        """The output rows of stacked ``rows`` (:meth:`stack`): ``2 * pad`` fewer, none when too few."""
        if not self.gives_rows(rows):
            return _zero_rows(rows, 0, self.weight.shape[0])
        out = F.conv2d(rows, self.weight, self.bias, padding=(0, self.pad))
        return out if self.activation is None else self.activation(out)


class RowDelay:
    """Holds back the last ``rows`` rows of a stream (all of them at the last band), to meet a branch that lags."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._held: torch.Tensor | None = None

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        """The rows now due: the held ones, then the band's, all but the last ``rows`` (unless ``last``)."""
        rows = band if self._held is None else stack_rows([self._held, band])
        ready = rows.shape[2] if last else max(0, rows.shape[2] - self.rows)
        self._hold(rows[:, :, ready:], last)
        return rows[:, :, :ready]

    def _hold(self, rows: torch.Tensor, last: bool) -> None:
        self._held = None if last else stack_rows([rows])  # a copy: a view would keep the whole band alive


class RowGroups:
    """Passes a stream on in whole groups of ``size`` rows (all that is left at the last band): the rows of an
    upscaler's output that make up whole input rows."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rest: torch.Tensor | None = None

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        rows = band if self._rest is None else stack_rows([self._rest, band])
        ready = rows.shape[2] if last else rows.shape[2] - rows.shape[2] % self.size
        self._rest = None if last or ready == rows.shape[2] else stack_rows([rows[:, :, ready:]])
        return rows[:, :, :ready]
