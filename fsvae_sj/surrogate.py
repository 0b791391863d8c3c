"""The rectangle surrogate gradient used by FSVAE, as a SpikingJelly surrogate.

Forward is the Heaviside step ``x > 0`` (strictly greater, as the authors' code);
backward is ``(1/a) * 1[|x - offset| < a/2]`` where SpikingJelly passes
``x = u - V_th``. Two presets:

* ``"code"``: what the authors' code trains with: width 1, height 1, centred at
  membrane ``u = 0`` (so ``offset = -V_th``).
* ``"paper"``: Zheng et al. 2021 as the paper and the authors' blog state it:
  centred at ``u = V_th`` (``offset = 0``), width ``a`` (default 0.2).
"""
from __future__ import annotations

import torch

from .backend import SurrogateFunctionBase

PRESETS = ("code", "paper")
DEFAULT_A = {"code": 1.0, "paper": 0.2}


def rect_grad(x: torch.Tensor, a: float, offset: float) -> torch.Tensor:
    """d spike / d x of the rectangle surrogate."""
    return ((x - offset).abs() < a / 2).to(x.dtype) / a


class RectSpike(torch.autograd.Function):
    """Heaviside forward, rectangle backward; module-level so FlexSN can trace it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: float, offset: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.a, ctx.offset = a, offset
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * rect_grad(x, ctx.a, ctx.offset), None, None


def _float_literal(v: float) -> str:
    return f"{float(v)!r}f"


class Rect(SurrogateFunctionBase):
    """Rectangle surrogate with width ``a`` (height ``1/a``) centred at ``offset``
    in SpikingJelly's ``x = u - V_th`` coordinates."""

    def __init__(self, a: float = 1.0, offset: float = 0.0, spiking: bool = True):
        if not a > 0:
            raise ValueError(f"surrogate width a must be > 0, got {a}")
        super().__init__(spiking=spiking, alpha=float(a))
        self.offset = float(offset)

    @classmethod
    def preset(cls, name: str, v_threshold: float, a: float | None = None) -> "Rect":
        """``"code"`` (centred at u = 0) or ``"paper"`` (centred at u = V_th)."""
        if name not in PRESETS:
            raise ValueError(f"unknown surrogate preset {name!r}; expected one of {PRESETS}")
        a = DEFAULT_A[name] if a is None else float(a)
        return cls(a=a, offset=-v_threshold if name == "code" else 0.0)

    @property
    def a(self) -> float:
        return self.alpha

    def extra_repr(self) -> str:
        return f"a={self.alpha}, offset={self.offset}, spiking={self.spiking}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return RectSpike.apply(x, self.alpha, self.offset)
        # The primitive whose derivative is the rectangle: a clipped ramp.
        return ((x - self.offset) / self.alpha + 0.5).clamp(0.0, 1.0)

    def cuda_codes(self, y: str, x: str, dtype: str) -> str:
        """Backward code for the legacy CuPy LIF kernel (``x`` is ``h - v_th``)."""
        half, height, off = (_float_literal(v) for v in (self.alpha / 2, 1.0 / self.alpha, self.offset))
        if dtype == "float":
            return f"{y} = (fabsf({x} - {off}) < {half}) ? {height} : 0.0f;"
        if dtype == "half2":
            return (f"{y} = __hmul2(__hlt2(__habs2(__hsub2({x}, __float2half2_rn({off}))), "
                    f"__float2half2_rn({half})), __float2half2_rn({height}));")
        raise NotImplementedError(f"Rect.cuda_codes has no code for dtype {dtype!r}")
