"""The SpikingJelly adapter's old address: it lives in :mod:`fsvae_sj.spiking.sj`."""
from .spiking.sj import GENERATION, LEGACY, SJ_VERSION, op_counter, reset_net, sj_plot

__all__ = ["GENERATION", "LEGACY", "SJ_VERSION", "op_counter", "reset_net", "sj_plot"]
