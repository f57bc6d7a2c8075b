"""Turn a trained generator into a fast inference module: BatchNorm folded, channels_last, chosen dtype."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy where every Conv2d directly followed by a BatchNorm2d absorbs it.

    Works on the attribute pairs sr_core's models use (conv1/bn1, conv2/bn2, trunk_conv/trunk_bn) and on
    Sequential neighbours, so the folded model computes the same function with fewer layers.
    """
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("trunk_conv", "trunk_bn")):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
        if isinstance(module, nn.Sequential):
            children = list(module._modules.items())
            for (name_a, a), (name_b, b) in zip(children, children[1:], strict=False):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    module._modules[name_a] = fuse_conv_bn_eval(a, b)
                    module._modules[name_b] = nn.Identity()
    return model


def prepare_for_inference(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Folded, frozen copy of model on device in dtype and channels_last memory format."""
    fast = fold_batchnorm(model)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast.to(device=device, dtype=dtype, memory_format=torch.channels_last)


@torch.inference_mode()
def run_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward a float [0,1] NCHW tensor through a prepared model; returns float32 on the input's device."""
    param = next(model.parameters())
    y = model(x.to(device=param.device, dtype=param.dtype, memory_format=torch.channels_last))
    return y.float()
