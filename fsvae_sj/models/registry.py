"""The architecture registry: each architecture's config class, model class and recipe fields
(what :func:`fsvae_sj.zoo.load` and training build from; strict loading of a state lives in
:mod:`fsvae_sj.models.pretrained`, below the model classes)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .ann import ANNVAE
from .config import ANNVAEConfig, ConfigError, FSVAEConfig
from .fsvae import FSVAE
from .pretrained import check_fit, load_state_strict


# -- the architecture registry ---------------------------------------------------------------
@dataclass(frozen=True)
class Architecture:
    """One architecture: its config class, its model class (whose ``loss(x, settings,
    generator)`` a training step calls) and the training-recipe fields its config takes."""

    name: str
    config: type
    model: type
    recipe_fields: tuple[str, ...] = ()


# Adding an architecture: its config (with ``arch`` and ``for_images``), its model (inheriting
# PretrainedMixin with that ``config_class``; with ``loss``, ``sample``, ``reconstruct``) and one
# line here.
ARCHITECTURES = {a.name: a for a in (
    Architecture("fsvae", FSVAEConfig, FSVAE, recipe_fields=("n_steps", "surrogate", "surrogate_a")),
    Architecture("ann-vae", ANNVAEConfig, ANNVAE),
)}


def architecture(name: str) -> Architecture:
    """The registry entry ``name``; raises :class:`~fsvae_sj.errors.ConfigError` naming the valid ones."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"unknown arch {name!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def config_from_dict(data: dict):
    """Rebuild whichever model config ``data`` describes (by its ``arch`` field, default fsvae)."""
    arch = data.get("arch", "fsvae") if isinstance(data, dict) else None
    return architecture(arch).config.from_dict(data)


def build_model(config) -> nn.Module:
    """A freshly initialised model of ``config``'s architecture."""
    return architecture(config.arch).model(config)


def check_state(config, state: dict[str, torch.Tensor], source: str) -> None:
    """Check ``state`` against the model ``config`` describes, before that model is built
    (:func:`~fsvae_sj.models.pretrained.check_fit` for its architecture's class)."""
    check_fit(architecture(config.arch).model, config, state, source)


__all__ = ["ARCHITECTURES", "Architecture", "architecture", "build_model", "check_state", "config_from_dict",
           "load_state_strict"]
