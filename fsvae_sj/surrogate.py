"""The surrogate's old address, kept for ``from fsvae_sj.surrogate import Rect``: it lives in
:mod:`fsvae_sj.spiking.surrogate`."""
from .spiking.surrogate import DEFAULT_A, PRESETS, Rect, RectSpike, rect_grad

__all__ = ["DEFAULT_A", "PRESETS", "Rect", "RectSpike", "rect_grad"]
