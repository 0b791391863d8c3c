"""tdBN and the LIF neuron of a convolutional block in one compiled pass (``use_fused_kernels``).

A spiking convolution block computes ``LIF(tdBN(conv(s)))`` over ``[T, N, C, H, W]``.
Run as two modules, tdBN reads and writes the block's largest tensor (forward, backward,
and, for accurate statistics on the CPU, a contiguous copy) and the LIF reads it again
and keeps its own copy of the membranes for backward. Here both run in
``torch.compile``'d kernels over the channels-last memory seen as ``[T, R, C]``
(``R = N * H * W``):

* training forward: the batch statistics (accumulated in float64: at least as accurate as
  ``batch_norm``'s NCHW kernel, the reference the parity test holds us to), then the
  normalisation and all T steps of the LIF in one pass; keeps only the block's input
  ``x`` (and per-channel vectors) for backward;
* training backward: normalisation and membranes recomputed from ``x``, BPTT through the
  LIF (reset not detached, rectangle surrogate), then tdBN's backward with float64 sums,
  written over the LIF's gradient buffer;
* eval: the authors' normalisation, operation for operation (the same roundings as
  :class:`~fsvae_sj.spiking.tdbn.TdBN`'s eval branch: spikes bit-identical), then the LIF.

Numbers: the same equations as the modules (:mod:`fsvae_sj.spiking.equations`; tests check
eval spikes bit for bit, training against both modules and the authors' parity fixture).
The membrane starts at rest (a fresh state, as every FSVAE block call does);
:func:`applies` says when a block can take this path.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from . import equations
from .compiled import run_compiled
from .tdbn import TdBN


def applies(bn: nn.Module, lif: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``lif(bn(x))`` can run here, for ``lif`` a :class:`~fsvae_sj.spiking.lif.LIF` of exactly
    that class (the caller checks it: subclasses may change the dynamics): ``bn`` a
    :class:`~fsvae_sj.spiking.tdbn.TdBN` of exactly that class, the LIF on the ``"compiled"`` route, keeping no ``v_seq``, at rest; no hook observing the modules
    (forward or backward, on them or global: spike counters, rasters and monitors see the modules
    run); ``x [T, N, C, H, W]`` channels-last at every step (steps dense or all the same tensor:
    the encoder's first block repeats one image over T); tdBN training, or no autograd."""
    modules = type(bn) is TdBN and lif.route == "compiled" and not lif.store_v_seq
    return (modules and not isinstance(lif.v, torch.Tensor) and not hooked(bn, lif)
            and x.dim() == 5 and x.shape[0] > 0 and x[0].is_contiguous(memory_format=torch.channels_last)
            and x.stride(0) in (0, x[0].numel())
            and (bn.training or not torch.is_grad_enabled()))


def hooked(*modules: nn.Module) -> bool:
    """Whether a forward or backward hook (global, or on one of ``modules``) would see these
    modules run: paths that skip running them must then yield."""
    g = nn.modules.module
    if (g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks
            or g._global_backward_pre_hooks):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in modules)


def _as_trc(x: torch.Tensor) -> torch.Tensor:
    """``[T, N, C, H, W]`` channels-last as its memory, ``[T, R, C]``: a view by permute and view,
    whose gradient maps back the same way (``as_strided``'s backward would scatter it through a
    zero-filled copy of the whole storage)."""
    T, N, C, H, W = x.shape
    return x.permute(0, 1, 3, 4, 2).view(T, N * H * W, C)


def _from_trc(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    T, N, C, H, W = like.shape
    return y.view(T, N, H, W, C).permute(0, 1, 4, 2, 3)


def _normalised(x, weight, bias, mean, var, eps: float):
    """Step ``t`` of tdBN's training-mode output, as a function of t: one definition for the
    forward pass and the backward's recomputation, so that both round alike."""
    scale = equations.train_scale(var, eps, weight, x.dtype)
    m = mean.to(x.dtype)
    return lambda t: equations.normalise(x[t], m, scale, bias)


def _train_forward(x, weight, bias, eps: float, decay: float, v_th: float):
    """``x [T, R, C]``; ``weight`` is tdBN's gamma times alpha * V_th. Returns
    (spikes [T, R, C], v_last [R, C], mean [C] float64, biased var [C] float64). The membrane
    starts at rest (0.0)."""
    var, mean = equations.batch_stats(x)
    spikes, _, v = equations.steps(_normalised(x, weight, bias, mean, var, eps), x.shape[0], 0.0, decay, v_th)
    return torch.stack(spikes), v, mean, var


def _lif_backward(x, weight, bias, mean, var, grad_spikes, grad_v, eps: float, decay: float,
                  v_th: float, a: float, offset: float):
    """d loss / d y of :func:`_train_forward`'s LIF (membranes recomputed from ``x``): ``[T, R, C]``."""
    _, charges, _ = equations.steps(_normalised(x, weight, bias, mean, var, eps), x.shape[0], 0.0, decay, v_th)
    grads, _ = equations.steps_grad(charges, grad_spikes, grad_v, decay, v_th, a, offset)
    return torch.stack(grads)


def _eval_forward(x, running_mean, std, weight, bias, gain: float, decay: float, v_th: float):
    """tdBN's eval branch in the authors' operation order, then the LIF from rest: (spikes, v_last).
    ``std`` = ``sqrt(running_var + eps)``, computed outside as the eager branch does (inside,
    the float ``eps`` is added in float64, which rounds differently)."""
    def y_of(t):
        return equations.normalise_eval(x[t], running_mean, gain, std, weight, bias)

    spikes, _, v = equations.steps(y_of, x.shape[0], 0.0, decay, v_th)
    return torch.stack(spikes), v


class _TrainTdBNLIF(torch.autograd.Function):
    """Training-mode tdBN + LIF on ``x [T, R, C]``: (spikes, v_last, batch mean, batch variance)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, decay, v_th, a, offset):
        spikes, v, mean, var = run_compiled(_train_forward, x, weight, bias, eps, decay, v_th)
        ctx.save_for_backward(x, weight, bias, mean, var)
        ctx.consts = (eps, decay, v_th, a, offset)
        ctx.mark_non_differentiable(mean, var)
        return spikes, v, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spikes, grad_v, _grad_mean, _grad_var):
        x, weight, bias, mean, var = ctx.saved_tensors
        if grad_spikes is None:
            grad_spikes = torch.zeros_like(x)
        if grad_v is None:
            grad_v = torch.zeros_like(x[0])
        eps = ctx.consts[0]
        grad = run_compiled(_lif_backward, x, weight, bias, mean, var, grad_spikes, grad_v, *ctx.consts)
        grad_weight, grad_bias = run_compiled(equations.normalise_grad_, x, weight, mean, var, grad, eps)
        return grad, grad_weight, grad_bias, None, None, None, None, None


def tdbn_lif(bn: TdBN, lif: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lif(bn(x))`` for ``x [T, N, C, H, W]`` where :func:`applies`: spikes ``[T, N, C, H, W]``
    (channels-last steps). Updates tdBN's running statistics in training mode (momentum,
    unbiased variance: as ``batch_norm``) and leaves ``lif.v`` at the last step's membrane."""
    decay, v_th = lif.decay, lif.v_threshold
    xs = _as_trc(x)
    if bn.training:
        if xs.shape[0] * xs.shape[1] < 2:  # as batch_norm: no variance from one value
            raise InputError(f"tdBN in training mode needs more than 1 value per channel, got input "
                             f"of shape {tuple(x.shape)}")
        a, offset = lif.surrogate_function.params()
        weight = bn.weight * (bn.alpha * bn.v_threshold)
        spikes, v, mean, var = _TrainTdBNLIF.apply(xs, weight, bn.bias, bn.eps, decay, v_th, a, offset)
        with torch.no_grad():
            n = xs.shape[0] * xs.shape[1]
            mom = bn.momentum
            bn.num_batches_tracked.add_(1)
            bn.running_mean.copy_(mom * mean + (1 - mom) * bn.running_mean.double())
            bn.running_var.copy_(mom * var * (n / (n - 1)) + (1 - mom) * bn.running_var.double())
    else:
        std = torch.sqrt(bn.running_var + bn.eps)
        spikes, v = run_compiled(_eval_forward, xs, bn.running_mean, std, bn.weight, bn.bias,
                                 bn.alpha * bn.v_threshold, decay, v_th)
    lif.v = v.view(x.shape[1], x.shape[3], x.shape[4], x.shape[2]).permute(0, 3, 1, 2)
    return _from_trc(spikes, x)
