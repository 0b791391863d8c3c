"""The spiking wing: FSVAE's neuron and normalisation, and the time-first layers built from them.

Modules, lowest first (none imports anything of fsvae-sj outside this package):

* ``sj``: the one place that knows which SpikingJelly generation is installed;
* ``surrogate``: the rectangle surrogate gradient (``Rect``, "code" / "paper" presets);
* ``equations``: the step equations, forward and backward, written once (LIF charge, fire,
  reset; tdBN's normalisation) and called by every route;
* ``compiled``: ``torch.compile`` for the compiled routes (and whether this machine can);
* ``lif``: the LIF node, one ``route`` among ``supported_routes`` (eager, compiled, spikingjelly);
* ``tdbn``: threshold-dependent BatchNorm;
* ``fused_block``: tdBN and LIF of a convolution block in one compiled pass;
* ``layers``: time-first blocks (weight layer at every step, tdBN, LIF).
"""
from .layers import SpikingBlock, per_step
from .lif import LIF, lif_from_config, use_fused_kernels
from .surrogate import Rect
from .tdbn import TdBN

__all__ = ["LIF", "Rect", "SpikingBlock", "TdBN", "lif_from_config", "per_step", "use_fused_kernels"]
