"""Threshold-dependent BatchNorm (tdBN, Zheng et al. 2021) as FSVAE uses it.

Per channel, statistics over batch x time x space of a time-first input
``[T, N, C, *spatial]``::

    y = alpha * V_th * (x - mean) / sqrt(var + eps) * gamma + beta

gamma starts at 1 (the authors' parametrisation: SpikingJelly 2's
``ThresholdDependentBatchNorm`` folds alpha * V_th into the initial weight,
which is the same function but a different training trajectory). Training uses
the biased batch variance and updates ``running_var`` with the unbiased one
(momentum 0.1); eval uses the running statistics. Parameter and buffer names
match ``nn.BatchNorm`` so the authors' checkpoints map key for key.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from . import equations


class TdBN(nn.Module):
    def __init__(self, num_features: int, alpha: float = 1.0, v_threshold: float = 0.2,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.alpha = alpha
        self.v_threshold = v_threshold
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, alpha={self.alpha}, v_threshold={self.v_threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3 or x.shape[2] != self.num_features:
            raise InputError(f"TdBN expects [T, N, {self.num_features}, ...], got {tuple(x.shape)}")
        if self.training:
            self.num_batches_tracked.add_(1)
            # Statistics from a contiguous (NCHW) copy: on the CPU, batch_norm's channels-last
            # kernel sums naively in float32 (variance off by up to 5e-4 at batch 64, which
            # flips spikes near threshold); the NCHW kernel is as accurate as the authors'
            # (tests/test_train_parity.py) for about 3% of a training step.
            flat = x.flatten(0, 1).contiguous()
            # batch_norm's training branch is exactly tdBN's statistics and running update;
            # the alpha * V_th factor rides on gamma, which keeps d y / d gamma as the authors'.
            gamma = self.weight * (self.alpha * self.v_threshold)
            y = F.batch_norm(flat, self.running_mean, self.running_var, gamma, self.bias, training=True,
                             momentum=self.momentum, eps=self.eps)
            return y.view_as(x)
        return self.normalise_eval(x)

    def normalise_eval(self, x: torch.Tensor, out: torch.Tensor | None = None, channel_dim: int = 2) -> torch.Tensor:
        """The eval-mode output (running statistics) of ``x`` with channels on ``channel_dim``
        (2 for ``[T, N, C, ...]``, 1 for one step ``[N, C, ...]``), written into ``out`` when
        given (``x`` itself is allowed: no autograd then) and returned; no checks.

        The authors' operation order, so eval-mode spikes match theirs bit for bit. In place
        after the first op: the same roundings, one allocation (or none) instead of five."""
        shape = (1,) * channel_dim + (-1,) + (1,) * (x.dim() - channel_dim - 1)
        std = torch.sqrt(self.running_var + self.eps)
        return equations.normalise_eval(x, self.running_mean.view(shape), self.alpha * self.v_threshold,
                                        std.view(shape), self.weight.view(shape), self.bias.view(shape), out=out)
