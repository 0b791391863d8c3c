"""The models wing: FSVAE, the Bernoulli samplers of its latent, the ANN VAE baseline, their
configs and losses, loading weights into them, and the architecture registry. It stands on the
spiking wing, the hub wing (:mod:`fsvae_sj.hub`: names, files, our checkpoint format, no model
class) and the base modules alone (tests/test_structure.py).

Modules, lowest first: ``config`` (the dataclass configs, saved as JSON), ``losses``,
``authors`` (the authors' checkpoint layout -> our config + state), ``pretrained``
(``PretrainedMixin.from_pretrained`` for every model class and ``load_pretrained``, the one code
path of loading weights: it builds the class asked for from the config a file stores and loads
strictly, so no loader is registered at import time; :func:`fsvae_sj.zoo.load` takes it for any
architecture), ``bernoulli`` (posterior and prior samplers), ``ann`` (the ANN VAE), ``fsvae``
(FSVAE, :func:`fsvae_large`), ``registry`` (``ARCHITECTURES``).
"""
from .ann import ANNVAE
from .config import ANNVAEConfig, FSVAEConfig
from .fsvae import FSVAE, FSVAELarge, FSVAEOutput, fsvae_large
from .registry import ARCHITECTURES, architecture, build_model

__all__ = ["ANNVAE", "ANNVAEConfig", "ARCHITECTURES", "FSVAE", "FSVAEConfig", "FSVAELarge", "FSVAEOutput",
           "architecture", "build_model", "fsvae_large"]
