"""Exponential moving average of a model's weights (the averaged copy is what gets validated and exported).

A thin wrapper over ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``, which does the
averaging; the wrapper keeps three behaviours the trainer relies on that AveragedModel alone does not have:

- the copy taken at start counts as the first average, so the first update already moves it by ``1 - decay``
  (AveragedModel's first ``update_parameters`` overwrites it with the live weights instead);
- the copy is in eval mode with no gradients, ready to validate and export as it is;
- the checkpoint layout stays ``{"decay", "shadow": <the model's state_dict>}`` (AveragedModel's own state_dict
  prefixes every key with ``module.`` and adds ``n_averaged``), so existing checkpoints still resume.

Buffers (BatchNorm statistics) are copied from the live model at every update, not averaged (``use_buffers``
False); precise BN (``train/precise_bn.py``) recomputes them for the averaged weights before export.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimiser step; buffers are copied as they are.

    Registered with ``accelerator.register_for_checkpointing`` through :meth:`state_dict`/:meth:`load_state_dict`.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.averaged.n_averaged.fill_(1)  # the copy is the first average: the next update blends, not copies
        self.shadow.eval().requires_grad_(False)
        self.decay = decay

    @property
    def shadow(self) -> nn.Module:
        """The averaged model itself (a copy of the model given at start, of the same class)."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current parameters into the average and take its buffers."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.averaged.multi_avg_fn = get_ema_multi_avg_fn(self.decay)
        self.shadow.load_state_dict(state["shadow"])
