"""The step equations of FSVAE's neuron and of tdBN, forward and backward, written once.

Every route calls these functions: the LIF's eager and ``torch.compile``'d kernels, its
in-place inference step, FlexSN's core (:mod:`fsvae_sj.spiking.lif`) and the tdBN + LIF block
(:mod:`fsvae_sj.spiking.fused_block`). To change the neuron (a soft reset, a learnable decay)
edit a phase here and its gradient beside it; ``tests/test_equations.py`` checks that every route
follows a changed charge. (SpikingJelly's own route, ``route="spikingjelly"``, runs SpikingJelly's
``LIFNode`` equations, not these.)

LIF, time-first, per element (the authors' code)::

    h_t = decay * v_{t-1} + x_t          charge     (decay = 0.25, tau = 4/3)
    s_t = 1[h_t > V_th]                  fire       (V_th = 0.2)
    v_t = h_t - h_t * s_t                reset      (hard, to 0, not detached)

tdBN, per channel (``alpha * V_th`` folded into ``gain``; the module's training forward runs
``F.batch_norm`` itself, the reference the fused block's training equations are tested against)::

    y = (x - mean) * scale + bias                    training, scale = weight / sqrt(var + eps)
    y = ((x - mean) * gain / std) * weight + bias    eval, the authors' operation order

Each function with an ``out`` argument writes its result there when given (eager and in-place
routes: no per-step allocation) and allocates otherwise (the compiled kernels, where in-place
writes cost twice the time); both spellings are the same operations, so the same roundings.
"""
from __future__ import annotations

import torch

# --- LIF ------------------------------------------------------------------------------------


def charge(v, x: torch.Tensor, decay: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = decay * v_{t-1} + x_t``: the membrane ``v`` (a tensor, or the float 0.0 at rest)
    charged with the input ``x``. Rounds as the authors' ``0.25 * u * (1 - o) + x``
    (SpikingJelly's ``v - v / tau + x`` rounds otherwise and can flip a spike on the threshold)."""
    if out is None:
        return v * decay + x
    return torch.mul(v, decay, out=out).add_(x)


def fire(h: torch.Tensor, v_th: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """``s_t = 1[h_t > V_th]`` (strictly greater) as 0.0 / 1.0 in ``h``'s dtype (or ``out``'s)."""
    if out is None:
        return (h > v_th).to(h.dtype)
    return torch.gt(h, v_th, out=out)


def reset(h: torch.Tensor, s: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``v_t = h_t - h_t * s_t``: a hard reset to 0 where the step fired (``s`` 0.0 / 1.0; exact:
    ``h - h`` is 0), differentiable in ``s`` (the reset is not detached). ``out`` may be ``h``."""
    if out is None:
        return h - h * s   # FlexSN's Triton code generator knows mul and sub, not addcmul
    return torch.addcmul(h, h, s, value=-1.0, out=out)   # one pass; h * s is exact, so the same values


def step(v, x: torch.Tensor, decay: float, v_th: float, h_out=None, s_out=None, v_out=None):
    """One LIF step, charge then fire then reset: ``(s_t, h_t, v_t)``, each written into its
    ``*_out`` when given (the in-place inference step passes ``h_out = v_out = v``)."""
    h = charge(v, x, decay, out=h_out)
    s = fire(h, v_th, out=s_out)
    return s, h, reset(h, s, out=v_out)


def steps(x_of, n_steps: int, v, decay: float, v_th: float, h_out=None, s_out=None, v_out=None):
    """The LIF over inputs ``x_of(t)``, ``t < n_steps``, from membrane ``v`` (0.0: at rest):
    ``(spikes, charged membranes, v_last)``, the first two lists of ``[...]`` steps. Given
    ``[T, ...]`` buffers ``s_out`` and ``h_out`` and a one-step buffer ``v_out`` (not ``v``), writes
    into them instead of allocating (each step's reset reuses ``v_out``: the charge has read it)."""
    spikes, charges = [], []
    for t in range(n_steps):
        s, h, v = step(v, x_of(t), decay, v_th, h_out=None if h_out is None else h_out[t],
                       s_out=None if s_out is None else s_out[t], v_out=v_out)
        spikes.append(s)
        charges.append(h)
    return spikes, charges, v


def rect_grad(x: torch.Tensor, a: float, offset: float) -> torch.Tensor:
    """d spike / d x of the rectangle surrogate (:class:`~fsvae_sj.spiking.surrogate.Rect`), ``x = h - V_th``:
    ``(1/a) * 1[|x - offset| < a/2]``."""
    return ((x - offset).abs() < a / 2).to(x.dtype) / a


def charge_grad(h: torch.Tensor, grad_spike: torch.Tensor, grad_v: torch.Tensor, v_th: float, a: float,
                offset: float, out: torch.Tensor | None = None) -> torch.Tensor:
    """d loss / d h_t through fire and reset (rectangle surrogate of width ``a`` at ``offset``): with
    ``s_t = 1[h_t > V_th]`` and ``v_t = h_t (1 - s_t)``,
    ``dL/dh_t = s'(h_t) (dL/ds_t - h_t dL/dv_t) + (1 - s_t) dL/dv_t``."""
    not_fired = torch.where(h > v_th, 0.0, grad_v)
    if out is None:
        return (grad_spike - h * grad_v) * rect_grad(h - v_th, a, offset) + not_fired
    torch.mul(h, grad_v, out=out)
    torch.sub(grad_spike, out, out=out)
    return out.mul_(rect_grad(h - v_th, a, offset)).add_(not_fired)


def charge_grad_v(grad_h: torch.Tensor, decay: float) -> torch.Tensor:
    """d loss / d v_{t-1} of the charge, from d loss / d h_t."""
    return grad_h * decay


def steps_grad(charges, grad_spikes, grad_v, decay: float, v_th: float, a: float, offset: float, out=None):
    """BPTT of :func:`steps` from its charged membranes ``charges[t]``: ``(grads, grad_v0)``, ``grads``
    the list of d loss / d x_t (``out``, a ``[T, ...]`` buffer written step by step, when given)."""
    grads = [None] * len(charges)
    for t in range(len(charges) - 1, -1, -1):
        grads[t] = charge_grad(charges[t], grad_spikes[t], grad_v, v_th, a, offset,
                               out=None if out is None else out[t])
        grad_v = charge_grad_v(grads[t], decay)
    return grads, grad_v


# --- tdBN -----------------------------------------------------------------------------------


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [T, R, C]``: the biased variance and the mean per channel, accumulated in float64 (at
    least as accurate as ``batch_norm``'s NCHW kernel, the reference)."""
    return torch.var_mean(x.to(torch.float64), dim=(0, 1), correction=0)


def train_scale(var: torch.Tensor, eps: float, weight: torch.Tensor, dtype) -> torch.Tensor:
    """``weight / sqrt(var + eps)`` in ``dtype``: the training normalisation's per-channel factor."""
    return (torch.rsqrt(var + eps) * weight).to(dtype)


def normalise(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """tdBN's training-mode output ``(x - mean) * scale + bias`` (``scale`` from :func:`train_scale`)."""
    return (x - mean) * scale + bias


def normalise_eval(x: torch.Tensor, mean, gain: float, std, weight, bias, out: torch.Tensor | None = None):
    """tdBN's eval-mode output ``((x - mean) * gain / std) * weight + bias`` (``gain = alpha * V_th``,
    ``std = sqrt(running_var + eps)``; per-channel tensors broadcastable to ``x``), in the authors'
    operation order (eval spikes bit for bit theirs); into ``out`` when given (``x`` itself allowed)."""
    y = x - mean if out is None else torch.sub(x, mean, out=out)
    return y.mul_(gain).div_(std).mul_(weight).add_(bias)


def normalise_grad_(x, weight, mean, var, grad_y, eps: float):
    """tdBN's training backward on ``x [T, R, C]`` (sums in float64): d loss / d x written over
    ``grad_y`` (one full-size tensor less at the peak of a step); returns d loss / d (weight, bias)."""
    f64 = torch.float64
    invstd = torch.rsqrt(var + eps)
    xhat = (x.to(f64) - mean) * invstd
    gy = grad_y.to(f64)
    n = x.shape[0] * x.shape[1]
    sum_gy = gy.sum(dim=(0, 1))
    sum_gy_xhat = (gy * xhat).sum(dim=(0, 1))
    grad_y.copy_((gy - sum_gy / n - xhat * (sum_gy_xhat / n)) * (invstd * weight))
    return sum_gy_xhat.to(weight.dtype), sum_gy.to(weight.dtype)
