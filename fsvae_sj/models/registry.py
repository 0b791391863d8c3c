"""The architecture registry: each architecture's config class, model class and recipe fields, and
strict loading of a state into a model (what every loader of weights calls)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CheckpointError
from .ann import ANNVAE
from .config import ANNVAEConfig, ConfigError, FSVAEConfig
from .fsvae import FSVAE


# -- the architecture registry ---------------------------------------------------------------
@dataclass(frozen=True)
class Architecture:
    """One architecture: its config class, its model class (whose ``loss(x, settings,
    generator)`` a training step calls) and the training-recipe fields its config takes."""

    name: str
    config: type
    model: type
    recipe_fields: tuple[str, ...] = ()


# Adding an architecture: its config (with ``arch`` and ``for_images``), its model (with
# ``loss``, ``sample``, ``reconstruct``) and one line here.
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
    """Check ``state`` against the model ``config`` describes, before that model is built:
    the same keys, shapes, and floating-point tensors where the model has them. The model is
    laid out on the meta device (no memory). Raises :class:`~fsvae_sj.errors.CheckpointError`
    listing what does not fit (``source`` names the file)."""
    with torch.device("meta"):
        own = build_model(config).state_dict()
    _refuse_mismatch(own, state, source)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` after checking every key and shape; raises
    :class:`~fsvae_sj.errors.CheckpointError` listing what does not fit (``source`` names the file)."""
    _refuse_mismatch(model.state_dict(), state, source)
    model.load_state_dict(state, strict=True)


def _refuse_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    common = set(own) & set(state)
    bad = sorted(k for k in common if own[k].shape != state[k].shape)
    kind = sorted(k for k in common - set(bad) if own[k].is_floating_point() != state[k].is_floating_point())
    if missing or unexpected or bad or kind:
        details = []
        if missing:
            details.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            details.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        for k in bad[:8]:
            details.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        for k in kind[:8]:
            details.append(f"{k}: checkpoint dtype {state[k].dtype} vs model {own[k].dtype}")
        raise CheckpointError(f"{source} does not fit this architecture: " + "; ".join(details))
