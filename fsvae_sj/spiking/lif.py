"""FSVAE's LIF neuron as a SpikingJelly multi-step ``LIFNode``.

Dynamics (the authors' code, time-first ``[T, N, ...]``)::

    u_t = decay * u_{t-1} * (1 - o_{t-1}) + I_t        decay = 0.25 (tau = 4/3)
    o_t = 1[u_t > V_th]                                V_th = 0.2

a hard reset to 0 whose reset path is not detached. In SpikingJelly terms:
``LIFNode(tau=4/3, decay_input=False, v_threshold=0.2, v_reset=0.0,
detach_reset=False)``.

One node, three routes, chosen by ``route`` (``supported_routes``; the model config's
``lif_impl="exact"`` is ``"eager"``, ``"spikingjelly"`` is ``"spikingjelly"``):

* ``"eager"`` (default): a single autograd function over the whole sequence running the
  equations of :mod:`fsvae_sj.spiking.equations`. It charges as ``decay * v + x`` exactly like
  the authors (SpikingJelly's torch loop charges ``v - v / tau + x``, which rounds differently
  in float32 and can flip a spike sitting on the threshold), and it keeps only the membrane
  sequence for backward instead of SpikingJelly's per-step graph. Without autograd
  (sampling, reconstruction) it runs step by step in place (:func:`lif_step_`): one membrane
  buffer, spikes written straight into the output, the same roundings.
* ``"compiled"``: the same equations in ``torch.compile``'d kernels (:func:`use_fused_kernels`
  sets it on a whole model; spiking convolution blocks then run tdBN and LIF together,
  :mod:`fsvae_sj.spiking.fused_block`).
* ``"spikingjelly"``: SpikingJelly's own multi-step path with the same surrogate: its fused
  kernels on CUDA (legacy CuPy in training mode, FlexSN in SpikingJelly 2, whose core calls
  our equations), its torch loop elsewhere.

``store_v_seq=True`` (SpikingJelly's option) keeps the membrane sequence of the
last call as ``v_seq [T, ...]``: on our routes the charged membrane before
the reset, ``h_t = decay * v_{t-1} + x_t`` (what the authors call u_t; detached);
on the ``"spikingjelly"`` route whatever the installed SpikingJelly stores (the
membrane after the reset).
"""
from __future__ import annotations

import torch

from ..errors import ConfigError, InputError, warn
from . import equations, sj
from .compiled import can_compile, cpu_compiler_problem, run_compiled
from .surrogate import Rect, RectSpike, RectSpikeT

# The routes a LIF runs on (its ``route``), as SpikingJelly's ``backend`` / ``supported_backends``.
ROUTES = ("eager", "compiled", "spikingjelly")
# The model config's ``lif_impl``: "exact" is our equations (eager or compiled), "spikingjelly" SpikingJelly's.
IMPLS = ("exact", "spikingjelly")


def _eager_forward(x_seq, v0, decay: float, v_th: float):
    """The dynamics in eager PyTorch: ``(spikes, h_seq, v_last)``, written in place
    into preallocated outputs (four passes a step, no per-step temporaries)."""
    h_seq, spikes = torch.empty_like(x_seq), torch.empty_like(x_seq)
    _, _, v = equations.steps(x_seq.__getitem__, x_seq.shape[0], v0, decay, v_th,
                              h_out=h_seq, s_out=spikes, v_out=torch.empty_like(x_seq[0]))
    return spikes, h_seq, v


def lif_step_(v: torch.Tensor, x_t: torch.Tensor, spikes_t: torch.Tensor, decay: float, v_th: float) -> None:
    """One step of the dynamics without autograd, in place: charges the membrane ``v``
    with ``x_t``, writes the spikes (0.0 or 1.0) into ``spikes_t`` (which may be ``x_t``
    itself) and resets ``v`` where they fired. The same roundings as :func:`_eager_forward`;
    no allocation."""
    equations.step(v, x_t, decay, v_th, h_out=v, s_out=spikes_t, v_out=v)


def _eager_backward(h_seq, grad_spikes, grad_v, decay: float, v_th: float, a: float, offset: float):
    """BPTT through the reset (not detached): ``(grad_x, grad_v0)``."""
    grad_x = torch.empty_like(h_seq)
    _, grad_v = equations.steps_grad(h_seq, grad_spikes, grad_v, decay, v_th, a, offset, out=grad_x)
    return grad_x, grad_v


def _compiled_forward(x_seq, v0, decay: float, v_th: float):
    """The same dynamics for ``torch.compile`` (no in-place writes, which compile twice as slow),
    which fuses all T steps into one pass over ``[T, M]``: x read once, spikes and h written
    once. The same roundings as :func:`_eager_forward` (tests check spikes and membranes bit for bit)."""
    spikes, charges, v = equations.steps(x_seq.__getitem__, x_seq.shape[0], v0, decay, v_th)
    return torch.stack(spikes), torch.stack(charges), v


def _compiled_backward(h_seq, grad_spikes, grad_v, decay: float, v_th: float, a: float, offset: float):
    """:func:`_eager_backward` for ``torch.compile``."""
    grads, grad_v = equations.steps_grad(h_seq, grad_spikes, grad_v, decay, v_th, a, offset)
    return torch.stack(grads), grad_v


class _TimeMajor:
    """A dense ``[T, ...]`` tensor as a ``[T, M]`` view in memory order (channels-last
    included; a copy only if the steps are not dense), and the way back: elementwise
    kernels over time then see two dimensions only."""

    def __init__(self, like: torch.Tensor):
        dims = sorted(range(1, like.dim()), key=lambda d: -like.stride(d))
        self.perm = (0, *dims)
        self.shape = tuple(like.shape[d] for d in self.perm)
        self.inverse = tuple(self.perm.index(d) for d in range(like.dim()))

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.perm).reshape(x.shape[0], -1)

    def flat_step(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute([d - 1 for d in self.perm[1:]]).reshape(-1)

    def back(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], *self.shape[1:]).permute(self.inverse)

    def back_step(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(self.shape[1:]).permute([d - 1 for d in self.inverse[1:]])


class _ExactLIF(torch.autograd.Function):
    """Whole-sequence LIF with hand-written BPTT (reset not detached).

    Only the charged membrane ``h`` is kept for backward; spikes and surrogate
    masks are recomputed from it, which keeps memory traffic low (no per-step
    autograd graph). ``compiled``: run the ``torch.compile`` kernels instead of eager.
    Returns ``(spikes, v_last, h_seq)``; ``h_seq`` (the charged membranes, already
    kept for backward) carries no gradient.
    """

    @staticmethod
    def forward(ctx, x_seq, v0, decay, v_th, a, offset, compiled=False):
        ctx.consts = (decay, v_th, a, offset)
        ctx.compiled = compiled
        if not compiled:
            spikes, h_seq, v = _eager_forward(x_seq, v0, decay, v_th)
            ctx.save_for_backward(h_seq)
            ctx.mark_non_differentiable(h_seq)
            return spikes, v, h_seq
        tm = _TimeMajor(x_seq)
        spikes, h_seq, v = run_compiled(_compiled_forward, tm.flat(x_seq), tm.flat_step(v0), decay, v_th)
        ctx.save_for_backward(h_seq)
        ctx.layout = tm
        h_out = tm.back(h_seq)
        ctx.mark_non_differentiable(h_out)
        return tm.back(spikes), tm.back_step(v), h_out

    @staticmethod
    def backward(ctx, grad_spikes, grad_v_last, _grad_h_seq):
        (h_seq,) = ctx.saved_tensors
        none = (None,) * 5
        if not ctx.compiled:
            gs = grad_spikes if grad_spikes is not None else torch.zeros_like(h_seq)
            gv = grad_v_last if grad_v_last is not None else torch.zeros_like(h_seq[0])
            return (*_eager_backward(h_seq, gs, gv, *ctx.consts), *none)
        tm = ctx.layout
        gs = tm.flat(grad_spikes) if grad_spikes is not None else torch.zeros_like(h_seq)
        gv = tm.flat_step(grad_v_last) if grad_v_last is not None else torch.zeros_like(h_seq[0])
        grad_x, grad_v = run_compiled(_compiled_backward, h_seq, gs, gv, *ctx.consts)
        return (tm.back(grad_x), tm.back_step(grad_v), *none)


def _flexsn_step(x, v, decay, v_th, a, offset):
    """FlexSN's single-step core: a module-level function that captures nothing. It fires through
    the surrogate (FlexSN differentiates the core), so the reset's gradient flows as on our routes."""
    h = equations.charge(v, x, decay)
    spike = RectSpikeT.apply(h - v_th, a, offset)
    return spike, equations.reset(h, spike)


class LIF(sj.LIFNode):
    """Multi-step FSVAE LIF node (``[T, N, ...]`` in, spikes out).

    ``surrogate`` is a :class:`~fsvae_sj.spiking.surrogate.Rect`; its default is the
    authors' code preset. ``store_v_seq``: keep the last call's membrane sequence
    as ``self.v_seq`` (see the module's docstring); off by default, free when off.
    ``route``: ``"eager"`` (default), ``"compiled"`` or ``"spikingjelly"`` (:attr:`supported_routes`);
    ``impl`` is the model config's older spelling (``"exact"``: eager, ``"spikingjelly"``).
    Raises ConfigError (a ValueError) for an unknown route or impl, the two disagreeing, or ``decay``
    outside (0, 1).
    """

    def __init__(self, v_threshold: float = 0.2, decay: float = 0.25,
                 surrogate: Rect | None = None, impl: str = "exact", store_v_seq: bool = False,
                 route: str | None = None):
        if impl not in IMPLS:
            raise ConfigError(f"unknown LIF impl {impl!r}; expected one of {IMPLS}")
        if impl == "spikingjelly" and route not in (None, "spikingjelly"):
            raise ConfigError(f"impl='spikingjelly' is route='spikingjelly', not route={route!r}: give one of the two")
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"membrane decay must be in (0, 1), got {decay}")
        surrogate = surrogate if surrogate is not None else Rect.preset("code", v_threshold)
        super().__init__(tau=1.0 / (1.0 - decay), decay_input=False, v_threshold=v_threshold,
                         v_reset=0.0, surrogate_function=surrogate, detach_reset=False,
                         step_mode="m", **sj.LIF_NODE_KWARGS)
        self.store_v_seq = store_v_seq  # SpikingJelly's property (a reset clears v_seq)
        self.decay = decay
        self.route = route if route is not None else ("spikingjelly" if impl == "spikingjelly" else "eager")
        self._flexsn = None

    @property
    def supported_routes(self) -> tuple[str, ...]:
        """The values ``route`` takes: ``"eager"``, ``"compiled"`` (our equations on eager or
        ``torch.compile``'d kernels) and ``"spikingjelly"`` (SpikingJelly's own node)."""
        return ROUTES

    @property
    def route(self) -> str:
        """Which kernels run this neuron (see the module's docstring); raises ConfigError when set
        to a value not in :attr:`supported_routes`."""
        return self._route

    @route.setter
    def route(self, value: str) -> None:
        if value not in ROUTES:
            raise ConfigError(f"unknown LIF route {value!r}; expected one of {ROUTES}")
        self._route = value

    @property
    def impl(self) -> str:
        """The route as the model config's ``lif_impl`` spells it: ``"exact"`` (eager or compiled)
        or ``"spikingjelly"``."""
        return "spikingjelly" if self._route == "spikingjelly" else "exact"

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, decay={self.decay}, route={self.route}"

    def _initial_v(self, x_seq: torch.Tensor) -> torch.Tensor:
        v = self.v
        if isinstance(v, torch.Tensor):
            return v
        return torch.full_like(x_seq[0], float(v))

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # numel, not shape: the fused routes may keep the membrane flattened
        if isinstance(self.v, torch.Tensor) and self.v.numel() != x_seq[0].numel():
            raise InputError(f"this LIF holds a membrane potential of shape {tuple(self.v.shape)} from an earlier "
                             f"call, but the input step has shape {tuple(x_seq.shape[1:])}: call "
                             f"spikingjelly's functional.reset_net(model) (or .reset()) between sequences")
        if self.route == "spikingjelly":
            return self._spikingjelly_forward(x_seq)
        if not torch.is_grad_enabled() and self.route == "eager" and not self.store_v_seq:
            # Inference: the membrane in one buffer, spikes written straight into the output
            # (no membrane sequence, no bool mask, no per-step tensors).
            spikes = torch.empty_like(x_seq)
            v = self.v.clone() if isinstance(self.v, torch.Tensor) else self._initial_v(x_seq)
            for t in range(x_seq.shape[0]):
                lif_step_(v, x_seq[t], spikes[t], self.decay, self.v_threshold)
            self.v = v
            return spikes
        spikes, v, h_seq = _ExactLIF.apply(x_seq, self._initial_v(x_seq), self.decay,
                                           self.v_threshold, *self.surrogate_function.params(),
                                           self.route == "compiled")
        self.v = v
        if self.store_v_seq:
            self.v_seq = h_seq
        return spikes

    def _spikingjelly_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if self.store_v_seq and not sj.STORE_V_SEQ:
            raise ConfigError(f"store_v_seq on lif_impl='spikingjelly' needs a SpikingJelly whose neurons "
                               f"store v_seq; the installed {sj.SJ_VERSION} does not (use route='eager')")
        if sj.spikingjelly_kernel(x_seq, self.training) == "flexsn-triton":
            return self._flexsn_forward(x_seq)
        if sj.LEGACY:
            # The legacy LIFNode binds its backend at construction; follow the tensor.
            self.backend = "cupy" if sj.spikingjelly_kernel(x_seq, self.training) == "cupy" else "torch"
        return super().multi_step_forward(x_seq)

    def _flexsn_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        where = (x_seq.device, x_seq.dtype)
        if self._flexsn is None or self._flexsn[1] != where:
            consts = (self.decay, self.v_threshold, *self.surrogate_function.params())
            static = tuple(torch.tensor(c, dtype=x_seq.dtype, device=x_seq.device) for c in consts)
            # a tuple, so that the helper is not registered as a submodule (no state_dict keys)
            self._flexsn = (sj.make_flexsn(_flexsn_step, static), where)
        flex = self._flexsn[0]
        flex.reset()
        flex.store_state_seqs = self.store_v_seq
        flex._state_0 = self._initial_v(x_seq)
        spikes = flex(x_seq)
        self.v = flex._state_0
        if self.store_v_seq:
            self.v_seq = flex.state_seqs[0]
        return spikes


def use_fused_kernels(module: torch.nn.Module, enabled: bool = True) -> torch.nn.Module:
    """Put every LIF of ``module`` on our equations on the ``"compiled"`` route (or back on ``"eager"``;
    ``"spikingjelly"`` ones stay): in spiking convolution blocks tdBN and LIF then run together
    (:mod:`fsvae_sj.spiking.fused_block`).

    The same eval-mode spikes and membranes bit for bit, and training equal up to float
    rounding; on the CPU a training step is much faster (benchmarks/RESULTS.md). The
    first call of each sequence length compiles (seconds to a minute; inductor's
    on-disk cache makes later processes quick), so it pays for long runs (training,
    evaluation), not for a quick sample. Needs a working C++ compiler on the CPU (Triton on
    CUDA): without one it warns (at the caller's line) and stays eager. Returns ``module``."""
    if enabled and not can_compile(next(module.parameters(), torch.empty(0)).device):
        warn(f"{cpu_compiler_problem()}: torch.compile needs one on the CPU, so the LIF neurons stay on the "
             f"eager kernels (the same spikes, slower training; --fused-lif false silences this)", RuntimeWarning)
        enabled = False
    for m in module.modules():
        if isinstance(m, LIF) and m.route != "spikingjelly":
            m.route = "compiled" if enabled else "eager"
    return module


def lif_from_config(cfg) -> LIF:
    """A LIF built from a model config's neuron fields."""
    sg = Rect.preset(cfg.surrogate, cfg.v_threshold, cfg.surrogate_a)
    return LIF(v_threshold=cfg.v_threshold, decay=cfg.decay, surrogate=sg, impl=cfg.lif_impl)


__all__ = ["LIF", "IMPLS", "ROUTES", "lif_from_config", "use_fused_kernels", "RectSpike"]
