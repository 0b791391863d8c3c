"""fsvae-sj: the Fully Spiking VAE (Kamata et al., AAAI 2022) on SpikingJelly.

Where things live: ``neurons`` (the LIF), ``surrogate`` (rectangle surrogate),
``tdbn`` (threshold-dependent BatchNorm), ``sampler`` (autoregressive Bernoulli
posterior/prior), ``model`` (FSVAE), ``ann`` (ANN VAE baseline), ``losses``,
``convert`` (the authors' checkpoints), ``io`` (our safetensors format),
``seeding`` (per-sample random streams), ``zoo`` (pretrained models: ``fsvae_sj.zoo.load``).
"""
from .ann import ANNVAE
from .config import ANNVAEConfig, ConfigError, FSVAEConfig
from .io import load_model, save_model
from .model import FSVAE, FSVAELarge, FSVAEOutput
from .neurons import LIF
from .surrogate import Rect
from .tdbn import TdBN

from . import zoo  # noqa: E402  (after the names zoo's imports need)

__version__ = "0.1.0"

__all__ = ["ANNVAE", "ANNVAEConfig", "ConfigError", "FSVAE", "FSVAEConfig", "FSVAELarge",
           "FSVAEOutput", "LIF", "Rect", "TdBN", "load_model", "save_model", "zoo", "__version__"]
