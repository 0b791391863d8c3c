"""fsvae-sj: the Fully Spiking VAE (Kamata et al., AAAI 2022) on SpikingJelly.

Where things live (the README's table has them all), wings lowest first: ``spiking`` (the
neuron's equations, the LIF, the rectangle surrogate, tdBN, the time-first layers), ``hub``
(what loading weights needs before any model class: zoo entries, download and verification, our
checkpoint format, names and paths), ``models`` (FSVAE, the Bernoulli posterior and prior, the
ANN VAE baseline, configs, losses, ``from_pretrained`` and the one code path of loading, the
authors' checkpoint layout, the architecture registry), ``zoo`` (loading weights the one public
way, ``fsvae_sj.zoo.load``, any architecture; the authors' model, publishing), ``training``; beside them
``datasets``, ``metrics``, ``opcount``, ``viz``, ``calibration`` and the base modules ``errors``,
``files``, ``locks``, ``seeding``. The command layer is ``cli`` (``python -m fsvae_sj.<tool>``);
nothing in the library imports it.
"""
from ._version import __version__
from .zoo import load_model
from .hub import save_model
from .errors import ConfigError, FsvaeError
from .models import ANNVAE, ANNVAEConfig, FSVAE, FSVAEConfig, FSVAELarge, FSVAEOutput, fsvae_large
from .spiking import LIF, Rect, TdBN

from . import zoo

__all__ = ["ANNVAE", "ANNVAEConfig", "ConfigError", "FSVAE", "FSVAEConfig", "FSVAELarge", "FSVAEOutput",
           "FsvaeError", "LIF", "Rect", "TdBN", "fsvae_large", "load_model", "save_model", "zoo", "__version__"]
