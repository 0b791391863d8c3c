"""The models wing: FSVAE, the Bernoulli samplers of its latent, the ANN VAE baseline, their
configs and losses, and the architecture registry. It stands on the spiking wing and the base
modules alone (tests/test_structure.py).

Modules, lowest first: ``config`` (the dataclass configs, saved as JSON), ``losses``,
``pretrained`` (``from_pretrained``), ``bernoulli`` (posterior and prior samplers), ``ann``
(the ANN VAE), ``fsvae`` (FSVAE, :func:`fsvae_large`), ``registry`` (``ARCHITECTURES``, strict
loading of a state).
"""
from .ann import ANNVAE
from .config import ANNVAEConfig, FSVAEConfig
from .fsvae import FSVAE, FSVAELarge, FSVAEOutput, fsvae_large
from .registry import ARCHITECTURES, architecture, build_model

__all__ = ["ANNVAE", "ANNVAEConfig", "ARCHITECTURES", "FSVAE", "FSVAEConfig", "FSVAELarge", "FSVAEOutput",
           "architecture", "build_model", "fsvae_large"]
