"""Exact row streaming: a convolutional network run on successive bands of image rows, layer by layer.

Each same-padded convolution keeps the last ``2 * padding`` rows of its input for the next band and stands in
for the zero padding at the top and bottom with zero rows, so every output row is computed once from the same
values a whole-image forward would see (no overlap recomputed, unlike windows). Outputs lag inputs by the
receptive radius; :class:`RowDelay` holds a skip connection's rows until the branch catches up. Bands are
(N, C, rows, W) channels_last tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


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
        self.weight, self.bias, self.pad = conv.weight, conv.bias, conv.padding[0]
        self.activation = activation
        self._carry: torch.Tensor | None = None

    def __call__(self, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        carry = _zero_rows(band, self.pad) if self._carry is None else self._carry
        parts = [carry, band, _zero_rows(band, self.pad)] if last else [carry, band]
        rows = stack_rows(parts)
        if rows.shape[2] < 2 * self.pad + 1:
            self._carry = rows
            return _zero_rows(rows, 0, self.weight.shape[0])
        self._carry = None if last else stack_rows([rows[:, :, rows.shape[2] - 2 * self.pad :]])  # not a view
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

    def add_into(self, out: torch.Tensor, band: torch.Tensor, last: bool = False) -> torch.Tensor:
        """``out += self(band, last)`` in place, without stacking the band (a skip connection's add); ``out`` must
        have as many rows as are due."""
        held = band[:, :, :0] if self._held is None else self._held
        due = out.shape[2]
        first = min(due, held.shape[2])
        out[:, :, :first].add_(held[:, :, :first])
        out[:, :, first:].add_(band[:, :, : due - first])
        self._hold(stack_rows([held[:, :, first:], band[:, :, due - first :]]), last)
        return out

    def _hold(self, rows: torch.Tensor, last: bool) -> None:
        self._held = None if last else stack_rows([rows])  # a copy: a view would keep the whole band alive
