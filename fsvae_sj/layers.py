"""Time-first building blocks: a weight layer applied at every step, tdBN, LIF."""
from __future__ import annotations

import torch
from torch import nn

from .neurons import lif_from_config
from .tdbn import TdBN


def per_step(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless layer to every step of ``[T, N, ...]`` by folding T into the batch."""
    y = layer(x.flatten(0, 1))
    return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class SpikingBlock(nn.Module):
    """``layer -> tdBN(alpha) -> LIF`` on a time-first sequence."""

    def __init__(self, layer: nn.Module, num_features: int, cfg, alpha: float = 1.0):
        super().__init__()
        self.layer = layer
        self.bn = TdBN(num_features, alpha=alpha, v_threshold=cfg.v_threshold)
        self.lif = lif_from_config(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.bn(per_step(self.layer, x)))


def conv_block(c_in: int, c_out: int, cfg) -> SpikingBlock:
    return SpikingBlock(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), c_out, cfg)


def deconv_block(c_in: int, c_out: int, cfg) -> SpikingBlock:
    return SpikingBlock(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), c_out, cfg)


def linear_block(f_in: int, f_out: int, cfg, alpha: float = 1.0) -> SpikingBlock:
    return SpikingBlock(nn.Linear(f_in, f_out), f_out, cfg, alpha=alpha)
