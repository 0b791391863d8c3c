"""The one place that knows which SpikingJelly generation is installed.

SpikingJelly 2.x (``spikingjelly>=2``) and the legacy ``0.0.0.0.14`` share the
``activation_based`` package layout but differ in four ways that matter here:

* the legacy ``LIFNode`` takes ``backend="torch"|"cupy"``; 2.x has no such
  argument and picks its kernels itself (Triton on CUDA for built-in
  surrogates only);
* the fused GPU route for a *custom* surrogate is the CuPy kernel in the legacy
  generation (the surrogate contributes ``cuda_codes``) and ``neuron.FlexSN``
  (a traced pure-PyTorch step core) in 2.x;
* the surrogate base-class constructor signature (``alpha`` positional in the
  legacy one, keyword parameters in 2.x): ``spiking=..., alpha=...`` works in both;
* only 2.x has ``op_counter`` (:func:`op_counter`).

Everything else in the package imports SpikingJelly through this module.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import base, functional, neuron, surrogate


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("spikingjelly")
    except PackageNotFoundError:  # e.g. a source checkout on PYTHONPATH
        return "unknown"


SJ_VERSION = _installed_version()

LEGACY = not hasattr(neuron, "FlexSN")
GENERATION = "0.0.0.0.14" if LEGACY else "2"

LIFNode = neuron.LIFNode
# Whether the neurons keep a multi-step call's membrane sequence as ``v_seq`` (both
# generations do; a generation without the property cannot).
STORE_V_SEQ = isinstance(getattr(LIFNode, "store_v_seq", None), property)
SurrogateFunctionBase = surrogate.SurrogateFunctionBase
MemoryModule = base.MemoryModule
reset_net = functional.reset_net
# Extra ``LIFNode`` constructor arguments: the legacy node binds a backend at construction
# (``LIF`` switches it per call to follow the tensor's device).
LIF_NODE_KWARGS = {"backend": "torch"} if LEGACY else {}

__all__ = [
    "GENERATION", "LEGACY", "SJ_VERSION", "STORE_V_SEQ", "LIFNode", "SurrogateFunctionBase",
    "MemoryModule", "reset_net", "LIF_NODE_KWARGS", "spikingjelly_kernel", "make_flexsn", "sj_plot", "op_counter",
]


def spikingjelly_kernel(x: torch.Tensor, training: bool) -> str | None:
    """Which of SpikingJelly's own fused kernels would run ``x`` on the ``"spikingjelly"`` route:
    ``"cupy"``, ``"flexsn-triton"`` or None (its torch loop).

    Legacy CuPy runs only multi-step training-mode calls (its eval mode is
    TorchScript). SpikingJelly 2 fuses a custom surrogate only through FlexSN.
    """
    if not x.is_cuda:
        return None
    if LEGACY:
        return "cupy" if training and x.dtype in (torch.float32, torch.float16) else None
    return "flexsn-triton"


def make_flexsn(core, static_inputs: tuple[torch.Tensor, ...]):
    """A multi-step ``FlexSN`` running ``core(x, v, *static) -> (spike, v)``.

    Only SpikingJelly 2 has FlexSN; asking for it on the legacy one is a bug in
    the caller, so it raises.
    """
    if LEGACY:
        raise RuntimeError("FlexSN needs SpikingJelly 2; the legacy 0.0.0.0.14 is installed")
    return neuron.FlexSN(core, num_states=1, static_inputs=static_inputs, step_mode="m")


def sj_plot(name: str, *args, **kwargs):
    """A ``spikingjelly.visualizing`` plot as a matplotlib Figure (the legacy
    generation returns the Figure alone, SpikingJelly 2 a tuple starting with it)."""
    from spikingjelly import visualizing
    res = getattr(visualizing, name)(*args, **kwargs)
    return res[0] if isinstance(res, tuple) else res


def op_counter():
    """SpikingJelly 2's ``activation_based.op_counter`` (dispatch counters of SynOps, ACs and MACs,
    energy profilers), or None on the legacy generation, which has no counter."""
    if LEGACY:
        return None
    from spikingjelly.activation_based import op_counter as oc
    return oc
