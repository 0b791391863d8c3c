"""The LIF neuron's old address, kept for ``from fsvae_sj.neurons import LIF``: it lives in
:mod:`fsvae_sj.spiking.lif` (its equations in :mod:`fsvae_sj.spiking.equations`)."""
from .spiking.lif import IMPLS, LIF, ROUTES, lif_from_config, use_fused_kernels

__all__ = ["IMPLS", "LIF", "ROUTES", "lif_from_config", "use_fused_kernels"]
