"""Loading weights, the one way: :func:`load` (a zoo name or a checkpoint file of ours -> a ready
model); ``FSVAE.from_pretrained`` and ``ANNVAE.from_pretrained`` call it.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import warn
from ..files import sha256_file
from ..models.pretrained import register_weights_loader
from .authors import load_authors_checkpoint
from .checkpoint import CheckpointError, model_from_file, read_checkpoint, save_model
from .entries import DEFAULT, ZooError, get_weights, looks_like_path
from .fetching import fetch

@dataclass(frozen=True)
class WeightsSource:
    """Where a loaded model's weights came from, for provenance lines: the name or path asked
    for and the verified file read (``model.weights_source`` after :func:`load`)."""

    name: str
    path: Path
    recorded_sha256: str | None = None   # the entry's, already checked by fetch()
    kind: str = "zoo entry"              # or "file": how the name was read (looks_like_path)

    @functools.cached_property
    def sha256(self) -> str:
        """The file's SHA-256: the entry's verified one, else hashed once, when first asked."""
        return self.recorded_sha256 or sha256_file(self.path)


def load(name_or_path: str | os.PathLike = DEFAULT, *, device: str | torch.device | None = None,
         dtype: torch.dtype | None = None, cache_dir: str | os.PathLike | None = None,
         offline: bool | None = None) -> torch.nn.Module:
    """A ready model in eval mode, by zoo name or from a local checkpoint path, on ``device``
    (default the CPU) in ``dtype`` (a floating-point ``torch.dtype``; default as stored, float32).

    One way down: resolve the entry, fetch and verify its file, read, build, return. The model's
    ``weights_source`` (:class:`WeightsSource`) says which file it came from and its SHA-256.
    A path must look like one (:func:`looks_like_path`); a bare name is always a zoo entry, and
    a file of that name in the working folder gets a warning saying it was not read.
    ``FSVAE.from_pretrained`` and ``ANNVAE.from_pretrained`` load through here. Raises
    :class:`ZooError` for an unknown name (listing the valid ones), a missing or corrupt file,
    or a ``dtype`` that is not floating point."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ZooError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.float64, "
                       f"torch.bfloat16, ...), got {dtype!r}")
    model = _load(name_or_path, device or "cpu", cache_dir, offline)
    return model.to(dtype=dtype) if dtype is not None else model


def _load(name_or_path: str | os.PathLike, device: str | torch.device, cache_dir: str | os.PathLike | None,
          offline: bool | None) -> torch.nn.Module:
    p = Path(name_or_path)
    if looks_like_path(name_or_path):
        if not p.is_file():
            raise ZooError(f"no file at {p}")
        return _with_source(model_from_file(p, device), WeightsSource(str(name_or_path), p, kind="file"))
    w = get_weights(str(name_or_path))
    if p.exists():
        warn(f"loading the zoo entry {name_or_path!r}; the file ./{p} in this folder was not read "
             f"(to load it, give it as a path: ./{p})")
    path = fetch(w, cache_dir, offline)
    source = WeightsSource(str(name_or_path), path, w.sha256)
    if w.source_format == "authors":
        # The converted file is derived from the verified source: it is used only while it
        # records that source's identity, else it is rebuilt.
        converted = path.with_name(path.stem + ".fsvae-sj.safetensors")
        if _derived_from(converted) != w.git_blob:
            model = load_authors_checkpoint(path, w.config)
            try:
                save_model(model, converted, extra={"source": w.urls[0] if w.urls else w.file_name,
                                                    "git_blob": w.git_blob})
            except OSError as e:   # a read-only or full cache: serve it, convert again next time
                warn(f"{w.name}: converted without caching the result ({e}); to cache it, set "
                     f"FSVAE_SJ_HOME to a writable folder", RuntimeWarning)
            return _with_source(model.to(device).eval(), source)
        path = converted
    try:
        model = model_from_file(path, device)
    except CheckpointError as e:
        raise ZooError(f"{w.name}: {e}") from e
    return _with_source(model, source)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Deprecated: :func:`load` with ``path`` taken as a file (``fsvae_sj.load_model`` was a second
    way to load a checkpoint of ours; ``load`` is the one)."""
    warn("fsvae_sj.load_model is deprecated; use fsvae_sj.zoo.load(path) (or Model.from_pretrained(path))",
         DeprecationWarning)
    return load(Path(path), device=device)


def _with_source(model: torch.nn.Module, source: WeightsSource) -> torch.nn.Module:
    model.weights_source = source
    return model


def _derived_from(converted: Path) -> str | None:
    """The source git blob a converted checkpoint records (None if absent or unreadable)."""
    if not converted.is_file():
        return None
    try:
        return read_checkpoint(converted)[2].get("git_blob")
    except CheckpointError:
        return None


# FSVAE.from_pretrained and ANNVAE.from_pretrained (below the zoo) load through this.
register_weights_loader(load)
