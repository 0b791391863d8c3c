"""tdBN's old address, kept for ``from fsvae_sj.tdbn import TdBN``: it lives in
:mod:`fsvae_sj.spiking.tdbn`."""
from .spiking.tdbn import TdBN

__all__ = ["TdBN"]
