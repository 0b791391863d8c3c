"""``from_pretrained`` for every model class: one loader, one behaviour.

``FSVAE.from_pretrained`` and ``ANNVAE.from_pretrained`` both call :func:`load_as`, which
calls the loader the zoo registers when it is imported (:func:`fsvae_sj.zoo.load`; ``import
fsvae_sj`` always imports the zoo). Why a hook and not an import: the zoo sits above the model
modules (it builds models through the registry in :mod:`fsvae_sj.models.registry`), so a model module
cannot import it, even lazily, without an import loop.
"""
from __future__ import annotations

import os

import torch

from ..errors import CheckpointError

# Set once by the zoo when it is imported (register_weights_loader).
_weights_loader = None


def register_weights_loader(loader) -> None:
    """Make ``loader(name_or_path, *, device, dtype, cache_dir, offline) -> eval-mode model`` the
    one every ``from_pretrained`` calls (:func:`fsvae_sj.zoo.load`)."""
    global _weights_loader
    _weights_loader = loader


def load_as(cls: type, name_or_path: str | os.PathLike, *, device: str | torch.device | None = None,
            dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
            offline: bool | None = None) -> torch.nn.Module:
    """The model ``name_or_path`` names (a zoo name or a ``.safetensors`` of ours), in eval mode on
    ``device`` (default the CPU) in ``dtype`` (default as stored: float32); ``cache_dir`` and
    ``offline`` as in :func:`fsvae_sj.zoo.load`. Raises :class:`~fsvae_sj.errors.CheckpointError`
    when the file holds another class (naming :func:`fsvae_sj.zoo.load`, which loads any), and the
    zoo's :class:`~fsvae_sj.zoo.ZooError` for an unknown name (listing the valid ones), a
    missing file or a non-floating ``dtype``."""
    if _weights_loader is None:
        raise RuntimeError("no weights loader registered; import fsvae_sj (it registers the zoo's)")
    model = _weights_loader(name_or_path, device=device, dtype=dtype, cache_dir=cache_dir, offline=offline)
    if not isinstance(model, cls):
        raise CheckpointError(f"{name_or_path} holds a model of class {type(model).__name__}, not {cls.__name__}; "
                              f"load it with fsvae_sj.zoo.load({str(name_or_path)!r})")
    return model
