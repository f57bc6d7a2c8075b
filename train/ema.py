"""Exponential moving average of a model's weights (the averaged copy is what gets validated and exported)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimiser step; buffers are copied as they are.

    Registered with ``accelerator.register_for_checkpointing`` through :meth:`state_dict`/:meth:`load_state_dict`.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, ema_param in self.shadow.named_parameters():
            ema_param.lerp_(params[name].detach().to(ema_param.dtype), 1.0 - self.decay)
        buffers = dict(model.named_buffers())
        for name, ema_buffer in self.shadow.named_buffers():
            ema_buffer.copy_(buffers[name])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.shadow.load_state_dict(state["shadow"])
