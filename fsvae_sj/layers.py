"""The time-first layers' old address, kept for ``from fsvae_sj.layers import ...``: they live in
:mod:`fsvae_sj.spiking.layers`."""
from .spiking.layers import (ConvTranspose2d, SpikingBlock, conv_block, conv_input, conv_memory_format,
                             deconv_block, empty_for_conv, linear_block, per_step)

__all__ = ["ConvTranspose2d", "SpikingBlock", "conv_block", "conv_input", "conv_memory_format", "deconv_block",
           "empty_for_conv", "linear_block", "per_step"]
