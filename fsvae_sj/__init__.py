"""fsvae-sj: the Fully Spiking VAE (Kamata et al., AAAI 2022) on SpikingJelly.

Where things live (the README's table has them all): ``spiking`` (the neuron's equations, the LIF,
the rectangle surrogate, tdBN, the time-first layers), ``bernoulli`` (autoregressive Bernoulli
posterior/prior), ``model`` (FSVAE and the architecture registry), ``ann`` (ANN VAE baseline),
``losses``, ``checkpoint`` (our safetensors format), ``authors`` (the authors' checkpoints),
``zoo`` (pretrained models: ``fsvae_sj.zoo.load``, ``FSVAE.from_pretrained``), ``datasets``,
``metrics``, ``training``; the command-line tools are ``sample``, ``reconstruct``, ``evaluate``,
``train``, ``zoo``, ``convert``, ``ops`` and ``data`` on ``_cli``.
"""
from ._version import __version__
from .checkpoint import load_model, save_model
from .errors import ConfigError, FsvaeError
from .models import ANNVAE, ANNVAEConfig, FSVAE, FSVAEConfig, FSVAELarge, FSVAEOutput, fsvae_large
from .spiking import LIF, Rect, TdBN

from . import zoo

__all__ = ["ANNVAE", "ANNVAEConfig", "ConfigError", "FSVAE", "FSVAEConfig", "FSVAELarge", "FSVAEOutput",
           "FsvaeError", "LIF", "Rect", "TdBN", "fsvae_large", "load_model", "save_model", "zoo", "__version__"]
