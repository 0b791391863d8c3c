"""The rectangle surrogate gradient used by FSVAE, as a SpikingJelly surrogate.

Forward is the Heaviside step ``x > 0`` (strictly greater, as the authors' code);
backward is ``(1/a) * 1[|x - offset| < a/2]`` where SpikingJelly passes
``x = u - V_th``. :class:`Rect` plugs into SpikingJelly through its surrogate
base's hooks (``spiking_function``, ``primitive_function``, ``cuda_codes``);
:func:`~fsvae_sj.spiking.equations.rect_grad` is the one place the gradient formula is written,
which every LIF route calls (our routes through :func:`~fsvae_sj.spiking.equations.charge_grad`, FlexSN's
core through :class:`RectSpikeT`, SpikingJelly's loop through :class:`RectSpike`;
the legacy CuPy kernel gets it as CUDA code from ``cuda_codes``).
Two presets:

* ``"code"``: what the authors' code trains with: width 1, height 1, centred at
  membrane ``u = 0`` (so ``offset = -V_th``).
* ``"paper"``: Zheng et al. 2021 as the paper and the authors' blog state it:
  centred at ``u = V_th`` (``offset = 0``), width ``a`` (default 0.2).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .equations import rect_grad
from .sj import SurrogateFunctionBase

PRESETS = ("code", "paper")
DEFAULT_A = {"code": 1.0, "paper": 0.2}


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


class RectSpikeT(torch.autograd.Function):
    """:class:`RectSpike` with tensor parameters, as FlexSN passes its static inputs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, a: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, a, offset)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, a, offset = ctx.saved_tensors
        return grad_output * rect_grad(x, a, offset), None, None


def _float_literal(v: float) -> str:
    return f"{float(v)!r}f"


class Rect(SurrogateFunctionBase):
    """Rectangle surrogate with width ``a`` (height ``1/a``) centred at ``offset``
    in SpikingJelly's ``x = u - V_th`` coordinates.

    ``alpha`` keeps SpikingJelly's meaning, the sharpness: ``1/a``, the height (its ``Rect(alpha)``
    has width ``1/alpha``). The hooks take the width ``a`` and ``offset``, from :meth:`params`
    (the LIF routes read both through it)."""

    def __init__(self, a: float = 1.0, offset: float = 0.0, spiking: bool = True):
        if not a > 0:
            raise ConfigError(f"surrogate width a must be > 0, got {a}")
        super().__init__(spiking=spiking, alpha=1.0 / float(a))
        self.a = float(a)
        self.offset = float(offset)

    @classmethod
    def preset(cls, name: str, v_threshold: float, a: float | None = None) -> "Rect":
        """``"code"`` (centred at u = 0) or ``"paper"`` (centred at u = V_th)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown surrogate preset {name!r}; expected one of {PRESETS}")
        a = DEFAULT_A[name] if a is None else float(a)
        return cls(a=a, offset=-v_threshold if name == "code" else 0.0)

    def params(self) -> tuple[float, float]:
        """``(a, offset)``: the arguments of the hooks and of :func:`rect_grad` after ``x``."""
        return self.a, self.offset

    def extra_repr(self) -> str:
        return f"a={self.a}, offset={self.offset}, spiking={self.spiking}"

    @staticmethod
    def spiking_function(x: torch.Tensor, a: float, offset: float) -> torch.Tensor:
        """Heaviside ``x > 0`` forward, :func:`rect_grad` backward."""
        return RectSpike.apply(x, a, offset)

    @staticmethod
    def primitive_function(x: torch.Tensor, a: float, offset: float) -> torch.Tensor:
        """The clipped ramp whose derivative is the rectangle."""
        return ((x - offset) / a + 0.5).clamp(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Both generations' base forward pass ``alpha`` alone; ours passes the width and the offset.
        fn = self.spiking_function if self.spiking else self.primitive_function
        return fn(x, *self.params())

    def cuda_codes(self, y: str, x: str, dtype: str) -> str:
        """Backward code for the legacy CuPy LIF kernel (``x`` is ``h - v_th``)."""
        half, height, off = (_float_literal(v) for v in (self.a / 2, 1.0 / self.a, self.offset))
        if dtype == "float":
            return f"{y} = (fabsf({x} - {off}) < {half}) ? {height} : 0.0f;"
        if dtype == "half2":
            return (f"{y} = __hmul2(__hlt2(__habs2(__hsub2({x}, __float2half2_rn({off}))), "
                    f"__float2half2_rn({half})), __float2half2_rn({height}));")
        raise NotImplementedError(f"Rect.cuda_codes has no code for dtype {dtype!r}")
