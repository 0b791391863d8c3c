"""Time-first building blocks: a weight layer applied at every step, tdBN, LIF."""
from __future__ import annotations

import contextlib
import contextvars

import torch
from torch import nn

from .neurons import lif_from_config
from .tdbn import TdBN


# A context variable, not a module global: a block's choice stays in its own thread or task.
_conv_format = contextvars.ContextVar("fsvae_sj_conv_format", default=torch.channels_last)


@contextlib.contextmanager
def conv_memory_format(fmt: torch.memory_format):
    """Run convolutions in ``fmt`` inside the block (benchmarks compare the two layouts)."""
    token = _conv_format.set(fmt)
    try:
        yield
    finally:
        _conv_format.reset(token)


def conv_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format convolutions run in (channels-last unless a block says otherwise)."""
    return x.contiguous(memory_format=_conv_format.get())


def per_step(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless layer to every step of ``[T, N, ...]`` by folding T into the batch.

    Images go through convolutions channels-last: on CPU the (transposed)
    convolutions of FSVAE's decoder run 2-3x faster that way, and the
    elementwise tdBN/LIF work that follows does not care about the layout.
    """
    flat = x.flatten(0, 1)
    if flat.dim() == 4:
        flat = conv_input(flat)
    y = layer(flat)
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
