"""Loading weights, the one public way: :func:`load` (a zoo name or a checkpoint file of ours -> a
ready model of any architecture, through the registry). It is the code path of
``FSVAE.from_pretrained`` and ``ANNVAE.from_pretrained``
(:func:`fsvae_sj.models.pretrained.load_pretrained`, below the models), asking for whichever
class the file's architecture has; plus what a name or path was trained on (:func:`trained_on`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..datasets import canonical
from ..errors import warn
from ..hub import DEFAULT, get_weights, looks_like_path, read_metadata
from ..models.pretrained import load_pretrained, model_from_file
from ..models.registry import architecture


def load(name_or_path: str | os.PathLike = DEFAULT, *, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool | None = None) -> torch.nn.Module:
    """A ready model in eval mode, by zoo name or from a local checkpoint path, on ``device``
    (default the CPU) in ``dtype`` (a floating-point ``torch.dtype``; default as stored, float32).

    One way down: resolve the entry, fetch and verify its file, read, build, return. The model's
    ``weights_source`` (:class:`~fsvae_sj.hub.WeightsSource`) says which file it came from and its
    SHA-256. A path must look like one (:func:`~fsvae_sj.hub.looks_like_path`); a bare name is
    always a zoo entry, and a file of that name in the working folder gets a warning saying it
    was not read. ``FSVAE.from_pretrained`` and ``ANNVAE.from_pretrained`` take the same path
    (:func:`fsvae_sj.models.pretrained.load_pretrained`). Raises :class:`~fsvae_sj.hub.ZooError`
    for an unknown name (listing the valid ones), a missing or corrupt file, or a ``dtype`` that
    is not floating point; :class:`~fsvae_sj.errors.CheckpointError` for a file given by path
    that does not load."""
    return load_pretrained(name_or_path, _any_architecture, device=device, dtype=dtype, cache_dir=cache_dir,
                           offline=offline)


def _any_architecture(arch: str) -> type:
    """The registry's model class for ``arch`` (ConfigError naming the valid ones)."""
    return architecture(arch).model


def load_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model a checkpoint file of ours holds, of any architecture, in eval mode (no
    provenance: what publishing measures). Raises :class:`~fsvae_sj.errors.CheckpointError`
    naming the file for anything that does not load."""
    return model_from_file(path, _any_architecture, device)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Deprecated: :func:`load` with ``path`` taken as a file (``fsvae_sj.load_model`` was a second
    way to load a checkpoint of ours; ``load`` is the one)."""
    warn("fsvae_sj.load_model is deprecated; use fsvae_sj.zoo.load(path) (or Model.from_pretrained(path))",
         DeprecationWarning)
    return load(Path(path), device=device)


def trained_on(name_or_path: str | os.PathLike) -> str | None:
    """The dataset (its canonical name) a zoo entry or a checkpoint file of ours was trained on, from
    the entry or the file's header (no weights read); None when it does not say. Names and paths
    as :func:`load` reads them."""
    if looks_like_path(name_or_path):
        name = (read_metadata(name_or_path)[1].get("train_config") or {}).get("dataset")
    else:
        name = get_weights(str(name_or_path)).dataset
    try:
        return canonical(name) if isinstance(name, str) else None
    except ValueError:   # a dataset this version does not know
        return None
