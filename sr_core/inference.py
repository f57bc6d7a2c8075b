"""Turn a trained upscaler into a fast inference module: fused by the model itself, channels_last, chosen dtype."""

from __future__ import annotations

import torch
from torch import nn

from .errors import WeightsError
from .models import SRModel


def prepare_for_inference(model: nn.Module, device: torch.device, dtype: torch.dtype) -> SRModel:
    """A fused (``model.fuse_for_inference()``), frozen copy of an upscaler on device, in dtype and channels_last."""
    if not isinstance(model, SRModel):
        raise WeightsError(f"{type(model).__name__} is not an upscaler (an sr_core.models.SRModel)")
    fast = model.fuse_for_inference()
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(device=device, dtype=dtype, memory_format=torch.channels_last)
