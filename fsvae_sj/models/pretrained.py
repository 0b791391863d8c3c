"""Weights into a model: ``from_pretrained`` for every architecture, and the one code path every
loader of weights goes through (:func:`load_pretrained`; :func:`fsvae_sj.zoo.load` is the same
path for any architecture, through the registry).

Layered as diffusers layers it: naming, fetching and verifying a file and reading our format
need no model class and sit below the models (:mod:`fsvae_sj.hub`); this module, still below the
model classes, builds the class asked for from the config a file stores and loads the state
strictly. :class:`~fsvae_sj.models.fsvae.FSVAE` and :class:`~fsvae_sj.models.ann.ANNVAE`
inherit :class:`PretrainedMixin`: an architecture gets ``from_pretrained`` by inheriting it and
naming its ``config_class``. Nothing is registered at import time.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, warn
from ..hub import Weights, ZooError, read_checkpoint, read_metadata, resolve, save_model
from .authors import authors_state

# ``model_for(arch)``: the model class to build for a file of architecture ``arch``; it raises
# ConfigError for an architecture it does not know, CheckpointError for one it refuses.
ModelFor = Callable[[str], type]


class PretrainedMixin:
    """``from_pretrained`` for a model class whose ``config_class`` (a config dataclass with
    ``from_dict`` and an ``arch`` field whose default names the architecture) builds it as
    ``cls(config)``."""

    config_class: type

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
                        offline: bool | None = None):
        """A pretrained model of this class in eval mode: a zoo name (``"fashion-mnist"``,
        ``"celeba"``, ``"mnist-ann"``, ...) or a path to a ``.safetensors`` of ours (a training
        run's file loads alone: it carries its config). ``device``/``dtype`` as in
        ``nn.Module.to`` (default the CPU; as stored, float32); ``cache_dir``/``offline`` as in
        :func:`fsvae_sj.zoo.load`, which takes the same path for any architecture
        (:func:`load_pretrained`). Raises :class:`~fsvae_sj.hub.ZooError` for an unknown name
        (listing the valid ones), a missing or corrupt file or a non-floating ``dtype``, and
        :class:`~fsvae_sj.errors.CheckpointError` for a file of another architecture (naming
        ``fsvae_sj.zoo.load``, which loads any) or one that does not fit.

        Why on the class and not a builder with ``weights=`` beside the zoo: users find loading
        on the class, as in diffusers."""
        return load_pretrained(name_or_path, _only(cls, name_or_path), device=device, dtype=dtype,
                               cache_dir=cache_dir, offline=offline)


def _only(cls: type, asked: str | os.PathLike) -> ModelFor:
    def model_for(arch: str) -> type:
        if arch != cls.config_class.arch:
            raise CheckpointError(f"{asked} holds a model of architecture {arch!r}, not {cls.__name__} "
                                  f"({cls.config_class.arch!r}); load it with fsvae_sj.zoo.load({str(asked)!r})")
        return cls
    return model_for


def load_pretrained(name_or_path: str | os.PathLike, model_for: ModelFor, *, device: str | torch.device | None = None,
                    dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
                    offline: bool | None = None) -> nn.Module:
    """The model ``name_or_path`` names, of the class ``model_for`` gives for its architecture, in
    eval mode on ``device`` (default the CPU) in ``dtype`` (a floating-point ``torch.dtype``;
    default as stored, float32), its ``weights_source`` (:class:`~fsvae_sj.hub.WeightsSource`)
    saying which file it came from. One way down: resolve the name or path to a verified local
    file (:func:`fsvae_sj.hub.resolve`), convert the authors' entry on first load (cached beside
    its file as ``*.fsvae-sj.safetensors``), read, build strictly. Raises
    :class:`~fsvae_sj.hub.ZooError` as :func:`fsvae_sj.hub.resolve` does, for a ``dtype`` that is
    not floating point and for a zoo entry whose file does not load (naming the entry);
    :class:`~fsvae_sj.errors.CheckpointError` for a file given by path that does not load, and
    whatever ``model_for`` raises."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ZooError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.float64, "
                       f"torch.bfloat16, ...), got {dtype!r}")
    source, entry = resolve(name_or_path, cache_dir, offline)
    if entry is not None and entry.source_format == "authors":
        model = _from_authors_entry(entry, source.path, model_for)
    else:
        model = model_from_file(source.path, model_for, entry=entry)
    model = model.to(device or "cpu").eval()
    model.weights_source = source
    return model.to(dtype=dtype) if dtype is not None else model


def model_from_file(path: str | os.PathLike, model_for: ModelFor, device: str | torch.device = "cpu", *,
                    entry: Weights | None = None) -> nn.Module:
    """The model a checkpoint of ours holds, in eval mode on ``device``: its config's fields
    checked (:class:`~fsvae_sj.errors.CheckpointError` naming the file and the field), the class
    ``model_for`` gives built from it, every key of the state checked before the model is built
    (:func:`build_strict`). ``entry``: the zoo entry the file is, whose refusals are then
    :class:`~fsvae_sj.hub.ZooError` naming it (those of ``model_for`` aside)."""
    path = Path(path)
    with _named(entry):
        stored, state, _ = read_checkpoint(path)
    try:
        model_class = model_for(stored.get("arch", "fsvae"))
    except ConfigError as e:   # an architecture this version has no model for
        with _named(entry):
            raise CheckpointError(f"{path}: the model config in its metadata is invalid: {e}") from None
    with _named(entry):
        try:
            config = model_class.config_class.from_dict(stored)
        except ValueError as e:   # a ConfigError naming the field
            raise CheckpointError(f"{path}: the model config in its metadata is invalid: {e}") from None
        return build_strict(model_class, config, state, source=str(path)).to(device).eval()


@contextlib.contextmanager
def _named(entry: Weights | None):
    """A CheckpointError of a zoo entry's file becomes the ZooError naming the entry."""
    try:
        yield
    except CheckpointError as e:
        if entry is None:
            raise
        raise ZooError(f"{entry.name}: {e}") from e


def _from_authors_entry(entry: Weights, path: Path, model_for: ModelFor) -> nn.Module:
    """The authors' entry: its converted file while that records the verified source's identity
    (its git blob), else converted again from ``path`` and cached (served uncached, with a
    warning, when the cache cannot be written)."""
    stored = entry.architecture() if entry.config is not None else None   # the .pth carries none
    model_class = model_for((stored or {}).get("arch", "fsvae"))   # (the authors' layout is an FSVAE's)
    converted = path.with_name(path.stem + ".fsvae-sj.safetensors")
    if _derived_from(converted) == entry.git_blob:
        return model_from_file(converted, model_for, entry=entry)
    config, state = authors_state(path, model_class.config_class.from_dict(stored) if stored else None)
    model = build_strict(model_class, config, state, source=f"{path} (converted)").eval()
    try:
        save_model(model, converted, extra={"source": entry.urls[0] if entry.urls else entry.file_name,
                                            "git_blob": entry.git_blob})
    except OSError as e:   # a read-only or full cache: serve it, convert again next time
        warn(f"{entry.name}: converted without caching the result ({e}); to cache it, set "
             f"FSVAE_SJ_HOME to a writable folder", RuntimeWarning)
    return model


def _derived_from(converted: Path) -> str | None:
    """The source git blob a converted checkpoint records (None if absent or unreadable)."""
    if not converted.is_file():
        return None
    try:
        return read_metadata(converted)[1].get("git_blob")
    except CheckpointError:
        return None


def build_strict(model_class: type, config, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """``model_class(config)`` holding ``state``, every key, shape and kind checked against the
    model first, laid out on the meta device (a header claiming a huge model with no tensors to
    match is refused without allocating it). Raises :class:`~fsvae_sj.errors.CheckpointError`
    listing what does not fit (``source`` names the file)."""
    check_fit(model_class, config, state, source)
    model = model_class(config)
    model.load_state_dict(state, strict=True)
    return model


def check_fit(model_class: type, config, state: dict[str, torch.Tensor], source: str) -> None:
    """Check ``state`` against ``model_class(config)`` before that model is built: the same keys,
    shapes, and floating-point tensors where the model has them. The model is laid out on the
    meta device (no memory). Raises :class:`~fsvae_sj.errors.CheckpointError` listing what does
    not fit (``source`` names the file)."""
    with torch.device("meta"):
        own = model_class(config).state_dict()
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
